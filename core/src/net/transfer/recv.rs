//! Receiving one transfer: read and check the offer, decide (ask the user,
//! or accept by policy or because it resumes an earlier attempt), pick names
//! that touch nothing existing, prove what `.part` files already hold, then
//! stream the files to the disk writer and answer the sender file by file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::budget::Slot;
use super::stream::{Shared as SharedStream, peer_reset_code};
use super::writer::{self, Op, Res};
use super::{Ctl, Decision, Meter, Outcome, Pending, Shared, check_space, fs, hex};
use crate::event::{Event, Trust};
use crate::identity::{PeerId, verification_code};
use crate::net::mux::MuxStream;
use crate::net::transport::read_frame;
use crate::proto::transfer::manifest::{mask_to_ranges, ranges_to_mask};
use crate::proto::transfer::progress::{INTERVAL, Progress};
use crate::proto::transfer::receiver::{self, Action};
use crate::proto::transfer::{
    Direction, Manifest, ProtocolError, RESET_CANCELLED, RESET_PROTOCOL, ToReceiver, ToSender,
    TransferId, TransferState, offer_preview, short_reason,
};
use crate::proto::wire::encode_frame;
use crate::store::TransferRecord;

/// The whole offer must arrive within this long.
const OFFER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Operations queued for the disk writer (each up to a block).
const OPS_QUEUE: usize = 8;
/// After our summary, how long we wait for the sender to close its side.
const FIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new offer waits for a live attempt of the same files to end.
const DYING_WAIT: Duration = Duration::from_secs(3);

/// Why reading the sender's frames stopped.
enum ReadErr {
    Io(std::io::Error),
    Protocol(ProtocolError),
    /// The disk writer is gone.
    Writer,
}

impl From<std::io::Error> for ReadErr {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Where the accepted entries go.
struct Plan {
    root: PathBuf,
    roots: BTreeMap<String, String>,
    manifest: Arc<Manifest>,
}

impl Plan {
    /// The final path of entry `index`.
    fn target(&self, index: u32) -> PathBuf {
        let p = self.manifest.path(index).expect("index of the manifest");
        let mut t = self.root.join(&self.roots[p.root()]);
        if let Some(rest) = p.below_root() {
            t.extend(rest.split('/'));
        }
        t
    }
}

/// Answers a stream the budget did not admit: the reason, then the end.
pub(super) async fn refuse(stream: MuxStream, reason: String) {
    let s = SharedStream::new(stream);
    let _ = tokio::time::timeout(FIN_TIMEOUT, async {
        let _ = reply(&s, &ToSender::Reject { reason }).await;
        let mut w = s.clone();
        let _ = w.shutdown().await;
    })
    .await;
}

/// Receives one transfer from `s` (a peer's mux stream, or a local adapter's
/// end of an in-memory pair); `slot` is what the budget admitted it with, and
/// is given back when the transfer ends. `seen` learns, once the offer is
/// announced, whether it was accepted at once (dropped if it was refused
/// before that). `tree` is the relay tree session the offer belongs to: once
/// accepted, the file comes down the tree ([`super::tree::member`]) instead
/// of on `s`.
pub(super) async fn run(
    sh: Arc<Shared>,
    peer: PeerId,
    s: SharedStream,
    mut slot: Slot,
    seen: Option<oneshot::Sender<bool>>,
    tree: Option<u64>,
) {
    let mut r = s.clone();
    let mut state = receiver::State::with_budget(slot.offer_budget());
    let offer = tokio::time::timeout(
        OFFER_READ_TIMEOUT,
        read_offer(&mut r, &mut state, &mut slot),
    )
    .await;
    let refusal = match offer {
        Ok(Ok(())) => None,
        Ok(Err(ReadErr::Io(e))) => {
            tracing::debug!(peer = %peer.short(), error = %e, "offer stream ended early");
            return;
        }
        Ok(Err(ReadErr::Protocol(e))) => Some(e.to_string()),
        Ok(Err(ReadErr::Writer)) => return,
        Err(_) => Some(format!(
            "the offer did not arrive within {}s",
            OFFER_READ_TIMEOUT.as_secs()
        )),
    };
    if let Some(reason) = refusal {
        sh.count_protocol_error();
        sh.emit(Event::Error {
            message: format!("refused an offer from {}: {reason}", peer.short()),
        });
        let _ = reply(
            &s,
            &ToSender::Reject {
                reason: short_reason(reason),
            },
        )
        .await;
        let mut w = s.clone();
        let _ = w.shutdown().await;
        return;
    }
    let id = state.id().expect("the offer was read");
    let manifest = Arc::new(state.manifest().expect("the offer was read").clone());
    let Some((ctl, meter)) = sh.register(
        id,
        peer,
        Direction::Receive,
        manifest.files() as u64,
        manifest.total_bytes(),
    ) else {
        let _ = reply(
            &s,
            &ToSender::Reject {
                reason: format!("a transfer with id {id} is already running"),
            },
        )
        .await;
        return;
    };
    let mut progress = Progress::new(0, 0);
    let outcome = receive(
        &sh,
        id,
        peer,
        &s,
        r,
        state,
        manifest,
        ctl,
        &meter,
        &mut progress,
        seen,
        tree,
    )
    .await;
    sh.finish(
        id,
        peer,
        Direction::Receive,
        outcome,
        progress.snapshot(sh.now()),
        &meter,
        "the partial files are kept: offering the same files again resumes",
    );
}

async fn read_offer(
    r: &mut SharedStream,
    state: &mut receiver::State,
    slot: &mut Slot,
) -> Result<(), ReadErr> {
    loop {
        let msg = read_frame::<ToReceiver, _>(r)
            .await?
            .map_err(|e| ReadErr::Protocol(ProtocolError::Invalid(format!("bad frame: {e}"))))?;
        let action = state.on_message(msg).map_err(ReadErr::Protocol)?;
        slot.hold(state.offer_cost())
            .map_err(|e| ReadErr::Protocol(ProtocolError::Invalid(e)))?;
        match action {
            Action::Continue => continue,
            Action::Offer => return Ok(()),
            _ => unreachable!("the offer phase only continues or completes"),
        }
    }
}

/// Writes one frame to the sender.
async fn reply(s: &SharedStream, msg: &ToSender) -> std::io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf).map_err(std::io::Error::other)?;
    let mut w = s.clone();
    w.write_all(&buf).await
}

fn classify(e: &std::io::Error) -> Outcome {
    match peer_reset_code(e) {
        Some(RESET_CANCELLED) => Outcome::Cancelled { by_peer: true },
        Some(RESET_PROTOCOL) => Outcome::Failed("the sender reported a protocol error".into()),
        _ => Outcome::Interrupted(e.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn receive(
    sh: &Arc<Shared>,
    id: TransferId,
    peer: PeerId,
    s: &SharedStream,
    mut r: SharedStream,
    mut state: receiver::State,
    manifest: Arc<Manifest>,
    mut ctl: watch::Receiver<Ctl>,
    meter: &Meter,
    progress: &mut Progress,
    seen: Option<oneshot::Sender<bool>>,
    tree: Option<u64>,
) -> Outcome {
    if tree.is_some() && (manifest.len() != 1 || manifest.files() != 1) {
        sh.count_protocol_error();
        return reject(s, "a relay tree carries exactly one file".into()).await;
    }
    let fingerprint = hex(&manifest.fingerprint());
    // The same files from the same peer, still live: usually the attempt the
    // peer just abandoned (it restarted, and our side has not noticed the old
    // session's end yet). Give it a moment to end, so this offer resumes it.
    let resumable = || {
        sh.store
            .resumable_transfer(&peer, &fingerprint)
            .ok()
            .flatten()
    };
    let mut found = resumable();
    if let Some(p) = found.as_ref().filter(|p| sh.is_live(p.id)) {
        sh.wait_ended(p.id, tokio::time::Instant::now() + DYING_WAIT)
            .await;
        // Its end recorded what it had written.
        found = resumable();
    }
    let previous = found.filter(|p| !sh.is_live(p.id)).and_then(|p| {
        let mask = ranges_to_mask(&p.selected, manifest.len()).ok()?;
        let roots_ok = manifest.roots().iter().all(|r| p.roots.contains_key(*r));
        roots_ok.then_some((p, mask))
    });
    let trusted = sh.store.trust(&peer).ok() == Some(Trust::Trusted);
    let auto = previous.is_some() || sh.accept_all || (trusted && sh.auto_accept_trusted);
    let name = sh
        .store
        .peer(&peer)
        .ok()
        .flatten()
        .map(|p| p.name)
        .unwrap_or_else(|| peer.short());
    let have = match &previous {
        Some((p, mask)) => {
            let plan = Plan {
                root: p.dir.clone(),
                roots: p.roots.clone(),
                manifest: manifest.clone(),
            };
            let mask = mask.clone();
            tokio::task::spawn_blocking(move || held_bytes(&plan, &mask))
                .await
                .unwrap_or_default()
        }
        None => BTreeMap::new(),
    };
    // Parked before the event goes out, so an answer cannot come too early.
    let pending = (!auto).then(|| {
        let (tx, rx) = oneshot::channel();
        sh.set_pending(
            id,
            Pending {
                manifest: manifest.clone(),
                have: BTreeMap::new(),
                decide: tx,
            },
        );
        rx
    });
    sh.emit(Event::Offer {
        id,
        peer,
        name,
        verification_code: verification_code(&sh.me, &peer),
        trusted,
        auto_accepted: auto,
        files: manifest.files() as u64,
        total_bytes: manifest.total_bytes(),
        free_bytes: std::fs::create_dir_all(&sh.downloads)
            .and_then(|()| fs::free_space(&sh.downloads))
            .ok(),
        entries: offer_preview(&manifest),
    });
    if let Some(tx) = seen {
        let _ = tx.send(auto);
    }
    let decision = if let Some((p, mask)) = &previous {
        Decision::Accept {
            mask: mask.clone(),
            dir: p.dir.clone(),
        }
    } else if auto {
        Decision::Accept {
            mask: vec![true; manifest.len()],
            dir: sh.downloads.clone(),
        }
    } else {
        let rx = pending.expect("parked when not automatic");
        match ask(sh, id, rx, &mut r, &mut ctl).await {
            Ok(d) => d,
            Err(o) => return o,
        }
    };
    let (mask, dir) = match decision {
        Decision::Reject(reason) => return reject(s, reason).await,
        Decision::Accept { mask, dir } => (mask, dir),
    };
    if auto && let Err(reason) = check_space(&dir, &manifest, &mask, &have) {
        sh.emit(Event::Error {
            message: format!("refused files from {}: {reason}", peer.short()),
        });
        return reject(s, reason).await;
    }
    let root = match std::fs::create_dir_all(&dir).and_then(|()| dir.canonicalize()) {
        Ok(r) => r,
        Err(e) => return reject(s, format!("the receiver cannot use its folder: {e}")).await,
    };
    let roots = match &previous {
        Some((p, _)) => p.roots.clone(),
        None => {
            let names: Vec<String> = selected_roots(&manifest, &mask);
            let root = root.clone();
            match tokio::task::spawn_blocking(move || {
                let mut m = BTreeMap::new();
                for n in names {
                    let local = fs::free_root_name(&root, &n)?;
                    m.insert(n, local);
                }
                Ok::<_, std::io::Error>(m)
            })
            .await
            {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => return reject(s, format!("no free name: {e}")).await,
                Err(e) => return reject(s, format!("naming failed: {e}")).await,
            }
        }
    };
    let now = crate::store::now_ms();
    sh.record(&TransferRecord {
        id,
        peer,
        direction: Direction::Receive,
        state: TransferState::Running,
        fingerprint,
        files: manifest.files() as u64,
        total_bytes: manifest.total_bytes(),
        done_bytes: 0,
        dir: root.clone(),
        roots: roots.clone(),
        selected: mask_to_ranges(&mask),
        error: None,
        created_ms: now,
        updated_ms: now,
    });
    if let Some((p, _)) = &previous {
        sh.record_state(p.id, TransferState::Resumed, p.done_bytes, None);
    }
    sh.set_state(id, TransferState::Running);
    let plan = Arc::new(Plan {
        root,
        roots,
        manifest: manifest.clone(),
    });
    let prep = {
        let plan = plan.clone();
        let mask = mask.clone();
        let resume = previous.is_some();
        match tokio::task::spawn_blocking(move || prepare(&plan, &mask, resume)).await {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(format!("preparing the folders failed: {e}")),
        }
    };
    for (path, error) in &prep.dir_errors {
        sh.emit(Event::TransferFailed {
            id,
            peer,
            direction: Direction::Receive,
            path: Some(path.display().to_string()),
            error: error.clone(),
        });
    }
    let mut head = Vec::new();
    let accept = ToSender::Accept {
        selected: mask_to_ranges(&mask),
        proofs: prep.proofs.len() as u32,
    };
    encode_frame(&accept, &mut head).expect("accept frame fits");
    for p in &prep.proofs {
        encode_frame(p, &mut head).expect("proof frames fit");
    }
    let mut w = s.clone();
    if let Err(e) = w.write_all(&head).await {
        return classify(&e);
    }
    if let Some(session) = tree {
        let target = plan.target(0);
        return super::tree::member(
            sh.clone(),
            super::tree::Joined {
                session,
                id,
                peer,
                stream: s.clone(),
                target,
                size: manifest.entry(0).and_then(|e| e.size()).unwrap_or(0),
            },
            ctl,
            meter,
            progress,
        )
        .await;
    }
    state.accept(&mask, prep.allowed);
    let files = state.files().to_vec();
    let selected_bytes: u64 = files
        .iter()
        .filter_map(|&i| manifest.entry(i).and_then(|e| e.size()))
        .sum();
    *progress = Progress::new(files.len() as u64, selected_bytes);
    receive_files(
        sh,
        id,
        peer,
        s,
        r,
        state,
        plan,
        prep.prehash,
        prep.whole,
        ctl,
        meter,
        progress,
    )
    .await
}

/// Waits for the user's decision on an offer (or the offer's end).
async fn ask(
    sh: &Arc<Shared>,
    id: TransferId,
    rx: oneshot::Receiver<Decision>,
    r: &mut SharedStream,
    ctl: &mut watch::Receiver<Ctl>,
) -> Result<Decision, Outcome> {
    let mut probe = [0u8; 1];
    let res = tokio::select! {
        d = rx => Ok(d.unwrap_or(Decision::Reject("the node is shutting down".into()))),
        () = tokio::time::sleep(sh.config.offer_timeout) => {
            Ok(Decision::Reject("nobody answered the offer in time".into()))
        }
        res = r.read(&mut probe) => Err(match res {
            Ok(0) => Outcome::Cancelled { by_peer: true },
            Ok(_) => {
                sh.count_protocol_error();
                Outcome::Failed("the sender sent data before the offer was answered".into())
            }
            Err(e) => classify(&e),
        }),
        _ = ctl.wait_for(|c| c.cancelled) => Ok(Decision::Reject("refused by the user".into())),
    };
    sh.clear_pending(id);
    res
}

async fn reject(s: &SharedStream, reason: String) -> Outcome {
    let reason = short_reason(reason);
    let _ = reply(
        s,
        &ToSender::Reject {
            reason: reason.clone(),
        },
    )
    .await;
    let mut w = s.clone();
    let _ = w.shutdown().await;
    Outcome::Rejected(reason)
}

/// Top-level names of the offer that have a selected entry.
fn selected_roots(manifest: &Manifest, mask: &[bool]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, sel) in mask.iter().enumerate() {
        if *sel {
            let r = manifest.path(i as u32).expect("in range").root();
            if !out.iter().any(|o| o == r) {
                out.push(r.to_string());
            }
        }
    }
    out
}

/// Bytes already held per selected file of an earlier attempt (parts and
/// complete files), for the free-space check.
fn held_bytes(plan: &Plan, mask: &[bool]) -> BTreeMap<u32, u64> {
    let mut have = BTreeMap::new();
    for (i, e) in plan.manifest.entries().iter().enumerate() {
        let (Some(size), true) = (e.size(), mask[i]) else {
            continue;
        };
        let target = plan.target(i as u32);
        let held = std::fs::symlink_metadata(fs::part_path(&target))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len().min(size))
            .or_else(|| {
                std::fs::symlink_metadata(&target)
                    .ok()
                    .filter(|m| m.is_file() && m.len() == size)
                    .map(|m| m.len())
            });
        if let Some(h) = held {
            have.insert(i as u32, h);
        }
    }
    have
}

/// What the receiver knows before the data flows.
#[derive(Default)]
struct Prep {
    proofs: Vec<ToSender>,
    allowed: BTreeMap<u32, u64>,
    prehash: BTreeMap<u32, (u64, blake3::Hasher)>,
    whole: BTreeMap<u32, [u8; 32]>,
    dir_errors: Vec<(PathBuf, String)>,
}

/// Creates the selected folders and, when resuming, proves what is on disk.
fn prepare(plan: &Plan, mask: &[bool], resume: bool) -> Prep {
    let mut prep = Prep::default();
    let mut known = std::collections::BTreeSet::new();
    for (i, e) in plan.manifest.entries().iter().enumerate() {
        if !mask[i] {
            continue;
        }
        let target = plan.target(i as u32);
        let Some(size) = e.size() else {
            if let Err(err) = fs::ensure_dir(&plan.root, &target, &mut known) {
                prep.dir_errors.push((target, err.to_string()));
            }
            continue;
        };
        if !resume {
            continue;
        }
        let index = i as u32;
        if let Some(p) = prove(&fs::part_path(&target), size) {
            let (hashes, end, hasher) = p;
            if hashes.is_empty() {
                continue;
            }
            prep.allowed.insert(index, end);
            prep.prehash.insert(index, (end, hasher));
            prep.proofs.push(ToSender::Resume {
                index,
                chunk: crate::proto::transfer::resume::chunk_size(size),
                hashes,
            });
        } else if let Ok(f) = fs::open_existing(&target)
            && f.metadata().map(|m| m.len()).ok() == Some(size)
            && let Ok(h) = fs::hash_prefix(&f, size)
        {
            let h = *h.finalize().as_bytes();
            prep.allowed.insert(index, size);
            prep.whole.insert(index, h);
            prep.proofs.push(ToSender::Have { index, blake3: h });
        }
    }
    prep
}

fn prove(part: &Path, size: u64) -> Option<(Vec<[u8; 32]>, u64, blake3::Hasher)> {
    let f = fs::open_existing(part).ok()?;
    let len = f.metadata().ok()?.len();
    fs::prove_part(&f, size, len).ok()
}

/// The data phase.
#[allow(clippy::too_many_arguments)]
async fn receive_files(
    sh: &Arc<Shared>,
    id: TransferId,
    peer: PeerId,
    s: &SharedStream,
    mut r: SharedStream,
    state: receiver::State,
    plan: Arc<Plan>,
    prehash: BTreeMap<u32, (u64, blake3::Hasher)>,
    whole: BTreeMap<u32, [u8; 32]>,
    mut ctl: watch::Receiver<Ctl>,
    meter: &Meter,
    progress: &mut Progress,
) -> Outcome {
    let files: Vec<u32> = state.files().to_vec();
    let (ops_tx, ops_rx) = mpsc::channel::<Op>(OPS_QUEUE);
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<Res>();
    let disk = tokio::task::spawn_blocking({
        let w = writer::Writer {
            root: plan.root.clone(),
            sync: sh.config.sync,
            ops: ops_rx,
            results: res_tx,
        };
        move || writer::run(w)
    });
    let mut reader = Box::pin(read_files(
        &mut r,
        state,
        plan.clone(),
        prehash,
        whole,
        ops_tx,
        ctl.clone(),
        sh.clone(),
    ));
    let mut tick = tokio::time::interval(INTERVAL);
    let mut reader_done = false;
    // A pause asked for before the data phase (while the offer was being
    // answered) holds from the start, and the transfer says so.
    let mut paused = ctl.borrow_and_update().paused;
    if paused {
        sh.set_state(id, TransferState::Paused);
    }
    let rel = |i: u32| plan.manifest.entry(i).map(|e| e.path.clone());
    let size = |i: u32| plan.manifest.entry(i).and_then(|e| e.size()).unwrap_or(0);
    let outcome = loop {
        tokio::select! {
            biased;
            res = res_rx.recv() => {
                let Some(res) = res else {
                    break Outcome::Failed("the disk writer stopped".into());
                };
                let answer = match res {
                    Res::Opened { index, have, size } => {
                        progress.start_file(index, size, have);
                        None
                    }
                    Res::Wrote(n) => {
                        progress.add(n);
                        None
                    }
                    Res::Done { index, path, bytes, blake3 } => {
                        progress.end_file(bytes, held(progress, index));
                        sh.count_file(Direction::Receive);
                        sh.emit(Event::TransferDone {
                            id,
                            peer,
                            direction: Direction::Receive,
                            path: path.display().to_string(),
                            bytes,
                            blake3: hex(&blake3),
                        });
                        Some(ToSender::FileOk { index })
                    }
                    Res::Failed { index, reason } => {
                        progress.end_file(size(index), held(progress, index));
                        sh.emit(Event::TransferFailed {
                            id,
                            peer,
                            direction: Direction::Receive,
                            path: rel(index),
                            error: reason.clone(),
                        });
                        Some(ToSender::FileFailed { index, reason: short_reason(reason) })
                    }
                    Res::DiskFull { index, reason } => {
                        sh.emit(Event::TransferFailed {
                            id,
                            peer,
                            direction: Direction::Receive,
                            path: rel(index),
                            error: reason,
                        });
                        // The sender learns why before the stream ends.
                        let full = "the receiver's disk is full".to_string();
                        let _ = reply(s, &ToSender::FileFailed { index, reason: full }).await;
                        // Interrupted, not failed: the parts stay, and the same
                        // files offered again (once there is room) resume.
                        break Outcome::Interrupted(format!(
                            "the disk of {} is full",
                            plan.root.display()
                        ));
                    }
                    Res::Finished { ok, failed } => {
                        if let Err(e) = reply(s, &ToSender::Summary { ok, failed }).await {
                            break classify(&e);
                        }
                        let mut w = s.clone();
                        let _ = w.shutdown().await;
                        drop(reader);
                        // Wait for the sender to read the summary and close its side.
                        let mut rest = [0u8; 64];
                        let _ = tokio::time::timeout(FIN_TIMEOUT, async {
                            while matches!(r.read(&mut rest).await, Ok(n) if n > 0) {}
                        })
                        .await;
                        let _ = disk.await;
                        return Outcome::Complete { ok, failed };
                    }
                };
                if let Some(a) = answer
                    && let Err(e) = reply(s, &a).await
                {
                    break classify(&e);
                }
            }
            done = &mut reader, if !reader_done => {
                reader_done = true;
                match done {
                    Ok(()) => {}
                    Err(ReadErr::Io(e)) => break classify(&e),
                    Err(ReadErr::Protocol(e)) => {
                        sh.count_protocol_error();
                        s.reset(RESET_PROTOCOL);
                        break Outcome::Failed(format!("the sender broke the protocol: {e}"));
                    }
                    // The writer stopped: its last result (a full disk, say)
                    // may still be queued. Read on: the results channel yields
                    // it, then ends.
                    Err(ReadErr::Writer) => {}
                }
            }
            changed = ctl.changed() => {
                if changed.is_err() {
                    continue;
                }
                let c = *ctl.borrow_and_update();
                if c.cancelled {
                    s.reset(RESET_CANCELLED);
                    break Outcome::Cancelled { by_peer: false };
                }
                if c.paused != paused {
                    paused = c.paused;
                    sh.set_state(id, if paused { TransferState::Paused } else { TransferState::Running });
                    emit_progress(sh, id, peer, progress.snapshot(sh.now()), &plan, paused, meter);
                }
            }
            _ = tick.tick() => {
                if let Some(snap) = progress.poll(sh.now()) {
                    emit_progress(sh, id, peer, snap, &plan, paused, meter);
                }
            }
        }
    };
    drop(reader);
    // Let the writer finish what it has (so parts hold every byte read), then
    // clean up after a cancel or a protocol failure.
    let _ = disk.await;
    if matches!(outcome, Outcome::Cancelled { .. } | Outcome::Failed(_)) {
        for &i in &files {
            let _ = std::fs::remove_file(fs::part_path(&plan.target(i)));
        }
        remove_empty_folders(&plan, &files);
    }
    outcome
}

/// Removes the folders below the download folder on the way to `files` that
/// are empty (deepest first): what a cancelled or failed attempt made for
/// files it never finished. Folders holding anything stay.
fn remove_empty_folders(plan: &Plan, files: &[u32]) {
    let mut dirs = std::collections::BTreeSet::new();
    for &i in files {
        let target = plan.target(i);
        let mut d = target.parent();
        while let Some(p) = d.filter(|p| p.starts_with(&plan.root) && *p != plan.root) {
            dirs.insert(p.to_path_buf());
            d = p.parent();
        }
    }
    let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        // Fails, as it should, for a folder that is not empty.
        let _ = std::fs::remove_dir(&d);
    }
}

/// Bytes of file `index` counted so far (0 if it never started).
fn held(p: &Progress, index: u32) -> u64 {
    if p.file() == Some(index) {
        p.file_done()
    } else {
        0
    }
}

fn emit_progress(
    sh: &Shared,
    id: TransferId,
    peer: PeerId,
    snap: crate::proto::transfer::progress::Snapshot,
    plan: &Plan,
    paused: bool,
    meter: &Meter,
) {
    meter.done.store(snap.done_bytes, Ordering::Relaxed);
    meter.transferred.store(snap.transferred, Ordering::Relaxed);
    sh.emit(super::progress_event(
        id,
        peer,
        Direction::Receive,
        &snap,
        snap.file
            .and_then(|i| plan.manifest.entry(i))
            .map(|e| e.path.clone()),
        paused,
    ));
}

/// Reads the sender's frames and blocks, checks them, and hands the work to
/// the disk writer.
#[allow(clippy::too_many_arguments)]
async fn read_files(
    r: &mut SharedStream,
    mut state: receiver::State,
    plan: Arc<Plan>,
    mut prehash: BTreeMap<u32, (u64, blake3::Hasher)>,
    whole: BTreeMap<u32, [u8; 32]>,
    ops: mpsc::Sender<Op>,
    mut ctl: watch::Receiver<Ctl>,
    sh: Arc<Shared>,
) -> Result<(), ReadErr> {
    loop {
        if ctl.borrow().paused {
            let _ = ctl.wait_for(|c| !c.paused || c.cancelled).await;
        }
        let msg = read_frame::<ToReceiver, _>(r)
            .await?
            .map_err(|e| ReadErr::Protocol(ProtocolError::Invalid(format!("bad frame: {e}"))))?;
        let op = match state.on_message(msg).map_err(ReadErr::Protocol)? {
            Action::Open {
                index,
                offset,
                size,
            } => {
                let target = plan.target(index);
                Op::Open {
                    index,
                    part: fs::part_path(&target),
                    target,
                    offset,
                    size,
                    prehash: prehash.remove(&index),
                    whole: whole.get(&index).copied(),
                }
            }
            Action::Write { len, .. } => {
                // The block as the mux received it (frames of up to 64 KiB),
                // not copied into a buffer of ours: the writer hashes and
                // writes the pieces themselves.
                let pieces = r.read_exact_bytes(len as usize).await?;
                sh.count_received(len as u64);
                Op::Data(pieces)
            }
            Action::Finish { index, blake3 } => Op::Finish { index, blake3 },
            Action::Skipped { index, reason } => Op::Skip { index, reason },
            Action::Done => {
                ops.send(Op::Done).await.map_err(|_| ReadErr::Writer)?;
                return Ok(());
            }
            Action::Continue | Action::Offer => {
                unreachable!("the data phase never returns offer actions")
            }
        };
        ops.send(op).await.map_err(|_| ReadErr::Writer)?;
    }
}
