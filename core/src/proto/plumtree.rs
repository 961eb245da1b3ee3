//! Plumtree: epidemic broadcast trees, for one topic.
//!
//! Follows Leitão, Pereira and Rodrigues, "Epidemic Broadcast Trees" (SRDS 2007).
//! Every neighbour (from the membership layer) starts as an *eager* peer: a new
//! message is pushed to it in full. A node that receives a message twice PRUNEs
//! the second sender, which moves both ends of that link to *lazy*; after the
//! first broadcast the eager links form a spanning tree, and payloads travel
//! each tree link once (relative message redundancy ≈ 0). Lazy peers get only
//! the message id, batched in IHAVE messages. A node that hears of a message by
//! IHAVE and does not get the payload within a timeout GRAFTs the announcer,
//! which sends the payload and makes the link eager again: that is how the tree
//! heals when nodes fail. When an IHAVE shows a path shorter by
//! [`Config::optimization_threshold`] hops than the tree's, the node grafts the
//! lazy link and prunes its tree parent (the paper's optimisation).
//!
//! A message id is the BLAKE3 hash of the payload, computed by the receiver, so a
//! peer cannot pass one payload off under another's id. All memory is bounded:
//! ids of received messages are kept for [`Config::id_retention`] and at most
//! [`Config::max_ids`]; payloads for answering GRAFTs for
//! [`Config::store_retention`] and at most [`Config::max_store_bytes`]; the IHAVE
//! queue per peer flushes at [`Config::max_ihave_batch`]; announced-but-missing
//! ids are capped at [`Config::max_missing`]. Oversized payloads, IHAVE floods,
//! GRAFTs for ids we never had and announcements that are never served are
//! dropped, counted in [`Stats`] and reported as [`OutEvent::Misbehaving`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::identity::PeerId;

/// Largest payload accepted (or broadcast) by default.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// Most ids accepted in one IHAVE, whatever the sender's configuration.
pub const MAX_IHAVE_IDS: usize = 1024;

/// The BLAKE3 hash of a message's payload.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 32]);

impl MessageId {
    pub fn of(payload: &[u8]) -> Self {
        Self(*blake3::hash(payload).as_bytes())
    }
}

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Message content: cheap to clone (shared), serialized as a byte sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload(pub Bytes);

impl Payload {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Self(Bytes::from(v))
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(Bytes::from(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Payload, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = a.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Payload(Bytes::from(v)))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Wait this long after the first IHAVE for the payload before grafting.
    pub graft_timeout: Duration,
    /// Wait this long for a grafted peer before grafting the next announcer.
    pub graft_retry: Duration,
    /// IHAVEs are batched for this long (zero: sent at once).
    pub ihave_interval: Duration,
    /// A peer's IHAVE batch is sent as soon as it holds this many ids.
    pub max_ihave_batch: usize,
    /// Graft a lazy link and prune the tree parent when the lazy path is shorter
    /// by at least this many hops.
    pub optimization_threshold: u16,
    /// How long ids of received messages are remembered (duplicate detection).
    pub id_retention: Duration,
    /// At most this many ids are remembered.
    pub max_ids: usize,
    /// How long payloads are kept to answer GRAFTs.
    pub store_retention: Duration,
    pub max_store_bytes: usize,
    /// At most this many announced-but-missing messages are tracked.
    pub max_missing: usize,
    /// Announcers remembered per missing message.
    pub max_announcers: usize,
    pub max_payload: usize,
    /// Period of cache expiry.
    pub evict_interval: Duration,
    /// Send a new neighbour the ids of messages received this recently (zero:
    /// never), so that a node cut off while a message went round grafts it
    /// once its overlay heals. The LAN variant ([`Config::lan`]) turns it on.
    pub new_neighbor_digest: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            graft_timeout: Duration::from_millis(50),
            graft_retry: Duration::from_millis(25),
            ihave_interval: Duration::from_millis(5),
            max_ihave_batch: 256,
            optimization_threshold: 4,
            id_retention: Duration::from_secs(120),
            max_ids: 100_000,
            store_retention: Duration::from_secs(30),
            max_store_bytes: 16 << 20,
            max_missing: 4096,
            max_announcers: 4,
            max_payload: MAX_PAYLOAD_LEN,
            evict_interval: Duration::from_secs(1),
            new_neighbor_digest: Duration::ZERO,
        }
    }
}

impl Config {
    /// The LAN variant: Plumtree plus a digest of recent ids to every new
    /// neighbour. On a LAN, devices leave in bursts (a class ends, lids close);
    /// a message sent during the burst misses the nodes that were cut off, and
    /// plain Plumtree (like flooding and rumor mongering) never repairs that. New
    /// links are rare in steady state, so this costs nearly nothing there.
    ///
    /// The window is two minutes, so that when a network cut in two heals
    /// (a switch rebooted, an access point back), the link that merges the
    /// two overlays carries each side's messages of the cut to the other:
    /// sessions across the cut take up to 40 s to be declared dead, the
    /// overlays' labels 30 s to part, and the merge probe comes within 10 s
    /// of the heal. Payloads are kept as long (within `max_store_bytes`), and
    /// ids longer still, so a digest never offers what a node has forgotten
    /// it already delivered.
    pub fn lan() -> Self {
        Self {
            new_neighbor_digest: LAN_DIGEST_WINDOW,
            store_retention: LAN_DIGEST_WINDOW,
            id_retention: LAN_DIGEST_WINDOW * 2,
            ..Self::default()
        }
    }
}

/// How far back the LAN variant's digest to a new neighbour reaches.
pub const LAN_DIGEST_WINDOW: Duration = Duration::from_secs(120);

/// An id announced lazily, with the hop count the payload would arrive with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IHave {
    pub id: MessageId,
    pub hops: u16,
}

/// Plumtree messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A payload; `hops` counts links travelled, including this one.
    Gossip {
        payload: Payload,
        hops: u16,
    },
    IHave(Vec<IHave>),
    /// Makes the link eager; with an id, also asks for that payload.
    Graft(Option<MessageId>),
    /// Makes the link lazy.
    Prune,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Graft(MessageId),
    DispatchIHave,
    Evict,
}

#[derive(Debug, Clone)]
pub enum InEvent {
    Message(PeerId, Message),
    NeighborUp(PeerId),
    NeighborDown(PeerId),
    Timer(Timer),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent {
    Send(PeerId, Message),
    ScheduleTimer(Duration, Timer),
    Emit(Event),
    Misbehaving(PeerId),
}

/// A message delivered to the application, exactly once per id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: MessageId,
    pub payload: Payload,
    pub from: PeerId,
    pub hops: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Received(Delivery),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub delivered: u64,
    pub duplicates: u64,
    pub prunes_sent: u64,
    pub grafts_sent: u64,
    pub optimizations: u64,
    pub oversized: u64,
    pub ihave_dropped: u64,
    pub graft_unknown: u64,
    pub graft_unanswered: u64,
    pub graft_gave_up: u64,
    pub from_non_neighbor: u64,
}

/// Ids seen recently, with a value each, forgotten after a retention time or when
/// more than a maximum are held (oldest first).
#[derive(Debug)]
pub(crate) struct SeenCache<V> {
    map: BTreeMap<MessageId, V>,
    order: VecDeque<(Duration, MessageId)>,
}

impl<V> Default for SeenCache<V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V> SeenCache<V> {
    pub(crate) fn get(&self, id: &MessageId) -> Option<&V> {
        self.map.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &MessageId) -> Option<&mut V> {
        self.map.get_mut(id)
    }

    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        self.map.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Inserts (`now` starts the retention) and returns what was evicted to stay
    /// within `max`.
    pub(crate) fn insert(&mut self, now: Duration, id: MessageId, v: V, max: usize) -> Vec<V> {
        if self.map.insert(id, v).is_none() {
            self.order.push_back((now, id));
        }
        self.shrink_to(max.max(1))
    }

    /// Drops the oldest entries until at most `max` remain; returns them.
    pub(crate) fn shrink_to(&mut self, max: usize) -> Vec<V> {
        let mut evicted = Vec::new();
        while self.map.len() > max {
            let Some((_, old)) = self.order.pop_front() else {
                break;
            };
            evicted.extend(self.map.remove(&old));
        }
        evicted
    }

    /// Entries inserted no earlier than `since`, newest first.
    pub(crate) fn newer_than(&self, since: Duration) -> impl Iterator<Item = (&MessageId, &V)> {
        self.order
            .iter()
            .rev()
            .take_while(move |(at, _)| *at >= since)
            .filter_map(|(_, id)| self.map.get_key_value(id))
    }

    /// Forgets entries older than `retention`; returns them.
    pub(crate) fn expire(&mut self, now: Duration, retention: Duration) -> Vec<V> {
        let mut evicted = Vec::new();
        while let Some((at, id)) = self.order.front().copied() {
            if now.saturating_sub(at) < retention {
                break;
            }
            self.order.pop_front();
            evicted.extend(self.map.remove(&id));
        }
        evicted
    }
}

/// What we remember of a received message.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The peer that gave us the payload (None: we broadcast it).
    parent: Option<PeerId>,
    hops: u16,
}

#[derive(Debug)]
struct Missing {
    /// Announcers not tried yet, first announcer first.
    announcers: VecDeque<(PeerId, u16)>,
    /// The peer we grafted last, still owing us the payload.
    grafted: Option<PeerId>,
}

/// Plumtree state of one node for one topic.
#[derive(Debug)]
pub struct State {
    me: PeerId,
    config: Config,
    eager: BTreeSet<PeerId>,
    lazy: BTreeSet<PeerId>,
    seen: SeenCache<Seen>,
    store: SeenCache<(Payload, u16)>,
    store_bytes: usize,
    missing: BTreeMap<MessageId, Missing>,
    ihave_queue: BTreeMap<PeerId, Vec<IHave>>,
    dispatch_scheduled: bool,
    evict_scheduled: bool,
    stats: Stats,
}

impl State {
    pub fn new(me: PeerId, config: Config) -> Self {
        Self {
            me,
            config,
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            seen: SeenCache::default(),
            store: SeenCache::default(),
            store_bytes: 0,
            missing: BTreeMap::new(),
            ihave_queue: BTreeMap::new(),
            dispatch_scheduled: false,
            evict_scheduled: false,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn eager_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.eager.iter()
    }

    pub fn lazy_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.lazy.iter()
    }

    pub fn has_seen(&self, id: &MessageId) -> bool {
        self.seen.contains(id)
    }

    pub fn max_payload(&self) -> usize {
        self.config.max_payload
    }

    /// Broadcasts our own payload. Returns its id, or `None` if the payload is
    /// too large or this exact payload was already seen (ids are content hashes,
    /// so resending identical bytes would be taken as a duplicate everywhere).
    pub fn broadcast(
        &mut self,
        now: Duration,
        payload: Payload,
        out: &mut Vec<OutEvent>,
    ) -> Option<MessageId> {
        if payload.len() > self.config.max_payload {
            return None;
        }
        let id = MessageId::of(&payload.0);
        if self.seen.contains(&id) {
            return None;
        }
        self.accept(now, id, payload, None, 0, out);
        Some(id)
    }

    pub fn handle(&mut self, now: Duration, event: InEvent, out: &mut Vec<OutEvent>) {
        match event {
            InEvent::Message(from, msg) => match msg {
                Message::Gossip { payload, hops } => self.on_gossip(now, from, payload, hops, out),
                Message::IHave(list) => self.on_ihave(from, list, out),
                Message::Graft(id) => self.on_graft(from, id, out),
                Message::Prune => self.on_prune(from),
            },
            InEvent::NeighborUp(peer) => {
                if peer != self.me {
                    self.lazy.remove(&peer);
                    self.eager.insert(peer);
                    self.send_digest(now, peer, out);
                }
            }
            InEvent::NeighborDown(peer) => {
                self.eager.remove(&peer);
                self.lazy.remove(&peer);
                self.ihave_queue.remove(&peer);
                for m in self.missing.values_mut() {
                    m.announcers.retain(|(p, _)| *p != peer);
                    if m.grafted == Some(peer) {
                        m.grafted = None;
                    }
                }
            }
            InEvent::Timer(Timer::Graft(id)) => self.on_graft_timeout(id, out),
            InEvent::Timer(Timer::DispatchIHave) => {
                self.dispatch_scheduled = false;
                let peers: Vec<PeerId> = self.ihave_queue.keys().copied().collect();
                for peer in peers {
                    self.send_ihave(peer, out);
                }
            }
            InEvent::Timer(Timer::Evict) => {
                self.evict_scheduled = false;
                self.seen.expire(now, self.config.id_retention);
                for (p, _) in self.store.expire(now, self.config.store_retention) {
                    self.store_bytes -= p.len();
                }
                if self.seen.len() > 0 {
                    self.schedule_evict(out);
                }
            }
        }
    }

    /// Announces recently received messages to a new neighbour (LAN variant).
    fn send_digest(&mut self, now: Duration, peer: PeerId, out: &mut Vec<OutEvent>) {
        let window = self.config.new_neighbor_digest;
        if window.is_zero() {
            return;
        }
        let since = now.saturating_sub(window);
        let list: Vec<IHave> = self
            .store
            .newer_than(since)
            .take(self.config.max_ihave_batch.min(MAX_IHAVE_IDS))
            .map(|(id, (_, hops))| IHave {
                id: *id,
                hops: hops.saturating_add(1),
            })
            .collect();
        if !list.is_empty() {
            out.push(OutEvent::Send(peer, Message::IHave(list)));
        }
    }

    fn is_neighbor(&self, peer: &PeerId) -> bool {
        self.eager.contains(peer) || self.lazy.contains(peer)
    }

    fn on_gossip(
        &mut self,
        now: Duration,
        from: PeerId,
        payload: Payload,
        hops: u16,
        out: &mut Vec<OutEvent>,
    ) {
        if payload.len() > self.config.max_payload {
            self.stats.oversized += 1;
            out.push(OutEvent::Misbehaving(from));
            return;
        }
        let neighbor = self.is_neighbor(&from);
        if !neighbor {
            self.stats.from_non_neighbor += 1;
        }
        let id = MessageId::of(&payload.0);
        if self.seen.contains(&id) {
            self.stats.duplicates += 1;
            if self.eager.remove(&from) {
                self.lazy.insert(from);
                self.stats.prunes_sent += 1;
                out.push(OutEvent::Send(from, Message::Prune));
            }
            return;
        }
        if neighbor {
            self.lazy.remove(&from);
            self.eager.insert(from);
        }
        self.accept(now, id, payload.clone(), Some(from), hops, out);
        self.stats.delivered += 1;
        out.push(OutEvent::Emit(Event::Received(Delivery {
            id,
            payload,
            from,
            hops,
        })));
    }

    /// Records a new message and pushes it on: in full to eager peers, as an id
    /// to lazy ones.
    fn accept(
        &mut self,
        now: Duration,
        id: MessageId,
        payload: Payload,
        parent: Option<PeerId>,
        hops: u16,
        out: &mut Vec<OutEvent>,
    ) {
        self.missing.remove(&id);
        self.seen
            .insert(now, id, Seen { parent, hops }, self.config.max_ids);
        self.store_bytes += payload.len();
        for (p, _) in self
            .store
            .insert(now, id, (payload.clone(), hops), usize::MAX)
        {
            self.store_bytes -= p.len();
        }
        self.shrink_store();
        self.schedule_evict(out);
        let next = hops.saturating_add(1);
        for peer in self.eager.iter().filter(|p| Some(**p) != parent) {
            let msg = Message::Gossip {
                payload: payload.clone(),
                hops: next,
            };
            out.push(OutEvent::Send(*peer, msg));
        }
        let lazy: Vec<PeerId> = self
            .lazy
            .iter()
            .filter(|p| Some(**p) != parent)
            .copied()
            .collect();
        for peer in lazy {
            self.queue_ihave(peer, IHave { id, hops: next }, out);
        }
    }

    fn shrink_store(&mut self) {
        let max = self.config.max_store_bytes;
        // bounded: every step drops one stored payload
        while self.store_bytes > max && self.store.len() > 0 {
            let len = self.store.len();
            for (p, _) in self.store.shrink_to(len - 1) {
                self.store_bytes -= p.len();
            }
        }
    }

    fn queue_ihave(&mut self, peer: PeerId, ihave: IHave, out: &mut Vec<OutEvent>) {
        let queue = self.ihave_queue.entry(peer).or_default();
        queue.push(ihave);
        if queue.len() >= self.config.max_ihave_batch || self.config.ihave_interval.is_zero() {
            self.send_ihave(peer, out);
        } else if !self.dispatch_scheduled {
            self.dispatch_scheduled = true;
            out.push(OutEvent::ScheduleTimer(
                self.config.ihave_interval,
                Timer::DispatchIHave,
            ));
        }
    }

    fn send_ihave(&mut self, peer: PeerId, out: &mut Vec<OutEvent>) {
        if let Some(list) = self.ihave_queue.remove(&peer).filter(|l| !l.is_empty()) {
            out.push(OutEvent::Send(peer, Message::IHave(list)));
        }
    }

    fn on_ihave(&mut self, from: PeerId, list: Vec<IHave>, out: &mut Vec<OutEvent>) {
        if list.len() > MAX_IHAVE_IDS {
            self.stats.ihave_dropped += list.len() as u64;
            out.push(OutEvent::Misbehaving(from));
            return;
        }
        if !self.is_neighbor(&from) {
            self.stats.from_non_neighbor += 1;
            return;
        }
        for IHave { id, hops } in list {
            if let Some(seen) = self.seen.get(&id).copied() {
                self.optimize(id, seen, from, hops, out);
                continue;
            }
            if let Some(m) = self.missing.get_mut(&id) {
                if m.announcers.len() < self.config.max_announcers
                    && !m.announcers.iter().any(|(p, _)| *p == from)
                {
                    m.announcers.push_back((from, hops));
                }
                continue;
            }
            if self.missing.len() >= self.config.max_missing {
                self.stats.ihave_dropped += 1;
                continue;
            }
            self.missing.insert(
                id,
                Missing {
                    announcers: VecDeque::from([(from, hops)]),
                    grafted: None,
                },
            );
            out.push(OutEvent::ScheduleTimer(
                self.config.graft_timeout,
                Timer::Graft(id),
            ));
        }
    }

    /// The paper's tree optimisation: a lazy path much shorter than the tree's
    /// replaces the tree link.
    fn optimize(
        &mut self,
        id: MessageId,
        seen: Seen,
        announcer: PeerId,
        hops: u16,
        out: &mut Vec<OutEvent>,
    ) {
        let Some(parent) = seen.parent else { return };
        if parent == announcer
            || !self.eager.contains(&parent)
            || !self.lazy.contains(&announcer)
            || hops.saturating_add(self.config.optimization_threshold) > seen.hops
        {
            return;
        }
        self.stats.optimizations += 1;
        self.lazy.remove(&announcer);
        self.eager.insert(announcer);
        out.push(OutEvent::Send(announcer, Message::Graft(None)));
        self.eager.remove(&parent);
        self.lazy.insert(parent);
        out.push(OutEvent::Send(parent, Message::Prune));
        if let Some(s) = self.seen.get_mut(&id) {
            *s = Seen {
                parent: Some(announcer),
                hops,
            };
        }
    }

    fn on_graft_timeout(&mut self, id: MessageId, out: &mut Vec<OutEvent>) {
        if self.seen.contains(&id) {
            self.missing.remove(&id);
            return;
        }
        let Some(m) = self.missing.get_mut(&id) else {
            return;
        };
        if let Some(owing) = m.grafted.take() {
            // It announced the payload and did not serve it when asked.
            self.stats.graft_unanswered += 1;
            out.push(OutEvent::Misbehaving(owing));
        }
        let Some((peer, _)) = m.announcers.pop_front() else {
            self.missing.remove(&id);
            self.stats.graft_gave_up += 1;
            return;
        };
        m.grafted = Some(peer);
        self.lazy.remove(&peer);
        self.eager.insert(peer);
        self.stats.grafts_sent += 1;
        out.push(OutEvent::Send(peer, Message::Graft(Some(id))));
        out.push(OutEvent::ScheduleTimer(
            self.config.graft_retry,
            Timer::Graft(id),
        ));
    }

    fn on_graft(&mut self, from: PeerId, id: Option<MessageId>, out: &mut Vec<OutEvent>) {
        if !self.is_neighbor(&from) {
            self.stats.from_non_neighbor += 1;
            return;
        }
        self.lazy.remove(&from);
        self.eager.insert(from);
        let Some(id) = id else { return };
        match self.store.get(&id) {
            Some((payload, hops)) => {
                let msg = Message::Gossip {
                    payload: payload.clone(),
                    hops: hops.saturating_add(1),
                };
                out.push(OutEvent::Send(from, msg));
            }
            None => {
                self.stats.graft_unknown += 1;
                if !self.seen.contains(&id) {
                    // Never had it: a graft for an id we never announced.
                    out.push(OutEvent::Misbehaving(from));
                }
            }
        }
    }

    fn on_prune(&mut self, from: PeerId) {
        if self.eager.remove(&from) {
            self.lazy.insert(from);
        }
    }

    fn schedule_evict(&mut self, out: &mut Vec<OutEvent>) {
        if !self.evict_scheduled {
            self.evict_scheduled = true;
            out.push(OutEvent::ScheduleTimer(
                self.config.evict_interval,
                Timer::Evict,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Duration = Duration::ZERO;

    fn id(i: u8) -> PeerId {
        PeerId::from_bytes([i; 32])
    }

    /// A node with eager neighbours `peers`.
    fn node(peers: &[u8]) -> State {
        let mut s = State::new(id(0), Config::default());
        for &p in peers {
            s.handle(T0, InEvent::NeighborUp(id(p)), &mut Vec::new());
        }
        s
    }

    fn run(s: &mut State, ev: InEvent) -> Vec<OutEvent> {
        let mut out = Vec::new();
        s.handle(T0, ev, &mut out);
        out
    }

    fn gossip(text: &str, hops: u16) -> Message {
        Message::Gossip {
            payload: Payload::from(text.as_bytes().to_vec()),
            hops,
        }
    }

    fn mid(text: &str) -> MessageId {
        MessageId::of(text.as_bytes())
    }

    fn sent_to(out: &[OutEvent], peer: u8) -> Vec<Message> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::Send(p, m) if *p == id(peer) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn new_message_is_delivered_once_and_pushed_to_other_eager_peers() {
        let mut s = node(&[1, 2, 3]);
        let out = run(&mut s, InEvent::Message(id(1), gossip("hi", 1)));
        let delivered: Vec<_> = out
            .iter()
            .filter(|o| matches!(o, OutEvent::Emit(Event::Received(d)) if d.id == mid("hi") && d.hops == 1))
            .collect();
        assert_eq!(delivered.len(), 1);
        assert!(sent_to(&out, 1).is_empty(), "never back to the sender");
        assert_eq!(sent_to(&out, 2), [gossip("hi", 2)]);
        assert_eq!(sent_to(&out, 3), [gossip("hi", 2)]);
    }

    #[test]
    fn duplicate_prunes_its_sender_to_lazy() {
        let mut s = node(&[1, 2]);
        run(&mut s, InEvent::Message(id(1), gossip("hi", 1)));
        let out = run(&mut s, InEvent::Message(id(2), gossip("hi", 3)));
        assert_eq!(sent_to(&out, 2), [Message::Prune]);
        assert!(!out.iter().any(|o| matches!(o, OutEvent::Emit(_))));
        assert_eq!(s.lazy_peers().copied().collect::<Vec<_>>(), [id(2)]);
        assert_eq!(s.stats().duplicates, 1);
    }

    #[test]
    fn prune_makes_link_lazy_and_lazy_peers_get_batched_ihave() {
        let mut s = node(&[1, 2]);
        run(&mut s, InEvent::Message(id(2), Message::Prune));
        let out = run(&mut s, InEvent::Message(id(1), gossip("a", 1)));
        assert!(sent_to(&out, 2).is_empty(), "batched, not sent at once");
        assert!(out.contains(&OutEvent::ScheduleTimer(
            Config::default().ihave_interval,
            Timer::DispatchIHave
        )));
        let out2 = run(&mut s, InEvent::Message(id(1), gossip("b", 4)));
        assert!(sent_to(&out2, 2).is_empty());
        let out = run(&mut s, InEvent::Timer(Timer::DispatchIHave));
        let ihave = vec![
            IHave {
                id: mid("a"),
                hops: 2,
            },
            IHave {
                id: mid("b"),
                hops: 5,
            },
        ];
        assert_eq!(sent_to(&out, 2), [Message::IHave(ihave)]);
    }

    #[test]
    fn graft_after_timeout_when_announced_message_does_not_arrive() {
        let mut s = node(&[1, 2]);
        run(&mut s, InEvent::Message(id(2), Message::Prune));
        let ihave = Message::IHave(vec![IHave {
            id: mid("x"),
            hops: 3,
        }]);
        let out = run(&mut s, InEvent::Message(id(2), ihave));
        let timeout = Config::default().graft_timeout;
        assert_eq!(
            out,
            [OutEvent::ScheduleTimer(timeout, Timer::Graft(mid("x")))]
        );
        let out = run(&mut s, InEvent::Timer(Timer::Graft(mid("x"))));
        assert_eq!(sent_to(&out, 2), [Message::Graft(Some(mid("x")))]);
        assert!(s.eager_peers().any(|p| *p == id(2)));
        // the grafted peer answers: delivered, nothing owed any more
        let out = run(&mut s, InEvent::Message(id(2), gossip("x", 4)));
        assert!(out.iter().any(|o| matches!(o, OutEvent::Emit(_))));
        assert!(run(&mut s, InEvent::Timer(Timer::Graft(mid("x")))).is_empty());
    }

    #[test]
    fn no_graft_when_payload_arrives_in_time() {
        let mut s = node(&[1, 2]);
        run(&mut s, InEvent::Message(id(2), Message::Prune));
        run(
            &mut s,
            InEvent::Message(
                id(2),
                Message::IHave(vec![IHave {
                    id: mid("x"),
                    hops: 3,
                }]),
            ),
        );
        run(&mut s, InEvent::Message(id(1), gossip("x", 2)));
        assert!(run(&mut s, InEvent::Timer(Timer::Graft(mid("x")))).is_empty());
        assert_eq!(s.stats().grafts_sent, 0);
    }

    #[test]
    fn announcer_that_never_serves_is_reported_and_next_one_grafted() {
        let mut s = node(&[1, 2, 3]);
        for p in [2, 3] {
            run(&mut s, InEvent::Message(id(p), Message::Prune));
            let ihave = Message::IHave(vec![IHave {
                id: mid("x"),
                hops: 3,
            }]);
            run(&mut s, InEvent::Message(id(p), ihave));
        }
        run(&mut s, InEvent::Timer(Timer::Graft(mid("x"))));
        let out = run(&mut s, InEvent::Timer(Timer::Graft(mid("x"))));
        assert!(out.contains(&OutEvent::Misbehaving(id(2))));
        assert_eq!(sent_to(&out, 3), [Message::Graft(Some(mid("x")))]);
        assert_eq!(s.stats().graft_unanswered, 1);
    }

    #[test]
    fn graft_is_answered_from_the_store_and_makes_link_eager() {
        let mut s = node(&[1, 2]);
        run(&mut s, InEvent::Message(id(2), Message::Prune));
        run(&mut s, InEvent::Message(id(1), gossip("x", 1)));
        let out = run(
            &mut s,
            InEvent::Message(id(2), Message::Graft(Some(mid("x")))),
        );
        assert_eq!(sent_to(&out, 2), [gossip("x", 2)]);
        assert!(s.eager_peers().any(|p| *p == id(2)));
    }

    #[test]
    fn graft_for_unknown_id_is_counted_and_reported() {
        let mut s = node(&[1]);
        let out = run(
            &mut s,
            InEvent::Message(id(1), Message::Graft(Some(mid("never")))),
        );
        assert_eq!(out, [OutEvent::Misbehaving(id(1))]);
        assert_eq!(s.stats().graft_unknown, 1);
    }

    #[test]
    fn shorter_lazy_path_replaces_tree_link() {
        let mut s = node(&[1, 2]);
        run(&mut s, InEvent::Message(id(2), Message::Prune));
        run(&mut s, InEvent::Message(id(1), gossip("x", 9)));
        let ihave = Message::IHave(vec![IHave {
            id: mid("x"),
            hops: 2,
        }]);
        let out = run(&mut s, InEvent::Message(id(2), ihave));
        assert_eq!(sent_to(&out, 2), [Message::Graft(None)]);
        assert_eq!(sent_to(&out, 1), [Message::Prune]);
        assert_eq!(s.eager_peers().copied().collect::<Vec<_>>(), [id(2)]);
        assert_eq!(s.stats().optimizations, 1);
        // a path shorter by less than the threshold changes nothing
        run(&mut s, InEvent::Message(id(2), gossip("y", 5)));
        let ihave = Message::IHave(vec![IHave {
            id: mid("y"),
            hops: 3,
        }]);
        assert!(run(&mut s, InEvent::Message(id(1), ihave)).is_empty());
    }

    #[test]
    fn oversized_payload_and_ihave_flood_are_dropped_and_reported() {
        let mut s = node(&[1]);
        let big = Message::Gossip {
            payload: Payload::from(vec![0; MAX_PAYLOAD_LEN + 1]),
            hops: 1,
        };
        assert_eq!(
            run(&mut s, InEvent::Message(id(1), big)),
            [OutEvent::Misbehaving(id(1))]
        );
        let flood = (0..=MAX_IHAVE_IDS as u32)
            .map(|i| IHave {
                id: MessageId::of(&i.to_le_bytes()),
                hops: 1,
            })
            .collect();
        let out = run(&mut s, InEvent::Message(id(1), Message::IHave(flood)));
        assert_eq!(out, [OutEvent::Misbehaving(id(1))]);
        assert_eq!(s.stats().oversized, 1);
        assert_eq!(s.stats().delivered, 0);
    }

    #[test]
    fn missing_announcements_are_capped() {
        let config = Config {
            max_missing: 10,
            ..Config::default()
        };
        let mut s = State::new(id(0), config);
        s.handle(T0, InEvent::NeighborUp(id(1)), &mut Vec::new());
        let list = (0..50u32)
            .map(|i| IHave {
                id: MessageId::of(&i.to_le_bytes()),
                hops: 1,
            })
            .collect();
        let out = run(&mut s, InEvent::Message(id(1), Message::IHave(list)));
        assert_eq!(out.len(), 10, "one graft timer per tracked id");
        assert_eq!(s.stats().ihave_dropped, 40);
    }

    #[test]
    fn broadcast_refuses_oversized_and_repeated_payloads() {
        let mut s = node(&[1]);
        let mut out = Vec::new();
        let big = Payload::from(vec![0; MAX_PAYLOAD_LEN + 1]);
        assert_eq!(s.broadcast(T0, big, &mut out), None);
        let p = Payload::from(b"once".to_vec());
        assert_eq!(s.broadcast(T0, p.clone(), &mut out), Some(mid("once")));
        assert_eq!(s.broadcast(T0, p, &mut out), None);
        assert_eq!(sent_to(&out, 1), [gossip("once", 1)]);
    }

    #[test]
    fn caches_expire() {
        let mut s = node(&[1]);
        let mut out = Vec::new();
        s.handle(T0, InEvent::Message(id(1), gossip("x", 1)), &mut out);
        let later = Config::default().id_retention + Duration::from_secs(1);
        s.handle(later, InEvent::Timer(Timer::Evict), &mut out);
        assert!(!s.has_seen(&mid("x")));
        assert_eq!(s.store_bytes, 0);
    }

    #[test]
    fn lan_variant_announces_recent_messages_to_a_new_neighbour() {
        let mut s = State::new(id(0), Config::lan());
        s.handle(T0, InEvent::NeighborUp(id(1)), &mut Vec::new());
        run(&mut s, InEvent::Message(id(1), gossip("old", 1)));
        let later = LAN_DIGEST_WINDOW + Duration::from_secs(20);
        s.handle(
            later,
            InEvent::Message(id(1), gossip("new", 2)),
            &mut Vec::new(),
        );
        let mut out = Vec::new();
        s.handle(later, InEvent::NeighborUp(id(2)), &mut out);
        let digest = vec![IHave {
            id: mid("new"),
            hops: 3,
        }];
        assert_eq!(
            sent_to(&out, 2),
            [Message::IHave(digest)],
            "only the last two minutes"
        );
        // plain Plumtree says nothing to new neighbours
        let mut s = node(&[1]);
        run(&mut s, InEvent::Message(id(1), gossip("new", 2)));
        assert!(run(&mut s, InEvent::NeighborUp(id(2))).is_empty());
    }

    /// A network cut in two for a minute heals: the first link across carries
    /// each side's messages of the cut, and the other side grafts them.
    #[test]
    fn lan_variant_carries_a_minute_long_cut_across_the_link_that_heals_it() {
        let cut = Duration::from_secs(5);
        let heal = Duration::from_secs(65);
        // `a` heard three lines on its side during the cut.
        let mut a = State::new(id(0), Config::lan());
        a.handle(T0, InEvent::NeighborUp(id(1)), &mut Vec::new());
        for (i, text) in ["first", "middle", "last"].iter().enumerate() {
            let at = cut + Duration::from_secs(25 * i as u64);
            let msg = InEvent::Message(id(1), gossip(text, 1));
            a.handle(at, msg, &mut Vec::new());
        }
        // `b`, on the other side, heard none of them.
        let mut b = State::new(id(9), Config::lan());
        let mut out = Vec::new();
        a.handle(heal, InEvent::Timer(Timer::Evict), &mut out);
        a.handle(heal, InEvent::NeighborUp(id(9)), &mut out);
        let digest = sent_to(&out, 9);
        assert_eq!(digest.len(), 1, "{digest:?}");
        let mut out = Vec::new();
        b.handle(heal, InEvent::NeighborUp(id(0)), &mut out);
        b.handle(heal, InEvent::Message(id(0), digest[0].clone()), &mut out);
        // b waits a graft timeout for the payloads to come by the tree, then
        // asks `a` for each.
        let mut grafts = Vec::new();
        for e in std::mem::take(&mut out) {
            if let OutEvent::ScheduleTimer(_, t @ Timer::Graft(_)) = e {
                b.handle(heal, InEvent::Timer(t), &mut grafts);
            }
        }
        let mut asked: Vec<MessageId> = sent_to(&grafts, 0)
            .into_iter()
            .filter_map(|m| match m {
                Message::Graft(Some(id)) => Some(id),
                _ => None,
            })
            .collect();
        asked.sort();
        let mut want = vec![mid("first"), mid("middle"), mid("last")];
        want.sort();
        assert_eq!(asked, want, "b asks for every line of the cut");
        // `a` still holds each payload to answer.
        for id_ in asked {
            let mut out = Vec::new();
            a.handle(
                heal,
                InEvent::Message(id(9), Message::Graft(Some(id_))),
                &mut out,
            );
            assert!(
                sent_to(&out, 9)
                    .iter()
                    .any(|m| matches!(m, Message::Gossip { payload, .. } if MessageId::of(&payload.0) == id_)),
                "a answers the graft of {id_:?}"
            );
        }
    }

    #[test]
    fn payload_serializes_like_a_byte_vector() {
        let p = Payload::from(vec![1, 2, 3]);
        let a = postcard::to_stdvec(&p).unwrap();
        assert_eq!(a, postcard::to_stdvec(&vec![1u8, 2, 3]).unwrap());
        assert_eq!(postcard::from_bytes::<Payload>(&a).unwrap(), p);
    }

    proptest! {
        #[test]
        fn seen_cache_never_holds_more_than_its_maximum(
            ids in proptest::collection::vec(any::<u8>(), 0..200),
            max in 1usize..20,
        ) {
            let mut c = SeenCache::default();
            for (t, i) in ids.iter().enumerate() {
                c.insert(Duration::from_millis(t as u64), MessageId([*i; 32]), (), max);
                prop_assert!(c.len() <= max);
            }
            c.expire(Duration::from_secs(3600), Duration::from_secs(1));
            prop_assert_eq!(c.len(), 0);
        }
    }
}
