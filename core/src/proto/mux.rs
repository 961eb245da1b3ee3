//! The stream multiplexer, sans-IO: one session between two peers, carried by
//! 1..N lanes (TLS connections), holding ordered byte streams.
//!
//! # Model
//!
//! - **Lanes** come and go at any time ([`InEvent::LaneAdded`],
//!   [`InEvent::LaneClosed`]). Each direction of a lane starts with a
//!   [`Message::Hello`] carrying the protocol version and the sender's session
//!   nonce; a lane whose nonce differs from the session's first lane belongs to
//!   another session (e.g. the peer restarted) and resets this one.
//! - **Streams** are numbered: the [`Side::Low`] peer opens even ids, the other
//!   odd ones, so both open without negotiation. Stream 0 ([`CONTROL`]) exists
//!   from the start on both sides. A frame for a new peer id opens it and every
//!   lower unopened peer id (they are reported in order).
//! - **Sending**: written bytes are cut into DATA frames of at most
//!   [`Config::max_payload`] bytes, each given to the lane with the fewest queued
//!   bytes ([`scheduler`]). Stream-level control frames (WINDOW, RESET) go first,
//!   then resends, then the control stream, then the other streams round-robin, a
//!   frame each. Lanes holding [`Config::lane_queue`] bytes take no more bulk data.
//! - **Receiving**: DATA frames are put back in order per stream ([`reassembly`]);
//!   the driver pulls ordered chunks with [`State::read`].
//! - **Flow control** ([`credit`]): the sender may not pass the receiver's grant;
//!   the receiver grants as the application reports what it consumed.
//! - **Reliability across lanes**: every counted frame a lane carries stays in the
//!   lane's `unacked` list until the peer's cumulative per-lane ACK covers it.
//!   When a lane dies its unacknowledged frames are resent on the others; the
//!   receiver drops what it already has. When a stream waits on the network
//!   (out of credit, or all sent and the tail unacknowledged) and the frame
//!   holding its lowest unacknowledged byte has sat on a lane for three times the
//!   slowest lane RTT (at least [`Config::hedge_floor`]), that lane is marked
//!   stalled and its unacknowledged data is copied onto the others ("hedging",
//!   like MPTCP's opportunistic retransmission), so one stalled TCP connection
//!   does not stall the stream. Grants and control-stream frames a lane sits on
//!   are copied one by one the same way.
//! - **Lane liveness**: each lane pings every [`Config::ping_interval`]; the RTTs
//!   break scheduling ties. A lane with no input for [`Config::lane_timeout`] is
//!   dead. The session ends when its last lane dies, on [`InEvent::Close`], or on
//!   bad input from the peer ([`Error`]), which is reported as [`Event::Closed`].
//!
//! Invariants: nothing here reads a clock or does IO; `now` comes with each input.
//! Every buffer is bounded: a stream's reassembly by its window (and
//! [`Config::max_fragments`] pieces), the sum of windows by
//! [`Config::session_window`], the peer's open streams by [`Config::max_streams`],
//! a lane's queue by [`Config::lane_queue`] (plus small control frames).

pub mod credit;
pub mod frame;
pub mod reassembly;
pub mod scheduler;
pub mod send_buffer;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use self::credit::{RecvCredit, SendCredit, SessionCredit};
pub use self::frame::{Message, StreamId};
use self::reassembly::Reassembly;
use self::scheduler::{Lane, Sent};
use self::send_buffer::SendBuffer;
use crate::proto::wire::DecodeError;

/// Version of the lane protocol, carried by [`Message::Hello`].
pub const VERSION: u8 = 1;

/// The control stream, open on both sides from the session's creation.
pub const CONTROL: StreamId = 0;

/// A lane's number, chosen by the driver (unique within a session).
pub type LaneId = u64;

/// Which id space this side opens streams in: the peer with the lower PeerId is
/// [`Side::Low`] and opens even ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Low,
    High,
}

/// Limits and timings of a session. The defaults suit a LAN.
#[derive(Debug, Clone)]
pub struct Config {
    /// Lanes to dial up to while a bulk stream is open.
    pub max_lanes: usize,
    /// Largest DATA payload we send.
    pub max_payload: usize,
    /// Receive window of the control stream and of normal streams.
    pub window: u64,
    /// Receive window of bulk streams.
    pub bulk_window: u64,
    /// Cap on the sum of outstanding grants over all streams but the control one.
    pub session_window: u64,
    /// Bytes queued on a lane before bulk data goes elsewhere.
    pub lane_queue: u64,
    /// Streams the peer may hold open at once (and so may we).
    pub max_streams: usize,
    /// Out-of-order pieces one stream may hold.
    pub max_fragments: usize,
    /// Acknowledge a lane after this many received bytes (and whenever idle).
    pub ack_every: u64,
    pub ping_interval: Duration,
    /// A lane with no input for this long is dead.
    pub lane_timeout: Duration,
    /// Hedge no sooner than this after a frame went out.
    pub hedge_floor: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_lanes: 4,
            max_payload: 64 * 1024,
            window: 1 << 20,
            bulk_window: 16 << 20,
            session_window: 64 << 20,
            lane_queue: 512 * 1024,
            max_streams: 256,
            max_fragments: 4096,
            ack_every: 256 * 1024,
            ping_interval: Duration::from_secs(1),
            lane_timeout: Duration::from_secs(10),
            hedge_floor: Duration::from_millis(50),
        }
    }
}

impl Config {
    /// Receive window (and, in the driver, send buffer) of a stream.
    pub fn window_for(&self, bulk: bool) -> u64 {
        if bulk { self.bulk_window } else { self.window }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed frame on lane {lane}: {error}")]
    Malformed { lane: LaneId, error: DecodeError },
    #[error("lane {lane} sent a frame before its hello")]
    NoHello { lane: LaneId },
    #[error("lane {lane} speaks mux version {version}, this build speaks {VERSION}")]
    Version { lane: LaneId, version: u8 },
    #[error("lane {lane} belongs to another session of the peer")]
    ForeignLane { lane: LaneId },
    #[error("frame for unknown stream {0}")]
    UnknownStream(StreamId),
    #[error("stream {stream}: bytes up to {end} exceed the granted window of {limit}")]
    FlowControl {
        stream: StreamId,
        end: u64,
        limit: u64,
    },
    #[error("stream {stream}: the peer granted credit beyond what is allowed")]
    CreditOverflow { stream: StreamId },
    #[error("stream {stream}: final size changed or data past it")]
    FinalSize { stream: StreamId },
    #[error("the peer opened more than {0} streams")]
    TooManyStreams(usize),
    #[error("stream {stream}: more than {max} out-of-order pieces")]
    TooFragmented { stream: StreamId, max: usize },
    #[error("lane {lane}: ack for {acked} frames, only {sent} were sent")]
    AckOverflow { lane: LaneId, acked: u64, sent: u64 },
    #[error("the last lane closed")]
    AllLanesClosed,
    #[error("closed by the peer (code {0})")]
    ClosedByPeer(u32),
    #[error("closed locally")]
    Closed,
}

impl Error {
    /// The code a CLOSE frame carries for this error: 0 for a plain close.
    fn code(&self) -> u32 {
        match self {
            Self::Closed => 0,
            _ => 1,
        }
    }
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the session is closed: {0}")]
    Closed(Error),
    #[error("too many open streams")]
    TooManyStreams,
}

/// Input from the driver.
#[derive(Debug)]
pub enum InEvent {
    /// A new lane is connected; `dialed` if we dialed it on a [`OutEvent::DialLane`].
    LaneAdded {
        lane: LaneId,
        dialed: bool,
    },
    /// A lane's socket failed or ended.
    LaneClosed(LaneId),
    /// A dial asked for by [`OutEvent::DialLane`] failed.
    DialFailed,
    Message {
        lane: LaneId,
        message: Message,
    },
    /// The lane's bytes could not be decoded.
    Malformed {
        lane: LaneId,
        error: DecodeError,
    },
    /// The lane's writer wrote this many bytes of transmitted frames.
    Written {
        lane: LaneId,
        bytes: u64,
    },
    Write {
        stream: StreamId,
        data: Bytes,
    },
    /// The application finished writing (half-close).
    Finish(StreamId),
    /// The application aborts the stream in both directions.
    Reset {
        stream: StreamId,
        code: u32,
    },
    /// The application read this many more bytes of the stream.
    Consumed {
        stream: StreamId,
        bytes: u64,
    },
    /// The application will not read the stream any more (it finished writing
    /// and let go of it): what arrives is consumed and dropped.
    Discard(StreamId),
    /// The driver has no input waiting: acknowledge what was received.
    Flush,
    /// The time of [`State::poll_timeout`] has come.
    Timeout,
    Close,
}

/// Output for the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum OutEvent {
    /// Write this frame on this lane, after the frames before it.
    Transmit {
        lane: LaneId,
        message: Message,
    },
    /// Close this lane's socket after writing what was transmitted to it.
    CloseLane(LaneId),
    /// Dial one more lane and add it with `dialed: true`.
    DialLane,
    Emit(Event),
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer opened a stream.
    StreamOpened { stream: StreamId, bulk: bool },
    /// [`State::read`] has something for this stream.
    Readable(StreamId),
    /// This many bytes of the stream's send buffer were acknowledged and freed.
    Released { stream: StreamId, bytes: u64 },
    /// The stream was reset (by the peer, or locally by [`InEvent::Reset`]).
    StreamReset { stream: StreamId, code: u32 },
    /// Both directions of the stream completed; its id is not used again.
    StreamClosed(StreamId),
    /// The session is over; every stream with it.
    Closed(Error),
}

/// What [`State::read`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Data(Bytes),
    /// The peer finished the stream; nothing follows.
    Fin,
}

/// Counters of one lane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneStats {
    pub lane: LaneId,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Frames this lane carried again for a dead or stalled lane.
    pub resent_frames: u64,
    pub queued: u64,
    pub unacked_frames: u64,
    pub srtt: Option<Duration>,
}

/// Counters of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub lanes: Vec<LaneStats>,
    pub lanes_closed: u64,
    pub resent_frames: u64,
    pub resent_bytes: u64,
    /// Of the resent frames, those copied off a stalled (not dead) lane.
    pub hedged_frames: u64,
    pub open_streams: usize,
}

/// Buffers of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Written and not yet acknowledged by a lane.
    pub send_buffered: u64,
    /// Received and not yet read by the application (including out of order).
    pub recv_buffered: u64,
    /// The credit the peer granted us (send side).
    pub send_credit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fin {
    Open,
    Pending,
    Sent,
    Acked,
}

#[derive(Debug)]
struct SendSide {
    buf: SendBuffer,
    credit: SendCredit,
    fin: Fin,
}

#[derive(Debug)]
struct RecvSide {
    asm: Reassembly,
    credit: RecvCredit,
    final_size: Option<u64>,
    max_received: u64,
    window_queued: bool,
    discard: bool,
}

#[derive(Debug)]
struct Stream {
    bulk: bool,
    send: Option<SendSide>,
    recv: Option<RecvSide>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctl {
    Window(StreamId),
    Reset { stream: StreamId, code: u32 },
}

mod state;

/// The session's protocol state. See the module docs.
#[derive(Debug)]
pub struct State {
    config: Config,
    side: Side,
    nonce: u64,
    peer_nonce: Option<u64>,
    now: Duration,
    /// Boxed values here and in `streams`: a map allocates whole nodes of
    /// eleven entries, and most sessions hold one lane and one stream.
    lanes: BTreeMap<LaneId, Box<Lane>>,
    had_lane: bool,
    dialing: usize,
    streams: BTreeMap<StreamId, Box<Stream>>,
    next_local: u64,
    next_peer: u64,
    local_open: usize,
    peer_open: usize,
    control: VecDeque<Ctl>,
    resend: VecDeque<Sent>,
    sendable: BTreeSet<StreamId>,
    blocked: BTreeSet<StreamId>,
    starved: BTreeSet<StreamId>,
    rr: StreamId,
    session_credit: SessionCredit,
    out: VecDeque<OutEvent>,
    closed: Option<Error>,
    stats: Stats,
}
