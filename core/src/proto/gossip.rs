//! Gossip topics: membership plus one dissemination strategy each.
//!
//! A topic (a room) is a HyParView overlay ([`hyparview`], DSN 2007) of the
//! peers that joined it, and one way of spreading messages over that overlay,
//! chosen per topic ([`Strategy`]): Plumtree epidemic broadcast trees
//! ([`plumtree`], SRDS 2007), push rumor mongering with loss of interest
//! ([`rumor`], PODC 1987), flooding, or the LAN variant: Plumtree plus a digest
//! of recently received ids to every new neighbour, so that a message sent while
//! many devices leave at once still reaches the nodes that were cut off once the
//! overlay heals (see `proto::sim::gossip` for the measurements that keep it).
//! [`State`] holds all topics of one node and is what the driver talks to.
//!
//! All members of a topic should use the same strategy (the room's creator
//! picks it): Plumtree and LAN interoperate, rumor and flood interoperate, and
//! messages of the other family are dropped and counted (`wrong_strategy`).
//!
//! # Driving it
//!
//! Feed [`InEvent`]s to [`State::handle`] (and payloads to [`State::broadcast`]);
//! act on every [`OutEvent`]:
//!
//! - `Send(peer, msg)`: write `wire::Message::Gossip(msg)` on the connection to
//!   `peer`, dialling it with the last `PeerData` seen for it if there is none;
//!   if that fails, feed `ConnectionLost(peer)`.
//! - `Dial(peer, data)`: hold a connection to `peer` (no-op if one exists).
//! - `Disconnect(peer)`: no topic needs the connection any more: flush what was
//!   queued for it, then close it. Connections are shared by all topics; this
//!   state counts which topics hold each peer and emits `Disconnect` only when
//!   none does (or when the peer is banned).
//! - `ScheduleTimer(after, timer)`: feed `Timer(timer)` back after `after`.
//! - `Emit(event)`: tell the application (deliveries, neighbours, bans).
//!
//! Report a connection that breaks, resets, times out or cannot be opened as
//! `ConnectionLost` (it means "failed peer"), and a frame from a peer that does
//! not decode as `Malformed`.
//!
//! # Bad input
//!
//! Each sub-protocol drops input that breaks its limits and counts it. Every
//! such drop is a strike against the peer; [`Config::max_strikes`] strikes
//! within [`Config::strike_window`] ban the peer from every topic for
//! `hyparview::Config::ban_duration` and close its connection.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::identity::PeerId;
use crate::proto::hyparview::{self, PeerData, PeerInfo};
use crate::proto::plumtree::{self, Delivery, MessageId, Payload};
use crate::proto::rumor;

/// A topic's identity: BLAKE3 of its name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub [u8; 32]);

impl TopicId {
    pub fn from_name(name: &str) -> Self {
        Self(*blake3::hash(name.as_bytes()).as_bytes())
    }
}

impl std::fmt::Debug for TopicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TopicId({:02x}{:02x}{:02x}{:02x})",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// How a topic spreads messages over its overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Epidemic broadcast tree: payload once per tree link, ids to the rest.
    Plumtree,
    /// Push rumor mongering with fanout and loss of interest.
    Rumor,
    /// Every neighbour but the sender, once.
    Flood,
    /// Plumtree plus a digest of recent ids to each new neighbour
    /// ([`plumtree::Config::lan`]): repairs messages sent while many nodes left.
    Lan,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plumtree" => Ok(Self::Plumtree),
            "rumor" => Ok(Self::Rumor),
            "flood" => Ok(Self::Flood),
            "lan" => Ok(Self::Lan),
            _ => Err(format!(
                "unknown strategy {s:?} (plumtree, rumor, flood, lan)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub membership: hyparview::Config,
    pub plumtree: plumtree::Config,
    pub lan: plumtree::Config,
    pub rumor: rumor::Config,
    pub flood: rumor::Config,
    pub max_strikes: u32,
    pub strike_window: Duration,
    /// Most topics joined at once.
    pub max_topics: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            membership: hyparview::Config::default(),
            plumtree: plumtree::Config::default(),
            lan: plumtree::Config::lan(),
            rumor: rumor::Config::default(),
            flood: rumor::Config::flood(),
            max_strikes: 16,
            strike_window: Duration::from_secs(60),
            max_topics: 64,
        }
    }
}

/// What travels on the per-peer control stream (`wire::Message::Gossip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub topic: TopicId,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Membership(hyparview::Message),
    Plumtree(plumtree::Message),
    Rumor(rumor::Message),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub topic: TopicId,
    pub kind: TopicTimer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicTimer {
    Membership(hyparview::Timer),
    Plumtree(plumtree::Timer),
    Rumor(rumor::Timer),
}

#[derive(Debug, Clone)]
pub enum InEvent {
    /// Join `topic` through the first bootstrap peer; the others are fallbacks.
    /// For a topic already joined, joins again through these peers (keeping the
    /// topic's strategy and caches): for a node whose view emptied, or that
    /// joined before it knew any member. Best sent only when the topic has no
    /// neighbour, since the contact takes a slot of the active view.
    Join {
        topic: TopicId,
        strategy: Strategy,
        bootstrap: Vec<PeerInfo>,
    },
    Leave(TopicId),
    Message {
        from: PeerId,
        message: Message,
    },
    /// A frame from `from` did not decode (already dropped by the driver).
    Malformed(PeerId),
    ConnectionLost(PeerId),
    Timer(Timer),
    /// Our dialling information changed.
    UpdateData(PeerData),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent {
    Send(PeerId, Message),
    Dial(PeerId, PeerData),
    Disconnect(PeerId),
    ScheduleTimer(Duration, Timer),
    Emit(Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    NeighborUp {
        topic: TopicId,
        peer: PeerId,
    },
    NeighborDown {
        topic: TopicId,
        peer: PeerId,
    },
    /// A message from someone else, delivered once.
    Received {
        topic: TopicId,
        delivery: Delivery,
    },
    /// The peer misbehaved too often and is refused for a while.
    Banned(PeerId),
}

/// Why a broadcast was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    #[error("not joined to topic {0:?}")]
    NotJoined(TopicId),
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("this exact payload was already sent in the topic")]
    Duplicate,
}

/// Node-level counters (each topic's protocols keep their own, see
/// [`State::topic_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub malformed: u64,
    pub unknown_topic: u64,
    pub wrong_strategy: u64,
    pub strikes: u64,
    pub bans: u64,
    pub banned_dropped: u64,
}

/// The counters of one topic's protocols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TopicStats {
    pub membership: hyparview::Stats,
    pub plumtree: Option<plumtree::Stats>,
    pub rumor: Option<rumor::Stats>,
}

#[derive(Debug)]
enum Dissemination<R> {
    Plumtree(plumtree::State),
    Rumor(rumor::State<R>),
}

#[derive(Debug)]
struct Topic<R> {
    id: TopicId,
    membership: hyparview::State<R>,
    dissemination: Dissemination<R>,
}

/// Effects collected while one input runs through the topics.
struct Ctx<'a> {
    out: &'a mut Vec<OutEvent>,
    conns: &'a mut BTreeMap<PeerId, BTreeSet<TopicId>>,
    strikes: Vec<PeerId>,
}

impl Ctx<'_> {
    fn hold(&mut self, peer: PeerId, topic: TopicId) {
        self.conns.entry(peer).or_default().insert(topic);
    }

    fn release(&mut self, peer: PeerId, topic: TopicId) {
        let unused = match self.conns.get_mut(&peer) {
            Some(topics) => {
                topics.remove(&topic);
                topics.is_empty()
            }
            None => true,
        };
        if unused {
            self.conns.remove(&peer);
            self.out.push(OutEvent::Disconnect(peer));
        }
    }
}

impl<R: Rng> Topic<R> {
    fn on_membership(&mut self, now: Duration, ev: hyparview::InEvent, ctx: &mut Ctx<'_>) {
        let mut raw = Vec::new();
        self.membership.handle(now, ev, &mut raw);
        for o in raw {
            match o {
                hyparview::OutEvent::Send(peer, m) => ctx.out.push(OutEvent::Send(
                    peer,
                    Message {
                        topic: self.id,
                        body: Body::Membership(m),
                    },
                )),
                hyparview::OutEvent::Dial(peer, data) => {
                    ctx.hold(peer, self.id);
                    ctx.out.push(OutEvent::Dial(peer, data));
                }
                hyparview::OutEvent::Disconnect(peer) => ctx.release(peer, self.id),
                hyparview::OutEvent::ScheduleTimer(d, t) => ctx.out.push(OutEvent::ScheduleTimer(
                    d,
                    Timer {
                        topic: self.id,
                        kind: TopicTimer::Membership(t),
                    },
                )),
                hyparview::OutEvent::Emit(hyparview::Event::NeighborUp(peer)) => {
                    let ev = OutEvent::Emit(Event::NeighborUp {
                        topic: self.id,
                        peer,
                    });
                    ctx.out.push(ev);
                    self.on_dissemination(now, Input::Up(peer), ctx);
                }
                hyparview::OutEvent::Emit(hyparview::Event::NeighborDown(peer)) => {
                    let ev = OutEvent::Emit(Event::NeighborDown {
                        topic: self.id,
                        peer,
                    });
                    ctx.out.push(ev);
                    self.on_dissemination(now, Input::Down(peer), ctx);
                }
                hyparview::OutEvent::Misbehaving(peer) => ctx.strikes.push(peer),
            }
        }
    }

    fn on_dissemination(&mut self, now: Duration, input: Input, ctx: &mut Ctx<'_>) {
        let topic = self.id;
        match &mut self.dissemination {
            Dissemination::Plumtree(state) => {
                let ev = match input {
                    Input::Up(p) => plumtree::InEvent::NeighborUp(p),
                    Input::Down(p) => plumtree::InEvent::NeighborDown(p),
                    Input::Plumtree(p, m) => plumtree::InEvent::Message(p, m),
                    Input::PlumtreeTimer(t) => plumtree::InEvent::Timer(t),
                    Input::Rumor(..) | Input::RumorTimer(_) => return,
                };
                let mut raw = Vec::new();
                state.handle(now, ev, &mut raw);
                plumtree_out(topic, raw, ctx);
            }
            Dissemination::Rumor(state) => {
                let ev = match input {
                    Input::Up(p) => rumor::InEvent::NeighborUp(p),
                    Input::Down(p) => rumor::InEvent::NeighborDown(p),
                    Input::Rumor(p, m) => rumor::InEvent::Message(p, m),
                    Input::RumorTimer(t) => rumor::InEvent::Timer(t),
                    Input::Plumtree(..) | Input::PlumtreeTimer(_) => return,
                };
                let mut raw = Vec::new();
                state.handle(now, ev, &mut raw);
                rumor_out(topic, raw, ctx);
            }
        }
    }
}

enum Input {
    Up(PeerId),
    Down(PeerId),
    Plumtree(PeerId, plumtree::Message),
    PlumtreeTimer(plumtree::Timer),
    Rumor(PeerId, rumor::Message),
    RumorTimer(rumor::Timer),
}

fn plumtree_out(topic: TopicId, raw: Vec<plumtree::OutEvent>, ctx: &mut Ctx<'_>) {
    for o in raw {
        ctx.out.push(match o {
            plumtree::OutEvent::Send(peer, m) => OutEvent::Send(
                peer,
                Message {
                    topic,
                    body: Body::Plumtree(m),
                },
            ),
            plumtree::OutEvent::ScheduleTimer(d, t) => OutEvent::ScheduleTimer(
                d,
                Timer {
                    topic,
                    kind: TopicTimer::Plumtree(t),
                },
            ),
            plumtree::OutEvent::Emit(plumtree::Event::Received(delivery)) => {
                OutEvent::Emit(Event::Received { topic, delivery })
            }
            plumtree::OutEvent::Misbehaving(peer) => {
                ctx.strikes.push(peer);
                continue;
            }
        });
    }
}

fn rumor_out(topic: TopicId, raw: Vec<rumor::OutEvent>, ctx: &mut Ctx<'_>) {
    for o in raw {
        ctx.out.push(match o {
            rumor::OutEvent::Send(peer, m) => OutEvent::Send(
                peer,
                Message {
                    topic,
                    body: Body::Rumor(m),
                },
            ),
            rumor::OutEvent::ScheduleTimer(d, t) => OutEvent::ScheduleTimer(
                d,
                Timer {
                    topic,
                    kind: TopicTimer::Rumor(t),
                },
            ),
            rumor::OutEvent::Emit(rumor::Event::Received(delivery)) => {
                OutEvent::Emit(Event::Received { topic, delivery })
            }
            rumor::OutEvent::Misbehaving(peer) => {
                ctx.strikes.push(peer);
                continue;
            }
        });
    }
}

/// All gossip topics of one node.
#[derive(Debug)]
pub struct State<R> {
    me: PeerInfo,
    config: Config,
    rng: R,
    topics: BTreeMap<TopicId, Topic<R>>,
    /// Which topics hold a connection to each peer.
    conns: BTreeMap<PeerId, BTreeSet<TopicId>>,
    strikes: BTreeMap<PeerId, (u32, Duration)>,
    banned: BTreeMap<PeerId, Duration>,
    stats: Stats,
}

impl<R: Rng + SeedableRng> State<R> {
    /// `me` is our id and the dialling data we hand out to peers.
    pub fn new(me: PeerInfo, config: Config, rng: R) -> Self {
        Self {
            me,
            config,
            rng,
            topics: BTreeMap::new(),
            conns: BTreeMap::new(),
            strikes: BTreeMap::new(),
            banned: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    pub fn me(&self) -> PeerId {
        self.me.id
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn topic_stats(&self, topic: &TopicId) -> Option<TopicStats> {
        let t = self.topics.get(topic)?;
        let mut s = TopicStats {
            membership: t.membership.stats(),
            ..TopicStats::default()
        };
        match &t.dissemination {
            Dissemination::Plumtree(p) => s.plumtree = Some(p.stats()),
            Dissemination::Rumor(r) => s.rumor = Some(r.stats()),
        }
        Some(s)
    }

    pub fn is_joined(&self, topic: &TopicId) -> bool {
        self.topics.contains_key(topic)
    }

    /// The topic's active view (the peers it gossips with).
    pub fn neighbors(&self, topic: &TopicId) -> Vec<PeerId> {
        self.topics
            .get(topic)
            .map(|t| t.membership.active_view().copied().collect())
            .unwrap_or_default()
    }

    pub fn passive_view(&self, topic: &TopicId) -> Vec<PeerId> {
        self.topics
            .get(topic)
            .map(|t| t.membership.passive_view().copied().collect())
            .unwrap_or_default()
    }

    /// Peers whose connection some topic holds.
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.conns.keys()
    }

    /// Whether input from `peer` is being refused (the driver may refuse its
    /// connections too).
    pub fn is_banned(&self, now: Duration, peer: &PeerId) -> bool {
        self.banned.get(peer).is_some_and(|until| *until > now)
    }

    /// Sends our own payload to everyone in the topic.
    pub fn broadcast(
        &mut self,
        now: Duration,
        topic: TopicId,
        payload: Payload,
        out: &mut Vec<OutEvent>,
    ) -> Result<MessageId, BroadcastError> {
        let t = self
            .topics
            .get_mut(&topic)
            .ok_or(BroadcastError::NotJoined(topic))?;
        let max = match &t.dissemination {
            Dissemination::Plumtree(p) => p.max_payload(),
            Dissemination::Rumor(r) => r.max_payload(),
        };
        if payload.len() > max {
            return Err(BroadcastError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let mut ctx = Ctx {
            out,
            conns: &mut self.conns,
            strikes: Vec::new(),
        };
        let id = match &mut t.dissemination {
            Dissemination::Plumtree(p) => {
                let mut raw = Vec::new();
                let id = p.broadcast(now, payload, &mut raw);
                plumtree_out(topic, raw, &mut ctx);
                id
            }
            Dissemination::Rumor(r) => {
                let mut raw = Vec::new();
                let id = r.broadcast(now, payload, &mut raw);
                rumor_out(topic, raw, &mut ctx);
                id
            }
        };
        id.ok_or(BroadcastError::Duplicate)
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, now: Duration, event: InEvent) -> Vec<OutEvent> {
        let mut out = Vec::new();
        self.handle_into(now, event, &mut out);
        out
    }

    /// Like [`State::handle`], appending to `out` (saves an allocation per input).
    pub fn handle_into(&mut self, now: Duration, event: InEvent, out: &mut Vec<OutEvent>) {
        let mut ctx = Ctx {
            out,
            conns: &mut self.conns,
            strikes: Vec::new(),
        };
        match event {
            InEvent::Join {
                topic,
                strategy,
                bootstrap,
            } => {
                let me = self.me.id;
                let mut bootstrap = bootstrap.into_iter().filter(|p| p.id != me);
                if let Some(t) = self.topics.get_mut(&topic) {
                    // Already joined: join again through these peers, keeping
                    // the topic's caches (a node left alone, or that joined
                    // before it knew anyone).
                    if let Some(contact) = bootstrap.next() {
                        let others = bootstrap.collect();
                        t.on_membership(
                            now,
                            hyparview::InEvent::Join { contact, others },
                            &mut ctx,
                        );
                    }
                    return;
                }
                if self.topics.len() >= self.config.max_topics {
                    return;
                }
                let mut t = new_topic(&self.me, &self.config, &mut self.rng, topic, strategy);
                if let Some(contact) = bootstrap.next() {
                    let others = bootstrap.collect();
                    t.on_membership(now, hyparview::InEvent::Join { contact, others }, &mut ctx);
                }
                self.topics.insert(topic, t);
            }
            InEvent::Leave(topic) => {
                if let Some(mut t) = self.topics.remove(&topic) {
                    t.on_membership(now, hyparview::InEvent::Leave, &mut ctx);
                }
            }
            InEvent::Message { from, message } => {
                if self.banned.get(&from).is_some_and(|until| *until > now) {
                    self.stats.banned_dropped += 1;
                    ctx.out.push(OutEvent::Disconnect(from));
                    return;
                }
                let Some(t) = self.topics.get_mut(&message.topic) else {
                    self.stats.unknown_topic += 1;
                    if !ctx.conns.contains_key(&from) {
                        ctx.out.push(OutEvent::Disconnect(from));
                    }
                    return;
                };
                let input = match message.body {
                    Body::Membership(m) => {
                        t.on_membership(now, hyparview::InEvent::Message(from, m), &mut ctx);
                        None
                    }
                    Body::Plumtree(m) => Some(Input::Plumtree(from, m)),
                    Body::Rumor(m) => Some(Input::Rumor(from, m)),
                };
                if let Some(input) = input {
                    let fits = matches!(
                        (&input, &t.dissemination),
                        (Input::Plumtree(..), Dissemination::Plumtree(_))
                            | (Input::Rumor(..), Dissemination::Rumor(_))
                    );
                    if !fits {
                        self.stats.wrong_strategy += 1;
                        return;
                    }
                    t.on_dissemination(now, input, &mut ctx);
                    if !t.membership.is_active(&from) {
                        // It gossips with us as if we were neighbours: its view
                        // is out of date (a crossed eviction). Set it right.
                        let msg = Message {
                            topic: t.id,
                            body: Body::Membership(hyparview::Message::Disconnect { alive: true }),
                        };
                        ctx.out.push(OutEvent::Send(from, msg));
                    }
                }
            }
            InEvent::Malformed(peer) => {
                self.stats.malformed += 1;
                ctx.strikes.push(peer);
            }
            InEvent::ConnectionLost(peer) => {
                ctx.conns.remove(&peer);
                for t in self.topics.values_mut() {
                    t.on_membership(now, hyparview::InEvent::ConnectionLost(peer), &mut ctx);
                }
            }
            InEvent::Timer(Timer { topic, kind }) => {
                let Some(t) = self.topics.get_mut(&topic) else {
                    return;
                };
                match kind {
                    TopicTimer::Membership(k) => {
                        t.on_membership(now, hyparview::InEvent::Timer(k), &mut ctx)
                    }
                    TopicTimer::Plumtree(k) => {
                        t.on_dissemination(now, Input::PlumtreeTimer(k), &mut ctx)
                    }
                    TopicTimer::Rumor(k) => t.on_dissemination(now, Input::RumorTimer(k), &mut ctx),
                }
            }
            InEvent::UpdateData(data) => {
                self.me.data = data.clone();
                for t in self.topics.values_mut() {
                    t.on_membership(now, hyparview::InEvent::UpdateData(data.clone()), &mut ctx);
                }
            }
        }
        let strikes = std::mem::take(&mut ctx.strikes);
        for peer in strikes {
            self.strike(now, peer, out);
        }
    }

    fn strike(&mut self, now: Duration, peer: PeerId, out: &mut Vec<OutEvent>) {
        self.stats.strikes += 1;
        if self.is_banned(now, &peer) {
            return;
        }
        if self.strikes.len() >= 4096 && !self.strikes.contains_key(&peer) {
            let window = self.config.strike_window;
            self.strikes
                .retain(|_, (_, since)| now.saturating_sub(*since) < window);
            if self.strikes.len() >= 4096 {
                self.strikes.pop_first();
            }
        }
        let entry = self.strikes.entry(peer).or_insert((0, now));
        if now.saturating_sub(entry.1) >= self.config.strike_window {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 < self.config.max_strikes {
            return;
        }
        self.strikes.remove(&peer);
        self.stats.bans += 1;
        let until = now + self.config.membership.ban_duration;
        if self.banned.len() >= 1024 {
            self.banned.retain(|_, u| *u > now);
            if self.banned.len() >= 1024 {
                self.banned.pop_first();
            }
        }
        self.banned.insert(peer, until);
        tracing::debug!(%peer, "banning a peer that keeps breaking the gossip protocol");
        let mut ctx = Ctx {
            out,
            conns: &mut self.conns,
            strikes: Vec::new(),
        };
        for t in self.topics.values_mut() {
            t.on_membership(now, hyparview::InEvent::Ban(peer), &mut ctx);
        }
        // Strikes found while banning are against others; they wait for the
        // next offence (bounded: no recursion).
        self.conns.remove(&peer);
        out.push(OutEvent::Disconnect(peer));
        out.push(OutEvent::Emit(Event::Banned(peer)));
    }
}

fn new_topic<R: Rng + SeedableRng>(
    me: &PeerInfo,
    config: &Config,
    rng: &mut R,
    id: TopicId,
    strategy: Strategy,
) -> Topic<R> {
    let membership = hyparview::State::new(me.clone(), config.membership.clone(), R::from_rng(rng));
    let dissemination = match strategy {
        Strategy::Plumtree => {
            Dissemination::Plumtree(plumtree::State::new(me.id, config.plumtree.clone()))
        }
        Strategy::Lan => Dissemination::Plumtree(plumtree::State::new(me.id, config.lan.clone())),
        Strategy::Rumor => {
            Dissemination::Rumor(rumor::State::new(config.rumor.clone(), R::from_rng(rng)))
        }
        Strategy::Flood => {
            Dissemination::Rumor(rumor::State::new(config.flood.clone(), R::from_rng(rng)))
        }
    };
    Topic {
        id,
        membership,
        dissemination,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sim::{self, Scheduler, SimRng};
    use crate::proto::wire;

    const T0: Duration = Duration::ZERO;

    fn info(i: u8) -> PeerInfo {
        PeerInfo {
            id: PeerId::from_bytes([i; 32]),
            data: PeerData(vec![127, 0, 0, 1, i]),
        }
    }

    fn node(i: u8) -> State<SimRng> {
        State::new(info(i), Config::default(), sim::rng(11, i as u64))
    }

    fn join(topic: TopicId, strategy: Strategy, contact: Option<u8>) -> InEvent {
        InEvent::Join {
            topic,
            strategy,
            bootstrap: contact.map(info).into_iter().collect(),
        }
    }

    /// What reaches a node: a message from a peer, or one of its timers.
    type Arrival = Result<(PeerId, Message), Timer>;

    /// Runs nodes 1..=n with a fixed latency and real timers.
    struct Mini {
        nodes: BTreeMap<PeerId, State<SimRng>>,
        sched: Scheduler<(PeerId, Arrival)>,
        received: Vec<(PeerId, MessageId)>,
    }

    impl Mini {
        fn new(n: u8) -> Self {
            let nodes = (1..=n).map(|i| (info(i).id, node(i))).collect();
            Self {
                nodes,
                sched: Scheduler::new(),
                received: Vec::new(),
            }
        }

        fn apply(&mut self, me: PeerId, out: Vec<OutEvent>) {
            for o in out {
                match o {
                    OutEvent::Send(to, m) => {
                        // every message also goes through the wire codec
                        let mut frame = Vec::new();
                        wire::encode_frame(&wire::Message::Gossip(m), &mut frame).unwrap();
                        let Ok(wire::Message::Gossip(m)) = wire::decode_exact_frame(&frame) else {
                            panic!("gossip message did not round-trip");
                        };
                        self.sched
                            .schedule(Duration::from_micros(500), (to, Ok((me, m))));
                    }
                    OutEvent::ScheduleTimer(d, t) => self.sched.schedule(d, (me, Err(t))),
                    OutEvent::Emit(Event::Received { delivery, .. }) => {
                        self.received.push((me, delivery.id))
                    }
                    _ => {}
                }
            }
        }

        fn input(&mut self, to: PeerId, ev: InEvent) {
            let now = self.sched.now();
            let out = self.nodes.get_mut(&to).unwrap().handle(now, ev);
            self.apply(to, out);
        }

        fn run_until(&mut self, until: Duration) {
            while let Some((_, (to, ev))) = self.sched.pop_until(until) {
                let ev = match ev {
                    Ok((from, message)) => InEvent::Message { from, message },
                    Err(t) => InEvent::Timer(t),
                };
                self.input(to, ev);
            }
        }
    }

    #[test]
    fn every_strategy_delivers_a_broadcast_to_all_members() {
        let topic = TopicId::from_name("room");
        for strategy in [Strategy::Plumtree, Strategy::Rumor, Strategy::Flood] {
            let mut m = Mini::new(12);
            for i in 1..=12u8 {
                let contact = (i > 1).then_some(1 + i / 3);
                m.input(info(i).id, join(topic, strategy, contact));
                m.run_until(m.sched.now() + Duration::from_millis(50));
            }
            m.run_until(Duration::from_secs(5));
            let me = info(5).id;
            let now = m.sched.now();
            let mut out = Vec::new();
            let msg = Payload::from(b"hello room".to_vec());
            let id = m
                .nodes
                .get_mut(&me)
                .unwrap()
                .broadcast(now, topic, msg, &mut out);
            m.apply(me, out);
            m.run_until(now + Duration::from_secs(2));
            let got: BTreeSet<PeerId> = m
                .received
                .iter()
                .filter(|(_, d)| Ok(*d) == id)
                .map(|(p, _)| *p)
                .collect();
            assert_eq!(got.len(), 11, "{strategy:?}");
            assert!(!got.contains(&me));
        }
    }

    #[test]
    fn joining_again_bootstraps_through_new_peers_and_keeps_the_caches() {
        let topic = TopicId::from_name("room");
        let mut s = node(1);
        // alone: nobody to join through
        assert!(s.handle(T0, join(topic, Strategy::Lan, None)).is_empty());
        let mut out = Vec::new();
        let p = Payload::from(b"said while alone".to_vec());
        s.broadcast(T0, topic, p.clone(), &mut out).unwrap();
        let out = s.handle(T0, join(topic, Strategy::Lan, Some(2)));
        assert!(out.contains(&OutEvent::Dial(info(2).id, info(2).data)));
        assert!(out.iter().any(|o| matches!(
            o,
            OutEvent::Send(peer, Message { body: Body::Membership(hyparview::Message::Join { .. }), .. })
                if *peer == info(2).id
        )));
        // the new neighbour is offered what was said while alone
        assert!(out.iter().any(|o| matches!(
            o,
            OutEvent::Send(_, Message { body: Body::Plumtree(plumtree::Message::IHave(l)), .. })
                if l.iter().any(|h| h.id == MessageId::of(&p.0))
        )));
        assert_eq!(
            s.broadcast(T0, topic, p, &mut Vec::new()),
            Err(BroadcastError::Duplicate)
        );
        assert_eq!(s.neighbors(&topic), [info(2).id]);
    }

    #[test]
    fn topics_share_a_connection_and_release_it_when_none_needs_it() {
        let (t1, t2) = (TopicId::from_name("a"), TopicId::from_name("b"));
        let mut s = node(1);
        let peer = info(2).id;
        for t in [t1, t2] {
            let out = s.handle(T0, join(t, Strategy::Plumtree, Some(2)));
            assert!(out.contains(&OutEvent::Dial(peer, info(2).data)));
        }
        let out = s.handle(T0, InEvent::Leave(t1));
        assert!(
            out.iter()
                .any(|o| matches!(o, OutEvent::Send(p, _) if *p == peer))
        );
        assert!(
            !out.contains(&OutEvent::Disconnect(peer)),
            "t2 still uses it"
        );
        let out = s.handle(T0, InEvent::Leave(t2));
        assert!(out.contains(&OutEvent::Disconnect(peer)));
        assert_eq!(s.connected_peers().count(), 0);
    }

    #[test]
    fn peer_that_keeps_misbehaving_is_banned_and_disconnected() {
        let topic = TopicId::from_name("room");
        let mut s = node(1);
        s.handle(T0, join(topic, Strategy::Plumtree, Some(2)));
        let bad = info(2).id;
        let graft = Message {
            topic,
            body: Body::Plumtree(plumtree::Message::Graft(Some(MessageId::of(b"?")))),
        };
        let mut banned_at = None;
        for k in 1..=Config::default().max_strikes {
            let out = s.handle(
                T0,
                InEvent::Message {
                    from: bad,
                    message: graft.clone(),
                },
            );
            if out.contains(&OutEvent::Emit(Event::Banned(bad))) {
                assert!(out.contains(&OutEvent::Disconnect(bad)));
                banned_at = Some(k);
            }
        }
        assert_eq!(banned_at, Some(Config::default().max_strikes));
        assert!(s.neighbors(&topic).is_empty());
        let out = s.handle(
            T0,
            InEvent::Message {
                from: bad,
                message: graft,
            },
        );
        assert_eq!(out, [OutEvent::Disconnect(bad)]);
        assert_eq!(s.stats().banned_dropped, 1);
        assert_eq!(
            s.topic_stats(&topic)
                .unwrap()
                .plumtree
                .unwrap()
                .graft_unknown,
            16
        );
    }

    #[test]
    fn malformed_frames_count_as_strikes() {
        let mut s = node(1);
        for _ in 0..Config::default().max_strikes {
            s.handle(T0, InEvent::Malformed(info(3).id));
        }
        assert_eq!(s.stats().malformed, 16);
        assert!(s.is_banned(T0, &info(3).id));
        // the ban ends
        assert!(!s.is_banned(Duration::from_secs(3600), &info(3).id));
    }

    #[test]
    fn messages_for_unknown_topics_or_strategies_are_counted_not_acted_on() {
        let topic = TopicId::from_name("room");
        let mut s = node(1);
        s.handle(T0, join(topic, Strategy::Plumtree, Some(2)));
        let rumor = Message {
            topic,
            body: Body::Rumor(rumor::Message::Known(MessageId::of(b"x"))),
        };
        assert!(
            s.handle(
                T0,
                InEvent::Message {
                    from: info(2).id,
                    message: rumor
                }
            )
            .is_empty()
        );
        let elsewhere = Message {
            topic: TopicId::from_name("other"),
            body: Body::Plumtree(plumtree::Message::Prune),
        };
        let out = s.handle(
            T0,
            InEvent::Message {
                from: info(3).id,
                message: elsewhere,
            },
        );
        assert_eq!(out, [OutEvent::Disconnect(info(3).id)]);
        assert_eq!((s.stats().wrong_strategy, s.stats().unknown_topic), (1, 1));
    }

    #[test]
    fn broadcast_is_refused_outside_a_topic_or_over_the_size_cap() {
        let topic = TopicId::from_name("room");
        let mut s = node(1);
        let mut out = Vec::new();
        let p = Payload::from(b"x".to_vec());
        assert_eq!(
            s.broadcast(T0, topic, p.clone(), &mut out),
            Err(BroadcastError::NotJoined(topic))
        );
        s.handle(T0, join(topic, Strategy::Flood, Some(2)));
        let big = Payload::from(vec![0; plumtree::MAX_PAYLOAD_LEN + 1]);
        assert!(matches!(
            s.broadcast(T0, topic, big, &mut out),
            Err(BroadcastError::TooLarge { .. })
        ));
        assert!(s.broadcast(T0, topic, p.clone(), &mut out).is_ok());
        assert_eq!(
            s.broadcast(T0, topic, p, &mut out),
            Err(BroadcastError::Duplicate)
        );
    }

    #[test]
    fn gossip_from_a_peer_that_is_not_a_neighbour_is_answered_with_disconnect() {
        let topic = TopicId::from_name("room");
        let mut s = node(1);
        s.handle(T0, join(topic, Strategy::Plumtree, Some(2)));
        let stray = Message {
            topic,
            body: Body::Plumtree(plumtree::Message::Prune),
        };
        let out = s.handle(
            T0,
            InEvent::Message {
                from: info(4).id,
                message: stray,
            },
        );
        let fix = Message {
            topic,
            body: Body::Membership(hyparview::Message::Disconnect { alive: true }),
        };
        assert!(out.contains(&OutEvent::Send(info(4).id, fix)));
    }
}
