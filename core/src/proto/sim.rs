//! Building blocks of the discrete-event simulator.
//!
//! The simulator drives the *production* protocol state machines (Kademlia,
//! HyParView, Plumtree, rumor mongering) with virtual time: nothing sleeps, a run of
//! 10,000 nodes takes seconds, and one `u64` seed decides every latency, loss, crash
//! and protocol coin flip, so a failing run replays exactly from its seed.
//!
//! This module holds what every protocol harness shares: the event queue
//! ([`Scheduler`]), the link model ([`Network`]) and seeded randomness ([`rng`]).
//! Each protocol's harness (e.g. `sim::dht`, `sim::gossip`) lives beside it.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The one RNG type of simulations: seeded, portable, fast.
pub type SimRng = ChaCha8Rng;

/// An RNG derived from the run's seed and a stream number, so that independent
/// consumers (network, node i, workload) do not perturb each other's draws.
pub fn rng(seed: u64, stream: u64) -> SimRng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// A time-ordered queue of events. Events scheduled for the same instant pop in
/// the order they were scheduled, which keeps runs deterministic.
#[derive(Debug)]
pub struct Scheduler<E> {
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Entry<E>>>,
}

#[derive(Debug)]
struct Entry<E> {
    at: Duration,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Self {
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
        }
    }
}

impl<E> Scheduler<E> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Virtual time of the event being processed.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Schedules `event` to happen `delay` after now.
    pub fn schedule(&mut self, delay: Duration, event: E) {
        self.schedule_at(self.now + delay, event);
    }

    /// Schedules `event` at absolute virtual time `at` (clamped to now).
    pub fn schedule_at(&mut self, at: Duration, event: E) {
        let at = at.max(self.now);
        self.seq += 1;
        self.queue.push(Reverse(Entry {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Takes the next event and advances the clock to it.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        let Reverse(e) = self.queue.pop()?;
        self.now = e.at;
        Some((e.at, e.event))
    }

    /// Takes the next event only if it happens no later than `until`.
    pub fn pop_until(&mut self, until: Duration) -> Option<(Duration, E)> {
        match self.queue.peek() {
            Some(Reverse(e)) if e.at <= until => self.pop(),
            _ => {
                self.now = self.now.max(until);
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The simulated network: per-message latency drawn uniformly from a range, a
/// loss probability, the set of crashed nodes (which neither send nor receive)
/// and an optional partition (no message crosses between its two sides).
#[derive(Debug)]
pub struct Network {
    rng: SimRng,
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Probability in [0, 1] that a message is lost.
    pub loss: f64,
    crashed: BTreeSet<usize>,
    /// While set, the nodes in this set and all others cannot reach each other.
    cut: Option<BTreeSet<usize>>,
    /// Messages handed to the network, including lost ones.
    pub sent: u64,
    pub lost: u64,
}

impl Network {
    /// A LAN-like network: 0.2–2 ms latency, no loss.
    pub fn lan(seed: u64) -> Self {
        Self {
            rng: rng(seed, u64::MAX),
            min_latency: Duration::from_micros(200),
            max_latency: Duration::from_millis(2),
            loss: 0.0,
            crashed: BTreeSet::new(),
            cut: None,
            sent: 0,
            lost: 0,
        }
    }

    /// When a message sent now from `from` to `to` arrives, or `None` if it is lost
    /// (either end crashed, a partition separates them, or the loss coin came up).
    pub fn delay(&mut self, from: usize, to: usize) -> Option<Duration> {
        self.sent += 1;
        if self.is_crashed(from) || self.is_crashed(to) || self.separated(from, to) {
            self.lost += 1;
            return None;
        }
        if self.loss > 0.0 && self.rng.random_bool(self.loss.clamp(0.0, 1.0)) {
            self.lost += 1;
            return None;
        }
        let span = self.max_latency.saturating_sub(self.min_latency).as_nanos() as u64;
        let extra = if span == 0 {
            0
        } else {
            self.rng.random_range(0..=span)
        };
        Some(self.min_latency + Duration::from_nanos(extra))
    }

    pub fn crash(&mut self, node: usize) {
        self.crashed.insert(node);
    }

    pub fn recover(&mut self, node: usize) {
        self.crashed.remove(&node);
    }

    pub fn is_crashed(&self, node: usize) -> bool {
        self.crashed.contains(&node)
    }

    pub fn crashed(&self) -> &BTreeSet<usize> {
        &self.crashed
    }

    /// Cuts the network in two: `side` on one side, every other node on the
    /// other. Replaces any earlier cut.
    pub fn partition(&mut self, side: impl IntoIterator<Item = usize>) {
        self.cut = Some(side.into_iter().collect());
    }

    /// Ends the partition: messages cross again. Nodes are not told.
    pub fn heal(&mut self) {
        self.cut = None;
    }

    /// Whether a partition currently lies between `a` and `b`.
    pub fn separated(&self, a: usize, b: usize) -> bool {
        self.cut
            .as_ref()
            .is_some_and(|s| s.contains(&a) != s.contains(&b))
    }
}

/// Percentile (0..=100) of a sample, by nearest rank; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Prints the seed of a simulation run if the thread panics while the guard lives,
/// so a failing test says how to replay it.
#[derive(Debug)]
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation failed with seed {}: replay with PEERCONNECT_SIM_SEED={}",
                self.0, self.0
            );
        }
    }
}

/// The seed for a test run: `PEERCONNECT_SIM_SEED` if set, else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("PEERCONNECT_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_pops_in_time_then_insertion_order() {
        let mut s = Scheduler::new();
        s.schedule(Duration::from_millis(5), "c");
        s.schedule(Duration::from_millis(1), "a");
        s.schedule(Duration::from_millis(5), "d");
        s.schedule(Duration::from_millis(2), "b");
        let order: Vec<_> = std::iter::from_fn(|| s.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(s.now(), Duration::from_millis(5));
    }

    #[test]
    fn same_seed_gives_same_network_draws() {
        let draws = |seed| {
            let mut n = Network::lan(seed);
            n.loss = 0.3;
            (0..100).map(|i| n.delay(i, i + 1)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn crashed_nodes_neither_send_nor_receive() {
        let mut n = Network::lan(1);
        n.crash(3);
        assert!(n.delay(3, 1).is_none());
        assert!(n.delay(1, 3).is_none());
        assert!(n.delay(1, 2).is_some());
    }

    #[test]
    fn a_partition_stops_messages_across_it_until_healed() {
        let mut n = Network::lan(1);
        n.partition([0, 1]);
        assert!(n.delay(0, 1).is_some());
        assert!(n.delay(2, 3).is_some());
        assert!(n.delay(0, 2).is_none());
        assert!(n.delay(3, 1).is_none());
        assert!(n.separated(1, 2) && !n.separated(2, 3));
        n.heal();
        assert!(n.delay(0, 2).is_some());
        assert!(!n.separated(1, 2));
    }

    #[test]
    fn percentile_uses_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[], 50.0), None);
    }
}

pub mod dht;
pub mod gossip;
pub mod tree;
