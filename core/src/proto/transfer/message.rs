//! The frames of a transfer stream, one enum per direction. Each travels as a
//! [`wire`](crate::proto::wire) frame; the `len` bytes of a file that follow a
//! [`ToReceiver::Block`] are raw (no framing, no copy through postcard).

use serde::{Deserialize, Serialize};

use super::manifest::Entry;
use super::{MAX_REASON, ProtocolError, TransferId};

/// Sender → receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToReceiver {
    /// Opens the transfer: `entries` entries follow in [`ToReceiver::Entries`]
    /// batches, adding up to `total_bytes`.
    Offer {
        id: TransferId,
        entries: u32,
        total_bytes: u64,
    },
    Entries(Vec<Entry>),
    /// File `index` follows from byte `offset` (equal to its size: nothing
    /// follows, the receiver already has every byte).
    Start {
        index: u32,
        offset: u64,
    },
    /// `len` raw bytes of the current file follow this frame.
    Block {
        len: u32,
    },
    /// The current file is complete; `blake3` is the hash of the whole file.
    End {
        index: u32,
        blake3: [u8; 32],
    },
    /// The sender cannot send file `index` (it vanished or changed).
    Skip {
        index: u32,
        reason: String,
    },
    /// Every selected file was sent or skipped.
    Done,
}

/// Receiver → sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToSender {
    /// The receiver takes the entries in `selected` (sorted half-open index
    /// ranges); `proofs` [`ToSender::Resume`] / [`ToSender::Have`] frames follow.
    Accept {
        selected: Vec<(u32, u32)>,
        proofs: u32,
    },
    Reject {
        reason: String,
    },
    /// The receiver holds the first `hashes.len()` chunks of file `index` (of
    /// `chunk` bytes each, the last one possibly shorter); each hash is BLAKE3
    /// of one chunk.
    Resume {
        index: u32,
        chunk: u64,
        hashes: Vec<[u8; 32]>,
    },
    /// The receiver already holds all of file `index`, hashing to `blake3`.
    Have {
        index: u32,
        blake3: [u8; 32],
    },
    FileOk {
        index: u32,
    },
    FileFailed {
        index: u32,
        reason: String,
    },
    /// After [`ToReceiver::Done`]: how the selected files ended.
    Summary {
        ok: u32,
        failed: u32,
    },
}

impl ToReceiver {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Offer { .. } => "offer",
            Self::Entries(_) => "entries",
            Self::Start { .. } => "start",
            Self::Block { .. } => "block",
            Self::End { .. } => "end",
            Self::Skip { .. } => "skip",
            Self::Done => "done",
        }
    }
}

impl ToSender {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Accept { .. } => "accept",
            Self::Reject { .. } => "reject",
            Self::Resume { .. } => "resume",
            Self::Have { .. } => "have",
            Self::FileOk { .. } => "file_ok",
            Self::FileFailed { .. } => "file_failed",
            Self::Summary { .. } => "summary",
        }
    }
}

/// Refuses reason strings longer than [`MAX_REASON`].
pub(crate) fn check_reason(r: &str) -> Result<(), ProtocolError> {
    if r.len() > MAX_REASON {
        return Err(ProtocolError::Invalid(format!(
            "reason of {} bytes (limit {MAX_REASON})",
            r.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{decode_exact_frame, encode_frame};
    use proptest::prelude::*;

    fn round_trip<T>(m: &T) -> T
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let mut buf = Vec::new();
        encode_frame(m, &mut buf).unwrap();
        decode_exact_frame(&buf).unwrap()
    }

    #[test]
    fn frames_round_trip() {
        let msgs = vec![
            ToReceiver::Offer {
                id: TransferId(7),
                entries: 2,
                total_bytes: 9,
            },
            ToReceiver::Entries(vec![Entry::dir("a"), Entry::file("a/b", 9)]),
            ToReceiver::Start {
                index: 1,
                offset: 0,
            },
            ToReceiver::Block { len: 9 },
            ToReceiver::End {
                index: 1,
                blake3: [3; 32],
            },
            ToReceiver::Done,
        ];
        for m in msgs {
            assert_eq!(round_trip(&m), m);
        }
        let back = ToSender::Resume {
            index: 1,
            chunk: 1 << 20,
            hashes: vec![[1; 32], [2; 32]],
        };
        assert_eq!(round_trip(&back), back);
    }

    #[test]
    fn a_block_header_is_small() {
        let mut buf = Vec::new();
        encode_frame(&ToReceiver::Block { len: u32::MAX }, &mut buf).unwrap();
        assert!(buf.len() <= 16, "{}", buf.len());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = crate::proto::wire::decode_frame::<ToReceiver>(&bytes);
            let _ = crate::proto::wire::decode_frame::<ToSender>(&bytes);
        }
    }
}
