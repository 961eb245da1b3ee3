//! The routing table: 256 k-buckets with the paper's least-recently-seen rule.
//!
//! Kademlia (IPTPS 2002, §2.2) keeps, for every distance range `[2^i, 2^(i+1))`,
//! up to k contacts ordered by when they were last seen. When a node hears from a
//! contact:
//!
//! - already in its bucket: the contact moves to the tail (most recently seen);
//! - bucket not full: the contact is appended;
//! - bucket full: the *least*-recently seen entry (the head) is pinged, and the
//!   newcomer waits in the bucket's replacement cache (§4.1). Only if the head
//!   fails to answer is it evicted and the most recent replacement takes its
//!   place. Old, live contacts are never pushed out by new ones: long-lived nodes
//!   are the likeliest to stay, and a flood of fresh identities cannot flush the
//!   table.
//!
//! Contacts that fail to answer requests are flagged with a failure count; once
//! stale (`stale_after` failures in a row) they are left out of lookups and
//! replaced as soon as the replacement cache has someone (§4.1: a stale contact is
//! only removed when there is something to put in its place).
//!
//! Invariants (checked by property tests): a bucket holds at most k entries, each
//! in the bucket of its distance from us; no PeerId appears twice in the table;
//! replacement caches are bounded and disjoint from the entries; our own key is
//! never in the table.
//!
//! Buckets are stored sparsely (most of the 256 are empty in any real network).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::identity::PeerId;
use crate::proto::kademlia::key::{Contact, Distance, KEY_BITS, Key};

/// One contact in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub contact: Contact,
    pub key: Key,
    pub last_seen: Duration,
    /// Requests in a row this contact failed to answer.
    pub failures: u32,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    /// Candidates for a place in the bucket, most recently seen last.
    replacements: Vec<Entry>,
    /// The head entry being pinged because a newcomer wants its place.
    pinging: Option<PeerId>,
}

/// What hearing from a contact did to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The contact is new and took a free (or stale) place.
    Inserted,
    /// The contact was known; it is now the most recently seen of its bucket.
    Refreshed,
    /// The bucket is full of live contacts: the newcomer waits in the
    /// replacement cache. `ping` is the least-recently seen entry the caller must
    /// ping (`None` when a ping for this bucket is already under way).
    Full { ping: Option<Contact> },
    /// A live entry already holds this PeerId at another address; a mere claim
    /// does not move it (the old address must fail first).
    AddressConflict,
    /// Our own key, which never enters the table.
    Ignored,
}

/// The k-bucket table of one node.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    local: Key,
    k: usize,
    replacement_cap: usize,
    stale_after: u32,
    buckets: BTreeMap<usize, Bucket>,
    /// When a lookup last targeted a key in each bucket (for refresh, §2.3).
    last_lookup: BTreeMap<usize, Duration>,
}

impl RoutingTable {
    /// An empty table around `local`, with buckets of `k` entries, replacement
    /// caches of `replacement_cap`, and contacts stale after `stale_after`
    /// failures in a row (at least 1).
    pub fn new(local: Key, k: usize, replacement_cap: usize, stale_after: u32) -> Self {
        Self {
            local,
            k: k.max(1),
            replacement_cap,
            stale_after: stale_after.max(1),
            buckets: BTreeMap::new(),
            last_lookup: BTreeMap::new(),
        }
    }

    pub fn local_key(&self) -> Key {
        self.local
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of entries (not counting replacement caches).
    pub fn len(&self) -> usize {
        self.buckets.values().map(|b| b.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.values().all(|b| b.entries.is_empty())
    }

    /// Every entry, nearest bucket first, least recently seen first within one.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.values().flat_map(|b| b.entries.iter())
    }

    pub fn get(&self, id: &PeerId) -> Option<&Entry> {
        let b = self.bucket_of(&Key::for_peer(id))?;
        self.buckets
            .get(&b)?
            .entries
            .iter()
            .find(|e| e.contact.id == *id)
    }

    fn bucket_of(&self, key: &Key) -> Option<usize> {
        self.local.distance(key).bucket()
    }

    /// We heard from `contact` (a request it sent, or an answer to ours): apply
    /// the least-recently-seen rule.
    pub fn on_seen(&mut self, contact: Contact, key: Key, now: Duration) -> Update {
        let Some(b) = self.bucket_of(&key) else {
            return Update::Ignored;
        };
        let (k, cap, stale_after) = (self.k, self.replacement_cap, self.stale_after);
        let bucket = self.buckets.entry(b).or_default();
        if let Some(pos) = bucket
            .entries
            .iter()
            .position(|e| e.contact.id == contact.id)
        {
            let mut e = bucket.entries.remove(pos);
            if e.contact.addr != contact.addr {
                if e.failures == 0 {
                    bucket.entries.insert(pos, e);
                    return Update::AddressConflict;
                }
                e.contact.addr = contact.addr;
            }
            e.last_seen = now;
            e.failures = 0;
            if bucket.pinging == Some(contact.id) {
                bucket.pinging = None;
            }
            bucket.entries.push(e);
            return Update::Refreshed;
        }
        let entry = Entry {
            contact,
            key,
            last_seen: now,
            failures: 0,
        };
        bucket.replacements.retain(|r| r.contact.id != contact.id);
        if bucket.entries.len() < k {
            bucket.entries.push(entry);
            return Update::Inserted;
        }
        // full: a stale entry gives its place at once
        if let Some(pos) = bucket
            .entries
            .iter()
            .position(|e| e.failures >= stale_after)
        {
            let gone = bucket.entries.remove(pos);
            if bucket.pinging == Some(gone.contact.id) {
                bucket.pinging = None;
            }
            bucket.entries.push(entry);
            return Update::Inserted;
        }
        bucket.replacements.push(entry);
        if bucket.replacements.len() > cap {
            bucket.replacements.remove(0);
        }
        if bucket.pinging.is_some() {
            return Update::Full { ping: None };
        }
        let head = bucket.entries[0].contact;
        bucket.pinging = Some(head.id);
        Update::Full { ping: Some(head) }
    }

    /// A request to `id` went unanswered. Returns the contact promoted from the
    /// replacement cache if this made `id` stale and someone could replace it.
    pub fn on_failure(&mut self, id: &PeerId) -> Option<Contact> {
        let b = self.bucket_of(&Key::for_peer(id))?;
        let stale_after = self.stale_after;
        let bucket = self.buckets.get_mut(&b)?;
        let pos = bucket.entries.iter().position(|e| e.contact.id == *id)?;
        let e = &mut bucket.entries[pos];
        e.failures = e.failures.saturating_add(1);
        if e.failures < stale_after || bucket.replacements.is_empty() {
            return None;
        }
        Self::replace(bucket, pos)
    }

    /// The eviction ping to the head of a full bucket went unanswered: the head
    /// goes and the most recently seen replacement takes its place (§2.2).
    pub fn on_ping_timeout(&mut self, id: &PeerId) -> Option<Contact> {
        let b = self.bucket_of(&Key::for_peer(id))?;
        let bucket = self.buckets.get_mut(&b)?;
        if bucket.pinging != Some(*id) {
            return None;
        }
        bucket.pinging = None;
        let pos = bucket.entries.iter().position(|e| e.contact.id == *id)?;
        if bucket.replacements.is_empty() {
            let e = &mut bucket.entries[pos];
            e.failures = e.failures.saturating_add(1);
            return None;
        }
        Self::replace(bucket, pos)
    }

    fn replace(bucket: &mut Bucket, pos: usize) -> Option<Contact> {
        let gone = bucket.entries.remove(pos);
        if bucket.pinging == Some(gone.contact.id) {
            bucket.pinging = None;
        }
        let newcomer = bucket.replacements.pop()?;
        let contact = newcomer.contact;
        // keep the bucket ordered by when each contact was last seen
        let at = bucket
            .entries
            .iter()
            .position(|e| e.last_seen > newcomer.last_seen)
            .unwrap_or(bucket.entries.len());
        bucket.entries.insert(at, newcomer);
        Some(contact)
    }

    /// Drops `id` from the table and the replacement caches.
    pub fn remove(&mut self, id: &PeerId) {
        let Some(b) = self.bucket_of(&Key::for_peer(id)) else {
            return;
        };
        if let Some(bucket) = self.buckets.get_mut(&b) {
            bucket.entries.retain(|e| e.contact.id != *id);
            bucket.replacements.retain(|e| e.contact.id != *id);
            if bucket.pinging == Some(*id) {
                bucket.pinging = None;
            }
            if bucket.entries.is_empty() && bucket.replacements.is_empty() {
                self.buckets.remove(&b);
            }
        }
    }

    /// Up to `count` live (not stale) contacts nearest `target`, nearest first.
    pub fn closest(&self, target: &Key, count: usize) -> Vec<Contact> {
        let mut all: Vec<(Distance, Contact)> = self
            .iter()
            .filter(|e| e.failures < self.stale_after)
            .map(|e| (e.key.distance(target), e.contact))
            .collect();
        if all.len() > count && count > 0 {
            all.select_nth_unstable_by(count - 1, |a, b| a.0.cmp(&b.0));
        }
        all.truncate(count);
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().map(|(_, c)| c).collect()
    }

    /// Records that a lookup for `target` ran now, which counts as refreshing
    /// its bucket.
    pub fn mark_lookup(&mut self, target: &Key, now: Duration) {
        if let Some(b) = self.bucket_of(target) {
            self.last_lookup.insert(b, now);
        }
    }

    /// Buckets to refresh: those from our nearest non-empty bucket outward (the
    /// paper's "further away than its closest neighbor", §2.3) that saw no lookup
    /// within `interval`. Nearer buckets are empty because no node is that near;
    /// refreshing them would find nothing.
    pub fn buckets_to_refresh(&self, now: Duration, interval: Duration) -> Vec<usize> {
        let Some(&nearest) = self
            .buckets
            .iter()
            .find(|(_, b)| !b.entries.is_empty())
            .map(|(i, _)| i)
        else {
            return Vec::new();
        };
        (nearest..KEY_BITS)
            .filter(|b| match self.last_lookup.get(b) {
                None => true,
                Some(at) => now.saturating_sub(*at) >= interval,
            })
            .collect()
    }

    /// True if bucket `b` holds no contact.
    pub fn bucket_is_empty(&self, b: usize) -> bool {
        self.buckets.get(&b).is_none_or(|x| x.entries.is_empty())
    }

    /// Checks every invariant listed in the module docs.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for (&i, b) in &self.buckets {
            if b.entries.len() > self.k {
                return Err(format!("bucket {i} holds {} > k", b.entries.len()));
            }
            if b.replacements.len() > self.replacement_cap {
                return Err(format!("replacement cache {i} overflows"));
            }
            for e in b.entries.iter().chain(&b.replacements) {
                if e.key != Key::for_peer(&e.contact.id) {
                    return Err("entry key is not the hash of its id".into());
                }
                if self.local.distance(&e.key).bucket() != Some(i) {
                    return Err(format!("{:?} sits in the wrong bucket {i}", e.contact.id));
                }
                if !seen.insert(e.contact.id) {
                    return Err(format!("{:?} appears twice", e.contact.id));
                }
            }
            if b.entries
                .windows(2)
                .any(|w| w[0].last_seen > w[1].last_seen)
            {
                return Err(format!("bucket {i} is not in least-recently-seen order"));
            }
            if let Some(p) = b.pinging
                && !b.entries.iter().any(|e| e.contact.id == p)
            {
                return Err(format!("bucket {i} pings someone not in it"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn peer(i: u32) -> Contact {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 4000));
        Contact::new(PeerId::from_bytes(b), addr)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Peers whose keys all fall in the far half (bucket 255) of `local`.
    fn far_peers(local: &Key, n: usize) -> Vec<Contact> {
        (0..10_000)
            .map(peer)
            .filter(|c| local.distance(&c.key()).bucket() == Some(255))
            .take(n)
            .collect()
    }

    fn table(k: usize) -> RoutingTable {
        RoutingTable::new(Key([0; 32]), k, 3, 2)
    }

    #[test]
    fn own_key_never_enters_the_table() {
        let me = peer(1);
        let mut t = RoutingTable::new(me.key(), 20, 20, 3);
        assert_eq!(t.on_seen(me, me.key(), secs(1)), Update::Ignored);
        assert!(t.is_empty());
    }

    #[test]
    fn seen_contact_moves_to_the_tail_of_its_bucket() {
        let mut t = table(4);
        let ps = far_peers(&t.local_key(), 3);
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(t.on_seen(*p, p.key(), secs(i as u64)), Update::Inserted);
        }
        assert_eq!(t.on_seen(ps[0], ps[0].key(), secs(9)), Update::Refreshed);
        let order: Vec<_> = t.iter().map(|e| e.contact.id).collect();
        assert_eq!(order, vec![ps[1].id, ps[2].id, ps[0].id]);
        t.check_invariants().unwrap();
    }

    #[test]
    fn full_bucket_pings_its_oldest_and_keeps_it_when_it_answers() {
        let mut t = table(2);
        let ps = far_peers(&t.local_key(), 4);
        t.on_seen(ps[0], ps[0].key(), secs(1));
        t.on_seen(ps[1], ps[1].key(), secs(2));
        assert_eq!(
            t.on_seen(ps[2], ps[2].key(), secs(3)),
            Update::Full { ping: Some(ps[0]) }
        );
        // a second newcomer does not start a second ping
        assert_eq!(
            t.on_seen(ps[3], ps[3].key(), secs(4)),
            Update::Full { ping: None }
        );
        // the old contact answers: it stays, now as most recently seen
        assert_eq!(t.on_seen(ps[0], ps[0].key(), secs(5)), Update::Refreshed);
        let ids: Vec<_> = t.iter().map(|e| e.contact.id).collect();
        assert_eq!(ids, vec![ps[1].id, ps[0].id]);
        assert!(t.get(&ps[2].id).is_none());
        t.check_invariants().unwrap();
    }

    #[test]
    fn full_bucket_evicts_its_oldest_when_the_ping_times_out() {
        let mut t = table(2);
        let ps = far_peers(&t.local_key(), 3);
        t.on_seen(ps[0], ps[0].key(), secs(1));
        t.on_seen(ps[1], ps[1].key(), secs(2));
        t.on_seen(ps[2], ps[2].key(), secs(3));
        assert_eq!(t.on_ping_timeout(&ps[0].id), Some(ps[2]));
        let ids: Vec<_> = t.iter().map(|e| e.contact.id).collect();
        assert_eq!(ids, vec![ps[1].id, ps[2].id]);
        // a late timeout for someone not being pinged changes nothing
        assert_eq!(t.on_ping_timeout(&ps[1].id), None);
        t.check_invariants().unwrap();
    }

    #[test]
    fn stale_contact_is_replaced_only_when_a_replacement_exists() {
        let mut t = table(2);
        let ps = far_peers(&t.local_key(), 3);
        t.on_seen(ps[0], ps[0].key(), secs(1));
        t.on_seen(ps[1], ps[1].key(), secs(2));
        assert_eq!(t.on_failure(&ps[1].id), None);
        assert_eq!(
            t.on_failure(&ps[1].id),
            None,
            "no replacement: only flagged"
        );
        assert!(t.get(&ps[1].id).is_some());
        assert!(
            !t.closest(&ps[1].key(), 2).contains(&ps[1]),
            "stale is not offered"
        );
        // a newcomer takes the stale contact's place at once
        assert_eq!(t.on_seen(ps[2], ps[2].key(), secs(3)), Update::Inserted);
        assert!(t.get(&ps[1].id).is_none());
        t.check_invariants().unwrap();
    }

    #[test]
    fn live_address_is_not_replaced_by_a_claim() {
        let mut t = table(4);
        let p = far_peers(&t.local_key(), 1)[0];
        t.on_seen(p, p.key(), secs(1));
        let moved = Contact::new(p.id, "10.9.9.9:1".parse().unwrap());
        assert_eq!(t.on_seen(moved, p.key(), secs(2)), Update::AddressConflict);
        assert_eq!(t.get(&p.id).unwrap().contact.addr, p.addr);
        // once the old address fails, the new one is taken
        t.on_failure(&p.id);
        assert_eq!(t.on_seen(moved, p.key(), secs(3)), Update::Refreshed);
        assert_eq!(t.get(&p.id).unwrap().contact.addr, moved.addr);
    }

    #[test]
    fn refresh_covers_buckets_from_the_nearest_neighbor_outward() {
        let mut t = table(20);
        let near = (0..100_000)
            .map(peer)
            .find(|c| t.local_key().distance(&c.key()).bucket() == Some(250))
            .unwrap();
        t.on_seen(near, near.key(), secs(0));
        let due = t.buckets_to_refresh(secs(0), secs(3600));
        assert_eq!(due, (250..256).collect::<Vec<_>>());
        let mut k = [0u8; 32];
        k[0] = 0x80;
        t.mark_lookup(&Key(k), secs(10));
        let due = t.buckets_to_refresh(secs(20), secs(3600));
        assert!(!due.contains(&255));
        assert!(t.buckets_to_refresh(secs(4000), secs(3600)).contains(&255));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Seen(u32),
        Fail(u32),
        PingTimeout(u32),
        Remove(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..300).prop_map(Op::Seen),
            2 => (0u32..300).prop_map(Op::Fail),
            1 => (0u32..300).prop_map(Op::PingTimeout),
            1 => (0u32..300).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_under_any_sequence_of_events(
            ops in proptest::collection::vec(op(), 1..400),
            k in 1usize..5,
            local in 0u32..300,
        ) {
            let me = peer(local);
            let mut t = RoutingTable::new(me.key(), k, 2, 2);
            for (step, op) in ops.into_iter().enumerate() {
                let now = secs(step as u64);
                match op {
                    Op::Seen(i) => { t.on_seen(peer(i), peer(i).key(), now); }
                    Op::Fail(i) => { t.on_failure(&peer(i).id); }
                    Op::PingTimeout(i) => { t.on_ping_timeout(&peer(i).id); }
                    Op::Remove(i) => t.remove(&peer(i).id),
                }
                if let Err(e) = t.check_invariants() {
                    return Err(TestCaseError::fail(e));
                }
            }
        }

        #[test]
        fn closest_matches_brute_force(
            seen in proptest::collection::vec(0u32..500, 0..200),
            target: [u8; 32],
            count in 0usize..30,
        ) {
            let mut t = RoutingTable::new(Key([7; 32]), 20, 4, 3);
            for (s, i) in seen.iter().enumerate() {
                t.on_seen(peer(*i), peer(*i).key(), secs(s as u64));
            }
            let target = Key(target);
            let mut brute: Vec<_> = t.iter().map(|e| (e.key.distance(&target), e.contact)).collect();
            brute.sort();
            let brute: Vec<_> = brute.into_iter().take(count).map(|(_, c)| c).collect();
            prop_assert_eq!(t.closest(&target, count), brute);
        }
    }
}
