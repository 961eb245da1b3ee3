//! Rooms: group chat over gossip. This module is the pure part: what a room
//! message is, how it is signed and checked, and the limits.
//!
//! A room named `N` is the gossip topic `TopicId::from_name("room:" + N)`
//! ([`topic`]). Each message is a [`RoomMessage`] (random id, room, author id and
//! display name, text, the author's clock), signed by its author with ed25519
//! over [`SIGNING_CONTEXT`] followed by the message's postcard encoding, and sent
//! as one gossip payload ([`SignedRoomMessage::encode`]). Relays cannot alter a
//! message or speak for someone else; they can only drop it.
//!
//! A receiver accepts a payload only if it decodes, respects the limits, names
//! the room of the topic it arrived in (so a message cannot be replayed into
//! another room), and carries a valid signature by the author it names
//! ([`SignedRoomMessage::decode`]); everything else is a [`Rejected`] reason the
//! service counts.
//!
//! The gossip layer forwards a payload before the room layer looks at it (the
//! tree does not know the room format), so a forged message still travels the
//! tree; every node drops it on arrival and never shows or stores it.

use serde::{Deserialize, Serialize};

use crate::identity::{Identity, PeerId, Signature};
use crate::proto::gossip::TopicId;
use crate::proto::wire::{MAX_NAME_LEN, truncate_name};

/// Longest text of one room message, in bytes.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Longest room name, in bytes.
pub const MAX_ROOM_NAME_LEN: usize = 64;
/// Domain separation of room message signatures.
pub const SIGNING_CONTEXT: &[u8] = b"peerconnect room message v1\0";

/// The gossip topic of room `name`.
pub fn topic(name: &str) -> TopicId {
    TopicId::from_name(&format!("room:{name}"))
}

/// Where `peer` stands in the order every node tries join contacts for
/// `topic` (rendezvous hashing: lowest first). The same for everyone, so
/// devices that join at once try the same contacts first; different per
/// room, so no device is everyone's first contact for every room.
pub fn rendezvous_rank(topic: TopicId, peer: &PeerId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&topic.0);
    h.update(peer.as_bytes());
    *h.finalize().as_bytes()
}

/// Why a room name or message text is refused locally (before sending).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("room name is empty")]
    EmptyName,
    #[error("room name is {len} bytes; the limit is {MAX_ROOM_NAME_LEN}")]
    NameTooLong { len: usize },
    #[error("room name contains control characters")]
    NameControl,
    #[error("room message text is {len} bytes; the limit is {MAX_TEXT_LEN} (16 KiB)")]
    TextTooLong { len: usize },
}

/// Checks a room name: 1..=64 bytes, no control characters.
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::EmptyName);
    }
    if name.len() > MAX_ROOM_NAME_LEN {
        return Err(Error::NameTooLong { len: name.len() });
    }
    if name.chars().any(char::is_control) {
        return Err(Error::NameControl);
    }
    Ok(())
}

/// Checks the length of a message text.
pub fn check_text(text: &str) -> Result<(), Error> {
    if text.len() > MAX_TEXT_LEN {
        return Err(Error::TextTooLong { len: text.len() });
    }
    Ok(())
}

/// The author name of a message a node says in a room for one of its
/// browser guests: `"NAME (guest via NODE)"`, cut to [`MAX_NAME_LEN`]. The
/// author (and signer) is the node, which vouches for its guest; the name
/// tells readers who typed it. A guest cannot pass for the node's owner: the
/// node appends the suffix to whatever name the guest chose.
pub fn guest_author_name(guest: &str, node: &str) -> String {
    fn cut(s: &str, max: usize) -> &str {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    }
    // Keep the node's name short enough to leave the guest's some room.
    let node = cut(node, MAX_NAME_LEN / 3);
    let suffix = format!(" (guest via {node})");
    let guest = cut(guest, MAX_NAME_LEN - suffix.len());
    format!("{guest}{suffix}")
}

/// A message's id: 16 random bytes chosen by its author. Shown (and written in
/// JSON) as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomMessageId(pub [u8; 16]);

impl std::fmt::Display for RoomMessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for RoomMessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoomMessageId({self})")
    }
}

impl std::str::FromStr for RoomMessageId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a room message id (32 hex digits)");
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl Serialize for RoomMessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for RoomMessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 16]>::deserialize(d).map(Self)
        }
    }
}

/// One chat message in a room, as sent, stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMessage {
    pub id: RoomMessageId,
    pub room: String,
    pub author: PeerId,
    /// The author's device name when it wrote the message.
    pub author_name: String,
    pub text: String,
    /// The author's wall clock, milliseconds since the Unix epoch (not trusted
    /// for ordering: history is kept in arrival order).
    pub time_ms: u64,
}

impl RoomMessage {
    /// A new message by `identity` (`id`: fresh random bytes from the caller);
    /// checks the room name and text limits.
    pub fn new(
        id: RoomMessageId,
        identity: &Identity,
        author_name: &str,
        room: &str,
        text: &str,
        time_ms: u64,
    ) -> Result<Self, Error> {
        check_name(room)?;
        check_text(text)?;
        Ok(Self {
            id,
            room: room.to_string(),
            author: identity.peer_id(),
            author_name: truncate_name(author_name),
            text: text.to_string(),
            time_ms,
        })
    }
}

/// Why a received payload is not a room message of this room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("payload does not decode as a room message")]
    Malformed,
    #[error("room message breaks a limit (name or text too long)")]
    TooLarge,
    #[error("room message names another room than its topic")]
    WrongRoom,
    #[error("room message signature does not match its author")]
    BadSignature,
}

/// A room message and its author's signature: the gossip payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRoomMessage {
    pub message: RoomMessage,
    pub signature: Signature,
}

impl SignedRoomMessage {
    /// Signs `message` with `identity` (which must be its author).
    pub fn sign(message: RoomMessage, identity: &Identity) -> Self {
        debug_assert_eq!(message.author, identity.peer_id());
        let signature = Signature(identity.sign(&signing_bytes(&message)));
        Self { message, signature }
    }

    pub fn verify(&self) -> bool {
        self.message
            .author
            .verify(&signing_bytes(&self.message), &self.signature.0)
    }

    /// The gossip payload.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to a Vec cannot fail")
    }

    /// Decodes and checks a payload received in `topic`.
    pub fn decode(payload: &[u8], topic: &TopicId) -> Result<Self, Rejected> {
        let (signed, rest) =
            postcard::take_from_bytes::<Self>(payload).map_err(|_| Rejected::Malformed)?;
        if !rest.is_empty() {
            return Err(Rejected::Malformed);
        }
        let m = &signed.message;
        if m.text.len() > MAX_TEXT_LEN
            || m.author_name.len() > MAX_NAME_LEN
            || check_name(&m.room).is_err()
        {
            return Err(Rejected::TooLarge);
        }
        if self::topic(&m.room) != *topic {
            return Err(Rejected::WrongRoom);
        }
        if !signed.verify() {
            return Err(Rejected::BadSignature);
        }
        Ok(signed)
    }
}

fn signing_bytes(m: &RoomMessage) -> Vec<u8> {
    let mut out = SIGNING_CONTEXT.to_vec();
    postcard::to_io(m, &mut out).expect("encoding to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &Identity, room: &str, text: &str) -> RoomMessage {
        RoomMessage::new(
            RoomMessageId([7; 16]),
            id,
            "alice",
            room,
            text,
            1_700_000_000_000,
        )
        .unwrap()
    }

    #[test]
    fn signed_message_round_trips_through_its_payload() {
        let alice = Identity::generate();
        let s = SignedRoomMessage::sign(msg(&alice, "lobby", "hi all"), &alice);
        let got = SignedRoomMessage::decode(&s.encode(), &topic("lobby")).unwrap();
        assert_eq!(got, s);
        assert_eq!(got.message.author, alice.peer_id());
    }

    #[test]
    fn forged_altered_or_misrouted_messages_are_rejected() {
        let alice = Identity::generate();
        let mallory = Identity::generate();
        // mallory signs a message claiming to be alice
        let mut forged = msg(&mallory, "lobby", "send me your files");
        forged.author = alice.peer_id();
        let sig = Signature(mallory.sign(&signing_bytes(&forged)));
        let forged = SignedRoomMessage {
            message: forged,
            signature: sig,
        };
        assert_eq!(
            SignedRoomMessage::decode(&forged.encode(), &topic("lobby")),
            Err(Rejected::BadSignature)
        );
        // a relay edits alice's text
        let mut edited = SignedRoomMessage::sign(msg(&alice, "lobby", "lunch at 12"), &alice);
        edited.message.text = "lunch at 1".into();
        assert_eq!(
            SignedRoomMessage::decode(&edited.encode(), &topic("lobby")),
            Err(Rejected::BadSignature)
        );
        // a genuine message replayed into another room's topic
        let genuine = SignedRoomMessage::sign(msg(&alice, "lobby", "hi"), &alice);
        assert_eq!(
            SignedRoomMessage::decode(&genuine.encode(), &topic("staff")),
            Err(Rejected::WrongRoom)
        );
        assert_eq!(
            SignedRoomMessage::decode(b"\x01\x02garbage", &topic("lobby")),
            Err(Rejected::Malformed)
        );
        let mut trailing = genuine.encode();
        trailing.push(0);
        assert_eq!(
            SignedRoomMessage::decode(&trailing, &topic("lobby")),
            Err(Rejected::Malformed)
        );
    }

    #[test]
    fn oversized_text_is_refused_on_both_ends() {
        let alice = Identity::generate();
        let big = "x".repeat(MAX_TEXT_LEN + 1);
        let err =
            RoomMessage::new(RoomMessageId([1; 16]), &alice, "a", "lobby", &big, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "room message text is 16385 bytes; the limit is 16384 (16 KiB)"
        );
        assert!(
            RoomMessage::new(RoomMessageId([1; 16]), &alice, "a", "lobby", &big[1..], 0).is_ok()
        );
        // built by hand, signed, sent anyway: dropped on arrival
        let mut m = msg(&alice, "lobby", "");
        m.text = big;
        let s = SignedRoomMessage::sign(m, &alice);
        assert_eq!(
            SignedRoomMessage::decode(&s.encode(), &topic("lobby")),
            Err(Rejected::TooLarge)
        );
    }

    #[test]
    fn a_guests_author_name_names_guest_and_node_within_the_limit() {
        assert_eq!(
            guest_author_name("Test phone", "beta"),
            "Test phone (guest via beta)"
        );
        let long = guest_author_name(&"é".repeat(60), &"n".repeat(60));
        assert!(long.len() <= MAX_NAME_LEN, "{long}");
        assert!(
            long.ends_with(&format!(" (guest via {})", "n".repeat(21))),
            "{long}"
        );
        assert!(long.starts_with("éé"));
        // Such a message is the node's: signed by it, checked like any other.
        let node = Identity::generate();
        let m = RoomMessage::new(RoomMessageId([3; 16]), &node, &long, "lobby", "hi", 0).unwrap();
        let s = SignedRoomMessage::sign(m, &node);
        assert_eq!(
            SignedRoomMessage::decode(&s.encode(), &topic("lobby")).unwrap(),
            s
        );
    }

    #[test]
    fn room_names_are_checked() {
        assert_eq!(check_name(""), Err(Error::EmptyName));
        assert!(matches!(
            check_name(&"r".repeat(65)),
            Err(Error::NameTooLong { .. })
        ));
        assert_eq!(check_name("a\nb"), Err(Error::NameControl));
        assert!(check_name("LAN party 🎮").is_ok());
        assert_ne!(topic("a"), topic("b"));
        assert_ne!(topic("a"), TopicId::from_name("a"));
    }

    #[test]
    fn ids_print_as_hex_and_parse_back() {
        let id = RoomMessageId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<RoomMessageId>().unwrap(), id);
        assert!("xyz".parse::<RoomMessageId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(16)));
    }
}
