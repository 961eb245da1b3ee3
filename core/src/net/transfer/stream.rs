//! A mux stream shared by a transfer's tasks: one reads, one writes, and the
//! transfer's main task can reset it with a code at any time (cancel, protocol
//! error) without first collecting the halves back, which `tokio::io::split`
//! would require.
//!
//! Reading and writing each lock the stream only for the length of one poll,
//! never across an await.
//!
//! The same handle can be one end of an in-memory pair ([`Shared::local_pair`]):
//! that is how an adapter for a sender that is not a PeerConnect node (a
//! browser guest's upload) speaks the transfer protocol to the one receiver.
//! A reset there behaves as on a mux stream: the other end's reads and writes
//! fail with the code.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::net::mux::MuxStream;

/// A handle to a shared stream; clones are the same stream.
#[derive(Debug, Clone)]
pub struct Shared(Arc<Mutex<Io>>);

#[derive(Debug)]
enum Io {
    Mux(MuxStream),
    Local(Local),
}

/// One end of an in-memory pair.
#[derive(Debug)]
struct Local {
    /// `None` once this end reset the stream.
    io: Option<DuplexStream>,
    /// The code this end reset with, and the one the other end did.
    mine: Arc<Mutex<Option<u32>>>,
    theirs: Arc<Mutex<Option<u32>>>,
}

impl Local {
    /// What an error or an end of stream on this side means: the other end's
    /// reset, if it did one.
    fn peer_reset(&self) -> Option<io::Error> {
        let code = (*self.theirs.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some(reset_error(code))
    }

    fn gone() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "the stream was reset here")
    }
}

fn reset_error(code: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("stream reset (code {code})"),
    )
}

impl Shared {
    pub fn new(stream: MuxStream) -> Self {
        Self(Arc::new(Mutex::new(Io::Mux(stream))))
    }

    /// Two connected ends of an in-memory stream, each buffering up to
    /// `buffer` bytes the other has not read.
    pub fn local_pair(buffer: usize) -> (Self, Self) {
        let (a, b) = tokio::io::duplex(buffer);
        let (ra, rb) = (Arc::default(), Arc::default());
        let end = |io, mine: &Arc<Mutex<Option<u32>>>, theirs: &Arc<Mutex<Option<u32>>>| {
            Self(Arc::new(Mutex::new(Io::Local(Local {
                io: Some(io),
                mine: mine.clone(),
                theirs: theirs.clone(),
            }))))
        };
        (end(a, &ra, &rb), end(b, &rb, &ra))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Io> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `data` whole. On a mux stream without copying it (the session
    /// sends these very bytes); an in-memory pair copies as `write_all` does.
    pub async fn write_bytes(&self, mut data: Bytes) -> io::Result<()> {
        if !matches!(&*self.lock(), Io::Mux(_)) {
            return tokio::io::AsyncWriteExt::write_all(&mut self.clone(), &data).await;
        }
        std::future::poll_fn(|cx| match &mut *self.lock() {
            Io::Mux(m) => m.poll_write_bytes(cx, &mut data),
            Io::Local(_) => Poll::Ready(Err(io::Error::other("not a mux stream"))),
        })
        .await
    }

    /// Reads exactly `len` bytes, as the pieces they arrived in. On a mux
    /// stream these are the received bytes themselves (no copy; only pieces
    /// under [`SMALL_PIECE`] are copied together, see [`Pieces`]); an
    /// in-memory pair copies them into one piece, as `read_exact` does. An
    /// end of stream before `len` is an `UnexpectedEof` error.
    pub async fn read_exact_bytes(&self, len: usize) -> io::Result<Vec<Bytes>> {
        if !matches!(&*self.lock(), Io::Mux(_)) {
            let mut buf = vec![0; len];
            tokio::io::AsyncReadExt::read_exact(&mut self.clone(), &mut buf).await?;
            return Ok(vec![Bytes::from(buf)]);
        }
        let mut pieces = Pieces::default();
        let mut got = 0;
        while got < len {
            let piece = std::future::poll_fn(|cx| match &mut *self.lock() {
                Io::Mux(m) => m.poll_read_bytes(cx, len - got),
                Io::Local(_) => Poll::Ready(Err(io::Error::other("not a mux stream"))),
            })
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended"))?;
            got += piece.len();
            pieces.push(piece);
        }
        Ok(pieces.finish())
    }

    /// Aborts the stream both ways; the peer's reads and writes fail with
    /// `code` ([`peer_reset_code`]).
    pub fn reset(&self, code: u32) {
        match &mut *self.lock() {
            Io::Mux(m) => m.reset(code),
            Io::Local(l) => {
                l.mine
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(code);
                // Dropping our end wakes the other's pending read (an end of
                // stream) and fails its writes; both then see the code.
                l.io = None;
            }
        }
    }
}

impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Io::Mux(m) => Pin::new(m).poll_read(cx, buf),
            Io::Local(l) => {
                let Some(io) = l.io.as_mut() else {
                    return Poll::Ready(Err(Local::gone()));
                };
                let before = buf.filled().len();
                match Pin::new(io).poll_read(cx, buf) {
                    Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                        Poll::Ready(l.peer_reset().map_or(Ok(()), Err))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(l.peer_reset().unwrap_or(e))),
                    other => other,
                }
            }
        }
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut *self.lock() {
            Io::Mux(m) => Pin::new(m).poll_write(cx, buf),
            Io::Local(l) => {
                let Some(io) = l.io.as_mut() else {
                    return Poll::Ready(Err(Local::gone()));
                };
                match Pin::new(io).poll_write(cx, buf) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(l.peer_reset().unwrap_or(e))),
                    other => other,
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Io::Mux(m) => Pin::new(m).poll_flush(cx),
            Io::Local(l) => match l.io.as_mut() {
                Some(io) => Pin::new(io).poll_flush(cx),
                None => Poll::Ready(Err(Local::gone())),
            },
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Io::Mux(m) => Pin::new(m).poll_shutdown(cx),
            Io::Local(l) => match l.io.as_mut() {
                Some(io) => Pin::new(io).poll_shutdown(cx),
                None => Poll::Ready(Ok(())),
            },
        }
    }
}

/// Pieces shorter than this are copied together (see [`Pieces`]).
const SMALL_PIECE: usize = 16 * 1024;

/// A block's pieces in order. The mux hands out whatever arrived, down to
/// single bytes when the peer sends one-byte frames and the reader keeps up:
/// pieces shorter than [`SMALL_PIECE`] are copied into one buffer, so a block
/// of `n` bytes is at most `2n / SMALL_PIECE + 1` handles, whatever the peer
/// does, and the big ones are kept as they came.
#[derive(Default)]
struct Pieces {
    done: Vec<Bytes>,
    small: BytesMut,
}

impl Pieces {
    fn push(&mut self, piece: Bytes) {
        if piece.len() < SMALL_PIECE {
            self.small.extend_from_slice(&piece);
            if self.small.len() >= SMALL_PIECE {
                self.done.push(self.small.split().freeze());
            }
            return;
        }
        if !self.small.is_empty() {
            self.done.push(self.small.split().freeze());
        }
        self.done.push(piece);
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.small.is_empty() {
            self.done.push(self.small.freeze());
        }
        self.done
    }
}

/// The code of a stream reset by the peer, read from the error a
/// [`MuxStream`] returns. The mux reports it only inside the error's message
/// ("stream reset (code N)"), so that is where it is read from.
pub fn peer_reset_code(e: &io::Error) -> Option<u32> {
    if e.kind() != io::ErrorKind::ConnectionReset {
        return None;
    }
    let msg = e.to_string();
    let rest = &msg[msg.find("(code ")? + 6..];
    rest[..rest.find(')')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_codes_are_read_from_mux_errors() {
        let e = io::Error::new(io::ErrorKind::ConnectionReset, "stream reset (code 1)");
        assert_eq!(peer_reset_code(&e), Some(1));
        let e = io::Error::new(io::ErrorKind::ConnectionAborted, "mux session ended: x");
        assert_eq!(peer_reset_code(&e), None);
    }

    #[test]
    fn a_block_in_tiny_pieces_is_held_in_few_and_in_order() {
        let mut p = Pieces::default();
        let mut want = Vec::new();
        // a peer's one-byte frames, then a big one, then one-byte frames again
        for i in 0..100_000u32 {
            p.push(Bytes::from(vec![i as u8]));
            want.push(i as u8);
        }
        let big = Bytes::from(vec![7u8; 64 * 1024]);
        p.push(big.clone());
        want.extend_from_slice(&big);
        for i in 0..10u8 {
            p.push(Bytes::from(vec![i]));
            want.push(i);
        }
        let got = p.finish();
        assert!(
            got.len() <= 2 * want.len() / SMALL_PIECE + 1,
            "{} pieces",
            got.len()
        );
        assert!(
            got.iter().any(|b| b.as_ptr() == big.as_ptr()),
            "the big one was copied"
        );
        assert_eq!(got.concat(), want);
    }

    #[tokio::test]
    async fn a_local_pair_carries_bytes_and_the_end_and_resets_with_their_code() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, b) = Shared::local_pair(64);
        let (mut wa, mut rb) = (a.clone(), b.clone());
        wa.write_all(b"hello").await.unwrap();
        wa.shutdown().await.unwrap();
        let mut got = Vec::new();
        rb.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello", "bytes, then a clean end");

        let (a, b) = Shared::local_pair(64);
        let mut rb = b.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            rb.read(&mut buf).await
        });
        tokio::task::yield_now().await;
        a.reset(7);
        let e = reader.await.unwrap().expect_err("a reset is not an end");
        assert_eq!(
            peer_reset_code(&e),
            Some(7),
            "a pending read learns the code"
        );
        let mut wb = b.clone();
        let e = wb
            .write_all(&[0u8; 256])
            .await
            .expect_err("writes fail too");
        assert_eq!(peer_reset_code(&e), Some(7));
        let mut ra = a.clone();
        assert!(
            ra.read(&mut [0u8; 4]).await.is_err(),
            "the end that reset is closed"
        );
    }
}
