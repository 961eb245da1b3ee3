//! One file to many receivers at the speed of one: a relay forest, sans-IO.
//!
//! Sending a file to N receivers as N copies makes the sender's uplink the
//! bottleneck: the time grows with N. Here every receiver forwards verified
//! groups of the file to a few others, so N receivers take about as long as
//! one and the sender uploads the file about once.
//!
//! # Shape: stripes, one interior role per node (SplitStream)
//!
//! A single fan-out tree of degree d makes every interior node upload d copies
//! of what it receives, so with equal links its children get 1/d of the rate:
//! 16 receivers would take d times as long as one. Following SplitStream
//! (Castro et al., SOSP 2003) the file's groups are dealt round-robin into
//! `k` *stripes* (group `i` is in stripe `i % k`), each stripe travels down its
//! own tree, and each receiver is interior in at most one stripe (its *home*)
//! and a leaf in the others. An interior node with `k` children in its home
//! stripe uploads `k × (rate / k)` = the full rate, leaves' uplinks carry no
//! data, and every receiver gets all `k` stripes, from `k` parents, at the full
//! rate. The sender is the root of every stripe tree with one child per stripe
//! in the steady state: it uploads the file once.
//!
//! The degree of a relay comes from link rates ([`forest`]): the stream rate
//! `R` is what the sender and the receivers' downlinks allow, a relay with
//! uplink `U` serves `⌊k·U/R⌋` children of its stripe (at most
//! [`Config::max_degree`]), a receiver whose downlink cannot keep up with `R`
//! is a leaf everywhere, and with nothing measured every relay gets `k`
//! children, `k` = [`Config::stripes`] (default 4, fewer for fewer receivers).
//!
//! # Roles and state machines
//!
//! - [`coordinator::State`] runs on the sender: it takes the receivers who
//!   accepted ([`coordinator::State::join`]), builds the forest, tells every
//!   receiver its parent per stripe and every relay its children, serves the
//!   top of each stripe from the sender's file, collects progress reports,
//!   repairs the forest, and says when each receiver may stop relaying.
//! - [`member::State`] runs on each receiver that accepted: it subscribes to
//!   its parents, verifies every group against the file's root before it is
//!   written ([`super::verified`]), acknowledges it, forwards it to its own
//!   children ([`relay`]), and reports progress.
//!
//! Consent stays per receiver: a member exists only on a node whose user
//! accepted the offer, the coordinator puts only those in the forest, and a
//! member forwards only the file of its own session.
//!
//! # Messages
//!
//! ```text
//! coordinator → member   Start{size, group, root, stripes}, Attach{stripe, parent},
//!                        Serve{stripe, child}, Unserve{..}, Release, Abort{reason}
//! member → coordinator   Report{have per stripe}, Lost{stripe, parent, corrupt}, Complete
//! child → parent         Subscribe{stripe, outline?, have bitmap}, Ack{index}, Unsubscribe{stripe}
//! parent → child         Outline{first, digests}.., Group{index, len} <len raw bytes>
//! ```
//!
//! A parent pushes the groups of the child's stripe that it holds and the
//! child lacks, in order, at most [`Config::window`] unacknowledged per child
//! (the bounded buffer per child); a child acknowledges a group once it is
//! verified and written. The child's `Subscribe` says which groups it already
//! holds, so after any repair nothing verified is sent again. The outline
//! (32 bytes per group) comes from the first parent, before any group; it is
//! accepted only if it hashes to the root the sender itself sent.
//!
//! # Repairs
//!
//! - A relay leaves (connection lost, seen by the coordinator or by a child):
//!   each of its children is attached, in that stripe, to a relay of the same
//!   stripe with a free slot that is not below it, preferring the one furthest
//!   ahead, else to the least loaded one, else to the sender.
//! - A relay is slow: a child that stays [`Config::slow_lag`] groups behind its
//!   parent for [`Config::slow_checks`] reports in one stripe is moved to a
//!   relay with a free slot, and the slow relay's degree drops to what it
//!   sustained; a receiver behind in most stripes is itself slow and hands its
//!   children over instead.
//! - A group fails verification: the child drops that parent in every stripe
//!   and reports it (`Lost{corrupt}`); the coordinator makes the relay a leaf
//!   (it still receives, verified) and re-attaches all its children. The group
//!   is fetched again from the new parent.
//!
//! # Driving it (the network part)
//!
//! Inputs: [`InEvent`] to `handle(now, event)`, plus
//! [`coordinator::State::join`] / [`coordinator::State::begin`] on the sender.
//! Outputs, in order, are [`OutEvent`]s:
//!
//! - `Send(peer, msg)`: write `msg` as a frame on the session's stream to
//!   `peer` (open one if there is none). The driver frames every message with
//!   the session it belongs to (transfer id and file index).
//! - `SendGroup{to, index}`: read group `index` (its range from
//!   [`Geometry::range`](super::verified::Geometry::range)) from the file (the
//!   sender's original, a member's `.part`, where it was stored before) and
//!   write `Group{index, len}` and the bytes to `to`.
//! - On `Group{index, len}` from a peer the driver reads the `len` bytes into
//!   a buffer (a group is at most [`MAX_GROUP`](super::verified::MAX_GROUP)),
//!   hashes them with [`group_digest`](super::verified::group_digest) and feeds
//!   `Received{from, index, digest}`; then it acts on `Store{index}` (write the
//!   buffer at the group's range, then feed `Stored{index}`) or
//!   `Discard{index}` (drop the buffer). Bytes never reach the file unverified.
//! - `Disconnect(peer)`: the session needs no stream to `peer` any more.
//! - `ScheduleTimer(after, timer)`: feed `Timer(timer)` after `after`.
//! - `Emit(event)`: tell the application ([`Event`]).
//!
//! Report a stream or connection to a peer of the session that breaks as
//! `PeerLost(peer)`. Time comes in as `now`; nothing here reads a clock, and
//! every map whose order reaches the output is ordered, so the simulator
//! (`proto::sim::tree`) replays a run from its seed.

pub mod coordinator;
pub mod forest;
pub mod groups;
pub mod member;
pub mod relay;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::PeerId;

/// A stripe number, below the session's stripe count.
pub type Stripe = u8;

/// Most stripes a session may have.
pub const MAX_STRIPES: u8 = 8;

/// Digests per `Outline` frame (256 KiB, well inside a wire frame).
pub const OUTLINE_PART: usize = 8192;

/// Longest reason in an `Abort`.
pub const MAX_REASON: usize = super::MAX_REASON;

/// Measured link rates of a node, in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub up: u64,
    pub down: u64,
}

/// Settings of a tree session (the coordinator's; members use the window and
/// bounds).
#[derive(Debug, Clone)]
pub struct Config {
    /// Stripes (and the default degree of a relay), at most [`MAX_STRIPES`];
    /// a session with fewer receivers uses one stripe per receiver.
    pub stripes: u8,
    /// Most children a relay serves in its stripe, however fast its uplink.
    pub max_degree: u32,
    /// Whether receivers relay at all (false: the sender serves every
    /// receiver itself, as N separate copies).
    pub relay: bool,
    /// Groups in flight (sent, not acknowledged) per child.
    pub window: u32,
    /// How often members report progress and the coordinator checks for slow
    /// relays.
    pub report_interval: Duration,
    /// A child this many groups behind its parent in one stripe is starved.
    pub slow_lag: u32,
    /// Consecutive starved reports before the child is moved.
    pub slow_checks: u32,
    /// A receiver is moved for slowness at most once per this long.
    pub move_cooldown: Duration,
    /// Most receivers one session takes.
    pub max_members: usize,
    /// Most children a member serves, all stripes together.
    pub max_children: usize,
    /// Subscriptions held while the coordinator's `Serve` is on its way.
    pub max_pending: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            stripes: 4,
            max_degree: 8,
            relay: true,
            window: 4,
            report_interval: Duration::from_secs(1),
            slow_lag: 16,
            slow_checks: 3,
            move_cooldown: Duration::from_secs(5),
            max_members: 10_000,
            max_children: 32,
            max_pending: 16,
        }
    }
}

/// Why a member dropped its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LostReason {
    /// The connection to it broke.
    Gone,
    /// It sent a group or an outline that failed verification.
    Corrupt,
}

/// The messages of a tree session (see the module docs for who sends which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The file: `size` bytes cut in groups of `group`, hashing to `root`,
    /// dealt into `stripes` stripes.
    Start {
        size: u64,
        group: u64,
        root: [u8; 32],
        stripes: u8,
    },
    /// Take stripe `stripe` from `parent` from now on.
    Attach {
        stripe: Stripe,
        parent: PeerId,
    },
    /// Serve stripe `stripe` to `child` when it subscribes.
    Serve {
        stripe: Stripe,
        child: PeerId,
    },
    /// Stop serving stripe `stripe` to `child`.
    Unserve {
        stripe: Stripe,
        child: PeerId,
    },
    /// Nobody needs this member's copy any more: it may close the session.
    Release,
    /// The session is over for everyone.
    Abort {
        reason: String,
    },
    /// Groups verified so far, per stripe.
    Report {
        have: Vec<u32>,
    },
    /// The member dropped its parent of `stripe`.
    Lost {
        stripe: Stripe,
        parent: PeerId,
        reason: LostReason,
    },
    /// Every group is verified and stored.
    Complete,
    /// Send me stripe `stripe`: `have` is a bitmap over the stripe's groups
    /// (bit `j` is group `stripe + j × stripes`); `outline` asks for the
    /// outline first.
    Subscribe {
        stripe: Stripe,
        outline: bool,
        have: Vec<u8>,
    },
    Unsubscribe {
        stripe: Stripe,
    },
    /// Group `index` is verified and stored.
    Ack {
        index: u32,
    },
    /// Group digests `first..first + digests.len()` of the outline.
    Outline {
        first: u32,
        digests: Vec<[u8; 32]>,
    },
    /// `len` raw bytes of group `index` follow this frame.
    Group {
        index: u32,
        len: u32,
    },
}

impl Message {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Attach { .. } => "attach",
            Self::Serve { .. } => "serve",
            Self::Unserve { .. } => "unserve",
            Self::Release => "release",
            Self::Abort { .. } => "abort",
            Self::Report { .. } => "report",
            Self::Lost { .. } => "lost",
            Self::Complete => "complete",
            Self::Subscribe { .. } => "subscribe",
            Self::Unsubscribe { .. } => "unsubscribe",
            Self::Ack { .. } => "ack",
            Self::Outline { .. } => "outline",
            Self::Group { .. } => "group",
        }
    }
}

/// What the driver feeds a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InEvent {
    /// A frame from `peer` (never `Group`: its bytes come as `Received`).
    Message(PeerId, Message),
    /// The bytes of a `Group{index}` from `from` arrived and hash to `digest`.
    Received {
        from: PeerId,
        index: u32,
        digest: [u8; 32],
    },
    /// The driver wrote group `index` as asked by `Store`.
    Stored {
        index: u32,
    },
    /// The connection to `peer` broke.
    PeerLost(PeerId),
    Timer(Timer),
}

/// What a session asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent {
    Send(PeerId, Message),
    /// Read group `index` from the file and send it to `to`.
    SendGroup {
        to: PeerId,
        index: u32,
    },
    /// The group just received verified: write it, then feed `Stored`.
    Store {
        index: u32,
    },
    /// Drop the buffered bytes of group `index` from `from`.
    Discard {
        from: PeerId,
        index: u32,
    },
    Disconnect(PeerId),
    ScheduleTimer(Duration, Timer),
    Emit(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A member reports its progress.
    Report,
    /// The coordinator looks for slow relays.
    Check,
}

/// Why the coordinator moved a receiver to another parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// Its parent left.
    ParentLeft,
    /// Its parent sent a group that failed verification.
    ParentCorrupt,
    /// Its parent could not keep up.
    ParentSlow,
}

/// What the application hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// (member) Every group is verified and stored: the file is whole.
    Complete,
    /// (member) Nobody needs this copy any more: the session can close.
    Released,
    /// (member) `from` sent group `index` (`None`: the outline) that failed
    /// verification; it was dropped and the data is fetched elsewhere.
    Corrupt { from: PeerId, index: Option<u32> },
    /// The session ended without this node's file.
    Failed(String),
    /// (coordinator) `peer` holds the whole, verified file.
    ReceiverComplete(PeerId),
    /// (coordinator) `peer` left before it had the whole file.
    ReceiverLost(PeerId),
    /// (coordinator) `child` takes `stripe` from `to` now.
    Moved {
        stripe: Stripe,
        child: PeerId,
        to: PeerId,
        reason: MoveReason,
    },
    /// (coordinator) Every receiver still in the session is complete.
    AllComplete,
}

/// The stripe group `index` belongs to.
pub fn stripe_of(index: u32, stripes: u8) -> Stripe {
    (index % stripes as u32) as Stripe
}

/// How many of `groups` groups stripe `stripe` holds.
pub fn stripe_len(groups: u32, stripe: Stripe, stripes: u8) -> u32 {
    (groups + stripes as u32 - 1 - stripe as u32) / stripes as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{decode_exact_frame, encode_frame};
    use proptest::prelude::*;

    #[test]
    fn stripes_deal_every_group_once() {
        for groups in 0..40u32 {
            for k in 1..=MAX_STRIPES {
                let total: u32 = (0..k).map(|s| stripe_len(groups, s, k)).sum();
                assert_eq!(total, groups);
                for s in 0..k {
                    let n = (0..groups).filter(|&i| stripe_of(i, k) == s).count() as u32;
                    assert_eq!(n, stripe_len(groups, s, k));
                }
            }
        }
    }

    #[test]
    fn messages_round_trip_and_a_group_header_is_small() {
        let p = PeerId::from_bytes([7; 32]);
        let msgs = vec![
            Message::Start {
                size: 1 << 30,
                group: 1 << 18,
                root: [1; 32],
                stripes: 4,
            },
            Message::Attach {
                stripe: 2,
                parent: p,
            },
            Message::Report {
                have: vec![1, 2, 3],
            },
            Message::Lost {
                stripe: 0,
                parent: p,
                reason: LostReason::Corrupt,
            },
            Message::Subscribe {
                stripe: 1,
                outline: true,
                have: vec![0xff, 1],
            },
            Message::Outline {
                first: 8,
                digests: vec![[3; 32]; 2],
            },
            Message::Group { index: 9, len: 100 },
        ];
        for m in msgs {
            let mut buf = Vec::new();
            encode_frame(&m, &mut buf).unwrap();
            assert_eq!(decode_exact_frame::<Message>(&buf).unwrap(), m);
        }
        let mut buf = Vec::new();
        encode_frame(
            &Message::Group {
                index: u32::MAX,
                len: u32::MAX,
            },
            &mut buf,
        )
        .unwrap();
        assert!(buf.len() <= 16, "{}", buf.len());
        let mut buf = Vec::new();
        encode_frame(
            &Message::Outline {
                first: 0,
                digests: vec![[0xff; 32]; OUTLINE_PART],
            },
            &mut buf,
        )
        .unwrap();
        assert!(buf.len() <= crate::proto::wire::MAX_FRAME_LEN);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = crate::proto::wire::decode_frame::<Message>(&bytes);
        }
    }
}
