//! Verified streaming: every group of a file is checked against the file's
//! BLAKE3 hash before it is written or forwarded, so a relay can never pass on
//! corrupted bytes undetected.
//!
//! BLAKE3 is a Merkle tree over 1 KiB chunks (BLAKE3 paper, section 2.1). A
//! file is cut into *groups* of a power-of-two number of chunks
//! ([`Geometry`]), aligned on their size; each group is then a complete subtree
//! of the file's BLAKE3 tree and has a chaining value of its own
//! ([`group_digest`], computed with `blake3::hazmat`). The *outline* of a file
//! is the list of its group digests ([`Outline`]): 32 bytes per group, from
//! which the root is recomputed by merging subtrees left to right exactly as
//! BLAKE3 does. This is the approach of Bao and `bao-tree` ("chunk groups"),
//! keeping only the leaves of the outboard: the parent nodes are recomputed,
//! not sent.
//!
//! # How it is used
//!
//! 1. The sender hashes the file once, group by group ([`OutlineBuilder`]),
//!    and gets its root (equal to `blake3::hash` of the file) and the outline.
//! 2. A receiver learns the root from the sender itself (in the tree's
//!    `Start`), and the outline from whichever node serves it first; it
//!    accepts the outline only if it hashes up to that root
//!    ([`Outline::new`]).
//! 3. From then on each group is verified on its own, in any order, from any
//!    source: hash its bytes at its offset ([`group_digest`]) and compare with
//!    the outline ([`Outline::check`]). Groups from several parents, after a
//!    repair, or re-fetched after a bad one all verify the same way.
//!
//! # Invariants
//!
//! - An outline is only ever built from leaves that hash to its root.
//! - A group passes [`Outline::check`] only if its bytes (and its length) are
//!   exactly the file's: BLAKE3's collision resistance covers every byte,
//!   and the chunk counters bind each group to its offset.
//! - A file of one group is its own root (BLAKE3 finalizes a lone subtree as
//!   the root), so its single digest is `blake3::hash` of its bytes.
//! - Sizes are bounded: at most [`MAX_GROUPS`] groups, so nothing a peer
//!   claims about a file makes us allocate more than a few MiB for it.

use std::ops::Range;

use blake3::hazmat::{HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};

/// BLAKE3's chunk, the unit of its tree.
pub const CHUNK: u64 = blake3::CHUNK_LEN as u64;

/// Smallest group: 256 KiB (256 chunks).
pub const MIN_GROUP: u64 = 256 << 10;
/// Largest group: what a receiver buffers per incoming stream before it can
/// verify and write.
pub const MAX_GROUP: u64 = 4 << 20;
/// Groups grow (up to [`MAX_GROUP`]) until a file has at most this many.
pub const TARGET_GROUPS: u64 = 16_384;
/// Most groups a file may have (4 TiB at [`MAX_GROUP`]); bounds every
/// per-file allocation (outline, group bitmaps).
pub const MAX_GROUPS: u64 = 1 << 20;

/// Why an outline or a group is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("group size {0} is not a power of two between 16 KiB and {MAX_GROUP}")]
    GroupSize(u64),
    #[error("a file of {size} bytes has {groups} groups of {group} (limit {MAX_GROUPS})")]
    TooManyGroups { size: u64, group: u64, groups: u64 },
    #[error("outline of {got} digests for a file of {want} groups")]
    OutlineLength { got: usize, want: u32 },
    #[error("the outline does not hash to the file's root")]
    OutlineRoot,
    #[error("group {index} has {got} bytes, expected {want}")]
    GroupLength { index: u32, got: usize, want: u64 },
    #[error("group {index} does not exist (the file has {groups})")]
    NoSuchGroup { index: u32, groups: u32 },
}

/// How a file of `size` bytes is cut into groups of `group` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    size: u64,
    group: u64,
    groups: u32,
}

impl Geometry {
    /// The default cut of a file of `size` bytes: [`MIN_GROUP`], doubled up to
    /// [`MAX_GROUP`] until there are at most [`TARGET_GROUPS`] groups.
    pub fn for_size(size: u64) -> Result<Self, VerifyError> {
        let mut group = MIN_GROUP;
        while size.div_ceil(group) > TARGET_GROUPS && group < MAX_GROUP {
            group *= 2;
        }
        Self::new(size, group)
    }

    /// A cut with an explicit group size (a power of two of at least 16
    /// chunks and at most [`MAX_GROUP`]), as a sender may choose and a
    /// receiver must check.
    pub fn new(size: u64, group: u64) -> Result<Self, VerifyError> {
        if !group.is_power_of_two() || !(16 * CHUNK..=MAX_GROUP).contains(&group) {
            return Err(VerifyError::GroupSize(group));
        }
        let groups = size.div_ceil(group);
        if groups > MAX_GROUPS {
            return Err(VerifyError::TooManyGroups {
                size,
                group,
                groups,
            });
        }
        Ok(Self {
            size,
            group,
            groups: groups as u32,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per group (the last may be shorter).
    pub fn group_size(&self) -> u64 {
        self.group
    }

    /// Number of groups (0 for an empty file).
    pub fn groups(&self) -> u32 {
        self.groups
    }

    /// The byte range of group `index`.
    pub fn range(&self, index: u32) -> Range<u64> {
        let start = (index as u64 * self.group).min(self.size);
        start..(start + self.group).min(self.size)
    }

    /// The length of group `index`.
    pub fn len_of(&self, index: u32) -> u64 {
        let r = self.range(index);
        r.end - r.start
    }

    /// Bytes of an outline of this file on the wire (its digests).
    pub fn outline_bytes(&self) -> u64 {
        self.groups as u64 * 32
    }
}

/// The digest of group `index` of a file cut by `geo`: the chaining value of
/// its subtree, or the root hash when the file is a single group. Refuses
/// bytes of the wrong length (a truncated or padded group never verifies).
pub fn group_digest(geo: &Geometry, index: u32, bytes: &[u8]) -> Result<[u8; 32], VerifyError> {
    if index >= geo.groups {
        return Err(VerifyError::NoSuchGroup {
            index,
            groups: geo.groups,
        });
    }
    let want = geo.len_of(index);
    if bytes.len() as u64 != want {
        return Err(VerifyError::GroupLength {
            index,
            got: bytes.len(),
            want,
        });
    }
    Ok(digest_unchecked(geo, index, bytes))
}

fn digest_unchecked(geo: &Geometry, index: u32, bytes: &[u8]) -> [u8; 32] {
    if geo.groups == 1 {
        return *blake3::hash(bytes).as_bytes();
    }
    let mut h = blake3::Hasher::new();
    h.set_input_offset(geo.range(index).start);
    h.update(bytes);
    h.finalize_non_root()
}

/// The root hash of a file from its group digests (`leaves.len()` ≥ 1):
/// BLAKE3's left-balanced tree, whose left subtree always holds the largest
/// power-of-two number of groups that leaves at least one on the right.
fn root_of(leaves: &[[u8; 32]]) -> [u8; 32] {
    fn subtree(leaves: &[[u8; 32]], root: bool) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        // the largest power of two below the number of leaves
        let left = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
        let l = subtree(&leaves[..left], false);
        let r = subtree(&leaves[left..], false);
        if root {
            *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
        } else {
            merge_subtrees_non_root(&l, &r, Mode::Hash)
        }
    }
    subtree(leaves, true)
}

/// A file's root and group digests, checked against each other.
#[derive(Clone, PartialEq, Eq)]
pub struct Outline {
    geo: Geometry,
    root: [u8; 32],
    leaves: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Outline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outline")
            .field("geo", &self.geo)
            .field("root", &blake3::Hash::from_bytes(self.root).to_hex())
            .finish_non_exhaustive()
    }
}

impl Outline {
    /// Accepts `leaves` as the outline of the file `geo` describes only if
    /// they hash to `root`.
    pub fn new(geo: Geometry, root: [u8; 32], leaves: Vec<[u8; 32]>) -> Result<Self, VerifyError> {
        if leaves.len() as u64 != geo.groups as u64 {
            return Err(VerifyError::OutlineLength {
                got: leaves.len(),
                want: geo.groups,
            });
        }
        let computed = if leaves.is_empty() {
            *blake3::hash(&[]).as_bytes()
        } else {
            root_of(&leaves)
        };
        if computed != root {
            return Err(VerifyError::OutlineRoot);
        }
        Ok(Self { geo, root, leaves })
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The file's BLAKE3 hash.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// The group digests, in order.
    pub fn leaves(&self) -> &[[u8; 32]] {
        &self.leaves
    }

    /// Whether `digest` (from [`group_digest`]) is that of group `index`.
    pub fn check(&self, index: u32, digest: &[u8; 32]) -> bool {
        self.leaves.get(index as usize) == Some(digest)
    }

    /// Hashes `bytes` as group `index` and checks them.
    pub fn verify(&self, index: u32, bytes: &[u8]) -> Result<(), VerifyError> {
        let d = group_digest(&self.geo, index, bytes)?;
        if self.check(index, &d) {
            Ok(())
        } else {
            Err(VerifyError::OutlineRoot)
        }
    }
}

/// Builds a file's outline from its bytes, fed in order in pieces of any
/// size (the sender's one hashing pass).
#[derive(Debug)]
pub struct OutlineBuilder {
    geo: Geometry,
    leaves: Vec<[u8; 32]>,
    current: blake3::Hasher,
    in_group: u64,
    fed: u64,
}

impl OutlineBuilder {
    pub fn new(geo: Geometry) -> Self {
        Self {
            geo,
            leaves: Vec::with_capacity(geo.groups as usize),
            current: Self::hasher_at(&geo, 0),
            in_group: 0,
            fed: 0,
        }
    }

    fn hasher_at(geo: &Geometry, index: u32) -> blake3::Hasher {
        let mut h = blake3::Hasher::new();
        if geo.groups > 1 {
            h.set_input_offset(geo.range(index).start);
        }
        h
    }

    /// Feeds the next bytes of the file. Panics past the file's size (the
    /// caller reads the file it measured).
    pub fn update(&mut self, mut bytes: &[u8]) {
        assert!(
            self.fed + bytes.len() as u64 <= self.geo.size,
            "more bytes than the file's size"
        );
        self.fed += bytes.len() as u64;
        while !bytes.is_empty() {
            let index = self.leaves.len() as u32;
            let room = (self.geo.len_of(index) - self.in_group) as usize;
            let take = room.min(bytes.len());
            self.current.update(&bytes[..take]);
            self.in_group += take as u64;
            bytes = &bytes[take..];
            if self.in_group == self.geo.len_of(index) {
                let digest = if self.geo.groups == 1 {
                    *self.current.finalize().as_bytes()
                } else {
                    self.current.finalize_non_root()
                };
                self.leaves.push(digest);
                if index + 1 < self.geo.groups {
                    self.current = Self::hasher_at(&self.geo, index + 1);
                }
                self.in_group = 0;
            }
        }
    }

    /// The outline, once every byte was fed; `None` if some are missing.
    pub fn finish(self) -> Option<Outline> {
        if self.fed != self.geo.size {
            return None;
        }
        let root = if self.leaves.is_empty() {
            *blake3::hash(&[]).as_bytes()
        } else {
            root_of(&self.leaves)
        };
        Some(Outline {
            geo: self.geo,
            root,
            leaves: self.leaves,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        let mut v = vec![0; len];
        let mut x = seed as u32 | 1;
        for b in &mut v {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        v
    }

    fn outline_of(bytes: &[u8], group: u64) -> Outline {
        let geo = Geometry::new(bytes.len() as u64, group).unwrap();
        let mut b = OutlineBuilder::new(geo);
        for piece in bytes.chunks(7_777) {
            b.update(piece);
        }
        b.finish().unwrap()
    }

    const SMALL: u64 = 16 * CHUNK;

    #[test]
    fn the_outline_root_is_the_files_blake3_hash() {
        for len in [
            0,
            1,
            1024,
            SMALL as usize,
            SMALL as usize + 1,
            3 * SMALL as usize,
            5 * SMALL as usize - 3,
            8 * SMALL as usize,
            13 * SMALL as usize + 100,
        ] {
            let bytes = data(len, 3);
            let o = outline_of(&bytes, SMALL);
            assert_eq!(o.root(), *blake3::hash(&bytes).as_bytes(), "len {len}");
            assert_eq!(
                Outline::new(*o.geometry(), o.root(), o.leaves().to_vec()),
                Ok(o)
            );
        }
    }

    #[test]
    fn every_group_verifies_alone_in_any_order() {
        let bytes = data(7 * SMALL as usize + 5, 9);
        let o = outline_of(&bytes, SMALL);
        let geo = *o.geometry();
        for i in (0..geo.groups()).rev() {
            let r = geo.range(i);
            o.verify(i, &bytes[r.start as usize..r.end as usize])
                .unwrap();
        }
    }

    #[test]
    fn a_group_of_the_wrong_length_or_place_is_refused() {
        let bytes = data(4 * SMALL as usize, 1);
        let o = outline_of(&bytes, SMALL);
        let g0 = &bytes[..SMALL as usize];
        // the same bytes at another offset hash differently
        assert!(o.verify(1, g0).is_err());
        assert!(matches!(
            o.verify(0, &g0[1..]),
            Err(VerifyError::GroupLength { .. })
        ));
        assert!(matches!(
            o.verify(9, g0),
            Err(VerifyError::NoSuchGroup { .. })
        ));
    }

    #[test]
    fn swapped_or_missing_leaves_are_refused() {
        let bytes = data(6 * SMALL as usize, 4);
        let o = outline_of(&bytes, SMALL);
        let mut leaves = o.leaves().to_vec();
        leaves.swap(1, 2);
        assert_eq!(
            Outline::new(*o.geometry(), o.root(), leaves),
            Err(VerifyError::OutlineRoot)
        );
        let mut short = o.leaves().to_vec();
        short.pop();
        assert!(matches!(
            Outline::new(*o.geometry(), o.root(), short),
            Err(VerifyError::OutlineLength { .. })
        ));
    }

    #[test]
    fn group_sizes_grow_with_the_file_within_bounds() {
        assert_eq!(Geometry::for_size(0).unwrap().groups(), 0);
        assert_eq!(Geometry::for_size(1).unwrap().group_size(), MIN_GROUP);
        let gib = Geometry::for_size(1 << 30).unwrap();
        assert_eq!((gib.group_size(), gib.groups()), (MIN_GROUP, 4096));
        assert_eq!(gib.outline_bytes(), 128 << 10);
        let big = Geometry::for_size(100 << 30).unwrap();
        assert_eq!(big.group_size(), MAX_GROUP);
        assert!(Geometry::for_size(u64::MAX).is_err());
        assert!(Geometry::new(10, 3 * CHUNK).is_err());
        assert!(Geometry::new(10, CHUNK).is_err());
        assert!(Geometry::new(10, 2 * MAX_GROUP).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any single flipped bit, in a group or in the outline, is caught; the
        /// bytes that do verify are the file.
        #[test]
        fn any_flipped_bit_is_caught(
            len in 1usize..(9 * SMALL as usize),
            seed in any::<u8>(),
            pick in any::<u64>(),
            bit in 0u8..8,
        ) {
            let bytes = data(len, seed);
            let o = outline_of(&bytes, SMALL);
            let geo = *o.geometry();
            let mut rebuilt = Vec::with_capacity(len);
            for i in 0..geo.groups() {
                let r = geo.range(i);
                let g = &bytes[r.start as usize..r.end as usize];
                prop_assert!(o.verify(i, g).is_ok());
                rebuilt.extend_from_slice(g);
            }
            prop_assert_eq!(&rebuilt, &bytes);

            // a bit of the data
            let pos = (pick % len as u64) as usize;
            let mut bad = bytes.clone();
            bad[pos] ^= 1 << bit;
            let i = (pos as u64 / geo.group_size()) as u32;
            let r = geo.range(i);
            prop_assert!(o.verify(i, &bad[r.start as usize..r.end as usize]).is_err());

            // a bit of the outline (a leaf) or of the root
            let mut leaves = o.leaves().to_vec();
            let at = (pick % (leaves.len() as u64 * 32 + 32)) as usize;
            let mut root = o.root();
            if at < leaves.len() * 32 {
                leaves[at / 32][at % 32] ^= 1 << bit;
            } else {
                root[at % 32] ^= 1 << bit;
            }
            prop_assert_eq!(Outline::new(geo, root, leaves), Err(VerifyError::OutlineRoot));
        }
    }
}
