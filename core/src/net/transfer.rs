//! The file transfer service: sends files and folders to peers and receives
//! them, driving the pure protocol of [`crate::proto::transfer`] with real
//! files and mux streams.
//!
//! # Use
//!
//! The public API is the [`Node`] methods of `node/transfers.rs`, one-liners
//! over the `Service` here:
//!
//! - [`Node::send_files`] / [`Node::send_files_to`] offer files and folders to
//!   one or several peers (each gets its own transfer, in parallel).
//! - An incoming offer is an [`Event::Offer`]; [`Node::accept_offer`] (all,
//!   some or none of its entries) or [`Node::reject_offer`] answers it. It is
//!   accepted without asking when [`Config::accept_all`](crate::Config) is set,
//!   when the sender is trusted and `auto_accept_trusted` is set, or when it
//!   resumes a transfer this node accepted before.
//! - [`Node::pause_transfer`], [`Node::resume_transfer`],
//!   [`Node::cancel_transfer`] (either side) and [`Node::transfers`].
//! - Events: `Progress` about every 100 ms, `TransferDone` per file (path,
//!   bytes, BLAKE3), `TransferFailed` per file or for the whole transfer, and
//!   one final event per transfer: `TransferComplete`, `TransferFailed` without
//!   a path, `TransferCancelled` or `TransferRejected`.
//!
//! # Tasks
//!
//! A transfer is one mux bulk stream (see the protocol's docs) and a handful of
//! tasks: the transfer's main task (answers, replies, progress, control), on the
//! sender a blocking thread that reads and hashes files and a task that writes
//! to the stream, on the receiver a blocking thread that hashes and writes
//! files. Bounded channels between them (and the mux's stream window) keep
//! memory flat whatever the file size. The registry of live transfers holds
//! handles only (control switches, counters, a pending decision), never
//! protocol state.
//!
//! # Safety of received files
//!
//! Every path is built by the receiver from checked components
//! ([`SafePath`](crate::proto::transfer::SafePath)) under a top-level name it
//! picked itself so that nothing existing is touched (" (1)" suffixes); folders
//! are created one component at a time and a symlink on the way is refused;
//! `.part` files are opened without following symlinks; a file is renamed into
//! place only after its BLAKE3 hash matched, and never over an existing name.
//! Bytes are written with positional writes as they arrive and are not synced
//! to disk unless [`TransferConfig::sync`] is set: a received file survives a
//! crash of the process (the page cache holds it), not necessarily a crash of
//! the OS, like `cp` and `rsync` by default.
//!
//! # Resume
//!
//! An interrupted incoming transfer keeps its `.part` files and its row in the
//! store. When the same peer offers the same files again (same manifest
//! fingerprint), the receiver reuses the folder and names of the first attempt,
//! proves what it holds chunk by chunk, and only the rest crosses the network.
//! Cancelling (either side) deletes the `.part` files; losing the peer,
//! shutting down or crashing keeps them.
//!
//! [`Node`]: crate::Node
//! [`Node::send_files`]: crate::Node::send_files
//! [`Node::send_files_to`]: crate::Node::send_files_to
//! [`Node::accept_offer`]: crate::Node::accept_offer
//! [`Node::reject_offer`]: crate::Node::reject_offer
//! [`Node::pause_transfer`]: crate::Node::pause_transfer
//! [`Node::resume_transfer`]: crate::Node::resume_transfer
//! [`Node::cancel_transfer`]: crate::Node::cancel_transfer
//! [`Node::transfers`]: crate::Node::transfers

/// How a transfer ended, from either side.
pub(crate) enum Outcome {
    Complete { ok: u32, failed: u32 },
    Rejected(String),
    Cancelled { by_peer: bool },
    Interrupted(String),
    Failed(String),
}

mod budget;
pub(crate) mod fs;
pub mod local;
#[cfg(any(test, feature = "sim"))]
pub mod raw;
mod reader;
mod recv;
mod send;
pub(crate) mod stream;
mod tree;
mod writer;

/// Entry points for the fuzz targets (not an API): a relay tree's session
/// stream as a member reads it.
#[doc(hidden)]
pub use tree::fuzzing as tree_fuzzing;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

pub use crate::config::TransferConfig;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::identity::PeerId;
use crate::net::links::Links;
use crate::net::mux::MuxStream;
use crate::proto::transfer::{Direction, Manifest, Selection, TransferState};
pub use crate::proto::transfer::{Entry, EntryKind, OfferEntry, TransferId};
use crate::proto::wire::StreamKind;
use crate::store::{Store, TransferRecord};

/// Incoming transfer streams queued before the service takes them.
const STREAM_QUEUE: usize = 64;

/// Finished transfers [`Node::transfers`](crate::Node::transfers) lists beside
/// the live ones.
const HISTORY: usize = 100;

/// Refusals of incoming streams being written at once; past it a stream over
/// budget is dropped without a reason.
const REFUSALS: usize = 16;

/// Free space kept beyond what an accepted offer needs.
const SPACE_MARGIN: u64 = 16 << 20;

/// Notes a slow reader may fall behind before it misses the oldest (notes
/// come per offer, per received file and per end, never per progress step).
const NOTES: usize = 1024;

/// What the node's own services learn of transfers (the web UI keeps its
/// lists of waiting offers and received files with it), on a channel of
/// their own: the public event stream is shared with progress and chat and
/// drops the oldest events for a slow reader.
#[derive(Debug, Clone)]
pub(crate) enum TransferNote {
    /// An offer waits for the user: its event, as front ends show it.
    Waiting(Event),
    /// Offer `id` no longer waits (answered, timed out or withdrawn).
    Answered(TransferId),
    /// A received file is in place: its `TransferDone` event.
    Received(Event),
    /// Transfer `id` ended: its last event went out.
    Ended(TransferId),
}

impl TransferNote {
    /// The note an event makes, if any.
    fn of(e: &Event) -> Option<Self> {
        match e {
            Event::Offer {
                auto_accepted: false,
                ..
            } => Some(Self::Waiting(e.clone())),
            Event::TransferDone {
                direction: Direction::Receive,
                ..
            } => Some(Self::Received(e.clone())),
            _ if e.ends_transfer() => e.transfer_id().map(Self::Ended),
            _ => None,
        }
    }
}

/// A transfer as [`Node::transfers`](crate::Node::transfers) lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferInfo {
    pub id: TransferId,
    pub peer: PeerId,
    pub direction: Direction,
    pub state: TransferState,
    pub files: u64,
    pub total_bytes: u64,
    /// Bytes the receiver holds (resumed prefixes included).
    pub done_bytes: u64,
    /// File bytes that crossed the network in this attempt (live transfers).
    pub transferred: u64,
    pub live: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// Counters of the service since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStats {
    /// File bytes written to transfer streams.
    pub bytes_sent: u64,
    /// File bytes read from transfer streams.
    pub bytes_received: u64,
    pub files_sent: u64,
    pub files_received: u64,
    /// Transfers ended because the peer broke the protocol (malformed offers
    /// included).
    pub protocol_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    files_sent: AtomicU64,
    files_received: AtomicU64,
    protocol_errors: AtomicU64,
}

/// Live counters of one transfer.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub done: AtomicU64,
    pub transferred: AtomicU64,
}

/// The user's switches for one transfer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ctl {
    pub paused: bool,
    pub cancelled: bool,
}

/// A receiver's answer to an offer.
#[derive(Debug)]
pub(crate) enum Decision {
    Accept { mask: Vec<bool>, dir: PathBuf },
    Reject(String),
}

/// An offer waiting for the user.
pub(crate) struct Pending {
    manifest: Arc<Manifest>,
    /// Bytes already held per file (a resumed transfer), for the space check.
    have: BTreeMap<u32, u64>,
    decide: oneshot::Sender<Decision>,
}

struct Live {
    peer: PeerId,
    direction: Direction,
    state: TransferState,
    files: u64,
    total_bytes: u64,
    ctl: watch::Sender<Ctl>,
    meter: Arc<Meter>,
    pending: Option<Pending>,
    task: Option<AbortHandle>,
}

/// What every transfer task shares.
pub(crate) struct Shared {
    pub config: TransferConfig,
    pub downloads: PathBuf,
    pub accept_all: bool,
    pub auto_accept_trusted: bool,
    pub me: PeerId,
    pub store: Arc<Store>,
    pub links: Arc<Links>,
    events: broadcast::Sender<Event>,
    /// Made by the first subscriber: the channel's ring of [`NOTES`] slots is
    /// allocated whole (~340 KiB), and a node with no web UI never reads it.
    notes: std::sync::OnceLock<broadcast::Sender<TransferNote>>,
    live: Mutex<BTreeMap<TransferId, Live>>,
    /// Woken whenever a transfer leaves `live`.
    ended: tokio::sync::Notify,
    counters: Counters,
    epoch: tokio::time::Instant,
    /// What incoming transfers may hold.
    budget: Arc<budget::Budget>,
    /// Browser guests: peers reached through the web server, not dialed.
    pub guests: Arc<crate::net::guest::Guests>,
    /// Transfers to browser guests, as they download them.
    pub shares: local::download::Registry,
    /// LocalSend devices: files to them travel by LocalSend's requests.
    pub localsend: Arc<crate::localsend::Devices>,
    /// Relay tree sessions this node takes part in.
    trees: tree::Sessions,
}

impl Shared {
    /// Puts a transfer's event on the node's stream, and what it changes on
    /// the services' notes.
    pub fn emit(&self, e: Event) {
        if let Some(n) = TransferNote::of(&e) {
            self.note(n);
        }
        let _ = self.events.send(e);
    }

    /// Time since the service started (the clock of progress accounting).
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<TransferId, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a transfer; `None` if the id is taken by a live one.
    pub fn register(
        &self,
        id: TransferId,
        peer: PeerId,
        direction: Direction,
        files: u64,
        total_bytes: u64,
    ) -> Option<(watch::Receiver<Ctl>, Arc<Meter>)> {
        let mut live = self.live();
        if live.contains_key(&id) {
            return None;
        }
        let (ctl, rx) = watch::channel(Ctl::default());
        let meter = Arc::new(Meter::default());
        live.insert(
            id,
            Live {
                peer,
                direction,
                state: TransferState::Offered,
                files,
                total_bytes,
                ctl,
                meter: meter.clone(),
                pending: None,
                task: None,
            },
        );
        Some((rx, meter))
    }

    /// The switches of a live transfer (for the pause-after test hook).
    pub fn ctl_sender(&self, id: TransferId) -> Option<watch::Sender<Ctl>> {
        self.live().get(&id).map(|l| l.ctl.clone())
    }

    pub fn set_state(&self, id: TransferId, state: TransferState) {
        if let Some(l) = self.live().get_mut(&id) {
            l.state = state;
        }
    }

    fn set_task(&self, id: TransferId, task: AbortHandle) {
        if let Some(l) = self.live().get_mut(&id) {
            l.task = Some(task);
        }
    }

    /// Parks an offer until the user decides.
    pub fn set_pending(&self, id: TransferId, pending: Pending) {
        if let Some(l) = self.live().get_mut(&id) {
            l.pending = Some(pending);
        }
    }

    /// The offer no longer waits (answered, timed out or withdrawn).
    pub fn clear_pending(&self, id: TransferId) {
        if let Some(l) = self.live().get_mut(&id) {
            l.pending = None;
        }
        self.note(TransferNote::Answered(id));
    }

    /// A note for the services, if any subscribed (none missed it: a broadcast
    /// channel gives a subscriber only what is sent after it subscribed).
    fn note(&self, n: TransferNote) {
        if let Some(tx) = self.notes.get() {
            let _ = tx.send(n);
        }
    }

    pub fn unregister(&self, id: TransferId) {
        self.live().remove(&id);
        self.ended.notify_waiters();
    }

    /// Waits until transfer `id` is no longer live, or until `deadline`.
    pub async fn wait_ended(&self, id: TransferId, deadline: tokio::time::Instant) {
        loop {
            let notified = self.ended.notified();
            tokio::pin!(notified);
            // Registered before the check, so an end in between is not missed.
            notified.as_mut().enable();
            if !self.is_live(id) || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Whether a live transfer with this id exists.
    pub fn is_live(&self, id: TransferId) -> bool {
        self.live().contains_key(&id)
    }

    pub fn count_sent(&self, bytes: u64) {
        self.counters.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn count_received(&self, bytes: u64) {
        self.counters
            .bytes_received
            .fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn count_file(&self, direction: Direction) {
        let c = match direction {
            Direction::Send => &self.counters.files_sent,
            Direction::Receive => &self.counters.files_received,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_protocol_error(&self) {
        self.counters
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a transfer: records its final state, leaves the registry and emits
    /// its last event. `resume_hint` tells the user what to do after an
    /// interruption (it differs between sender and receiver).
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &self,
        id: TransferId,
        peer: PeerId,
        direction: Direction,
        outcome: Outcome,
        snap: crate::proto::transfer::progress::Snapshot,
        meter: &Meter,
        resume_hint: &str,
    ) {
        meter.done.store(snap.done_bytes, Ordering::Relaxed);
        let (state, error) = match &outcome {
            Outcome::Complete { failed: 0, .. } => (TransferState::Complete, None),
            Outcome::Complete { failed, .. } => (
                TransferState::Failed,
                Some(format!("{failed} file(s) failed")),
            ),
            Outcome::Rejected(r) => (TransferState::Rejected, Some(r.clone())),
            Outcome::Cancelled { .. } => (TransferState::Cancelled, None),
            Outcome::Interrupted(e) => (TransferState::Interrupted, Some(e.clone())),
            Outcome::Failed(e) => (TransferState::Failed, Some(e.clone())),
        };
        self.record_state(id, state, snap.done_bytes, error.as_deref());
        self.unregister(id);
        self.emit(match outcome {
            Outcome::Complete { ok, failed } => Event::TransferComplete {
                id,
                peer,
                direction,
                files: (ok + failed) as u64,
                failed: failed as u64,
                bytes: snap.total_bytes,
                transferred: snap.transferred,
            },
            Outcome::Rejected(reason) => Event::TransferRejected {
                id,
                peer,
                direction,
                reason,
            },
            Outcome::Cancelled { by_peer } => Event::TransferCancelled {
                id,
                peer,
                direction,
                by_peer,
            },
            Outcome::Interrupted(e) => Event::TransferFailed {
                id,
                peer,
                direction,
                path: None,
                error: format!("interrupted ({e}); {resume_hint}"),
            },
            Outcome::Failed(error) => Event::TransferFailed {
                id,
                peer,
                direction,
                path: None,
                error,
            },
        });
    }

    /// Records a state change in the store (failures are logged: the store is
    /// history and resume data, never needed to finish a running transfer).
    pub fn record_state(
        &self,
        id: TransferId,
        state: TransferState,
        done: u64,
        error: Option<&str>,
    ) {
        if let Err(e) = self.store.set_transfer_state(id, state, done, error) {
            tracing::warn!(%id, error = %e, "cannot record transfer state");
        }
    }

    pub fn record(&self, r: &TransferRecord) {
        if let Err(e) = self.store.put_transfer(r) {
            tracing::warn!(id = %r.id, error = %e, "cannot record transfer");
        }
    }
}

/// The service's handle, held by the [`Node`](crate::Node).
pub(crate) struct Service {
    shared: Arc<Shared>,
    local: local::LocalTransfers,
}

impl Service {
    /// Starts the service: returns it, the queue incoming transfer streams go
    /// to (the router's), and the task taking them (for the node to own).
    pub(crate) fn start(
        config: &crate::Config,
        me: PeerId,
        store: Arc<Store>,
        links: Arc<Links>,
        events: broadcast::Sender<Event>,
        guests: Arc<crate::net::guest::Guests>,
        localsend: Arc<crate::localsend::Devices>,
    ) -> (
        Self,
        mpsc::Sender<(PeerId, StreamKind, MuxStream)>,
        tokio::task::JoinHandle<()>,
    ) {
        if let Err(e) = store.interrupt_live_transfers() {
            tracing::warn!(error = %e, "cannot mark old transfers interrupted");
        }
        let shared = Arc::new(Shared {
            config: config.transfer.clone(),
            downloads: config.downloads.clone(),
            accept_all: config.accept_all,
            auto_accept_trusted: config.auto_accept_trusted,
            me,
            store,
            links,
            events,
            notes: std::sync::OnceLock::new(),
            live: Mutex::new(BTreeMap::new()),
            ended: tokio::sync::Notify::new(),
            counters: Counters::default(),
            epoch: tokio::time::Instant::now(),
            budget: Arc::default(),
            guests,
            shares: Default::default(),
            localsend,
            trees: Default::default(),
        });
        let (tx, mut rx) = mpsc::channel::<(PeerId, StreamKind, MuxStream)>(STREAM_QUEUE);
        let weak = Arc::downgrade(&shared);
        let task = tokio::spawn(async move {
            let refusals = Arc::new(tokio::sync::Semaphore::new(REFUSALS));
            while let Some((peer, kind, stream)) = rx.recv().await {
                let Some(shared) = weak.upgrade() else { return };
                if kind == StreamKind::Tree {
                    tokio::spawn(tree::incoming(shared, peer, stream));
                    continue;
                }
                let trusted = shared.store.trust(&peer).ok() == Some(crate::event::Trust::Trusted);
                match shared.budget.admit(peer, trusted) {
                    Ok(slot) => {
                        let stream = stream::Shared::new(stream);
                        tokio::spawn(recv::run(shared, peer, stream, slot, None, None));
                    }
                    Err(reason) => {
                        tracing::debug!(peer = %peer.short(), %reason, "refused a transfer stream");
                        if let Ok(permit) = refusals.clone().try_acquire_owned() {
                            tokio::spawn(async move {
                                recv::refuse(stream, reason).await;
                                drop(permit);
                            });
                        }
                    }
                }
            }
        });
        let local = local::LocalTransfers::new(shared.clone());
        (Self { shared, local }, tx, task)
    }

    /// Stops every transfer: they stay resumable (state `interrupted`).
    pub(crate) fn shutdown(&self) {
        let live = std::mem::take(&mut *self.shared.live());
        for (id, l) in live {
            if let Some(t) = l.task {
                t.abort();
            }
            self.shared.record_state(
                id,
                TransferState::Interrupted,
                l.meter.done.load(Ordering::Relaxed),
                Some("the node shut down"),
            );
        }
    }

    /// What transfers change from now on, for the node's own services.
    pub(crate) fn subscribe_notes(&self) -> broadcast::Receiver<TransferNote> {
        self.shared
            .notes
            .get_or_init(|| broadcast::channel(NOTES).0)
            .subscribe()
    }

    /// Emits an event of a transfer run outside the service (a browser
    /// guest's upload or download), so its notes go out too.
    pub(crate) fn emit(&self, e: Event) {
        self.shared.emit(e);
    }

    /// Flips a live transfer's switches (pause, resume, cancel).
    pub(crate) fn ctl(&self, id: TransferId, f: impl FnOnce(&mut Ctl)) -> Result<()> {
        let live = self.shared.live();
        let l = live
            .get(&id)
            .ok_or_else(|| Error::Invalid(format!("no running transfer {id}")))?;
        l.ctl.send_modify(f);
        Ok(())
    }

    /// Offers `paths` to each of `peers` (dialed first; a browser guest gets
    /// them as a share it downloads): one transfer each, started at once (see [`Node::send_files_to`](crate::Node::send_files_to)).
    pub(crate) async fn send(
        &self,
        peers: &[PeerId],
        paths: &[PathBuf],
    ) -> Result<Vec<TransferId>> {
        if peers.is_empty() || paths.is_empty() {
            return Err(Error::Invalid(
                "nothing to send, or nobody to send to".into(),
            ));
        }
        let owned = paths.to_vec();
        let walked = tokio::task::spawn_blocking(move || fs::walk(&owned))
            .await
            .map_err(|e| Error::Invalid(format!("walking the files failed: {e}")))?
            .map_err(Error::Invalid)?;
        if let Some(first) = walked.skipped.first() {
            self.shared.emit(Event::Error {
                message: format!(
                    "left out {} symlink(s) or special file(s), e.g. {}",
                    walked.skipped.len(),
                    first.display()
                ),
            });
        }
        let manifest =
            Arc::new(Manifest::new(walked.entries).map_err(|e| Error::Invalid(e.to_string()))?);
        let sources = Arc::new(walked.sources);
        let dialed =
            |p: &PeerId| !self.shared.guests.is_guest(p) && !self.shared.localsend.is_device(p);
        for peer in peers.iter().filter(|p| dialed(p)) {
            self.shared
                .links
                .dial(*peer, Vec::new())
                .await
                .map_err(|e| Error::PeerNotFound(format!("{}: {e}", peer.short())))?;
        }
        let shared = &self.shared;
        let mut ids = Vec::new();
        for &peer in peers {
            let id = loop {
                let id = TransferId(rand::random());
                if let Some((ctl, meter)) = shared.register(
                    id,
                    peer,
                    Direction::Send,
                    manifest.files() as u64,
                    manifest.total_bytes(),
                ) {
                    let now = crate::store::now_ms();
                    shared.record(&TransferRecord {
                        id,
                        peer,
                        direction: Direction::Send,
                        state: TransferState::Offered,
                        fingerprint: hex(&manifest.fingerprint()),
                        files: manifest.files() as u64,
                        total_bytes: manifest.total_bytes(),
                        done_bytes: 0,
                        dir: PathBuf::new(),
                        roots: BTreeMap::new(),
                        selected: Vec::new(),
                        error: None,
                        created_ms: now,
                        updated_ms: now,
                    });
                    let task = tokio::spawn(send::run(
                        shared.clone(),
                        id,
                        peer,
                        manifest.clone(),
                        sources.clone(),
                        ctl,
                        meter,
                    ));
                    shared.set_task(id, task.abort_handle());
                    break id;
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }

    /// Offers one file to each of `peers` (dialed first) and sends it down a
    /// relay tree over those who accept: one transfer per receiver, as
    /// [`Service::send`] makes (see [`Node::send_tree`](crate::Node::send_tree)).
    pub(crate) async fn send_tree(
        &self,
        peers: &[PeerId],
        path: &std::path::Path,
    ) -> Result<Vec<TransferId>> {
        if peers.is_empty() {
            return Err(Error::Invalid("nobody to send to".into()));
        }
        if let Some(g) = peers.iter().find(|p| self.shared.guests.is_guest(p)) {
            return Err(Error::Invalid(format!(
                "{} is a browser guest: a relay tree needs PeerConnect nodes",
                g.short()
            )));
        }
        if let Some(d) = peers.iter().find(|p| self.shared.localsend.is_device(p)) {
            return Err(Error::Invalid(format!(
                "{} is a LocalSend device: a relay tree needs PeerConnect nodes",
                d.short()
            )));
        }
        let owned = vec![path.to_path_buf()];
        let walked = tokio::task::spawn_blocking(move || fs::walk(&owned))
            .await
            .map_err(|e| Error::Invalid(format!("walking the files failed: {e}")))?
            .map_err(Error::Invalid)?;
        let manifest =
            Arc::new(Manifest::new(walked.entries).map_err(|e| Error::Invalid(e.to_string()))?);
        let source = match (manifest.files(), walked.sources.as_slice()) {
            (1, [Some(src)]) => src.clone(),
            _ => {
                return Err(Error::Invalid(
                    "a relay tree sends one regular file (not a folder)".into(),
                ));
            }
        };
        for peer in peers {
            self.shared
                .links
                .dial(*peer, Vec::new())
                .await
                .map_err(|e| Error::PeerNotFound(format!("{}: {e}", peer.short())))?;
        }
        let shared = &self.shared;
        let mut receivers = Vec::new();
        for &peer in peers {
            loop {
                let id = TransferId(rand::random());
                let Some((ctl, meter)) =
                    shared.register(id, peer, Direction::Send, 1, manifest.total_bytes())
                else {
                    continue;
                };
                let now = crate::store::now_ms();
                shared.record(&TransferRecord {
                    id,
                    peer,
                    direction: Direction::Send,
                    state: TransferState::Offered,
                    fingerprint: hex(&manifest.fingerprint()),
                    files: 1,
                    total_bytes: manifest.total_bytes(),
                    done_bytes: 0,
                    dir: PathBuf::new(),
                    roots: BTreeMap::new(),
                    selected: Vec::new(),
                    error: None,
                    created_ms: now,
                    updated_ms: now,
                });
                receivers.push(tree::Receiver {
                    id,
                    peer,
                    ctl,
                    meter,
                });
                break;
            }
        }
        let ids: Vec<TransferId> = receivers.iter().map(|r| r.id).collect();
        let task = tokio::spawn(tree::send(shared.clone(), manifest, source, receivers));
        for &id in &ids {
            shared.set_task(id, task.abort_handle());
        }
        Ok(ids)
    }

    /// Answers a waiting offer: accept `Some((selection, dir))` (`dir`: the
    /// download folder if `None`) or reject `None`.
    pub(crate) fn decide(
        &self,
        id: TransferId,
        accept: Option<(Selection, Option<PathBuf>)>,
    ) -> Result<()> {
        let shared = &self.shared;
        let mut live = shared.live();
        let l = live
            .get_mut(&id)
            .filter(|l| l.pending.is_some())
            .ok_or_else(|| Error::Invalid(format!("no offer {id} is waiting for an answer")))?;
        let decision = match accept {
            None | Some((Selection::None, _)) => Decision::Reject("refused by the user".into()),
            Some((selection, dir)) => {
                let p = l.pending.as_ref().expect("checked above");
                let mask = p
                    .manifest
                    .select(&selection)
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                if mask.iter().any(|&m| m) {
                    let dir = dir.unwrap_or_else(|| shared.downloads.clone());
                    check_space(&dir, &p.manifest, &mask, &p.have).map_err(Error::Invalid)?;
                    Decision::Accept { mask, dir }
                } else {
                    Decision::Reject("the user selected nothing".into())
                }
            }
        };
        let p = l.pending.take().expect("checked above");
        p.decide
            .send(decision)
            .map_err(|_| Error::Invalid(format!("offer {id} was withdrawn")))
    }

    /// Incoming transfers from senders that are not PeerConnect nodes.
    pub(crate) fn local(&self) -> local::LocalTransfers {
        self.local.clone()
    }

    /// Live transfers, then the most recent finished or interrupted ones.
    pub(crate) fn list(&self) -> Result<Vec<TransferInfo>> {
        let shared = &self.shared;
        let mut out: Vec<TransferInfo> = shared
            .live()
            .iter()
            .map(|(&id, l)| TransferInfo {
                id,
                peer: l.peer,
                direction: l.direction,
                state: l.state,
                files: l.files,
                total_bytes: l.total_bytes,
                done_bytes: l.meter.done.load(Ordering::Relaxed),
                transferred: l.meter.transferred.load(Ordering::Relaxed),
                live: true,
                error: None,
            })
            .collect();
        for r in shared.store.transfers(HISTORY)? {
            if out.iter().any(|t| t.id == r.id) {
                continue;
            }
            out.push(TransferInfo {
                id: r.id,
                peer: r.peer,
                direction: r.direction,
                state: r.state,
                files: r.files,
                total_bytes: r.total_bytes,
                done_bytes: r.done_bytes,
                transferred: 0,
                live: false,
                error: r.error,
            });
        }
        Ok(out)
    }

    /// The service's counters.
    pub(crate) fn stats(&self) -> TransferStats {
        let c = &self.shared.counters;
        TransferStats {
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            files_sent: c.files_sent.load(Ordering::Relaxed),
            files_received: c.files_received.load(Ordering::Relaxed),
            protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
        }
    }
}

/// Whether the files `mask` selects fit in the free space of `dir` (created if
/// missing), counting what is already there (`have`).
pub(crate) fn check_space(
    dir: &std::path::Path,
    manifest: &Manifest,
    mask: &[bool],
    have: &BTreeMap<u32, u64>,
) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let need: u64 = manifest
        .entries()
        .iter()
        .enumerate()
        .filter(|(i, _)| mask.get(*i) == Some(&true))
        .filter_map(|(i, e)| {
            e.size()
                .map(|s| s.saturating_sub(have.get(&(i as u32)).copied().unwrap_or(0)))
        })
        .sum();
    let free = fs::free_space(dir).map_err(|e| format!("free space of {}: {e}", dir.display()))?;
    if free < need.saturating_add(SPACE_MARGIN) {
        return Err(format!(
            "not enough free space in {}: the files need {} MB, {} MB are free",
            dir.display(),
            need.div_ceil(1_000_000),
            free / 1_000_000
        ));
    }
    Ok(())
}

/// The [`Event::Progress`] of a snapshot.
fn progress_event(
    id: TransferId,
    peer: PeerId,
    direction: Direction,
    snap: &crate::proto::transfer::progress::Snapshot,
    file: Option<String>,
    paused: bool,
) -> Event {
    Event::Progress {
        id,
        peer,
        direction,
        done_bytes: snap.done_bytes,
        total_bytes: snap.total_bytes,
        files_done: snap.files_done,
        files_total: snap.files_total,
        file,
        file_done: snap.file_done,
        file_bytes: snap.file_total,
        transferred: snap.transferred,
        rate: snap.rate,
        paused,
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
        let h = blake3::hash(b"x");
        assert_eq!(hex(h.as_bytes()), h.to_hex().as_str());
    }

    #[test]
    fn an_offer_larger_than_the_free_space_is_refused_and_what_is_held_counts() {
        let d = tempfile::tempdir().unwrap();
        // far beyond whatever the free space is by the time it is checked
        let huge = fs::free_space(d.path()).unwrap() + (1 << 40);
        let m = Manifest::new(vec![Entry::file("huge", huge), Entry::file("small", 10)]).unwrap();
        let err = check_space(d.path(), &m, &[true, true], &BTreeMap::new()).unwrap_err();
        assert!(err.contains("not enough free space"), "{err}");
        check_space(d.path(), &m, &[false, true], &BTreeMap::new()).unwrap();
        // a resumed file that is nearly all there fits again
        let have = BTreeMap::from([(0, huge - 1000)]);
        check_space(d.path(), &m, &[true, true], &have).unwrap();
    }
}
