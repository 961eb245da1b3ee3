//! HyParView membership: the overlay that gossip runs on.
//!
//! Follows Leitão, Pereira and Rodrigues, "HyParView: a membership protocol for
//! reliable gossip-based broadcast" (DSN 2007). Each node keeps
//!
//! - a small *active view* (default 5): the peers it holds a connection to and
//!   gossips with. Links are symmetric: if `a` has `b` active, `b` has `a`, which
//!   every transition below preserves (an accept is always answered, an eviction
//!   always announced with DISCONNECT);
//! - a larger *passive view* (default 30): peers known to exist, with the
//!   [`PeerData`] needed to dial them, used to refill the active view when a
//!   neighbour fails.
//!
//! A newcomer sends JOIN to a contact, which takes it as a neighbour and starts
//! random walks (FORWARD_JOIN) of length ARWL (6) through the overlay: the walk
//! ends in a node that takes the newcomer as a neighbour, and the node at hop PRWL
//! (3) puts it in its passive view. A lost connection means a failed peer: it is
//! dropped and the active view is refilled from the passive view with NEIGHBOR
//! requests, of high priority (always accepted) when at most half the active
//! view is left (the paper: when it is empty) and of low priority (accepted only
//! where there is room) otherwise; after a refusal the next attempt waits for
//! the next shuffle tick, and the refusing peer is not asked again before it. An eviction (DISCONNECT) is replaced at once, too.
//! A periodic SHUFFLE walk exchanges samples of both views, so passive views
//! stay fresh.
//!
//! # Merging overlays
//!
//! HyParView has no way to merge two overlays whose members all have full
//! active views: nodes that join at the same moment through each other, or
//! the two sides of a network cut, stay apart forever. Two additions fix that:
//!
//! - **A label per overlay**: its *root*, the smallest member id heard of. A
//!   node that is its own root sends ROOT (with a growing sequence number) to
//!   its neighbours every [`Config::root_interval`]; a node forwards a ROOT that
//!   names a smaller root, or a newer beacon of its root, to its other
//!   neighbours, and tells every new neighbour its root. A root not heard of for
//!   [`ROOT_EXPIRY`] intervals (it crashed, or is on the other side of a cut) is
//!   dropped: the node becomes its own root again and the smallest id wins once
//!   more. One beacon crosses each link once per interval.
//! - **Probes**: the driver hands in *candidates*, peers that may be in the
//!   overlay, learnt outside it (bootstrap lists, LAN discovery). Each root
//!   tick, a node sends PROBE with its root to one candidate not checked for
//!   [`Config::probe_recheck`], doubled with each probe of it while our label
//!   stays the same (up to [`MAX_PROBE_BACKOFF`] times). A peer the driver
//!   handed in that sent us a membership message is no candidate (it knows
//!   our overlay, or its message merges us): the sessions the overlay's own
//!   traffic opens would otherwise each lead to a probe (with 2,000 real
//!   nodes in one process, probes were most of the connections opened). A
//!   member of another overlay (a different root) answers; whichever side
//!   has the larger root sends a high-priority NEIGHBOR to the other. That one link merges the overlays: the smaller
//!   root floods across it and the later probes find one label. A candidate
//!   that is not in the topic says so (DISCONNECT) and is forgotten.
//! - **Lost links probed again.** An eviction can cut the overlay in two,
//!   and both parts keep the label of the whole, so no probe tells them
//!   apart until the label expires on the part without the root (after a
//!   burst of joins through one contact each, part after part split off this
//!   way and stayed apart for good). So both ends of an eviction remember
//!   each other with the label they held; once a newer beacon (or a smaller
//!   root) reaches one of them, it probes the other a moment later
//!   ([`Timer::Reprobe`]). An end that still holds the older beacon of the
//!   same root was cut off by that loss and links back. Between other peers
//!   a probe with the same root links only when its beacon is two newer (one
//!   may be in flight). The first [`FAST_ROOT_TICKS`] root ticks come five
//!   times as often, so that while a burst of joins settles each round of
//!   this takes about two seconds. And an eviction picks, when it can, a
//!   neighbour that sent us our current beacon without being the first to:
//!   it reaches the root without us, so dropping it splits nothing.
//!
//! Sans-IO: the driver feeds [`InEvent`]s and acts on [`OutEvent`]s. Connections
//! are the driver's: [`OutEvent::Dial`] means "hold a connection to this peer",
//! [`OutEvent::Disconnect`] means "this state no longer needs it" (flush queued
//! sends, then close). Input from peers is bounded ([`MAX_PEER_DATA_LEN`],
//! [`MAX_SHUFFLE_NODES`], [`MAX_TTL`]); violations are dropped, counted in
//! [`Stats`] and reported as [`OutEvent::Misbehaving`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::Rng;
use rand::seq::IteratorRandom;
use serde::{Deserialize, Serialize};

use crate::identity::PeerId;

/// Longest [`PeerData`] accepted from a peer.
pub const MAX_PEER_DATA_LEN: usize = 512;
/// Most peers accepted in one SHUFFLE or SHUFFLE_REPLY.
pub const MAX_SHUFFLE_NODES: usize = 64;
/// Largest random-walk length accepted from a peer.
pub const MAX_TTL: u8 = 16;
/// A root not heard of for this many [`Config::root_interval`]s is dropped.
pub const ROOT_EXPIRY: u32 = 3;
/// A candidate probed again and again while our label stays the same waits
/// up to `2^MAX_PROBE_BACKOFF` times [`Config::probe_recheck`] between probes
/// (30 s, 60, 120, then 240 s by default).
pub const MAX_PROBE_BACKOFF: u32 = 3;
/// Peers remembered as having sent us a membership message (not candidates).
pub const MAX_HEARD: usize = 64;
/// Most candidates kept (see the module docs).
pub const MAX_CANDIDATES: usize = 32;
/// Most ROOT and PROBE messages accepted from one peer per
/// [`Config::root_interval`]: beacons cross each link once per interval, and
/// merges or an expired root add a short burst of better labels. More is
/// flooding (each accepted label is forwarded to every neighbour).
pub const MAX_ROOT_MESSAGES: u32 = 64;
/// Most peers remembered as lost links to probe again (see the module docs).
pub const MAX_LOST: usize = 16;
/// Root ticks after the first that come five times as often: while a burst
/// of joins settles, each beacon lets the ends of a lost link tell whether
/// it split the overlay (see the module docs). Over within two intervals,
/// before steady state.
pub const FAST_ROOT_TICKS: u32 = 8;

#[derive(Debug, Clone)]
pub struct Config {
    /// Size of the active view (paper: log(n) + c; 5 covers 10,000 nodes).
    pub active_view_capacity: usize,
    /// Size of the passive view.
    pub passive_view_capacity: usize,
    /// Active random walk length (ARWL): hops a FORWARD_JOIN travels.
    pub active_random_walk_length: u8,
    /// Passive random walk length (PRWL): the hop at which the newcomer is put in
    /// a passive view.
    pub passive_random_walk_length: u8,
    /// Time between shuffles (each draws ±25 % jitter).
    pub shuffle_interval: Duration,
    /// Active-view peers in a shuffle (ka).
    pub shuffle_active_count: usize,
    /// Passive-view peers in a shuffle (kp).
    pub shuffle_passive_count: usize,
    /// Hops a SHUFFLE walks before it is answered.
    pub shuffle_random_walk_length: u8,
    /// A NEIGHBOR request unanswered for this long has failed. It counts the
    /// dial (TCP and TLS) too: too short, and a loaded or slow peer's accept
    /// comes after we gave up and must be undone.
    pub neighbor_timeout: Duration,
    /// How long a banned peer is refused.
    pub ban_duration: Duration,
    /// Time between a root's beacons and between merge probes (±25 %).
    pub root_interval: Duration,
    /// A candidate probed is not probed again before this.
    pub probe_recheck: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            active_view_capacity: 5,
            passive_view_capacity: 30,
            active_random_walk_length: 6,
            passive_random_walk_length: 3,
            shuffle_interval: Duration::from_secs(10),
            shuffle_active_count: 3,
            shuffle_passive_count: 4,
            shuffle_random_walk_length: 6,
            neighbor_timeout: Duration::from_secs(2),
            ban_duration: Duration::from_secs(600),
            root_interval: Duration::from_secs(10),
            probe_recheck: Duration::from_secs(30),
        }
    }
}

/// Opaque dialling information (the driver encodes addresses into it), carried
/// with peer ids so that a node can dial a peer it only heard of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerData(pub Vec<u8>);

/// A peer and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: PeerId,
    pub data: PeerData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    /// The requester has no neighbour left: always accepted.
    High,
    /// Accepted only if the receiver's active view has room.
    Low,
}

/// HyParView messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A newcomer asks the receiver (its contact) to take it as a neighbour.
    Join {
        data: PeerData,
    },
    /// A random walk announcing a newcomer; `ttl` counts down to 0.
    ForwardJoin {
        peer: PeerInfo,
        ttl: u8,
    },
    /// Asks the receiver to become a neighbour; answered by `NeighborReply`.
    Neighbor {
        priority: Priority,
        data: PeerData,
    },
    NeighborReply {
        accepted: bool,
    },
    /// The sender dropped the receiver from its active view; `alive` is false
    /// when the sender is leaving the overlay.
    Disconnect {
        alive: bool,
    },
    /// A random walk carrying a sample of `origin`'s views.
    Shuffle {
        origin: PeerInfo,
        nodes: Vec<PeerInfo>,
        ttl: u8,
    },
    /// The answer to a shuffle, sent to its origin: a sample of our passive view.
    ShuffleReply {
        nodes: Vec<PeerInfo>,
    },
    /// The sender's overlay label (see the module docs): a beacon from an
    /// active neighbour.
    Root {
        root: PeerId,
        seq: u64,
    },
    /// A merge probe, or the answer of a member whose root is smaller than the
    /// prober's: `data` is how to dial the sender.
    Probe {
        root: PeerId,
        seq: u64,
        data: PeerData,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Shuffle,
    NeighborTimeout(PeerId),
    /// Beacon (if we are the root), expire a silent root, probe a candidate.
    Root,
    /// Probe the peers of links lost since our label last changed.
    Reprobe,
}

/// What the driver (or the gossip topic) feeds in.
#[derive(Debug, Clone)]
pub enum InEvent {
    /// Join the overlay through `contact`; further known peers seed the passive
    /// view and are tried if the contact fails.
    Join {
        contact: PeerInfo,
        others: Vec<PeerInfo>,
    },
    Message(PeerId, Message),
    /// The connection to a peer failed or could not be opened: the peer failed.
    ConnectionLost(PeerId),
    Timer(Timer),
    /// Drop a misbehaving peer from both views and refuse it for a while.
    Ban(PeerId),
    /// Our dialling information changed.
    UpdateData(PeerData),
    /// Peers that may be in the overlay, learnt outside it: probed now and then
    /// to find and merge other overlays of the same topic.
    Candidates(Vec<PeerInfo>),
    /// Leave the overlay: tell every neighbour, release every connection.
    Leave,
}

/// What the state asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent {
    Send(PeerId, Message),
    /// Hold a connection to this peer (dial `PeerData` unless already connected).
    Dial(PeerId, PeerData),
    /// This state no longer needs the connection: flush queued sends, then close.
    Disconnect(PeerId),
    ScheduleTimer(Duration, Timer),
    Emit(Event),
    /// The peer sent input that breaks the protocol's limits (already dropped).
    Misbehaving(PeerId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The peer entered the active view: gossip with it.
    NeighborUp(PeerId),
    /// The peer left the active view.
    NeighborDown(PeerId),
}

/// Cumulative counters; `invalid` counts messages dropped for breaking limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub joins: u64,
    pub forward_joins: u64,
    pub neighbor_accepted: u64,
    pub neighbor_rejected: u64,
    pub neighbor_failed: u64,
    pub shuffles: u64,
    pub failures: u64,
    pub evictions: u64,
    pub invalid: u64,
    pub banned_dropped: u64,
    /// Roots adopted (a smaller one, or the first beacon after an expiry).
    pub roots_adopted: u64,
    /// Roots dropped because they went silent.
    pub roots_expired: u64,
    pub probes_sent: u64,
    /// Links made to merge two overlays (high-priority NEIGHBOR after a probe).
    pub merges: u64,
}

/// The membership state of one node in one overlay.
#[derive(Debug)]
pub struct State<R> {
    me: PeerInfo,
    config: Config,
    rng: R,
    active: BTreeMap<PeerId, PeerData>,
    passive: BTreeMap<PeerId, PeerData>,
    /// Outstanding NEIGHBOR requests we sent.
    pending: BTreeSet<PeerId>,
    /// Passive peers that refused a low-priority NEIGHBOR since the last
    /// shuffle tick: not asked again before it (else a node whose passive
    /// peers are all full asks them in a loop, one round trip per request).
    refused: BTreeSet<PeerId>,
    /// Peers we sent in our last shuffle: evicted first when the reply arrives.
    last_shuffle: Vec<PeerId>,
    banned: BTreeMap<PeerId, Duration>,
    shuffle_scheduled: bool,
    /// Our overlay's label and the newest beacon of it we have seen.
    root: PeerId,
    root_seq: u64,
    /// When that beacon arrived (or we became our own root).
    root_heard: Duration,
    /// The sequence of our own beacons.
    own_seq: u64,
    /// The neighbour our current beacon came from first.
    parent: Option<PeerId>,
    /// Other neighbours that sent us our current beacon: each reaches the
    /// root without its link to us (see `add_active`).
    echoed: BTreeSet<PeerId>,
    /// Neighbours linked since our current beacon: each told us our label as
    /// it linked, which may have come from us, so it proves no other way to
    /// the root (see `on_root`).
    fresh: BTreeSet<PeerId>,
    root_scheduled: bool,
    /// How often the root timer fired (the first comes early, the next
    /// [`FAST_ROOT_TICKS`] faster).
    root_ticks: u32,
    /// Candidates (see [`Candidate`]).
    candidates: BTreeMap<PeerId, Candidate>,
    /// The last [`MAX_HEARD`] peers that sent us a membership message: they
    /// know our overlay (or their message merges us), so they are no
    /// candidates.
    heard: VecDeque<PeerId>,
    /// ROOT and PROBE messages per peer in the current window (start, count).
    root_budget: BTreeMap<PeerId, (Duration, u32)>,
    /// Peers whose link ended while both ends were alive (an eviction, either
    /// way), with our label at the time: probed again once a newer label
    /// reached us, in case that link held the overlay together.
    lost: BTreeMap<PeerId, Lost>,
    reprobe_scheduled: bool,
    stats: Stats,
}

/// A peer that may be in another overlay of the topic (see the module docs).
#[derive(Debug)]
struct Candidate {
    data: PeerData,
    /// When it was last probed.
    last: Option<Duration>,
    /// Probes of it since our label last changed: each one after the first
    /// doubles the wait before the next (up to [`MAX_PROBE_BACKOFF`] times).
    probes: u32,
    /// A contact of our join: kept when it talks to us (a node that joined
    /// through a contact that then split off with it has no other way back).
    bootstrap: bool,
}

impl Candidate {
    /// How long after its last probe it is probed again.
    fn recheck(&self, base: Duration) -> Duration {
        base * (1 << self.probes.saturating_sub(1))
    }
}

/// A link that ended while both ends were alive (see [`State`]).
#[derive(Debug)]
struct Lost {
    data: PeerData,
    /// Our label when the link ended.
    root: PeerId,
    seq: u64,
    /// Probed once since; dropped at the next reprobe round.
    probed: bool,
}

impl<R: Rng> State<R> {
    pub fn new(me: PeerInfo, config: Config, rng: R) -> Self {
        Self {
            config,
            rng,
            active: BTreeMap::new(),
            passive: BTreeMap::new(),
            pending: BTreeSet::new(),
            refused: BTreeSet::new(),
            last_shuffle: Vec::new(),
            banned: BTreeMap::new(),
            shuffle_scheduled: false,
            root: me.id,
            root_seq: 0,
            root_heard: Duration::ZERO,
            own_seq: 0,
            parent: None,
            echoed: BTreeSet::new(),
            fresh: BTreeSet::new(),
            root_scheduled: false,
            root_ticks: 0,
            candidates: BTreeMap::new(),
            heard: VecDeque::new(),
            root_budget: BTreeMap::new(),
            lost: BTreeMap::new(),
            reprobe_scheduled: false,
            stats: Stats::default(),
            me,
        }
    }

    pub fn me(&self) -> PeerId {
        self.me.id
    }

    pub fn active_view(&self) -> impl Iterator<Item = &PeerId> {
        self.active.keys()
    }

    pub fn passive_view(&self) -> impl Iterator<Item = &PeerId> {
        self.passive.keys()
    }

    pub fn is_active(&self, peer: &PeerId) -> bool {
        self.active.contains_key(peer)
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Our overlay's label: the smallest member id heard of (see the module docs).
    pub fn root(&self) -> PeerId {
        self.root
    }

    /// Feeds one input; appends what to do to `out`.
    pub fn handle(&mut self, now: Duration, event: InEvent, out: &mut Vec<OutEvent>) {
        match event {
            InEvent::Join { contact, others } => {
                self.add_candidates(others.iter().chain([&contact]), true);
                self.join(contact, others, out)
            }
            InEvent::Candidates(peers) => {
                if !peers.is_empty() {
                    self.add_candidates(peers.iter(), false);
                    self.schedule_root(out);
                }
            }
            InEvent::Message(from, msg) => {
                if self.is_banned(now, &from) {
                    self.stats.banned_dropped += 1;
                    out.push(OutEvent::Disconnect(from));
                    return;
                }
                self.on_message(now, from, msg, out);
            }
            InEvent::ConnectionLost(peer) => self.on_connection_lost(peer, out),
            InEvent::Timer(Timer::Shuffle) => {
                self.shuffle_scheduled = false;
                self.refused.clear();
                self.send_shuffle(out);
                self.refill(out);
                self.schedule_shuffle(out);
            }
            InEvent::Timer(Timer::NeighborTimeout(peer)) => {
                if self.pending.remove(&peer) {
                    self.stats.neighbor_failed += 1;
                    self.passive.remove(&peer);
                    self.release(peer, out);
                    self.refill(out);
                }
            }
            InEvent::Timer(Timer::Root) => {
                self.root_scheduled = false;
                self.root_ticks = self.root_ticks.saturating_add(1);
                self.on_root_tick(now, out);
                self.schedule_root(out);
            }
            InEvent::Timer(Timer::Reprobe) => {
                self.reprobe_scheduled = false;
                self.reprobe_lost(out);
            }
            InEvent::Ban(peer) => self.ban(now, peer, out),
            InEvent::UpdateData(data) => self.me.data = data,
            InEvent::Leave => {
                for peer in std::mem::take(&mut self.active).into_keys() {
                    out.push(OutEvent::Send(peer, Message::Disconnect { alive: false }));
                    out.push(OutEvent::Disconnect(peer));
                    out.push(OutEvent::Emit(Event::NeighborDown(peer)));
                }
                for peer in std::mem::take(&mut self.pending) {
                    out.push(OutEvent::Disconnect(peer));
                }
            }
        }
    }

    fn join(&mut self, contact: PeerInfo, others: Vec<PeerInfo>, out: &mut Vec<OutEvent>) {
        for p in others {
            self.add_passive(p.id, p.data);
        }
        if contact.id == self.me.id {
            return;
        }
        self.passive.remove(&contact.id);
        out.push(OutEvent::Dial(contact.id, contact.data.clone()));
        out.push(OutEvent::Send(
            contact.id,
            Message::Join {
                data: self.me.data.clone(),
            },
        ));
        // The contact always accepts a JOIN, so the link is ours from now on; if
        // the contact is dead, ConnectionLost makes us try the passive view.
        self.add_active(contact.id, contact.data, out);
        self.schedule_shuffle(out);
    }

    fn on_message(&mut self, now: Duration, from: PeerId, msg: Message, out: &mut Vec<OutEvent>) {
        if from == self.me.id {
            return self.misbehaving(from, out);
        }
        self.note_heard(from);
        match msg {
            Message::Join { data } => self.on_join(from, data, out),
            Message::ForwardJoin { peer, ttl } => self.on_forward_join(now, from, peer, ttl, out),
            Message::Neighbor { priority, data } => self.on_neighbor(from, priority, data, out),
            Message::NeighborReply { accepted } => self.on_neighbor_reply(from, accepted, out),
            Message::Disconnect { alive } => self.on_disconnect(from, alive, out),
            Message::Shuffle { origin, nodes, ttl } => {
                self.on_shuffle(now, from, origin, nodes, ttl, out)
            }
            Message::ShuffleReply { nodes } => self.on_shuffle_reply(now, from, nodes, out),
            Message::Root { root, seq } => {
                // Only a beacon that changes our label is forwarded (to every
                // neighbour): that is what a flood would amplify, so only such
                // beacons count. Honest neighbours repeat one: each new link
                // is told the label, and while a burst of joins settles, two
                // nodes may link, part and link again many times a second.
                if !self.better_root(root, seq) || self.root_budget(now, from, out) {
                    self.on_root(now, from, root, seq, out);
                }
            }
            Message::Probe { root, seq, data } => {
                if data.0.len() > MAX_PEER_DATA_LEN {
                    return self.misbehaving(from, out);
                }
                if self.root_budget(now, from, out) {
                    self.on_probe(now, from, root, seq, data, out);
                }
            }
        }
    }

    /// `from` sent us a membership message: it learnt of us through our
    /// overlay (a walk, a shuffle, a passive view) or probes us, which merges
    /// the overlays if they differ. Probing it would tell nothing: a peer
    /// whose session came up only for the overlay's own traffic (a shuffle
    /// answer, a refill) is no candidate, or every such session would cost
    /// another connection for a probe later. Our join's contacts stay.
    fn note_heard(&mut self, from: PeerId) {
        if self.candidates.get(&from).is_some_and(|c| !c.bootstrap) {
            self.candidates.remove(&from);
        }
        if self.heard.contains(&from) {
            return;
        }
        if self.heard.len() >= MAX_HEARD {
            self.heard.pop_front();
        }
        self.heard.push_back(from);
    }

    /// Counts a ROOT or PROBE from `from`; false (and a strike) past
    /// [`MAX_ROOT_MESSAGES`] in one interval.
    fn root_budget(&mut self, now: Duration, from: PeerId, out: &mut Vec<OutEvent>) -> bool {
        let window = self.config.root_interval;
        if self.root_budget.len() >= 1024 && !self.root_budget.contains_key(&from) {
            self.root_budget
                .retain(|_, (start, _)| now.saturating_sub(*start) < window);
            if self.root_budget.len() >= 1024 {
                self.root_budget.pop_first();
            }
        }
        let entry = self.root_budget.entry(from).or_insert((now, 0));
        if now.saturating_sub(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > MAX_ROOT_MESSAGES {
            self.misbehaving(from, out);
            return false;
        }
        true
    }

    /// Whether `(root, seq)` is a better label than ours: a smaller root, or a
    /// newer beacon of ours. Nobody speaks for our own id but us.
    fn better_root(&self, root: PeerId, seq: u64) -> bool {
        root != self.me.id && (root < self.root || (root == self.root && seq > self.root_seq))
    }

    fn on_root(
        &mut self,
        now: Duration,
        from: PeerId,
        root: PeerId,
        seq: u64,
        out: &mut Vec<OutEvent>,
    ) {
        // From a peer not (or no longer) active, a beacon is stale news (an
        // eviction crossed it): probes carry the labels between overlays.
        if !self.active.contains_key(&from) {
            return;
        }
        if !self.better_root(root, seq) {
            // A beacon is never forwarded back to where it came from, so a
            // neighbour that forwards ours to us reaches the root another
            // way. One that just linked only told us its label, which may be
            // ours: counted as an echo, the newest neighbour was the one
            // evicted next, and two newcomers hanging on the same full nodes
            // evicted each other with high-priority requests for good.
            if (root, seq) == (self.root, self.root_seq)
                && self.parent != Some(from)
                && !self.fresh.contains(&from)
            {
                self.echoed.insert(from);
            }
            return;
        }
        self.adopt(now, from, root, seq);
        self.schedule_reprobe(out);
        let others: Vec<PeerId> = self
            .active
            .keys()
            .filter(|p| **p != from)
            .copied()
            .collect();
        for p in others {
            out.push(OutEvent::Send(p, Message::Root { root, seq }));
        }
    }

    fn adopt(&mut self, now: Duration, from: PeerId, root: PeerId, seq: u64) {
        if root != self.root {
            self.stats.roots_adopted += 1;
            self.label_changed();
        }
        self.parent = Some(from);
        self.new_beacon();
        self.root = root;
        self.root_seq = seq;
        self.root_heard = now;
    }

    fn on_probe(
        &mut self,
        now: Duration,
        from: PeerId,
        root: PeerId,
        seq: u64,
        data: PeerData,
        out: &mut Vec<OutEvent>,
    ) {
        if self.active.contains_key(&from) {
            // A neighbour is in our overlay whatever it thinks: a beacon.
            return self.on_root(now, from, root, seq, out);
        }
        if root == self.root {
            // The same label: the overlays are one, unless one side is cut
            // off from the root and missed its later beacons. Between the
            // two ends of a lost link one newer beacon tells (the probe comes
            // a moment after it, see `reprobe_lost`); elsewhere a beacon may
            // be in flight, so two.
            let gap = if self.lost.contains_key(&from) { 1 } else { 2 };
            if seq >= self.root_seq.saturating_add(gap) {
                self.merge_into(from, data, out);
            } else if self.root_seq >= seq.saturating_add(gap) {
                self.send_probe(from, data, out);
            } else {
                self.release(from, out);
            }
        } else if root < self.root {
            // Its overlay has the smaller label: we join it.
            self.merge_into(from, data, out);
        } else {
            // Ours has: it joins us once it hears our label.
            self.send_probe(from, data, out);
        }
    }

    /// Sends `peer` a PROBE with our label over a connection held only for
    /// it (a candidate, the other end of a lost link, or the answer to a
    /// prober whose label is worse than ours).
    fn send_probe(&mut self, peer: PeerId, data: PeerData, out: &mut Vec<OutEvent>) {
        let msg = Message::Probe {
            root: self.root,
            seq: self.root_seq,
            data: self.me.data.clone(),
        };
        out.push(OutEvent::Dial(peer, data));
        out.push(OutEvent::Send(peer, msg));
        self.release(peer, out);
    }

    /// Our beacon is a new one (adopted, or ours as root): no neighbour has
    /// echoed it yet, and none has linked since.
    fn new_beacon(&mut self) {
        self.echoed.clear();
        self.fresh.clear();
    }

    /// Our overlay's root changed (a merge, or the old root went quiet): the
    /// world around us changed, so every candidate is worth a probe again at
    /// the usual pace.
    fn label_changed(&mut self) {
        for c in self.candidates.values_mut() {
            c.probes = 0;
        }
    }

    /// Remembers a link that ended while both ends were alive (bounded).
    fn record_lost(&mut self, peer: PeerId, data: PeerData) {
        if self.lost.len() >= MAX_LOST && !self.lost.contains_key(&peer) {
            self.lost.pop_first();
        }
        let lost = Lost {
            data,
            root: self.root,
            seq: self.root_seq,
            probed: false,
        };
        self.lost.insert(peer, lost);
    }

    /// Our label changed (a newer beacon, or a smaller root): the peers of
    /// lost links are probed a moment later, once the same beacon had time to
    /// reach them if they are still in our overlay.
    fn schedule_reprobe(&mut self, out: &mut Vec<OutEvent>) {
        if self.reprobe_scheduled || self.lost.is_empty() {
            return;
        }
        self.reprobe_scheduled = true;
        out.push(OutEvent::ScheduleTimer(
            self.config.root_interval / 10,
            Timer::Reprobe,
        ));
    }

    /// Probes each peer of a lost link once our label has changed since the
    /// link ended. A peer cut off from our overlay by that loss still holds
    /// the older label and links back (see `on_probe`): without this, a part
    /// of the overlay split off by an eviction keeps the label of the whole
    /// and no probe tells the two apart until the label expires.
    fn reprobe_lost(&mut self, out: &mut Vec<OutEvent>) {
        self.lost.retain(|_, l| !l.probed);
        let due: Vec<PeerId> = self
            .lost
            .iter()
            .filter(|(_, l)| (l.root, l.seq) != (self.root, self.root_seq))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            let Some(l) = self.lost.get_mut(&peer) else {
                continue;
            };
            l.probed = true;
            if self.active.contains_key(&peer) || self.pending.contains(&peer) {
                continue;
            }
            let data = l.data.clone();
            self.stats.probes_sent += 1;
            self.send_probe(peer, data, out);
        }
    }

    /// Links to `peer`, a member of an overlay with a smaller label than ours.
    fn merge_into(&mut self, peer: PeerId, data: PeerData, out: &mut Vec<OutEvent>) {
        if self.active.contains_key(&peer) || self.pending.contains(&peer) {
            return;
        }
        self.stats.merges += 1;
        self.send_neighbor(peer, data, Priority::High, out);
    }

    fn on_root_tick(&mut self, now: Duration, out: &mut Vec<OutEvent>) {
        let expiry = self.config.root_interval * ROOT_EXPIRY;
        if self.root != self.me.id && now.saturating_sub(self.root_heard) > expiry {
            self.stats.roots_expired += 1;
            self.root = self.me.id;
            self.label_changed();
        }
        if self.root == self.me.id {
            self.own_seq += 1;
            self.root_seq = self.own_seq;
            self.root_heard = now;
            self.parent = None;
            self.new_beacon();
            let msg = Message::Root {
                root: self.root,
                seq: self.root_seq,
            };
            for p in self.active.keys() {
                out.push(OutEvent::Send(*p, msg.clone()));
            }
            self.schedule_reprobe(out);
        }
        self.probe_candidate(now, out);
    }

    /// Sends PROBE to one candidate outside the active view that was not
    /// probed for [`Config::probe_recheck`]: one never probed if there is one
    /// (news is likelier to name someone outside our overlay), else the one
    /// probed longest ago.
    fn probe_candidate(&mut self, now: Duration, out: &mut Vec<OutEvent>) {
        let recheck = self.config.probe_recheck;
        let eligible = self.candidates.iter().filter(|(p, c)| {
            !self.active.contains_key(*p)
                && !self.pending.contains(*p)
                && c.last
                    .is_none_or(|t| now.saturating_sub(t) >= c.recheck(recheck))
        });
        let Some(oldest) = eligible.clone().map(|(_, c)| c.last).min() else {
            return;
        };
        let Some(peer) = eligible
            .filter(|(_, c)| c.last == oldest)
            .map(|(p, _)| *p)
            .choose(&mut self.rng)
        else {
            return;
        };
        let Some(c) = self.candidates.get_mut(&peer) else {
            return;
        };
        c.last = Some(now);
        c.probes = (c.probes + 1).min(MAX_PROBE_BACKOFF + 1);
        let data = c.data.clone();
        self.stats.probes_sent += 1;
        self.send_probe(peer, data, out);
    }

    /// Adds candidates: a join's contacts (`bootstrap`), or peers the driver
    /// heard of (sessions that came up, LAN discovery).
    fn add_candidates<'a>(&mut self, peers: impl Iterator<Item = &'a PeerInfo>, bootstrap: bool) {
        for p in peers {
            if p.id == self.me.id
                || p.data.0.len() > MAX_PEER_DATA_LEN
                || (!bootstrap && self.heard.contains(&p.id))
            {
                continue;
            }
            if let Some(c) = self.candidates.get_mut(&p.id) {
                c.data = p.data.clone();
                c.bootstrap |= bootstrap;
                continue;
            }
            if self.candidates.len() >= MAX_CANDIDATES {
                // Forget one already probed (or any): newer news is likelier
                // to name someone outside our overlay.
                let victim = self
                    .candidates
                    .iter()
                    .filter(|(_, c)| c.last.is_some())
                    .map(|(p, _)| *p)
                    .choose(&mut self.rng)
                    .or_else(|| self.candidates.keys().choose(&mut self.rng).copied());
                if let Some(v) = victim {
                    self.candidates.remove(&v);
                }
            }
            let c = Candidate {
                data: p.data.clone(),
                last: None,
                probes: 0,
                bootstrap,
            };
            self.candidates.insert(p.id, c);
        }
    }

    fn schedule_root(&mut self, out: &mut Vec<OutEvent>) {
        if self.root_scheduled {
            return;
        }
        self.root_scheduled = true;
        let base = self.config.root_interval.as_secs_f64();
        // The first tick comes early: a node that joined in a burst probes its
        // candidates within a few seconds.
        let factor = if self.root_ticks == 0 {
            self.rng.random_range(0.1..=0.3)
        } else if self.root_ticks < FAST_ROOT_TICKS {
            self.rng.random_range(0.15..=0.25)
        } else {
            self.rng.random_range(0.75..=1.25)
        };
        out.push(OutEvent::ScheduleTimer(
            Duration::from_secs_f64(base * factor),
            Timer::Root,
        ));
    }

    fn on_join(&mut self, from: PeerId, data: PeerData, out: &mut Vec<OutEvent>) {
        if data.0.len() > MAX_PEER_DATA_LEN {
            return self.misbehaving(from, out);
        }
        self.stats.joins += 1;
        self.passive.remove(&from);
        self.add_active(from, data.clone(), out);
        let peer = PeerInfo { id: from, data };
        let ttl = self.config.active_random_walk_length;
        let others: Vec<PeerId> = self
            .active
            .keys()
            .filter(|p| **p != from)
            .copied()
            .collect();
        for p in others {
            let msg = Message::ForwardJoin {
                peer: peer.clone(),
                ttl,
            };
            out.push(OutEvent::Send(p, msg));
        }
        self.schedule_shuffle(out);
    }

    fn on_forward_join(
        &mut self,
        now: Duration,
        from: PeerId,
        peer: PeerInfo,
        ttl: u8,
        out: &mut Vec<OutEvent>,
    ) {
        if ttl > MAX_TTL || peer.data.0.len() > MAX_PEER_DATA_LEN {
            return self.misbehaving(from, out);
        }
        self.stats.forward_joins += 1;
        if peer.id == self.me.id || self.is_banned(now, &peer.id) {
            return;
        }
        let only_sender = self.active.len() == 1 && self.active.contains_key(&from);
        if ttl == 0 || only_sender || self.active.is_empty() {
            if !self.active.contains_key(&peer.id) {
                self.send_neighbor(peer.id, peer.data, Priority::High, out);
            }
            return;
        }
        if ttl == self.config.passive_random_walk_length {
            self.add_passive(peer.id, peer.data.clone());
        }
        let next = self
            .active
            .keys()
            .filter(|p| **p != from && **p != peer.id)
            .choose(&mut self.rng)
            .copied();
        match next {
            Some(next) => out.push(OutEvent::Send(
                next,
                Message::ForwardJoin { peer, ttl: ttl - 1 },
            )),
            None if !self.active.contains_key(&peer.id) => {
                self.send_neighbor(peer.id, peer.data, Priority::High, out)
            }
            None => {}
        }
    }

    fn on_neighbor(
        &mut self,
        from: PeerId,
        priority: Priority,
        data: PeerData,
        out: &mut Vec<OutEvent>,
    ) {
        if data.0.len() > MAX_PEER_DATA_LEN {
            return self.misbehaving(from, out);
        }
        let room = self.active.len() < self.config.active_view_capacity;
        let accept = priority == Priority::High || room || self.active.contains_key(&from);
        out.push(OutEvent::Send(
            from,
            Message::NeighborReply { accepted: accept },
        ));
        if accept {
            self.stats.neighbor_accepted += 1;
            self.passive.remove(&from);
            // Our own request to the same peer crossed this one: this accept
            // settles both.
            self.pending.remove(&from);
            self.add_active(from, data, out);
        } else {
            self.stats.neighbor_rejected += 1;
            self.add_passive(from, data);
            self.release(from, out);
        }
    }

    fn on_neighbor_reply(&mut self, from: PeerId, accepted: bool, out: &mut Vec<OutEvent>) {
        if !self.pending.remove(&from) {
            if accepted && !self.active.contains_key(&from) {
                // The request timed out here but was accepted there: undo it there.
                out.push(OutEvent::Send(from, Message::Disconnect { alive: true }));
                out.push(OutEvent::Disconnect(from));
            }
            return;
        }
        if accepted {
            let data = self.passive.remove(&from).unwrap_or_default();
            self.add_active(from, data, out);
        } else {
            if self.refused.len() >= self.config.passive_view_capacity {
                self.refused.clear();
            }
            // Try again at the next shuffle tick, not now: asking the next
            // passive peer at once, and the next, makes every node short of a
            // neighbour open a connection per passive peer per round (with
            // 2,000 real nodes in one process that ran out of descriptors).
            self.refused.insert(from);
            self.release(from, out);
        }
    }

    fn on_disconnect(&mut self, from: PeerId, alive: bool, out: &mut Vec<OutEvent>) {
        if !alive {
            self.candidates.remove(&from);
            self.lost.remove(&from);
        }
        if let Some(data) = self.remove_active(from, out) {
            if alive {
                self.record_lost(from, data.clone());
                self.add_passive(from, data);
            }
        } else if !alive {
            self.passive.remove(&from);
        }
        if self.pending.remove(&from) {
            self.release(from, out);
        }
        // Replace the lost link now rather than at the next shuffle tick: an
        // eviction during a burst of joins can otherwise cut a few nodes off
        // the overlay for a whole shuffle interval. (Each passive peer is asked
        // at most once per round, so this cannot loop.)
        self.refill(out);
    }

    fn on_connection_lost(&mut self, peer: PeerId, out: &mut Vec<OutEvent>) {
        self.passive.remove(&peer);
        self.lost.remove(&peer);
        let was_pending = self.pending.remove(&peer);
        if was_pending {
            self.stats.neighbor_failed += 1;
        }
        if self.active.contains_key(&peer) {
            self.stats.failures += 1;
            self.remove_active(peer, out);
        } else if !was_pending {
            return;
        }
        self.refill(out);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_shuffle(
        &mut self,
        now: Duration,
        from: PeerId,
        origin: PeerInfo,
        nodes: Vec<PeerInfo>,
        ttl: u8,
        out: &mut Vec<OutEvent>,
    ) {
        if ttl > MAX_TTL || !self.valid_sample(&nodes) || origin.data.0.len() > MAX_PEER_DATA_LEN {
            return self.misbehaving(from, out);
        }
        if origin.id == self.me.id {
            return;
        }
        let next = (ttl > 1)
            .then(|| {
                self.active
                    .keys()
                    .filter(|p| **p != from && **p != origin.id)
                    .choose(&mut self.rng)
                    .copied()
            })
            .flatten();
        if let Some(next) = next {
            let msg = Message::Shuffle {
                origin,
                nodes,
                ttl: ttl - 1,
            };
            out.push(OutEvent::Send(next, msg));
            return;
        }
        self.stats.shuffles += 1;
        let reply: Vec<PeerInfo> = self
            .passive
            .iter()
            .choose_multiple(&mut self.rng, nodes.len().max(1))
            .into_iter()
            .map(|(id, data)| PeerInfo {
                id: *id,
                data: data.clone(),
            })
            .collect();
        let sent: Vec<PeerId> = reply.iter().map(|p| p.id).collect();
        if !self.active.contains_key(&origin.id) {
            out.push(OutEvent::Dial(origin.id, origin.data.clone()));
        }
        out.push(OutEvent::Send(
            origin.id,
            Message::ShuffleReply { nodes: reply },
        ));
        self.release(origin.id, out);
        let incoming = std::iter::once(origin).chain(nodes);
        self.integrate(now, incoming, &sent);
    }

    fn on_shuffle_reply(
        &mut self,
        now: Duration,
        from: PeerId,
        nodes: Vec<PeerInfo>,
        out: &mut Vec<OutEvent>,
    ) {
        if !self.valid_sample(&nodes) {
            return self.misbehaving(from, out);
        }
        let sent = std::mem::take(&mut self.last_shuffle);
        self.integrate(now, nodes.into_iter(), &sent);
        self.release(from, out);
    }

    fn valid_sample(&self, nodes: &[PeerInfo]) -> bool {
        nodes.len() <= MAX_SHUFFLE_NODES
            && nodes.iter().all(|p| p.data.0.len() <= MAX_PEER_DATA_LEN)
    }

    /// Adds shuffled peers to the passive view, evicting first the peers we just
    /// sent away (the paper's rule: they now live in the other node's view).
    fn integrate(&mut self, now: Duration, nodes: impl Iterator<Item = PeerInfo>, sent: &[PeerId]) {
        let mut evictable = sent.iter().copied();
        for p in nodes {
            if p.id == self.me.id
                || self.active.contains_key(&p.id)
                || self.pending.contains(&p.id)
                || self.is_banned(now, &p.id)
            {
                continue;
            }
            if let Some(data) = self.passive.get_mut(&p.id) {
                *data = p.data;
                continue;
            }
            if self.passive.len() >= self.config.passive_view_capacity {
                let sent_away = evictable.find(|old| self.passive.contains_key(old));
                let room = match sent_away {
                    Some(old) => self.passive.remove(&old).is_some(),
                    None => self.evict_random_passive(),
                };
                if !room {
                    // every passive peer is being asked to be a neighbour:
                    // the view stays full rather than grow
                    continue;
                }
            }
            self.passive.insert(p.id, p.data);
        }
    }

    fn send_shuffle(&mut self, out: &mut Vec<OutEvent>) {
        let Some(target) = self.active.keys().choose(&mut self.rng).copied() else {
            return;
        };
        let mut nodes: Vec<PeerInfo> = Vec::new();
        let active = self
            .active
            .iter()
            .filter(|(id, _)| **id != target)
            .choose_multiple(&mut self.rng, self.config.shuffle_active_count);
        let passive = self
            .passive
            .iter()
            .choose_multiple(&mut self.rng, self.config.shuffle_passive_count);
        for (id, data) in active.into_iter().chain(passive) {
            nodes.push(PeerInfo {
                id: *id,
                data: data.clone(),
            });
        }
        nodes.truncate(MAX_SHUFFLE_NODES);
        self.last_shuffle = nodes.iter().map(|p| p.id).collect();
        let msg = Message::Shuffle {
            origin: self.me.clone(),
            nodes,
            ttl: self.config.shuffle_random_walk_length,
        };
        out.push(OutEvent::Send(target, msg));
    }

    /// Asks passive peers to fill the free slots of the active view (one request
    /// per free slot, all at once, so that a mass failure heals in one round).
    fn refill(&mut self, out: &mut Vec<OutEvent>) {
        let cap = self.config.active_view_capacity;
        let mut free = cap.saturating_sub(self.active.len() + self.pending.len());
        // bounded: every iteration removes a peer from the candidates
        while free > 0 {
            // The paper asks with high priority only from an empty view. We do
            // so down to half a view: nodes hanging by one or two links (left
            // so by evictions in a burst of joins) otherwise only ask full
            // peers, which refuse low priority, and can stay cut off as a
            // small island for many shuffle rounds. A high-priority request
            // costs the receiver one eviction, leaving it at capacity - 1.
            let priority = if self.active.len() <= self.config.active_view_capacity / 2 {
                Priority::High
            } else {
                Priority::Low
            };
            // A high-priority request is never refused: any passive peer will do.
            let high = priority == Priority::High;
            let Some(peer) = self
                .passive
                .keys()
                .filter(|p| !self.pending.contains(p) && (high || !self.refused.contains(p)))
                .choose(&mut self.rng)
                .copied()
            else {
                break;
            };
            let data = self.passive.get(&peer).cloned().unwrap_or_default();
            self.send_neighbor(peer, data, priority, out);
            free -= 1;
        }
    }

    fn send_neighbor(
        &mut self,
        peer: PeerId,
        data: PeerData,
        priority: Priority,
        out: &mut Vec<OutEvent>,
    ) {
        if !self.pending.insert(peer) {
            return;
        }
        // Keep the data to add the peer once it accepts.
        self.add_passive(peer, data.clone());
        out.push(OutEvent::Dial(peer, data));
        out.push(OutEvent::Send(
            peer,
            Message::Neighbor {
                priority,
                data: self.me.data.clone(),
            },
        ));
        out.push(OutEvent::ScheduleTimer(
            self.config.neighbor_timeout,
            Timer::NeighborTimeout(peer),
        ));
    }

    fn add_active(&mut self, peer: PeerId, data: PeerData, out: &mut Vec<OutEvent>) {
        if peer == self.me.id {
            return;
        }
        if let Some(old) = self.active.get_mut(&peer) {
            if !data.0.is_empty() {
                *old = data;
            }
            return;
        }
        if self.active.len() >= self.config.active_view_capacity {
            // A neighbour that sent us our current beacon, other than the one
            // it came from first, reaches the root without this link, and so
            // do we: evicting it cannot cut the overlay in two (as of that
            // beacon). Random evictions in an overlay still thin after a
            // burst of joins split off part after part, each carrying the
            // label of the whole. Failing such a neighbour: any but the one
            // our beacon came from.
            let victim = self
                .echoed
                .iter()
                .filter(|p| self.active.contains_key(*p))
                .choose(&mut self.rng)
                .or_else(|| {
                    self.active
                        .keys()
                        .filter(|p| self.parent != Some(**p))
                        .choose(&mut self.rng)
                })
                .or_else(|| self.active.keys().choose(&mut self.rng))
                .copied()
                .expect("a full view is not empty");
            self.stats.evictions += 1;
            out.push(OutEvent::Send(victim, Message::Disconnect { alive: true }));
            if let Some(data) = self.remove_active(victim, out) {
                self.record_lost(victim, data.clone());
                self.add_passive(victim, data);
            }
        }
        self.passive.remove(&peer);
        self.lost.remove(&peer);
        self.active.insert(peer, data.clone());
        self.fresh.insert(peer);
        out.push(OutEvent::Dial(peer, data));
        out.push(OutEvent::Send(
            peer,
            Message::Root {
                root: self.root,
                seq: self.root_seq,
            },
        ));
        out.push(OutEvent::Emit(Event::NeighborUp(peer)));
    }

    /// Lets go of the connection to `peer` unless a view still needs it.
    fn release(&self, peer: PeerId, out: &mut Vec<OutEvent>) {
        if !self.active.contains_key(&peer) && !self.pending.contains(&peer) {
            out.push(OutEvent::Disconnect(peer));
        }
    }

    fn remove_active(&mut self, peer: PeerId, out: &mut Vec<OutEvent>) -> Option<PeerData> {
        let data = self.active.remove(&peer)?;
        self.echoed.remove(&peer);
        self.fresh.remove(&peer);
        self.release(peer, out);
        out.push(OutEvent::Emit(Event::NeighborDown(peer)));
        Some(data)
    }

    fn add_passive(&mut self, peer: PeerId, data: PeerData) {
        if peer == self.me.id || self.active.contains_key(&peer) {
            return;
        }
        if !self.passive.contains_key(&peer)
            && self.passive.len() >= self.config.passive_view_capacity
            && !self.evict_random_passive()
        {
            // full of peers being asked to be neighbours: the view keeps its
            // bound and this peer is not remembered
            return;
        }
        self.passive.insert(peer, data);
    }

    /// Drops a random passive peer that is not being asked to be a neighbour;
    /// false if there is none.
    fn evict_random_passive(&mut self) -> bool {
        let victim = self
            .passive
            .keys()
            .filter(|p| !self.pending.contains(p))
            .choose(&mut self.rng)
            .copied();
        match victim {
            Some(v) => self.passive.remove(&v).is_some(),
            None => false,
        }
    }

    fn schedule_shuffle(&mut self, out: &mut Vec<OutEvent>) {
        self.schedule_root(out);
        if self.shuffle_scheduled {
            return;
        }
        self.shuffle_scheduled = true;
        let base = self.config.shuffle_interval.as_secs_f64();
        let delay = base * self.rng.random_range(0.75..=1.25);
        out.push(OutEvent::ScheduleTimer(
            Duration::from_secs_f64(delay),
            Timer::Shuffle,
        ));
    }

    fn ban(&mut self, now: Duration, peer: PeerId, out: &mut Vec<OutEvent>) {
        if self.banned.len() >= 1024 {
            self.banned.retain(|_, until| *until > now);
            if self.banned.len() >= 1024 {
                self.banned.pop_first();
            }
        }
        self.banned.insert(peer, now + self.config.ban_duration);
        self.passive.remove(&peer);
        self.pending.remove(&peer);
        self.lost.remove(&peer);
        self.remove_active(peer, out);
        out.push(OutEvent::Disconnect(peer));
        self.refill(out);
    }

    fn is_banned(&self, now: Duration, peer: &PeerId) -> bool {
        self.banned.get(peer).is_some_and(|until| *until > now)
    }

    fn misbehaving(&mut self, from: PeerId, out: &mut Vec<OutEvent>) {
        self.stats.invalid += 1;
        out.push(OutEvent::Misbehaving(from));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::proto::sim::{self, SimRng};

    const T0: Duration = Duration::ZERO;

    fn id(i: u8) -> PeerId {
        PeerId::from_bytes([i; 32])
    }

    fn info(i: u8) -> PeerInfo {
        PeerInfo {
            id: id(i),
            data: PeerData(vec![i]),
        }
    }

    fn node(i: u8) -> State<SimRng> {
        State::new(info(i), Config::default(), sim::rng(7, i as u64))
    }

    fn run(s: &mut State<SimRng>, ev: InEvent) -> Vec<OutEvent> {
        run_at(s, T0, ev)
    }

    fn run_at(s: &mut State<SimRng>, now: Duration, ev: InEvent) -> Vec<OutEvent> {
        let mut out = Vec::new();
        s.handle(now, ev, &mut out);
        out
    }

    /// A join through `contact` that was told of `others` too.
    fn join_through(contact: u8, others: &[u8]) -> InEvent {
        InEvent::Join {
            contact: info(contact),
            others: others.iter().map(|&o| info(o)).collect(),
        }
    }

    /// The peers `out` probes.
    fn probed(out: &[OutEvent]) -> Vec<PeerId> {
        sends(out)
            .into_iter()
            .filter(|(_, m)| matches!(m, Message::Probe { .. }))
            .map(|(p, _)| p)
            .collect()
    }

    fn sends(out: &[OutEvent]) -> Vec<(PeerId, Message)> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::Send(p, m) => Some((*p, m.clone())),
                _ => None,
            })
            .collect()
    }

    /// A node whose active view is exactly `active`, learnt through accepted
    /// high-priority NEIGHBOR requests.
    fn with_active(i: u8, active: &[u8]) -> State<SimRng> {
        let mut s = node(i);
        for &a in active {
            let msg = Message::Neighbor {
                priority: Priority::High,
                data: PeerData(vec![a]),
            };
            run(&mut s, InEvent::Message(id(a), msg));
        }
        s
    }

    /// Delivers messages between states instantly, in order, until quiet
    /// (timers are not run).
    fn settle(
        nodes: &mut BTreeMap<PeerId, State<SimRng>>,
        mut queue: VecDeque<(PeerId, PeerId, Message)>,
    ) {
        for _ in 0..100_000 {
            let Some((from, to, msg)) = queue.pop_front() else {
                return;
            };
            let Some(s) = nodes.get_mut(&to) else {
                continue;
            };
            for (p, m) in sends(&run(s, InEvent::Message(from, msg))) {
                queue.push_back((to, p, m));
            }
        }
        panic!("messages did not settle");
    }

    #[test]
    fn join_makes_newcomer_and_contact_neighbours() {
        let mut a = node(1);
        let out = run(&mut a, join_through(2, &[3]));
        assert!(out.contains(&OutEvent::Dial(id(2), PeerData(vec![2]))));
        assert!(out.contains(&OutEvent::Emit(Event::NeighborUp(id(2)))));
        assert_eq!(a.passive_view().copied().collect::<Vec<_>>(), [id(3)]);
        let mut b = node(2);
        let out = run(
            &mut b,
            InEvent::Message(
                id(1),
                Message::Join {
                    data: PeerData(vec![1]),
                },
            ),
        );
        assert!(out.contains(&OutEvent::Emit(Event::NeighborUp(id(1)))));
        assert!(a.is_active(&id(2)) && b.is_active(&id(1)));
    }

    #[test]
    fn contact_starts_forward_join_walks_of_arwl_through_its_other_neighbours() {
        let mut c = with_active(1, &[2, 3]);
        let out = run(
            &mut c,
            InEvent::Message(
                id(9),
                Message::Join {
                    data: PeerData(vec![9]),
                },
            ),
        );
        let walks: Vec<_> = sends(&out)
            .into_iter()
            .filter(|(_, m)| matches!(m, Message::ForwardJoin { .. }))
            .collect();
        assert_eq!(walks.len(), 2);
        for (to, m) in walks {
            assert!(to == id(2) || to == id(3));
            assert_eq!(
                m,
                Message::ForwardJoin {
                    peer: info(9),
                    ttl: 6
                }
            );
        }
    }

    #[test]
    fn forward_join_walks_on_with_one_less_hop_avoiding_the_sender() {
        let mut p = with_active(1, &[2, 3]);
        let fj = Message::ForwardJoin {
            peer: info(9),
            ttl: 5,
        };
        let out = sends(&run(&mut p, InEvent::Message(id(2), fj)));
        assert_eq!(
            out,
            [(
                id(3),
                Message::ForwardJoin {
                    peer: info(9),
                    ttl: 4
                }
            )]
        );
        assert!(!p.passive_view().any(|x| *x == id(9)));
    }

    #[test]
    fn forward_join_at_prwl_puts_newcomer_in_passive_view() {
        let mut p = with_active(1, &[2, 3]);
        let fj = Message::ForwardJoin {
            peer: info(9),
            ttl: 3,
        };
        run(&mut p, InEvent::Message(id(2), fj));
        assert!(p.passive_view().any(|x| *x == id(9)));
    }

    #[test]
    fn forward_join_ending_here_asks_newcomer_to_be_neighbour() {
        for (ttl, active) in [(0, &[2u8, 3][..]), (4, &[2][..])] {
            let mut p = with_active(1, active);
            let fj = Message::ForwardJoin { peer: info(9), ttl };
            let out = run(&mut p, InEvent::Message(id(2), fj));
            assert!(out.contains(&OutEvent::Dial(id(9), PeerData(vec![9]))));
            let req = Message::Neighbor {
                priority: Priority::High,
                data: PeerData(vec![1]),
            };
            assert!(sends(&out).contains(&(id(9), req)), "ttl {ttl}");
            // the newcomer accepts, and only then is it a neighbour
            assert!(!p.is_active(&id(9)));
            let out = run(
                &mut p,
                InEvent::Message(id(9), Message::NeighborReply { accepted: true }),
            );
            assert!(out.contains(&OutEvent::Emit(Event::NeighborUp(id(9)))));
        }
    }

    #[test]
    fn overlay_of_joined_nodes_is_symmetric_and_bounded() {
        let mut nodes: BTreeMap<PeerId, State<SimRng>> = BTreeMap::new();
        let mut rng = sim::rng(3, 0);
        for i in 1..=40u8 {
            let mut s = node(i);
            let mut queue = VecDeque::new();
            if i > 1 {
                let contact = rng.random_range(1..i);
                let out = run(&mut s, join_through(contact, &[]));
                queue.extend(sends(&out).into_iter().map(|(p, m)| (id(i), p, m)));
            }
            nodes.insert(id(i), s);
            settle(&mut nodes, queue);
        }
        for (me, s) in &nodes {
            let active: Vec<_> = s.active_view().copied().collect();
            assert!(
                !active.is_empty() && active.len() <= 5,
                "{me:?}: {active:?}"
            );
            for p in active {
                assert!(nodes[&p].is_active(me), "{me:?} -> {p:?} is one-way");
            }
        }
    }

    #[test]
    fn low_priority_request_is_refused_when_full_and_high_priority_evicts() {
        let mut s = with_active(1, &[2, 3, 4, 5, 6]);
        let low = Message::Neighbor {
            priority: Priority::Low,
            data: PeerData(vec![7]),
        };
        let out = run(&mut s, InEvent::Message(id(7), low));
        assert!(sends(&out).contains(&(id(7), Message::NeighborReply { accepted: false })));
        assert!(out.contains(&OutEvent::Disconnect(id(7))));
        assert!(!s.is_active(&id(7)));
        let high = Message::Neighbor {
            priority: Priority::High,
            data: PeerData(vec![8]),
        };
        let out = run(&mut s, InEvent::Message(id(8), high));
        assert!(s.is_active(&id(8)));
        assert_eq!(s.active_view().count(), 5);
        let evicted: Vec<_> = sends(&out)
            .into_iter()
            .filter(|(_, m)| *m == Message::Disconnect { alive: true })
            .map(|(p, _)| p)
            .collect();
        assert_eq!(evicted.len(), 1);
        assert!(s.passive_view().any(|p| *p == evicted[0]));
    }

    #[test]
    fn failed_neighbour_is_replaced_from_passive_view() {
        let mut s = with_active(1, &[2]);
        run(&mut s, join_through(2, &[3, 4]));
        let out = run(&mut s, InEvent::ConnectionLost(id(2)));
        assert!(out.contains(&OutEvent::Emit(Event::NeighborDown(id(2)))));
        let requests: Vec<_> = sends(&out)
            .into_iter()
            .filter(|(_, m)| {
                matches!(
                    m,
                    Message::Neighbor {
                        priority: Priority::High,
                        ..
                    }
                )
            })
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            requests.len(),
            2,
            "one request per free slot, while candidates last"
        );
        assert_eq!(s.stats().failures, 1);
        // a refused request is retried elsewhere only when candidates remain;
        // an accepted one fills the view
        run(
            &mut s,
            InEvent::Message(id(3), Message::NeighborReply { accepted: true }),
        );
        assert!(s.is_active(&id(3)));
        // the failed peer is not kept as a candidate
        assert!(!s.passive_view().any(|p| *p == id(2)));
    }

    #[test]
    fn passive_peers_that_refuse_are_not_asked_again_before_the_next_shuffle() {
        // active {2, 5, 6}, passive {3, 4}: room for two more, so the shuffle
        // tick asks both, with low priority
        let mut s = with_active(1, &[2, 5, 6]);
        run(&mut s, join_through(2, &[3, 4]));
        let asked = |out: &[OutEvent]| -> Vec<PeerId> {
            sends(out)
                .into_iter()
                .filter(|(_, m)| {
                    matches!(
                        m,
                        Message::Neighbor {
                            priority: Priority::Low,
                            ..
                        }
                    )
                })
                .map(|(p, _)| p)
                .collect()
        };
        let first = asked(&run(&mut s, InEvent::Timer(Timer::Shuffle)));
        assert_eq!(first.len(), 2, "{first:?}");
        // both are full and refuse: nobody is asked again in this round
        for p in [3, 4] {
            let reply = Message::NeighborReply { accepted: false };
            let out = run(&mut s, InEvent::Message(id(p), reply));
            assert!(
                asked(&out).is_empty(),
                "asked again after a refusal: {out:?}"
            );
        }
        assert_eq!(
            s.passive_view().count(),
            2,
            "refusing peers stay candidates"
        );
        // the next round asks them again
        let again = asked(&run(&mut s, InEvent::Timer(Timer::Shuffle)));
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn neighbor_request_without_answer_times_out_and_drops_the_candidate() {
        let mut s = node(1);
        run(&mut s, join_through(2, &[3]));
        run(&mut s, InEvent::ConnectionLost(id(2)));
        let out = run(&mut s, InEvent::Timer(Timer::NeighborTimeout(id(3))));
        assert!(out.contains(&OutEvent::Disconnect(id(3))));
        assert_eq!(s.passive_view().count(), 0);
        assert_eq!(s.stats().neighbor_failed, 1);
    }

    #[test]
    fn disconnect_moves_neighbour_to_passive_view_unless_it_leaves() {
        let mut s = with_active(1, &[2, 3]);
        run(
            &mut s,
            InEvent::Message(id(2), Message::Disconnect { alive: true }),
        );
        assert!(!s.is_active(&id(2)));
        assert!(s.passive_view().any(|p| *p == id(2)));
        run(
            &mut s,
            InEvent::Message(id(3), Message::Disconnect { alive: false }),
        );
        assert!(!s.is_active(&id(3)) && !s.passive_view().any(|p| *p == id(3)));
    }

    #[test]
    fn shuffle_refills_passive_view() {
        let mut a = with_active(1, &[2]);
        let mut b = with_active(2, &[1]);
        let others: Vec<PeerInfo> = (10..30).map(info).collect();
        run(
            &mut b,
            InEvent::Join {
                contact: info(1),
                others,
            },
        );
        assert_eq!(a.passive_view().count(), 0);
        let shuffle = sends(&run(&mut a, InEvent::Timer(Timer::Shuffle)));
        let [(to, msg)] = &shuffle[..] else {
            panic!("{shuffle:?}")
        };
        assert_eq!(*to, id(2));
        let out = run(&mut b, InEvent::Message(id(1), msg.clone()));
        // b has no other neighbour to walk to: it answers the origin
        let reply = sends(&out);
        let [(to, reply @ Message::ShuffleReply { nodes })] = &reply[..] else {
            panic!("{reply:?}")
        };
        assert_eq!(*to, id(1));
        assert!(!nodes.is_empty());
        run(&mut a, InEvent::Message(id(2), reply.clone()));
        assert!(a.passive_view().count() >= nodes.len().min(30));
        assert!(a.passive_view().all(|p| *p != id(1) && *p != id(2)));
    }

    #[test]
    fn leave_tells_every_neighbour_and_releases_connections() {
        let mut s = with_active(1, &[2, 3]);
        let out = run(&mut s, InEvent::Leave);
        for p in [id(2), id(3)] {
            assert!(out.contains(&OutEvent::Send(p, Message::Disconnect { alive: false })));
            assert!(out.contains(&OutEvent::Disconnect(p)));
        }
        assert_eq!(s.active_view().count(), 0);
    }

    #[test]
    fn oversized_or_overlong_input_is_dropped_and_reported() {
        let mut s = with_active(1, &[2, 3]);
        let big = Message::Join {
            data: PeerData(vec![0; MAX_PEER_DATA_LEN + 1]),
        };
        let out = run(&mut s, InEvent::Message(id(4), big));
        assert_eq!(out, [OutEvent::Misbehaving(id(4))]);
        let flood = Message::Shuffle {
            origin: info(2),
            nodes: (0..=MAX_SHUFFLE_NODES as u8).map(info).collect(),
            ttl: 2,
        };
        assert_eq!(
            run(&mut s, InEvent::Message(id(2), flood)),
            [OutEvent::Misbehaving(id(2))]
        );
        let walk = Message::ForwardJoin {
            peer: info(9),
            ttl: MAX_TTL + 1,
        };
        assert_eq!(
            run(&mut s, InEvent::Message(id(2), walk)),
            [OutEvent::Misbehaving(id(2))]
        );
        assert_eq!(s.stats().invalid, 3);
        assert!(!s.is_active(&id(4)));
    }

    #[test]
    fn banned_peer_is_dropped_and_refused() {
        let mut s = with_active(1, &[2, 3]);
        let out = run(&mut s, InEvent::Ban(id(2)));
        assert!(out.contains(&OutEvent::Emit(Event::NeighborDown(id(2)))));
        assert!(out.contains(&OutEvent::Disconnect(id(2))));
        let join = Message::Join {
            data: PeerData(vec![2]),
        };
        let out = run(&mut s, InEvent::Message(id(2), join));
        assert_eq!(out, [OutEvent::Disconnect(id(2))]);
        assert!(!s.is_active(&id(2)));
        assert_eq!(s.stats().banned_dropped, 1);
    }

    #[test]
    fn a_smaller_root_is_adopted_forwarded_once_and_dropped_when_silent() {
        // 5 is its own root until a neighbour names a smaller one
        let mut s = with_active(5, &[6, 7, 8]);
        assert_eq!(s.root(), id(5));
        let beacon = Message::Root {
            root: id(1),
            seq: 4,
        };
        let out = run(&mut s, InEvent::Message(id(6), beacon.clone()));
        assert_eq!(s.root(), id(1));
        let mut to: Vec<PeerId> = sends(&out).into_iter().map(|(p, _)| p).collect();
        to.sort();
        assert_eq!(to, [id(7), id(8)], "forwarded to the others only");
        // the same beacon again (from another neighbour) goes no further, nor
        // does a larger root
        assert!(run(&mut s, InEvent::Message(id(7), beacon)).is_empty());
        let larger = Message::Root {
            root: id(3),
            seq: 9,
        };
        assert!(run(&mut s, InEvent::Message(id(7), larger)).is_empty());
        assert_eq!(s.root(), id(1));
        // nothing from the root for ROOT_EXPIRY intervals: we are our own root
        // again and say so
        let late = s.config.root_interval * (ROOT_EXPIRY + 1);
        let out = run_at(&mut s, late, InEvent::Timer(Timer::Root));
        assert_eq!(s.root(), id(5));
        assert_eq!(s.stats().roots_expired, 1);
        assert_eq!(
            sends(&out)
                .iter()
                .filter(|(_, m)| matches!(m, Message::Root { root, .. } if *root == id(5)))
                .count(),
            3
        );
    }

    #[test]
    fn candidates_are_probed_less_often_while_the_label_holds_and_not_once_they_spoke() {
        let mut s = with_active(5, &[2]);
        run(&mut s, InEvent::Candidates(vec![info(8), info(9)]));
        // 9 answers a shuffle of ours: the overlay's own traffic.
        let reply = Message::ShuffleReply { nodes: vec![] };
        run(&mut s, InEvent::Message(id(9), reply));
        let mut at: BTreeMap<PeerId, Vec<u64>> = BTreeMap::new();
        for k in 1..=50 {
            let now = Duration::from_secs(10 * k);
            if k == 47 {
                // a smaller root reaches us: our label changed
                run_at(&mut s, now, InEvent::Message(id(2), beacon(1, 1)));
            }
            for p in probed(&run_at(&mut s, now, InEvent::Timer(Timer::Root))) {
                at.entry(p).or_default().push(10 * k);
            }
        }
        assert!(!at.contains_key(&id(9)), "a peer that spoke is probed");
        // 30 s, then twice as long each time up to 240 s; back to 30 s after
        // the label changed (at 470 s)
        assert_eq!(at[&id(8)], [10, 40, 100, 220, 460, 490]);
    }

    #[test]
    fn a_joins_other_contacts_are_still_probed_after_they_spoke() {
        // 5 joins through 2 and was told of 8 as well; 8 answers a shuffle
        let mut s = node(5);
        run(&mut s, join_through(2, &[8]));
        let reply = Message::ShuffleReply { nodes: vec![] };
        run(&mut s, InEvent::Message(id(8), reply));
        let was_probed = (1..=5).any(|k| {
            let tick = run_at(
                &mut s,
                Duration::from_secs(10 * k),
                InEvent::Timer(Timer::Root),
            );
            probed(&tick).contains(&id(8))
        });
        // The user's contacts are how two overlays that formed apart find
        // each other again: hearing from one does not drop it.
        assert!(was_probed, "a contact of our join is never probed");
    }

    #[test]
    fn a_flood_of_root_messages_is_cut_off_and_reported() {
        let mut s = with_active(200, &[6, 7]);
        let mut forwarded = 0;
        let mut misbehaving = 0;
        // a neighbour counting down through ever smaller roots: each one is a
        // better label, which would be forwarded to every neighbour
        for i in 0..1000u32 {
            let mut b = [199; 32];
            b[28..].copy_from_slice(&(u32::MAX - i).to_be_bytes());
            let m = Message::Root {
                root: PeerId::from_bytes(b),
                seq: 1,
            };
            let out = run(&mut s, InEvent::Message(id(6), m));
            forwarded += sends(&out).len();
            misbehaving += out
                .iter()
                .filter(|o| matches!(o, OutEvent::Misbehaving(_)))
                .count();
        }
        assert_eq!(forwarded, MAX_ROOT_MESSAGES as usize);
        assert_eq!(misbehaving, 1000 - MAX_ROOT_MESSAGES as usize);
    }

    #[test]
    fn a_neighbour_that_just_linked_is_no_other_way_to_the_root() {
        // root 1's beacon came from 2 first
        let mut s = in_overlay(9, &[2, 3], 1);
        let beacon = beacon(1, 1);
        // 4 links and tells us its label, which is ours
        let high = Message::Neighbor {
            priority: Priority::High,
            data: PeerData(vec![4]),
        };
        run(&mut s, InEvent::Message(id(4), high));
        run(&mut s, InEvent::Message(id(4), beacon.clone()));
        assert!(
            !s.echoed.contains(&id(4)),
            "a new link's label taken for an echo"
        );
        // 3, a neighbour since before the beacon, forwards it: another way
        run(&mut s, InEvent::Message(id(3), beacon));
        assert!(s.echoed.contains(&id(3)));
    }

    #[test]
    fn a_neighbour_repeating_our_label_is_not_taken_for_a_flood() {
        // Two honest nodes that link, part and link again while a burst of
        // joins settles tell each other the same label each time (the
        // simulator saw 60 in 1.5 s); striking them banned honest peers and
        // split the overlay for good.
        let mut s = in_overlay(200, &[6, 7], 3);
        let beacon = beacon(3, 1);
        for _ in 0..1000 {
            let out = run(&mut s, InEvent::Message(id(6), beacon.clone()));
            assert!(sends(&out).is_empty(), "an old beacon is not forwarded");
            assert!(
                !out.iter().any(|o| matches!(o, OutEvent::Misbehaving(_))),
                "an honest neighbour is struck"
            );
        }
        assert_eq!(s.active_view().count(), 2);
    }

    /// A ROOT naming `root` with beacon `seq`.
    fn beacon(root: u8, seq: u64) -> Message {
        Message::Root {
            root: id(root),
            seq,
        }
    }

    /// [`with_active`], with the overlay's label `root` heard from the first
    /// neighbour.
    fn in_overlay(i: u8, active: &[u8], root: u8) -> State<SimRng> {
        let mut s = with_active(i, active);
        run(&mut s, InEvent::Message(id(active[0]), beacon(root, 1)));
        assert_eq!(s.root(), id(root));
        s
    }

    #[test]
    fn a_probe_from_another_overlay_links_the_side_with_the_larger_root() {
        // 9's overlay has root 2; a probe arrives from 4, whose root is 1: 9
        // joins 4's overlay with a high-priority NEIGHBOR
        let mut s = in_overlay(9, &[10, 11, 12, 13, 14], 2);
        let probe = Message::Probe {
            root: id(1),
            seq: 1,
            data: PeerData(vec![4]),
        };
        let out = run(&mut s, InEvent::Message(id(4), probe));
        assert!(sends(&out).contains(&(
            id(4),
            Message::Neighbor {
                priority: Priority::High,
                data: PeerData(vec![9])
            }
        )));
        assert_eq!(s.stats().merges, 1);
        // a probe with the larger root gets our label back instead
        let mut s = in_overlay(9, &[10], 2);
        let probe = Message::Probe {
            root: id(3),
            seq: 1,
            data: PeerData(vec![4]),
        };
        let out = run(&mut s, InEvent::Message(id(4), probe));
        assert_eq!(
            sends(&out),
            [(
                id(4),
                Message::Probe {
                    root: id(2),
                    seq: 1,
                    data: PeerData(vec![9])
                }
            )]
        );
        // the same root, one beacon newer (it may be in flight to us): nothing
        // to do
        let same = Message::Probe {
            root: id(2),
            seq: 2,
            data: PeerData(vec![4]),
        };
        assert!(sends(&run(&mut s, InEvent::Message(id(4), same))).is_empty());
        // two beacons newer: we are cut off from our root, and link to it
        let newer = Message::Probe {
            root: id(2),
            seq: 3,
            data: PeerData(vec![4]),
        };
        let out = run(&mut s, InEvent::Message(id(4), newer));
        assert!(sends(&out).iter().any(|(p, m)| *p == id(4)
            && matches!(
                m,
                Message::Neighbor {
                    priority: Priority::High,
                    ..
                }
            )));
    }

    #[test]
    fn an_end_of_an_eviction_cut_off_from_the_root_links_back_after_the_next_beacon() {
        // 9 (root 2, beacons via 10) is evicted by 11
        let mut a = in_overlay(9, &[10, 11, 12, 13], 2);
        let evicted = Message::Disconnect { alive: true };
        run(&mut a, InEvent::Message(id(11), evicted.clone()));
        // (its refill asked 11, which is full)
        let refused = Message::NeighborReply { accepted: false };
        run(&mut a, InEvent::Message(id(11), refused.clone()));
        // 11 ended up on the other side of a split: it keeps the old beacon
        let mut b = in_overlay(11, &[20, 9], 2);
        run(&mut b, InEvent::Message(id(9), evicted));
        // (its refill asked 9, which is full)
        run(&mut b, InEvent::Message(id(9), refused));
        // the root's next beacon reaches 9, which probes 11 a moment later
        let beacon = Message::Root {
            root: id(2),
            seq: 2,
        };
        let out = run(&mut a, InEvent::Message(id(10), beacon));
        assert!(out.contains(&OutEvent::ScheduleTimer(
            Config::default().root_interval / 10,
            Timer::Reprobe
        )));
        let out = run(&mut a, InEvent::Timer(Timer::Reprobe));
        let probe = Message::Probe {
            root: id(2),
            seq: 2,
            data: PeerData(vec![9]),
        };
        assert_eq!(sends(&out), [(id(11), probe.clone())]);
        // once only
        assert!(sends(&run(&mut a, InEvent::Timer(Timer::Reprobe))).is_empty());
        // 11 missed that beacon: it links back to 9
        let out = run(&mut b, InEvent::Message(id(9), probe.clone()));
        assert!(sends(&out).contains(&(
            id(9),
            Message::Neighbor {
                priority: Priority::High,
                data: PeerData(vec![11])
            }
        )));
        // the same probe from a peer that was never our neighbour: one beacon
        // apart may be one in flight, nothing to do
        let mut c = in_overlay(11, &[20], 2);
        assert!(sends(&run(&mut c, InEvent::Message(id(9), probe))).is_empty());
    }

    #[test]
    fn an_eviction_picks_a_neighbour_that_reaches_the_root_without_us() {
        // 2 brought us the beacon of root 0 first, 4 sent it to us too: 4
        // has its own way to the root, the others may hang on us
        let mut s = in_overlay(1, &[2, 3, 4, 5, 6], 0);
        let beacon = Message::Root {
            root: id(0),
            seq: 1,
        };
        run(&mut s, InEvent::Message(id(4), beacon));
        let high = Message::Neighbor {
            priority: Priority::High,
            data: PeerData(vec![7]),
        };
        let out = run(&mut s, InEvent::Message(id(7), high));
        let evicted: Vec<PeerId> = sends(&out)
            .into_iter()
            .filter(|(_, m)| *m == Message::Disconnect { alive: true })
            .map(|(p, _)| p)
            .collect();
        assert_eq!(evicted, [id(4)]);
        // the next ones, with no such neighbour left: any but 2
        for k in 8..20u8 {
            let high = Message::Neighbor {
                priority: Priority::High,
                data: PeerData(vec![k]),
            };
            let out = run(&mut s, InEvent::Message(id(k), high));
            assert!(
                !out.contains(&OutEvent::Send(id(2), Message::Disconnect { alive: true })),
                "evicted the neighbour the beacon came from"
            );
        }
        assert!(s.is_active(&id(2)));
    }
}
