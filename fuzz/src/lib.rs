//! The bodies of PeerConnect's fuzz targets: one function per decoder or state
//! machine that bytes from the network reach.
//!
//! Each `pub fn NAME(data: &[u8])` is what the libFuzzer binary
//! `fuzz_targets/NAME.rs` calls, and what `tests/corpus.rs` replays every
//! committed corpus file through with a plain `cargo test` (no libFuzzer, stable).
//! A target panics only when an invariant breaks: a decoder must never panic,
//! what decodes must survive decode∘encode unchanged, and a state machine fed any
//! sequence of inputs must keep its bounds (view sizes, table sizes, windows,
//! queues) and its promises (a gossip broadcast delivered once, a path that
//! stays in its folder).
//!
//! State-machine targets read their input as a sequence of operations: an
//! operation byte, then its arguments; messages are postcard, exactly as they
//! travel, so seeds are real encoded messages ([`seeds`] makes them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use peerconnect::identity::{Identity, PeerId};
use peerconnect::proto::wire;

mod localsend;
pub mod seeds;
mod targets;
pub mod tree;
pub mod tree_coordinator;

pub use localsend::localsend;
pub use targets::*;
pub use tree::tree;
pub use tree_coordinator::tree_coordinator;

/// A relay tree's session stream (`net::transfer::tree`) as a member reads
/// it: the opening frame, frames, groups' raw bytes; decode∘encode of every
/// frame unchanged (asserted inside).
pub fn tree_stream(data: &[u8]) {
    peerconnect::net::transfer::tree_fuzzing::stream(data);
}

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of `fuzz_targets/*.rs` and `corpus/*/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("wire", wire),
    ("discovery", discovery),
    ("mux_frame", mux_frame),
    ("mux_state", mux_state),
    ("transfer", transfer),
    ("transfer_sender", transfer_sender),
    ("safe_path", safe_path),
    ("messaging", messaging),
    ("gossip", gossip),
    ("kademlia", kademlia),
    ("web", web),
    ("rooms", rooms),
    ("tree", tree),
    ("tree_coordinator", tree_coordinator),
    ("localsend", localsend),
    ("tree_stream", tree_stream),
];

/// Most operations one input drives a state machine through (bounds the time
/// one input takes, and keeps simulated time below the caches' retention).
pub const MAX_OPS: usize = 256;

/// A cursor over fuzz bytes. Reads past the end give zeros, so every input is a
/// valid program.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A u16 length, then that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }

    /// One postcard value, as it travels; `None` (one byte skipped) when the
    /// bytes are not one.
    pub fn take<T: DeserializeOwned>(&mut self) -> Option<T> {
        match postcard::take_from_bytes::<T>(self.data) {
            Ok((v, rest)) => {
                self.data = rest;
                Some(v)
            }
            Err(_) => {
                self.u8();
                None
            }
        }
    }
}

/// The writer side of [`Input`], for seeds.
#[derive(Default)]
pub struct Program {
    pub bytes: Vec<u8>,
}

impl Program {
    pub fn op(&mut self, op: u8) -> &mut Self {
        self.bytes.push(op);
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn chunk(&mut self, b: &[u8]) -> &mut Self {
        self.u16(b.len() as u16);
        self.bytes.extend_from_slice(b);
        self
    }

    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(b);
        self
    }

    pub fn msg<T: Serialize>(&mut self, v: &T) -> &mut Self {
        self.bytes
            .extend_from_slice(&postcard::to_stdvec(v).expect("encodes"));
        self
    }
}

/// Fixed identities: the fuzzed node's own and a handful of peers (signing
/// needs real keys, so the fuzzer picks one by index instead of inventing one).
pub fn identities() -> &'static [Identity] {
    static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
    IDS.get_or_init(|| (1..=6).map(|i| Identity::from_secret([i; 32])).collect())
}

/// Peer `i` of a small set (index 0 is the fuzzed node itself).
pub fn peer(i: u8) -> PeerId {
    let ids = identities();
    ids[i as usize % ids.len()].peer_id()
}

pub fn addr(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, i)), 47471)
}

/// decode(encode(m)) == m for a frame (`m` itself came from decoding fuzz bytes,
/// so this is decode∘encode∘decode == decode).
pub fn frame_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(m: &T) {
    let mut buf = Vec::new();
    match wire::encode_frame(m, &mut buf) {
        Ok(()) => {
            let back: T = wire::decode_exact_frame(&buf)
                .unwrap_or_else(|e| panic!("our own frame of {m:?} does not decode: {e}"));
            assert_eq!(&back, m, "frame round trip changed the message");
        }
        // A value decoded from a frame body can re-encode larger only through
        // overlong varints the decoder accepted; then it is too large to send,
        // which is the encoder's business, not a decoding bug.
        Err(wire::EncodeError::TooLarge { .. }) => {}
        Err(e) => panic!("cannot encode a decoded message {m:?}: {e}"),
    }
}

/// The same for a datagram.
pub fn datagram_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(m: &T) {
    match wire::encode_datagram(m) {
        Ok(buf) => {
            let back: T = wire::decode_datagram(&buf)
                .unwrap_or_else(|e| panic!("our own datagram of {m:?} does not decode: {e}"));
            assert_eq!(&back, m, "datagram round trip changed the message");
        }
        Err(wire::EncodeError::TooLarge { .. }) => {}
        Err(e) => panic!("cannot encode a decoded datagram {m:?}: {e}"),
    }
}

/// Pieces shared by the targets.
pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

pub(crate) type Seen<K> = BTreeSet<K>;
pub(crate) type Model<K, V> = BTreeMap<K, V>;
