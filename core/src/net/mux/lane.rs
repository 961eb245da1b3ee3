//! The two tasks of a lane: a reader that cuts frames out of large reads, and a
//! writer that batches frames into large writes.
//!
//! The reader reads into one growing buffer and splits frames off it, so DATA
//! payloads reach the reassembly as slices of the bytes TLS decrypted into: no
//! copy (see [`frame`](crate::proto::mux::frame) for the exception of small
//! payloads). Frames of one read travel to the session task as one batch.
//!
//! Buffers follow the traffic: an idle lane holds a [`READ_FLOOR`] read buffer
//! and no write buffer. Full TLS records (bulk data) grow the read buffer to
//! [`READ_CHUNK`]; a small read that leaves nothing buffered (acks, gossip, a
//! pause) drops it back to the floor, and the writer releases what a burst made
//! it allocate once its queue is empty.
//!
//! The writer gathers frames until they hold [`WRITE_BATCH`] bytes or no more
//! wait, and writes them with one call: vectored (headers from a small buffer,
//! payloads from where they lie) when the connection supports it, else encoded
//! into one buffer. It then reports the bytes written (the scheduler's measure
//! of a lane's queue) and flushes the connection once nothing is waiting, so
//! TLS never sits on a partial record.

use std::io::IoSlice;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::proto::mux::{LaneId, Message};
use crate::proto::wire::{HEADER_LEN, frame_len};

use super::BoxedLane;

/// Bytes gathered into one write call.
pub(super) const WRITE_BATCH: usize = 256 * 1024;

/// At most this many frames per write call (two slices each, under IOV_MAX).
const MAX_FRAMES_PER_WRITE: usize = 256;

/// Room kept free in the read buffer before each read under bulk traffic.
const READ_CHUNK: usize = 256 * 1024;

/// Read buffer of a lane without bulk traffic.
const READ_FLOOR: usize = 1024;

/// A read at least this long (most of a full TLS record) means bulk traffic.
const BULK_READ: usize = 8 * 1024;

/// Frames an idle writer keeps room for; a burst's larger batch is released.
const BATCH_FLOOR: usize = 8;

/// Write buffer an idle writer may keep.
const WRITE_HEADS_KEPT: usize = 16 * 1024;

/// What a lane task tells the session task.
#[derive(Debug)]
pub(super) enum LaneEvent {
    Frames {
        lane: LaneId,
        frames: Vec<Message>,
    },
    Written {
        lane: LaneId,
        bytes: u64,
    },
    Malformed {
        lane: LaneId,
        error: crate::proto::wire::DecodeError,
    },
    Closed {
        lane: LaneId,
    },
}

/// What the session task tells a lane writer.
#[derive(Debug)]
pub(super) enum WriterMsg {
    Frame(Message),
    /// Write what is queued, then shut the connection down.
    Close,
}

pub(super) async fn read_lane(
    lane: LaneId,
    mut io: ReadHalf<BoxedLane>,
    events: mpsc::Sender<LaneEvent>,
) {
    let mut want = READ_FLOOR;
    let mut buf = BytesMut::with_capacity(want);
    loop {
        // Make room for at least a whole frame, or a read of the current size.
        let need = match buf.first_chunk::<HEADER_LEN>().map(|h| frame_len(*h)) {
            Some(Ok(len)) => (HEADER_LEN + len).saturating_sub(buf.len()),
            _ => 0,
        };
        if buf.capacity() - buf.len() < need.max(want / 4).max(1) {
            buf.reserve(need.max(want));
        }
        let spare = buf.capacity() - buf.len();
        let n = match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if n >= BULK_READ {
            want = READ_CHUNK;
        } else if n == spare {
            // Small frames arriving faster than the buffer holds them.
            want = (want * 2).min(READ_CHUNK);
        }
        let mut frames = Vec::new();
        loop {
            match Message::decode(&mut buf) {
                Ok(Some(m)) => frames.push(m),
                Ok(None) => break,
                Err(error) => {
                    let _ = events.send(LaneEvent::Malformed { lane, error }).await;
                    return;
                }
            }
        }
        if n < BULK_READ && n < spare && buf.is_empty() && want > READ_FLOOR {
            // No bulk traffic and nothing half-read: back to the floor. Frames
            // split off the big buffer keep it alive until they are consumed.
            want = READ_FLOOR;
            buf = BytesMut::with_capacity(want);
        }
        if !frames.is_empty()
            && events
                .send(LaneEvent::Frames { lane, frames })
                .await
                .is_err()
        {
            return;
        }
    }
    let _ = events.send(LaneEvent::Closed { lane }).await;
}

pub(super) async fn write_lane(
    lane: LaneId,
    mut io: WriteHalf<BoxedLane>,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    events: mpsc::Sender<LaneEvent>,
) {
    let vectored = io.is_write_vectored();
    // Both grow with the first batches that need them (see `release`).
    let mut batch: Vec<Message> = Vec::new();
    let mut buf = BytesMut::new();
    let mut closing = false;
    loop {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut next = Some(first);
        let mut bytes = 0;
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Frame(m) => {
                    bytes += m.encoded_len();
                    batch.push(m);
                }
                WriterMsg::Close => {
                    closing = true;
                    break;
                }
            }
            if bytes >= WRITE_BATCH || batch.len() >= MAX_FRAMES_PER_WRITE {
                break;
            }
            next = rx.try_recv().ok();
        }
        let res = if vectored {
            write_vectored(&mut io, &batch, &mut buf).await
        } else {
            buf.clear();
            batch.iter().for_each(|m| m.encode(&mut buf));
            io.write_all(&buf).await
        };
        batch.clear();
        if res.is_err() || closing {
            break;
        }
        if rx.is_empty() {
            if io.flush().await.is_err() {
                break;
            }
            release(&mut batch, &mut buf);
        }
        if bytes > 0
            && events
                .send(LaneEvent::Written {
                    lane,
                    bytes: bytes as u64,
                })
                .await
                .is_err()
        {
            break;
        }
    }
    if closing {
        let _ = io.shutdown().await;
    }
    let _ = events.send(LaneEvent::Closed { lane }).await;
}

/// Lets an idle writer give back what a burst made its buffers grow to.
fn release(batch: &mut Vec<Message>, buf: &mut BytesMut) {
    if batch.capacity() > BATCH_FLOOR {
        batch.shrink_to(BATCH_FLOOR);
    }
    // Headers of a vectored batch fit in a few KiB and stay; a copied batch
    // (lanes that cannot write vectored) is released.
    if buf.capacity() > WRITE_HEADS_KEPT {
        *buf = BytesMut::new();
    }
}

/// Writes frames with their payloads in place: headers go into `heads`, the
/// payloads are handed to the connection as they are (TLS copies them once,
/// into its records, which it must do anyway).
async fn write_vectored(
    io: &mut WriteHalf<BoxedLane>,
    batch: &[Message],
    heads: &mut BytesMut,
) -> std::io::Result<()> {
    heads.clear();
    let mut spans = Vec::with_capacity(batch.len());
    for m in batch {
        let start = heads.len();
        m.encode_head(heads);
        spans.push((start, heads.len(), m.payload()));
    }
    let mut slices = Vec::with_capacity(2 * batch.len());
    for (start, end, payload) in spans {
        slices.push(IoSlice::new(&heads[start..end]));
        if let Some(p) = payload.filter(|p| !p.is_empty()) {
            slices.push(IoSlice::new(p));
        }
    }
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        let n = io.write_vectored(bufs).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Keeps `AsyncRead`/`AsyncWrite` object-safe for [`BoxedLane`].
pub trait LaneIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> LaneIo for T {}
