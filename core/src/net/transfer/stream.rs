//! A mux stream shared by a transfer's tasks: one reads, one writes, and the
//! transfer's main task can reset it with a code at any time (cancel, protocol
//! error) without first collecting the halves back, which `tokio::io::split`
//! would require.
//!
//! Reading and writing each lock the stream only for the length of one poll,
//! never across an await.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::mux::MuxStream;

/// A handle to a shared [`MuxStream`]; clones are the same stream.
#[derive(Debug, Clone)]
pub struct Shared(Arc<Mutex<MuxStream>>);

impl Shared {
    pub fn new(stream: MuxStream) -> Self {
        Self(Arc::new(Mutex::new(stream)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MuxStream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Aborts the stream both ways; the peer's reads and writes fail with
    /// `code` ([`peer_reset_code`]).
    pub fn reset(&self, code: u32) {
        self.lock().reset(code);
    }
}

impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_shutdown(cx)
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
}
