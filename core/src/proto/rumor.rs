//! Push rumor mongering with loss of interest, and flooding, for one topic.
//!
//! Follows Demers et al., "Epidemic Algorithms for Replicated Database
//! Maintenance" (PODC 1987), §1.4: a node that learns a new message (a *hot
//! rumor*) pushes it to [`Config::fanout`] random neighbours at once and again
//! every [`Config::round_interval`]. A neighbour that already had the message
//! says so (`Known`); on each such answer the sender loses interest in the rumor
//! with probability 1/[`Config::stop_one_in`] ("feedback, coin" variant), and it
//! stops anyway after [`Config::max_rounds`] rounds, which bounds the work per
//! message. Delivery is probabilistic: a few nodes may miss a message, which the
//! simulator measures.
//!
//! [`Config::flood`] is the degenerate case used as a baseline: push to every
//! neighbour but the sender, once, no rounds and no feedback. It delivers to
//! every node the overlay connects, at the price of one copy per link.
//!
//! Neighbours come from the membership layer (`NeighborUp`/`NeighborDown`).
//! Ids are BLAKE3 hashes of payloads ([`MessageId`]); the id cache, the hot set
//! and payload sizes are bounded, and bad input is dropped, counted in [`Stats`]
//! and reported as [`OutEvent::Misbehaving`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use rand::seq::IteratorRandom;
use serde::{Deserialize, Serialize};

use crate::identity::PeerId;
use crate::proto::plumtree::{MAX_PAYLOAD_LEN, MessageId, Payload, SeenCache};

#[derive(Debug, Clone)]
pub struct Config {
    /// Neighbours a hot rumor is pushed to per round.
    pub fanout: usize,
    /// Lose interest with probability 1/k on each `Known` answer (k ≥ 1).
    pub stop_one_in: u32,
    /// Time between pushes of a hot rumor.
    pub round_interval: Duration,
    /// Rounds after the first push (0: push once).
    pub max_rounds: u16,
    /// Answer a duplicate with `Known`.
    pub feedback: bool,
    /// Most rumors hot at once (the oldest cools down first).
    pub max_hot: usize,
    pub id_retention: Duration,
    pub max_ids: usize,
    pub max_payload: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fanout: 2,
            stop_one_in: 2,
            round_interval: Duration::from_millis(20),
            max_rounds: 8,
            feedback: true,
            max_hot: 1024,
            id_retention: Duration::from_secs(120),
            max_ids: 100_000,
            max_payload: MAX_PAYLOAD_LEN,
        }
    }
}

impl Config {
    /// Flooding: every neighbour but the sender, once.
    pub fn flood() -> Self {
        Self {
            fanout: usize::MAX,
            max_rounds: 0,
            feedback: false,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A payload; `hops` counts links travelled, including this one.
    Rumor { payload: Payload, hops: u16 },
    /// "I already had this one."
    Known(MessageId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Round,
    Evict,
}

#[derive(Debug, Clone)]
pub enum InEvent {
    Message(PeerId, Message),
    NeighborUp(PeerId),
    NeighborDown(PeerId),
    Timer(Timer),
}

pub use crate::proto::plumtree::Delivery;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Received(Delivery),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent {
    Send(PeerId, Message),
    ScheduleTimer(Duration, Timer),
    Emit(Event),
    Misbehaving(PeerId),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub delivered: u64,
    pub duplicates: u64,
    pub pushes: u64,
    pub lost_interest: u64,
    pub oversized: u64,
    pub unsolicited_known: u64,
    pub from_non_neighbor: u64,
}

#[derive(Debug)]
struct Hot {
    payload: Payload,
    hops: u16,
    rounds_left: u16,
}

/// Rumor-mongering state of one node for one topic.
#[derive(Debug)]
pub struct State<R> {
    config: Config,
    rng: R,
    neighbors: BTreeSet<PeerId>,
    seen: SeenCache<()>,
    hot: BTreeMap<MessageId, Hot>,
    round_scheduled: bool,
    evict_scheduled: bool,
    stats: Stats,
}

impl<R: Rng> State<R> {
    pub fn new(config: Config, rng: R) -> Self {
        Self {
            config,
            rng,
            neighbors: BTreeSet::new(),
            seen: SeenCache::default(),
            hot: BTreeMap::new(),
            round_scheduled: false,
            evict_scheduled: false,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn max_payload(&self) -> usize {
        self.config.max_payload
    }

    pub fn is_hot(&self, id: &MessageId) -> bool {
        self.hot.contains_key(id)
    }

    /// Starts a rumor. `None` if the payload is too large or already known.
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
            InEvent::Message(from, Message::Rumor { payload, hops }) => {
                self.on_rumor(now, from, payload, hops, out)
            }
            InEvent::Message(from, Message::Known(id)) => self.on_known(from, id, out),
            InEvent::NeighborUp(peer) => {
                self.neighbors.insert(peer);
            }
            InEvent::NeighborDown(peer) => {
                self.neighbors.remove(&peer);
            }
            InEvent::Timer(Timer::Round) => {
                self.round_scheduled = false;
                self.send_round(out);
            }
            InEvent::Timer(Timer::Evict) => {
                self.evict_scheduled = false;
                self.seen.expire(now, self.config.id_retention);
                self.schedule_evict(out);
            }
        }
    }

    fn on_rumor(
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
        let neighbor = self.neighbors.contains(&from);
        if !neighbor {
            self.stats.from_non_neighbor += 1;
        }
        let id = MessageId::of(&payload.0);
        if self.seen.contains(&id) {
            self.stats.duplicates += 1;
            if self.config.feedback && neighbor {
                out.push(OutEvent::Send(from, Message::Known(id)));
            }
            return;
        }
        self.stats.delivered += 1;
        out.push(OutEvent::Emit(Event::Received(Delivery {
            id,
            payload: payload.clone(),
            from,
            hops,
        })));
        self.accept(now, id, payload, Some(from), hops, out);
    }

    fn accept(
        &mut self,
        now: Duration,
        id: MessageId,
        payload: Payload,
        from: Option<PeerId>,
        hops: u16,
        out: &mut Vec<OutEvent>,
    ) {
        self.seen.insert(now, id, (), self.config.max_ids);
        self.schedule_evict(out);
        self.push(&payload, hops, from, out);
        if self.config.max_rounds == 0 {
            return;
        }
        if self.hot.len() >= self.config.max_hot.max(1) {
            self.hot.pop_first();
        }
        let hot = Hot {
            payload,
            hops,
            rounds_left: self.config.max_rounds,
        };
        self.hot.insert(id, hot);
        self.schedule_round(out);
    }

    /// Pushes to `fanout` random neighbours other than `except`.
    fn push(
        &mut self,
        payload: &Payload,
        hops: u16,
        except: Option<PeerId>,
        out: &mut Vec<OutEvent>,
    ) {
        let targets = self
            .neighbors
            .iter()
            .filter(|p| Some(**p) != except)
            .copied()
            .choose_multiple(&mut self.rng, self.config.fanout.min(self.neighbors.len()));
        for peer in targets {
            self.stats.pushes += 1;
            let msg = Message::Rumor {
                payload: payload.clone(),
                hops: hops.saturating_add(1),
            };
            out.push(OutEvent::Send(peer, msg));
        }
    }

    fn on_known(&mut self, from: PeerId, id: MessageId, out: &mut Vec<OutEvent>) {
        if !self.seen.contains(&id) {
            // We never had it, so we never pushed it: the answer is made up.
            self.stats.unsolicited_known += 1;
            out.push(OutEvent::Misbehaving(from));
            return;
        }
        if self.hot.contains_key(&id) && self.rng.random_ratio(1, self.config.stop_one_in.max(1)) {
            self.hot.remove(&id);
            self.stats.lost_interest += 1;
        }
    }

    fn send_round(&mut self, out: &mut Vec<OutEvent>) {
        let ids: Vec<MessageId> = self.hot.keys().copied().collect();
        for id in ids {
            let Some(hot) = self.hot.get_mut(&id) else {
                continue;
            };
            hot.rounds_left -= 1;
            let (payload, hops, done) = (hot.payload.clone(), hot.hops, hot.rounds_left == 0);
            if done {
                self.hot.remove(&id);
            }
            self.push(&payload, hops, None, out);
        }
        self.schedule_round(out);
    }

    fn schedule_round(&mut self, out: &mut Vec<OutEvent>) {
        if !self.round_scheduled && !self.hot.is_empty() {
            self.round_scheduled = true;
            out.push(OutEvent::ScheduleTimer(
                self.config.round_interval,
                Timer::Round,
            ));
        }
    }

    fn schedule_evict(&mut self, out: &mut Vec<OutEvent>) {
        if !self.evict_scheduled && self.seen.len() > 0 {
            self.evict_scheduled = true;
            out.push(OutEvent::ScheduleTimer(
                self.config.id_retention / 4,
                Timer::Evict,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sim::{self, SimRng};

    const T0: Duration = Duration::ZERO;

    fn id(i: u8) -> PeerId {
        PeerId::from_bytes([i; 32])
    }

    fn node(config: Config, peers: &[u8]) -> State<SimRng> {
        let mut s = State::new(config, sim::rng(5, 0));
        for &p in peers {
            s.handle(T0, InEvent::NeighborUp(id(p)), &mut Vec::new());
        }
        s
    }

    fn run(s: &mut State<SimRng>, ev: InEvent) -> Vec<OutEvent> {
        let mut out = Vec::new();
        s.handle(T0, ev, &mut out);
        out
    }

    fn rumor(text: &str, hops: u16) -> Message {
        Message::Rumor {
            payload: Payload::from(text.as_bytes().to_vec()),
            hops,
        }
    }

    fn targets(out: &[OutEvent]) -> Vec<PeerId> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::Send(p, Message::Rumor { .. }) => Some(*p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn new_rumor_is_delivered_and_pushed_to_fanout_neighbours_but_not_back() {
        let mut s = node(Config::default(), &[1, 2, 3, 4, 5]);
        let out = run(&mut s, InEvent::Message(id(1), rumor("r", 1)));
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o, OutEvent::Emit(_)))
                .count(),
            1
        );
        let t = targets(&out);
        assert_eq!(t.len(), 2);
        assert!(!t.contains(&id(1)));
        assert!(s.is_hot(&MessageId::of(b"r")));
    }

    #[test]
    fn duplicate_is_answered_with_known() {
        let mut s = node(Config::default(), &[1, 2]);
        run(&mut s, InEvent::Message(id(1), rumor("r", 1)));
        let out = run(&mut s, InEvent::Message(id(2), rumor("r", 1)));
        assert_eq!(
            out,
            [OutEvent::Send(id(2), Message::Known(MessageId::of(b"r")))]
        );
        assert_eq!(s.stats().duplicates, 1);
    }

    #[test]
    fn loss_of_interest_stops_pushing_a_rumor() {
        let sure = Config {
            stop_one_in: 1,
            ..Config::default()
        };
        let mut s = node(sure, &[1, 2, 3]);
        run(&mut s, InEvent::Message(id(1), rumor("r", 1)));
        run(
            &mut s,
            InEvent::Message(id(2), Message::Known(MessageId::of(b"r"))),
        );
        assert!(!s.is_hot(&MessageId::of(b"r")));
        assert_eq!(s.stats().lost_interest, 1);
        assert!(targets(&run(&mut s, InEvent::Timer(Timer::Round))).is_empty());
        // with k = 1000 one answer almost never stops it
        let stubborn = Config {
            stop_one_in: 1000,
            ..Config::default()
        };
        let mut s = node(stubborn, &[1, 2, 3]);
        run(&mut s, InEvent::Message(id(1), rumor("r", 1)));
        run(
            &mut s,
            InEvent::Message(id(2), Message::Known(MessageId::of(b"r"))),
        );
        assert!(s.is_hot(&MessageId::of(b"r")));
    }

    #[test]
    fn loss_of_interest_rate_is_about_one_in_k() {
        let config = Config {
            stop_one_in: 4,
            max_hot: 10_000,
            ..Config::default()
        };
        let mut s = node(config, &[1, 2]);
        let n = 2000;
        for i in 0..n {
            let text = format!("r{i}");
            run(&mut s, InEvent::Message(id(1), rumor(&text, 1)));
            run(
                &mut s,
                InEvent::Message(id(2), Message::Known(MessageId::of(text.as_bytes()))),
            );
        }
        let stopped = s.stats().lost_interest as f64 / n as f64;
        assert!((0.2..0.3).contains(&stopped), "{stopped}");
    }

    #[test]
    fn rounds_end_after_max_rounds() {
        let config = Config {
            max_rounds: 3,
            ..Config::default()
        };
        let mut s = node(config, &[1, 2, 3]);
        run(&mut s, InEvent::Message(id(1), rumor("r", 1)));
        for round in 0..3 {
            let out = run(&mut s, InEvent::Timer(Timer::Round));
            assert_eq!(targets(&out).len(), 2, "round {round}");
        }
        assert!(!s.is_hot(&MessageId::of(b"r")));
        assert!(run(&mut s, InEvent::Timer(Timer::Round)).is_empty());
    }

    #[test]
    fn flood_pushes_to_every_other_neighbour_once_without_feedback() {
        let mut s = node(Config::flood(), &[1, 2, 3, 4]);
        let out = run(&mut s, InEvent::Message(id(1), rumor("r", 1)));
        let mut t = targets(&out);
        t.sort();
        assert_eq!(t, [id(2), id(3), id(4)]);
        assert!(
            !out.iter()
                .any(|o| matches!(o, OutEvent::ScheduleTimer(_, Timer::Round)))
        );
        let dup = run(&mut s, InEvent::Message(id(2), rumor("r", 1)));
        assert!(dup.is_empty());
    }

    #[test]
    fn made_up_known_and_oversized_rumors_are_reported() {
        let mut s = node(Config::default(), &[1]);
        let out = run(
            &mut s,
            InEvent::Message(id(1), Message::Known(MessageId::of(b"?"))),
        );
        assert_eq!(out, [OutEvent::Misbehaving(id(1))]);
        let big = Message::Rumor {
            payload: Payload::from(vec![0; MAX_PAYLOAD_LEN + 1]),
            hops: 1,
        };
        assert_eq!(
            run(&mut s, InEvent::Message(id(1), big)),
            [OutEvent::Misbehaving(id(1))]
        );
        assert_eq!((s.stats().unsolicited_known, s.stats().oversized), (1, 1));
    }
}
