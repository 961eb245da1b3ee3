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
//! # Joining through contacts that may not be members
//!
//! HyParView assumes the contact is in the overlay (its JOIN has no answer).
//! Bootstrap lists come from LAN discovery and connections, so here the
//! contact may not be in the topic (yet, or any more). Three conventions make
//! that safe; all live in this state, so the simulator runs them:
//!
//! - a node answers any message (other than DISCONNECT) for a topic it has not
//!   joined with `DISCONNECT { alive: false }` (never DISCONNECT to a
//!   DISCONNECT, so two non-members cannot loop);
//! - a member answers a JOIN in a Plumtree or LAN topic with an empty IHAVE, so
//!   the newcomer knows its contact really is a member. [`State::confirmed`]
//!   lists the neighbours that proved membership this way (any message in the
//!   topic but DISCONNECT counts);
//! - in those topics a join *probes* its bootstrap peers one at a time: JOIN
//!   goes to the first; if it refuses, fails or stays silent for
//!   [`Config::join_probe_timeout`], to the next. Handing HyParView all of them
//!   at once would, when the contact is not a member, join through NEIGHBOR
//!   requests to the fallbacks, which start no random walks: the newcomer would
//!   hang by one link. Rumor and flood topics get the whole list.
//!
//! Every bootstrap peer is also a membership *candidate*
//! ([`hyparview::InEvent::Candidates`]): probed now and then, it is how two
//! overlays of one topic (nodes that joined at the same moment through each
//! other, the two sides of a healed network cut) find and merge into each
//! other. The driver may add more with [`InEvent::Candidates`].
//!
//! # Bad input
//!
//! Each sub-protocol drops input that breaks its limits and counts it. Every
//! such drop is a strike against the peer; [`Config::max_strikes`] strikes
//! within [`Config::strike_window`] ban the peer from every topic for
//! `hyparview::Config::ban_duration` and close its connection.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    /// A join contact that neither acknowledges nor refuses within this is
    /// skipped (Plumtree and LAN topics; see the module docs).
    pub join_probe_timeout: Duration,
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
            join_probe_timeout: Duration::from_secs(1),
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
    /// Give up on this join contact if it is still the one asked.
    JoinProbe(PeerId),
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
    /// Peers that may be in `topic` (LAN neighbours, connected peers): probed
    /// now and then to find and merge other overlays of the topic.
    Candidates {
        topic: TopicId,
        peers: Vec<PeerInfo>,
    },
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
    /// DISCONNECTs sent for topics we are not in.
    pub not_member_replies: u64,
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

/// A join in progress: the contact asked last and the ones left to ask.
#[derive(Debug)]
struct Probe {
    contact: PeerId,
    rest: VecDeque<PeerInfo>,
}

#[derive(Debug)]
struct Topic<R> {
    id: TopicId,
    /// Plumtree or LAN: joins probe, members acknowledge JOINs.
    tree: bool,
    membership: hyparview::State<R>,
    dissemination: Dissemination<R>,
    probe: Option<Probe>,
    /// Active neighbours that sent us something in the topic.
    confirmed: BTreeSet<PeerId>,
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
                    self.confirmed.remove(&peer);
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

    /// Joins through `contact`; in a tree topic, one contact at a time.
    fn join(
        &mut self,
        now: Duration,
        timeout: Duration,
        bootstrap: Vec<PeerInfo>,
        ctx: &mut Ctx<'_>,
    ) {
        if !bootstrap.is_empty() {
            let candidates = hyparview::InEvent::Candidates(bootstrap.clone());
            self.on_membership(now, candidates, ctx);
        }
        let mut bootstrap: VecDeque<PeerInfo> = bootstrap.into();
        let Some(contact) = bootstrap.pop_front() else {
            return;
        };
        if !self.tree {
            let others = bootstrap.into();
            self.on_membership(now, hyparview::InEvent::Join { contact, others }, ctx);
            return;
        }
        self.start_probe(now, timeout, contact, bootstrap, ctx);
    }

    fn start_probe(
        &mut self,
        now: Duration,
        timeout: Duration,
        contact: PeerInfo,
        rest: VecDeque<PeerInfo>,
        ctx: &mut Ctx<'_>,
    ) {
        // The ones left also seed the passive view: random peers far from
        // the contact, which the view's refills link to (without them, nodes
        // that join at the same moment, whose contacts have few neighbours to
        // walk the JOIN through, end in a long, thin overlay).
        let others: Vec<PeerInfo> = rest.iter().cloned().collect();
        self.probe = Some(Probe {
            contact: contact.id,
            rest,
        });
        ctx.out.push(OutEvent::ScheduleTimer(
            timeout,
            Timer {
                topic: self.id,
                kind: TopicTimer::JoinProbe(contact.id),
            },
        ));
        let join = hyparview::InEvent::Join { contact, others };
        self.on_membership(now, join, ctx);
    }

    /// The join contact is not a member (or failed, or is silent): ask the
    /// next. With none left we are the first in the topic, as far as we know.
    fn next_probe(&mut self, now: Duration, timeout: Duration, ctx: &mut Ctx<'_>) {
        let Some(mut p) = self.probe.take() else {
            return;
        };
        if let Some(contact) = p.rest.pop_front() {
            self.start_probe(now, timeout, contact, p.rest, ctx);
        }
    }

    fn probing(&self, peer: &PeerId) -> bool {
        self.probe.as_ref().is_some_and(|p| p.contact == *peer)
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

    /// The topics joined.
    pub fn topics(&self) -> impl Iterator<Item = &TopicId> {
        self.topics.keys()
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

    /// Active neighbours of `topic` that proved they are members (see the
    /// module docs).
    pub fn confirmed(&self, topic: &TopicId) -> Vec<PeerId> {
        self.topics
            .get(topic)
            .map(|t| {
                t.membership
                    .active_view()
                    .filter(|p| t.confirmed.contains(p))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a join of `topic` is still asking its contacts.
    pub fn is_joining(&self, topic: &TopicId) -> bool {
        self.topics.get(topic).is_some_and(|t| t.probe.is_some())
    }

    /// The topic's overlay label (see `hyparview`'s docs on merging).
    pub fn root(&self, topic: &TopicId) -> Option<PeerId> {
        self.topics.get(topic).map(|t| t.membership.root())
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
                let bootstrap: Vec<PeerInfo> =
                    bootstrap.into_iter().filter(|p| p.id != me).collect();
                let timeout = self.config.join_probe_timeout;
                if let Some(t) = self.topics.get_mut(&topic) {
                    // Already joined: join again through these peers, keeping
                    // the topic's caches (a node left alone, or that joined
                    // before it knew anyone).
                    t.join(now, timeout, bootstrap, &mut ctx);
                    return;
                }
                if self.topics.len() >= self.config.max_topics {
                    return;
                }
                let mut t = new_topic(&self.me, &self.config, &mut self.rng, topic, strategy);
                t.join(now, timeout, bootstrap, &mut ctx);
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
                    if !matches!(
                        message.body,
                        Body::Membership(hyparview::Message::Disconnect { .. })
                    ) {
                        // Not a member: say so, so a newcomer tries its next
                        // contact and a prober forgets us.
                        self.stats.not_member_replies += 1;
                        let m = Message {
                            topic: message.topic,
                            body: Body::Membership(hyparview::Message::Disconnect { alive: false }),
                        };
                        ctx.out.push(OutEvent::Send(from, m));
                    }
                    if !ctx.conns.contains_key(&from) {
                        ctx.out.push(OutEvent::Disconnect(from));
                    }
                    return;
                };
                let timeout = self.config.join_probe_timeout;
                let is_disconnect = matches!(
                    message.body,
                    Body::Membership(hyparview::Message::Disconnect { .. })
                );
                let is_join = matches!(
                    message.body,
                    Body::Membership(hyparview::Message::Join { .. })
                );
                let is_ack = matches!(
                    &message.body,
                    Body::Plumtree(plumtree::Message::IHave(ids)) if ids.is_empty()
                );
                // The contact we joined through refused (not, or no longer,
                // a member: ask the next once the DISCONNECT dropped it from
                // the view), or acknowledged (a member: the join is over).
                let refused = is_disconnect && t.probing(&from);
                if is_ack && t.probing(&from) {
                    t.probe = None;
                }
                let input = match message.body {
                    Body::Membership(m) => {
                        t.on_membership(now, hyparview::InEvent::Message(from, m), &mut ctx);
                        if refused {
                            t.next_probe(now, timeout, &mut ctx);
                        }
                        if !is_disconnect && t.membership.is_active(&from) {
                            t.confirmed.insert(from);
                            if is_join && t.tree {
                                ctx.out.push(OutEvent::Send(from, join_ack(t.id)));
                            }
                        }
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
                    if t.membership.is_active(&from) {
                        t.confirmed.insert(from);
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
                let timeout = self.config.join_probe_timeout;
                for t in self.topics.values_mut() {
                    t.on_membership(now, hyparview::InEvent::ConnectionLost(peer), &mut ctx);
                    if t.probing(&peer) {
                        t.next_probe(now, timeout, &mut ctx);
                    }
                }
            }
            InEvent::Timer(Timer { topic, kind }) => {
                let Some(t) = self.topics.get_mut(&topic) else {
                    return;
                };
                match kind {
                    TopicTimer::JoinProbe(contact) => {
                        if t.probing(&contact) {
                            // Silent for the whole probe: as good as a refusal.
                            // HyParView took the contact into the active view
                            // at once; one that never proved membership leaves
                            // it now, or a contact that is alive but does not
                            // answer (not in the room and its answer lost, or
                            // hostile) would hold a neighbour slot for good,
                            // and a node with no other neighbour would never
                            // look for a real one (its view is not empty).
                            if !t.confirmed.contains(&contact) {
                                let lost = hyparview::InEvent::ConnectionLost(contact);
                                t.on_membership(now, lost, &mut ctx);
                            }
                            let timeout = self.config.join_probe_timeout;
                            t.next_probe(now, timeout, &mut ctx);
                        }
                    }
                    TopicTimer::Membership(k) => {
                        t.on_membership(now, hyparview::InEvent::Timer(k), &mut ctx)
                    }
                    TopicTimer::Plumtree(k) => {
                        t.on_dissemination(now, Input::PlumtreeTimer(k), &mut ctx)
                    }
                    TopicTimer::Rumor(k) => t.on_dissemination(now, Input::RumorTimer(k), &mut ctx),
                }
            }
            InEvent::Candidates { topic, peers } => {
                let me = self.me.id;
                let peers = peers.into_iter().filter(|p| p.id != me).collect();
                if let Some(t) = self.topics.get_mut(&topic) {
                    t.on_membership(now, hyparview::InEvent::Candidates(peers), &mut ctx);
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

/// A member's answer to a JOIN in a tree topic (see the module docs).
fn join_ack(topic: TopicId) -> Message {
    Message {
        topic,
        body: Body::Plumtree(plumtree::Message::IHave(Vec::new())),
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
        tree: matches!(strategy, Strategy::Plumtree | Strategy::Lan),
        membership,
        dissemination,
        probe: None,
        confirmed: BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sim::{self, Scheduler, SimRng};
    use crate::proto::wire;
    use rand::seq::IteratorRandom;

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
                if !self.nodes.contains_key(&to) {
                    continue; // gone: silent
                }
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
        // a non-member says so, so the sender tries elsewhere
        let refusal = Message {
            topic: TopicId::from_name("other"),
            body: Body::Membership(hyparview::Message::Disconnect { alive: false }),
        };
        assert_eq!(
            out,
            [
                OutEvent::Send(info(3).id, refusal),
                OutEvent::Disconnect(info(3).id)
            ]
        );
        assert_eq!((s.stats().wrong_strategy, s.stats().unknown_topic), (1, 1));
        assert_eq!(s.stats().not_member_replies, 1);
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

    impl Mini {
        /// Connected components of the active views of `members`.
        fn components(&self, topic: &TopicId, members: &[u8]) -> usize {
            let ids: BTreeSet<PeerId> = members.iter().map(|i| info(*i).id).collect();
            let mut seen = BTreeSet::new();
            let mut count = 0;
            for start in &ids {
                if !seen.insert(*start) {
                    continue;
                }
                count += 1;
                let mut stack = vec![*start];
                while let Some(x) = stack.pop() {
                    for y in self.nodes[&x].neighbors(topic) {
                        if ids.contains(&y) && seen.insert(y) {
                            stack.push(y);
                        }
                    }
                }
            }
            count
        }

        /// Broadcasts from `from` and returns how many others delivered it.
        fn reach(&mut self, topic: TopicId, from: u8, text: &str) -> usize {
            let me = info(from).id;
            let now = self.sched.now();
            let mut out = Vec::new();
            let id = self
                .nodes
                .get_mut(&me)
                .unwrap()
                .broadcast(
                    now,
                    topic,
                    Payload::from(text.as_bytes().to_vec()),
                    &mut out,
                )
                .unwrap();
            self.apply(me, out);
            self.run_until(now + Duration::from_secs(3));
            self.received.iter().filter(|(_, d)| *d == id).count()
        }
    }

    #[test]
    fn a_join_asks_its_contacts_one_at_a_time_until_a_member_answers() {
        let topic = TopicId::from_name("room");
        let mut m = Mini::new(4);
        m.input(info(1).id, join(topic, Strategy::Lan, None));
        // 2 is not in the room and says so; 3 does not exist (silent): both
        // are skipped, and 4 joins through 1
        let bootstrap = [2, 3, 1].map(info).to_vec();
        m.nodes.remove(&info(3).id);
        m.input(
            info(4).id,
            InEvent::Join {
                topic,
                strategy: Strategy::Lan,
                bootstrap,
            },
        );
        assert!(m.nodes[&info(4).id].is_joining(&topic));
        m.run_until(Duration::from_millis(500));
        assert!(
            m.nodes[&info(4).id].is_joining(&topic),
            "3 has not answered yet"
        );
        m.run_until(Duration::from_secs(3));
        let n4 = &m.nodes[&info(4).id];
        assert!(!n4.is_joining(&topic));
        assert_eq!(n4.confirmed(&topic), [info(1).id]);
        assert_eq!(m.nodes[&info(1).id].confirmed(&topic), [info(4).id]);
        assert!(m.nodes[&info(2).id].stats().not_member_replies > 0);
        // the silent one does not keep the slot it got at once: it never
        // proved it is in the room
        assert_eq!(n4.neighbors(&topic), [info(1).id]);
    }

    #[test]
    fn two_overlays_of_one_topic_merge_once_a_member_hears_of_the_other() {
        let topic = TopicId::from_name("room");
        let mut m = Mini::new(40);
        // two rooms' worth of nodes that never heard of each other: 1..=20
        // join through 1, 21..=40 through 21
        for i in 1..=40u8 {
            let first = if i <= 20 { 1 } else { 21 };
            let contact = (i != first).then_some(first + (i - first) / 2);
            m.input(info(i).id, join(topic, Strategy::Lan, contact));
            m.run_until(m.sched.now() + Duration::from_millis(20));
        }
        m.run_until(Duration::from_secs(30));
        let all: Vec<u8> = (1..=40).collect();
        assert_eq!(m.components(&topic, &all), 2);
        assert_eq!(m.reach(topic, 30, "before"), 19);
        // one member learns of one member of the other overlay (LAN discovery)
        m.input(
            info(30).id,
            InEvent::Candidates {
                topic,
                peers: vec![info(5)],
            },
        );
        m.run_until(m.sched.now() + Duration::from_secs(15));
        assert_eq!(m.components(&topic, &all), 1);
        let roots: BTreeSet<PeerId> = all
            .iter()
            .filter_map(|i| m.nodes[&info(*i).id].root(&topic))
            .collect();
        assert_eq!(roots.into_iter().collect::<Vec<_>>(), [info(1).id]);
        assert_eq!(m.reach(topic, 30, "after"), 39);
    }

    #[test]
    fn nodes_joining_at_the_same_moment_end_in_one_overlay() {
        let topic = TopicId::from_name("room");
        let n = 120u8;
        let mut m = Mini::new(n);
        let mut rng = sim::rng(5, 0);
        // every node at once, each through 3 random others (members or not yet)
        for i in 1..=n {
            let bootstrap = (1..=n)
                .filter(|j| *j != i)
                .choose_multiple(&mut rng, 3)
                .into_iter()
                .map(info)
                .collect();
            m.input(
                info(i).id,
                InEvent::Join {
                    topic,
                    strategy: Strategy::Lan,
                    bootstrap,
                },
            );
        }
        m.run_until(Duration::from_secs(20));
        let all: Vec<u8> = (1..=n).collect();
        assert_eq!(m.components(&topic, &all), 1);
        assert_eq!(m.reach(topic, 7, "hello"), n as usize - 1);
    }
}
