//! How the node's services (messaging, gossip, transfers) reach connected peers.
//!
//! The node actor owns sessions; when one comes up it publishes a [`PeerLink`]
//! here (the peer's control-message queue and its mux session) and announces
//! [`LinkEvent::Up`]; when it ends, the link is withdrawn and [`LinkEvent::Down`]
//! announced. Services send through the link directly, so a chat burst or a
//! gossip storm never queues behind the actor. Incoming control messages are
//! routed the other way by the [`Router`]: each kind to the one service that
//! owns it.
//!
//! Sessions are shared by every service. A service that opened a session on
//! demand may close it when it is done ([`Links::close`]) unless another service
//! holds it ([`Links::hold`]): services that need a session to stay up while
//! they use it (a transfer, a chat) hold it for that long.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::identity::PeerId;
use crate::net::actor::Command;
use crate::net::mux::MuxSession;
use crate::proto::wire::Message;
use crate::proto::{gossip, messaging};

/// A connected peer as services see it.
#[derive(Debug, Clone)]
pub struct PeerLink {
    /// Changes when the peer reconnects (a new session).
    pub session: u64,
    /// Frames sent here go out on the session's control stream, in order.
    /// Boxed: the queue's first block of 32 slots is allocated with the
    /// session, and 32 unboxed messages (128 bytes each) are 4 KiB of every
    /// idle session.
    pub control: mpsc::Sender<Box<Message>>,
    pub mux: MuxSession,
}

/// A peer the node saw (discovered, updated or connected) and the addresses
/// it is known at, for the node's own services (the DHT takes them as
/// contacts). Fed by the actor where it emits the matching public events, on a
/// channel of its own so that a burst of other events (progress, chat) never
/// makes a service miss one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSeen {
    pub peer: PeerId,
    pub addrs: Vec<SocketAddr>,
}

/// Peer sightings a slow service may fall behind before it misses the oldest
/// (it then rereads the store, which holds every peer's addresses).
const SEEN_BUFFER: usize = 256;

/// A session to a peer came up or went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    Up { peer: PeerId, session: u64 },
    Down { peer: PeerId, session: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("not connected to {0}")]
    NotConnected(PeerId),
    #[error("send queue to {0} is full")]
    QueueFull(PeerId),
    #[error("{0} did not answer in time")]
    NoAnswer(PeerId),
}

/// Shared by the actor (which writes it) and the services (which read it).
#[derive(Debug)]
pub struct Links {
    peers: RwLock<HashMap<PeerId, PeerLink>>,
    events: broadcast::Sender<LinkEvent>,
    /// Made by the first subscriber (the DHT's presence service): a
    /// broadcast channel allocates all its slots at once (~20 KiB here), and
    /// a node without the DHT has no reader for it.
    seen: OnceLock<broadcast::Sender<PeerSeen>>,
    cmd: mpsc::Sender<Command>,
    /// How many [`LinkHold`]s exist per peer.
    holds: Mutex<HashMap<PeerId, usize>>,
    /// Round trips waiting for their pong, by nonce.
    pongs: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

/// Keeps [`Links::close`] from closing the session to a peer while it lives.
#[derive(Debug)]
pub struct LinkHold {
    links: Arc<Links>,
    peer: PeerId,
}

impl Drop for LinkHold {
    fn drop(&mut self) {
        let mut holds = self.links.holds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = holds.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                holds.remove(&self.peer);
            }
        }
    }
}

impl Links {
    /// `event_buffer`: how many ups and downs a slow subscriber may fall behind.
    pub(crate) fn new(cmd: mpsc::Sender<Command>, event_buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            peers: RwLock::new(HashMap::new()),
            events: broadcast::channel(event_buffer.max(16)).0,
            seen: OnceLock::new(),
            cmd,
            holds: Mutex::new(HashMap::new()),
            pongs: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn set_up(&self, peer: PeerId, link: PeerLink) {
        let session = link.session;
        self.peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, link);
        let _ = self.events.send(LinkEvent::Up { peer, session });
    }

    pub(crate) fn set_down(&self, peer: PeerId, session: u64) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        if peers.get(&peer).is_some_and(|l| l.session == session) {
            peers.remove(&peer);
            drop(peers);
            let _ = self.events.send(LinkEvent::Down { peer, session });
        }
    }

    /// The link to `peer`, if a session is up.
    pub fn get(&self, peer: &PeerId) -> Option<PeerLink> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .cloned()
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(peer)
    }

    pub fn connected(&self) -> Vec<PeerId> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Session ups and downs from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LinkEvent> {
        self.events.subscribe()
    }

    /// Peers seen from now on (see [`PeerSeen`]).
    pub fn subscribe_seen(&self) -> broadcast::Receiver<PeerSeen> {
        self.seen
            .get_or_init(|| broadcast::channel(SEEN_BUFFER).0)
            .subscribe()
    }

    /// Announces a peer seen (called by the actor).
    pub(crate) fn set_seen(&self, peer: PeerId, addrs: Vec<SocketAddr>) {
        // Before the first subscriber nobody could receive it anyway.
        if let Some(seen) = self.seen.get() {
            let _ = seen.send(PeerSeen { peer, addrs });
        }
    }

    /// Queues `msg` for `peer` without waiting; fails if not connected or the
    /// queue is full (the caller decides whether to drop, retry or wait).
    pub fn try_send(&self, peer: &PeerId, msg: Message) -> Result<(), SendError> {
        let link = self.get(peer).ok_or(SendError::NotConnected(*peer))?;
        link.control.try_send(Box::new(msg)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::QueueFull(*peer),
            mpsc::error::TrySendError::Closed(_) => SendError::NotConnected(*peer),
        })
    }

    /// Queues `msg` for `peer`, waiting for room in its queue (backpressure).
    pub async fn send(&self, peer: &PeerId, msg: Message) -> Result<(), SendError> {
        let link = self.get(peer).ok_or(SendError::NotConnected(*peer))?;
        link.control
            .send(Box::new(msg))
            .await
            .map_err(|_| SendError::NotConnected(*peer))
    }

    /// Makes sure a session to `peer` is up, dialing `addrs` (and addresses the
    /// node already knows) if needed. Resolves when the session is up or every
    /// attempt failed.
    pub async fn dial(&self, peer: PeerId, addrs: Vec<SocketAddr>) -> Result<(), String> {
        if self.is_connected(&peer) {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Dial { peer, addrs, reply })
            .await
            .map_err(|_| "the node has shut down".to_string())?;
        rx.await.map_err(|_| "the node has shut down".to_string())?
    }

    /// Keeps the session to `peer` (now and after reconnects) from being closed
    /// by another service's [`Links::close`] until the hold is dropped.
    pub fn hold(self: &Arc<Self>, peer: PeerId) -> LinkHold {
        *self
            .holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(peer)
            .or_default() += 1;
        LinkHold {
            links: self.clone(),
            peer,
        }
    }

    pub fn is_held(&self, peer: &PeerId) -> bool {
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(peer)
    }

    /// Closes session `session` to `peer` (not a newer one) unless some service
    /// holds it. Returns whether a close was requested; the node checks the
    /// holds again when it executes the close, so a [`Links::hold`] taken
    /// before then still keeps the session. For a service that opened the
    /// session on demand and no longer needs it; queued frames may be lost, so
    /// call it only once the session has been idle for a while.
    pub fn close(&self, peer: PeerId, session: u64) -> bool {
        if self.is_held(&peer) || self.get(&peer).is_none_or(|l| l.session != session) {
            return false;
        }
        self.cmd.try_send(Command::Close { peer, session }).is_ok()
    }

    /// Runs `close` unless `peer` is held, while holding the lock
    /// [`Links::hold`] takes, so no hold can slip in between the check and the
    /// close (called by the actor executing a close).
    pub(crate) fn unless_held(&self, peer: &PeerId, close: impl FnOnce()) {
        let holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        if !holds.contains_key(peer) {
            close();
        }
    }

    /// Sends a ping to `peer` and waits for its pong: once it returns, the peer
    /// has read every frame queued to it before the call (the control stream is
    /// ordered) and handed each to the service that owns its kind.
    pub async fn round_trip(
        &self,
        peer: &PeerId,
        timeout: Duration,
    ) -> Result<Duration, SendError> {
        // The high bit keeps our nonces apart from the actor's keepalive pings.
        let nonce = rand::random::<u64>() | 1 << 63;
        let (tx, rx) = oneshot::channel();
        self.pongs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(nonce, tx);
        let started = tokio::time::Instant::now();
        let res = match self.send(peer, Message::Ping(nonce)).await {
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(())) => Ok(started.elapsed()),
                _ => Err(SendError::NoAnswer(*peer)),
            },
            Err(e) => Err(e),
        };
        self.pongs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&nonce);
        res
    }

    /// A pong arrived (called by the actor).
    pub(crate) fn on_pong(&self, nonce: u64) {
        if let Some(tx) = self
            .pongs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&nonce)
        {
            let _ = tx.send(());
        }
    }
}

/// Where each kind of incoming control message goes. A kind without a service
/// is dropped (and logged).
#[derive(Debug, Clone, Default)]
pub(crate) struct Router {
    pub gossip: Option<mpsc::Sender<(PeerId, gossip::Message)>>,
    /// Streams peers open for file transfers and relay tree sessions (see
    /// [`crate::net::streams`]), with their kind.
    #[allow(clippy::type_complexity)]
    pub transfer: Option<
        mpsc::Sender<(
            PeerId,
            crate::proto::wire::StreamKind,
            crate::net::mux::MuxStream,
        )>,
    >,
    /// Streams refused for a bad or unserved header.
    pub bad_streams: Arc<std::sync::atomic::AtomicU64>,
    pub dm: Option<mpsc::Sender<(PeerId, messaging::Message)>>,
}
