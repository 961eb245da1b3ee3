//! The Kademlia key space: 256-bit keys, the XOR metric, and contacts.
//!
//! Kademlia (Maymounkov & Mazières, IPTPS 2002, §2.1) places nodes and values in
//! one 160-bit space and measures closeness by XOR; we use 256 bits, the BLAKE3
//! hash of what is placed:
//!
//! - a node: `BLAKE3(PeerId bytes)` ([`Key::for_peer`]), so a node's position is
//!   fixed by its key pair and cannot be chosen freely without grinding keys;
//! - a peer's record of itself lives at the same key as the peer;
//! - a device name: `BLAKE3("name:" + lowercased, trimmed name)` ([`Key::for_name`]);
//! - a user value: `BLAKE3("value:" + user key bytes)` ([`Key::for_value`]).
//!
//! [`Distance`] orders like the unsigned 256-bit integer it is (big-endian bytes),
//! and the bucket of a distance is the index of its highest set bit, so bucket 255
//! holds the half of the space farthest from us and bucket 0 our one nearest key.

use std::fmt;
use std::net::SocketAddr;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::identity::PeerId;

/// Bits in a key, and so the number of k-buckets.
pub const KEY_BITS: usize = 256;

/// A point in the key space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The position of the node `id` (and of its [`PeerRecord`](super::PeerRecord)).
    pub fn for_peer(id: &PeerId) -> Self {
        Self(*blake3::hash(id.as_bytes()).as_bytes())
    }

    /// Where records of devices called `name` live. Case and surrounding spaces do
    /// not matter: "Alice's Phone " and "alice's phone" are one name.
    pub fn for_name(name: &str) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"name:");
        h.update(normalize_name(name).as_bytes());
        Self(*h.finalize().as_bytes())
    }

    /// Where values put under the user key `key` live.
    pub fn for_value(key: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"value:");
        h.update(key);
        Self(*h.finalize().as_bytes())
    }

    /// XOR distance, symmetric, zero only to itself.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// A uniformly random key whose distance from `self` falls in `bucket`: the
    /// bits above `bucket` equal ours, bit `bucket` differs, the rest are random.
    /// Used to refresh a bucket (§2.3).
    pub fn random_in_bucket<R: Rng + ?Sized>(&self, bucket: usize, rng: &mut R) -> Key {
        let bucket = bucket.min(KEY_BITS - 1);
        let mut d = [0u8; 32];
        rng.fill(&mut d[..]);
        // bit `bucket` counted from the least significant bit of byte 31
        let byte = 31 - bucket / 8;
        let bit = bucket % 8;
        for b in d.iter_mut().take(byte) {
            *b = 0;
        }
        let below = ((1u16 << bit) - 1) as u8;
        d[byte] = (d[byte] & below) | (1u8 << bit);
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = self.0[i] ^ d[i];
        }
        Key(k)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Key({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// The XOR of two keys, ordered as a big-endian unsigned integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 32]);

impl Distance {
    pub const ZERO: Distance = Distance([0; 32]);

    /// Index of the highest set bit (0..=255), i.e. the k-bucket this distance
    /// falls in; `None` for distance zero (a key is not in its own table).
    pub fn bucket(&self) -> Option<usize> {
        let zeros = self.leading_zeros();
        (zeros < KEY_BITS).then(|| KEY_BITS - 1 - zeros)
    }

    /// Number of leading zero bits: how long a prefix the two keys share.
    pub fn leading_zeros(&self) -> usize {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros() as usize;
            }
        }
        n
    }
}

/// Normalizes a device name for name search: trimmed and lowercased.
pub fn normalize_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A node as others reach it: who (PeerId) and where (UDP address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Contact {
    pub id: PeerId,
    pub addr: SocketAddr,
}

impl Contact {
    pub fn new(id: PeerId, addr: SocketAddr) -> Self {
        Self { id, addr }
    }

    pub fn key(&self) -> Key {
        Key::for_peer(&self.id)
    }

    /// Whether a datagram could be sent to this address at all (port 0, the
    /// unspecified address and multicast are refused: a peer listing them is
    /// either broken or trying to aim our traffic somewhere).
    pub fn is_dialable(&self) -> bool {
        let ip = self.addr.ip();
        self.addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sim;
    use proptest::prelude::*;

    #[test]
    fn distance_is_symmetric_and_zero_only_to_itself() {
        let a = Key([1; 32]);
        let b = Key([2; 32]);
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(a.distance(&a), Distance::ZERO);
        assert_eq!(Distance::ZERO.bucket(), None);
    }

    #[test]
    fn bucket_is_the_highest_differing_bit() {
        let zero = Key([0; 32]);
        let mut far = [0; 32];
        far[0] = 0x80;
        assert_eq!(zero.distance(&Key(far)).bucket(), Some(255));
        let mut near = [0; 32];
        near[31] = 1;
        assert_eq!(zero.distance(&Key(near)).bucket(), Some(0));
        near[31] = 0b0110;
        assert_eq!(zero.distance(&Key(near)).bucket(), Some(2));
    }

    #[test]
    fn names_are_case_and_space_insensitive() {
        assert_eq!(
            Key::for_name("  Alice's Phone "),
            Key::for_name("alice's phone")
        );
        assert_ne!(Key::for_name("alice"), Key::for_name("bob"));
        assert_ne!(Key::for_name("x"), Key::for_value(b"x"));
    }

    #[test]
    fn undialable_contacts_are_recognized() {
        let id = PeerId::from_bytes([3; 32]);
        assert!(Contact::new(id, "10.0.0.1:4000".parse().unwrap()).is_dialable());
        assert!(!Contact::new(id, "10.0.0.1:0".parse().unwrap()).is_dialable());
        assert!(!Contact::new(id, "0.0.0.0:4000".parse().unwrap()).is_dialable());
        assert!(!Contact::new(id, "239.255.0.1:4000".parse().unwrap()).is_dialable());
    }

    proptest! {
        #[test]
        fn random_key_in_bucket_lands_in_that_bucket(seed: u64, bucket in 0usize..256, me: [u8; 32]) {
            let me = Key(me);
            let mut rng = sim::rng(seed, 0);
            let k = me.random_in_bucket(bucket, &mut rng);
            prop_assert_eq!(me.distance(&k).bucket(), Some(bucket));
        }

        #[test]
        fn distances_compose_by_xor(a: [u8; 32], b: [u8; 32], c: [u8; 32]) {
            // d(a,c) = d(a,b) xor d(b,c): what makes XOR a metric with the
            // unidirectional lookups of §2.1
            let (a, b, c) = (Key(a), Key(b), Key(c));
            let ab = a.distance(&b);
            let bc = b.distance(&c);
            let mut x = [0u8; 32];
            for (i, b) in x.iter_mut().enumerate() { *b = ab.0[i] ^ bc.0[i]; }
            prop_assert_eq!(a.distance(&c), Distance(x));
        }
    }
}
