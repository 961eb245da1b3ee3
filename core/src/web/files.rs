//! Files through the web UI, the owner's side: its uploads to send (staged
//! in the outbox, then handed to [`Node::send_files_to`] for peers and browser
//! guests alike), offers waiting for its answer, the transfers list and its
//! controls, and the files received. A guest's routes are in [`guest`]; the
//! bodies (multipart to files, attachments) in [`body`].
//!
//! # Uploads
//!
//! Every upload streams to disk as it arrives (never whole in memory), under
//! [`WebOptions::max_upload`](super::WebOptions) bytes per request and only if
//! the disk keeps [`body::SPACE_MARGIN`] free after it (checked before the first
//! byte, from `Content-Length` or the declared sizes). Paths from the browser
//! are parsed as [`SafePath`](crate::proto::transfer::SafePath)s, so nothing
//! is written outside its folder.
//!
//! - The owner's files to send go to `<data dir>/web-outbox/<batch>/`, then to
//!   [`Node::send_files_to`]: one transfer per peer or guest, by the node's
//!   one sender (a guest downloads its files as the sender streams them). A
//!   batch is deleted once every transfer made from it has ended.
//! - A guest first offers its files (names and sizes) and then uploads them;
//!   the node's transfer service takes the offer as any peer's and the bytes
//!   go to the one receiver (see [`guest`]).
//!
//! No transfer state is kept here: the lists below follow the transfer
//! service's notes (offers waiting, files received, transfers ended).

mod body;
mod guest;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use self::body::{check_space, content_length, serve_file, store_fields, too_large, url_pairs};
pub(crate) use self::body::{content_disposition, upload_path};
pub(crate) use self::guest::{GuestOfferReq, guest_manifest};
use super::auth::Owner;
use super::{ApiError, ApiResult, App, parse_peer};
use crate::event::Event;
use crate::identity::PeerId;
use crate::net::transfer::{TransferId, TransferInfo, TransferNote};
use crate::node::Node;
use crate::proto::transfer::{OfferEntry, Selection};
use crate::store::now_ms;

/// Received files listed, newest first (older ones stay on disk).
const MAX_RECEIVED: usize = 1000;

/// A file this node received (from a peer or a guest).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Received {
    pub id: u64,
    pub transfer: TransferId,
    pub peer: PeerId,
    pub peer_name: String,
    /// File name (last component).
    pub name: String,
    /// Where it is on this machine.
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
    pub at_ms: u64,
    /// Its download link.
    pub url: String,
}

#[derive(Debug, Default)]
struct Inner {
    received: VecDeque<Received>,
    next_received: u64,
    /// Offers waiting for the owner (peers' and guests'), as announced.
    offers: BTreeMap<TransferId, Event>,
    /// Upload batch → its folder and the transfers still using it.
    batches: HashMap<u64, (PathBuf, BTreeSet<TransferId>)>,
    batch_of: HashMap<TransferId, u64>,
}

/// The web UI's lists (in memory; received files stay on disk).
#[derive(Debug)]
pub(crate) struct Files {
    outbox: PathBuf,
    inner: Mutex<Inner>,
}

impl Files {
    /// `outbox` is emptied: batches of an earlier run have no owner.
    pub fn new(data_dir: &Path) -> Self {
        let outbox = data_dir.join("web-outbox");
        let _ = std::fs::remove_dir_all(&outbox);
        Self {
            outbox,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A transfer or share of a batch ended; the batch goes when none is left.
    fn release(&self, id: TransferId) {
        let mut g = self.lock();
        let Some(batch) = g.batch_of.remove(&id) else {
            return;
        };
        let empty = match g.batches.get_mut(&batch) {
            Some((_, ids)) => {
                ids.remove(&id);
                ids.is_empty()
            }
            None => false,
        };
        if empty && let Some((dir, _)) = g.batches.remove(&batch) {
            drop(g);
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Notes what a transfer note changes: offers waiting, received files,
    /// batches.
    pub fn on_note(&self, n: &TransferNote, peer_name: impl Fn(&PeerId) -> String) {
        match n {
            TransferNote::Waiting(e) => {
                if let Some(id) = e.transfer_id() {
                    self.lock().offers.insert(id, e.clone());
                }
            }
            TransferNote::Answered(id) => {
                self.lock().offers.remove(id);
            }
            TransferNote::Received(Event::TransferDone {
                id,
                peer,
                path,
                bytes,
                blake3,
                ..
            }) => {
                let mut g = self.lock();
                let n = g.next_received;
                g.next_received += 1;
                let name = Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.clone());
                g.received.push_front(Received {
                    id: n,
                    transfer: *id,
                    peer: *peer,
                    peer_name: peer_name(peer),
                    name,
                    path: path.clone(),
                    bytes: *bytes,
                    blake3: blake3.clone(),
                    at_ms: now_ms(),
                    url: format!("/api/received/{n}"),
                });
                g.received.truncate(MAX_RECEIVED);
            }
            TransferNote::Received(_) => {}
            TransferNote::Ended(id) => {
                self.lock().offers.remove(id);
                self.release(*id);
            }
        }
    }
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/api/send", post(send).layer(DefaultBodyLimit::disable()))
        .route("/api/offers", get(offers))
        .route("/api/offers/{id}/{answer}", post(answer))
        .route("/api/transfers", get(transfers))
        .route("/api/transfers/{id}/{action}", post(control))
        .route("/api/received", get(received))
        .route("/api/received/{n}", get(download_received))
        .merge(guest::routes())
}

#[derive(Debug, Serialize)]
struct Started {
    id: TransferId,
    peer: PeerId,
}

#[derive(Debug, Serialize)]
struct SendReply {
    files: Vec<OfferEntry>,
    total_bytes: u64,
    transfers: Vec<Started>,
}

/// `POST /api/send?to=PEER&to=PEER`: the owner's files (multipart, one field
/// per file named by its relative path) to peers and browser guests; or
/// `POST /api/send?room=NAME`: to the members of a room this node is in
/// ([`Node::send_to_room`]: one file to several goes down a relay tree).
async fn send(
    State(app): State<App>,
    _: Owner,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    mut mp: Multipart,
) -> ApiResult<Json<SendReply>> {
    let node = app.node()?;
    let mut peers = Vec::new();
    let mut room = None;
    for (k, v) in url_pairs(query.as_deref().unwrap_or("")) {
        if k == "to" {
            peers.push(parse_peer(&v)?);
        } else if k == "room" {
            room = Some(v);
        }
    }
    match (&room, peers.is_empty()) {
        (None, true) => {
            return Err(ApiError::bad_request(
                "name at least one peer or a room: ?to=PEER_ID or ?room=NAME",
            ));
        }
        (Some(_), false) => {
            return Err(ApiError::bad_request(
                "send to a room or to peers, not both",
            ));
        }
        _ => {}
    }
    let max = app.options.max_upload;
    let files = &app.files;
    let need = content_length(&headers).unwrap_or(0);
    if need > max {
        return Err(too_large(max));
    }
    check_space(&files.outbox, need)?;
    let batch: u64 = rand::random();
    let dir = files.outbox.join(format!("{batch:016x}"));
    let stored = match store_fields(&mut mp, &dir, max).await {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::bad_request("the upload holds no file"));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let roots: BTreeSet<String> = stored
        .iter()
        .map(|(p, _, _)| p.root().to_string())
        .collect();
    let paths: Vec<PathBuf> = roots.iter().map(|r| dir.join(r)).collect();
    let sent = match &room {
        Some(room) => node.send_to_room(room, &paths).await,
        None => node.send_files_to(&peers, &paths).await,
    };
    let started = match sent {
        Ok(started) => started,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    let ids: BTreeSet<TransferId> = started.iter().copied().collect();
    {
        let mut g = files.lock();
        for id in &ids {
            g.batch_of.insert(*id, batch);
        }
        g.batches.insert(batch, (dir.clone(), ids.clone()));
    }
    // Transfers that already ended (a refused peer) are over: release them.
    let list = node.transfers().unwrap_or_default();
    for t in &list {
        if ids.contains(&t.id) && t.state.is_final() {
            files.release(t.id);
        }
    }
    if room.is_some() {
        // The room's members, in the order of their transfers.
        peers = started
            .iter()
            .filter_map(|id| list.iter().find(|t| t.id == *id).map(|t| t.peer))
            .collect();
    }
    Ok(Json(SendReply {
        files: stored
            .iter()
            .map(|(p, _, size)| OfferEntry {
                path: p.as_str().to_string(),
                size: *size,
                dir: false,
            })
            .collect(),
        total_bytes: stored.iter().map(|f| f.2).sum(),
        transfers: started
            .into_iter()
            .zip(&peers)
            .map(|(id, peer)| Started { id, peer: *peer })
            .collect(),
    }))
}

/// Offers waiting for the owner's answer (as their `offer` events).
async fn offers(State(app): State<App>, _: Owner) -> Json<Vec<Event>> {
    Json(app.files.lock().offers.values().cloned().collect())
}

/// `POST /api/offers/{id}/accept|reject`.
async fn answer(
    State(app): State<App>,
    _: Owner,
    UrlPath((id, answer)): UrlPath<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let accept = match answer.as_str() {
        "accept" => true,
        "reject" => false,
        other => return Err(ApiError::not_found(format!("no answer {other:?}"))),
    };
    let node = app.node()?;
    if accept {
        node.accept_offer(id, Selection::All)?;
    } else {
        node.reject_offer(id)?;
    }
    app.files.lock().offers.remove(&id);
    Ok(Json(serde_json::json!({ "id": id, "accepted": accept })))
}

/// A transfer as the owner's list shows it.
#[derive(Debug, Serialize)]
struct TransferView {
    #[serde(flatten)]
    info: TransferInfo,
    peer_name: String,
}

/// Live and recent transfers: with peers and with browser guests.
async fn transfers(State(app): State<App>, _: Owner) -> ApiResult<Json<Vec<TransferView>>> {
    let node = app.node()?;
    let names: HashMap<PeerId, String> = node
        .peers()
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    let name = |p: &PeerId| names.get(p).cloned().unwrap_or_else(|| p.short());
    let out = node
        .transfers()?
        .into_iter()
        .map(|info| TransferView {
            peer_name: name(&info.peer),
            info,
        })
        .collect();
    Ok(Json(out))
}

/// `POST /api/transfers/{id}/pause|resume|cancel`.
async fn control(
    State(app): State<App>,
    _: Owner,
    UrlPath((id, action)): UrlPath<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let node = app.node()?;
    match action.as_str() {
        "pause" => node.pause_transfer(id)?,
        "resume" => node.resume_transfer(id)?,
        "cancel" => node.cancel_transfer(id)?,
        other => return Err(ApiError::not_found(format!("no action {other:?}"))),
    }
    Ok(Json(serde_json::json!({ "id": id, "action": action })))
}

/// Received files, newest first.
async fn received(State(app): State<App>, _: Owner) -> Json<Vec<Received>> {
    Json(app.files.lock().received.iter().cloned().collect())
}

async fn download_received(
    State(app): State<App>,
    _: Owner,
    UrlPath(n): UrlPath<u64>,
) -> ApiResult<Response> {
    let r = app
        .files
        .lock()
        .received
        .iter()
        .find(|r| r.id == n)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no received file {n}")))?;
    serve_file(Path::new(&r.path), &r.name).await
}

/// Peer names for received files (live peers, guests, the store).
pub(crate) fn peer_name(app: &App, node: &Node, peer: &PeerId) -> String {
    if let Some(g) = app.guests.info(peer) {
        return g.name;
    }
    node.store()
        .peer(peer)
        .ok()
        .flatten()
        .map(|p| p.name)
        .unwrap_or_else(|| peer.short())
}

/// Follows the transfer service's notes for the file state (offers,
/// received files, batches) until the server stops.
pub(crate) fn spawn_watcher(app: App, node: &Node) -> tokio::task::JoinHandle<()> {
    let mut notes = node.transfer_service().subscribe_notes();
    let weak = std::sync::Arc::downgrade(&app);
    drop(app);
    tokio::spawn(async move {
        loop {
            let n = match notes.recv().await {
                Ok(n) => n,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the web UI's file lists missed transfer notes");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Some(app) = weak.upgrade() else { return };
            let Ok(node) = app.node() else { return };
            app.files.on_note(&n, |p| peer_name(&app, &node, p));
        }
    })
}
