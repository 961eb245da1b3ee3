//! The wire format: versioned message enums and their pure encoding.
//!
//! On TCP (inside TLS) everything travels in *frames*:
//!
//! ```text
//! u32 big-endian length L | L bytes: u8 protocol version | postcard body
//! ```
//!
//! `L` is checked against [`MAX_FRAME_LEN`] before a single byte of the body is
//! buffered, so a peer that lies about a length costs us four bytes, not memory.
//! UDP datagrams (discovery, DHT) are the same without the length prefix.
//!
//! Decoding is pure and total: any input gives a value or a [`DecodeError`]
//! (truncated, oversize, length that lies, unknown version, malformed body,
//! trailing bytes); it never panics. Postcard never preallocates more than the
//! bytes actually present, so allocation is bounded by the (checked) frame length.
//!
//! Compatibility: a peer speaking another [`VERSION`] is refused at the first
//! frame; new message kinds are added as new enum variants at the end.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::proto::discovery::SignedAnnounce;
use crate::proto::kademlia;

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;

/// Largest frame body (version byte + postcard) accepted on a stream.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Largest UDP datagram we send or accept.
pub const MAX_DATAGRAM_LEN: usize = 8 * 1024;

/// Size of the length prefix of a frame.
pub const HEADER_LEN: usize = 4;

/// Why bytes from the network are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is empty")]
    Empty,
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("input ends after {have} of {need} bytes")]
    Truncated { have: usize, need: usize },
    #[error("unknown protocol version {0} (this build speaks {VERSION})")]
    UnknownVersion(u8),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// Why a message could not be encoded (only ever our own bug or an oversize value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("cannot encode message: {0}")]
    Serialize(String),
}

/// Appends one frame carrying `msg` to `out`.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.push(VERSION);
    let res = postcard::to_io(msg, &mut *out)
        .map(|_| ())
        .map_err(|e| EncodeError::Serialize(e.to_string()));
    let len = out.len() - start - HEADER_LEN;
    if let Err(e) = res {
        out.truncate(start);
        return Err(e);
    }
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(EncodeError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Checks a frame's length prefix and returns the body length it announces.
pub fn frame_len(header: [u8; HEADER_LEN]) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > MAX_FRAME_LEN {
        return Err(DecodeError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Decodes the first frame of `buf`. `Ok(None)` means "not all of it is here yet";
/// on success returns the message and how many bytes of `buf` it used.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, DecodeError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = frame_len(header.try_into().expect("4 bytes"))?;
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, HEADER_LEN + len)))
}

/// Decodes exactly one complete frame: the length must match `buf` to the byte.
pub fn decode_exact_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<T, DecodeError> {
    match decode_frame(buf)? {
        None => {
            let need = buf
                .get(..HEADER_LEN)
                .map(|h| HEADER_LEN + u32::from_be_bytes(h.try_into().expect("4 bytes")) as usize)
                .unwrap_or(HEADER_LEN);
            Err(DecodeError::Truncated {
                have: buf.len(),
                need,
            })
        }
        Some((msg, used)) if used == buf.len() => Ok(msg),
        Some((_, used)) => Err(DecodeError::TrailingBytes(buf.len() - used)),
    }
}

/// Decodes a frame body (version byte + postcard), refusing trailing bytes.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let (&version, rest) = body.split_first().ok_or(DecodeError::Empty)?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let (msg, trailing) = postcard::take_from_bytes::<T>(rest).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated {
            have: body.len(),
            need: body.len() + 1,
        },
        other => DecodeError::Malformed(other.to_string()),
    })?;
    if !trailing.is_empty() {
        return Err(DecodeError::TrailingBytes(trailing.len()));
    }
    Ok(msg)
}

/// Encodes a datagram (version byte + postcard, no length prefix).
pub fn encode_datagram<T: Serialize>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![VERSION];
    postcard::to_io(msg, &mut out).map_err(|e| EncodeError::Serialize(e.to_string()))?;
    if out.len() > MAX_DATAGRAM_LEN {
        return Err(EncodeError::TooLarge {
            len: out.len(),
            max: MAX_DATAGRAM_LEN,
        });
    }
    Ok(out)
}

/// Decodes a datagram, refusing oversize input before looking at it.
pub fn decode_datagram<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_DATAGRAM_LEN {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: MAX_DATAGRAM_LEN,
        });
    }
    decode_body(bytes)
}

/// What kind of device a peer is, for icons and for humans choosing a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    #[default]
    Desktop,
    Laptop,
    Phone,
    Tablet,
    Server,
    /// A browser using a node's web UI (no app installed).
    Browser,
    Other,
    /// A LocalSend device (another app's protocol, [`crate::localsend`]):
    /// only ever listed locally, never sent to a peer.
    #[serde(rename = "localsend")]
    LocalSend,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Laptop => "laptop",
            Self::Phone => "phone",
            Self::Tablet => "tablet",
            Self::Server => "server",
            Self::Browser => "browser",
            Self::Other => "other",
            Self::LocalSend => "localsend",
        }
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "desktop" => Self::Desktop,
            "laptop" => Self::Laptop,
            "phone" => Self::Phone,
            "tablet" => Self::Tablet,
            "server" => Self::Server,
            "browser" => Self::Browser,
            "other" => Self::Other,
            "localsend" => Self::LocalSend,
            _ => return Err(format!("unknown device kind {s:?}")),
        })
    }
}

/// Longest device name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Cuts a name to [`MAX_NAME_LEN`] on a character boundary, so a name we send
/// always passes the receiver's check.
pub fn truncate_name(name: &str) -> String {
    if name.len() <= MAX_NAME_LEN {
        return name.to_string();
    }
    let mut end = MAX_NAME_LEN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// The first frame each side sends on every new TLS connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Random per process run: a new instance means the peer restarted, so any
    /// session state from its previous life is void.
    pub instance: u64,
    pub name: String,
    pub kind: DeviceKind,
    /// TCP port the sender accepts connections on (0: none).
    pub listen_port: u16,
}

impl Hello {
    /// Checks the limits decoding cannot.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(DecodeError::Invalid("device name too long"));
        }
        Ok(())
    }
}

/// Messages on a session's control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Liveness probe; answered with `Pong` carrying the same nonce.
    Ping(u64),
    Pong(u64),
    /// Gossip (membership and dissemination) for one topic.
    Gossip(crate::proto::gossip::Message),
    /// Direct messages: deliveries, acks, read receipts.
    Dm(crate::proto::messaging::Message),
}

/// Messages carried in UDP datagrams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datagram {
    Announce(SignedAnnounce),
    Dht(kademlia::Message),
}

/// The first frame on every stream a peer opens (the control stream aside):
/// which service the stream is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamKind {
    /// A file transfer ([`crate::proto::transfer`]).
    Transfer,
    /// A relay tree session's stream ([`crate::proto::transfer::tree`]): an
    /// offer from its sender, or a member's link to another member.
    Tree,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let s = "é".repeat(40); // 80 bytes
        let t = truncate_name(&s);
        assert!(t.len() <= MAX_NAME_LEN);
        assert!(s.starts_with(&t));
        assert!(hello(&t).validate().is_ok());
    }

    fn hello(name: &str) -> Hello {
        Hello {
            instance: 7,
            name: name.into(),
            kind: DeviceKind::Laptop,
            listen_port: 47471,
        }
    }

    fn frame_of<T: Serialize>(msg: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(msg, &mut out).unwrap();
        out
    }

    #[test]
    fn frame_round_trips_and_reports_bytes_used() {
        let mut buf = frame_of(&hello("a"));
        let first = buf.len();
        buf.extend(frame_of(&Message::Ping(3)));
        let (h, used) = decode_frame::<Hello>(&buf).unwrap().unwrap();
        assert_eq!((h, used), (hello("a"), first));
        let (m, _) = decode_frame::<Message>(&buf[used..]).unwrap().unwrap();
        assert_eq!(m, Message::Ping(3));
    }

    #[test]
    fn truncated_frame_waits_for_more_then_is_an_error_when_exact() {
        let buf = frame_of(&hello("abc"));
        for cut in 0..buf.len() {
            assert_eq!(decode_frame::<Hello>(&buf[..cut]), Ok(None), "cut at {cut}");
            assert!(matches!(
                decode_exact_frame::<Hello>(&buf[..cut]),
                Err(DecodeError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn length_that_lies_short_is_malformed_or_truncated() {
        // claims a shorter body than the message needs: the body ends early
        let mut buf = frame_of(&hello("abcdef"));
        let real = u32::from_be_bytes(buf[..4].try_into().unwrap());
        buf[..4].copy_from_slice(&(real - 3).to_be_bytes());
        let err = decode_frame::<Hello>(&buf).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Truncated { .. } | DecodeError::Malformed(_)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn length_that_lies_long_leaves_trailing_bytes() {
        let mut buf = frame_of(&Message::Ping(1));
        let real = u32::from_be_bytes(buf[..4].try_into().unwrap());
        buf[..4].copy_from_slice(&(real + 2).to_be_bytes());
        buf.extend([0, 0]);
        assert_eq!(
            decode_frame::<Message>(&buf),
            Err(DecodeError::TrailingBytes(2))
        );
    }

    #[test]
    fn oversize_length_is_refused_from_the_header_alone() {
        let header = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        assert_eq!(
            decode_frame::<Message>(&header),
            Err(DecodeError::TooLarge {
                len: MAX_FRAME_LEN + 1,
                max: MAX_FRAME_LEN
            })
        );
        assert!(matches!(
            frame_len(u32::MAX.to_be_bytes()),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn zero_length_frame_is_refused() {
        assert_eq!(
            decode_frame::<Message>(&[0, 0, 0, 0]),
            Err(DecodeError::Empty)
        );
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut buf = frame_of(&Message::Ping(1));
        buf[4] = VERSION + 1;
        assert_eq!(
            decode_frame::<Message>(&buf),
            Err(DecodeError::UnknownVersion(VERSION + 1))
        );
    }

    #[test]
    fn unknown_enum_variant_is_malformed() {
        let buf = [0, 0, 0, 2, VERSION, 99];
        assert!(matches!(
            decode_frame::<Message>(&buf),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn huge_inner_length_does_not_allocate_or_panic() {
        // a string claiming u32::MAX bytes inside a tiny frame
        let body = [VERSION, 0x07, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'];
        let err = decode_body::<Hello>(&body).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Truncated { .. } | DecodeError::Malformed(_)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn datagram_trailing_bytes_and_oversize_are_refused() {
        let mut d = encode_datagram(&Message::Ping(9)).unwrap();
        assert_eq!(decode_datagram::<Message>(&d), Ok(Message::Ping(9)));
        d.push(1);
        assert_eq!(
            decode_datagram::<Message>(&d),
            Err(DecodeError::TrailingBytes(1))
        );
        let big = vec![VERSION; MAX_DATAGRAM_LEN + 1];
        assert!(matches!(
            decode_datagram::<Message>(&big),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn encoding_refuses_oversize_frames_and_leaves_buffer_intact() {
        let mut out = vec![1, 2, 3];
        let big = hello(&"x".repeat(MAX_FRAME_LEN));
        assert!(matches!(
            encode_frame(&big, &mut out),
            Err(EncodeError::TooLarge { .. })
        ));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn hello_with_overlong_name_is_invalid() {
        assert!(hello(&"n".repeat(MAX_NAME_LEN)).validate().is_ok());
        assert!(hello(&"n".repeat(MAX_NAME_LEN + 1)).validate().is_err());
    }

    fn arb_kind() -> impl Strategy<Value = DeviceKind> {
        prop_oneof![
            Just(DeviceKind::Desktop),
            Just(DeviceKind::Laptop),
            Just(DeviceKind::Phone),
            Just(DeviceKind::Browser),
        ]
    }

    proptest! {
        #[test]
        fn hello_frames_round_trip(instance: u64, name in ".{0,40}", kind in arb_kind(), port: u16) {
            let h = Hello { instance, name, kind, listen_port: port };
            prop_assert_eq!(decode_exact_frame::<Hello>(&frame_of(&h)), Ok(h));
        }

        #[test]
        fn messages_round_trip(n: u64, pong: bool) {
            let m = if pong { Message::Pong(n) } else { Message::Ping(n) };
            prop_assert_eq!(decode_exact_frame::<Message>(&frame_of(&m)), Ok(m.clone()));
            prop_assert_eq!(decode_datagram::<Message>(&encode_datagram(&m).unwrap()), Ok(m));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_frame::<Message>(&bytes);
            let _ = decode_frame::<Hello>(&bytes);
            let _ = decode_datagram::<Datagram>(&bytes);
        }
    }
}
