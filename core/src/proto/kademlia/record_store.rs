//! The records a node holds for others (the paper's `<key, value>` storage,
//! IPTPS 2002, §2.3), bounded and ordered.
//!
//! A key holds at most one record per publisher: the one with the highest
//! sequence number. Records arrive here already validated (signature, shape,
//! expiry); the store only enforces ordering and bounds:
//!
//! - an older sequence than the one held is refused as stale, the same sequence
//!   with a different body too (a publisher never signs two bodies with one
//!   number, so the second is a forgery attempt or a bug);
//! - at most `max_records` records in all, `max_per_key` publishers per key and
//!   [`MAX_RECORDS_PER_PUBLISHER`] records of one publisher. A full key takes no
//!   new publisher: records held there stay until they expire, so a flood of
//!   long-lived records (keys cost nothing) cannot push a name's record out. A
//!   publisher at its cap gets its new keys refused. When the whole store is
//!   full, a record whose key is nearer to us than the farthest key held
//!   displaces one there: a node is responsible for the keys near it, and a
//!   flood of records for far-away keys cannot push those out.
//!
//! Each record remembers when it was last stored or replicated, so the hourly
//! replication of §2.5 can skip keys someone else just re-stored.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::identity::PeerId;
use crate::proto::kademlia::key::Key;
use crate::proto::kademlia::record::Record;

/// Resource: records one publisher (one key pair) holds in our record store.
/// Limit: 256 (a node publishes its peer record under its id and name, plus
/// a few values). At the limit: a record from that publisher under a key it
/// has no record under yet is refused (`Refused::PublisherFull`); its records
/// already held can still be republished and updated.
pub const MAX_RECORDS_PER_PUBLISHER: usize = 256;

/// A record held, with bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub record: Record,
    /// Encoded size, computed once.
    pub len: usize,
    /// When it was last received by STORE or replicated by us.
    pub refreshed: Duration,
}

/// How a store went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A publisher we had no record from under this key.
    New,
    /// A newer sequence replaced the one held.
    Replaced,
    /// The very record held already (a republish or replication).
    Unchanged,
}

/// Why a valid record was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a newer record from this publisher is held")]
    Stale,
    #[error("the record store (or this key) is full")]
    Full,
    #[error("the publisher holds the most records allowed")]
    PublisherFull,
}

#[derive(Debug, Clone)]
pub struct RecordStore {
    local: Key,
    max_records: usize,
    max_per_key: usize,
    max_per_publisher: usize,
    records: BTreeMap<Key, BTreeMap<PeerId, Stored>>,
    /// Records held per publisher.
    publishers: BTreeMap<PeerId, usize>,
    count: usize,
}

impl RecordStore {
    pub fn new(local: Key, max_records: usize, max_per_key: usize) -> Self {
        Self {
            local,
            max_records: max_records.max(1),
            max_per_key: max_per_key.max(1),
            max_per_publisher: MAX_RECORDS_PER_PUBLISHER,
            records: BTreeMap::new(),
            publishers: BTreeMap::new(),
            count: 0,
        }
    }

    /// Changes the cap on records of one publisher (default
    /// [`MAX_RECORDS_PER_PUBLISHER`]).
    pub fn with_max_per_publisher(mut self, max: usize) -> Self {
        self.max_per_publisher = max.max(1);
        self
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Stores a validated record.
    pub fn put(&mut self, record: Record, now: Duration) -> Result<Accepted, Refused> {
        let key = record.key;
        let len = record.encoded_len();
        if let Some(held) = self
            .records
            .get_mut(&key)
            .and_then(|m| m.get_mut(&record.publisher))
        {
            return match record.seq.cmp(&held.record.seq) {
                std::cmp::Ordering::Less => Err(Refused::Stale),
                std::cmp::Ordering::Equal if held.record == record => {
                    held.refreshed = now;
                    Ok(Accepted::Unchanged)
                }
                std::cmp::Ordering::Equal => Err(Refused::Stale),
                std::cmp::Ordering::Greater => {
                    *held = Stored {
                        record,
                        len,
                        refreshed: now,
                    };
                    Ok(Accepted::Replaced)
                }
            };
        }
        if self.publishers.get(&record.publisher).copied().unwrap_or(0) >= self.max_per_publisher {
            return Err(Refused::PublisherFull);
        }
        let per_key = self.records.get(&key).map_or(0, BTreeMap::len);
        if per_key >= self.max_per_key {
            // No displacement by expiry time: any key can sign the longest
            // TTL allowed, so that would hand the key to whoever floods it.
            return Err(Refused::Full);
        } else if self.count >= self.max_records {
            let farthest = self
                .records
                .keys()
                .max_by_key(|k| self.local.distance(k))
                .copied();
            match farthest {
                Some(f) if self.local.distance(&f) > self.local.distance(&key) => {
                    let victim = self.records.get(&f).and_then(soonest_expiring);
                    if let Some((p, _)) = victim {
                        self.remove(&f, &p);
                    }
                }
                _ => return Err(Refused::Full),
            }
        }
        *self.publishers.entry(record.publisher).or_default() += 1;
        self.records.entry(key).or_default().insert(
            record.publisher,
            Stored {
                record,
                len,
                refreshed: now,
            },
        );
        self.count += 1;
        Ok(Accepted::New)
    }

    fn remove(&mut self, key: &Key, publisher: &PeerId) {
        if let Some(m) = self.records.get_mut(key) {
            if m.remove(publisher).is_some() {
                self.count -= 1;
                if let Some(n) = self.publishers.get_mut(publisher) {
                    *n -= 1;
                    if *n == 0 {
                        self.publishers.remove(publisher);
                    }
                }
            }
            if m.is_empty() {
                self.records.remove(key);
            }
        }
    }

    /// Records under `key`, by publisher.
    pub fn get(&self, key: &Key) -> impl Iterator<Item = &Stored> {
        self.records.get(key).into_iter().flat_map(|m| m.values())
    }

    /// Records under `key` whose encoded sizes add up to at most `budget` bytes,
    /// latest to expire first (the freshest answer if not all fit).
    pub fn for_reply(&self, key: &Key, budget: usize) -> Vec<Record> {
        let mut all: Vec<&Stored> = self.get(key).collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.record.expires_ms));
        let mut used = 0;
        let mut out = Vec::new();
        for s in all {
            if used + s.len > budget {
                continue;
            }
            used += s.len;
            out.push(s.record.clone());
        }
        out
    }

    /// Drops records expired at wall time `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.count;
        self.records.retain(|_, m| {
            m.retain(|_, s| s.record.expires_ms > now_ms);
            !m.is_empty()
        });
        self.count = self.records.values().map(BTreeMap::len).sum();
        self.publishers.clear();
        for m in self.records.values() {
            for p in m.keys() {
                *self.publishers.entry(*p).or_default() += 1;
            }
        }
        before - self.count
    }

    /// Keys holding a record not refreshed within `interval`: the ones to
    /// replicate to the current k closest (§2.5).
    pub fn due_for_replication(&self, now: Duration, interval: Duration) -> Vec<Key> {
        self.records
            .iter()
            .filter(|(_, m)| {
                m.values()
                    .any(|s| now.saturating_sub(s.refreshed) >= interval)
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// Marks every record under `key` as refreshed now.
    pub fn mark_replicated(&mut self, key: &Key, now: Duration) {
        if let Some(m) = self.records.get_mut(key) {
            for s in m.values_mut() {
                s.refreshed = now;
            }
        }
    }
}

fn soonest_expiring(m: &BTreeMap<PeerId, Stored>) -> Option<(PeerId, u64)> {
    m.iter()
        .min_by_key(|(_, s)| s.record.expires_ms)
        .map(|(p, s)| (*p, s.record.expires_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::proto::kademlia::record::Value;

    const NOW: u64 = 1_700_000_000_000;

    fn rec(signer: u8, key: Key, seq: u64, expires: u64) -> Record {
        Record::sign(
            &Identity::from_secret([signer; 32]),
            key,
            seq,
            expires,
            Value::Bytes(vec![signer; 10]),
        )
    }

    fn t(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn newer_sequence_replaces_and_older_is_stale() {
        let mut s = RecordStore::new(Key([0; 32]), 100, 10);
        let k = Key([1; 32]);
        assert_eq!(s.put(rec(1, k, 5, NOW + 10), t(0)), Ok(Accepted::New));
        assert_eq!(s.put(rec(1, k, 5, NOW + 10), t(1)), Ok(Accepted::Unchanged));
        assert_eq!(s.put(rec(1, k, 4, NOW + 99), t(2)), Err(Refused::Stale));
        assert_eq!(s.put(rec(1, k, 5, NOW + 11), t(2)), Err(Refused::Stale));
        assert_eq!(s.put(rec(1, k, 6, NOW + 10), t(3)), Ok(Accepted::Replaced));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(&k).next().unwrap().record.seq, 6);
    }

    #[test]
    fn a_key_holds_one_record_per_publisher() {
        let mut s = RecordStore::new(Key([0; 32]), 100, 2);
        let k = Key([1; 32]);
        s.put(rec(1, k, 1, NOW + 10), t(0)).unwrap();
        s.put(rec(2, k, 1, NOW + 20), t(0)).unwrap();
        assert_eq!(s.get(&k).count(), 2);
        // a third publisher finds the key full, however long its record lives
        assert_eq!(s.put(rec(3, k, 1, NOW + 5), t(0)), Err(Refused::Full));
        assert_eq!(s.put(rec(3, k, 1, NOW + 30), t(0)), Err(Refused::Full));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn long_lived_records_of_many_publishers_cannot_crowd_a_held_name_out() {
        let mut s = RecordStore::new(Key([0; 32]), 1000, 8);
        let name = Key([1; 32]);
        // the honest record, short-lived and republished
        s.put(rec(1, name, 1, NOW + 60_000), t(0)).unwrap();
        // 50 fresh keys flood the name with records living as long as allowed
        let refused = (2..52u8)
            .filter(|i| s.put(rec(*i, name, 1, NOW + 3_600_000), t(1)).is_err())
            .count();
        assert_eq!(s.get(&name).count(), 8, "the key's bound held");
        assert_eq!(refused, 50 - 7);
        assert!(
            s.get(&name)
                .any(|x| x.record.publisher == rec(1, name, 1, 0).publisher),
            "the honest record is still held"
        );
        // and its republish is taken
        assert_eq!(
            s.put(rec(1, name, 2, NOW + 60_000), t(2)),
            Ok(Accepted::Replaced)
        );
    }

    #[test]
    fn one_publisher_cannot_fill_the_store() {
        let mut s = RecordStore::new(Key([0; 32]), 1000, 8).with_max_per_publisher(10);
        let stored = (0..40u8)
            .filter(|i| s.put(rec(1, Key([*i; 32]), 1, NOW + 10), t(0)).is_ok())
            .count();
        assert_eq!(stored, 10);
        assert_eq!(
            s.put(rec(1, Key([99; 32]), 1, NOW + 10), t(0)),
            Err(Refused::PublisherFull)
        );
        // another publisher is still served, and updates of held keys still pass
        assert_eq!(
            s.put(rec(2, Key([99; 32]), 1, NOW + 10), t(0)),
            Ok(Accepted::New)
        );
        assert_eq!(
            s.put(rec(1, Key([0; 32]), 2, NOW + 10), t(0)),
            Ok(Accepted::Replaced)
        );
        // expiry gives the publisher its room back
        s.expire(NOW + 11);
        assert_eq!(
            s.put(rec(1, Key([50; 32]), 1, NOW + 99), t(1)),
            Ok(Accepted::New)
        );
    }

    #[test]
    fn full_store_makes_room_only_for_nearer_keys() {
        let mut s = RecordStore::new(Key([0; 32]), 2, 10);
        let far = Key([0xfe; 32]);
        let mid = Key([0x0f; 32]);
        let near = Key([0x01; 32]);
        s.put(rec(1, far, 1, NOW + 10), t(0)).unwrap();
        s.put(rec(1, mid, 1, NOW + 10), t(0)).unwrap();
        assert_eq!(
            s.put(rec(1, Key([0xff; 32]), 1, NOW + 10), t(0)),
            Err(Refused::Full)
        );
        assert_eq!(s.put(rec(1, near, 1, NOW + 10), t(0)), Ok(Accepted::New));
        assert_eq!(s.get(&far).count(), 0);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn expired_records_are_dropped() {
        let mut s = RecordStore::new(Key([0; 32]), 100, 10);
        s.put(rec(1, Key([1; 32]), 1, NOW + 10), t(0)).unwrap();
        s.put(rec(2, Key([1; 32]), 1, NOW + 20), t(0)).unwrap();
        assert_eq!(s.expire(NOW + 10), 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s.expire(NOW + 20), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn replies_stay_within_their_byte_budget() {
        let mut s = RecordStore::new(Key([0; 32]), 100, 100);
        let k = Key([1; 32]);
        for i in 1..=20 {
            s.put(rec(i, k, 1, NOW + u64::from(i)), t(0)).unwrap();
        }
        let one = s.get(&k).next().unwrap().len;
        let reply = s.for_reply(&k, one * 5 + 1);
        assert_eq!(reply.len(), 5);
        assert_eq!(reply[0].expires_ms, NOW + 20, "freshest first");
    }

    #[test]
    fn recently_stored_keys_are_not_due_for_replication() {
        let mut s = RecordStore::new(Key([0; 32]), 100, 10);
        s.put(rec(1, Key([1; 32]), 1, NOW + 10), t(0)).unwrap();
        s.put(rec(1, Key([2; 32]), 1, NOW + 10), t(50)).unwrap();
        assert_eq!(s.due_for_replication(t(60), t(30)), vec![Key([1; 32])]);
        s.mark_replicated(&Key([1; 32]), t(60));
        assert!(s.due_for_replication(t(61), t(30)).is_empty());
    }
}
