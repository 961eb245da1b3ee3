//! Incoming transfers from senders that are not PeerConnect nodes: a browser
//! guest's uploads through the web server (and any other adapter that gets an
//! offer and then the files' bytes over its own protocol).
//!
//! The adapter does not receive anything itself. It hands the offer here, and
//! this module speaks the transfer protocol for the sender over an in-memory
//! stream ([`SharedStream::local_pair`]) to the one receiver ([`super::recv`]):
//! so consent (the same [`Event::Offer`](crate::Event::Offer) and answer), the
//! budgets, the free-space check, names that touch nothing existing, `.part`
//! files, the BLAKE3 check, placement, progress and every event are exactly
//! those of a peer's transfer. The sender's side of the protocol is checked by
//! the same [`sender::State`] a peer's sender uses.
//!
//! The other way, files the node sends such a receiver (a browser guest's
//! downloads) go through the one sender to the adapter in [`download`].
//!
//! A sender that cannot resume (a browser) always starts a file at byte 0,
//! whatever the receiver proves it holds; one that stops before the end
//! (the upload's request failed or was dropped) cancels, which deletes the
//! partial files.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch};

pub mod download;

pub use download::{Download, FileState, ShareView, SharedFile};

use super::stream::{Shared as SharedStream, peer_reset_code};
use super::{Shared, recv, send::offer_frames};
use crate::event::Trust;
use crate::identity::PeerId;
use crate::net::transport::read_frame;
use crate::proto::transfer::sender::{self, Answer, Reply};
use crate::proto::transfer::{
    BLOCK, Manifest, RESET_CANCELLED, RESET_PROTOCOL, ToReceiver, ToSender, TransferId,
    TransferState,
};
use crate::proto::wire::encode_frame;

/// Bytes the in-memory stream buffers: what an upload may be ahead of the
/// disk writer before it waits.
const BUFFER: usize = 1 << 20;
/// Ended transfers of one sender kept for it to look up; older ones go when it
/// offers again, so offering and cancelling in a loop holds no more.
pub(crate) const ENDED_KEPT: usize = 16;
/// How long an upload waits for the receiver's answer it was told about.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How long a sender's view waits for the receiver to record how it ended.
const END_WAIT: Duration = Duration::from_secs(10);

/// Where a local sender's transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalState {
    /// Waiting for the owner's answer.
    Offered,
    /// Accepted: the files may be uploaded.
    Accepted,
    Uploading,
    /// Every accepted file arrived and was checked.
    Complete,
    /// Ended with files missing or refused (see the error).
    Failed,
    Rejected,
    Cancelled,
}

impl LocalState {
    pub fn ended(self) -> bool {
        matches!(
            self,
            Self::Complete | Self::Failed | Self::Rejected | Self::Cancelled
        )
    }
}

/// A local sender's transfer, as it can look it up.
#[derive(Debug, Clone, Serialize)]
pub struct LocalStatus {
    pub id: TransferId,
    pub state: LocalState,
    /// File bytes handed to the receiver so far.
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Entries of the offer (files and folders).
    pub entries: u64,
    /// Files the receiver confirmed, and files it failed.
    pub ok: u32,
    pub failed: u32,
    pub error: Option<String>,
    pub created_ms: u64,
}

/// Why a local sender's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A bound of the receiver's budget: try again later.
    #[error("{0}")]
    Busy(String),
    #[error("no transfer {0} of this sender")]
    NotFound(TransferId),
    #[error("no file {0} in this transfer")]
    NoFile(u32),
    /// The transfer is not in a state for this.
    #[error("{0}")]
    Conflict(String),
    /// The receiver refused the offer or failed the upload.
    #[error("{0}")]
    Refused(String),
    #[error("cancelled")]
    Cancelled,
    /// The offer does not fit in the free space of the download folder.
    #[error("{0}")]
    NoSpace(String),
    /// A file was longer than offered: the transfer failed.
    #[error("{0}")]
    TooLarge(String),
}

#[derive(Debug, Clone)]
struct Status {
    state: LocalState,
    ok: u32,
    failed: u32,
    error: Option<String>,
}

/// One local sender's transfer.
#[derive(Debug)]
struct Entry {
    id: TransferId,
    peer: PeerId,
    manifest: Arc<Manifest>,
    created_ms: u64,
    /// The sender's end of the stream to the receiver.
    stream: SharedStream,
    sender: Mutex<sender::State>,
    status: watch::Sender<Status>,
    sent: AtomicU64,
    upload_taken: AtomicBool,
}

impl Entry {
    fn status(&self) -> LocalStatus {
        let s = self.status.borrow().clone();
        LocalStatus {
            id: self.id,
            state: s.state,
            done_bytes: self.sent.load(Ordering::Relaxed),
            total_bytes: self.manifest.total_bytes(),
            entries: self.manifest.len() as u64,
            ok: s.ok,
            failed: s.failed,
            error: s.error,
            created_ms: self.created_ms,
        }
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, sender::State> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the state unless the transfer already ended.
    fn set(&self, state: LocalState, error: Option<String>) {
        self.status.send_if_modified(|s| {
            if s.state.ended() {
                return false;
            }
            s.state = state;
            if error.is_some() {
                s.error = error;
            }
            true
        });
    }

    /// Waits (up to `wait`) until the state is not `from`; the state then.
    async fn wait_past(&self, from: LocalState, wait: Duration) -> LocalState {
        let mut rx = self.status.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|s| s.state != from)).await;
        self.status.borrow().state
    }

    /// Waits (up to [`END_WAIT`]) for the end, and says why it was not a
    /// success: the error for a request that could not go on.
    async fn why_ended(&self) -> LocalError {
        let mut rx = self.status.subscribe();
        let _ = tokio::time::timeout(END_WAIT, rx.wait_for(|s| s.state.ended())).await;
        let s = self.status.borrow().clone();
        match s.state {
            LocalState::Cancelled => LocalError::Cancelled,
            _ => LocalError::Refused(
                s.error
                    .unwrap_or_else(|| "the receiver stopped the transfer".into()),
            ),
        }
    }
}

/// The transfers of a node's local senders ([`Node::local_transfers`]);
/// clones are the same.
///
/// [`Node::local_transfers`]: crate::Node::local_transfers
#[derive(Clone)]
pub struct LocalTransfers {
    sh: Arc<Shared>,
    entries: Arc<Mutex<BTreeMap<TransferId, Arc<Entry>>>>,
}

impl std::fmt::Debug for LocalTransfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTransfers")
            .field("transfers", &self.lock().len())
            .finish()
    }
}

impl LocalTransfers {
    pub(super) fn new(sh: Arc<Shared>) -> Self {
        Self {
            sh,
            entries: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TransferId, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: TransferId, peer: &PeerId) -> Result<Arc<Entry>, LocalError> {
        self.lock()
            .get(&id)
            .filter(|e| e.peer == *peer)
            .cloned()
            .ok_or(LocalError::NotFound(id))
    }

    /// Drops `peer`'s oldest ended transfers beyond [`ENDED_KEPT`].
    fn prune(&self, peer: &PeerId) {
        let mut g = self.lock();
        let mut ended: Vec<(u64, TransferId)> = g
            .values()
            .filter(|e| e.peer == *peer && e.status.borrow().state.ended())
            .map(|e| (e.created_ms, e.id))
            .collect();
        if ended.len() <= ENDED_KEPT {
            return;
        }
        ended.sort_unstable();
        for (_, id) in &ended[..ended.len() - ENDED_KEPT] {
            g.remove(id);
        }
    }

    /// `peer` offers `manifest`: the receiver takes it as any offer. Returns
    /// the transfer's id and whether it was accepted at once (by policy).
    pub async fn offer(
        &self,
        peer: PeerId,
        manifest: Manifest,
    ) -> Result<(TransferId, bool), LocalError> {
        let sh = &self.sh;
        let all = vec![true; manifest.len()];
        super::check_space(&sh.downloads, &manifest, &all, &BTreeMap::new())
            .map_err(LocalError::NoSpace)?;
        self.prune(&peer);
        let trusted = sh.store.trust(&peer).ok() == Some(Trust::Trusted);
        let slot = sh.budget.admit(peer, trusted).map_err(LocalError::Busy)?;
        let id = TransferId(rand::random());
        let manifest = Arc::new(manifest);
        let (mine, theirs) = SharedStream::local_pair(BUFFER);
        let (seen_tx, seen_rx) = oneshot::channel();
        let entry = Arc::new(Entry {
            id,
            peer,
            sender: Mutex::new(sender::State::new(&manifest)),
            manifest: manifest.clone(),
            created_ms: crate::store::now_ms(),
            stream: mine.clone(),
            status: watch::channel(Status {
                state: LocalState::Offered,
                ok: 0,
                failed: 0,
                error: None,
            })
            .0,
            sent: AtomicU64::new(0),
            upload_taken: AtomicBool::new(false),
        });
        self.lock().insert(id, entry.clone());
        tokio::spawn(recv::run(
            sh.clone(),
            peer,
            theirs,
            slot,
            Some(seen_tx),
            None,
        ));
        tokio::spawn(replies(entry.clone(), Arc::downgrade(sh)));
        let mut w = mine;
        for frame in offer_frames(id, &manifest) {
            if w.write_all(&frame).await.is_err() {
                break;
            }
        }
        match seen_rx.await {
            Ok(auto) => Ok((id, auto)),
            // Refused before anyone was asked.
            Err(_) => Err(entry.why_ended().await),
        }
    }

    /// Where `peer`'s transfer `id` stands.
    pub fn status(&self, id: TransferId, peer: &PeerId) -> Result<LocalStatus, LocalError> {
        Ok(self.get(id, peer)?.status())
    }

    /// Waits (up to `wait`) for the owner's answer to `peer`'s offer `id`;
    /// the state then (still [`LocalState::Offered`] if nobody answered).
    pub async fn answered(
        &self,
        id: TransferId,
        peer: &PeerId,
        wait: Duration,
    ) -> Result<LocalState, LocalError> {
        Ok(self
            .get(id, peer)?
            .wait_past(LocalState::Offered, wait)
            .await)
    }

    /// How many transfers of `peer` are held (live and ended).
    #[cfg(test)]
    pub(crate) fn held(&self, peer: &PeerId) -> usize {
        self.lock().values().filter(|e| e.peer == *peer).count()
    }

    /// How many shares to `peer` are held (live and ended).
    #[cfg(test)]
    pub(crate) fn shares_held(&self, peer: &PeerId) -> usize {
        self.sh.shares.held(peer)
    }

    /// The sender cancels: the receiver deletes the partial files.
    pub fn cancel(&self, id: TransferId, peer: &PeerId) -> Result<(), LocalError> {
        let e = self.get(id, peer)?;
        let state = e.status.borrow().state;
        if state.ended() {
            return Err(LocalError::Conflict(format!("transfer {id} is over")));
        }
        e.stream.reset(RESET_CANCELLED);
        e.set(LocalState::Cancelled, None);
        Ok(())
    }

    /// The files the node sent `peer` (a browser guest) for it to download,
    /// newest first.
    pub fn shares(&self, peer: &PeerId) -> Vec<ShareView> {
        self.sh.shares.list(peer)
    }

    /// Starts `peer`'s download of file `index` of the files sent to it in
    /// transfer `id` (see [`download`] for the order and the bounds).
    pub fn download(
        &self,
        id: TransferId,
        peer: &PeerId,
        index: u32,
    ) -> Result<Download, LocalError> {
        self.sh.shares.download(id, peer, index)
    }

    /// `peer` is gone (a guest logged out or expired): what it had going is
    /// cancelled and its transfers forgotten, both ways.
    pub fn peer_gone(&self, peer: &PeerId) {
        self.sh.shares.peer_gone(peer);
        let gone: Vec<Arc<Entry>> = {
            let mut g = self.lock();
            let ids: Vec<TransferId> = g
                .values()
                .filter(|e| e.peer == *peer)
                .map(|e| e.id)
                .collect();
            ids.iter().filter_map(|id| g.remove(id)).collect()
        };
        for e in gone {
            if !e.status.borrow().state.ended() {
                e.stream.reset(RESET_CANCELLED);
                e.set(LocalState::Cancelled, None);
            }
        }
    }

    /// Starts uploading the files of accepted transfer `id` (waiting a little
    /// for an answer that is on its way). One upload per transfer.
    pub async fn upload(&self, id: TransferId, peer: &PeerId) -> Result<LocalUpload, LocalError> {
        let e = self.get(id, peer)?;
        let state = e.wait_past(LocalState::Offered, ANSWER_WAIT).await;
        match state {
            LocalState::Accepted if !e.upload_taken.swap(true, Ordering::SeqCst) => {}
            LocalState::Offered => {
                return Err(LocalError::Conflict(
                    "the owner has not accepted these files yet".into(),
                ));
            }
            LocalState::Accepted | LocalState::Uploading => {
                return Err(LocalError::Conflict(
                    "these files are being uploaded".into(),
                ));
            }
            s => {
                return Err(LocalError::Conflict(
                    format!("this offer is {s:?}").to_lowercase(),
                ));
            }
        }
        e.set(LocalState::Uploading, None);
        let files = e.sender().files().to_vec();
        Ok(LocalUpload {
            sh: self.sh.clone(),
            w: e.stream.clone(),
            e,
            sent: vec![false; files.len()],
            files,
            current: None,
            finished: false,
        })
    }
}

/// Reads the receiver's answer and replies and keeps the status.
async fn replies(e: Arc<Entry>, sh: Weak<Shared>) {
    let mut r = e.stream.clone();
    let mut accepted = false;
    let end = loop {
        let msg = match read_frame::<ToSender, _>(&mut r).await {
            Ok(Ok(m)) => m,
            Ok(Err(err)) => {
                e.stream.reset(RESET_PROTOCOL);
                break Some(format!("the receiver sent a bad frame: {err}"));
            }
            Err(err) => break ended_by(&err),
        };
        let step = if accepted {
            e.sender().on_reply(msg).map(Step::Reply)
        } else {
            e.sender().on_answer(msg).map(Step::Answer)
        };
        match step {
            Ok(Step::Answer(Answer::Continue)) => {}
            Ok(Step::Answer(Answer::Accepted)) => {
                accepted = true;
                e.set(LocalState::Accepted, None);
            }
            Ok(Step::Answer(Answer::Rejected(reason))) => {
                e.set(LocalState::Rejected, Some(reason));
                return;
            }
            Ok(Step::Reply(Reply::FileOk(_))) => {
                e.status.send_modify(|s| s.ok += 1);
            }
            Ok(Step::Reply(Reply::FileFailed(_, reason))) => {
                e.status.send_modify(|s| {
                    s.failed += 1;
                    s.error = Some(reason);
                });
            }
            Ok(Step::Reply(Reply::Complete { failed, .. })) => {
                let mut w = e.stream.clone();
                let _ = w.shutdown().await;
                let state = if failed == 0 {
                    LocalState::Complete
                } else {
                    LocalState::Failed
                };
                e.set(state, None);
                return;
            }
            Err(err) => {
                e.stream.reset(RESET_PROTOCOL);
                break Some(format!("the receiver broke the protocol: {err}"));
            }
        }
    };
    // The stream ended without a summary: the receiver's record says how.
    let record = match sh.upgrade() {
        Some(sh) => {
            sh.wait_ended(e.id, tokio::time::Instant::now() + END_WAIT)
                .await;
            sh.store.transfer(e.id).ok().flatten()
        }
        None => None,
    };
    let (state, error) = match record {
        Some(r) => (
            match r.state {
                TransferState::Complete => LocalState::Complete,
                TransferState::Rejected => LocalState::Rejected,
                TransferState::Cancelled => LocalState::Cancelled,
                _ => LocalState::Failed,
            },
            r.error.or(end),
        ),
        None if end.is_none() => (LocalState::Cancelled, None),
        None => (LocalState::Failed, end),
    };
    e.set(state, error);
}

enum Step {
    Answer(Answer),
    Reply(Reply),
}

/// What the end of the stream to the receiver says: `None` for a cancel.
fn ended_by(err: &std::io::Error) -> Option<String> {
    match peer_reset_code(err) {
        Some(RESET_CANCELLED) => None,
        Some(RESET_PROTOCOL) => Some("the receiver refused the data".into()),
        _ => Some(format!("the receiver stopped: {err}")),
    }
}

/// The file being uploaded.
#[derive(Debug)]
struct Current {
    index: u32,
    size: u64,
    written: u64,
    hasher: blake3::Hasher,
}

/// Uploads the files of one accepted transfer, one at a time in any order:
/// for each, [`start`](Self::start), [`write`](Self::write) its bytes, and
/// [`end`](Self::end); then [`finish`](Self::finish). Files left out count as
/// failed. Dropped before `finish`, the transfer is cancelled.
pub struct LocalUpload {
    sh: Arc<Shared>,
    e: Arc<Entry>,
    w: SharedStream,
    /// Accepted files, in entry order.
    files: Vec<u32>,
    /// Whether each of `files` was started (or skipped).
    sent: Vec<bool>,
    current: Option<Current>,
    finished: bool,
}

impl std::fmt::Debug for LocalUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUpload")
            .field("id", &self.e.id)
            .field("sent", &self.sent.iter().filter(|&&b| b).count())
            .finish()
    }
}

impl LocalUpload {
    /// The index of the file at `path` in the offer.
    pub fn index_of(&self, path: &str) -> Option<u32> {
        self.e
            .manifest
            .entries()
            .iter()
            .position(|en| en.path == path && en.size().is_some())
            .map(|i| i as u32)
    }

    /// Whether `index` is a file the receiver accepted (the owner may take
    /// some files of an offer and leave others).
    pub fn accepted(&self, index: u32) -> bool {
        self.files.contains(&index)
    }

    async fn send(&mut self, msg: &ToReceiver, data: &[u8]) -> Result<(), LocalError> {
        let mut buf = Vec::with_capacity(16 + data.len());
        encode_frame(msg, &mut buf).expect("transfer frames fit");
        buf.extend_from_slice(data);
        match self.w.write_all(&buf).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.e.why_ended().await),
        }
    }

    /// Starts file `index`, an accepted file not sent yet (in any order).
    pub async fn start(&mut self, index: u32) -> Result<(), LocalError> {
        if self.current.is_some() {
            return Err(LocalError::Conflict("a file is still being sent".into()));
        }
        let Ok(pos) = self.files.binary_search(&index) else {
            return Err(LocalError::Conflict(format!(
                "file {index} was not accepted"
            )));
        };
        if self.sent[pos] {
            return Err(LocalError::Refused(format!(
                "{} was sent twice",
                self.path(index)
            )));
        }
        self.sent[pos] = true;
        self.e.sender().on_started(index);
        self.send(&ToReceiver::Start { index, offset: 0 }, &[])
            .await?;
        self.current = Some(Current {
            index,
            size: self
                .e
                .manifest
                .entry(index)
                .and_then(|en| en.size())
                .unwrap_or(0),
            written: 0,
            hasher: blake3::Hasher::new(),
        });
        Ok(())
    }

    fn path(&self, index: u32) -> String {
        self.e
            .manifest
            .entry(index)
            .map(|en| en.path.clone())
            .unwrap_or_default()
    }

    /// Skips every accepted file not sent (they fail).
    async fn skip_unsent(&mut self) -> Result<(), LocalError> {
        for pos in 0..self.files.len() {
            if std::mem::replace(&mut self.sent[pos], true) {
                continue;
            }
            let index = self.files[pos];
            self.e.sender().on_started(index);
            let skip = ToReceiver::Skip {
                index,
                reason: "not uploaded".into(),
            };
            self.send(&skip, &[]).await?;
            self.e.sender().on_ended(index);
        }
        Ok(())
    }

    /// Fails the transfer for a sender that broke its own offer (the receiver
    /// deletes the partial file), and returns `err` once it has ended.
    async fn fail(&mut self, err: LocalError) -> LocalError {
        self.e.set(LocalState::Failed, Some(err.to_string()));
        self.e.stream.reset(RESET_PROTOCOL);
        self.finished = true;
        let deadline = tokio::time::Instant::now() + END_WAIT;
        self.sh.wait_ended(self.e.id, deadline).await;
        err
    }

    /// Bytes of the current file, as they come (any size). More than the
    /// offered size fails the transfer.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), LocalError> {
        let Some(c) = self.current.as_mut() else {
            return Err(LocalError::Conflict("no file was started".into()));
        };
        c.written += data.len() as u64;
        if c.written > c.size {
            let (index, size) = (c.index, c.size);
            let err = format!("{} is larger than offered ({size} bytes)", self.path(index));
            return Err(self.fail(LocalError::TooLarge(err)).await);
        }
        while !data.is_empty() {
            let (piece, rest) = data.split_at(data.len().min(BLOCK));
            data = rest;
            if let Some(c) = self.current.as_mut() {
                c.hasher.update(piece);
            }
            let block = ToReceiver::Block {
                len: piece.len() as u32,
            };
            self.send(&block, piece).await?;
            self.e.sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Ends the current file: the receiver checks that it got the offered size
    /// and that the file on its disk hashes to what was sent.
    pub async fn end(&mut self) -> Result<(), LocalError> {
        let Some(c) = self.current.take() else {
            return Err(LocalError::Conflict("no file was started".into()));
        };
        if c.written != c.size {
            let err = format!(
                "{} ended after {} of {} bytes",
                self.path(c.index),
                c.written,
                c.size
            );
            return Err(self.fail(LocalError::Refused(err)).await);
        }
        let end = ToReceiver::End {
            index: c.index,
            blake3: *c.hasher.finalize().as_bytes(),
        };
        self.send(&end, &[]).await?;
        self.e.sender().on_ended(c.index);
        Ok(())
    }

    /// Ends the current file as one the sender's own check refused (a
    /// LocalSend `sha256` that does not match the bytes): the receiver's
    /// hash check fails it as it fails any corrupted file (the file is
    /// deleted, the transfer goes on with the next one).
    pub async fn end_refused(&mut self) -> Result<(), LocalError> {
        let Some(c) = self.current.take() else {
            return Err(LocalError::Conflict("no file was started".into()));
        };
        if c.written != c.size {
            let err = format!(
                "{} ended after {} of {} bytes",
                self.path(c.index),
                c.written,
                c.size
            );
            return Err(self.fail(LocalError::Refused(err)).await);
        }
        // A hash that cannot be the bytes' own.
        let mut wrong = *c.hasher.finalize().as_bytes();
        wrong[0] ^= 0xff;
        let end = ToReceiver::End {
            index: c.index,
            blake3: wrong,
        };
        self.send(&end, &[]).await?;
        self.e.sender().on_ended(c.index);
        Ok(())
    }

    /// Ends the upload (files not sent fail) and waits for the receiver's
    /// verdict.
    pub async fn finish(mut self) -> Result<LocalStatus, LocalError> {
        if self.current.is_some() {
            return Err(LocalError::Conflict("a file is still being sent".into()));
        }
        self.skip_unsent().await?;
        self.send(&ToReceiver::Done, &[]).await?;
        self.e.sender().on_done_sent();
        self.finished = true;
        let mut rx = self.e.status.subscribe();
        let _ = rx.wait_for(|s| s.state.ended()).await;
        let status = self.e.status();
        match status.state {
            LocalState::Complete | LocalState::Failed => Ok(status),
            _ => Err(self.e.why_ended().await),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if !self.finished && !self.e.status.borrow().state.ended() {
            self.e.stream.reset(RESET_CANCELLED);
            self.e.set(
                LocalState::Cancelled,
                Some("the upload stopped before its end".into()),
            );
        }
    }
}
