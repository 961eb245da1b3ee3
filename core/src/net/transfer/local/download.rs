//! Outgoing transfers to receivers that are not PeerConnect nodes: the files
//! the owner sends a browser guest, which it downloads over HTTP.
//!
//! The mirror of the upload adapter ([`super`]): the node's one sender
//! ([`super::super::send`]) offers and streams the files as to any peer (the
//! same walk and manifest, [`TransferId`], registry, pause and cancel,
//! budgets, events and store history, the reader's BLAKE3 hashing), over an
//! in-memory stream ([`SharedStream::local_pair`]) whose other end is read
//! here. This side speaks the receiver's part of the protocol, checked by the
//! same [`receiver::State`] a peer's receiver uses, and hands each file's
//! bytes to the guest's HTTP download of it instead of a disk.
//!
//! # What a browser can do, and what it gets
//!
//! - The offer is listed for the guest as soon as it is read
//!   ([`Registry::list`]) and accepted when the guest downloads its first
//!   file: downloading is the guest's consent, and until then the sender
//!   waits for the answer, reading nothing (the transfer is `offered`).
//! - Files travel in the offer's order on one stream, so the guest downloads
//!   them one at a time in the listed order; asking for a later file while an
//!   earlier one waits is refused and names the one to take first.
//! - Between downloads the sender waits on the stream's back-pressure:
//!   [`BUFFER`] bytes here plus the sender's queue of read buffers (as for a
//!   peer); a download adds one block held for the hash check and one queued
//!   to the HTTP body. A share never downloaded holds only its offer.
//! - The last block of a file is handed to the download only after the
//!   sender's BLAKE3 of the whole file matched the bytes that went through:
//!   a mismatch breaks the download off before its end, so the browser
//!   reports a failed download, never a complete wrong file.
//! - A download the guest aborts fails that file (the sender skips the rest
//!   of it and goes on with the next); the transfer then ends failed.
//! - A share ends when the owner cancels it (the download in progress
//!   breaks off, the share leaves the guest's list), when the guest logs
//!   out, expires or is blocked ([`Registry::peer_gone`]: the sender sees a
//!   cancel by the peer), or when every file was downloaded or failed.
//! - A guest holds at most [`LIVE_PER_PEER`] live shares; another one fails at
//!   once. Ended shares are kept for its list up to [`super::ENDED_KEPT`].

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::super::Shared;
use super::super::stream::{Shared as SharedStream, peer_reset_code};
use super::{ENDED_KEPT, LocalError};
use crate::event::Event;
use crate::identity::PeerId;
use crate::net::transport::read_frame;
use crate::proto::transfer::manifest::mask_to_ranges;
use crate::proto::transfer::receiver::{self, Action};
use crate::proto::transfer::{
    Direction, RESET_CANCELLED, RESET_PROTOCOL, ToReceiver, ToSender, TransferId,
};
use crate::proto::wire::encode_frame;

/// Live shares (not yet ended) one guest may have at once.
pub const LIVE_PER_PEER: usize = 16;
/// Bytes the in-memory stream buffers between the sender and a download.
pub(crate) const BUFFER: usize = 256 << 10;
/// How long a download that stopped reading may keep its error waiting.
const GIVE_UP: std::time::Duration = std::time::Duration::from_secs(10);

/// Where one file of a share stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Not downloaded yet.
    Waiting,
    Downloading,
    /// Downloaded whole, and its hash matched the sender's.
    Done,
    Failed,
}

/// One file of a share, as the guest sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SharedFile {
    /// Its index in the offer (what a download names).
    pub index: u32,
    pub path: String,
    pub size: u64,
    pub state: FileState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A share, as the guest sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ShareView {
    pub id: TransferId,
    pub created_ms: u64,
    /// The transfer ended (every file downloaded or failed).
    pub ended: bool,
    /// Files in the order they must be downloaded.
    pub files: Vec<SharedFile>,
}

/// A download the guest started: the file's bytes as the sender streams them.
#[derive(Debug)]
pub struct Download {
    pub path: String,
    pub size: u64,
    /// Blocks of the file in order; an error breaks the download off.
    pub body: mpsc::Receiver<io::Result<Vec<u8>>>,
}

#[derive(Debug, Default)]
struct View {
    files: Vec<SharedFile>,
    /// The offer was read and taken.
    ready: bool,
    /// `Some(true)`: ended complete; `Some(false)`: cancelled or failed.
    ended: Option<bool>,
}

/// A download request for the file the stream is at.
#[derive(Debug)]
struct Request {
    index: u32,
    body: mpsc::Sender<io::Result<Vec<u8>>>,
}

#[derive(Debug)]
struct Share {
    id: TransferId,
    peer: PeerId,
    created_ms: u64,
    /// The receiver's end of the stream from the sender.
    stream: SharedStream,
    view: Mutex<View>,
    requests: mpsc::Sender<Request>,
}

impl Share {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_file(&self, index: u32, state: FileState, error: Option<String>) {
        let mut v = self.view();
        if let Some(f) = v.files.iter_mut().find(|f| f.index == index) {
            f.state = state;
            f.error = error;
        }
    }
}

/// Held by the sender while it runs: dropped (the transfer ended, or its task
/// was aborted at shutdown), the share stops waiting for downloads.
#[derive(Debug)]
pub(crate) struct SenderAlive(#[allow(dead_code)] oneshot::Sender<()>);

/// A new [`SenderAlive`], and what sees it dropped.
pub(crate) fn alive() -> (SenderAlive, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    (SenderAlive(tx), rx)
}

/// The shares of the node (held by the transfer service).
#[derive(Debug, Default)]
pub(crate) struct Registry(Mutex<BTreeMap<TransferId, Arc<Share>>>);

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TransferId, Arc<Share>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sender's end of a new share `id` to `peer`, and the guard it holds
    /// while it runs. Refused past [`LIVE_PER_PEER`] live shares.
    pub(crate) fn open(
        &self,
        sh: &Arc<Shared>,
        id: TransferId,
        peer: PeerId,
    ) -> Result<(SharedStream, SenderAlive), String> {
        let mut g = self.lock();
        let mut ended: Vec<(u64, TransferId)> = Vec::new();
        let mut live = 0;
        for s in g.values().filter(|s| s.peer == peer) {
            match s.view().ended {
                None => live += 1,
                Some(_) => ended.push((s.created_ms, s.id)),
            }
        }
        if live >= LIVE_PER_PEER {
            return Err(format!(
                "this guest has {live} shares it has not downloaded yet (the limit)"
            ));
        }
        ended.sort_unstable();
        for (_, old) in ended.iter().rev().skip(ENDED_KEPT) {
            g.remove(old);
        }
        let (mine, theirs) = SharedStream::local_pair(BUFFER);
        let (requests, rx) = mpsc::channel(1);
        let (alive, alive_rx) = alive();
        let share = Arc::new(Share {
            id,
            peer,
            created_ms: crate::store::now_ms(),
            stream: theirs,
            view: Mutex::default(),
            requests,
        });
        g.insert(id, share.clone());
        tokio::spawn(run(Arc::downgrade(sh), share, rx, alive_rx));
        Ok((mine, alive))
    }

    /// `peer`'s shares, newest first: the live ones and those that ended
    /// complete (a cancelled or failed share leaves the list).
    pub(crate) fn list(&self, peer: &PeerId) -> Vec<ShareView> {
        let g = self.lock();
        let mut out: Vec<ShareView> = g
            .values()
            .filter(|s| s.peer == *peer)
            .filter_map(|s| {
                let v = s.view();
                (v.ready && v.ended != Some(false)).then(|| ShareView {
                    id: s.id,
                    created_ms: s.created_ms,
                    ended: v.ended.is_some(),
                    files: v.files.clone(),
                })
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.created_ms));
        out
    }

    /// Starts `peer`'s download of file `index` of share `id`. Refused for a
    /// file downloaded or failed already, while another file of the share is
    /// downloading, and before the files listed ahead of it.
    pub(crate) fn download(
        &self,
        id: TransferId,
        peer: &PeerId,
        index: u32,
    ) -> Result<Download, LocalError> {
        let share = self
            .lock()
            .get(&id)
            .filter(|s| s.peer == *peer)
            .cloned()
            .ok_or(LocalError::NotFound(id))?;
        let mut v = share.view();
        if !v.ready || v.ended == Some(false) {
            return Err(LocalError::NotFound(id));
        }
        let pos = v
            .files
            .iter()
            .position(|f| f.index == index)
            .ok_or(LocalError::NoFile(index))?;
        let f = &v.files[pos];
        match f.state {
            FileState::Waiting => {}
            FileState::Downloading => {
                return Err(LocalError::Conflict(format!(
                    "{} is being downloaded",
                    f.path
                )));
            }
            FileState::Done => {
                return Err(LocalError::Conflict(format!(
                    "{} was downloaded already",
                    f.path
                )));
            }
            FileState::Failed => {
                return Err(LocalError::Conflict(format!(
                    "{} failed: {}",
                    f.path,
                    f.error.as_deref().unwrap_or("the sender gave up on it")
                )));
            }
        }
        if let Some(first) = v.files[..pos]
            .iter()
            .find(|f| matches!(f.state, FileState::Waiting | FileState::Downloading))
        {
            return Err(LocalError::Conflict(format!(
                "download {} first: the files come one at a time, in the listed order",
                first.path
            )));
        }
        let (tx, body) = mpsc::channel(1);
        // Sent under the view's lock: the stream's task sees it no later
        // than it sees the file fail.
        share
            .requests
            .try_send(Request { index, body: tx })
            .map_err(|_| {
                LocalError::Conflict("another download of these files is starting".into())
            })?;
        let (path, size) = (f.path.clone(), f.size);
        v.files[pos].state = FileState::Downloading;
        Ok(Download { path, size, body })
    }

    /// `peer` is gone (logged out, expired, blocked): its shares are
    /// cancelled (the sender sees a cancel by the peer) and forgotten.
    pub(crate) fn peer_gone(&self, peer: &PeerId) {
        let gone: Vec<Arc<Share>> = {
            let mut g = self.lock();
            let ids: Vec<TransferId> = g
                .values()
                .filter(|s| s.peer == *peer)
                .map(|s| s.id)
                .collect();
            ids.iter().filter_map(|id| g.remove(id)).collect()
        };
        for s in gone {
            s.stream.reset(RESET_CANCELLED);
        }
    }

    /// How many shares of `peer` are held (live and ended).
    #[cfg(test)]
    pub(crate) fn held(&self, peer: &PeerId) -> usize {
        self.lock().values().filter(|s| s.peer == *peer).count()
    }
}

/// Why a share's stream ended before the transfer's summary.
pub(crate) enum Stop {
    /// The sender broke the protocol: the stream is reset with that code.
    Protocol(String),
    /// The sender went away, cancelled, or the guest left.
    Gone(String),
}

fn stopped(e: &io::Error) -> Stop {
    Stop::Gone(match peer_reset_code(e) {
        Some(RESET_CANCELLED) => "the transfer was cancelled".into(),
        _ => format!("the sender stopped: {e}"),
    })
}

/// Runs a share's receiving side until the transfer ends.
async fn run(
    sh: Weak<Shared>,
    share: Arc<Share>,
    mut reqs: mpsc::Receiver<Request>,
    alive: oneshot::Receiver<()>,
) {
    let end = drive(&sh, &share, &mut reqs, alive).await;
    let why = match end {
        Ok(()) => {
            share.view().ended = Some(true);
            return;
        }
        Err(Stop::Protocol(what)) => {
            share.stream.reset(RESET_PROTOCOL);
            format!("the sender broke the protocol: {what}")
        }
        Err(Stop::Gone(why)) => {
            // Harmless if the sender is gone already; else it sees a cancel.
            share.stream.reset(RESET_CANCELLED);
            why
        }
    };
    {
        let mut v = share.view();
        v.ended = Some(false);
        for f in &mut v.files {
            if matches!(f.state, FileState::Waiting | FileState::Downloading) {
                f.state = FileState::Failed;
                f.error = Some(why.clone());
            }
        }
    }
    reqs.close();
    while let Ok(r) = reqs.try_recv() {
        let _ = r.body.try_send(Err(io::Error::other(why.clone())));
    }
}

pub(crate) async fn next(r: &mut SharedStream, st: &mut receiver::State) -> Result<Action, Stop> {
    match read_frame::<ToReceiver, _>(r).await {
        Ok(Ok(m)) => st.on_message(m).map_err(|e| Stop::Protocol(e.to_string())),
        Ok(Err(e)) => Err(Stop::Protocol(format!("bad frame: {e}"))),
        Err(e) => Err(stopped(&e)),
    }
}

/// Reads the sender's frames up to the end of its offer.
pub(crate) async fn read_offer(r: &mut SharedStream, st: &mut receiver::State) -> Result<(), Stop> {
    loop {
        match next(r, st).await? {
            Action::Continue => {}
            Action::Offer => return Ok(()),
            other => return Err(Stop::Protocol(format!("{other:?} during the offer"))),
        }
    }
}

pub(crate) async fn reply(w: &mut SharedStream, msg: &ToSender) -> Result<(), Stop> {
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf).expect("replies fit in a frame");
    w.write_all(&buf).await.map_err(|e| stopped(&e))
}

async fn drive(
    sh: &Weak<Shared>,
    share: &Share,
    reqs: &mut mpsc::Receiver<Request>,
    mut alive: oneshot::Receiver<()>,
) -> Result<(), Stop> {
    let mut r = share.stream.clone();
    let mut w = share.stream.clone();
    let mut st = receiver::State::new();
    read_offer(&mut r, &mut st).await?;
    let n = st.manifest().map(|m| m.len()).unwrap_or(0);
    st.accept(&vec![true; n], BTreeMap::new());
    {
        let m = st.manifest().expect("the offer was read");
        let mut v = share.view();
        v.files = st
            .files()
            .iter()
            .filter_map(|&i| {
                let e = m.entry(i)?;
                Some(SharedFile {
                    index: i,
                    path: e.path.clone(),
                    size: e.size()?,
                    state: FileState::Waiting,
                    error: None,
                })
            })
            .collect();
        v.ready = true;
        // The guest (its page follows its events) learns there is something
        // to download, as a first progress of the transfer.
        if let Some(sh) = sh.upgrade() {
            sh.emit(Event::Progress {
                id: share.id,
                peer: share.peer,
                direction: Direction::Send,
                done_bytes: 0,
                total_bytes: m.total_bytes(),
                files_done: 0,
                files_total: v.files.len() as u64,
                file: None,
                file_done: 0,
                file_bytes: 0,
                transferred: 0,
                rate: 0,
                paused: false,
            });
        }
    }
    // The guest's first download is its consent: until then the sender
    // waits for the answer and reads nothing.
    let mut pending = tokio::select! {
        req = reqs.recv() => req,
        _ = &mut alive => None,
    };
    if pending.is_none() {
        return Err(Stop::Gone("the transfer ended".into()));
    }
    let accept = ToSender::Accept {
        selected: mask_to_ranges(&vec![true; n]),
        proofs: 0,
    };
    reply(&mut w, &accept).await?;
    let (mut ok, mut failed) = (0u32, 0u32);
    loop {
        match next(&mut r, &mut st).await? {
            Action::Open { index, size, .. } => {
                // The guest asks for the files in order (see `download`), so
                // the next request is for this one.
                let req = match pending.take() {
                    Some(q) => Some(q),
                    None => tokio::select! {
                        req = reqs.recv() => req,
                        _ = &mut alive => None,
                    },
                };
                let Some(req) = req.filter(|q| q.index == index) else {
                    return Err(Stop::Gone("the transfer ended".into()));
                };
                let verdict = stream_file(&mut r, &mut st, size, &req.body).await;
                if let Err(Stop::Gone(why) | Stop::Protocol(why)) = &verdict {
                    // Break the download off (not a short body that looks
                    // complete), unless the guest left it already.
                    let err = Err(io::Error::other(why.clone()));
                    let _ = tokio::time::timeout(GIVE_UP, req.body.send(err)).await;
                }
                match verdict? {
                    Verdict::Ok => {
                        ok += 1;
                        share.set_file(index, FileState::Done, None);
                        reply(&mut w, &ToSender::FileOk { index }).await?;
                    }
                    Verdict::Failed { reason, ended } => {
                        failed += 1;
                        share.set_file(index, FileState::Failed, Some(reason.clone()));
                        reply(&mut w, &ToSender::FileFailed { index, reason }).await?;
                        if !ended {
                            // The sender skips the rest of the file, or had
                            // sent it already: read up to its end, keeping
                            // nothing.
                            drain(&mut r, &mut st).await?;
                        }
                    }
                }
            }
            Action::Skipped { index, reason } => {
                failed += 1;
                {
                    share.set_file(index, FileState::Failed, Some(reason.clone()));
                    // A download asked for just before the sender gave up.
                    let asked = match pending.take() {
                        Some(q) => Some(q),
                        None => reqs.try_recv().ok(),
                    };
                    if let Some(q) = asked {
                        let _ = q.body.try_send(Err(io::Error::other(reason.clone())));
                    }
                }
                reply(&mut w, &ToSender::FileFailed { index, reason }).await?;
            }
            Action::Done => {
                reply(&mut w, &ToSender::Summary { ok, failed }).await?;
                let _ = w.shutdown().await;
                return Ok(());
            }
            other => return Err(Stop::Protocol(format!("{other:?} between files"))),
        }
    }
}

/// How a file handed to a download ended.
pub(crate) enum Verdict {
    Ok,
    /// `ended`: the stream is past the file (else [`drain`] the rest of it).
    Failed {
        reason: String,
        ended: bool,
    },
}

/// Hands the opened file's blocks to the download, holding the last one
/// until the sender's hash of the whole file matched.
pub(crate) async fn stream_file(
    r: &mut SharedStream,
    st: &mut receiver::State,
    size: u64,
    body: &mpsc::Sender<io::Result<Vec<u8>>>,
) -> Result<Verdict, Stop> {
    let broke = || Verdict::Failed {
        reason: "the download broke off".into(),
        ended: false,
    };
    let mut hasher = blake3::Hasher::new();
    let mut held: Option<Vec<u8>> = None;
    let mut got = 0u64;
    loop {
        match next(r, st).await? {
            Action::Write { len, .. } => {
                let mut buf = vec![0u8; len as usize];
                r.read_exact(&mut buf).await.map_err(|e| stopped(&e))?;
                hasher.update(&buf);
                got += len as u64;
                if let Some(prev) = held.replace(buf)
                    && body.send(Ok(prev)).await.is_err()
                {
                    return Ok(broke());
                }
            }
            Action::Finish { blake3, .. } => {
                if hasher.finalize().as_bytes() != &blake3 || got != size {
                    let reason = "the file did not hash to what the sender read".to_string();
                    let _ = body.send(Err(io::Error::other(reason.clone()))).await;
                    return Ok(Verdict::Failed {
                        reason,
                        ended: true,
                    });
                }
                if let Some(last) = held.take()
                    && body.send(Ok(last)).await.is_err()
                {
                    return Ok(Verdict::Failed {
                        reason: "the download broke off".into(),
                        ended: true,
                    });
                }
                return Ok(Verdict::Ok);
            }
            Action::Skipped { reason, .. } => {
                let _ = body.send(Err(io::Error::other(reason.clone()))).await;
                return Ok(Verdict::Failed {
                    reason,
                    ended: true,
                });
            }
            other => return Err(Stop::Protocol(format!("{other:?} inside a file"))),
        }
    }
}

/// Reads the rest of a failed file (up to its `End` or `Skip`), keeping nothing.
pub(crate) async fn drain(r: &mut SharedStream, st: &mut receiver::State) -> Result<(), Stop> {
    loop {
        match next(r, st).await? {
            Action::Write { len, .. } => {
                let mut sink = vec![0u8; len as usize];
                r.read_exact(&mut sink).await.map_err(|e| stopped(&e))?;
            }
            Action::Finish { .. } | Action::Skipped { .. } => return Ok(()),
            other => return Err(Stop::Protocol(format!("{other:?} inside a file"))),
        }
    }
}
