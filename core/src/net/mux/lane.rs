//! The two tasks of a lane: a reader that cuts frames out of large reads, and a
//! writer that batches frames into large writes.
//!
//! The reader reads into one growing buffer and splits frames off it, so DATA
//! payloads reach the reassembly as slices of the bytes TLS decrypted into: no
//! copy (see [`frame`](crate::proto::mux::frame) for the exception of small
//! payloads). Frames of one read travel to the session task as one batch.
//!
//! The writer encodes frames into one buffer until it holds [`WRITE_BATCH`]
//! bytes or no more frames wait, writes it with one call, reports the bytes
//! written (the scheduler's measure of a lane's queue), and flushes the
//! connection once nothing is waiting, so TLS never sits on a partial record.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::proto::mux::{LaneId, Message};
use crate::proto::wire::{HEADER_LEN, frame_len};

use super::BoxedLane;

/// Bytes gathered into one write call.
pub(super) const WRITE_BATCH: usize = 256 * 1024;

/// Room kept free in the read buffer before each read.
const READ_CHUNK: usize = 256 * 1024;

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
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        // Make room for at least a whole frame, or a big read.
        let need = match buf.first_chunk::<HEADER_LEN>().map(|h| frame_len(*h)) {
            Some(Ok(len)) => (HEADER_LEN + len).saturating_sub(buf.len()),
            _ => 0,
        };
        if buf.capacity() - buf.len() < need.max(READ_CHUNK / 4) {
            buf.reserve(need.max(READ_CHUNK));
        }
        match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
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
    let mut buf = BytesMut::with_capacity(WRITE_BATCH + 64 * 1024);
    let mut closing = false;
    'run: loop {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Frame(m) => m.encode(&mut buf),
                WriterMsg::Close => {
                    closing = true;
                    break;
                }
            }
            if buf.len() >= WRITE_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        let written = buf.len() as u64;
        if io.write_all(&buf).await.is_err() {
            break 'run;
        }
        buf.clear();
        if closing {
            break;
        }
        if rx.is_empty() && io.flush().await.is_err() {
            break;
        }
        if written > 0
            && events
                .send(LaneEvent::Written {
                    lane,
                    bytes: written,
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

/// Keeps `AsyncRead`/`AsyncWrite` object-safe for [`BoxedLane`].
pub trait LaneIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> LaneIo for T {}
