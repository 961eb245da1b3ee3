//! The four RPCs of Kademlia (IPTPS 2002, §2.3) and their answers, as they
//! travel in one UDP datagram each (`wire::Datagram::Dht`).
//!
//! Every message names its sender's PeerId and carries a 64-bit RPC id: a request
//! picks a random one, its answer echoes it. An answer is accepted only if it
//! matches a request we sent, to that address and that PeerId; random ids make
//! off-path forgery of answers a guess at 2^64.
//!
//! Size: a datagram holds at most [`MAX_DATAGRAM_LEN`](crate::proto::wire::MAX_DATAGRAM_LEN)
//! bytes. Replies carry at most [`MAX_CONTACTS`] contacts and records worth at
//! most [`RECORD_BUDGET`] encoded bytes, which together fit (checked by a test
//! on the largest possible reply). Decoding rejects anything longer before
//! parsing, and [`Message::check`] rejects counts above those caps.

use serde::{Deserialize, Serialize};

use crate::identity::PeerId;
use crate::proto::kademlia::key::{Contact, Key};
use crate::proto::kademlia::record::Record;

/// Most contacts in one reply (k = 20 by default; peers may run a larger k).
pub const MAX_CONTACTS: usize = 32;

/// Encoded bytes of records one FIND_VALUE reply may carry.
pub const RECORD_BUDGET: usize = 6 * 1024;

/// Most records one reply may carry (small records under a popular name).
pub const MAX_RECORDS: usize = 64;

/// A DHT message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Are you there?
    Ping { from: PeerId, rpc: u64 },
    /// Yes.
    Pong { from: PeerId, rpc: u64 },
    /// Which contacts do you know nearest `target`?
    FindNode { from: PeerId, rpc: u64, target: Key },
    /// These (answers FIND_NODE).
    Nodes {
        from: PeerId,
        rpc: u64,
        closer: Vec<Contact>,
    },
    /// Do you hold records under `key`? If not, who is nearer?
    FindValue { from: PeerId, rpc: u64, key: Key },
    /// The records held under the key (maybe none) and the nearest contacts.
    Value {
        from: PeerId,
        rpc: u64,
        records: Vec<Record>,
        closer: Vec<Contact>,
    },
    /// Please hold this record.
    Store {
        from: PeerId,
        rpc: u64,
        record: Record,
    },
    /// Whether the record was stored (false: refused as stale, invalid or full).
    Stored {
        from: PeerId,
        rpc: u64,
        accepted: bool,
    },
}

impl Message {
    pub fn from(&self) -> PeerId {
        match self {
            Self::Ping { from, .. }
            | Self::Pong { from, .. }
            | Self::FindNode { from, .. }
            | Self::Nodes { from, .. }
            | Self::FindValue { from, .. }
            | Self::Value { from, .. }
            | Self::Store { from, .. }
            | Self::Stored { from, .. } => *from,
        }
    }

    pub fn rpc(&self) -> u64 {
        match self {
            Self::Ping { rpc, .. }
            | Self::Pong { rpc, .. }
            | Self::FindNode { rpc, .. }
            | Self::Nodes { rpc, .. }
            | Self::FindValue { rpc, .. }
            | Self::Value { rpc, .. }
            | Self::Store { rpc, .. }
            | Self::Stored { rpc, .. } => *rpc,
        }
    }

    /// Whether this is a request (as opposed to an answer to one).
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Self::Ping { .. } | Self::FindNode { .. } | Self::FindValue { .. } | Self::Store { .. }
        )
    }

    /// Checks the caps decoding cannot: counts of contacts and records.
    pub fn check(&self) -> Result<(), &'static str> {
        match self {
            Self::Nodes { closer, .. } | Self::Value { closer, .. }
                if closer.len() > MAX_CONTACTS =>
            {
                Err("too many contacts in a reply")
            }
            Self::Value { records, .. } if records.len() > MAX_RECORDS => {
                Err("too many records in a reply")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::proto::kademlia::record::{MAX_ADDRS, MAX_VALUE_LEN, PeerInfo, Value};
    use crate::proto::wire::{self, Datagram, MAX_NAME_LEN};
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn contact(i: u8) -> Contact {
        Contact::new(
            PeerId::from_bytes([i; 32]),
            "[fe80::aaaa:bbbb:cccc:dddd]:65535".parse().unwrap(),
        )
    }

    #[test]
    fn largest_value_reply_fits_one_datagram() {
        let id = Identity::from_secret([1; 32]);
        let big = Record::sign(
            &id,
            Key::for_value(b"k"),
            u64::MAX,
            u64::MAX,
            Value::Bytes(vec![0xff; MAX_VALUE_LEN]),
        );
        let mut records = Vec::new();
        let mut used = 0;
        while used + big.encoded_len() <= RECORD_BUDGET {
            used += big.encoded_len();
            records.push(big.clone());
        }
        assert!(records.len() >= 4, "a reply carries several user values");
        let msg = Message::Value {
            from: id.peer_id(),
            rpc: u64::MAX,
            records,
            closer: (0..MAX_CONTACTS as u8).map(contact).collect(),
        };
        let bytes = wire::encode_datagram(&Datagram::Dht(msg.clone())).unwrap();
        assert!(bytes.len() <= wire::MAX_DATAGRAM_LEN, "{}", bytes.len());
        assert_eq!(
            wire::decode_datagram::<Datagram>(&bytes),
            Ok(Datagram::Dht(msg))
        );
    }

    #[test]
    fn largest_peer_record_store_fits_one_datagram() {
        let id = Identity::from_secret([1; 32]);
        let info = PeerInfo {
            name: "n".repeat(MAX_NAME_LEN),
            addrs: vec![contact(0).addr; MAX_ADDRS],
        };
        let record = Record::sign(
            &id,
            Key::for_peer(&id.peer_id()),
            u64::MAX,
            u64::MAX,
            Value::Peer(info),
        );
        let msg = Message::Store {
            from: id.peer_id(),
            rpc: 1,
            record,
        };
        assert!(wire::encode_datagram(&Datagram::Dht(msg)).is_ok());
    }

    #[test]
    fn replies_over_the_caps_are_refused() {
        let from = PeerId::from_bytes([1; 32]);
        let ok = Message::Nodes {
            from,
            rpc: 1,
            closer: (0..MAX_CONTACTS as u8).map(contact).collect(),
        };
        assert!(ok.check().is_ok());
        let over = Message::Nodes {
            from,
            rpc: 1,
            closer: (0..=MAX_CONTACTS as u8).map(contact).collect(),
        };
        assert!(over.check().is_err());
    }

    fn arb_contact() -> impl Strategy<Value = Contact> {
        (any::<[u8; 32]>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(id, ip, port)| {
            Contact::new(PeerId::from_bytes(id), SocketAddr::from((ip, port)))
        })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let from = any::<[u8; 32]>().prop_map(PeerId::from_bytes);
        (
            from,
            any::<u64>(),
            any::<[u8; 32]>(),
            proptest::collection::vec(arb_contact(), 0..MAX_CONTACTS),
            0u8..6,
        )
            .prop_map(|(from, rpc, key, closer, kind)| match kind {
                0 => Message::Ping { from, rpc },
                1 => Message::Pong { from, rpc },
                2 => Message::FindNode {
                    from,
                    rpc,
                    target: Key(key),
                },
                3 => Message::Nodes { from, rpc, closer },
                4 => Message::FindValue {
                    from,
                    rpc,
                    key: Key(key),
                },
                _ => Message::Value {
                    from,
                    rpc,
                    records: vec![],
                    closer,
                },
            })
    }

    proptest! {
        #[test]
        fn messages_round_trip_through_datagrams(msg in arb_message()) {
            let bytes = wire::encode_datagram(&Datagram::Dht(msg.clone())).unwrap();
            prop_assert_eq!(wire::decode_datagram::<Datagram>(&bytes), Ok(Datagram::Dht(msg)));
        }

        #[test]
        fn truncated_messages_are_errors_not_panics(msg in arb_message(), cut in 0usize..2000) {
            let bytes = wire::encode_datagram(&Datagram::Dht(msg)).unwrap();
            let cut = cut.min(bytes.len().saturating_sub(1));
            prop_assert!(wire::decode_datagram::<Datagram>(&bytes[..cut]).is_err());
        }
    }
}
