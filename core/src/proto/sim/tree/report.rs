//! What one run of the tree simulator reports, and its table.

use std::fmt::Write as _;

use serde::Serialize;

use super::Links;

/// One scenario of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub name: &'static str,
    pub receivers: usize,
    /// Receivers not killed.
    pub survivors: usize,
    /// Survivors holding the whole file, every group verified honest.
    pub verified: usize,
    /// Virtual seconds until the last survivor completed.
    pub seconds: f64,
    /// Median receiver completion time.
    pub median_s: f64,
    pub sender_upload_bytes: u64,
    /// Sender's upload over the file size.
    pub sender_upload_ratio: f64,
    pub stripes: u8,
    pub repairs: u64,
    pub slow_moves: u64,
    pub demotions: u64,
    pub corrupt_caught: u64,
    /// Group bytes received although already verified (must be 0).
    pub refetched_bytes: u64,
    /// Group bytes in flight from a parent the receiver had left.
    pub discarded_bytes: u64,
    /// Groups stored that had not verified (must be 0).
    pub bad_stored: u64,
    pub killed: usize,
    pub events: u64,
}

/// Everything one [`run`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub receivers: usize,
    pub links: Links,
    pub file_bytes: u64,
    pub group_bytes: u64,
    pub groups: u32,
    pub outline_bytes: u64,
    /// The slowest receiver alone.
    pub single_s: f64,
    pub tree_s: f64,
    pub copies_s: f64,
    pub sender_upload_bytes: u64,
    pub runs: Vec<RunReport>,
}

impl Report {
    pub fn run(&self, name: &str) -> Option<&RunReport> {
        self.runs.iter().find(|r| r.name == name)
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let _ = writeln!(
            t,
            "tree: {} receivers, {} links, {:.0} MiB file in {} groups of {} KiB (outline {} KiB), seed {}",
            self.receivers,
            match self.links {
                Links::Uniform => "uniform",
                Links::Mixed => "mixed",
            },
            mib(self.file_bytes),
            self.groups,
            self.group_bytes >> 10,
            self.outline_bytes >> 10,
            self.seed
        );
        let _ = writeln!(
            t,
            "{:<8} {:>6} {:>8} {:>9} {:>8} {:>7} {:>12} {:>6} {:>7} {:>6} {:>7} {:>9} {:>10}",
            "run",
            "recv",
            "verified",
            "time s",
            "median",
            "x one",
            "sender MiB",
            "x file",
            "repairs",
            "slow",
            "corrupt",
            "refetched",
            "discarded"
        );
        for r in &self.runs {
            let _ = writeln!(
                t,
                "{:<8} {:>6} {:>8} {:>9.2} {:>8.2} {:>7.2} {:>12.1} {:>6.2} {:>7} {:>6} {:>7} {:>9} {:>10}",
                r.name,
                r.receivers,
                format!("{}/{}", r.verified, r.survivors),
                r.seconds,
                r.median_s,
                r.seconds / self.single_s.max(f64::MIN_POSITIVE),
                mib(r.sender_upload_bytes),
                r.sender_upload_ratio,
                r.repairs,
                r.slow_moves + r.demotions,
                r.corrupt_caught,
                r.refetched_bytes,
                r.discarded_bytes
            );
        }
        t
    }
}
