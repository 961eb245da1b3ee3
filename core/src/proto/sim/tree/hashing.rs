//! What verified streaming costs per group size: the outline against a Bao
//! outboard and per-range proofs, and hashing speed. Wall time on this
//! machine, not a simulation; `peerconnect sim tree --hashing` prints it.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::proto::transfer::verified::{Geometry, Outline, OutlineBuilder};

/// The cost of verified streaming at one group size, per GiB of file.
#[derive(Debug, Clone, Serialize)]
pub struct HashCost {
    pub group_bytes: u64,
    pub groups_per_gib: u64,
    /// Group digests sent up front (this design).
    pub outline_bytes_per_gib: u64,
    /// A Bao outboard (every parent node, 64 bytes each), for comparison.
    pub outboard_bytes_per_gib: u64,
    /// Proofs if each group were fetched alone with its sibling path.
    pub range_proof_bytes_per_gib: u64,
    /// `blake3::hash` of the buffer, GB/s.
    pub plain_gbps: f64,
    /// Building the outline (one digest per group, then the root), GB/s.
    pub outline_gbps: f64,
    /// Checking an outline against the root (merging the digests), µs/GiB.
    pub root_check_us_per_gib: f64,
}

/// Measures [`HashCost`] over `buf` for each group size in `groups`, with
/// the caller's clock (`elapsed` since any fixed instant). Not a simulation:
/// wall time on this machine.
pub fn hashing(buf: &[u8], groups: &[u64], mut elapsed: impl FnMut() -> Duration) -> Vec<HashCost> {
    let gib = (1u64 << 30) as f64;
    let size = buf.len() as u64;
    let gbps = |bytes: u64, d: Duration| bytes as f64 / d.as_secs_f64().max(1e-9) / 1e9;
    let t = elapsed();
    let plain = blake3::hash(buf);
    let plain_gbps = gbps(size, elapsed() - t);
    groups
        .iter()
        .filter_map(|&g| {
            let geo = Geometry::new(size, g).ok()?;
            let t = elapsed();
            let mut b = OutlineBuilder::new(geo);
            b.update(buf);
            let outline = b.finish()?;
            let outline_gbps = gbps(size, elapsed() - t);
            assert_eq!(outline.root(), *plain.as_bytes());
            let t = elapsed();
            let checked = Outline::new(geo, outline.root(), outline.leaves().to_vec());
            let check = elapsed() - t;
            assert!(checked.is_ok());
            let per_gib = (1u64 << 30).div_ceil(g);
            let depth = 64 - (per_gib.max(2) - 1).leading_zeros() as u64;
            Some(HashCost {
                group_bytes: g,
                groups_per_gib: per_gib,
                outline_bytes_per_gib: per_gib * 32,
                outboard_bytes_per_gib: (per_gib - 1) * 64,
                range_proof_bytes_per_gib: per_gib * depth * 32,
                plain_gbps,
                outline_gbps,
                root_check_us_per_gib: check.as_secs_f64() * 1e6 * gib / size as f64,
            })
        })
        .collect()
}

/// The [`hashing`] rows as a table.
pub fn hashing_table(rows: &[HashCost]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:>9} {:>10} {:>13} {:>14} {:>14} {:>10} {:>11} {:>12}",
        "group",
        "groups/GiB",
        "outline/GiB",
        "outboard/GiB",
        "proofs/GiB",
        "hash GB/s",
        "outline GB/s",
        "root µs/GiB"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "{:>6} KiB {:>10} {:>9} KiB {:>10} KiB {:>10} KiB {:>10.2} {:>11.2} {:>12.0}",
            r.group_bytes >> 10,
            r.groups_per_gib,
            r.outline_bytes_per_gib >> 10,
            r.outboard_bytes_per_gib >> 10,
            r.range_proof_bytes_per_gib >> 10,
            r.plain_gbps,
            r.outline_gbps,
            r.root_check_us_per_gib
        );
    }
    t
}
