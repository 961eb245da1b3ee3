//! What Dart sees: `PeerConnect` and the types it takes and returns.
//!
//! The types are the uniffi binding's (`peerconnect_ffi`), mirrored for the
//! codegen: each `_Name` below only restates the shape of
//! `peerconnect_ffi::Name` so the codegen can see it (the generated code
//! destructures the real type, so a mismatch fails to compile). The conversions
//! from core types live once, in `peerconnect_ffi`.
//!
//! Every method of the `impl PeerConnect` block (node, direct messages, file
//! transfer, rooms) is a one-line call to the same method of
//! `peerconnect_ffi::PeerConnect`. Methods that are synchronous there but may
//! touch the disk (answering an offer, listing transfers, room history) are
//! plain `fn`s here, which Dart calls as `Future`s off its UI thread.

use std::sync::Arc;

use flutter_rust_bridge::frb;
pub use peerconnect_ffi::{
    ApiError, DeliveryStatus, DeviceKind, Direction, Event, FoundPeer, Message, NodeConfig,
    OfferEntry, Peer, RoomInfo, RoomMessage, RoomSaid, TransferInfo, TransferState, Trust,
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

    // File transfer

    /// Offers `paths` (files and folders) to `peer`; returns the transfer id
    /// at once, the rest arrives as events.
    pub async fn send_files(&self, peer: String, paths: Vec<String>) -> Result<String, ApiError> {
        self.inner.send_files(peer, paths).await
    }

    /// Offers `paths` to every member of room `room` this node knows (one
    /// file to 3 or more goes down a relay tree); one transfer id per member.
    pub async fn send_to_room(
        &self,
        room: String,
        paths: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        self.inner.send_to_room(room, paths).await
    }

    /// Sends the one file `path` down a relay tree over those of `peers` who
    /// accept; one transfer id per peer, in order.
    pub async fn send_tree(
        &self,
        peers: Vec<String>,
        path: String,
    ) -> Result<Vec<String>, ApiError> {
        self.inner.send_tree(peers, path).await
    }

    /// Accepts all of offer `id` into the download folder.
    pub fn accept_offer(&self, id: String) -> Result<(), ApiError> {
        self.inner.accept_offer(id)
    }

    /// Accepts all of offer `id` into folder `dir`.
    pub fn accept_offer_into(&self, id: String, dir: String) -> Result<(), ApiError> {
        self.inner.accept_offer_into(id, dir)
    }

    /// Refuses offer `id`.
    pub fn reject_offer(&self, id: String) -> Result<(), ApiError> {
        self.inner.reject_offer(id)
    }

    /// Pauses a running transfer.
    pub fn pause_transfer(&self, id: String) -> Result<(), ApiError> {
        self.inner.pause_transfer(id)
    }

    /// Resumes a paused transfer.
    pub fn resume_transfer(&self, id: String) -> Result<(), ApiError> {
        self.inner.resume_transfer(id)
    }

    /// Cancels a transfer (the peer is told).
    pub fn cancel_transfer(&self, id: String) -> Result<(), ApiError> {
        self.inner.cancel_transfer(id)
    }

    /// Live transfers, then the most recent finished ones.
    pub fn transfers(&self) -> Result<Vec<TransferInfo>, ApiError> {
        self.inner.transfers()
    }

    // Rooms

    /// Joins room `name`; its messages then arrive as `Event.roomMessage`.
    pub async fn join_room(&self, name: String) -> Result<(), ApiError> {
        self.inner.join_room(name).await
    }

    /// Leaves room `name`.
    pub async fn leave_room(&self, name: String) -> Result<(), ApiError> {
        self.inner.leave_room(name).await
    }

    /// Signs `text` and sends it to everyone in room `name`.
    pub async fn room_say(&self, name: String, text: String) -> Result<RoomMessage, ApiError> {
        self.inner.room_say(name, text).await
    }

    /// Like `room_say`, waiting up to `wait_ms` for the neighbours to read it.
    pub async fn room_say_and_wait(
        &self,
        name: String,
        text: String,
        wait_ms: u64,
    ) -> Result<RoomSaid, ApiError> {
        self.inner.room_say_and_wait(name, text, wait_ms).await
    }

    /// Up to `limit` stored messages of room `name` older than `before`;
    /// oldest first.
    pub fn room_history(
        &self,
        name: String,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<RoomMessage>, ApiError> {
        self.inner.room_history(name, before, limit)
    }

    /// Rooms joined, with their neighbour counts.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, ApiError> {
        self.inner.rooms().await
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
    RoomMessage {
        room: String,
        message: RoomMessage,
    },
    RoomJoined {
        room: String,
    },
    RoomLeft {
        room: String,
    },
    Offer {
        id: String,
        peer: String,
        name: String,
        verification_code: String,
        trusted: bool,
        auto_accepted: bool,
        files: u64,
        total_bytes: u64,
        free_bytes: Option<u64>,
        entries: Vec<OfferEntry>,
    },
    Progress {
        id: String,
        peer: String,
        direction: Direction,
        done_bytes: u64,
        total_bytes: u64,
        files_done: u64,
        files_total: u64,
        file: Option<String>,
        file_done: u64,
        file_bytes: u64,
        transferred: u64,
        rate: u64,
        paused: bool,
    },
    TransferDone {
        id: String,
        peer: String,
        direction: Direction,
        path: String,
        bytes: u64,
        blake3: String,
    },
    TransferFailed {
        id: String,
        peer: String,
        direction: Direction,
        path: Option<String>,
        error: String,
    },
    TransferCancelled {
        id: String,
        peer: String,
        direction: Direction,
        by_peer: bool,
    },
    TransferRejected {
        id: String,
        peer: String,
        direction: Direction,
        reason: String,
    },
    TransferComplete {
        id: String,
        peer: String,
        direction: Direction,
        files: u64,
        failed: u64,
        bytes: u64,
        transferred: u64,
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

#[frb(mirror(Direction))]
pub enum _Direction {
    Send,
    Receive,
}

#[frb(mirror(TransferState))]
pub enum _TransferState {
    Offered,
    Running,
    Paused,
    Interrupted,
    Complete,
    Failed,
    Cancelled,
    Rejected,
    Resumed,
}

#[frb(mirror(OfferEntry))]
pub struct _OfferEntry {
    pub path: String,
    pub size: u64,
    pub dir: bool,
}

#[frb(mirror(TransferInfo))]
pub struct _TransferInfo {
    pub id: String,
    pub peer: String,
    pub direction: Direction,
    pub state: TransferState,
    pub files: u64,
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub transferred: u64,
    pub live: bool,
    pub error: Option<String>,
}

#[frb(mirror(RoomMessage))]
pub struct _RoomMessage {
    pub id: String,
    pub room: String,
    pub author: String,
    pub author_name: String,
    pub text: String,
    pub time_ms: u64,
}

#[frb(mirror(RoomInfo))]
pub struct _RoomInfo {
    pub name: String,
    pub neighbors: u64,
}

#[frb(mirror(RoomSaid))]
pub struct _RoomSaid {
    pub message: RoomMessage,
    pub reached: Vec<String>,
}

#[frb(mirror(ApiError))]
pub enum _ApiError {
    NotFound(String),
    Invalid(String),
    Io(String),
    Shutdown,
    Other(String),
}
