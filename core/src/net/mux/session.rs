//! The session task: the one owner of a session's [`State`]. It turns stream
//! commands, lane events, dial results and timers into [`InEvent`]s, and every
//! [`OutEvent`] into IO with one `match`.
//!
//! The loop takes inputs in batches (everything waiting, up to a bound) before
//! it drains outputs, and tells the state machine [`InEvent::Flush`] when no
//! input waits, so acknowledgements are batched under load and prompt when idle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::lane::{LaneEvent, WriterMsg, read_lane, write_lane};
use super::stream::{Failure, MuxStream, RecvItem, StreamShared, WRITE_OVERHEAD};
use super::{BoxedLane, LaneDialer, MuxConfig};
use crate::proto::mux::{
    CONTROL, Chunk, Error, Event, InEvent, LaneId, OpenError, OutEvent, State, Stats, StreamId,
    StreamStats,
};

/// Inputs taken per loop turn before outputs are drained.
const BATCH: usize = 64;

/// Commands from session handles and streams.
pub(super) enum Cmd {
    AddLane {
        io: BoxedLane,
        dialed: bool,
    },
    Open {
        bulk: bool,
        reply: oneshot::Sender<Result<MuxStream, OpenError>>,
    },
    Write {
        stream: StreamId,
        data: Bytes,
    },
    Finish(StreamId),
    Reset {
        stream: StreamId,
        code: u32,
    },
    Consumed {
        stream: StreamId,
        bytes: u64,
    },
    /// The application dropped a finished stream: discard further input.
    Discard(StreamId),
    Stats(oneshot::Sender<Stats>),
    StreamStats(StreamId, oneshot::Sender<Option<StreamStats>>),
    Close,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AddLane { .. } => "AddLane",
            Self::Open { .. } => "Open",
            Self::Write { .. } => "Write",
            Self::Finish(_) => "Finish",
            Self::Reset { .. } => "Reset",
            Self::Consumed { .. } => "Consumed",
            Self::Discard(_) => "Discard",
            Self::Stats(_) => "Stats",
            Self::StreamStats(..) => "StreamStats",
            Self::Close => "Close",
        })
    }
}

/// The session task's view of a stream the application holds.
struct StreamHandle {
    /// `None` once the FIN went out to the stream.
    tx: Option<mpsc::Sender<RecvItem>>,
    shared: Arc<StreamShared>,
}

struct LaneHandle {
    tx: mpsc::UnboundedSender<WriterMsg>,
    reader: JoinHandle<()>,
}

pub(super) struct Session {
    state: State,
    config: MuxConfig,
    epoch: Instant,
    /// Weak, so that the session ends once every handle and stream is gone.
    cmd_tx: mpsc::WeakUnboundedSender<Cmd>,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    lane_tx: mpsc::Sender<LaneEvent>,
    lane_rx: mpsc::Receiver<LaneEvent>,
    lanes: BTreeMap<LaneId, LaneHandle>,
    next_lane: LaneId,
    streams: BTreeMap<StreamId, StreamHandle>,
    incoming: mpsc::UnboundedSender<Box<MuxStream>>,
    dialer: Option<LaneDialer>,
    dials: FuturesUnordered<BoxFuture<'static, std::io::Result<BoxedLane>>>,
    lane_count: Arc<AtomicUsize>,
    lanes_refused: Arc<AtomicU64>,
    closed: watch::Sender<Option<Error>>,
}

/// What [`Session::start`] hands back to the [`super::MuxSession`] handle.
pub(super) struct Handles {
    pub cmd: mpsc::UnboundedSender<Cmd>,
    pub control: MuxStream,
    pub incoming: mpsc::UnboundedReceiver<Box<MuxStream>>,
    pub lane_count: Arc<AtomicUsize>,
    pub lanes_refused: Arc<AtomicU64>,
    pub closed: watch::Receiver<Option<Error>>,
}

impl Session {
    /// Spawns the session task (needs a tokio runtime).
    pub(super) fn start(config: MuxConfig, state: State, dialer: Option<LaneDialer>) -> Handles {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (lane_tx, lane_rx) = mpsc::channel(config.lane_events);
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let (closed, closed_rx) = watch::channel(None);
        let lane_count = Arc::new(AtomicUsize::new(0));
        let lanes_refused = Arc::new(AtomicU64::new(0));
        let mut session = Self {
            state,
            config,
            epoch: Instant::now(),
            cmd_tx: cmd_tx.downgrade(),
            cmd_rx,
            lane_tx,
            lane_rx,
            lanes: BTreeMap::new(),
            next_lane: 0,
            streams: BTreeMap::new(),
            incoming: incoming_tx,
            dialer,
            dials: FuturesUnordered::new(),
            lane_count: lane_count.clone(),
            lanes_refused: lanes_refused.clone(),
            closed,
        };
        let control = session.new_stream(CONTROL, false, cmd_tx.clone());
        tokio::spawn(session.run());
        Handles {
            cmd: cmd_tx,
            control,
            incoming,
            lane_count,
            lanes_refused,
            closed: closed_rx,
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn new_stream(
        &mut self,
        id: StreamId,
        bulk: bool,
        cmd: mpsc::UnboundedSender<Cmd>,
    ) -> MuxStream {
        let shared = Arc::new(StreamShared::new(
            self.state.config().window_for(bulk) + WRITE_OVERHEAD,
        ));
        let (tx, rx) = mpsc::channel(self.config.stream_queue);
        self.streams.insert(
            id,
            StreamHandle {
                tx: Some(tx),
                shared: shared.clone(),
            },
        );
        MuxStream::new(id, cmd, shared, rx)
    }

    async fn run(mut self) {
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut deadline = None;
        loop {
            self.drain();
            if self.state.closed().is_some() {
                break;
            }
            let next = self.state.poll_timeout();
            if next != deadline {
                deadline = next;
                let at = next.unwrap_or(Duration::from_secs(3600) + self.now());
                sleep.as_mut().reset(self.epoch + at);
            }
            tokio::select! {
                biased;
                ev = self.lane_rx.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_lane_event(ev);
                }
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    // Every handle and stream is gone: nobody can use the session.
                    None => self.handle(InEvent::Close),
                },
                Some(res) = self.dials.next(), if !self.dials.is_empty() => match res {
                    Ok(io) => self.add_lane(io, true),
                    Err(e) => {
                        tracing::debug!(error = %e, "mux lane dial failed");
                        self.handle(InEvent::DialFailed);
                    }
                },
                () = &mut sleep => {
                    deadline = None;
                    self.handle(InEvent::Timeout);
                }
            }
            // Take what else is waiting before turning outputs into IO.
            for _ in 0..BATCH {
                let mut idle = true;
                if let Ok(ev) = self.lane_rx.try_recv() {
                    self.on_lane_event(ev);
                    idle = false;
                }
                if let Ok(cmd) = self.cmd_rx.try_recv() {
                    self.on_cmd(cmd);
                    idle = false;
                }
                if idle {
                    self.handle(InEvent::Flush);
                    break;
                }
            }
        }
        self.drain();
        self.shut_down();
    }

    fn handle(&mut self, event: InEvent) {
        let now = self.now();
        self.state.handle(now, event);
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::AddLane { io, dialed } => self.add_lane(io, dialed),
            Cmd::Open { bulk, reply } => {
                let Some(cmd) = self.cmd_tx.upgrade() else {
                    return;
                };
                let res = self
                    .state
                    .open_stream(bulk)
                    .map(|id| self.new_stream(id, bulk, cmd));
                let _ = reply.send(res);
            }
            Cmd::Write { stream, data } => {
                if let Some(h) = self.streams.get(&stream) {
                    h.shared.release(WRITE_OVERHEAD);
                }
                self.handle(InEvent::Write { stream, data });
            }
            Cmd::Finish(stream) => self.handle(InEvent::Finish(stream)),
            Cmd::Reset { stream, code } => {
                self.streams.remove(&stream);
                self.handle(InEvent::Reset { stream, code });
            }
            Cmd::Consumed { stream, bytes } => {
                self.handle(InEvent::Consumed { stream, bytes });
                self.deliver(stream);
            }
            Cmd::Discard(stream) => {
                self.streams.remove(&stream);
                self.handle(InEvent::Discard(stream));
            }
            Cmd::Stats(reply) => {
                let _ = reply.send(self.state.stats());
            }
            Cmd::StreamStats(stream, reply) => {
                let _ = reply.send(self.state.stream_stats(stream));
            }
            Cmd::Close => self.handle(InEvent::Close),
        }
    }

    fn on_lane_event(&mut self, ev: LaneEvent) {
        match ev {
            LaneEvent::Frames { lane, frames } => {
                for message in frames {
                    self.handle(InEvent::Message { lane, message });
                }
            }
            LaneEvent::Written { lane, bytes } => self.handle(InEvent::Written { lane, bytes }),
            LaneEvent::Malformed { lane, error } => self.handle(InEvent::Malformed { lane, error }),
            LaneEvent::Closed { lane } => {
                if let Some(h) = self.lanes.remove(&lane) {
                    h.reader.abort();
                    self.lane_count.store(self.lanes.len(), Ordering::Release);
                    self.handle(InEvent::LaneClosed(lane));
                }
            }
        }
    }

    fn add_lane(&mut self, io: BoxedLane, dialed: bool) {
        if self.lanes.len() >= self.config.max_lanes_held {
            // Dropping the lane closes its socket; the session goes on.
            self.lanes_refused.fetch_add(1, Ordering::AcqRel);
            tracing::debug!(
                limit = self.config.max_lanes_held,
                "refusing a lane: the session holds the most lanes allowed"
            );
            drop(io);
            return;
        }
        let lane = self.next_lane;
        self.next_lane += 1;
        let (read, write) = tokio::io::split(io);
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_lane(lane, read, self.lane_tx.clone()));
        tokio::spawn(write_lane(lane, write, rx, self.lane_tx.clone()));
        self.lanes.insert(lane, LaneHandle { tx, reader });
        self.lane_count.store(self.lanes.len(), Ordering::Release);
        self.handle(InEvent::LaneAdded { lane, dialed });
    }

    /// Turns every output into IO.
    fn drain(&mut self) {
        while let Some(out) = self.state.poll() {
            match out {
                OutEvent::Transmit { lane, message } => {
                    if let Some(h) = self.lanes.get(&lane) {
                        let _ = h.tx.send(WriterMsg::Frame(message));
                    }
                }
                OutEvent::CloseLane(lane) => {
                    if let Some(h) = self.lanes.remove(&lane) {
                        let _ = h.tx.send(WriterMsg::Close);
                        h.reader.abort();
                        self.lane_count.store(self.lanes.len(), Ordering::Release);
                    }
                }
                OutEvent::DialLane => match &self.dialer {
                    Some(dial) => self.dials.push(dial()),
                    None => {
                        let now = self.now();
                        self.state.handle(now, InEvent::DialFailed);
                    }
                },
                OutEvent::Emit(event) => self.on_event(event),
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::StreamOpened { stream, bulk } => {
                if let Some(cmd) = self.cmd_tx.upgrade() {
                    let s = self.new_stream(stream, bulk, cmd);
                    let _ = self.incoming.send(Box::new(s));
                }
            }
            Event::StreamClosed(stream) => {
                self.streams.remove(&stream);
            }
            Event::Readable(stream) => self.deliver(stream),
            Event::Released { stream, bytes } => {
                if let Some(h) = self.streams.get(&stream) {
                    h.shared.release(bytes);
                }
            }
            Event::StreamReset { stream, code } => {
                if let Some(h) = self.streams.remove(&stream) {
                    h.shared.fail(Failure::Reset { code });
                }
            }
            Event::Closed(error) => {
                tracing::debug!(%error, "mux session closed");
                for (_, h) in std::mem::take(&mut self.streams) {
                    h.shared.fail(Failure::Session(error.clone()));
                }
                self.closed.send_replace(Some(error));
            }
        }
    }

    /// Moves a stream's ordered chunks into its channel while there is room.
    fn deliver(&mut self, stream: StreamId) {
        let Some(h) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(tx) = &h.tx else {
            return;
        };
        loop {
            let Ok(permit) = tx.try_reserve() else {
                // Full: the stream reports consumption as it drains, which
                // brings us back here. Closed: the stream is being dropped.
                return;
            };
            match self.state.read(stream) {
                Some(Chunk::Data(b)) => permit.send(RecvItem::Data(b)),
                Some(Chunk::Fin) => {
                    permit.send(RecvItem::Fin);
                    h.tx = None;
                    return;
                }
                None => return,
            }
        }
    }

    fn shut_down(&mut self) {
        for (_, h) in std::mem::take(&mut self.lanes) {
            let _ = h.tx.send(WriterMsg::Close);
            h.reader.abort();
        }
        self.lane_count.store(0, Ordering::Release);
        if self.closed.borrow().is_none() {
            self.closed.send_replace(Some(Error::Closed));
        }
        for (_, h) in std::mem::take(&mut self.streams) {
            h.shared.fail(Failure::Session(Error::Closed));
        }
    }
}
