//! The one stream of things a user can see happen.
//!
//! Every front end (CLI, web UI WebSocket, uniffi callback, Dart stream) is a thin
//! adapter over [`Event`]. Its JSON form (`serde_json`) is the line format of
//! `peerconnect --json`: one object per line with an `"event"` field.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::PeerId;
use crate::proto::messaging::{MessageId, MessageInfo, Status};
use crate::proto::transfer::{Direction, OfferEntry, TransferId};
use crate::proto::wire::DeviceKind;

/// How much we trust a peer. New peers are `Unknown` until the user checks the
/// verification code and trusts them; `Blocked` peers' connections are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    #[default]
    Unknown,
    Trusted,
    Blocked,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Trusted => "trusted",
            Self::Blocked => "blocked",
        }
    }
}

impl std::str::FromStr for Trust {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "unknown" => Ok(Self::Unknown),
            "trusted" => Ok(Self::Trusted),
            "blocked" => Ok(Self::Blocked),
            _ => Err(format!("unknown trust level {s:?}")),
        }
    }
}

/// A peer as front ends show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: PeerId,
    pub name: String,
    pub kind: DeviceKind,
    /// Addresses to dial, best first.
    pub addrs: Vec<SocketAddr>,
    pub trust: Trust,
    /// Whether a TLS session to this peer is up now.
    pub connected: bool,
    /// The 6-digit code both sides of this pair show (see
    /// [`crate::identity::verification_code`]).
    pub verification_code: String,
    /// What a LocalSend device (kind `localsend`) says of itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localsend: Option<LocalSendDevice>,
}

/// A LocalSend device's own description (its announcement or `register`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSendDevice {
    /// Its name as it gives it (also the peer's `name`).
    pub alias: String,
    #[serde(default)]
    pub device_model: Option<String>,
    /// `mobile`, `desktop`, `web`, `headless` or `server`.
    pub device_type: String,
    /// SHA-256 of its certificate (HTTPS) or a random id (HTTP).
    pub fingerprint: String,
    /// `https` or `http`.
    pub protocol: String,
    /// Its protocol version (`2.1`, `2.2`, ...).
    pub version: String,
}

/// Everything that happens, in one enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The node is up: its id and the addresses others can dial.
    Listening {
        id: PeerId,
        name: String,
        addrs: Vec<SocketAddr>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        web: Option<String>,
    },
    /// A peer appeared (discovery, an incoming connection, or `--connect`).
    PeerFound { peer: PeerInfo },
    /// A known peer changed name, addresses or trust.
    PeerUpdated { peer: PeerInfo },
    /// A peer went silent or away.
    PeerLost { id: PeerId },
    /// A TLS session to the peer is up; both sides show the same code.
    PeerConnected {
        peer: PeerInfo,
        verification_code: String,
    },
    /// The last connection to the peer closed.
    PeerDisconnected {
        id: PeerId,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
    },
    /// Something failed that the user should know about.
    Error { message: String },
    /// A message in a room we are in (ours included); its author's signature
    /// was checked.
    RoomMessage {
        room: String,
        message: crate::proto::rooms::RoomMessage,
    },
    /// We joined a room.
    RoomJoined { room: String },
    /// We left a room.
    RoomLeft { room: String },
    /// A peer offers files: answer with `Node::accept_offer` (all, some or
    /// none) or `Node::reject_offer`, unless `auto_accepted` says the node
    /// already took it (`--yes`, a trusted peer, or a resumed transfer).
    Offer {
        id: TransferId,
        peer: PeerId,
        /// The peer's device name.
        name: String,
        verification_code: String,
        trusted: bool,
        auto_accepted: bool,
        files: u64,
        total_bytes: u64,
        /// Free bytes in the download folder.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        free_bytes: Option<u64>,
        /// The first entries (at most 100, and 32 KiB of names): `files`
        /// and `total_bytes` count them all.
        entries: Vec<OfferEntry>,
    },
    /// How a running transfer is doing (about every 100 ms while it moves).
    Progress {
        id: TransferId,
        peer: PeerId,
        direction: Direction,
        done_bytes: u64,
        total_bytes: u64,
        files_done: u64,
        files_total: u64,
        /// Relative path of the file being worked on.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        file: Option<String>,
        file_done: u64,
        file_bytes: u64,
        /// File bytes that crossed the network (resumed prefixes excluded).
        transferred: u64,
        /// Bytes per second over the last seconds.
        rate: u64,
        paused: bool,
    },
    /// One file arrived whole and verified (`path`: where it is on this
    /// machine; `blake3`: hex hash of its content).
    TransferDone {
        id: TransferId,
        peer: PeerId,
        direction: Direction,
        path: String,
        bytes: u64,
        blake3: String,
    },
    /// One file failed (`path` set), or the whole transfer did (`path` unset:
    /// the transfer's final event).
    TransferFailed {
        id: TransferId,
        peer: PeerId,
        direction: Direction,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        path: Option<String>,
        error: String,
    },
    /// The transfer was cancelled (final).
    TransferCancelled {
        id: TransferId,
        peer: PeerId,
        direction: Direction,
        by_peer: bool,
    },
    /// The receiver refused the offer (final).
    TransferRejected {
        id: TransferId,
        peer: PeerId,
        direction: Direction,
        reason: String,
    },
    /// Every selected file was answered (final): `failed` of `files` failed.
    TransferComplete {
        id: TransferId,
        peer: PeerId,
        direction: Direction,
        files: u64,
        failed: u64,
        bytes: u64,
        /// File bytes that crossed the network (less than `bytes` when resumed).
        transferred: u64,
    },
    /// A direct message arrived (each message once, however often it was sent).
    MessageReceived { message: MessageInfo },
    /// A message we sent moved to `status` (pending, sent, delivered, read).
    MessageStatus {
        id: MessageId,
        peer: PeerId,
        status: Status,
    },
}

impl Event {
    /// The transfer an event is about, if any.
    pub fn transfer_id(&self) -> Option<TransferId> {
        match self {
            Self::Offer { id, .. }
            | Self::Progress { id, .. }
            | Self::TransferDone { id, .. }
            | Self::TransferFailed { id, .. }
            | Self::TransferCancelled { id, .. }
            | Self::TransferRejected { id, .. }
            | Self::TransferComplete { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// Whether this is a transfer's last event.
    pub fn ends_transfer(&self) -> bool {
        matches!(
            self,
            Self::TransferFailed { path: None, .. }
                | Self::TransferCancelled { .. }
                | Self::TransferRejected { .. }
                | Self::TransferComplete { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_tagged_json_lines() {
        let e = Event::PeerLost {
            id: PeerId::from_bytes([0; 32]),
        };
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["event"], "peer_lost");
        assert_eq!(j["id"], "a".repeat(52));
        let e = Event::Error {
            message: "boom".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"error","message":"boom"}"#
        );
    }
}
