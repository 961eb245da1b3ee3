//! What an offer holds: entries (files with sizes, folders, empty ones
//! included) by relative path, checked as a whole, and which of them the
//! receiver selected.
//!
//! A [`Manifest`] is valid when every path is a [`SafePath`], no path appears
//! twice, no entry sits below a file, the sizes add up without overflow, and
//! there are at most [`MAX_ENTRIES`] entries. Its [`Manifest::fingerprint`]
//! names "the same files" across attempts: a receiver resumes an interrupted
//! transfer from the same peer with the same fingerprint.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::safe_path::{PathError, SafePath};

/// Most entries one offer may hold (bounds the receiver's memory).
pub const MAX_ENTRIES: usize = 250_000;

/// One file or folder of an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File { size: u64 },
    Dir,
}

impl Entry {
    pub fn file(path: impl Into<String>, size: u64) -> Self {
        Self {
            path: path.into(),
            kind: EntryKind::File { size },
        }
    }

    pub fn dir(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: EntryKind::Dir,
        }
    }

    /// The file's size, or `None` for a folder.
    pub fn size(&self) -> Option<u64> {
        match self.kind {
            EntryKind::File { size } => Some(size),
            EntryKind::Dir => None,
        }
    }
}

/// Why a list of entries is not a valid offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("unsafe path: {0}")]
    Path(#[from] PathError),
    #[error("{0:?} appears twice")]
    Duplicate(String),
    #[error("{0:?} is inside {1:?}, which is a file")]
    UnderFile(String, String),
    #[error("more than {MAX_ENTRIES} entries")]
    TooMany,
    #[error("the sizes add up to more than 2^64 bytes")]
    Overflow,
    #[error("selection: {0}")]
    Selection(String),
}

/// A checked list of entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
    paths: Vec<SafePath>,
    total_bytes: u64,
    files: usize,
}

impl Manifest {
    /// Checks `entries` (in the sender's order, which is the order files travel).
    pub fn new(entries: Vec<Entry>) -> Result<Self, ManifestError> {
        if entries.len() > MAX_ENTRIES {
            return Err(ManifestError::TooMany);
        }
        let mut paths = Vec::with_capacity(entries.len());
        let mut seen = BTreeSet::new();
        let mut file_paths = BTreeSet::new();
        let mut total: u64 = 0;
        let mut files = 0;
        for e in &entries {
            let p = SafePath::parse(&e.path)?;
            if !seen.insert(e.path.as_str()) {
                return Err(ManifestError::Duplicate(e.path.clone()));
            }
            if let EntryKind::File { size } = e.kind {
                total = total.checked_add(size).ok_or(ManifestError::Overflow)?;
                files += 1;
                file_paths.insert(e.path.as_str());
            }
            paths.push(p);
        }
        for p in &paths {
            if let Some(a) = p.ancestors().find(|a| file_paths.contains(a)) {
                return Err(ManifestError::UnderFile(p.as_str().into(), a.into()));
            }
        }
        Ok(Self {
            entries,
            paths,
            total_bytes: total,
            files,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, index: u32) -> Option<&Entry> {
        self.entries.get(index as usize)
    }

    /// The checked path of entry `index`.
    pub fn path(&self, index: u32) -> Option<&SafePath> {
        self.paths.get(index as usize)
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Number of file entries (folders not counted).
    pub fn files(&self) -> usize {
        self.files
    }

    /// The distinct top-level names, in first-appearance order.
    pub fn roots(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.paths
            .iter()
            .map(|p| p.root())
            .filter(|r| seen.insert(*r))
            .collect()
    }

    /// BLAKE3 over every entry (path, kind, size) in order: equal for the same
    /// files offered again.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("peerconnect transfer manifest v1");
        for e in &self.entries {
            h.update(&(e.path.len() as u64).to_le_bytes());
            h.update(e.path.as_bytes());
            match e.kind {
                EntryKind::File { size } => {
                    h.update(&[1]);
                    h.update(&size.to_le_bytes());
                }
                EntryKind::Dir => {
                    h.update(&[2]);
                }
            }
        }
        *h.finalize().as_bytes()
    }

    /// Which entries `selection` picks: a folder picks everything below it.
    pub fn select(&self, selection: &Selection) -> Result<Vec<bool>, ManifestError> {
        let picked_paths: Vec<&str> = match selection {
            Selection::All => return Ok(vec![true; self.len()]),
            Selection::None => return Ok(vec![false; self.len()]),
            Selection::Paths(p) => p.iter().map(|s| s.trim_end_matches('/')).collect(),
            Selection::Entries(ix) => {
                let mut v = Vec::with_capacity(ix.len());
                for &i in ix {
                    let e = self
                        .entry(i)
                        .ok_or_else(|| ManifestError::Selection(format!("no entry number {i}")))?;
                    v.push(e.path.as_str());
                }
                v
            }
        };
        let picked: BTreeSet<&str> = picked_paths.into_iter().collect();
        if let Some(missing) = picked
            .iter()
            .find(|p| !self.paths.iter().any(|q| q.as_str() == **p))
        {
            return Err(ManifestError::Selection(format!("no entry {missing:?}")));
        }
        Ok(self
            .paths
            .iter()
            .map(|p| picked.contains(p.as_str()) || p.ancestors().any(|a| picked.contains(a)))
            .collect())
    }
}

/// What a receiver takes from an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    #[default]
    All,
    None,
    /// Entries by number (index in the offer); a folder brings what is below it.
    Entries(Vec<u32>),
    /// Entries by relative path; a folder brings what is below it.
    Paths(Vec<String>),
}

/// A selection mask as sorted half-open index ranges (compact on the wire).
pub fn mask_to_ranges(mask: &[bool]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &m) in mask.iter().enumerate() {
        match (m, start) {
            (true, None) => start = Some(i as u32),
            (false, Some(s)) => {
                out.push((s, i as u32));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, mask.len() as u32));
    }
    out
}

/// The mask of `len` entries that `ranges` describe; refuses unsorted,
/// overlapping, empty or out-of-range ranges.
pub fn ranges_to_mask(ranges: &[(u32, u32)], len: usize) -> Result<Vec<bool>, ManifestError> {
    let mut mask = vec![false; len];
    let mut next = 0u32;
    for &(a, b) in ranges {
        if a < next || b <= a || b as usize > len {
            return Err(ManifestError::Selection(format!(
                "bad range {a}..{b} of {len} entries"
            )));
        }
        mask[a as usize..b as usize].fill(true);
        next = b;
    }
    Ok(mask)
}

/// Entries of an offer that its preview ([`offer_preview`]) carries at most
/// (the rest is counted): the preview goes to every front end in an event.
pub const OFFER_PREVIEW_ENTRIES: usize = 100;
/// Bytes of names an offer's preview carries at most.
pub const OFFER_PREVIEW_BYTES: usize = 32 << 10;

/// An entry of an offer as front ends show it (the receiver's prompt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferEntry {
    pub path: String,
    /// Bytes (0 for folders).
    pub size: u64,
    pub dir: bool,
}

impl From<&Entry> for OfferEntry {
    fn from(e: &Entry) -> Self {
        Self {
            path: e.path.clone(),
            size: e.size().unwrap_or(0),
            dir: e.size().is_none(),
        }
    }
}

/// The first entries of `m`, at most [`OFFER_PREVIEW_ENTRIES`] and
/// [`OFFER_PREVIEW_BYTES`] of names, as an offer event carries them.
pub fn offer_preview(m: &Manifest) -> Vec<OfferEntry> {
    let mut bytes = 0;
    m.entries()
        .iter()
        .take(OFFER_PREVIEW_ENTRIES)
        .take_while(|e| {
            bytes += e.path.len();
            bytes <= OFFER_PREVIEW_BYTES
        })
        .map(OfferEntry::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        Manifest::new(vec![
            Entry::dir("photos"),
            Entry::file("photos/a.jpg", 10),
            Entry::dir("photos/empty"),
            Entry::file("photos/sub/b.jpg", 0),
            Entry::file("notes.txt", 5),
        ])
        .unwrap()
    }

    #[test]
    fn a_folder_offer_counts_files_bytes_and_roots() {
        let m = sample();
        assert_eq!(m.files(), 3);
        assert_eq!(m.total_bytes(), 15);
        assert_eq!(m.roots(), ["photos", "notes.txt"]);
    }

    #[test]
    fn duplicates_entries_under_files_and_overflow_are_refused() {
        let dup = Manifest::new(vec![Entry::file("a", 1), Entry::dir("a")]);
        assert_eq!(dup, Err(ManifestError::Duplicate("a".into())));
        let under = Manifest::new(vec![Entry::file("a", 1), Entry::file("a/b", 1)]);
        assert!(matches!(under, Err(ManifestError::UnderFile(..))));
        let over = Manifest::new(vec![Entry::file("a", u64::MAX), Entry::file("b", 1)]);
        assert_eq!(over, Err(ManifestError::Overflow));
        let bad = Manifest::new(vec![Entry::file("../etc/passwd", 1)]);
        assert!(matches!(bad, Err(ManifestError::Path(_))));
    }

    #[test]
    fn fingerprint_changes_with_any_entry() {
        let a = sample().fingerprint();
        assert_eq!(a, sample().fingerprint());
        let mut e = sample().entries().to_vec();
        e[1] = Entry::file("photos/a.jpg", 11);
        assert_ne!(a, Manifest::new(e).unwrap().fingerprint());
    }

    #[test]
    fn selecting_a_folder_brings_what_is_below_it() {
        let m = sample();
        let by_path = m.select(&Selection::Paths(vec!["photos/".into()])).unwrap();
        assert_eq!(by_path, [true, true, true, true, false]);
        let by_index = m.select(&Selection::Entries(vec![4, 2])).unwrap();
        assert_eq!(by_index, [false, false, true, false, true]);
        assert!(m.select(&Selection::Entries(vec![9])).is_err());
        assert!(m.select(&Selection::Paths(vec!["nope".into()])).is_err());
        assert_eq!(m.select(&Selection::None).unwrap(), [false; 5]);
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(ranges_to_mask(&[(0, 2), (1, 3)], 5).is_err());
        assert!(ranges_to_mask(&[(2, 2)], 5).is_err());
        assert!(ranges_to_mask(&[(3, 6)], 5).is_err());
        assert!(ranges_to_mask(&[(3, 4), (0, 1)], 5).is_err());
    }

    proptest! {
        #[test]
        fn ranges_round_trip(mask in proptest::collection::vec(any::<bool>(), 0..200)) {
            let r = mask_to_ranges(&mask);
            prop_assert_eq!(ranges_to_mask(&r, mask.len()).unwrap(), mask);
        }
    }
}
