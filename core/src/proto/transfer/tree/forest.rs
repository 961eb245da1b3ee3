//! The forest: which receiver takes which stripe from whom, and how much each
//! relay can carry.
//!
//! Pure structure, owned by the coordinator; it sends no message itself.
//!
//! # Building (SplitStream-like, interior-disjoint)
//!
//! 1. The stream rate `R` is the sender's uplink, lowered to the median
//!    downlink of the receivers (a receiver cannot take more than its
//!    downlink), then lowered further until the relays' slots suffice.
//! 2. A receiver's degree (slots, in its home stripe) is `⌊k·up/R⌋`, at most
//!    `max_degree`; 0 if its downlink is below ¾ R (it would hold back
//!    everyone below it) or relaying is off; `k` when nothing is measured.
//!    The sender has `max(1, ⌊up/R⌋)` slots per stripe.
//! 3. Relays get home stripes largest first, each to the stripe with the
//!    fewest slots so far, so every stripe gets about the same capacity.
//! 4. Each stripe's tree is filled breadth first from the sender: first the
//!    relays homed there (largest first: wide nodes near the top keep the tree
//!    shallow), then everyone else as leaves. Past the last free slot, the
//!    sender takes the rest (it becomes N copies, never a failure).
//!
//! # Invariants
//!
//! - Every node has at most one parent per stripe and no node is its own
//!   ancestor: a new parent is never taken from below the child
//!   ([`Forest::choose_parent`]).
//! - A node is interior only in its home stripe (or not at all); the sender is
//!   the root of every stripe.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{Config, Rates, Stripe};
use crate::identity::PeerId;

/// `(stripe, peer)` pairs: a node's parents or children, by stripe.
pub type Links = Vec<(Stripe, PeerId)>;

/// A receiver in the forest.
#[derive(Debug, Clone)]
struct Node {
    /// Children it may serve in its home stripe.
    cap: u32,
    home: Option<Stripe>,
    /// Its capacity was lowered for starving children: no overload.
    strained: bool,
    parents: Vec<Option<PeerId>>,
    children: Vec<BTreeSet<PeerId>>,
}

/// Which parents a repair may pick beyond free slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Free slots only (of relays or the sender).
    Free,
    /// Or a relay one child past its capacity.
    Overload,
    /// Or, last, the sender past its slots: the child always gets a parent.
    Any,
}

/// How far a relay may be loaded past its capacity when a repair has no
/// better place.
const MAX_OVERLOAD: i64 = 1;

/// The stripe trees of one session.
#[derive(Debug, Clone)]
pub struct Forest {
    source: PeerId,
    stripes: u8,
    relay: bool,
    max_degree: u32,
    /// The stream rate in bytes per second (0: nothing measured).
    rate: u64,
    source_up: Option<u64>,
    source_slots: u32,
    source_children: Vec<BTreeSet<PeerId>>,
    nodes: BTreeMap<PeerId, Node>,
    /// Receivers holding the whole file: they need no parent and serve as
    /// well as the sender.
    complete: BTreeSet<PeerId>,
}

impl Forest {
    /// Builds the forest of `stripes` stripes over `members` (who accepted),
    /// with the sender `source` at the root.
    pub fn build(
        config: &Config,
        stripes: u8,
        source: PeerId,
        source_rates: Option<Rates>,
        members: &[(PeerId, Option<Rates>)],
    ) -> Self {
        let stripes = stripes.max(1);
        let mut f = Self {
            source,
            stripes,
            relay: config.relay,
            max_degree: config.max_degree,
            rate: 0,
            source_up: source_rates.map(|r| r.up),
            source_slots: 1,
            source_children: vec![BTreeSet::new(); stripes as usize],
            nodes: BTreeMap::new(),
            complete: BTreeSet::new(),
        };
        f.rate = f.stream_rate(members);
        f.source_slots = f.source_slots_at(f.rate);
        for (id, rates) in members {
            f.nodes.insert(
                *id,
                Node {
                    cap: f.cap_of(*rates, f.rate),
                    home: None,
                    strained: false,
                    parents: vec![None; stripes as usize],
                    children: vec![BTreeSet::new(); stripes as usize],
                },
            );
        }
        // homes: largest first, each to the stripe with the fewest slots
        let mut relays: Vec<(u32, PeerId)> = f
            .nodes
            .iter()
            .filter(|(_, n)| n.cap > 0)
            .map(|(id, n)| (n.cap, *id))
            .collect();
        relays.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut slots = vec![0u64; stripes as usize];
        for (cap, id) in &relays {
            let s = (0..stripes)
                .min_by_key(|&s| (slots[s as usize], s))
                .expect("at least one stripe");
            slots[s as usize] += *cap as u64;
            f.nodes.get_mut(id).expect("listed").home = Some(s);
        }
        for s in 0..stripes {
            let mut order: Vec<PeerId> = relays
                .iter()
                .filter(|(_, id)| f.nodes[id].home == Some(s))
                .map(|(_, id)| *id)
                .collect();
            order.extend(f.nodes.keys().filter(|id| f.nodes[*id].home != Some(s)));
            let mut queue = VecDeque::from([(source, f.source_slots)]);
            for id in order {
                while queue.front().is_some_and(|(_, free)| *free == 0) {
                    queue.pop_front();
                }
                let parent = match queue.front_mut() {
                    Some((p, free)) => {
                        *free -= 1;
                        *p
                    }
                    None => source,
                };
                f.attach(id, s, parent);
                let n = &f.nodes[&id];
                if n.home == Some(s) && n.cap > 0 {
                    queue.push_back((id, n.cap));
                }
            }
        }
        f
    }

    fn stream_rate(&self, members: &[(PeerId, Option<Rates>)]) -> u64 {
        let mut downs: Vec<u64> = members
            .iter()
            .filter_map(|(_, r)| r.map(|r| r.down))
            .collect();
        downs.sort_unstable();
        let mut rate = self.source_up.unwrap_or(0);
        if let Some(&median) = downs.get(downs.len() / 2) {
            rate = if rate == 0 { median } else { rate.min(median) };
        }
        if rate == 0 {
            return 0;
        }
        let need = members.len() as u64 * self.stripes as u64;
        for _ in 0..24 {
            let supply: u64 = members
                .iter()
                .map(|(_, r)| self.cap_of(*r, rate) as u64)
                .sum::<u64>()
                + self.stripes as u64 * self.source_slots_at(rate) as u64;
            if supply >= need || rate < 1024 {
                break;
            }
            rate = rate * 7 / 8;
        }
        rate
    }

    fn source_slots_at(&self, rate: u64) -> u32 {
        match (self.source_up, rate) {
            (Some(up), r) if r > 0 => ((up / r) as u32).max(1),
            _ => 1,
        }
    }

    fn cap_of(&self, rates: Option<Rates>, rate: u64) -> u32 {
        if !self.relay {
            return 0;
        }
        let k = self.stripes as u64;
        match rates {
            Some(r) if rate > 0 => {
                if r.down.saturating_mul(4) < rate.saturating_mul(3) {
                    0
                } else {
                    (k.saturating_mul(r.up) / rate).min(self.max_degree as u64) as u32
                }
            }
            _ => (k as u32).min(self.max_degree),
        }
    }

    /// Adds a receiver who accepted after the forest was built; the caller
    /// attaches it per stripe ([`Forest::choose_parent`], [`Forest::attach`]).
    pub fn add(&mut self, id: PeerId, rates: Option<Rates>) {
        let cap = self.cap_of(rates, self.rate);
        let home = (cap > 0).then(|| {
            (0..self.stripes)
                .min_by_key(|&s| (self.free_slots(s), s))
                .expect("at least one stripe")
        });
        self.nodes.insert(
            id,
            Node {
                cap,
                home,
                strained: false,
                parents: vec![None; self.stripes as usize],
                children: vec![BTreeSet::new(); self.stripes as usize],
            },
        );
    }

    fn free_slots(&self, s: Stripe) -> i64 {
        self.nodes
            .values()
            .filter(|n| n.home == Some(s))
            .map(|n| n.cap as i64 - n.children[s as usize].len() as i64)
            .sum()
    }

    pub fn stripes(&self) -> u8 {
        self.stripes
    }

    /// The stream rate the forest was built for (bytes/s; 0 if unmeasured).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    pub fn contains(&self, id: PeerId) -> bool {
        self.nodes.contains_key(&id)
    }

    pub fn members(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.nodes.keys().copied()
    }

    pub fn cap(&self, id: PeerId) -> u32 {
        self.nodes.get(&id).map_or(0, |n| n.cap)
    }

    pub fn home(&self, id: PeerId) -> Option<Stripe> {
        self.nodes.get(&id).and_then(|n| n.home)
    }

    /// A relay did not keep `cap` children fed: lowers (never raises) its
    /// capacity to that, and never loads it past its capacity again.
    pub fn strain(&mut self, id: PeerId, cap: u32) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.cap = n.cap.min(cap);
            n.strained = true;
        }
    }

    pub fn parent(&self, id: PeerId, s: Stripe) -> Option<PeerId> {
        self.nodes
            .get(&id)
            .and_then(|n| n.parents.get(s as usize).copied().flatten())
    }

    /// Children of `id` (a receiver or the sender) in stripe `s`.
    pub fn children(&self, id: PeerId, s: Stripe) -> Vec<PeerId> {
        let set = if id == self.source {
            self.source_children.get(s as usize)
        } else {
            self.nodes.get(&id).and_then(|n| n.children.get(s as usize))
        };
        set.map(|c| c.iter().copied().collect()).unwrap_or_default()
    }

    /// Every (stripe, child) of `id`.
    pub fn all_children(&self, id: PeerId) -> Vec<(Stripe, PeerId)> {
        (0..self.stripes)
            .flat_map(|s| self.children(id, s).into_iter().map(move |c| (s, c)))
            .collect()
    }

    fn children_mut(&mut self, id: PeerId, s: Stripe) -> Option<&mut BTreeSet<PeerId>> {
        if id == self.source {
            self.source_children.get_mut(s as usize)
        } else {
            self.nodes
                .get_mut(&id)
                .and_then(|n| n.children.get_mut(s as usize))
        }
    }

    /// Makes `parent` the parent of `child` in stripe `s` (detaching it from
    /// its former parent).
    pub fn attach(&mut self, child: PeerId, s: Stripe, parent: PeerId) {
        self.detach(child, s);
        if let Some(n) = self.nodes.get_mut(&child) {
            n.parents[s as usize] = Some(parent);
        }
        if let Some(c) = self.children_mut(parent, s) {
            c.insert(child);
        }
    }

    /// Detaches `child` from its parent in stripe `s`; returns that parent.
    pub fn detach(&mut self, child: PeerId, s: Stripe) -> Option<PeerId> {
        let old = self.nodes.get_mut(&child)?.parents[s as usize].take()?;
        if let Some(c) = self.children_mut(old, s) {
            c.remove(&child);
        }
        Some(old)
    }

    /// Takes `id` out of the forest: returns its former parents and its
    /// orphaned children, by stripe.
    pub fn remove(&mut self, id: PeerId) -> (Links, Links) {
        let orphans = self.demote(id);
        let parents = (0..self.stripes)
            .filter_map(|s| self.detach(id, s).map(|p| (s, p)))
            .collect();
        self.nodes.remove(&id);
        self.complete.remove(&id);
        (parents, orphans)
    }

    /// `id` holds the whole file: it is detached from its parents (returned)
    /// and counts as rooted for its own children.
    pub fn set_complete(&mut self, id: PeerId) -> Vec<(Stripe, PeerId)> {
        if !self.nodes.contains_key(&id) {
            return Vec::new();
        }
        self.complete.insert(id);
        (0..self.stripes)
            .filter_map(|s| self.detach(id, s).map(|p| (s, p)))
            .collect()
    }

    pub fn is_complete(&self, id: PeerId) -> bool {
        self.complete.contains(&id)
    }

    /// Makes `id` a leaf for good (capacity 0, no home); returns its former
    /// children, detached, by stripe.
    pub fn demote(&mut self, id: PeerId) -> Vec<(Stripe, PeerId)> {
        let orphans = self.all_children(id);
        for &(s, c) in &orphans {
            self.detach(c, s);
        }
        if let Some(n) = self.nodes.get_mut(&id) {
            n.cap = 0;
            n.home = None;
        }
        orphans
    }

    /// Walks up stripe `s` from `id`: the chain of ancestors up to the
    /// sender (`Some(depth)`) or to a node without a parent (`None`); `Err`
    /// if `below` is on the way (so `id` is `below` or under it).
    fn climb(&self, id: PeerId, s: Stripe, below: PeerId) -> Result<Option<usize>, ()> {
        let mut at = id;
        for depth in 0..=self.nodes.len() {
            if at == below {
                return Err(());
            }
            if at == self.source || self.complete.contains(&at) {
                return Ok(Some(depth));
            }
            match self.parent(at, s) {
                Some(p) => at = p,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Depth of `id` in stripe `s` (the sender's children are at 1), or
    /// `None` if it is cut off from the sender.
    pub fn depth(&self, id: PeerId, s: Stripe) -> Option<usize> {
        let mut at = id;
        for depth in 0..=self.nodes.len() {
            if at == self.source || self.complete.contains(&at) {
                return Some(depth);
            }
            at = self.parent(at, s)?;
        }
        None
    }

    /// A new parent for `child` in stripe `s`: a relay homed in `s`, usable,
    /// reaching the sender, not `child` nor below it, not `avoid`. A free
    /// slot first (furthest ahead by `progress`, then shallowest), then the
    /// sender's free slots; then, as `fit` allows, a relay loaded at most
    /// [`MAX_OVERLOAD`] past its capacity, then the sender past its slots.
    pub fn choose_parent(
        &self,
        child: PeerId,
        s: Stripe,
        avoid: Option<PeerId>,
        fit: Fit,
        progress: impl Fn(PeerId) -> u32,
        usable: impl Fn(PeerId) -> bool,
    ) -> Option<PeerId> {
        // (has a free slot, progress, less overload, shallower) → best
        let mut best: Option<((bool, u32, i64, i64), PeerId)> = None;
        for (&id, n) in &self.nodes {
            if id == child || Some(id) == avoid || n.home != Some(s) || n.cap == 0 || !usable(id) {
                continue;
            }
            let Ok(Some(depth)) = self.climb(id, s, child) else {
                continue;
            };
            let free = n.cap as i64 - n.children[s as usize].len() as i64;
            if free <= -MAX_OVERLOAD || (n.strained && free <= 0) {
                continue;
            }
            let key = (free > 0, progress(id), free.min(0), -(depth as i64));
            if best.as_ref().is_none_or(|(k, _)| key > *k) {
                best = Some((key, id));
            }
        }
        if let Some(((true, ..), id)) = best {
            return Some(id);
        }
        let source_free =
            (self.source_children[s as usize].len() as i64) < self.source_slots as i64;
        if source_free {
            return Some(self.source);
        }
        match fit {
            Fit::Free => None,
            Fit::Overload => best.map(|(_, id)| id),
            Fit::Any => best.map(|(_, id)| id).or(Some(self.source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> PeerId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        PeerId::from_bytes(b)
    }

    const SOURCE: u32 = 0;

    fn uniform(n: u32, stripes: u8) -> Forest {
        let r = Some(Rates { up: 100, down: 100 });
        let members: Vec<_> = (1..=n).map(|i| (id(i), r)).collect();
        Forest::build(&Config::default(), stripes, id(SOURCE), r, &members)
    }

    /// Every member has exactly one parent per stripe, reaches the sender,
    /// and is interior only in its home stripe.
    fn check_shape(f: &Forest) {
        for m in f.members() {
            for s in 0..f.stripes() {
                assert!(f.parent(m, s).is_some(), "{m:?} has no parent in {s}");
                assert!(f.depth(m, s).is_some(), "{m:?} is cut off in {s}");
                if f.home(m) != Some(s) {
                    assert!(
                        f.children(m, s).is_empty(),
                        "{m:?} is interior outside home"
                    );
                }
            }
        }
    }

    #[test]
    fn equal_links_give_the_sender_one_child_per_stripe_and_relays_k() {
        let f = uniform(16, 4);
        check_shape(&f);
        for s in 0..4 {
            assert_eq!(f.children(id(SOURCE), s).len(), 1);
            let depth = f.members().filter_map(|m| f.depth(m, s)).max().unwrap();
            assert!(depth <= 3, "depth {depth}");
        }
        assert!(f.members().all(|m| f.cap(m) == 4));
    }

    #[test]
    fn a_thousand_receivers_make_shallow_trees() {
        let f = uniform(1000, 4);
        check_shape(&f);
        for s in 0..4 {
            assert_eq!(f.children(id(SOURCE), s).len(), 1);
            let depth = f.members().filter_map(|m| f.depth(m, s)).max().unwrap();
            assert!(depth <= 7, "depth {depth}");
        }
    }

    #[test]
    fn slow_downlinks_are_leaves_and_wide_uplinks_carry_more() {
        let members = vec![
            (id(1), Some(Rates { up: 100, down: 100 })),
            (id(2), Some(Rates { up: 200, down: 100 })),
            (id(3), Some(Rates { up: 100, down: 10 })),
            (id(4), Some(Rates { up: 100, down: 100 })),
        ];
        let r = Some(Rates { up: 100, down: 100 });
        let f = Forest::build(&Config::default(), 4, id(SOURCE), r, &members);
        check_shape(&f);
        assert_eq!(f.cap(id(3)), 0);
        assert_eq!(f.cap(id(2)), 8);
        assert_eq!(f.cap(id(1)), 4);
    }

    #[test]
    fn without_relaying_the_sender_serves_everyone() {
        let config = Config {
            relay: false,
            ..Config::default()
        };
        let members: Vec<_> = (1..=10).map(|i| (id(i), None)).collect();
        let f = Forest::build(&config, 4, id(SOURCE), None, &members);
        check_shape(&f);
        for s in 0..4 {
            assert_eq!(f.children(id(SOURCE), s).len(), 10);
        }
    }

    #[test]
    fn orphans_never_reattach_below_themselves() {
        let mut f = uniform(40, 2);
        let s = 0;
        // a relay right below the sender, with a subtree
        let top = f.children(id(SOURCE), s)[0];
        let (_, orphans) = f.remove(top);
        assert!(!orphans.is_empty());
        for (os, o) in orphans {
            let p = f
                .choose_parent(o, os, None, Fit::Any, |_| 0, |_| true)
                .unwrap();
            assert!(f.climb(p, os, o).is_ok(), "{p:?} is below {o:?}");
            f.attach(o, os, p);
        }
        check_shape(&f);
    }

    #[test]
    fn a_repair_prefers_free_slots_then_progress() {
        let mut f = uniform(16, 4);
        let s = 0;
        let free = |f: &Forest, m: PeerId| f.cap(m) as i64 - f.children(m, s).len() as i64;
        let relays: Vec<PeerId> = f.members().filter(|m| f.home(*m) == Some(s)).collect();
        let full: Vec<PeerId> = relays
            .iter()
            .copied()
            .filter(|m| free(&f, *m) == 0)
            .collect();
        let (lucky, ahead) = (full[0], full[1]);
        let leaf = f.children(lucky, s)[0];
        f.detach(leaf, s);
        let leaf = f
            .members()
            .find(|m| f.home(*m) != Some(s) && f.parent(*m, s) != Some(lucky))
            .unwrap();
        f.detach(leaf, s);
        let progress = |m: PeerId| match m {
            m if m == ahead => 99,
            m if m == lucky => 9,
            _ => 1,
        };
        // a free slot beats progress; among free slots, progress wins
        let p = f
            .choose_parent(leaf, s, None, Fit::Free, progress, |_| true)
            .unwrap();
        assert_eq!(p, lucky);
        assert!(free(&f, p) > 0);
    }
}
