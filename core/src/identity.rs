//! Who this node is: an ed25519 key pair, and the [`PeerId`] derived from it.
//!
//! The PeerId *is* the 32-byte ed25519 public key. It is shown as lowercase
//! RFC 4648 base32 without padding (52 characters); the short form is the first 8
//! characters. The secret key lives in `identity.key` in the data dir, written with
//! mode 0600 on first start and read on every later start.
//!
//! Everything that proves who someone is (TLS certificates, discovery
//! announcements, DHT records, room messages) is signed with this key.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Length of a PeerId shown in base32 (32 bytes → 52 characters).
pub const PEER_ID_TEXT_LEN: usize = 52;
/// Length of the short form of a PeerId.
pub const SHORT_LEN: usize = 8;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A peer's identity: its ed25519 public key.
///
/// Serialized as 32 raw bytes in binary formats (postcard) and as the base32 text
/// in human-readable ones (JSON).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; 32]);

impl Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(d).map(Self)
        }
    }
}

impl PeerId {
    /// Wraps raw public-key bytes. Whether they are a valid curve point is checked
    /// only when a signature is verified against them.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first [`SHORT_LEN`] characters of the base32 form, for humans.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHORT_LEN);
        s
    }

    /// Checks `signature` over `message` against this id's key.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32_encode(&self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// Why a string is not a PeerId.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParsePeerIdError {
    #[error("a peer id has {PEER_ID_TEXT_LEN} characters, this one has {0}")]
    Length(usize),
    #[error("a peer id uses only a-z and 2-7, found {0:?}")]
    Character(char),
    #[error("the last character of a peer id carries unused bits that must be zero")]
    TrailingBits,
}

impl FromStr for PeerId {
    type Err = ParsePeerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.chars().count() != PEER_ID_TEXT_LEN {
            return Err(ParsePeerIdError::Length(s.chars().count()));
        }
        let bytes = base32_decode(s)?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|v: Vec<u8>| ParsePeerIdError::Length(v.len()))?;
        Ok(Self(arr))
    }
}

/// Lowercase RFC 4648 base32, no padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u16 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[usize::from((acc >> bits) & 31)] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[usize::from((acc << (5 - bits)) & 31)] as char);
    }
    out
}

fn base32_decode(s: &str) -> Result<Vec<u8>, ParsePeerIdError> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u16 = 0;
    let mut bits = 0;
    for c in s.chars() {
        let v = match c {
            'a'..='z' => c as u16 - 'a' as u16,
            'A'..='Z' => c as u16 - 'A' as u16,
            '2'..='7' => c as u16 - '2' as u16 + 26,
            other => return Err(ParsePeerIdError::Character(other)),
        };
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return Err(ParsePeerIdError::TrailingBits);
    }
    Ok(out)
}

/// An ed25519 signature, serialized as 64 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 bytes of signature")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Signature, E> {
                let arr: [u8; 64] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Signature(arr))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Our own key pair.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

/// Failure to load or create the identity file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write identity file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("identity file {0} is damaged (expected 32 bytes of secret key)")]
    Damaged(String),
}

impl Identity {
    /// A fresh random identity (tests, benchmarks, ephemeral nodes).
    pub fn generate() -> Self {
        let secret: [u8; 32] = rand::random();
        Self::from_secret(secret)
    }

    /// A deterministic identity from a seed (simulations, reproducible tests).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// Reads `identity.key` from `dir`, creating it (mode 0600) if absent.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let path = dir.join("identity.key");
        let io_err = |source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let secret: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| IdentityError::Damaged(path.display().to_string()))?;
                Ok(Self::from_secret(secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io_err)?;
                let id = Self::generate();
                write_private(&path, id.key.as_bytes()).map_err(io_err)?;
                Ok(id)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        PeerId(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The secret key bytes (for building the TLS certificate).
    // Used by net::transport on main; this branch does not have it yet.
    pub(crate) fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

/// Writes `bytes` to a new file readable only by its owner; never replaces an
/// existing file (a second node racing us keeps its key and we fail loudly).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The 6-digit code both sides of a pair show on first contact, so their users can
/// check (out of band) that no one sits in the middle. Symmetric in its arguments.
pub fn verification_code(a: &PeerId, b: &PeerId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = blake3::Hasher::new_derive_key("peerconnect verification code v1");
    h.update(lo.as_bytes());
    h.update(hi.as_bytes());
    let d = h.finalize();
    let n = u64::from_le_bytes(d.as_bytes()[..8].try_into().expect("8 bytes"));
    format!("{:06}", n % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn peer_id_text_is_52_lowercase_base32_chars_and_round_trips() {
        let id = Identity::generate().peer_id();
        let s = id.to_string();
        assert_eq!(s.len(), PEER_ID_TEXT_LEN);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        assert_eq!(s.parse::<PeerId>().unwrap(), id);
        assert_eq!(id.short(), s[..8]);
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32_encode(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32_encode(b"f"), "my");
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
    }

    #[test]
    fn bad_peer_id_text_is_refused() {
        assert_eq!("abc".parse::<PeerId>(), Err(ParsePeerIdError::Length(3)));
        let bad = "1".repeat(52);
        assert_eq!(bad.parse::<PeerId>(), Err(ParsePeerIdError::Character('1')));
        // 52 chars carry 260 bits; the last 4 must be zero
        let s = format!("{}{}", "a".repeat(51), "b");
        assert_eq!(s.parse::<PeerId>(), Err(ParsePeerIdError::TrailingBits));
    }

    #[test]
    fn identity_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("identity.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn damaged_identity_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("identity.key"), b"short").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Damaged(_))
        ));
    }

    #[test]
    fn verification_code_is_symmetric_six_digits() {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let c = verification_code(&a, &b);
        assert_eq!(c, verification_code(&b, &a));
        assert_eq!(c.len(), 6);
        assert!(c.chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn signatures_verify_only_for_the_signer_and_message() {
        let a = Identity::generate();
        let sig = a.sign(b"hello");
        assert!(a.peer_id().verify(b"hello", &sig));
        assert!(!a.peer_id().verify(b"hellO", &sig));
        assert!(!Identity::generate().peer_id().verify(b"hello", &sig));
    }

    #[test]
    fn peer_id_is_text_in_json_and_bytes_in_postcard() {
        let id = Identity::generate().peer_id();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<PeerId>(&json).unwrap(), id);
        let bin = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bin.len(), 32);
        assert_eq!(postcard::from_bytes::<PeerId>(&bin).unwrap(), id);
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(base32_decode(&base32_encode(&bytes)).unwrap(), bytes);
        }
    }
}
