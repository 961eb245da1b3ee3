//! [`Event`] and the records it carries, mirroring [`peerconnect::Event`] with
//! plain types: ids are PeerId strings (52 base32 characters), addresses are
//! `HOST:PORT` strings.

use crate::messaging::{DeliveryStatus, Message};
use crate::rooms::RoomMessage;
use crate::transfer::{Direction, OfferEntry};

/// How much we trust a peer (see [`peerconnect::Trust`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Trust {
    Unknown,
    Trusted,
    Blocked,
}

/// What kind of device a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum DeviceKind {
    Desktop,
    Laptop,
    Phone,
    Tablet,
    Server,
    Browser,
    Other,
}

/// A peer as a list shows it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Peer {
    pub id: String,
    pub name: String,
    pub kind: DeviceKind,
    /// Addresses to dial, best first.
    pub addrs: Vec<String>,
    pub trust: Trust,
    /// Whether a session to this peer is up now.
    pub connected: bool,
    /// The 6-digit code both sides of this pair show; compare it out of band
    /// before trusting the peer.
    pub verification_code: String,
}

/// A peer found through the DHT.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FoundPeer {
    pub id: String,
    pub name: String,
    pub addrs: Vec<String>,
}

/// Everything that happens on the node, in the order it happens.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum Event {
    /// The node is up: its id and the addresses others can dial.
    Listening {
        id: String,
        name: String,
        addrs: Vec<String>,
        web: Option<String>,
    },
    /// A peer appeared (discovery, an incoming connection, or a dial).
    PeerFound { peer: Peer },
    /// A known peer changed name, addresses or trust.
    PeerUpdated { peer: Peer },
    /// A peer went silent or away.
    PeerLost { id: String },
    /// A session to the peer is up; both sides show the same code.
    PeerConnected {
        peer: Peer,
        verification_code: String,
    },
    /// The last connection to the peer closed.
    PeerDisconnected { id: String, reason: Option<String> },
    /// Something failed that the user should know about.
    Error { message: String },
    /// A direct message arrived (each message once).
    MessageReceived { message: Message },
    /// A message we sent moved on (pending, sent, delivered, read).
    MessageStatus {
        id: String,
        peer: String,
        status: DeliveryStatus,
    },
    /// A message in a room we are in (ours included).
    RoomMessage { room: String, message: RoomMessage },
    /// We joined a room.
    RoomJoined { room: String },
    /// We left a room.
    RoomLeft { room: String },
    /// A peer offers files: answer with `accept_offer` or `reject_offer`,
    /// unless `auto_accepted` says the node already took it.
    Offer {
        /// The transfer id (16 hex digits).
        id: String,
        peer: String,
        /// The peer's device name.
        name: String,
        verification_code: String,
        trusted: bool,
        auto_accepted: bool,
        files: u64,
        total_bytes: u64,
        /// Free bytes in the download folder.
        free_bytes: Option<u64>,
        entries: Vec<OfferEntry>,
    },
    /// How a running transfer is doing (about every 100 ms while it moves).
    Progress {
        id: String,
        peer: String,
        direction: Direction,
        done_bytes: u64,
        total_bytes: u64,
        files_done: u64,
        files_total: u64,
        /// Relative path of the file being worked on.
        file: Option<String>,
        file_done: u64,
        file_bytes: u64,
        /// File bytes that crossed the network (resumed prefixes excluded).
        transferred: u64,
        /// Bytes per second over the last seconds.
        rate: u64,
        paused: bool,
    },
    /// One file arrived whole and verified: where it is on this machine and
    /// the hex BLAKE3 hash of its content.
    TransferDone {
        id: String,
        peer: String,
        direction: Direction,
        path: String,
        bytes: u64,
        blake3: String,
    },
    /// One file failed (`path` set), or the whole transfer did (`path` unset:
    /// the transfer's final event).
    TransferFailed {
        id: String,
        peer: String,
        direction: Direction,
        path: Option<String>,
        error: String,
    },
    /// The transfer was cancelled (final).
    TransferCancelled {
        id: String,
        peer: String,
        direction: Direction,
        by_peer: bool,
    },
    /// The receiver refused the offer (final).
    TransferRejected {
        id: String,
        peer: String,
        direction: Direction,
        reason: String,
    },
    /// Every selected file was answered (final): `failed` of `files` failed.
    TransferComplete {
        id: String,
        peer: String,
        direction: Direction,
        files: u64,
        failed: u64,
        bytes: u64,
        /// File bytes that crossed the network (less than `bytes` when resumed).
        transferred: u64,
    },
    /// An event of a newer core this binding has no variant for yet: its name
    /// and its JSON form, as `peerconnect --json` prints it.
    Other { event: String, json: String },
}

impl From<peerconnect::Trust> for Trust {
    fn from(t: peerconnect::Trust) -> Self {
        match t {
            peerconnect::Trust::Unknown => Self::Unknown,
            peerconnect::Trust::Trusted => Self::Trusted,
            peerconnect::Trust::Blocked => Self::Blocked,
        }
    }
}

impl From<Trust> for peerconnect::Trust {
    fn from(t: Trust) -> Self {
        match t {
            Trust::Unknown => Self::Unknown,
            Trust::Trusted => Self::Trusted,
            Trust::Blocked => Self::Blocked,
        }
    }
}

impl From<peerconnect::proto::wire::DeviceKind> for DeviceKind {
    fn from(k: peerconnect::proto::wire::DeviceKind) -> Self {
        use peerconnect::proto::wire::DeviceKind as K;
        match k {
            K::Desktop => Self::Desktop,
            K::Laptop => Self::Laptop,
            K::Phone => Self::Phone,
            K::Tablet => Self::Tablet,
            K::Server => Self::Server,
            K::Browser => Self::Browser,
            // A LocalSend device: the bindings' enum (and its generated
            // Kotlin/Swift/Dart mirrors) has no kind of its own for it yet.
            K::Other | K::LocalSend => Self::Other,
        }
    }
}

impl From<DeviceKind> for peerconnect::proto::wire::DeviceKind {
    fn from(k: DeviceKind) -> Self {
        match k {
            DeviceKind::Desktop => Self::Desktop,
            DeviceKind::Laptop => Self::Laptop,
            DeviceKind::Phone => Self::Phone,
            DeviceKind::Tablet => Self::Tablet,
            DeviceKind::Server => Self::Server,
            DeviceKind::Browser => Self::Browser,
            DeviceKind::Other => Self::Other,
        }
    }
}

pub(crate) fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(T::to_string).collect()
}

impl From<peerconnect::PeerInfo> for Peer {
    fn from(p: peerconnect::PeerInfo) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name,
            kind: p.kind.into(),
            addrs: strings(&p.addrs),
            trust: p.trust.into(),
            connected: p.connected,
            verification_code: p.verification_code,
        }
    }
}

impl From<peerconnect::proto::kademlia::PeerRecord> for FoundPeer {
    fn from(r: peerconnect::proto::kademlia::PeerRecord) -> Self {
        Self {
            id: r.id.to_string(),
            name: r.name,
            addrs: strings(&r.addrs),
        }
    }
}

impl From<peerconnect::Event> for Event {
    fn from(e: peerconnect::Event) -> Self {
        use peerconnect::Event as E;
        match e {
            E::Listening {
                id,
                name,
                addrs,
                web,
            } => Self::Listening {
                id: id.to_string(),
                name,
                addrs: strings(&addrs),
                web,
            },
            E::PeerFound { peer } => Self::PeerFound { peer: peer.into() },
            E::PeerUpdated { peer } => Self::PeerUpdated { peer: peer.into() },
            E::PeerLost { id } => Self::PeerLost { id: id.to_string() },
            E::PeerConnected {
                peer,
                verification_code,
            } => Self::PeerConnected {
                peer: peer.into(),
                verification_code,
            },
            E::PeerDisconnected { id, reason } => Self::PeerDisconnected {
                id: id.to_string(),
                reason,
            },
            E::Error { message } => Self::Error { message },
            E::MessageReceived { message } => Self::MessageReceived {
                message: message.into(),
            },
            E::MessageStatus { id, peer, status } => Self::MessageStatus {
                id: id.to_string(),
                peer: peer.to_string(),
                status: status.into(),
            },
            E::RoomMessage { room, message } => Self::RoomMessage {
                room,
                message: message.into(),
            },
            E::RoomJoined { room } => Self::RoomJoined { room },
            E::RoomLeft { room } => Self::RoomLeft { room },
            E::Offer {
                id,
                peer,
                name,
                verification_code,
                trusted,
                auto_accepted,
                files,
                total_bytes,
                free_bytes,
                entries,
            } => Self::Offer {
                id: id.to_string(),
                peer: peer.to_string(),
                name,
                verification_code,
                trusted,
                auto_accepted,
                files,
                total_bytes,
                free_bytes,
                entries: entries.into_iter().map(OfferEntry::from).collect(),
            },
            E::Progress {
                id,
                peer,
                direction,
                done_bytes,
                total_bytes,
                files_done,
                files_total,
                file,
                file_done,
                file_bytes,
                transferred,
                rate,
                paused,
            } => Self::Progress {
                id: id.to_string(),
                peer: peer.to_string(),
                direction: direction.into(),
                done_bytes,
                total_bytes,
                files_done,
                files_total,
                file,
                file_done,
                file_bytes,
                transferred,
                rate,
                paused,
            },
            E::TransferDone {
                id,
                peer,
                direction,
                path,
                bytes,
                blake3,
            } => Self::TransferDone {
                id: id.to_string(),
                peer: peer.to_string(),
                direction: direction.into(),
                path,
                bytes,
                blake3,
            },
            E::TransferFailed {
                id,
                peer,
                direction,
                path,
                error,
            } => Self::TransferFailed {
                id: id.to_string(),
                peer: peer.to_string(),
                direction: direction.into(),
                path,
                error,
            },
            E::TransferCancelled {
                id,
                peer,
                direction,
                by_peer,
            } => Self::TransferCancelled {
                id: id.to_string(),
                peer: peer.to_string(),
                direction: direction.into(),
                by_peer,
            },
            E::TransferRejected {
                id,
                peer,
                direction,
                reason,
            } => Self::TransferRejected {
                id: id.to_string(),
                peer: peer.to_string(),
                direction: direction.into(),
                reason,
            },
            E::TransferComplete {
                id,
                peer,
                direction,
                files,
                failed,
                bytes,
                transferred,
            } => Self::TransferComplete {
                id: id.to_string(),
                peer: peer.to_string(),
                direction: direction.into(),
                files,
                failed,
                bytes,
                transferred,
            },
            // the core's Event is non_exhaustive: a variant added there shows
            // here as Other until this binding names it
            other => {
                let json = serde_json::to_value(&other).unwrap_or_default();
                Self::Other {
                    event: json["event"].as_str().unwrap_or_default().to_string(),
                    json: json.to_string(),
                }
            }
        }
    }
}
