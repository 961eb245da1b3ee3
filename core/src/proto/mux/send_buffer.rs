//! Send side of one stream: the bytes the application wrote, kept until a lane
//! acknowledges them, so that a dead lane's frames can be cut again from here.
//!
//! Offsets: `una <= sent <= written`. Bytes below `una` are acknowledged and
//! dropped; `una..sent` went out at least once (some of it may be acknowledged,
//! tracked as ranges in `acked`); `sent..written` never went out. The buffer holds
//! `written - una` bytes, which the driver bounds with its per-stream budget.
//!
//! Large writes are kept as the [`Bytes`] the driver handed in and frames are
//! slices of them (no copy). Small writes are appended to a tail buffer and frozen
//! when a frame is cut from it, so a stream of small writes still makes frames as
//! large as what accumulated while the lanes were busy. A frame never spans two
//! chunks, so a resend can find its bytes by offset.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

/// Writes shorter than this are coalesced into the tail.
const SMALL_WRITE: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct SendBuffer {
    /// Frozen chunks with their start offsets, covering `una_floor..tail_start`.
    chunks: VecDeque<(u64, Bytes)>,
    tail: BytesMut,
    written: u64,
    sent: u64,
    una: u64,
    /// Acknowledged ranges above `una` (start -> end), disjoint and not adjacent.
    acked: BTreeMap<u64, u64>,
}

impl SendBuffer {
    pub fn write(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if data.len() < SMALL_WRITE {
            self.tail.extend_from_slice(&data);
        } else {
            self.freeze_tail();
            self.chunks.push_back((self.written, data.clone()));
        }
        self.written += data.len() as u64;
    }

    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            let start = self.written - self.tail.len() as u64;
            self.chunks.push_back((start, self.tail.split().freeze()));
        }
    }

    /// Total bytes written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Offset of the first byte never sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Everything below this offset is acknowledged.
    pub fn una(&self) -> u64 {
        self.una
    }

    /// Bytes held (written but not acknowledged).
    pub fn buffered(&self) -> u64 {
        self.written - self.una
    }

    /// Bytes never sent.
    pub fn unsent(&self) -> u64 {
        self.written - self.sent
    }

    /// Cuts the next new frame: at most `max` bytes and not past `limit` (the
    /// peer's credit). Returns its offset and bytes, or `None` if nothing may go.
    pub fn next_frame(&mut self, max: usize, limit: u64) -> Option<(u64, Bytes)> {
        let room = limit.saturating_sub(self.sent).min(max as u64);
        if room == 0 || self.sent == self.written {
            return None;
        }
        if self.sent >= self.written - self.tail.len() as u64 {
            self.freeze_tail();
        }
        let offset = self.sent;
        let chunk = self.slice(offset, room as usize);
        self.sent += chunk.len() as u64;
        Some((offset, chunk))
    }

    /// Up to `len` bytes from `offset`, stopping at the end of the chunk holding
    /// `offset`. `offset` must be in `una..sent`.
    fn slice(&self, offset: u64, len: usize) -> Bytes {
        let i = self.chunks.partition_point(|(s, _)| *s <= offset) - 1;
        let (start, chunk) = &self.chunks[i];
        let from = (offset - start) as usize;
        let to = (from + len).min(chunk.len());
        chunk.slice(from..to)
    }

    /// Bytes `offset..offset + len` for a resend, or `None` if all are
    /// acknowledged already. The range must have been sent, by one frame.
    pub fn resend(&self, offset: u64, len: usize) -> Option<Bytes> {
        if self.is_acked(offset, len as u64) {
            return None;
        }
        Some(self.slice(offset, len))
    }

    /// Whether every byte of the range is acknowledged.
    pub fn is_acked(&self, offset: u64, len: u64) -> bool {
        let end = offset + len;
        if end <= self.una {
            return true;
        }
        self.acked
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, &e)| e >= end)
    }

    /// Records that a lane acknowledged `offset..offset + len`. Returns the bytes
    /// released (how far `una` moved).
    pub fn on_acked(&mut self, offset: u64, len: u64) -> u64 {
        let (mut start, mut end) = (offset.max(self.una), offset + len);
        if end <= start {
            return 0;
        }
        // Merge with every range that overlaps or touches [start, end).
        while let Some((&s, &e)) = self.acked.range(..=end).next_back() {
            if e < start {
                break;
            }
            self.acked.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        if start > self.una {
            self.acked.insert(start, end);
            return 0;
        }
        let old = self.una;
        self.una = end;
        while let Some((s, c)) = self.chunks.front() {
            if s + c.len() as u64 > self.una {
                break;
            }
            self.chunks.pop_front();
        }
        self.una - old
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_are_slices_and_never_pass_the_credit() {
        let mut b = SendBuffer::default();
        let big = Bytes::from(vec![1u8; 100_000]);
        b.write(big.clone());
        let (o, f) = b.next_frame(65_536, 70_000).unwrap();
        assert_eq!((o, f.len()), (0, 65_536));
        assert_eq!(f.as_ptr(), big.as_ptr());
        let (o, f) = b.next_frame(65_536, 70_000).unwrap();
        assert_eq!((o, f.len()), (65_536, 4_464));
        assert_eq!(b.next_frame(65_536, 70_000), None);
    }

    #[test]
    fn small_writes_coalesce_into_one_frame() {
        let mut b = SendBuffer::default();
        for _ in 0..100 {
            b.write(Bytes::from_static(b"0123456789"));
        }
        let (_, f) = b.next_frame(65_536, u64::MAX).unwrap();
        assert_eq!(f.len(), 1000);
        b.write(Bytes::from_static(b"more"));
        assert_eq!(
            b.next_frame(65_536, u64::MAX).unwrap(),
            (1000, Bytes::from_static(b"more"))
        );
    }

    #[test]
    fn acks_in_any_order_release_the_buffer_once() {
        let mut b = SendBuffer::default();
        b.write(Bytes::from(vec![0u8; 30_000]));
        while b.next_frame(10_000, u64::MAX).is_some() {}
        assert_eq!(b.on_acked(20_000, 10_000), 0);
        assert_eq!(b.on_acked(10_000, 10_000), 0);
        assert!(b.is_acked(10_000, 20_000));
        assert_eq!(b.resend(0, 10_000).map(|f| f.len()), Some(10_000));
        assert_eq!(b.on_acked(0, 10_000), 30_000);
        assert_eq!(b.on_acked(0, 10_000), 0);
        assert_eq!(b.buffered(), 0);
        assert!(b.chunks.is_empty());
    }

    proptest! {
        #[test]
        fn resent_frames_carry_the_original_bytes(
            writes in proptest::collection::vec(1usize..40_000, 1..10),
            max in 1usize..70_000,
            ack_order in proptest::collection::vec(any::<prop::sample::Index>(), 0..50),
        ) {
            let mut b = SendBuffer::default();
            let mut all = Vec::new();
            for (i, w) in writes.iter().enumerate() {
                let chunk: Vec<u8> = (0..*w).map(|j| (i * 31 + j) as u8).collect();
                all.extend_from_slice(&chunk);
                b.write(chunk.into());
            }
            let mut frames = Vec::new();
            while let Some((o, f)) = b.next_frame(max, u64::MAX) {
                prop_assert_eq!(&f[..], &all[o as usize..o as usize + f.len()]);
                frames.push((o, f.len()));
            }
            prop_assert_eq!(b.sent(), all.len() as u64);
            let mut released = 0;
            for i in &ack_order {
                let (o, l) = frames[i.index(frames.len())];
                if let Some(f) = b.resend(o, l) {
                    prop_assert_eq!(&f[..], &all[o as usize..o as usize + l]);
                }
                released += b.on_acked(o, l as u64);
            }
            for (o, l) in &frames {
                released += b.on_acked(*o, *l as u64);
            }
            prop_assert_eq!(released, all.len() as u64);
            prop_assert_eq!(b.buffered(), 0);
        }
    }
}
