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
//! - at most `max_records` records in all and `max_per_key` publishers per key.
//!   When full, a record whose key is nearer to us than the farthest key held
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
    #[error("the record store is full of records nearer to this node")]
    Full,
}

#[derive(Debug, Clone)]
pub struct RecordStore {
    local: Key,
    max_records: usize,
    max_per_key: usize,
    records: BTreeMap<Key, BTreeMap<PeerId, Stored>>,
    count: usize,
}

impl RecordStore {
    pub fn new(local: Key, max_records: usize, max_per_key: usize) -> Self {
        Self {
            local,
            max_records: max_records.max(1),
            max_per_key: max_per_key.max(1),
            records: BTreeMap::new(),
            count: 0,
        }
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
        let per_key = self.records.get(&key).map_or(0, BTreeMap::len);
        if per_key >= self.max_per_key {
            // make room only for a record outliving the first to expire
            let soonest = self.records.get(&key).and_then(soonest_expiring);
            match soonest {
                Some((p, exp)) if exp < record.expires_ms => self.remove(&key, &p),
                _ => return Err(Refused::Full),
            }
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
        // a third publisher displaces the one expiring first, if it outlives it
        assert_eq!(s.put(rec(3, k, 1, NOW + 5), t(0)), Err(Refused::Full));
        assert_eq!(s.put(rec(3, k, 1, NOW + 30), t(0)), Ok(Accepted::New));
        let publishers: Vec<u64> = s.get(&k).map(|x| x.record.expires_ms - NOW).collect();
        assert!(!publishers.contains(&10));
        assert_eq!(s.len(), 2);
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
