//! [`MuxStream`]: one logical stream of a session, as `AsyncRead + AsyncWrite`.
//!
//! Writes go to the session task over its command channel; how much may be in
//! flight is bounded by a per-stream byte budget (the stream's window): a write
//! takes from the budget, the session gives bytes back when a lane acknowledges
//! them. The budget is a shared atomic counter with a waker, not a lock, so the
//! hot path of a write is one atomic subtraction, one copy into a [`Bytes`] and
//! one channel send.
//!
//! Reads come from a bounded channel of ordered chunks that the session fills
//! from the protocol's reassembly; the stream tells the session how much it read
//! so that the peer gets more credit.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::session::Cmd;
use crate::proto::mux::{Error, StreamId};

/// Each write is charged this much on top of its length, and the session gives
/// it back as soon as it takes the write: it bounds the number of queued write
/// commands, so a storm of one-byte writes cannot grow the command queue.
pub(super) const WRITE_OVERHEAD: u64 = 64;

/// Largest single write handed to the session (bigger writes are split).
const MAX_WRITE: usize = 1 << 20;

/// Tell the session what was read at least this often.
const REPORT_EVERY: u64 = 256 * 1024;

/// Ordered input of a stream.
#[derive(Debug)]
pub(super) enum RecvItem {
    Data(Bytes),
    Fin,
}

/// Why a stream cannot go on.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    Reset { code: u32 },
    Session(Error),
}

impl Failure {
    fn to_io(&self) -> io::Error {
        match self {
            Self::Reset { code } => io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("stream reset (code {code})"),
            ),
            Self::Session(e) => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("mux session ended: {e}"),
            ),
        }
    }
}

/// State shared between a stream and the session task.
#[derive(Debug)]
pub(super) struct StreamShared {
    /// Bytes the stream may still write.
    budget: AtomicU64,
    waker: AtomicWaker,
    failure: OnceLock<Failure>,
}

impl StreamShared {
    pub(super) fn new(budget: u64) -> Self {
        Self {
            budget: AtomicU64::new(budget),
            waker: AtomicWaker::new(),
            failure: OnceLock::new(),
        }
    }

    /// Gives budget back (bytes acknowledged) and wakes a waiting writer.
    pub(super) fn release(&self, bytes: u64) {
        self.budget.fetch_add(bytes, Ordering::AcqRel);
        self.waker.wake();
    }

    pub(super) fn fail(&self, failure: Failure) {
        let _ = self.failure.set(failure);
        self.waker.wake();
    }
}

/// One ordered, flow-controlled byte stream of a [`super::MuxSession`].
///
/// - `poll_shutdown` half-closes: the peer reads EOF once it has every byte;
///   reading goes on.
/// - Dropping the stream before `poll_shutdown` **resets** it (both directions
///   fail on the peer with `ConnectionReset`): unfinished output must not look
///   like a complete one. Dropping it after `poll_shutdown` keeps delivering
///   what was written and discards whatever the peer still sends.
/// - `poll_flush` returns at once: written bytes are already in the session,
///   which sends them as fast as lanes and credit allow.
#[derive(Debug)]
pub struct MuxStream {
    id: StreamId,
    cmd: mpsc::UnboundedSender<Cmd>,
    shared: Arc<StreamShared>,
    rx: mpsc::Receiver<RecvItem>,
    chunk: Bytes,
    unreported: u64,
    read_eof: bool,
    write_closed: bool,
    reset: bool,
}

impl MuxStream {
    pub(super) fn new(
        id: StreamId,
        cmd: mpsc::UnboundedSender<Cmd>,
        shared: Arc<StreamShared>,
        rx: mpsc::Receiver<RecvItem>,
    ) -> Self {
        Self {
            id,
            cmd,
            shared,
            rx,
            chunk: Bytes::new(),
            unreported: 0,
            read_eof: false,
            write_closed: false,
            reset: false,
        }
    }

    /// The stream's number within its session (0 is the control stream).
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Aborts the stream in both directions; the peer's reads and writes fail.
    pub fn reset(&mut self, code: u32) {
        if !self.reset {
            self.reset = true;
            let _ = self.cmd.send(Cmd::Reset {
                stream: self.id,
                code,
            });
            self.shared.fail(Failure::Reset { code });
        }
    }

    fn report(&mut self) {
        if self.unreported > 0 {
            let _ = self.cmd.send(Cmd::Consumed {
                stream: self.id,
                bytes: self.unreported,
            });
            self.unreported = 0;
        }
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.reset {
            return Poll::Ready(Err(Failure::Reset { code: 0 }.to_io()));
        }
        let start = buf.filled().len();
        loop {
            if buf.remaining() == 0 {
                break;
            }
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(buf.remaining());
                buf.put_slice(&this.chunk[..n]);
                this.chunk.advance(n);
                this.unreported += n as u64;
                continue;
            }
            if this.read_eof {
                break;
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(RecvItem::Data(b))) => this.chunk = b,
                Poll::Ready(Some(RecvItem::Fin)) => this.read_eof = true,
                Poll::Ready(None) => match this.shared.failure.get() {
                    Some(f) if buf.filled().len() == start => return Poll::Ready(Err(f.to_io())),
                    Some(_) => break,
                    None => this.read_eof = true,
                },
                Poll::Pending => {
                    // Drained: tell the session, so the peer may send more.
                    this.report();
                    if buf.filled().len() == start {
                        return Poll::Pending;
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
        if this.unreported >= REPORT_EVERY || this.read_eof {
            this.report();
        }
        Poll::Ready(Ok(()))
    }
}

impl MuxStream {
    /// Takes up to `want` bytes of the stream's budget, waiting while it is
    /// spent; fails once the stream did.
    fn poll_budget(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if let Some(f) = self.shared.failure.get() {
            return Poll::Ready(Err(f.to_io()));
        }
        if self.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream already shut down",
            )));
        }
        let mut avail = self.shared.budget.load(Ordering::Acquire);
        if avail <= WRITE_OVERHEAD {
            self.shared.waker.register(cx.waker());
            avail = self.shared.budget.load(Ordering::Acquire);
            if let Some(f) = self.shared.failure.get() {
                return Poll::Ready(Err(f.to_io()));
            }
            if avail <= WRITE_OVERHEAD {
                return Poll::Pending;
            }
        }
        let n = want.min(MAX_WRITE).min((avail - WRITE_OVERHEAD) as usize);
        self.shared
            .budget
            .fetch_sub(n as u64 + WRITE_OVERHEAD, Ordering::AcqRel);
        Poll::Ready(Ok(n))
    }

    fn send_write(&self, data: Bytes) -> io::Result<()> {
        self.cmd
            .send(Cmd::Write {
                stream: self.id,
                data,
            })
            .map_err(|_| io::Error::new(io::ErrorKind::ConnectionAborted, "mux session ended"))
    }

    /// Reads up to `max` (> 0) bytes as the very bytes the session received,
    /// without copying them: `Ready(Ok(None))` at the end of the stream. The
    /// way to read into a consumer that takes [`Bytes`] (the disk writer),
    /// where `poll_read` would copy into the caller's buffer.
    pub fn poll_read_bytes(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        if self.reset {
            return Poll::Ready(Err(Failure::Reset { code: 0 }.to_io()));
        }
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(max.max(1));
                let out = self.chunk.split_to(n);
                self.unreported += n as u64;
                if self.unreported >= REPORT_EVERY {
                    self.report();
                }
                return Poll::Ready(Ok(Some(out)));
            }
            if self.read_eof {
                self.report();
                return Poll::Ready(Ok(None));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(RecvItem::Data(b))) => self.chunk = b,
                Poll::Ready(Some(RecvItem::Fin)) => self.read_eof = true,
                Poll::Ready(None) => match self.shared.failure.get() {
                    Some(f) => return Poll::Ready(Err(f.to_io())),
                    None => self.read_eof = true,
                },
                Poll::Pending => {
                    // Drained: tell the session, so the peer may send more.
                    self.report();
                    return Poll::Pending;
                }
            }
        }
    }

    /// Writes `data` without copying it: the session sends and keeps these
    /// very bytes (until the peer acknowledges them). Each call hands over
    /// what the budget allows, split off the front of `data`; `Ready(Ok(()))`
    /// once `data` is empty. The way to write a buffer the caller owns anyway
    /// (a file's block), where `poll_write` would copy it.
    pub fn poll_write_bytes(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<()>> {
        while !data.is_empty() {
            let n = std::task::ready!(self.poll_budget(cx, data.len()))?;
            self.send_write(data.split_to(n))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            if let Some(f) = this.shared.failure.get() {
                return Poll::Ready(Err(f.to_io()));
            }
            if this.write_closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "stream already shut down",
                )));
            }
            return Poll::Ready(Ok(0));
        }
        let n = std::task::ready!(this.poll_budget(cx, buf.len()))?;
        this.send_write(Bytes::copy_from_slice(&buf[..n]))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.shared.failure.get() {
            Some(f) => Poll::Ready(Err(f.to_io())),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(f) = self.shared.failure.get() {
            return Poll::Ready(Err(f.to_io()));
        }
        if !self.write_closed {
            self.write_closed = true;
            let _ = self.cmd.send(Cmd::Finish(self.id));
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        self.report();
        if self.reset || self.shared.failure.get().is_some() {
            return;
        }
        if !self.write_closed {
            self.reset(0);
        } else if !self.read_eof {
            let _ = self.cmd.send(Cmd::Discard(self.id));
        }
    }
}
