//! Receive-side reassembly of one stream: frames arrive from several lanes in any
//! order, possibly twice (a dead lane's frames are resent, a stalled lane's frame
//! may be hedged on another lane), and leave as the stream's bytes in order.
//!
//! Invariants: bytes below [`Reassembly::contiguous_end`] are either handed out or
//! in the ready queue, in order; out-of-order pieces above it never overlap each
//! other; every byte offset is stored at most once, so memory is bounded by the
//! stream's flow-control window (checked by the caller before insertion) plus a
//! per-piece overhead that the caller bounds with [`Reassembly::fragments`].
//!
//! Tiny in-order pieces are coalesced into one buffer so that a sender of many
//! one-byte frames cannot make the ready queue long.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

/// In-order pieces shorter than this are copied into a shared tail buffer.
const SMALL: usize = 4 * 1024;

/// [`Reassembly::pop`] merges small ready chunks into one of at most this size.
const MERGE_UP_TO: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Reassembly {
    /// Offset of the next byte [`Reassembly::pop`] returns.
    read: u64,
    /// In-order chunks starting at `read`, followed by `tail`.
    ready: VecDeque<Bytes>,
    /// Small in-order pieces, after every chunk of `ready`.
    tail: BytesMut,
    ready_len: u64,
    /// Out-of-order pieces above the contiguous end, keyed by offset.
    pending: BTreeMap<u64, Bytes>,
    pending_len: u64,
}

impl Reassembly {
    /// End of the bytes received without a gap.
    pub fn contiguous_end(&self) -> u64 {
        self.read + self.ready_len
    }

    /// Offset of the next byte to hand out.
    pub fn read_offset(&self) -> u64 {
        self.read
    }

    /// Bytes held: ready plus out of order.
    pub fn buffered(&self) -> u64 {
        self.ready_len + self.pending_len
    }

    /// Out-of-order pieces held.
    pub fn fragments(&self) -> usize {
        self.pending.len()
    }

    /// Whether [`Reassembly::pop`] would return something.
    pub fn has_ready(&self) -> bool {
        self.ready_len > 0
    }

    /// Stores bytes `offset..offset + data.len()`, ignoring parts already held or
    /// handed out. Returns whether the contiguous end moved.
    pub fn insert(&mut self, offset: u64, data: Bytes) -> bool {
        let end = offset + data.len() as u64;
        let ce = self.contiguous_end();
        if end <= ce || data.is_empty() {
            return false;
        }
        let (offset, data) = if offset < ce {
            (ce, data.slice((ce - offset) as usize..))
        } else {
            (offset, data)
        };
        if offset > ce {
            self.insert_pending(offset, data);
            return false;
        }
        self.push_ready(data);
        // Pull now-contiguous pieces out of the pending map.
        loop {
            let ce = self.contiguous_end();
            let Some(entry) = self.pending.first_entry() else {
                break;
            };
            if *entry.key() > ce {
                break;
            }
            let start = *entry.key();
            let piece = entry.remove();
            self.pending_len -= piece.len() as u64;
            let piece_end = start + piece.len() as u64;
            if piece_end > ce {
                self.push_ready(piece.slice((ce - start) as usize..));
            }
        }
        true
    }

    /// Inserts only the parts of `data` (at `offset`) not covered by held pieces.
    fn insert_pending(&mut self, offset: u64, data: Bytes) {
        let end = offset + data.len() as u64;
        let mut cur = offset;
        if let Some((&k, v)) = self.pending.range(..=cur).next_back() {
            cur = cur.max(k + v.len() as u64);
        }
        while cur < end {
            let next = self
                .pending
                .range(cur..)
                .next()
                .map(|(&k, v)| (k, k + v.len() as u64));
            let (gap_end, after) = match next {
                Some((k, k_end)) if k < end => (k, k_end),
                _ => (end, end),
            };
            if gap_end > cur {
                let piece = data.slice((cur - offset) as usize..(gap_end - offset) as usize);
                self.pending_len += piece.len() as u64;
                self.pending.insert(cur, piece);
            }
            cur = after;
        }
    }

    fn push_ready(&mut self, data: Bytes) {
        self.ready_len += data.len() as u64;
        if data.len() < SMALL {
            self.tail.extend_from_slice(&data);
        } else {
            if !self.tail.is_empty() {
                self.ready.push_back(self.tail.split().freeze());
            }
            self.ready.push_back(data);
        }
    }

    /// Hands out the next in-order chunk, merging small ones.
    pub fn pop(&mut self) -> Option<Bytes> {
        let first = match self.ready.pop_front() {
            Some(b) => b,
            None if !self.tail.is_empty() => self.tail.split().freeze(),
            None => return None,
        };
        let chunk = if first.len() < SMALL && (!self.ready.is_empty() || !self.tail.is_empty()) {
            let mut merged = BytesMut::with_capacity(MERGE_UP_TO);
            merged.extend_from_slice(&first);
            while let Some(next) = self.ready.front() {
                if merged.len() + next.len() > MERGE_UP_TO {
                    break;
                }
                merged.extend_from_slice(next);
                self.ready.pop_front();
            }
            if self.ready.is_empty() && merged.len() + self.tail.len() <= MERGE_UP_TO {
                merged.extend_from_slice(&self.tail.split());
            }
            merged.freeze()
        } else {
            first
        };
        self.read += chunk.len() as u64;
        self.ready_len -= chunk.len() as u64;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(r: &mut Reassembly) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = r.pop() {
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn out_of_order_pieces_come_out_in_order() {
        let mut r = Reassembly::default();
        assert!(!r.insert(5, Bytes::from_static(b"fgh")));
        assert!(!r.insert(3, Bytes::from_static(b"de")));
        assert_eq!(r.fragments(), 2);
        assert!(r.insert(0, Bytes::from_static(b"abc")));
        assert_eq!(drain(&mut r), b"abcdefgh");
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.fragments(), 0);
    }

    #[test]
    fn overlapping_duplicates_are_stored_once() {
        let mut r = Reassembly::default();
        r.insert(4, Bytes::from_static(b"efgh"));
        r.insert(2, Bytes::from_static(b"cdefghij"));
        assert_eq!(r.buffered(), 8);
        r.insert(0, Bytes::from_static(b"abcd"));
        assert_eq!(drain(&mut r), b"abcdefghij");
        r.insert(3, Bytes::from_static(b"xxxx"));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn many_tiny_in_order_pieces_make_one_chunk() {
        let mut r = Reassembly::default();
        for i in 0..1000u64 {
            r.insert(i, Bytes::copy_from_slice(&[i as u8]));
        }
        assert!(r.ready.is_empty());
        let c = r.pop().unwrap();
        assert_eq!(c.len(), 1000);
        assert_eq!(r.pop(), None);
    }

    proptest! {
        /// Any arrival order, with any duplication and overlap, gives back
        /// exactly the bytes written, in order.
        #[test]
        fn any_arrival_order_with_duplicates_gives_back_the_bytes(
            len in 1usize..20_000,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..120),
            dups in proptest::collection::vec((any::<prop::sample::Index>(), 1usize..9_000), 0..20),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let bytes = Bytes::from(data.clone());
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len)).collect();
            points.extend([0, len]);
            points.sort_unstable();
            points.dedup();
            let mut pieces: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            for (at, l) in &dups {
                let s = at.index(len);
                pieces.push((s, (s + l).min(len)));
            }
            let n = pieces.len();
            for o in &order {
                pieces.swap(o.index(n), n - 1 - o.index(n).min(n - 1));
            }
            let mut r = Reassembly::default();
            let mut out = Vec::new();
            for (i, (s, e)) in pieces.iter().enumerate() {
                r.insert(*s as u64, bytes.slice(*s..*e));
                if i % 3 == 0 {
                    out.extend(drain(&mut r));
                }
                prop_assert!(r.buffered() <= len as u64);
            }
            out.extend(drain(&mut r));
            prop_assert_eq!(out, data);
            prop_assert_eq!(r.fragments(), 0);
        }
    }
}
