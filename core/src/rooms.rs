//! Rooms: group chat for everyone on the LAN who joins the same name.
//!
//! A room is a gossip topic ([`proto::rooms::topic`]) run by the node's gossip
//! service ([`crate::net::gossip`]) with the LAN strategy
//! ([`Strategy::Lan`]): Plumtree (each message crosses each tree link once,
//! RMR ≈ 0.002 at 10,000 simulated nodes) plus a digest of the last two
//! minutes of message ids (at most 256) to every new neighbour. The digest is why rooms use it rather
//! than plain Plumtree: a message said while devices leave in a burst (a class
//! ends), or said before a bootstrap contact turned out not to be in the room,
//! reaches the nodes that were cut off as soon as they find a neighbour again
//! (100 % against 97 % for Plumtree in the 10,000-node simulation, see
//! `docs/benchmarks.md`), someone who joins sees the last two minutes, and
//! when a network cut in two heals, the link that merges the room's two
//! overlays carries each side's messages of the cut to the other.
//!
//! Messages are signed by their author ([`SignedRoomMessage`]); a received one
//! is shown, stored and emitted as [`Event::RoomMessage`] only once its
//! signature, limits and room check out; anything else is dropped and counted
//! in [`RoomStats`]. History is stored per room in arrival order and paged
//! ([`crate::Node::room_history`]).
//!
//! Joining bootstraps from the peers the node knows: connected first, then
//! discovered on the LAN. A contact that is not in the room says so (see the
//! gossip service's conventions) and the next one is tried. A room left with
//! no neighbour (first member, or every contact was elsewhere) joins again
//! through each peer that connects later, and through all known peers with
//! backoff, so two lonely members on one LAN always find each other. Every
//! peer that connects is also handed to the gossip state as a membership
//! candidate, which is how two overlays of one room find and merge into each
//! other (see `proto::hyparview`).
//!
//! Browser guests of the web UI are in rooms through this node (see
//! [`guests`]): a guest is not a gossip node, so the node takes part for it.

mod guests;

pub use guests::{GuestRoom, MAX_GUEST_ROOMS};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::identity::{Identity, PeerId};
use crate::net::gossip::{self as gossip_service, Gossip};
use crate::net::links::{LinkEvent, Links};
use crate::node::{Node, WeakNode};
use crate::proto::gossip::{self, Strategy, TopicId};
use crate::proto::rooms::{self, RoomMessage, RoomMessageId, SignedRoomMessage};
use crate::proto::wire::DeviceKind;
use crate::store::{Store, now_ms};

/// Most peers handed to one join (the first is the contact).
const MAX_BOOTSTRAP: usize = 16;
/// Most history messages returned at once.
pub const MAX_HISTORY_PAGE: usize = 1000;
/// First retry of a room with no neighbour; doubles up to [`LONELY_RETRY_MAX`].
const LONELY_RETRY: Duration = Duration::from_secs(1);
const LONELY_RETRY_MAX: Duration = Duration::from_secs(30);

/// A joined room as front ends list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    /// Neighbours in the room's overlay that proved they are members.
    pub neighbors: usize,
}

/// What [`Node::room_say_and_wait`](crate::Node::room_say_and_wait) reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSaid {
    pub message: RoomMessage,
    /// Neighbours that had read the message when the call returned.
    pub reached: Vec<PeerId>,
}

/// What the rooms layer dropped, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomStats {
    /// Messages accepted, shown and stored.
    pub received: u64,
    /// Valid messages already in the history (same id).
    pub duplicates: u64,
    /// Payloads that are not room messages.
    pub malformed: u64,
    /// Messages over the text or name limits.
    pub too_large: u64,
    /// Messages naming another room than the topic they came in.
    pub wrong_room: u64,
    /// Messages whose signature is not their author's.
    pub forged: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicU64,
    too_large: AtomicU64,
    wrong_room: AtomicU64,
    forged: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RoomStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RoomStats {
            received: g(&self.received),
            duplicates: g(&self.duplicates),
            malformed: g(&self.malformed),
            too_large: g(&self.too_large),
            wrong_room: g(&self.wrong_room),
            forged: g(&self.forged),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The rooms of one node (owned by the node; its methods back `Node`'s room API).
#[derive(Debug)]
pub(crate) struct Rooms {
    identity: Identity,
    name: String,
    gossip: Gossip,
    links: Arc<Links>,
    store: Arc<Store>,
    events: broadcast::Sender<Event>,
    /// Joined rooms by topic. Not protocol state (that is the gossip task's):
    /// the names the API and the receiver need.
    joined: Arc<Mutex<BTreeMap<TopicId, String>>>,
    /// Who the node is in each joined room for (same keys as `joined`).
    members: Mutex<BTreeMap<TopicId, Members>>,
    /// Held across each join and leave, so `joined`, `members` and the
    /// gossip state change together.
    ops: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
}

/// Why the node is in a room: its owner joined it, or guests did.
#[derive(Debug, Default)]
struct Members {
    owner: bool,
    guests: BTreeSet<PeerId>,
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

fn gossip_err(e: gossip_service::Error) -> Error {
    match e {
        gossip_service::Error::Stopped => Error::Shutdown,
        other => Error::Invalid(other.to_string()),
    }
}

impl Rooms {
    pub(crate) fn new(
        identity: Identity,
        name: String,
        gossip: Gossip,
        links: Arc<Links>,
        store: Arc<Store>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        Self {
            identity,
            name,
            gossip,
            links,
            store,
            events,
            joined: Arc::default(),
            members: Mutex::default(),
            ops: tokio::sync::Mutex::new(()),
            counters: Arc::default(),
        }
    }

    fn topic_of(&self, name: &str) -> Option<TopicId> {
        let topic = rooms::topic(name);
        self.lock().contains_key(&topic).then_some(topic)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TopicId, String>> {
        self.joined.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_joined(name: &str) -> Error {
        Error::Invalid(format!("not in room {name:?}; join it first"))
    }

    /// The owner joins `name`. The node may be in it already for guests.
    pub(crate) async fn join(&self, node: &Node, name: &str) -> Result<()> {
        let _op = self.ops.lock().await;
        self.enter(node, name).await?;
        lock(&self.members)
            .entry(rooms::topic(name))
            .or_default()
            .owner = true;
        Ok(())
    }

    /// Whether the owner joined `name` (the node may be in it only for
    /// guests: then this is false).
    pub(crate) fn owner_in(&self, name: &str) -> bool {
        lock(&self.members)
            .get(&rooms::topic(name))
            .is_some_and(|m| m.owner)
    }

    /// The owner leaves `name`; the node stays in it while guests are.
    pub(crate) async fn leave(&self, name: &str) -> Result<()> {
        let _op = self.ops.lock().await;
        let topic = rooms::topic(name);
        let guests_stay = {
            let mut m = lock(&self.members);
            match m.get_mut(&topic) {
                Some(room) => {
                    room.owner = false;
                    !room.guests.is_empty()
                }
                None => false,
            }
        };
        if guests_stay {
            return Ok(());
        }
        self.exit(name).await
    }

    /// Makes the node a member of `name` (no-op if it is). Call with `ops` held.
    async fn enter(&self, node: &Node, name: &str) -> Result<()> {
        rooms::check_name(name).map_err(invalid)?;
        let topic = rooms::topic(name);
        if self.lock().contains_key(&topic) {
            return Ok(());
        }
        let bootstrap = bootstrap_candidates(node, topic, None).await?;
        self.gossip
            .join(topic, Strategy::Lan, bootstrap)
            .await
            .map_err(gossip_err)?;
        self.lock().insert(topic, name.to_string());
        let _ = self.events.send(Event::RoomJoined {
            room: name.to_string(),
        });
        Ok(())
    }

    /// The node leaves `name` (no-op if not in it). Call with `ops` held.
    async fn exit(&self, name: &str) -> Result<()> {
        let topic = rooms::topic(name);
        lock(&self.members).remove(&topic);
        if self.lock().remove(&topic).is_none() {
            return Ok(());
        }
        self.gossip.leave(topic).await.map_err(gossip_err)?;
        let _ = self.events.send(Event::RoomLeft {
            room: name.to_string(),
        });
        Ok(())
    }

    pub(crate) async fn say(&self, name: &str, text: &str) -> Result<RoomMessage> {
        self.say_as(name, &self.name, text).await
    }

    /// Signs and publishes `text` in `name` as this node, under `author_name`
    /// (the device's name, or a guest's: [`rooms::guest_author_name`]).
    async fn say_as(&self, name: &str, author_name: &str, text: &str) -> Result<RoomMessage> {
        let id = RoomMessageId(rand::random());
        let message = RoomMessage::new(id, &self.identity, author_name, name, text, now_ms())
            .map_err(invalid)?;
        let topic = self.topic_of(name).ok_or_else(|| Self::not_joined(name))?;
        let signed = SignedRoomMessage::sign(message, &self.identity);
        self.gossip
            .broadcast(topic, signed.encode())
            .await
            .map_err(gossip_err)?;
        self.store.insert_room_message(&signed, now_ms())?;
        let _ = self.events.send(Event::RoomMessage {
            room: name.to_string(),
            message: signed.message.clone(),
        });
        Ok(signed.message)
    }

    pub(crate) async fn say_and_wait(
        &self,
        name: &str,
        text: &str,
        wait: Duration,
    ) -> Result<RoomSaid> {
        let deadline = tokio::time::Instant::now() + wait;
        let topic = self.topic_of(name).ok_or_else(|| Self::not_joined(name))?;
        // A neighbour that proved membership, or the deadline.
        let mut confirmed = self.gossip.watch_confirmed();
        let some = |c: &gossip_service::Confirmed| c.get(&topic).is_some_and(|n| *n > 0);
        let _ = tokio::time::timeout_at(deadline, confirmed.wait_for(some)).await;
        let message = self.say(name, text).await?;
        let neighbors = self.neighbors_of(topic).await?;
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(500));
        let links = self.links.clone();
        let checks = neighbors.into_iter().map(|p| {
            let links = links.clone();
            async move { links.round_trip(&p, left).await.ok().map(|_| p) }
        });
        let reached = futures::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect();
        Ok(RoomSaid { message, reached })
    }

    async fn neighbors_of(&self, topic: TopicId) -> Result<Vec<PeerId>> {
        self.gossip.neighbors(topic).await.map_err(gossip_err)
    }

    pub(crate) async fn neighbors(&self, name: &str) -> Result<Vec<PeerId>> {
        let topic = self.topic_of(name).ok_or_else(|| Self::not_joined(name))?;
        self.neighbors_of(topic).await
    }

    pub(crate) fn history(
        &self,
        name: &str,
        before: Option<RoomMessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>> {
        rooms::check_name(name).map_err(invalid)?;
        self.store
            .room_history(name, before, limit.min(MAX_HISTORY_PAGE))?
            .ok_or_else(|| {
                let id = before.map(|b| b.to_string()).unwrap_or_default();
                Error::Invalid(format!("no message {id} in room {name:?}"))
            })
    }

    pub(crate) async fn list(&self) -> Result<Vec<RoomInfo>> {
        let joined: Vec<(TopicId, String)> =
            self.lock().iter().map(|(t, n)| (*t, n.clone())).collect();
        let mut out = Vec::new();
        for (topic, name) in joined {
            let neighbors = self.neighbors_of(topic).await?.len();
            out.push(RoomInfo { name, neighbors });
        }
        Ok(out)
    }

    pub(crate) fn stats(&self) -> RoomStats {
        self.counters.snapshot()
    }

    /// The task that turns gossip deliveries into room messages. It never calls
    /// the gossip service (which waits on it: see `Gossip::spawn`).
    pub(crate) fn spawn_receiver(&self, mut rx: mpsc::Receiver<gossip::Event>) -> JoinHandle<()> {
        let joined = self.joined.clone();
        let counters = self.counters.clone();
        let store = self.store.clone();
        let events = self.events.clone();
        let me = self.identity.peer_id();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let (topic, delivery) = match ev {
                    gossip::Event::Received { topic, delivery } => (topic, delivery),
                    gossip::Event::NeighborUp { .. }
                    | gossip::Event::NeighborDown { .. }
                    | gossip::Event::Banned(_) => continue,
                };
                let room = lock(&joined).get(&topic).cloned();
                let Some(room) = room else {
                    continue; // a topic of another service, or a room just left
                };
                let signed = match SignedRoomMessage::decode(&delivery.payload.0, &topic) {
                    Ok(s) => s,
                    Err(why) => {
                        bump(match why {
                            rooms::Rejected::Malformed => &counters.malformed,
                            rooms::Rejected::TooLarge => &counters.too_large,
                            rooms::Rejected::WrongRoom => &counters.wrong_room,
                            rooms::Rejected::BadSignature => &counters.forged,
                        });
                        tracing::debug!(%room, relay = %delivery.from, %why, "dropping room message");
                        continue;
                    }
                };
                match store.insert_room_message_from_peer(&signed, now_ms(), &me) {
                    Ok(true) => {}
                    Ok(false) => {
                        bump(&counters.duplicates);
                        continue;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot store room message"),
                }
                bump(&counters.received);
                let _ = events.send(Event::RoomMessage {
                    room,
                    message: signed.message,
                });
            }
        })
    }
}

/// Peers to join a room through: connected and discovered ones, in the
/// room's rendezvous order ([`rooms::rendezvous_rank`]), at most
/// [`MAX_BOOTSTRAP`]. With `only`, just that peer. When the node runs a DHT, the room's members found there
/// (a provider record under the topic id) belong first in this list.
async fn bootstrap_candidates(
    node: &Node,
    topic: TopicId,
    only: Option<PeerId>,
) -> Result<Vec<(PeerId, Vec<SocketAddr>)>> {
    // Browser guests are listed among the peers but are no gossip nodes.
    let mut peers = node.peers().await?;
    peers.retain(|p| p.kind != DeviceKind::Browser);
    let addrs_of = |id: &PeerId| {
        peers
            .iter()
            .find(|p| p.id == *id)
            .map(|p| p.addrs.clone())
            .unwrap_or_default()
    };
    if let Some(id) = only {
        return Ok(vec![(id, addrs_of(&id))]);
    }
    let connected = node.links().connected();
    let mut candidates: Vec<PeerId> = connected
        .iter()
        .copied()
        .chain(
            peers
                .iter()
                .map(|p| p.id)
                .filter(|id| !connected.contains(id)),
        )
        .filter(|id| *id != node.id())
        .collect();
    // Rendezvous order: everyone who knows the same peers asks them in the
    // same order, so devices joining the room at the same moment meet at the
    // same contact instead of forming islands through each other.
    candidates.sort_by_cached_key(|id| rooms::rendezvous_rank(topic, id));
    Ok(candidates
        .into_iter()
        .take(MAX_BOOTSTRAP)
        .map(|id| {
            let addrs = addrs_of(&id);
            (id, addrs)
        })
        .collect())
}

/// Keeps rooms with no neighbour looking for one: through every peer whose
/// session comes up, and through all known peers with backoff.
pub(crate) fn spawn_lonely_rooms(node: WeakNode) -> Option<JoinHandle<()>> {
    let first = node.upgrade()?;
    let mut link_events = first.links().subscribe();
    let confirmed = first.rooms_service().gossip.watch_confirmed();
    drop(first);
    Some(tokio::spawn(async move {
        // per room: next full retry and its backoff
        let mut retry: BTreeMap<TopicId, (tokio::time::Instant, Duration)> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let up = tokio::select! {
                ev = link_events.recv() => match ev {
                    Ok(LinkEvent::Up { peer, .. }) => Some(peer),
                    Ok(LinkEvent::Down { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => None,
            };
            let Some(node) = node.upgrade() else { return };
            let rooms = node.rooms_service();
            let joined: Vec<TopicId> = rooms.lock().keys().copied().collect();
            if let Some(peer) = up {
                // A peer we can reach may be in a room's other overlay (two
                // groups that formed apart, the two sides of a healed cut):
                // the gossip state probes it now and then and merges them.
                for topic in &joined {
                    let _ = rooms
                        .gossip
                        .candidates(*topic, vec![(peer, Vec::new())])
                        .await;
                }
            }
            retry.retain(|t, _| joined.contains(t));
            let now = tokio::time::Instant::now();
            for topic in joined {
                if confirmed.borrow().get(&topic).is_some_and(|n| *n > 0) {
                    retry.remove(&topic);
                    continue;
                }
                let (at, backoff) = retry
                    .entry(topic)
                    .or_insert((now + LONELY_RETRY, LONELY_RETRY));
                let only = match up {
                    Some(peer) => Some(peer),
                    None if now >= *at => {
                        *backoff = (*backoff * 2).min(LONELY_RETRY_MAX);
                        *at = now + *backoff;
                        None
                    }
                    None => continue,
                };
                let Ok(bootstrap) = bootstrap_candidates(&node, topic, only).await else {
                    return;
                };
                if bootstrap.is_empty() {
                    continue;
                }
                tracing::debug!(
                    ?topic,
                    peers = bootstrap.len(),
                    "room has no neighbour; joining again"
                );
                let _ = rooms.gossip.join(topic, Strategy::Lan, bootstrap).await;
            }
        }
    }))
}
