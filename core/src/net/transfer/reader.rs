//! The sender's file reader: a blocking thread that walks the selected files
//! in order, checks the receiver's resume claims, reads each file with
//! positional reads, hashes it in the same pass, and hands the transfer
//! stream's bytes (frames and raw blocks) to the writing task in buffers of up
//! to 1 MiB.
//!
//! Small files are packed many to a buffer, so 10,000 files of 4 KiB cost a
//! few hundred stream writes, not 30,000. A buffer is handed to the stream
//! as it is (no copy), and the mux keeps it until the peer has its bytes, so
//! each one is fresh.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::fs;
use crate::proto::transfer::sender::Claim;
use crate::proto::transfer::{BLOCK, ToReceiver, short_reason};
use crate::proto::wire::encode_frame;

/// A buffer is handed over once it holds this much.
const FLUSH_AT: usize = 256 * 1024;
/// Largest buffer (one mux write).
pub(super) const CAP: usize = 1 << 20;
/// Room for one frame header.
const HEADER_ROOM: usize = 32;
/// Read-then-hash granularity (fits in a core's L2 cache).
const PIECE: usize = 256 * 1024;

/// A selected file.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub index: u32,
    pub path: PathBuf,
    pub size: u64,
}

/// What a buffer carries, for the transfer's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Note {
    Started {
        index: u32,
        offset: u64,
        size: u64,
    },
    Block(u64),
    Ended {
        index: u32,
        blake3: [u8; 32],
    },
    Skipped {
        index: u32,
        reason: String,
        started: bool,
    },
    Done,
}

/// Bytes for the stream, and what they are.
#[derive(Debug)]
pub(super) struct Item {
    pub buf: Vec<u8>,
    pub notes: Vec<Note>,
}

pub(super) struct Reader {
    pub jobs: Vec<Job>,
    pub claims: BTreeMap<u32, Claim>,
    pub items: mpsc::Sender<Item>,
    /// `index + 1` of a file the receiver refused mid-way (0: none).
    pub refused: Arc<AtomicU64>,
    /// Test hook: corrupt the first block of every file after hashing it.
    pub corrupt: bool,
}

/// The receiving task is gone; stop.
struct Gone;

struct Out {
    buf: Vec<u8>,
    notes: Vec<Note>,
    items: mpsc::Sender<Item>,
}

impl Out {
    fn frame(&mut self, msg: &ToReceiver) {
        encode_frame(msg, &mut self.buf).expect("transfer frames are small");
    }

    fn flush(&mut self) -> Result<(), Gone> {
        if self.buf.is_empty() && self.notes.is_empty() {
            return Ok(());
        }
        let item = Item {
            buf: std::mem::replace(&mut self.buf, Vec::with_capacity(CAP)),
            notes: std::mem::take(&mut self.notes),
        };
        self.items.blocking_send(item).map_err(|_| Gone)
    }

    fn room(&mut self, n: usize) -> Result<(), Gone> {
        if self.buf.len() + n > CAP {
            self.flush()?;
        }
        Ok(())
    }

    fn skip(&mut self, index: u32, reason: String, started: bool) -> Result<(), Gone> {
        let reason = short_reason(reason);
        self.room(HEADER_ROOM + reason.len())?;
        self.frame(&ToReceiver::Skip {
            index,
            reason: reason.clone(),
        });
        self.notes.push(Note::Skipped {
            index,
            reason,
            started,
        });
        Ok(())
    }
}

/// Runs the reader until every file was sent (ending with `Done`) or the
/// receiving side of the channel is gone.
pub(super) fn run(r: Reader) {
    let Reader {
        jobs,
        mut claims,
        items,
        refused,
        corrupt,
    } = r;
    let mut out = Out {
        buf: Vec::with_capacity(CAP),
        notes: Vec::new(),
        items,
    };
    let res = (|| {
        for job in &jobs {
            send_file(&mut out, job, claims.remove(&job.index), &refused, corrupt)?;
            if out.buf.len() >= FLUSH_AT {
                out.flush()?;
            }
        }
        out.room(HEADER_ROOM)?;
        out.frame(&ToReceiver::Done);
        out.notes.push(Note::Done);
        out.flush()
    })();
    if res.is_err() {
        tracing::debug!("transfer reader stopped: the stream is gone");
    }
}

fn send_file(
    out: &mut Out,
    job: &Job,
    claim: Option<Claim>,
    refused: &AtomicU64,
    corrupt: bool,
) -> Result<(), Gone> {
    let index = job.index;
    let file = match File::open(&job.path) {
        Ok(f) => f,
        Err(e) => return out.skip(index, format!("cannot open it: {e}"), false),
    };
    match file.metadata() {
        Ok(m) if m.len() == job.size => {}
        Ok(m) => {
            return out.skip(
                index,
                format!("it changed since the offer ({} bytes now)", m.len()),
                false,
            );
        }
        Err(e) => return out.skip(index, format!("cannot read it: {e}"), false),
    }
    let start = match claim {
        None => Ok((0, blake3::Hasher::new())),
        Some(Claim::Chunks(proof)) => fs::check_proof(&file, proof),
        Some(Claim::Whole(theirs)) => fs::hash_prefix(&file, job.size).map(|h| {
            if h.finalize().as_bytes() == &theirs {
                (job.size, h)
            } else {
                (0, blake3::Hasher::new())
            }
        }),
    };
    let (offset, mut hasher) = match start {
        Ok(s) => s,
        Err(e) => return out.skip(index, format!("cannot read it: {e}"), false),
    };
    out.room(HEADER_ROOM)?;
    out.frame(&ToReceiver::Start { index, offset });
    out.notes.push(Note::Started {
        index,
        offset,
        size: job.size,
    });
    let mut pos = offset;
    let mut first = true;
    while pos < job.size {
        if refused.load(Ordering::Acquire) == index as u64 + 1 {
            return out.skip(index, "the receiver refused it".into(), true);
        }
        let len = ((job.size - pos) as usize).min(BLOCK);
        out.room(HEADER_ROOM + len)?;
        let header_at = out.buf.len();
        out.frame(&ToReceiver::Block { len: len as u32 });
        let data_at = out.buf.len();
        // Read and hash a piece at a time, so the hash reads cached bytes.
        let mut at = 0;
        while at < len {
            let n = (len - at).min(PIECE);
            let piece_at = out.buf.len();
            if let Err(e) = fs::read_block(&file, pos + at as u64, n, &mut out.buf) {
                out.buf.truncate(header_at);
                return out.skip(index, format!("reading it failed: {e}"), true);
            }
            hasher.update(&out.buf[piece_at..]);
            at += n;
        }
        if corrupt && first {
            out.buf[data_at] ^= 0x55;
        }
        first = false;
        out.notes.push(Note::Block(len as u64));
        pos += len as u64;
        if out.buf.len() >= FLUSH_AT {
            out.flush()?;
        }
    }
    if file.metadata().map(|m| m.len()).ok() != Some(job.size) {
        return out.skip(index, "it changed while being sent".into(), true);
    }
    out.room(2 * HEADER_ROOM)?;
    let blake3 = *hasher.finalize().as_bytes();
    out.frame(&ToReceiver::End { index, blake3 });
    out.notes.push(Note::Ended { index, blake3 });
    Ok(())
}
