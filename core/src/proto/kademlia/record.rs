//! Signed DHT records: what may be stored, by whom, for how long.
//!
//! The Kademlia paper stores opaque `<key, value>` pairs (IPTPS 2002, §2.3) and
//! trusts whoever sends a STORE. Here every record is signed by its publisher
//! (ed25519, domain-separated by [`SIGNING_CONTEXT`]) over its key, sequence
//! number, expiry and value, so a node storing or relaying a record cannot alter
//! it, and a reader can check who published it without trusting the path.
//!
//! - **Sequence numbers** order one publisher's versions of a record under one
//!   key: a store of an older sequence than the one held is refused, so replaying
//!   an outdated record (say, a peer's old address) does not undo a newer one.
//!   Publishers take `max(last + 1, wall clock in ms)`, so a restarted node with
//!   no memory of its last number still supersedes its previous life.
//! - **Expiry** is absolute (milliseconds since the Unix epoch, by the publisher's
//!   clock); expired records are neither stored nor served, and one expiring
//!   further ahead than the configured maximum TTL is refused.
//! - **Kinds.** [`Value::Peer`] is a peer's own addresses and device name, valid
//!   only under the peer's own key ([`Key::for_peer`]) or under the key of its name
//!   ([`Key::for_name`]), so nobody can publish addresses for someone else. A key
//!   holds one record per publisher, which is how several devices sharing one name
//!   are all found. [`Value::Bytes`] is a user value of at most [`MAX_VALUE_LEN`]
//!   bytes under any key.
//!
//! Every record fits in [`MAX_RECORD_LEN`] encoded bytes, so a reply can carry
//! several within one datagram.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::{Identity, PeerId, Signature};
use crate::proto::kademlia::key::{Contact, Key, normalize_name};
use crate::proto::wire::MAX_NAME_LEN;

/// Domain separation: a DHT record signature is never valid as anything else.
pub const SIGNING_CONTEXT: &[u8] = b"peerconnect dht record v1\0";

/// Largest user value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// Most addresses in one peer record (Wi-Fi and Ethernet, v4 and v6, ...).
pub const MAX_ADDRS: usize = 8;

/// Bound on the encoded size of any valid record (the largest is a user value
/// of [`MAX_VALUE_LEN`] bytes plus ~180 bytes of key, ids, numbers and signature).
pub const MAX_RECORD_LEN: usize = MAX_VALUE_LEN + 256;

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// The publisher's own contact information.
    Peer(PeerInfo),
    /// A user value.
    Bytes(Vec<u8>),
}

/// A peer's description of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Device name, as the user typed it (search ignores case).
    pub name: String,
    /// Where the peer accepts connections, preferred first.
    pub addrs: Vec<SocketAddr>,
}

/// One signed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Key,
    pub publisher: PeerId,
    pub seq: u64,
    /// Milliseconds since the Unix epoch after which the record is void.
    pub expires_ms: u64,
    pub value: Value,
    pub signature: Signature,
}

/// A verified peer record, as lookups return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub id: PeerId,
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    pub seq: u64,
    pub expires_ms: u64,
}

/// A verified user value and who published it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserValue {
    pub publisher: PeerId,
    pub value: Vec<u8>,
    pub seq: u64,
    pub expires_ms: u64,
}

/// Why a record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("value of {0} bytes exceeds the maximum of {MAX_VALUE_LEN}")]
    TooLarge(usize),
    #[error("peer record lists {0} addresses, more than {MAX_ADDRS}")]
    TooManyAddrs(usize),
    #[error("peer record lists an address no one can send to")]
    UndialableAddr,
    #[error("device name is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    #[error("record is stored under a key it does not belong to")]
    WrongKey,
    #[error("record has expired")]
    Expired,
    #[error("record expires further ahead than the maximum lifetime")]
    TooLongLived,
    #[error("record signature does not verify against its publisher")]
    BadSignature,
}

#[derive(Serialize)]
struct Signed<'a> {
    key: &'a Key,
    publisher: &'a PeerId,
    seq: u64,
    expires_ms: u64,
    value: &'a Value,
}

fn signing_bytes(
    key: &Key,
    publisher: &PeerId,
    seq: u64,
    expires_ms: u64,
    value: &Value,
) -> Vec<u8> {
    let mut out = SIGNING_CONTEXT.to_vec();
    let signed = Signed {
        key,
        publisher,
        seq,
        expires_ms,
        value,
    };
    postcard::to_io(&signed, &mut out).expect("encoding to a Vec cannot fail");
    out
}

impl Record {
    /// Signs `value` under `key` as `identity`. The caller checks the shape
    /// ([`Record::check_shape`]) if the value came from a user.
    pub fn sign(identity: &Identity, key: Key, seq: u64, expires_ms: u64, value: Value) -> Self {
        let publisher = identity.peer_id();
        let sig = identity.sign(&signing_bytes(&key, &publisher, seq, expires_ms, &value));
        Self {
            key,
            publisher,
            seq,
            expires_ms,
            value,
            signature: Signature(sig),
        }
    }

    /// Checks sizes, addresses and the key binding: everything but time and
    /// signature (cheap checks first, so garbage costs no signature check).
    pub fn check_shape(&self) -> Result<(), RecordError> {
        match &self.value {
            Value::Bytes(v) if v.len() > MAX_VALUE_LEN => Err(RecordError::TooLarge(v.len())),
            Value::Bytes(_) => Ok(()),
            Value::Peer(info) => {
                if info.addrs.len() > MAX_ADDRS {
                    return Err(RecordError::TooManyAddrs(info.addrs.len()));
                }
                if info.name.len() > MAX_NAME_LEN {
                    return Err(RecordError::NameTooLong);
                }
                if !info
                    .addrs
                    .iter()
                    .all(|a| Contact::new(self.publisher, *a).is_dialable())
                {
                    return Err(RecordError::UndialableAddr);
                }
                if self.key != Key::for_peer(&self.publisher)
                    && self.key != Key::for_name(&info.name)
                {
                    return Err(RecordError::WrongKey);
                }
                Ok(())
            }
        }
    }

    /// Full check of a record from the network at wall time `now_ms`.
    pub fn validate(&self, now_ms: u64, max_ttl: Duration) -> Result<(), RecordError> {
        self.check_shape()?;
        if self.expires_ms <= now_ms {
            return Err(RecordError::Expired);
        }
        let max_ttl_ms = u64::try_from(max_ttl.as_millis()).unwrap_or(u64::MAX);
        if self.expires_ms > now_ms.saturating_add(max_ttl_ms) {
            return Err(RecordError::TooLongLived);
        }
        if !self.verify_signature() {
            return Err(RecordError::BadSignature);
        }
        Ok(())
    }

    pub fn verify_signature(&self) -> bool {
        let bytes = signing_bytes(
            &self.key,
            &self.publisher,
            self.seq,
            self.expires_ms,
            &self.value,
        );
        self.publisher.verify(&bytes, &self.signature.0)
    }

    /// Encoded size of the record, as it travels.
    pub fn encoded_len(&self) -> usize {
        postcard::experimental::serialized_size(self).unwrap_or(usize::MAX)
    }

    /// The peer record this is, if it is one.
    pub fn peer_record(&self) -> Option<PeerRecord> {
        match &self.value {
            Value::Peer(info) => Some(PeerRecord {
                id: self.publisher,
                name: info.name.clone(),
                addrs: info.addrs.clone(),
                seq: self.seq,
                expires_ms: self.expires_ms,
            }),
            Value::Bytes(_) => None,
        }
    }

    /// The user value this is, if it is one.
    pub fn user_value(&self) -> Option<UserValue> {
        match &self.value {
            Value::Bytes(v) => Some(UserValue {
                publisher: self.publisher,
                value: v.clone(),
                seq: self.seq,
                expires_ms: self.expires_ms,
            }),
            Value::Peer(_) => None,
        }
    }
}

/// Whether `record` answers a search for devices named `name`.
pub fn matches_name(record: &PeerRecord, name: &str) -> bool {
    normalize_name(&record.name) == normalize_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const TTL: Duration = Duration::from_secs(3600);

    fn me() -> Identity {
        Identity::from_secret([5; 32])
    }

    fn peer_value(name: &str) -> Value {
        Value::Peer(PeerInfo {
            name: name.into(),
            addrs: vec!["192.168.1.2:47471".parse().unwrap()],
        })
    }

    fn peer_record(seq: u64) -> Record {
        let id = me();
        Record::sign(
            &id,
            Key::for_peer(&id.peer_id()),
            seq,
            NOW + 60_000,
            peer_value("Laptop"),
        )
    }

    #[test]
    fn signed_record_validates_and_reads_back_as_a_peer_record() {
        let r = peer_record(1);
        assert_eq!(r.validate(NOW, TTL), Ok(()));
        let p = r.peer_record().unwrap();
        assert_eq!(
            (p.id, p.name.as_str(), p.seq),
            (me().peer_id(), "Laptop", 1)
        );
        assert!(r.encoded_len() < MAX_RECORD_LEN);
    }

    #[test]
    fn any_change_to_a_signed_record_breaks_its_signature() {
        let good = peer_record(1);
        let mut r = good.clone();
        r.seq = 2;
        assert_eq!(r.validate(NOW, TTL), Err(RecordError::BadSignature));
        let mut r = good.clone();
        r.expires_ms += 1;
        assert_eq!(r.validate(NOW, TTL), Err(RecordError::BadSignature));
        let mut r = good.clone();
        r.value = Value::Peer(PeerInfo {
            name: "Laptop".into(),
            addrs: vec!["6.6.6.6:6666".parse().unwrap()],
        });
        assert_eq!(r.validate(NOW, TTL), Err(RecordError::BadSignature));
    }

    #[test]
    fn peer_record_under_someone_elses_key_is_refused() {
        let other = Identity::from_secret([6; 32]).peer_id();
        let r = Record::sign(&me(), Key::for_peer(&other), 1, NOW + 1000, peer_value("x"));
        assert_eq!(r.validate(NOW, TTL), Err(RecordError::WrongKey));
        let r = Record::sign(
            &me(),
            Key::for_name("other"),
            1,
            NOW + 1000,
            peer_value("x"),
        );
        assert_eq!(r.validate(NOW, TTL), Err(RecordError::WrongKey));
        let r = Record::sign(&me(), Key::for_name(" X "), 1, NOW + 1000, peer_value("x"));
        assert_eq!(r.validate(NOW, TTL), Ok(()));
    }

    #[test]
    fn expired_and_overlong_records_are_refused() {
        let id = me();
        let key = Key::for_value(b"k");
        let r = Record::sign(&id, key, 1, NOW, Value::Bytes(vec![1]));
        assert_eq!(r.validate(NOW, TTL), Err(RecordError::Expired));
        let r = Record::sign(&id, key, 1, NOW + 2 * 3_600_000, Value::Bytes(vec![1]));
        assert_eq!(r.validate(NOW, TTL), Err(RecordError::TooLongLived));
    }

    #[test]
    fn oversized_values_and_address_lists_are_refused() {
        let id = me();
        let key = Key::for_value(b"k");
        let r = Record::sign(
            &id,
            key,
            1,
            NOW + 1,
            Value::Bytes(vec![0; MAX_VALUE_LEN + 1]),
        );
        assert_eq!(
            r.check_shape(),
            Err(RecordError::TooLarge(MAX_VALUE_LEN + 1))
        );
        let r = Record::sign(&id, key, 1, NOW + 1, Value::Bytes(vec![0; MAX_VALUE_LEN]));
        assert!(r.check_shape().is_ok());
        assert!(r.encoded_len() <= MAX_RECORD_LEN);
        let addrs = vec!["10.0.0.1:1".parse().unwrap(); MAX_ADDRS + 1];
        let v = Value::Peer(PeerInfo {
            name: "n".into(),
            addrs,
        });
        let r = Record::sign(&id, Key::for_peer(&id.peer_id()), 1, NOW + 1, v);
        assert_eq!(
            r.check_shape(),
            Err(RecordError::TooManyAddrs(MAX_ADDRS + 1))
        );
        let v = Value::Peer(PeerInfo {
            name: "n".into(),
            addrs: vec!["0.0.0.0:47471".parse().unwrap()],
        });
        let r = Record::sign(&id, Key::for_peer(&id.peer_id()), 1, NOW + 1, v);
        assert_eq!(r.check_shape(), Err(RecordError::UndialableAddr));
    }

    #[test]
    fn largest_peer_record_fits_the_record_bound() {
        let id = me();
        let v = Value::Peer(PeerInfo {
            name: "n".repeat(MAX_NAME_LEN),
            addrs: vec!["[fe80::1:2:3:4]:65535".parse().unwrap(); MAX_ADDRS],
        });
        let r = Record::sign(&id, Key::for_peer(&id.peer_id()), u64::MAX, u64::MAX, v);
        assert!(r.check_shape().is_ok());
        assert!(r.encoded_len() <= MAX_RECORD_LEN, "{}", r.encoded_len());
    }
}
