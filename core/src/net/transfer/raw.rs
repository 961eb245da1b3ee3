//! An offer written frame by frame with the protocol's own types, as a hostile
//! or broken peer would: for the tests and `peerconnect bench abuse` that
//! check what a receiver holds (compiled with the simulator).

use std::time::Duration;

use tokio::io::{AsyncWriteExt, ReadHalf};

use crate::error::{Error, Result};
use crate::identity::PeerId;
use crate::net::links::Links;
use crate::net::mux::MuxStream;
use crate::net::transport::read_frame;
use crate::proto::transfer::{Entry, ToReceiver, ToSender, TransferId};
use crate::proto::wire::{StreamKind, encode_frame};

/// Bytes of entries per frame, as the real sender batches them.
const BATCH: usize = 256 << 10;

/// One offer stream: its writer task keeps the stream open (an offer waits for
/// its answer) until this is dropped, which closes the stream.
pub struct RawOffer {
    r: ReadHalf<MuxStream>,
    writer: tokio::task::AbortHandle,
}

impl Drop for RawOffer {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

impl RawOffer {
    /// Opens a transfer stream to `to` over a node's links (`from`) and
    /// writes, from a task of its own, an offer head announcing `announced`
    /// entries (of one byte each) and then `entries`, whatever the receiver
    /// does.
    pub async fn open(
        from: &Links,
        to: PeerId,
        id: u64,
        announced: u32,
        entries: impl Iterator<Item = Entry> + Send + 'static,
    ) -> Result<Self> {
        let link = from
            .get(&to)
            .ok_or_else(|| Error::PeerNotFound(format!("{} (not connected)", to.short())))?;
        let s = link
            .mux
            .open_bulk_stream()
            .await
            .map_err(|e| Error::Invalid(format!("cannot open a stream: {e}")))?;
        let (r, mut w) = tokio::io::split(s);
        let writer = tokio::spawn(async move {
            let mut buf = Vec::new();
            encode_frame(&StreamKind::Transfer, &mut buf).expect("small");
            let head = ToReceiver::Offer {
                id: TransferId(id),
                entries: announced,
                total_bytes: announced as u64,
            };
            encode_frame(&head, &mut buf).expect("small");
            let mut batch = Vec::new();
            let mut bytes = 0;
            for e in entries {
                bytes += e.path.len() + 16;
                batch.push(e);
                if bytes >= BATCH {
                    let frame = ToReceiver::Entries(std::mem::take(&mut batch));
                    encode_frame(&frame, &mut buf).expect("a batch fits a frame");
                    bytes = 0;
                    if w.write_all(&std::mem::take(&mut buf)).await.is_err() {
                        return; // the receiver hung up
                    }
                }
            }
            if !batch.is_empty() {
                encode_frame(&ToReceiver::Entries(batch), &mut buf).expect("a batch fits a frame");
            }
            let _ = w.write_all(&buf).await;
            std::future::pending::<()>().await;
        });
        Ok(Self {
            r,
            writer: writer.abort_handle(),
        })
    }

    /// The receiver's first answer, or why none came within `within`.
    pub async fn answer(&mut self, within: Duration) -> std::result::Result<ToSender, String> {
        match tokio::time::timeout(within, read_frame::<ToSender, _>(&mut self.r)).await {
            Ok(Ok(Ok(m))) => Ok(m),
            Ok(Ok(Err(e))) => Err(format!("bad frame: {e}")),
            Ok(Err(e)) => Err(format!("stream ended: {e}")),
            Err(_) => Err("no answer".into()),
        }
    }
}

/// `n` one-byte files with ~1 kB paths (four folders of 250-byte names).
pub fn long_names(n: u32) -> impl Iterator<Item = Entry> + Send + 'static {
    let x = "x".repeat(250);
    (0..n).map(move |i| Entry::file(format!("{i:06}/{x}/{x}/{x}/{x}"), 1))
}
