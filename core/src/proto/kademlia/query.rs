//! The iterative node lookup (IPTPS 2002, §2.3) as a state machine with no IO.
//!
//! A lookup for a target key starts from the k contacts of our table nearest
//! the target. It asks up to α of the nearest not-yet-asked candidates at a time
//! for their k contacts nearest the target, merges the answers into its candidate
//! list (ordered by XOR distance), and goes on until the k nearest candidates that
//! have not failed have all answered: then no one we know of can know anyone
//! nearer, which is the paper's termination rule. A candidate that times out
//! (the caller decides when, and calls [`Query::on_failure`]) is skipped, and the
//! next one moves into the window of k.
//!
//! The query does not send anything: [`Query::next_requests`] says whom to ask
//! now, and the caller feeds back [`Query::on_success`] / [`Query::on_failure`].
//! Answers from peers the query is not waiting on are ignored, which is what lets
//! the caller deliver late replies without checking.
//!
//! A candidate's *depth* is how many answers it took to learn it (0 for our own
//! table). A lookup's hop count is the length of the request chain that reached
//! its result: one more than the depth of the nearest node that answered (for a
//! node's own key, the node itself). `hops_k` is the same for the farthest of the
//! k nearest, i.e. the chain the whole result needed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::proto::kademlia::key::{Contact, Distance, Key};

/// Where a candidate stands in the lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    NotContacted,
    Waiting,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    contact: Contact,
    progress: Progress,
    depth: u32,
}

/// What a lookup cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LookupStats {
    /// Requests in the chain that reached the nearest node (FIND_VALUE: the
    /// first node holding the value; 0 if we held it).
    pub hops: u32,
    /// Requests in the longest chain the k nearest needed.
    pub hops_k: u32,
    pub requests: u32,
    pub responses: u32,
    pub failures: u32,
}

/// One iterative lookup.
#[derive(Debug, Clone)]
pub struct Query {
    target: Key,
    k: usize,
    alpha: usize,
    max_candidates: usize,
    candidates: BTreeMap<Distance, Candidate>,
    in_flight: usize,
    stopped: bool,
    stats: LookupStats,
}

impl Query {
    /// A lookup for `target` seeded with `seeds` (normally our k nearest).
    pub fn new(
        target: Key,
        k: usize,
        alpha: usize,
        seeds: impl IntoIterator<Item = Contact>,
    ) -> Self {
        let k = k.max(1);
        let mut q = Self {
            target,
            k,
            alpha: alpha.max(1),
            max_candidates: 4 * k,
            candidates: BTreeMap::new(),
            in_flight: 0,
            stopped: false,
            stats: LookupStats::default(),
        };
        for c in seeds {
            q.insert(c, 0);
        }
        q
    }

    pub fn target(&self) -> Key {
        self.target
    }

    fn insert(&mut self, contact: Contact, depth: u32) {
        let d = contact.key().distance(&self.target);
        match self.candidates.get_mut(&d) {
            Some(c) => {
                if c.progress == Progress::NotContacted && depth < c.depth {
                    c.depth = depth;
                }
            }
            None => {
                self.candidates.insert(
                    d,
                    Candidate {
                        contact,
                        progress: Progress::NotContacted,
                        depth,
                    },
                );
            }
        }
    }

    /// Forgets the farthest candidates nobody asked yet beyond the cap, so a
    /// reply flood cannot grow a lookup without bound.
    fn trim(&mut self) {
        while self.candidates.len() > self.max_candidates {
            let far = self
                .candidates
                .iter()
                .rev()
                .find(|(_, c)| c.progress == Progress::NotContacted)
                .map(|(d, _)| *d);
            match far {
                Some(d) => {
                    self.candidates.remove(&d);
                }
                None => break,
            }
        }
    }

    /// Whom to ask now: nearest first, within the window of the k nearest live
    /// candidates, keeping at most α requests in flight. Marks them as waited on.
    pub fn next_requests(&mut self) -> Vec<Contact> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        let mut live = 0;
        for c in self.candidates.values_mut() {
            if live >= self.k || self.in_flight >= self.alpha {
                break;
            }
            match c.progress {
                Progress::Failed => continue,
                Progress::Succeeded | Progress::Waiting => {}
                Progress::NotContacted => {
                    c.progress = Progress::Waiting;
                    self.in_flight += 1;
                    self.stats.requests += 1;
                    out.push(c.contact);
                }
            }
            live += 1;
        }
        out
    }

    fn waiting_on(&mut self, peer: &Key) -> Option<&mut Candidate> {
        let d = peer.distance(&self.target);
        self.candidates
            .get_mut(&d)
            .filter(|c| c.progress == Progress::Waiting)
    }

    /// `peer` answered with `closer` contacts. Returns false (and changes
    /// nothing) if the query was not waiting on `peer`.
    pub fn on_success(&mut self, peer: &Key, closer: impl IntoIterator<Item = Contact>) -> bool {
        let Some(c) = self.waiting_on(peer) else {
            return false;
        };
        c.progress = Progress::Succeeded;
        let depth = c.depth + 1;
        self.in_flight -= 1;
        self.stats.responses += 1;
        for contact in closer {
            self.insert(contact, depth);
        }
        self.trim();
        true
    }

    /// `peer` did not answer in time (or answered garbage).
    pub fn on_failure(&mut self, peer: &Key) -> bool {
        let Some(c) = self.waiting_on(peer) else {
            return false;
        };
        c.progress = Progress::Failed;
        self.in_flight -= 1;
        self.stats.failures += 1;
        true
    }

    /// A request was sent again after a timeout (it costs a message).
    pub fn note_retry(&mut self) {
        self.stats.requests += 1;
    }

    /// Ends the lookup early (a FIND_VALUE that has its answer).
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether the lookup is over: stopped, or the k nearest live candidates
    /// have all answered, or no one is left to ask.
    pub fn is_finished(&self) -> bool {
        if self.stopped {
            return true;
        }
        let mut live = 0;
        for c in self.candidates.values() {
            match c.progress {
                Progress::Failed => continue,
                Progress::Succeeded => live += 1,
                Progress::Waiting | Progress::NotContacted => return false,
            }
            if live >= self.k {
                return true;
            }
        }
        true
    }

    /// Up to k candidates that answered, nearest first: the lookup's result.
    pub fn closest(&self) -> Vec<Contact> {
        self.candidates
            .values()
            .filter(|c| c.progress == Progress::Succeeded)
            .take(self.k)
            .map(|c| c.contact)
            .collect()
    }

    /// How many answers it took to learn `peer` (0: it was in our table).
    pub fn depth(&self, peer: &Key) -> Option<u32> {
        self.candidates
            .get(&peer.distance(&self.target))
            .map(|c| c.depth)
    }

    /// Costs so far, with hops counted over the result (see the module docs).
    pub fn stats(&self) -> LookupStats {
        let mut answered = self
            .candidates
            .values()
            .filter(|c| c.progress == Progress::Succeeded)
            .take(self.k)
            .map(|c| c.depth + 1);
        let hops = answered.next().unwrap_or(0);
        LookupStats {
            hops,
            hops_k: answered.max().unwrap_or(hops).max(hops),
            ..self.stats
        }
    }

    /// Requests sent and not yet answered or failed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PeerId;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    fn peer(i: u32) -> Contact {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        Contact::new(
            PeerId::from_bytes(b),
            SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 4000)),
        )
    }

    /// The `k` of `all` nearest `target`, nearest first.
    fn nearest(all: &[Contact], target: &Key, k: usize) -> Vec<Contact> {
        let mut v = all.to_vec();
        v.sort_by_key(|c| c.key().distance(target));
        v.truncate(k);
        v
    }

    #[test]
    fn asks_at_most_alpha_at_a_time_nearest_first() {
        let target = Key([0; 32]);
        let seeds: Vec<_> = (0..10).map(peer).collect();
        let mut q = Query::new(target, 4, 3, seeds.clone());
        let first = q.next_requests();
        assert_eq!(first, nearest(&seeds, &target, 3));
        assert!(
            q.next_requests().is_empty(),
            "alpha requests already in flight"
        );
        assert!(!q.is_finished());
    }

    #[test]
    fn finishes_when_the_k_nearest_have_answered() {
        let target = Key([0; 32]);
        let all: Vec<_> = (0..50).map(peer).collect();
        let k = 5;
        let mut q = Query::new(target, k, 3, all[..3].to_vec());
        for _ in 0..100 {
            let asked = q.next_requests();
            if asked.is_empty() {
                break;
            }
            for c in asked {
                // everyone knows the whole network
                q.on_success(&c.key(), nearest(&all, &target, k));
            }
        }
        assert!(q.is_finished());
        assert_eq!(q.closest(), nearest(&all, &target, k));
        let s = q.stats();
        assert_eq!(s.hops_k, 2, "seeds, then the nearest they named");
        assert!(s.hops <= s.hops_k);
        assert_eq!(s.requests, s.responses);
    }

    #[test]
    fn timed_out_candidates_are_skipped_and_the_next_fills_in() {
        let target = Key([0; 32]);
        let all: Vec<_> = (0..30).map(peer).collect();
        let sorted = nearest(&all, &target, 30);
        let dead = sorted[0];
        let mut q = Query::new(target, 3, 3, all.clone());
        for _ in 0..100 {
            let asked = q.next_requests();
            if asked.is_empty() {
                break;
            }
            for c in asked {
                if c == dead {
                    assert!(q.on_failure(&c.key()));
                } else {
                    q.on_success(&c.key(), []);
                }
            }
        }
        assert!(q.is_finished());
        assert_eq!(q.closest(), sorted[1..4].to_vec());
        assert_eq!(q.stats().failures, 1);
    }

    #[test]
    fn answers_not_waited_on_are_ignored() {
        let target = Key([0; 32]);
        let mut q = Query::new(target, 3, 1, [peer(1), peer(2)]);
        let stranger = peer(99);
        assert!(!q.on_success(&stranger.key(), [peer(3)]));
        assert!(q.depth(&peer(3).key()).is_none());
        let asked = q.next_requests()[0];
        let other = if asked == peer(1) { peer(2) } else { peer(1) };
        assert!(!q.on_success(&other.key(), []), "not asked yet");
        assert!(q.on_success(&asked.key(), []));
        assert!(!q.on_success(&asked.key(), []), "answered twice");
    }

    #[test]
    fn stopped_query_asks_no_one() {
        let mut q = Query::new(Key([0; 32]), 3, 3, [peer(1)]);
        q.stop();
        assert!(q.is_finished());
        assert!(q.next_requests().is_empty());
    }

    #[test]
    fn lookup_with_no_seeds_finishes_empty() {
        let q = Query::new(Key([0; 32]), 3, 3, []);
        assert!(q.is_finished());
        assert!(q.closest().is_empty());
    }

    proptest! {
        /// In a toy network where every node knows its nearest neighbours and a
        /// random sample of others, with some nodes dead, the lookup ends with the
        /// true k nearest live nodes, asks each at most once, and never has more
        /// than alpha requests out.
        #[test]
        fn lookup_finds_the_true_k_nearest_live_nodes(
            n in 20u32..120,
            k in 1usize..8,
            alpha in 1usize..4,
            dead in proptest::collection::btree_set(0u32..120, 0..30),
            target: [u8; 32],
            seed_count in 1usize..5,
        ) {
            let target = Key(target);
            let all: Vec<_> = (0..n).map(peer).collect();
            let live: Vec<_> = all.iter().copied().filter(|c| !dead.contains(&u32::from_be_bytes(c.id.as_bytes()[..4].try_into().unwrap()))).collect();
            prop_assume!(!live.is_empty());
            let seeds: Vec<_> = live.iter().copied().take(seed_count).collect();
            let mut q = Query::new(target, k, alpha, seeds);
            let mut asked = BTreeSet::new();
            for _ in 0..10_000 {
                let next = q.next_requests();
                prop_assert!(q.in_flight() <= alpha);
                if next.is_empty() { break; }
                for c in next {
                    prop_assert!(asked.insert(c.id), "asked twice");
                    if live.contains(&c) {
                        // live nodes know their live neighbours, and some dead ones
                        let mut answer = nearest(&all, &target, k);
                        answer.extend(nearest(&live, &target, k));
                        q.on_success(&c.key(), answer);
                    } else {
                        q.on_failure(&c.key());
                    }
                }
            }
            prop_assert!(q.is_finished());
            prop_assert_eq!(q.closest(), nearest(&live, &target, k));
        }
    }
}
