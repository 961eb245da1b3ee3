//! Resuming a file: the receiver proves the prefix it holds, chunk by chunk.
//!
//! A file of `size` bytes is cut into chunks of [`chunk_size`]`(size)` bytes
//! (1 MiB, doubled until the file has at most [`MAX_CHUNKS`]), so a proof is at
//! most 128 KiB of hashes whatever the file size. The receiver hashes every
//! whole chunk of its `.part` (BLAKE3 of the chunk's bytes) and sends the list
//! ([`ToSender::Resume`](super::ToSender::Resume)). The sender hashes its own
//! chunks in order while reading the file and stops at the first that differs:
//! the data goes on from the start of that chunk ([`Proof::offset`]). A torn
//! tail, a flipped byte or a file that changed on either side therefore costs at
//! most the chunks from the first difference on, and is never taken as proven.
//! The whole-file hash check at the end still covers every byte.

use super::ProtocolError;

/// Smallest chunk: files shorter than this always travel whole.
pub const MIN_CHUNK: u64 = 1 << 20;
/// Most chunks a file is cut into.
pub const MAX_CHUNKS: u64 = 4096;

/// The chunk size both sides use for a file of `size` bytes.
pub fn chunk_size(size: u64) -> u64 {
    let mut c = MIN_CHUNK;
    while size.div_ceil(c) > MAX_CHUNKS {
        c *= 2;
    }
    c
}

/// How many chunks of a file of `size` bytes a part of `part_len` bytes holds
/// whole (the last, shorter chunk counts only when the part is complete).
pub fn whole_chunks(size: u64, part_len: u64) -> u64 {
    let c = chunk_size(size);
    if part_len >= size {
        size.div_ceil(c)
    } else {
        part_len / c
    }
}

/// The byte range of chunk `i` of a file of `size` bytes.
pub fn chunk_range(size: u64, i: u64) -> std::ops::Range<u64> {
    let c = chunk_size(size);
    let start = (i * c).min(size);
    start..(start + c).min(size)
}

/// A receiver's claim about one file, as the sender checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    size: u64,
    hashes: Vec<[u8; 32]>,
    matched: u64,
    failed: bool,
}

impl Proof {
    /// Checks the shape of a claim for a file of `size` bytes.
    pub fn new(size: u64, chunk: u64, hashes: Vec<[u8; 32]>) -> Result<Self, ProtocolError> {
        if chunk != chunk_size(size) {
            return Err(ProtocolError::Invalid(format!(
                "resume chunk of {chunk} bytes for a file of {size} (expected {})",
                chunk_size(size)
            )));
        }
        if hashes.len() as u64 > size.div_ceil(chunk) {
            return Err(ProtocolError::Invalid(format!(
                "{} chunk hashes for a file of {size} bytes",
                hashes.len()
            )));
        }
        Ok(Self {
            size,
            hashes,
            matched: 0,
            failed: false,
        })
    }

    /// Chunks claimed.
    pub fn claimed(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// The byte range of the next chunk to compare, or `None` once the
    /// comparison is over (a mismatch, or every claimed chunk matched).
    pub fn next_range(&self) -> Option<std::ops::Range<u64>> {
        (!self.failed && self.matched < self.claimed())
            .then(|| chunk_range(self.size, self.matched))
    }

    /// Compares our hash of the chunk [`Proof::next_range`] named; returns
    /// whether it matched.
    pub fn check(&mut self, ours: &[u8; 32]) -> bool {
        let Some(theirs) = self.hashes.get(self.matched as usize) else {
            return false;
        };
        if theirs == ours {
            self.matched += 1;
            true
        } else {
            self.failed = true;
            false
        }
    }

    /// Where the data resumes: the end of the matched chunks.
    pub fn offset(&self) -> u64 {
        if self.matched == 0 {
            0
        } else {
            chunk_range(self.size, self.matched - 1).end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_so_a_proof_stays_small() {
        assert_eq!(chunk_size(0), MIN_CHUNK);
        assert_eq!(chunk_size(4 << 30), MIN_CHUNK);
        assert_eq!(chunk_size((4 << 30) + 1), 2 * MIN_CHUNK);
        let huge = 1u64 << 44;
        assert!(huge.div_ceil(chunk_size(huge)) <= MAX_CHUNKS);
    }

    #[test]
    fn whole_chunks_ignore_a_torn_tail() {
        let size = 5 * MIN_CHUNK + 10;
        assert_eq!(whole_chunks(size, 0), 0);
        assert_eq!(whole_chunks(size, MIN_CHUNK - 1), 0);
        assert_eq!(whole_chunks(size, 3 * MIN_CHUNK + 7), 3);
        assert_eq!(whole_chunks(size, size), 6);
        assert_eq!(chunk_range(size, 5), 5 * MIN_CHUNK..size);
    }

    #[test]
    fn resume_stops_at_the_first_chunk_that_differs() {
        let size = 4 * MIN_CHUNK;
        let mut p = Proof::new(size, MIN_CHUNK, vec![[1; 32], [2; 32], [9; 32]]).unwrap();
        assert_eq!(p.next_range(), Some(0..MIN_CHUNK));
        assert!(p.check(&[1; 32]));
        assert!(p.check(&[2; 32]));
        assert!(!p.check(&[3; 32]));
        assert_eq!(p.next_range(), None);
        assert_eq!(p.offset(), 2 * MIN_CHUNK);
    }

    #[test]
    fn a_complete_proof_resumes_at_the_end() {
        let size = MIN_CHUNK + 5;
        let mut p = Proof::new(size, MIN_CHUNK, vec![[1; 32], [2; 32]]).unwrap();
        assert!(p.check(&[1; 32]));
        assert_eq!(p.next_range(), Some(MIN_CHUNK..size));
        assert!(p.check(&[2; 32]));
        assert_eq!(p.offset(), size);
    }

    #[test]
    fn malformed_proofs_are_refused() {
        assert!(Proof::new(10, 7, vec![]).is_err());
        assert!(Proof::new(MIN_CHUNK, MIN_CHUNK, vec![[0; 32]; 2]).is_err());
        assert!(Proof::new(0, MIN_CHUNK, vec![[0; 32]]).is_err());
    }
}
