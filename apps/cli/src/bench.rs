//! `peerconnect bench <what>`: benchmarks that print a table (JSON with `--json`).

pub mod abuse;
pub mod child;
pub mod dht;
pub mod gossip;
pub mod load;
pub mod mux;
pub mod transfer;
pub mod tree;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};

/// Runs a command (`args[0]` with the rest), failing with its stderr.
fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes `len` seeded random bytes to `path`; returns their BLAKE3.
pub(crate) fn write_random(path: &Path, len: u64, seed: u64) -> std::io::Result<blake3::Hash> {
    use std::io::Write;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    f.flush()?;
    Ok(h.finalize())
}
