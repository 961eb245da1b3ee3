//! The multiplexer's tokio driver: a [`MuxSession`] per peer, carried by 1..N
//! lanes (authenticated TLS connections), holding [`MuxStream`]s that implement
//! `AsyncRead + AsyncWrite`. The protocol itself is [`crate::proto::mux`].
//!
//! # Tasks
//!
//! - One **session task** owns the protocol [`State`](crate::proto::mux::State):
//!   no lock around it. Handles and streams talk to it over its command channel.
//! - Per lane, a **reader** task (large reads, frames split off without copying
//!   payloads) and a **writer** task (frames batched into writes of up to
//!   256 KiB, flushed when idle).
//! - Streams hold two small pieces of shared state with the session task: a byte
//!   budget (an atomic counter plus waker) that bounds what a stream may have
//!   written and not yet acknowledged, and a set-once failure. Both exist so the
//!   write path costs an atomic operation and a channel send rather than a
//!   round-trip; the budget, not the channel's length, bounds memory: a write is
//!   charged its length plus [`stream`]'s fixed overhead, so even an unbounded
//!   channel holds at most `window / 64` commands per stream.
//!
//! # Lifecycle
//!
//! - [`MuxSession::add_lane`] takes lanes from either side at any time, after the
//!   node's own handshake. With a [`LaneDialer`], opening a bulk stream dials
//!   lanes up to [`Config::max_lanes`](crate::proto::mux::Config::max_lanes).
//! - The session ends when its last lane dies, on [`MuxSession::close`], when the
//!   peer sends bad input, or when every handle and stream is dropped. Then every
//!   stream's reads and writes fail, and [`MuxSession::closed`] returns the
//!   reason.
//! - Stream drop semantics are documented on [`MuxStream`].

mod lane;
mod session;
mod stream;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

pub use self::lane::LaneIo;
use self::session::{Cmd, Session};
pub use self::stream::MuxStream;
use crate::proto::mux::State;
pub use crate::proto::mux::{
    Config, Error, LaneStats, OpenError, Side, Stats, StreamId, StreamStats,
};

/// A lane: any ordered, reliable byte stream (a TLS connection in production).
pub type BoxedLane = Box<dyn LaneIo>;

/// Dials one more lane to the session's peer (already through the node's
/// handshake), for sessions that want more lanes for bulk streams.
pub type LaneDialer = Arc<dyn Fn() -> BoxFuture<'static, io::Result<BoxedLane>> + Send + Sync>;

/// Settings of a session: the protocol's [`Config`] plus the driver's queues.
#[derive(Debug, Clone)]
pub struct MuxConfig {
    pub mux: Config,
    /// Ordered chunks queued towards a stream that is not reading.
    pub stream_queue: usize,
    /// Frame batches queued from lane readers to the session task.
    pub lane_events: usize,
    /// Lanes the session holds at once, whoever dialed them; a lane added past
    /// it is closed at once and counted in [`MuxSession::lanes_refused`].
    pub max_lanes_held: usize,
}

impl Default for MuxConfig {
    fn default() -> Self {
        Self {
            mux: Config::default(),
            stream_queue: 64,
            lane_events: 256,
            max_lanes_held: usize::MAX,
        }
    }
}

/// One multiplexed session with a peer. Cheap to clone; every clone is the same
/// session.
#[derive(Clone, Debug)]
pub struct MuxSession {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cmd: mpsc::UnboundedSender<Cmd>,
    control: std::sync::Mutex<Option<MuxStream>>,
    /// Boxed: a channel allocates room for 32 items at once, per session.
    incoming: Mutex<mpsc::UnboundedReceiver<Box<MuxStream>>>,
    lane_count: Arc<AtomicUsize>,
    lanes_refused: Arc<std::sync::atomic::AtomicU64>,
    closed: watch::Receiver<Option<Error>>,
}

impl MuxSession {
    /// A session with no lanes yet; `side` is [`Side::Low`] on the peer whose
    /// PeerId is lower. Spawns the session task: call within a tokio runtime.
    pub fn new(config: MuxConfig, side: Side) -> Self {
        Self::with_dialer(config, side, None)
    }

    /// Like [`MuxSession::new`], with a way to dial more lanes on demand.
    pub fn with_dialer(config: MuxConfig, side: Side, dialer: Option<LaneDialer>) -> Self {
        let state = State::new(config.mux.clone(), side, rand::random());
        let h = Session::start(config, state, dialer);
        Self {
            inner: Arc::new(Inner {
                cmd: h.cmd,
                control: std::sync::Mutex::new(Some(h.control)),
                incoming: Mutex::new(h.incoming),
                lane_count: h.lane_count,
                lanes_refused: h.lanes_refused,
                closed: h.closed,
            }),
        }
    }

    /// Adds a connected lane (dialed by either side). Ignored once the session
    /// is closed.
    pub async fn add_lane<S>(&self, io: S)
    where
        S: LaneIo,
    {
        let _ = self.inner.cmd.send(Cmd::AddLane {
            io: Box::new(io),
            dialed: false,
        });
    }

    /// Opens a stream for small, latency-sensitive traffic (normal window).
    pub async fn open_stream(&self) -> Result<MuxStream, OpenError> {
        self.open(false).await
    }

    /// Opens a stream for bulk transfer: the larger window, and lanes are dialed
    /// up to the maximum if a dialer was given.
    pub async fn open_bulk_stream(&self) -> Result<MuxStream, OpenError> {
        self.open(true).await
    }

    async fn open(&self, bulk: bool) -> Result<MuxStream, OpenError> {
        let (reply, rx) = oneshot::channel();
        let _ = self.inner.cmd.send(Cmd::Open { bulk, reply });
        match rx.await {
            Ok(res) => res,
            Err(_) => Err(OpenError::Closed(self.error())),
        }
    }

    /// The next stream the peer opened, or `None` once the session is closed.
    pub async fn accept_stream(&self) -> Option<MuxStream> {
        let mut incoming = self.inner.incoming.lock().await;
        incoming.recv().await.map(|s| *s)
    }

    /// The control stream (stream 0), open from the start on both sides. Only the
    /// first call gets it; later calls return `None`.
    pub async fn control(&self) -> Option<MuxStream> {
        self.inner
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Lanes currently carrying the session.
    pub fn lane_count(&self) -> usize {
        self.inner.lane_count.load(Ordering::Acquire)
    }

    /// Lanes closed on arrival because the session held
    /// [`MuxConfig::max_lanes_held`] already.
    pub fn lanes_refused(&self) -> u64 {
        self.inner.lanes_refused.load(Ordering::Acquire)
    }

    /// Counters per lane and for the session (empty once closed).
    pub async fn stats(&self) -> Stats {
        let (reply, rx) = oneshot::channel();
        let _ = self.inner.cmd.send(Cmd::Stats(reply));
        rx.await.unwrap_or_default()
    }

    /// Buffers of one stream, or `None` once it is closed.
    pub async fn stream_stats(&self, stream: StreamId) -> Option<StreamStats> {
        let (reply, rx) = oneshot::channel();
        let _ = self.inner.cmd.send(Cmd::StreamStats(stream, reply));
        rx.await.ok().flatten()
    }

    /// Ends the session: the peer is told, every stream fails, lanes close after
    /// writing what is queued on them. Unsent stream data is dropped: finish
    /// streams and wait for the peer's answer first for a graceful end.
    pub fn close(&self) {
        let _ = self.inner.cmd.send(Cmd::Close);
    }

    /// Waits for the session to end and says why.
    pub async fn closed(&self) -> Error {
        let mut rx = self.inner.closed.clone();
        match rx.wait_for(|c| c.is_some()).await {
            Ok(e) => e.clone().unwrap_or(Error::Closed),
            Err(_) => Error::Closed,
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.borrow().is_some()
    }

    fn error(&self) -> Error {
        self.inner.closed.borrow().clone().unwrap_or(Error::Closed)
    }
}
