//! Sending one transfer: offer, wait for the answer and the receiver's resume
//! claims, then stream the files while the receiver's per-file replies come
//! back, until its summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use super::reader::{self, Item, Job, Note};
use super::stream::{Shared as SharedStream, peer_reset_code};
use super::{Ctl, Meter, Outcome, Shared, hex};
use crate::event::Event;
use crate::identity::PeerId;
use crate::net::transport::read_frame;
use crate::proto::transfer::progress::{INTERVAL, Progress};
use crate::proto::transfer::sender::{self, Answer, Reply};
use crate::proto::transfer::{
    Direction, Manifest, RESET_CANCELLED, RESET_PROTOCOL, ToReceiver, ToSender, TransferId,
    TransferState,
};
use crate::proto::wire::{StreamKind, encode_frame};

/// Buffers queued between the file reader and the stream.
const ITEMS_QUEUE: usize = 4;
/// Offer entries per frame are cut at about this many encoded bytes.
const ENTRIES_BATCH: usize = 256 * 1024;

fn classify(e: &std::io::Error) -> Outcome {
    match peer_reset_code(e) {
        Some(RESET_CANCELLED) => Outcome::Cancelled { by_peer: true },
        Some(RESET_PROTOCOL) => Outcome::Failed("the receiver reported a protocol error".into()),
        _ => Outcome::Interrupted(e.to_string()),
    }
}

pub(super) async fn run(
    sh: Arc<Shared>,
    id: TransferId,
    peer: PeerId,
    manifest: Arc<Manifest>,
    sources: Arc<Vec<Option<PathBuf>>>,
    ctl: watch::Receiver<Ctl>,
    meter: Arc<Meter>,
) {
    let mut progress = Progress::new(manifest.files() as u64, manifest.total_bytes());
    let outcome = send(
        &sh,
        id,
        peer,
        &manifest,
        &sources,
        ctl,
        &meter,
        &mut progress,
    )
    .await;
    sh.finish(
        id,
        peer,
        Direction::Send,
        outcome,
        progress.snapshot(sh.now()),
        &meter,
        "sending the same files again resumes",
    );
}

/// The offer's frames: the head, the entries in batches.
pub(super) fn offer_frames(id: TransferId, manifest: &Manifest) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    encode_frame(
        &ToReceiver::Offer {
            id,
            entries: manifest.len() as u32,
            total_bytes: manifest.total_bytes(),
        },
        &mut buf,
    )
    .expect("small");
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for e in manifest.entries() {
        batch_bytes += e.path.len() + 16;
        batch.push(e.clone());
        if batch_bytes >= ENTRIES_BATCH {
            encode_frame(&ToReceiver::Entries(std::mem::take(&mut batch)), &mut buf)
                .expect("batches stay under the frame limit");
            out.push(std::mem::take(&mut buf));
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        encode_frame(&ToReceiver::Entries(batch), &mut buf)
            .expect("batches stay under the frame limit");
    }
    if !buf.is_empty() {
        out.push(buf);
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn send(
    sh: &Arc<Shared>,
    id: TransferId,
    peer: PeerId,
    manifest: &Arc<Manifest>,
    sources: &Arc<Vec<Option<PathBuf>>>,
    mut ctl: watch::Receiver<Ctl>,
    meter: &Meter,
    progress: &mut Progress,
) -> Outcome {
    // A browser guest's end is the download adapter, and a LocalSend
    // device's the LocalSend sender, over an in-memory stream (held open by
    // `_alive` while this runs); a peer's is a mux stream that starts with
    // its kind.
    let (s, _alive, header) = if sh.guests.is_guest(&peer) {
        match sh.shares.open(sh, id, peer) {
            Ok((s, alive)) => (s, Some(alive), None),
            Err(e) => return Outcome::Failed(e),
        }
    } else if let Some(to) = sh.localsend.target(&peer) {
        // A LocalSend device's end speaks LocalSend's requests.
        let Some(out) = sh.localsend.outbound() else {
            return Outcome::Failed("LocalSend does not run on this node".into());
        };
        let (s, alive) = crate::localsend::send::open(out, to, sources.clone());
        (s, Some(alive), None)
    } else {
        let Some(link) = sh.links.get(&peer) else {
            return Outcome::Interrupted(format!("not connected to {}", peer.short()));
        };
        let s = match link.mux.open_bulk_stream().await {
            Ok(s) => SharedStream::new(s),
            Err(e) => return Outcome::Interrupted(format!("cannot open a stream: {e}")),
        };
        let mut header = Vec::new();
        encode_frame(&StreamKind::Transfer, &mut header).expect("small");
        (s, None, Some(header))
    };
    let mut w = s.clone();
    let mut r = s.clone();
    let frames = header.into_iter().chain(offer_frames(id, manifest));
    for frame in frames {
        if let Err(e) = w.write_all(&frame).await {
            return classify(&e);
        }
    }
    // The answer, and the resume claims after it.
    let mut state = sender::State::new(manifest);
    if let Err(o) = await_answer(sh, &s, &mut r, &mut state, &mut ctl).await {
        return o;
    }
    sh.set_state(id, TransferState::Running);
    let selected_bytes: u64 = state
        .files()
        .iter()
        .filter_map(|&i| manifest.entry(i).and_then(|e| e.size()))
        .sum();
    *progress = Progress::new(state.files().len() as u64, selected_bytes);
    let jobs: Vec<Job> = state
        .files()
        .iter()
        .map(|&index| Job {
            index,
            path: sources[index as usize]
                .clone()
                .expect("files have a source"),
            size: manifest.entry(index).and_then(|e| e.size()).unwrap_or(0),
        })
        .collect();
    let (items_tx, items_rx) = mpsc::channel::<Item>(ITEMS_QUEUE);
    let refused = Arc::new(AtomicU64::new(0));
    let reading = tokio::task::spawn_blocking({
        let r = reader::Reader {
            jobs,
            claims: state.take_claims(),
            items: items_tx,
            refused: refused.clone(),
            corrupt: sh.config.corrupt_outgoing,
        };
        move || reader::run(r)
    });
    let (notes_tx, mut notes_rx) = mpsc::unbounded_channel::<Vec<Note>>();
    let pause_after = sh
        .config
        .pause_after
        .and_then(|n| Some((n, sh.ctl_sender(id)?)));
    let mut pump = tokio::spawn(pump(
        w.clone(),
        items_rx,
        notes_tx,
        ctl.clone(),
        pause_after,
    ));
    let (replies_tx, mut replies_rx) = mpsc::unbounded_channel();
    let replies = tokio::spawn(async move {
        loop {
            let m = read_frame::<ToSender, _>(&mut r).await;
            let end = !matches!(m, Ok(Ok(_)));
            if replies_tx.send(m).is_err() || end {
                return;
            }
        }
    });
    let outcome = data_loop(
        sh,
        id,
        peer,
        &s,
        manifest,
        sources,
        &mut state,
        &mut notes_rx,
        &mut replies_rx,
        &mut pump,
        &refused,
        ctl,
        meter,
        progress,
    )
    .await;
    pump.abort();
    replies.abort();
    drop(notes_rx);
    let _ = reading.await;
    if let Outcome::Complete { .. } = outcome {
        let _ = w.shutdown().await;
    }
    outcome
}

/// Reads the receiver's answer to an offer (and the resume claims after an
/// accept) into `state`; `Err` is how the transfer ends instead (rejected,
/// cancelled, broken).
pub(super) async fn await_answer(
    sh: &Shared,
    s: &SharedStream,
    r: &mut SharedStream,
    state: &mut sender::State,
    ctl: &mut watch::Receiver<Ctl>,
) -> Result<(), Outcome> {
    loop {
        let msg = tokio::select! {
            m = read_frame::<ToSender, _>(r) => m,
            _ = ctl.wait_for(|c| c.cancelled) => {
                s.reset(RESET_CANCELLED);
                return Err(Outcome::Cancelled { by_peer: false });
            }
        };
        let msg = match msg {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(protocol(sh, s, format!("bad frame: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Outcome::Interrupted(
                    "the receiver closed the stream".into(),
                ));
            }
            Err(e) => return Err(classify(&e)),
        };
        match state.on_answer(msg) {
            Ok(Answer::Continue) => continue,
            Ok(Answer::Accepted) => return Ok(()),
            Ok(Answer::Rejected(reason)) => return Err(Outcome::Rejected(reason)),
            Err(e) => return Err(protocol(sh, s, e.to_string())),
        }
    }
}

fn protocol(sh: &Shared, s: &SharedStream, what: String) -> Outcome {
    sh.count_protocol_error();
    s.reset(RESET_PROTOCOL);
    Outcome::Failed(format!("the receiver broke the protocol: {what}"))
}

/// Writes the reader's buffers to the stream, announcing each one's notes
/// before writing it (so no reply can overtake the note it answers).
async fn pump(
    w: SharedStream,
    mut items: mpsc::Receiver<Item>,
    notes: mpsc::UnboundedSender<Vec<Note>>,
    mut ctl: watch::Receiver<Ctl>,
    mut pause_after: Option<(u64, watch::Sender<Ctl>)>,
) -> std::io::Result<()> {
    let mut sent = 0;
    loop {
        if ctl.borrow().paused {
            let _ = ctl.wait_for(|c| !c.paused || c.cancelled).await;
        }
        // A cancel ends the transfer here: nothing the reader queued goes out
        // after it (the data loop resets the stream, but this task could
        // otherwise write on before that, and a receiver would get the rest).
        // Biased: a cancel already made wins over a block already queued.
        let item = tokio::select! {
            biased;
            _ = cancelled(&mut ctl) => return Ok(()),
            item = items.recv() => item,
        };
        let Some(mut item) = item else {
            return Ok(());
        };
        sent += item
            .notes
            .iter()
            .map(|n| if let Note::Block(b) = n { *b } else { 0 })
            .sum::<u64>();
        let _ = notes.send(std::mem::take(&mut item.notes));
        // Handed over, not copied: the mux keeps the block until the peer has
        // it, so the reader makes a fresh buffer for the next one.
        tokio::select! {
            biased;
            _ = cancelled(&mut ctl) => return Ok(()),
            r = w.write_bytes(bytes::Bytes::from(std::mem::take(&mut item.buf))) => r?,
        }
        if let Some((limit, tx)) = &pause_after
            && sent >= *limit
        {
            tx.send_modify(|c| c.paused = true);
            pause_after = None;
        }
    }
}

/// Resolves once the transfer is cancelled (never, if its switches are gone).
async fn cancelled(ctl: &mut watch::Receiver<Ctl>) {
    if ctl.wait_for(|c| c.cancelled).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn data_loop(
    sh: &Arc<Shared>,
    id: TransferId,
    peer: PeerId,
    s: &SharedStream,
    manifest: &Manifest,
    sources: &[Option<PathBuf>],
    state: &mut sender::State,
    notes: &mut mpsc::UnboundedReceiver<Vec<Note>>,
    replies: &mut mpsc::UnboundedReceiver<
        std::io::Result<Result<ToSender, crate::proto::wire::DecodeError>>,
    >,
    pump: &mut tokio::task::JoinHandle<std::io::Result<()>>,
    refused: &AtomicU64,
    mut ctl: watch::Receiver<Ctl>,
    meter: &Meter,
    progress: &mut Progress,
) -> Outcome {
    let mut tick = tokio::time::interval(INTERVAL);
    let mut pump_done = false;
    let mut notes_open = true;
    // A pause asked for before the data phase (while the offer was being
    // answered) holds from the start, and the transfer says so: the answer
    // loop's wait marked that change seen, so `changed()` would not report it.
    let mut paused = ctl.borrow_and_update().paused;
    if paused {
        sh.set_state(id, TransferState::Paused);
        let snap = progress.snapshot(sh.now());
        emit_progress(sh, id, peer, snap, manifest, paused, meter);
    }
    // Per file sent and not yet answered: bytes counted and the hash sent.
    let mut inflight: BTreeMap<u32, (u64, Option<[u8; 32]>)> = BTreeMap::new();
    let size = |i: u32| manifest.entry(i).and_then(|e| e.size()).unwrap_or(0);
    let source = |i: u32| {
        sources[i as usize]
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let mut current: Option<u32> = None;
    loop {
        tokio::select! {
            biased;
            batch = notes.recv(), if notes_open => {
                let Some(batch) = batch else {
                    notes_open = false;
                    continue;
                };
                for note in batch {
                    match note {
                        Note::Started { index, offset, size } => {
                            state.on_started(index);
                            progress.start_file(index, size, offset);
                            inflight.insert(index, (offset, None));
                            current = Some(index);
                        }
                        Note::Block(n) => {
                            progress.add(n);
                            sh.count_sent(n);
                            if let Some(f) = current.and_then(|c| inflight.get_mut(&c)) {
                                f.0 += n;
                            }
                        }
                        Note::Ended { index, blake3 } => {
                            state.on_ended(index);
                            if let Some(f) = inflight.get_mut(&index) {
                                f.1 = Some(blake3);
                            }
                        }
                        Note::Skipped { index, reason, started } => {
                            if !started {
                                state.on_started(index);
                                inflight.insert(index, (0, None));
                            }
                            tracing::debug!(%id, index, %reason, "skipping a file");
                        }
                        Note::Done => state.on_done_sent(),
                    }
                }
            }
            reply = replies.recv() => {
                let msg = match reply {
                    Some(Ok(Ok(m))) => m,
                    Some(Ok(Err(e))) => return protocol(sh, s, format!("bad frame: {e}")),
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Outcome::Interrupted("the receiver closed the stream early".into());
                    }
                    Some(Err(e)) => return classify(&e),
                    None => return Outcome::Interrupted("the reply reader stopped".into()),
                };
                match state.on_reply(msg) {
                    Ok(Reply::FileOk(index)) => {
                        let (sent, hash) = inflight.remove(&index).unwrap_or((0, None));
                        progress.end_file(size(index), sent);
                        sh.count_file(Direction::Send);
                        sh.emit(Event::TransferDone {
                            id,
                            peer,
                            direction: Direction::Send,
                            path: source(index),
                            bytes: size(index),
                            blake3: hash.map(|h| hex(&h)).unwrap_or_default(),
                        });
                    }
                    Ok(Reply::FileFailed(index, reason)) => {
                        if current == Some(index) {
                            refused.store(index as u64 + 1, Ordering::Release);
                        }
                        let (sent, _) = inflight.remove(&index).unwrap_or((0, None));
                        progress.end_file(size(index), sent);
                        sh.emit(Event::TransferFailed {
                            id,
                            peer,
                            direction: Direction::Send,
                            path: Some(source(index)),
                            error: reason,
                        });
                    }
                    Ok(Reply::Complete { ok, failed }) => {
                        meter.transferred.store(progress.transferred(), Ordering::Relaxed);
                        return Outcome::Complete { ok, failed };
                    }
                    Err(e) => return protocol(sh, s, e.to_string()),
                }
            }
            res = &mut *pump, if !pump_done => {
                pump_done = true;
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return classify(&e),
                    Err(e) => return Outcome::Failed(format!("the stream writer stopped: {e}")),
                }
            }
            changed = ctl.changed() => {
                if changed.is_err() {
                    continue;
                }
                let c = *ctl.borrow_and_update();
                if c.cancelled {
                    s.reset(RESET_CANCELLED);
                    return Outcome::Cancelled { by_peer: false };
                }
                if c.paused != paused {
                    paused = c.paused;
                    sh.set_state(id, if paused { TransferState::Paused } else { TransferState::Running });
                    let snap = progress.snapshot(sh.now());
                    emit_progress(sh, id, peer, snap, manifest, paused, meter);
                }
            }
            _ = tick.tick() => {
                if let Some(snap) = progress.poll(sh.now()) {
                    emit_progress(sh, id, peer, snap, manifest, paused, meter);
                }
            }
        }
    }
}

fn emit_progress(
    sh: &Shared,
    id: TransferId,
    peer: PeerId,
    snap: crate::proto::transfer::progress::Snapshot,
    manifest: &Manifest,
    paused: bool,
    meter: &Meter,
) {
    meter.done.store(snap.done_bytes, Ordering::Relaxed);
    meter.transferred.store(snap.transferred, Ordering::Relaxed);
    let file = snap
        .file
        .and_then(|i| manifest.entry(i))
        .map(|e| e.path.clone());
    sh.emit(super::progress_event(
        id,
        peer,
        Direction::Send,
        &snap,
        file,
        paused,
    ));
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn block(len: usize) -> Item {
        Item {
            buf: vec![7; len],
            notes: vec![Note::Block(len as u64)],
        }
    }

    /// The pump over an in-memory stream of `buffer` bytes, fed `queued`
    /// blocks; the receiving end and the transfer's switches.
    fn pump_with(
        buffer: usize,
        queued: Vec<Item>,
        ctl: Ctl,
    ) -> (
        tokio::task::JoinHandle<std::io::Result<()>>,
        SharedStream,
        watch::Sender<Ctl>,
    ) {
        let (w, r) = SharedStream::local_pair(buffer);
        let (items_tx, items_rx) = mpsc::channel(queued.len().max(1));
        for item in queued {
            items_tx.try_send(item).unwrap();
        }
        drop(items_tx);
        let (notes_tx, _) = mpsc::unbounded_channel();
        let (ctl_tx, ctl_rx) = watch::channel(ctl);
        let task = tokio::spawn(pump(w, items_rx, notes_tx, ctl_rx, None));
        (task, r, ctl_tx)
    }

    async fn read_all(mut r: SharedStream) -> Vec<u8> {
        let mut got = Vec::new();
        let _ = r.read_to_end(&mut got).await;
        got
    }

    #[tokio::test]
    async fn a_cancel_during_a_pause_sends_nothing_the_reader_queued() {
        let paused = Ctl {
            paused: true,
            cancelled: false,
        };
        let (task, r, ctl) = pump_with(1 << 20, vec![block(1000), block(1000)], paused);
        tokio::task::yield_now().await;
        ctl.send_modify(|c| c.cancelled = true);
        task.await.unwrap().unwrap();
        let got = read_all(r).await;
        assert!(
            got.is_empty(),
            "{} bytes went out after the cancel",
            got.len()
        );
    }

    #[tokio::test]
    async fn a_cancel_ends_a_write_the_receiver_is_not_reading() {
        let (task, r, ctl) = pump_with(100, vec![block(1000)], Ctl::default());
        tokio::task::yield_now().await;
        ctl.send_modify(|c| c.cancelled = true);
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the pump still writes after the cancel")
            .unwrap()
            .unwrap();
        assert!(read_all(r).await.len() <= 100);
    }
}
