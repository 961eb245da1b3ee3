//! What Dart sees: `PeerConnect` and the types it takes and returns.
//!
//! The types are the uniffi binding's (`peerconnect_ffi`), mirrored for the
//! codegen: each `_Name` below only restates the shape of
//! `peerconnect_ffi::Name` so the codegen can see it (the generated code
//! destructures the real type, so a mismatch fails to compile). The conversions
//! from core types live once, in `peerconnect_ffi`.
//!
//! A feature (messaging, file transfer, rooms) adds its methods to the
//! `impl PeerConnect` block as one-line calls to the same method of
//! `peerconnect_ffi::PeerConnect`.

use std::sync::Arc;

use flutter_rust_bridge::frb;
pub use peerconnect_ffi::{
    ApiError, DeliveryStatus, DeviceKind, Event, FoundPeer, Message, NodeConfig, Peer, Trust,
};

use crate::frb_generated::StreamSink;

/// A running PeerConnect node (one per data dir).
#[frb(opaque)]
pub struct PeerConnect {
    inner: Arc<peerconnect_ffi::PeerConnect>,
}

impl PeerConnect {
    /// Starts a node. Throws `ApiError.io` if the data dir is in use or a port
    /// cannot be bound, `ApiError.invalid` for a bad address.
    pub async fn start(config: NodeConfig) -> Result<PeerConnect, ApiError> {
        Ok(Self {
            inner: peerconnect_ffi::PeerConnect::start(config).await?,
        })
    }

    /// This node's PeerId.
    #[frb(sync)]
    pub fn id(&self) -> String {
        self.inner.id()
    }

    #[frb(sync)]
    pub fn name(&self) -> String {
        self.inner.name()
    }

    /// Addresses other nodes can dial (`HOST:PORT`).
    #[frb(sync)]
    pub fn listen_addrs(&self) -> Vec<String> {
        self.inner.listen_addrs()
    }

    /// Every event, starting with `Listening`, as a Dart stream that closes
    /// when the node shuts down. Listen once per node.
    pub async fn events(&self, sink: StreamSink<Event>) {
        while let Some(e) = self.inner.next_event().await {
            if sink.add(e).is_err() {
                break;
            }
        }
    }

    /// Peers known now: discovered on the LAN or connected.
    pub async fn peers(&self) -> Result<Vec<Peer>, ApiError> {
        self.inner.peers().await
    }

    /// Dials `addr` (`IP:PORT`); returns the PeerId that answered.
    pub async fn connect(&self, addr: String) -> Result<String, ApiError> {
        self.inner.connect(addr).await
    }

    /// Trusts, blocks or resets `peer` (a PeerId, unique prefix or name).
    pub async fn set_trust(&self, peer: String, trust: Trust) -> Result<(), ApiError> {
        self.inner.set_trust(peer, trust).await
    }

    /// Looks a PeerId or device name up in the DHT.
    pub async fn find(&self, query: String) -> Result<Vec<FoundPeer>, ApiError> {
        self.inner.find(query).await
    }

    /// Stops the node and closes the event stream.
    pub async fn shutdown(&self) -> Result<(), ApiError> {
        self.inner.shutdown().await
    }

    // Direct messages

    /// Sends `text` to `peer`; delivered when a session is up.
    pub async fn send_message(&self, peer: String, text: String) -> Result<Message, ApiError> {
        self.inner.send_message(peer, text).await
    }

    /// Up to `limit` messages with `peer` older than `before`; oldest first.
    pub async fn conversation(
        &self,
        peer: String,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<Message>, ApiError> {
        self.inner.conversation(peer, before, limit).await
    }

    /// Marks `peer`'s messages up to `up_to` read; returns how many.
    pub async fn mark_read(&self, peer: String, up_to: String) -> Result<u64, ApiError> {
        self.inner.mark_read(peer, up_to).await
    }
}

#[frb(mirror(NodeConfig))]
pub struct _NodeConfig {
    pub data_dir: String,
    pub name: Option<String>,
    pub kind: Option<DeviceKind>,
    pub listen_addr: Option<String>,
    #[frb(default = true)]
    pub discovery: bool,
    #[frb(default = [])]
    pub connect: Vec<String>,
    pub downloads_dir: Option<String>,
    #[frb(default = true)]
    pub dht: bool,
}

#[frb(mirror(Trust))]
pub enum _Trust {
    Unknown,
    Trusted,
    Blocked,
}

#[frb(mirror(DeviceKind))]
pub enum _DeviceKind {
    Desktop,
    Laptop,
    Phone,
    Tablet,
    Server,
    Browser,
    Other,
}

#[frb(mirror(Peer))]
pub struct _Peer {
    pub id: String,
    pub name: String,
    pub kind: DeviceKind,
    pub addrs: Vec<String>,
    pub trust: Trust,
    pub connected: bool,
    pub verification_code: String,
}

#[frb(mirror(FoundPeer))]
pub struct _FoundPeer {
    pub id: String,
    pub name: String,
    pub addrs: Vec<String>,
}

#[frb(mirror(Event))]
pub enum _Event {
    Listening {
        id: String,
        name: String,
        addrs: Vec<String>,
        web: Option<String>,
    },
    PeerFound {
        peer: Peer,
    },
    PeerUpdated {
        peer: Peer,
    },
    PeerLost {
        id: String,
    },
    PeerConnected {
        peer: Peer,
        verification_code: String,
    },
    PeerDisconnected {
        id: String,
        reason: Option<String>,
    },
    Error {
        message: String,
    },
    MessageReceived {
        message: Message,
    },
    MessageStatus {
        id: String,
        peer: String,
        status: DeliveryStatus,
    },
    Other {
        event: String,
        json: String,
    },
}

#[frb(mirror(Message))]
pub struct _Message {
    pub id: String,
    pub sender: String,
    pub recipient: String,
    pub outgoing: bool,
    pub sent_ms: u64,
    pub text: String,
    pub reply_to: Option<String>,
    pub status: DeliveryStatus,
}

#[frb(mirror(DeliveryStatus))]
pub enum _DeliveryStatus {
    Pending,
    Sent,
    Delivered,
    Read,
}

#[frb(mirror(ApiError))]
pub enum _ApiError {
    NotFound(String),
    Invalid(String),
    Io(String),
    Shutdown,
    Other(String),
}
