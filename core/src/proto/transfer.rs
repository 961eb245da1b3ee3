//! File transfer, sans-IO: what an offer holds, which paths a receiver may
//! create, the frames of a transfer stream, the order in which a sender reads and
//! a receiver writes, how a resumed file proves the prefix it already has, and
//! progress accounting. File bytes never enter this module: the driver
//! ([`crate::net::transfer`]) reads and writes the ranges it names.
//!
//! # One transfer, one stream
//!
//! The sender opens a bulk mux stream to the receiver (after the stream header
//! [`crate::proto::wire::StreamKind::Transfer`]) and everything of the transfer
//! travels on it, as [`wire`](crate::proto::wire) frames (length, version,
//! postcard) except file bytes, which follow a [`ToReceiver::Block`] frame raw:
//!
//! ```text
//! sender                                        receiver
//!   Offer{id, entries, bytes}, Entries[..]..  →
//!                                             ←  Accept{selected, proofs}, Resume/Have..
//!                                                (or Reject{reason})
//!   per selected file, in entry order:
//!   Start{i, offset}, Block{len} <len bytes>.., End{i, blake3}  →
//!                                             ←  FileOk{i} | FileFailed{i, reason}
//!   Done                                      →
//!                                             ←  Summary{ok, failed}, FIN
//!   FIN
//! ```
//!
//! Nothing waits per file: the sender streams every file back to back and the
//! receiver's per-file answers flow the other way as they come, so 10,000 small
//! files cost no round trip each. Every frame from the peer is checked by the
//! [`receiver::State`] / [`sender::State`] machines before the driver acts on
//! it; a violation is a [`ProtocolError`] that ends the transfer (the stream is
//! reset), never a panic.
//!
//! # Invariants
//!
//! - A receiver only ever creates paths that passed [`safe_path::SafePath`], under
//!   a root name it chose itself ([`safe_path::collision_name`]).
//! - A file is reported done only after the BLAKE3 hash of every byte of it (the
//!   resumed prefix included) equals the hash the sender computed while reading.
//! - A resumed prefix is proven chunk by chunk ([`resume`]) before the sender
//!   skips it; an unproven chunk and everything after it is sent again.
//! - Every collection built from peer input is bounded ([`manifest::MAX_ENTRIES`],
//!   [`wire::MAX_FRAME_LEN`](crate::proto::wire::MAX_FRAME_LEN), [`BLOCK`]).

pub mod manifest;
pub mod message;
pub mod progress;
pub mod receiver;
pub mod resume;
pub mod safe_path;
pub mod sender;
pub mod tree;
pub mod verified;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use self::manifest::{
    Entry, EntryKind, Manifest, ManifestError, OfferEntry, Selection, offer_preview,
};
pub use self::message::{ToReceiver, ToSender};
pub use self::safe_path::{PathError, SafePath, collision_name};

/// Largest payload of one [`ToReceiver::Block`]: a block and its frame header fit
/// in one 1 MiB mux write.
pub const BLOCK: usize = (1 << 20) - 64;

/// Longest reason string accepted in a frame.
pub const MAX_REASON: usize = 512;

/// Stream reset code: the user cancelled (either side).
pub const RESET_CANCELLED: u32 = 1;
/// Stream reset code: the peer broke the protocol.
pub const RESET_PROTOCOL: u32 = 2;

/// Names one transfer. Chosen at random by the sender; shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransferId({self})")
    }
}

impl FromStr for TransferId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 16 {
            return Err(format!("a transfer id is 16 hex digits, not {s:?}"));
        }
        u64::from_str_radix(s, 16)
            .map(Self)
            .map_err(|_| format!("a transfer id is 16 hex digits, not {s:?}"))
    }
}

impl Serialize for TransferId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for TransferId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)?
                .parse()
                .map_err(serde::de::Error::custom)
        } else {
            u64::deserialize(d).map(Self)
        }
    }
}

/// Which way a transfer goes, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Send,
    Receive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Receive => "receive",
        }
    }
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// Sent or received, waiting for the receiver's decision.
    Offered,
    Running,
    Paused,
    /// Stopped by a lost peer, a crash or a shutdown; sending the same files
    /// again resumes it.
    Interrupted,
    /// Every selected file arrived and was verified.
    Complete,
    /// Over, with some files (or the whole transfer) failed.
    Failed,
    Cancelled,
    Rejected,
    /// A later offer of the same files took over its partial files.
    Resumed,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Interrupted => "interrupted",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Resumed => "resumed",
        }
    }

    /// Whether the transfer is over for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Complete | Self::Failed | Self::Cancelled | Self::Rejected | Self::Resumed
        )
    }
}

impl FromStr for TransferState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "offered" => Self::Offered,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "interrupted" => Self::Interrupted,
            "complete" => Self::Complete,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "rejected" => Self::Rejected,
            "resumed" => Self::Resumed,
            _ => return Err(format!("unknown transfer state {s:?}")),
        })
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "send" => Ok(Self::Send),
            "receive" => Ok(Self::Receive),
            _ => Err(format!("unknown direction {s:?}")),
        }
    }
}

/// The peer sent something the transfer protocol does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unexpected {got} while {expected}")]
    Unexpected {
        got: &'static str,
        expected: &'static str,
    },
    #[error("invalid offer: {0}")]
    Manifest(#[from] ManifestError),
    #[error("file {index}: {what}")]
    File { index: u32, what: String },
    #[error("{0}")]
    Invalid(String),
}

/// Cuts a reason string from us to [`MAX_REASON`] bytes on a char boundary.
pub fn short_reason(s: impl Into<String>) -> String {
    let mut s = s.into();
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_ids_print_as_hex_and_parse_back() {
        let id = TransferId(0xab);
        assert_eq!(id.to_string(), "00000000000000ab");
        assert_eq!("00000000000000ab".parse::<TransferId>().unwrap(), id);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"00000000000000ab\"");
        assert!("xyz".parse::<TransferId>().is_err());
        assert!("".parse::<TransferId>().is_err());
        assert!("1".repeat(17).parse::<TransferId>().is_err());
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let r = short_reason("é".repeat(400));
        assert!(r.len() <= MAX_REASON);
        assert!(r.chars().all(|c| c == 'é'));
    }
}
