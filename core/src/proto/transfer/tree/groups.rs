//! A fixed-size set of group numbers (a bitmap), and its wire form per stripe.
//!
//! Sizes are bounded by [`MAX_GROUPS`](crate::proto::transfer::verified::MAX_GROUPS)
//! groups, so a set is at most 128 KiB; a bitmap from a peer is accepted only
//! if its length is exactly what the stripe needs and no bit past the end is
//! set.

use super::{Stripe, stripe_len};

/// A set of numbers in `0..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    words: Vec<u64>,
    len: u32,
    count: u32,
}

/// A bitmap from a peer that does not fit its stripe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bitmap of {got} bytes for {positions} positions")]
pub struct BitmapError {
    pub got: usize,
    pub positions: u32,
}

impl Groups {
    /// The empty set over `0..len`.
    pub fn new(len: u32) -> Self {
        Self {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
            count: 0,
        }
    }

    /// The full set over `0..len`.
    pub fn full(len: u32) -> Self {
        let mut g = Self::new(len);
        for w in &mut g.words {
            *w = u64::MAX;
        }
        if !len.is_multiple_of(64)
            && let Some(last) = g.words.last_mut()
        {
            *last = (1u64 << (len % 64)) - 1;
        }
        g.count = len;
        g
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Members of the set.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Adds `i`; returns whether it was new. Panics past the end.
    pub fn insert(&mut self, i: u32) -> bool {
        assert!(i < self.len, "{i} outside 0..{}", self.len);
        let w = &mut self.words[(i / 64) as usize];
        let bit = 1 << (i % 64);
        let new = *w & bit == 0;
        *w |= bit;
        self.count += new as u32;
        new
    }

    /// The members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }

    /// The wire bitmap of stripe `stripe` of this set of groups: bit `j` is
    /// group `stripe + j × stripes`.
    pub fn stripe_bitmap(&self, stripe: Stripe, stripes: u8) -> Vec<u8> {
        let n = stripe_len(self.len, stripe, stripes);
        let mut out = vec![0u8; (n as usize).div_ceil(8)];
        for j in 0..n {
            if self.contains(stripe as u32 + j * stripes as u32) {
                out[(j / 8) as usize] |= 1 << (j % 8);
            }
        }
        out
    }

    /// Reads a wire bitmap over `positions` positions.
    pub fn from_bitmap(positions: u32, bytes: &[u8]) -> Result<Self, BitmapError> {
        let err = BitmapError {
            got: bytes.len(),
            positions,
        };
        if bytes.len() != (positions as usize).div_ceil(8) {
            return Err(err);
        }
        if !positions.is_multiple_of(8)
            && let Some(&last) = bytes.last()
            && last >> (positions % 8) != 0
        {
            return Err(err);
        }
        let mut g = Self::new(positions);
        for j in 0..positions {
            if bytes[(j / 8) as usize] & (1 << (j % 8)) != 0 {
                g.insert(j);
            }
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_sets_hold_exactly_their_range() {
        for len in [0, 1, 63, 64, 65, 200] {
            let g = Groups::full(len);
            assert_eq!(g.count(), len);
            assert_eq!(g.iter().count() as u32, len);
            assert!(!g.contains(len));
        }
    }

    #[test]
    fn bitmaps_with_stray_bits_or_wrong_lengths_are_refused() {
        assert!(Groups::from_bitmap(10, &[0xff]).is_err());
        assert!(Groups::from_bitmap(10, &[0xff, 0x03, 0]).is_err());
        assert!(Groups::from_bitmap(10, &[0xff, 0x04]).is_err());
        assert_eq!(Groups::from_bitmap(10, &[0xff, 0x03]).unwrap().count(), 10);
        assert_eq!(Groups::from_bitmap(0, &[]).unwrap().count(), 0);
    }

    proptest! {
        #[test]
        fn stripe_bitmaps_round_trip(
            members in proptest::collection::btree_set(0u32..300, 0..100),
            stripes in 1u8..=8,
        ) {
            let mut g = Groups::new(300);
            for &m in &members {
                g.insert(m);
            }
            for s in 0..stripes {
                let n = stripe_len(300, s, stripes);
                let back = Groups::from_bitmap(n, &g.stripe_bitmap(s, stripes)).unwrap();
                for j in 0..n {
                    prop_assert_eq!(back.contains(j), members.contains(&(s as u32 + j * stripes as u32)));
                }
            }
        }
    }
}
