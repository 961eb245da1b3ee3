//! The gossip service: one task owns the node's [`gossip::State`] (every topic)
//! and turns its outputs into IO over the node's [`Links`].
//!
//! The state machine ([`crate::proto::gossip`]: HyParView DSN'07 + Plumtree
//! SRDS'07 or rumor mongering per topic) does all protocol work; this driver
//! moves frames and time, following the contract in that module's docs:
//!
//! - `Send(peer, m)` → [`Links::try_send`] of `wire::Message::Gossip(m)`. While
//!   a dial to the peer is under way the frame waits in a small per-peer queue;
//!   a full session queue drops the frame (counted: Plumtree's lazy IHAVE/GRAFT
//!   path repairs a lost payload); a peer with no session and no dial under way
//!   is reported back as `ConnectionLost`.
//! - `Dial(peer, data)` → [`Links::dial`] with the addresses encoded in `data`
//!   ([`peer_data`]), in a spawned task; failure comes back as `ConnectionLost`.
//! - [`LinkEvent::Down`] of a session some topic holds → `ConnectionLost`
//!   (other sessions come and go for reasons that say nothing about the peer).
//! - `Disconnect(peer)`: sessions are shared with the node's other services
//!   (messaging, transfers) and with the node itself (discovery, `--connect`),
//!   so gossip never tears down a session it did not open. A session it opened
//!   on demand (a `Dial` to a peer with no session) is closed once no topic has
//!   needed it for [`IDLE_CLOSE`] and no service holds it ([`Links::hold`]);
//!   waiting lets queued frames (a SHUFFLE_REPLY, a DISCONNECT) reach the peer.
//!   Without this, every shuffle would leave one more connection open forever.
//! - `ScheduleTimer` → an ordered map of due times (every timer is kept, no
//!   dedup); `now` is the time since the task started.
//! - `Emit` → the service's event channel (the rooms layer reads it).
//!
//! Join probing, the answers to non-members, proof of membership and the
//! merging of overlays are protocol decisions and live in the state (see
//! [`crate::proto::gossip`] and [`crate::proto::hyparview`]), so the simulator
//! runs them too. The driver adds nothing but IO.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::identity::PeerId;
use crate::net::links::{LinkEvent, Links, SendError};
use crate::net::timers::{Timers, sleep_until_opt};
use crate::proto::gossip::{
    self, BroadcastError, Event, InEvent, Message, OutEvent, Strategy, Timer, TopicId,
};
use crate::proto::hyparview::{MAX_PEER_DATA_LEN, PeerData, PeerInfo};
use crate::proto::plumtree::{MessageId, Payload};
use crate::proto::wire;

/// A session gossip opened is closed once unused by every topic this long
/// (long enough for what was queued to reach the peer; short, because each
/// shuffle and each refused NEIGHBOR request opens one).
pub const IDLE_CLOSE: Duration = Duration::from_secs(3);
/// Frames waiting for a dial, per peer, at most.
const MAX_QUEUED_PER_PEER: usize = 64;
/// Requests waiting for the task, at most.
const REQUEST_CAPACITY: usize = 64;
/// Most addresses put in one [`PeerData`].
const MAX_ADDRS: usize = 16;
/// Most `ConnectionLost` reports fed back while handling one input.
const MAX_FEEDBACK: usize = 256;

/// Encodes dialable addresses as the opaque [`PeerData`] peers pass around
/// (postcard; as many as fit in [`MAX_PEER_DATA_LEN`]).
pub fn peer_data(addrs: &[SocketAddr]) -> PeerData {
    let mut addrs: Vec<SocketAddr> = addrs.iter().take(MAX_ADDRS).copied().collect();
    loop {
        let bytes = postcard::to_allocvec(&addrs).expect("encoding to a Vec cannot fail");
        if bytes.len() <= MAX_PEER_DATA_LEN {
            return PeerData(bytes);
        }
        addrs.pop();
    }
}

/// The addresses in a peer's [`PeerData`] (none if it does not decode: it came
/// from the network).
pub fn addrs_of(data: &PeerData) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = postcard::from_bytes(&data.0).unwrap_or_default();
    addrs.truncate(MAX_ADDRS);
    addrs
}

/// Counters of the driver (the protocols keep their own, see [`GossipStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DriverStats {
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Dropped because the peer's session queue was full.
    pub send_queue_full: u64,
    /// Dropped because the per-peer queue of a dial under way was full, or the
    /// dial failed.
    pub queued_dropped: u64,
    /// Sends to a peer with no session and no dial: reported as lost.
    pub not_connected: u64,
    pub dials: u64,
    pub dials_failed: u64,
    /// Sessions gossip opened and closed again once unused.
    pub sessions_closed: u64,
}

/// Everything the gossip service counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GossipStats {
    pub driver: DriverStats,
    pub protocol: gossip::Stats,
    /// The topic asked about, if joined.
    pub topic: Option<gossip::TopicStats>,
}

/// Per joined topic, how many neighbours proved they are members.
pub type Confirmed = BTreeMap<TopicId, usize>;

/// A topic's views as the service sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Views {
    /// The active view (what HyParView gossips with).
    pub active: Vec<PeerId>,
    /// Active neighbours that proved they are in the topic.
    pub confirmed: Vec<PeerId>,
    pub passive: Vec<PeerId>,
}

enum Request {
    Join {
        topic: TopicId,
        strategy: Strategy,
        bootstrap: Vec<(PeerId, Vec<SocketAddr>)>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Leave {
        topic: TopicId,
        reply: oneshot::Sender<()>,
    },
    Candidates {
        topic: TopicId,
        peers: Vec<(PeerId, Vec<SocketAddr>)>,
    },
    Broadcast {
        topic: TopicId,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<MessageId, BroadcastError>>,
    },
    Views {
        topic: TopicId,
        reply: oneshot::Sender<Views>,
    },
    Stats {
        topic: Option<TopicId>,
        reply: oneshot::Sender<GossipStats>,
    },
}

/// Why a call to the gossip service failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the gossip service has stopped")]
    Stopped,
    #[error("too many topics joined at once (the limit is {0})")]
    TooManyTopics(usize),
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
}

/// A cheap, cloneable handle on the node's gossip service.
#[derive(Debug, Clone)]
pub struct Gossip {
    tx: mpsc::Sender<Request>,
    confirmed: watch::Receiver<Confirmed>,
}

impl Gossip {
    /// Spawns the service for node `me`, dialable at `addrs`. Frames arrive on
    /// `incoming` (the router's gossip queue); topic events leave on `events`.
    /// The reader of `events` must never wait on this service while it holds an
    /// event unread (the service waits for room in `events`: backpressure).
    pub(crate) fn spawn(
        me: PeerId,
        addrs: &[SocketAddr],
        config: gossip::Config,
        links: Arc<Links>,
        incoming: mpsc::Receiver<(PeerId, Message)>,
        events: mpsc::Sender<Event>,
    ) -> (Gossip, JoinHandle<()>) {
        let info = PeerInfo {
            id: me,
            data: peer_data(addrs),
        };
        let max_topics = config.max_topics;
        let state = gossip::State::new(info, config, ChaCha8Rng::from_os_rng());
        let (tx, rx) = mpsc::channel(REQUEST_CAPACITY);
        let (dial_tx, dial_rx) = mpsc::channel(256);
        let (confirmed_tx, confirmed) = watch::channel(Confirmed::new());
        let link_events = links.subscribe();
        let actor = Actor {
            state,
            max_topics,
            links,
            epoch: Instant::now(),
            timers: Timers::default(),
            rx,
            incoming,
            link_events,
            dial_tx,
            dial_rx,
            dialing: HashMap::new(),
            opened: HashMap::new(),
            closing: HashSet::new(),
            events,
            emitted: Vec::new(),
            confirmed: confirmed_tx,
            stats: DriverStats::default(),
        };
        (Gossip { tx, confirmed }, tokio::spawn(actor.run()))
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Joins `topic` through `bootstrap` (peers and their addresses; the first
    /// is the contact, the others fallbacks). Joining a topic already joined
    /// joins again through these peers, keeping its caches.
    pub async fn join(
        &self,
        topic: TopicId,
        strategy: Strategy,
        bootstrap: Vec<(PeerId, Vec<SocketAddr>)>,
    ) -> Result<(), Error> {
        self.call(|reply| Request::Join {
            topic,
            strategy,
            bootstrap,
            reply,
        })
        .await?
    }

    /// Peers that may be in `topic` (connected and discovered ones): the state
    /// probes them now and then to find and merge other overlays of the topic.
    pub async fn candidates(
        &self,
        topic: TopicId,
        peers: Vec<(PeerId, Vec<SocketAddr>)>,
    ) -> Result<(), Error> {
        self.tx
            .send(Request::Candidates { topic, peers })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Leaves `topic`, telling its neighbours.
    pub async fn leave(&self, topic: TopicId) -> Result<(), Error> {
        self.call(|reply| Request::Leave { topic, reply }).await
    }

    /// Sends `payload` to every member of `topic`. Its id is the BLAKE3 of the
    /// payload, so identical bytes are refused as a duplicate.
    pub async fn broadcast(&self, topic: TopicId, payload: Vec<u8>) -> Result<MessageId, Error> {
        Ok(self
            .call(|reply| Request::Broadcast {
                topic,
                payload,
                reply,
            })
            .await??)
    }

    /// Per joined topic, the number of neighbours that proved membership,
    /// updated as it changes (what rooms wait on; no need to poll).
    pub fn watch_confirmed(&self) -> watch::Receiver<Confirmed> {
        self.confirmed.clone()
    }

    /// Neighbours in `topic` that proved they are members (see the module docs).
    pub async fn neighbors(&self, topic: TopicId) -> Result<Vec<PeerId>, Error> {
        Ok(self.views(topic).await?.confirmed)
    }

    pub async fn views(&self, topic: TopicId) -> Result<Views, Error> {
        self.call(|reply| Request::Views { topic, reply }).await
    }

    /// Counters; with a topic, also that topic's protocol counters.
    pub async fn stats(&self, topic: Option<TopicId>) -> Result<GossipStats, Error> {
        self.call(|reply| Request::Stats { topic, reply }).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DriverTimer {
    Gossip(Timer),
    /// Close the session to this peer if gossip still does not need it.
    IdleClose(PeerId),
}

struct Actor {
    state: gossip::State<ChaCha8Rng>,
    max_topics: usize,
    links: Arc<Links>,
    epoch: Instant,
    timers: Timers<DriverTimer>,
    rx: mpsc::Receiver<Request>,
    incoming: mpsc::Receiver<(PeerId, Message)>,
    link_events: broadcast::Receiver<LinkEvent>,
    dial_tx: mpsc::Sender<(PeerId, Result<(), String>)>,
    dial_rx: mpsc::Receiver<(PeerId, Result<(), String>)>,
    /// Dials under way, with the frames waiting for them.
    dialing: HashMap<PeerId, Vec<Message>>,
    /// Sessions gossip opened, by peer: the session number.
    opened: HashMap<PeerId, u64>,
    /// Sessions we asked the node to close: their `Down` is not a failure.
    closing: HashSet<(PeerId, u64)>,
    events: mpsc::Sender<Event>,
    /// Events collected while applying outputs, sent after.
    emitted: Vec<Event>,
    /// Published after every step (see [`Gossip::watch_confirmed`]).
    confirmed: watch::Sender<Confirmed>,
    stats: DriverStats,
}

impl Actor {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(mut self) {
        loop {
            let next = self.timers.next_deadline();
            tokio::select! {
                req = self.rx.recv() => match req {
                    Some(req) => self.on_request(req),
                    None => return,
                },
                Some((from, msg)) = self.incoming.recv() => self.on_frame(from, msg),
                ev = self.link_events.recv() => self.on_link_event(ev),
                Some((peer, res)) = self.dial_rx.recv() => self.on_dialed(peer, res),
                _ = sleep_until_opt(next) => self.on_timers(),
            }
            self.publish_confirmed();
            // Events go out after the state is settled; waiting here for the
            // reader is the backpressure that reaches the peers.
            for ev in std::mem::take(&mut self.emitted) {
                if self.events.send(ev).await.is_err() {
                    break;
                }
            }
        }
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Join {
                topic,
                strategy,
                bootstrap,
                reply,
            } => {
                self.drive(InEvent::Join {
                    topic,
                    strategy,
                    bootstrap: infos(bootstrap),
                });
                if self.state.is_joined(&topic) {
                    let _ = reply.send(Ok(()));
                } else {
                    let _ = reply.send(Err(Error::TooManyTopics(self.max_topics)));
                }
            }
            Request::Leave { topic, reply } => {
                self.drive(InEvent::Leave(topic));
                let _ = reply.send(());
            }
            Request::Candidates { topic, peers } => {
                self.drive(InEvent::Candidates {
                    topic,
                    peers: infos(peers),
                });
            }
            Request::Broadcast {
                topic,
                payload,
                reply,
            } => {
                let now = self.now();
                let mut out = Vec::new();
                let res = self
                    .state
                    .broadcast(now, topic, Payload::from(payload), &mut out);
                let lost = self.apply(out);
                self.feed_lost(lost);
                let _ = reply.send(res);
            }
            Request::Views { topic, reply } => {
                let views = Views {
                    confirmed: self.state.confirmed(&topic),
                    active: self.state.neighbors(&topic),
                    passive: self.state.passive_view(&topic),
                };
                let _ = reply.send(views);
            }
            Request::Stats { topic, reply } => {
                let _ = reply.send(GossipStats {
                    driver: self.stats,
                    protocol: self.state.stats(),
                    topic: topic.and_then(|t| self.state.topic_stats(&t)),
                });
            }
        }
    }

    fn on_frame(&mut self, from: PeerId, message: Message) {
        self.stats.frames_received += 1;
        self.drive(InEvent::Message { from, message });
    }

    fn on_link_event(&mut self, ev: Result<LinkEvent, broadcast::error::RecvError>) {
        match ev {
            Ok(LinkEvent::Up { .. }) => {}
            Ok(LinkEvent::Down { peer, session }) => {
                if self.opened.get(&peer) == Some(&session) {
                    self.opened.remove(&peer);
                }
                if self.closing.remove(&(peer, session)) {
                    return; // we closed it on purpose; the peer is fine
                }
                // Only a session some topic uses tells us the peer failed. The
                // others close for many reasons (the peer closed a session it
                // opened for a shuffle, the user blocked it, ...), and reading
                // those as failures would empty passive views; a dead passive
                // peer is found out when a dial to it fails.
                if self.state.connected_peers().any(|p| *p == peer) {
                    self.lost(peer);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Missed some downs: every peer a topic holds without a session
                // (and no dial under way) is lost.
                tracing::warn!("gossip fell {n} link events behind; resynchronising");
                let lost: Vec<PeerId> = self
                    .state
                    .connected_peers()
                    .filter(|p| !self.links.is_connected(p) && !self.dialing.contains_key(p))
                    .copied()
                    .collect();
                self.feed_lost(lost);
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    fn on_dialed(&mut self, peer: PeerId, res: Result<(), String>) {
        let queued = self.dialing.remove(&peer).unwrap_or_default();
        match res {
            Ok(()) => {
                if let Some(link) = self.links.get(&peer) {
                    self.opened.insert(peer, link.session);
                }
                for m in queued {
                    self.send(peer, m);
                }
                // Often the state let go of the peer before the dial finished
                // (a SHUFFLE_REPLY is Dial, Send, Disconnect in one step).
                if !self.state.connected_peers().any(|p| *p == peer) {
                    self.schedule(IDLE_CLOSE, DriverTimer::IdleClose(peer));
                }
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "gossip dial failed");
                self.stats.dials_failed += 1;
                self.stats.queued_dropped += queued.len() as u64;
                self.lost(peer);
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                DriverTimer::Gossip(t) => self.drive(InEvent::Timer(t)),
                DriverTimer::IdleClose(peer) => self.close_if_unused(peer),
            }
        }
    }

    fn publish_confirmed(&self) {
        let now: Confirmed = self
            .state
            .topics()
            .map(|t| (*t, self.state.confirmed(t).len()))
            .collect();
        self.confirmed.send_if_modified(|old| {
            let changed = *old != now;
            if changed {
                *old = now;
            }
            changed
        });
    }

    fn close_if_unused(&mut self, peer: PeerId) {
        let Some(&session) = self.opened.get(&peer) else {
            return;
        };
        let needed =
            self.state.connected_peers().any(|p| *p == peer) || self.dialing.contains_key(&peer);
        if needed {
            return;
        }
        if self.links.close(peer, session) {
            self.opened.remove(&peer);
            self.closing.insert((peer, session));
            self.stats.sessions_closed += 1;
        }
    }

    fn schedule(&mut self, after: Duration, t: DriverTimer) {
        self.timers.insert(Instant::now() + after, t);
    }

    /// Feeds one input and every `ConnectionLost` its outputs lead to.
    fn drive(&mut self, input: InEvent) {
        let now = self.now();
        let mut out = Vec::new();
        self.state.handle_into(now, input, &mut out);
        let lost = self.apply(out);
        self.feed_lost(lost);
    }

    /// A peer failed: tell the state.
    fn lost(&mut self, peer: PeerId) {
        self.drive(InEvent::ConnectionLost(peer));
    }

    fn feed_lost(&mut self, lost: Vec<PeerId>) {
        let mut queue: VecDeque<PeerId> = lost.into();
        let mut fed = 0;
        while let Some(peer) = queue.pop_front() {
            fed += 1;
            if fed > MAX_FEEDBACK {
                tracing::warn!("gossip: too many lost peers in one step; the rest wait");
                break;
            }
            let now = self.now();
            let mut out = Vec::new();
            self.state
                .handle_into(now, InEvent::ConnectionLost(peer), &mut out);
            queue.extend(self.apply(out));
        }
    }

    /// Acts on outputs; returns peers found unreachable (to feed back).
    fn apply(&mut self, out: Vec<OutEvent>) -> Vec<PeerId> {
        let mut lost = Vec::new();
        for o in out {
            match o {
                OutEvent::Send(peer, m) => {
                    if !self.send(peer, m) {
                        lost.push(peer);
                    }
                }
                OutEvent::Dial(peer, data) => self.dial(peer, data),
                OutEvent::Disconnect(peer) => {
                    if self.opened.contains_key(&peer) {
                        self.schedule(IDLE_CLOSE, DriverTimer::IdleClose(peer));
                    }
                }
                OutEvent::ScheduleTimer(after, t) => self.schedule(after, DriverTimer::Gossip(t)),
                OutEvent::Emit(ev) => self.emitted.push(ev),
            }
        }
        lost
    }

    /// Sends or queues `m`; false if the peer cannot be reached.
    fn send(&mut self, peer: PeerId, m: Message) -> bool {
        if let Some(queue) = self.dialing.get_mut(&peer) {
            if queue.len() < MAX_QUEUED_PER_PEER {
                queue.push(m);
            } else {
                self.stats.queued_dropped += 1;
            }
            return true;
        }
        match self.links.try_send(&peer, wire::Message::Gossip(m)) {
            Ok(()) => {
                self.stats.frames_sent += 1;
                true
            }
            Err(SendError::QueueFull(_)) => {
                self.stats.send_queue_full += 1;
                true
            }
            Err(_) => {
                self.stats.not_connected += 1;
                false
            }
        }
    }

    fn dial(&mut self, peer: PeerId, data: PeerData) {
        if self.dialing.contains_key(&peer) || self.links.is_connected(&peer) {
            return;
        }
        self.stats.dials += 1;
        self.dialing.insert(peer, Vec::new());
        let links = self.links.clone();
        let done = self.dial_tx.clone();
        let addrs = addrs_of(&data);
        tokio::spawn(async move {
            let res = links.dial(peer, addrs).await;
            let _ = done.send((peer, res)).await;
        });
    }
}

/// Bootstrap or candidate peers as the state takes them.
fn infos(peers: Vec<(PeerId, Vec<SocketAddr>)>) -> Vec<PeerInfo> {
    peers
        .into_iter()
        .map(|(id, addrs)| PeerInfo {
            id,
            data: peer_data(&addrs),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_data_carries_addresses_and_fits_the_limit() {
        let v4: SocketAddr = "10.0.0.7:47471".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:47471".parse().unwrap();
        assert_eq!(addrs_of(&peer_data(&[v4, v6])), vec![v4, v6]);
        let many: Vec<SocketAddr> = (0..100)
            .map(|i| SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, i], 1)))
            .collect();
        let d = peer_data(&many);
        assert!(d.0.len() <= MAX_PEER_DATA_LEN);
        assert_eq!(addrs_of(&d), many[..MAX_ADDRS]);
        // bytes from the network that are not addresses mean "none"
        assert!(addrs_of(&PeerData(vec![0xff; 40])).is_empty());
    }
}
