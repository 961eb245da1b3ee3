//! The receiver's disk writer: a blocking thread that creates folders (never
//! through a symlink), writes each file's blocks to its `.part` with
//! positional writes while hashing them, checks the whole-file BLAKE3 against
//! the sender's, and renames the part into place without overwriting.
//!
//! It reports every step back ([`Res`]) in order, so the transfer's main task
//! can answer the sender file by file. A file that fails (hash mismatch, a
//! write error, ...) is reported once, as early as known; its remaining blocks
//! are dropped. A full disk ([`Res::DiskFull`]) stops the writer: nothing
//! later would fit either, and the part it leaves is what a resume starts
//! from.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::fs;

/// Hash-then-write granularity (fits in a core's L2 cache).
const PIECE: usize = 256 * 1024;

/// What the writer is asked to do (in stream order).
pub(super) enum Op {
    Open {
        index: u32,
        part: PathBuf,
        target: PathBuf,
        offset: u64,
        size: u64,
        /// The whole-file hasher already fed up to a proven offset.
        prehash: Option<(u64, blake3::Hasher)>,
        /// The file is already complete at `target` with this hash.
        whole: Option<[u8; 32]>,
    },
    /// The next block of the open file, in the pieces it arrived in.
    Data(Vec<Bytes>),
    Finish {
        index: u32,
        blake3: [u8; 32],
    },
    Skip {
        index: u32,
        reason: String,
    },
    Done,
}

/// What happened (in stream order).
#[derive(Debug)]
pub(super) enum Res {
    Opened {
        index: u32,
        have: u64,
        size: u64,
    },
    Wrote(u64),
    Done {
        index: u32,
        path: PathBuf,
        bytes: u64,
        blake3: [u8; 32],
    },
    Failed {
        index: u32,
        reason: String,
    },
    /// Writing file `index` ran out of space; the writer has stopped, its
    /// part kept as written.
    DiskFull {
        index: u32,
        reason: String,
    },
    Finished {
        ok: u32,
        failed: u32,
    },
}

pub(super) struct Writer {
    /// The download folder (canonical); nothing is created outside it.
    pub root: PathBuf,
    pub sync: bool,
    pub ops: mpsc::Receiver<Op>,
    pub results: mpsc::UnboundedSender<Res>,
}

struct Current {
    index: u32,
    part: PathBuf,
    target: PathBuf,
    size: u64,
    pos: u64,
    file: Option<File>,
    hasher: blake3::Hasher,
    whole: Option<[u8; 32]>,
    failed: bool,
}

/// Runs until `Done` (or until the reading side goes away, leaving any open
/// part as it is for a later resume).
pub(super) fn run(mut w: Writer) {
    let mut known = BTreeSet::new();
    let mut cur: Option<Current> = None;
    let (mut ok, mut failed) = (0u32, 0u32);
    let send = |r: Res| {
        let _ = w.results.send(r);
    };
    while let Some(op) = w.ops.blocking_recv() {
        match op {
            Op::Open {
                index,
                part,
                target,
                offset,
                size,
                prehash,
                whole,
            } => {
                let mut c = Current {
                    index,
                    part,
                    target,
                    size,
                    pos: offset,
                    file: None,
                    hasher: blake3::Hasher::new(),
                    whole: None,
                    failed: false,
                };
                match open(&w.root, &mut known, &mut c, offset, prehash, whole) {
                    Ok(()) => send(Res::Opened {
                        index,
                        have: offset,
                        size,
                    }),
                    Err(reason) => {
                        c.failed = true;
                        failed += 1;
                        send(Res::Failed { index, reason });
                    }
                }
                cur = Some(c);
            }
            Op::Data(pieces) => {
                if let Some(c) = cur.as_mut().filter(|c| !c.failed)
                    && let Some(f) = &c.file
                {
                    match hash_and_write(f, &mut c.hasher, &pieces, c.pos) {
                        Ok(len) => {
                            c.pos += len;
                            send(Res::Wrote(len));
                        }
                        Err(e) => {
                            c.failed = true;
                            failed += 1;
                            let reason = format!("writing {} failed: {e}", c.part.display());
                            if is_disk_full(&e) {
                                send(Res::DiskFull {
                                    index: c.index,
                                    reason,
                                });
                                return;
                            }
                            send(Res::Failed {
                                index: c.index,
                                reason,
                            });
                        }
                    }
                }
            }
            Op::Finish { index, blake3 } => {
                let Some(c) = cur.take().filter(|c| c.index == index) else {
                    continue;
                };
                if c.failed {
                    continue;
                }
                match finish(c, &blake3, w.sync) {
                    Ok((path, bytes)) => {
                        ok += 1;
                        send(Res::Done {
                            index,
                            path,
                            bytes,
                            blake3,
                        });
                    }
                    Err(reason) => {
                        failed += 1;
                        send(Res::Failed { index, reason });
                    }
                }
            }
            Op::Skip { index, reason } => {
                let c = cur.take().filter(|c| c.index == index);
                if c.as_ref().is_some_and(|c| c.failed) {
                    continue;
                }
                if let Some(c) = c
                    && c.file.is_some()
                {
                    // The sender's file changed or vanished: this part is of no use.
                    drop(c.file);
                    let _ = std::fs::remove_file(&c.part);
                }
                failed += 1;
                send(Res::Failed {
                    index,
                    reason: format!("the sender skipped it: {reason}"),
                });
            }
            Op::Done => {
                send(Res::Finished { ok, failed });
                return;
            }
        }
    }
}

/// Whether `e` says the file system (or the user's quota on it) is full.
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Hashes and writes `pieces` one after another at `pos`, at most [`PIECE`]
/// bytes at a time, so each is still in the CPU's cache when the kernel
/// copies it to the page cache. Returns the bytes written.
fn hash_and_write(
    f: &File,
    hasher: &mut blake3::Hasher,
    pieces: &[Bytes],
    pos: u64,
) -> std::io::Result<u64> {
    let mut at = pos;
    for part in pieces.iter().flat_map(|p| p.chunks(PIECE)) {
        hasher.update(part);
        f.write_all_at(part, at)?;
        at += part.len() as u64;
    }
    Ok(at - pos)
}

fn open(
    root: &std::path::Path,
    known: &mut BTreeSet<PathBuf>,
    c: &mut Current,
    offset: u64,
    prehash: Option<(u64, blake3::Hasher)>,
    whole: Option<[u8; 32]>,
) -> Result<(), String> {
    let parent = c.target.parent().unwrap_or(root);
    fs::ensure_dir(root, parent, known).map_err(|e| e.to_string())?;
    if let Some(h) = whole {
        if offset == c.size {
            c.whole = Some(h);
            return Ok(());
        }
        if offset != 0 {
            return Err(format!("resumed at {offset} of a file we hold whole"));
        }
    }
    let file = fs::open_part(&c.part, offset)
        .map_err(|e| format!("cannot write {}: {e}", c.part.display()))?;
    c.hasher = match prehash {
        Some((end, h)) if end == offset => h,
        _ if offset == 0 => blake3::Hasher::new(),
        _ => fs::hash_prefix(&file, offset)
            .map_err(|e| format!("cannot read back {}: {e}", c.part.display()))?,
    };
    c.file = Some(file);
    Ok(())
}

/// Checks the hash and renames the part into place; returns where it went.
fn finish(c: Current, expected: &[u8; 32], sync: bool) -> Result<(PathBuf, u64), String> {
    if let Some(h) = c.whole {
        return if &h == expected {
            Ok((c.target, c.size))
        } else {
            Err("the copy already here differs from the sender's".into())
        };
    }
    let got = c.hasher.finalize();
    if got.as_bytes() != expected {
        drop(c.file);
        let _ = std::fs::remove_file(&c.part);
        return Err(format!(
            "BLAKE3 mismatch (received {}, sender has {}): the data was corrupted or the file \
             changed while being sent; the partial file was deleted",
            got.to_hex(),
            super::hex(expected)
        ));
    }
    if let Some(f) = &c.file
        && sync
    {
        f.sync_data()
            .map_err(|e| format!("syncing {} failed: {e}", c.part.display()))?;
    }
    drop(c.file);
    let path = fs::place(&c.part, &c.target)
        .map_err(|e| format!("cannot move {} into place: {e}", c.part.display()))?;
    Ok((path, c.size))
}
