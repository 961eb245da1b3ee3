//! The one stream of things a user can see happen.
//!
//! Every front end (CLI, web UI WebSocket, uniffi callback, Dart stream) is a thin
//! adapter over [`Event`]. Its JSON form (`serde_json`) is the line format of
//! `peerconnect --json`: one object per line with an `"event"` field.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::PeerId;
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
