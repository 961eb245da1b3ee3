//! Files through the web UI: the owner's uploads to send, offers and their
//! answers, received files and their downloads; a guest's uploads (offers the
//! owner accepts, like any peer's) and the files the owner sends a guest.
//!
//! # Uploads
//!
//! Every upload streams to disk as it arrives (never whole in memory), under
//! [`WebOptions::max_upload`](super::WebOptions) bytes per request and only if
//! the disk keeps [`SPACE_MARGIN`] free after it (checked before the first
//! byte, from `Content-Length` or the declared sizes). Paths from the browser
//! are parsed as [`SafePath`]s, so nothing is written outside its folder.
//!
//! - The owner's files to send go to `<data dir>/web-outbox/<batch>/`, then to
//!   [`Node::send_files_to`] for peers; for browser guests they become a
//!   **share** the guest downloads. A batch is deleted once every transfer
//!   and share made from it has ended.
//! - A guest first offers its files (names and sizes) and then uploads them.
//!   This module only moves them: the node's transfer service
//!   ([`crate::net::transfer::local`]) takes the offer as any peer's (the same
//!   [`Event::Offer`], answer, budgets and free-space check) and the upload's
//!   bytes go to the one receiver every peer transfer uses (`.part` files,
//!   BLAKE3, safe names, placement, progress and events).
//!
//! # Events for browser guests
//!
//! A guest's upload is a transfer like a peer's, with direction `receive`
//! and the guest as peer; a share is one with direction `send`: `progress` when it is offered
//! and as files are fetched, `transfer_done` per file fully downloaded,
//! `transfer_complete` once every file was.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;

use super::auth::{Guest, Owner};
use super::{ApiError, ApiResult, App, parse_peer};
use crate::event::Event;
use crate::identity::PeerId;
use crate::net::transfer::fs as tfs;
use crate::net::transfer::local::{LocalError, LocalStatus};
use crate::net::transfer::{TransferId, TransferInfo, TransferNote};
use crate::node::Node;
use crate::proto::transfer::{
    Direction, Entry, Manifest, OfferEntry, SafePath, Selection, TransferState,
};
use crate::store::now_ms;

/// Free space an upload must leave on the disk.
pub const SPACE_MARGIN: u64 = 64 << 20;
/// Received files listed, newest first (older ones stay on disk).
const MAX_RECEIVED: usize = 1000;
/// Read size of downloads.
const READ_CHUNK: usize = 256 << 10;

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

/// Files the owner sent a guest, for it to download.
#[derive(Debug)]
struct Share {
    guest: PeerId,
    /// (relative path, file on disk, size)
    files: Vec<(String, PathBuf, u64)>,
    downloaded: BTreeSet<usize>,
    created_ms: u64,
    cancelled: bool,
}

impl Share {
    fn total(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }

    fn done(&self) -> u64 {
        self.downloaded.iter().map(|&i| self.files[i].2).sum()
    }
}

#[derive(Debug, Default)]
struct Inner {
    received: VecDeque<Received>,
    next_received: u64,
    /// Offers waiting for the owner (peers' and guests'), as announced.
    offers: BTreeMap<TransferId, Event>,
    shares: BTreeMap<TransferId, Share>,
    /// Upload batch → its folder and the transfers and shares still using it.
    batches: HashMap<u64, (PathBuf, BTreeSet<TransferId>)>,
    batch_of: HashMap<TransferId, u64>,
}

/// The web UI's file state (in memory; received files stay on disk).
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

    /// Ends what a guest that left had going: its shares are dropped (its
    /// uploads are the transfer service's). Returns the events to emit.
    pub fn guest_left(&self, guest: &PeerId) -> Vec<Event> {
        let mut events = Vec::new();
        let mut gone = Vec::new();
        {
            let mut g = self.lock();
            let ids: Vec<TransferId> = g
                .shares
                .iter()
                .filter(|(_, s)| s.guest == *guest)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                if let Some(s) = g.shares.remove(&id)
                    && s.downloaded.len() < s.files.len()
                {
                    events.push(Event::TransferCancelled {
                        id,
                        peer: *guest,
                        direction: Direction::Send,
                        by_peer: true,
                    });
                }
                gone.push(id);
            }
        }
        for id in gone {
            self.release(id);
        }
        events
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
        .route("/api/guest/offers", post(guest_offer))
        .route("/api/guest/offers/{id}", get(guest_offer_state))
        .route(
            "/api/guest/offers/{id}/upload",
            post(guest_upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/guest/offers/{id}/cancel", post(guest_cancel))
        .route("/api/guest/shared", get(shared))
        .route("/api/guest/shared/{id}/{index}", get(download_shared))
}

/// Fails with 507 unless `need` bytes fit in `dir` with the margin to spare.
fn check_space(dir: &Path, need: u64) -> ApiResult<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
    let free = tfs::free_space(dir)
        .map_err(|e| internal(format!("free space of {}: {e}", dir.display())))?;
    if free < need.saturating_add(SPACE_MARGIN) {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "not enough free space: {} MB needed, {} MB free",
                need.div_ceil(1_000_000),
                free / 1_000_000
            ),
        ));
    }
    Ok(())
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is over the limit of {} MB", max / 1_000_000),
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The relative path a multipart field names (its file name).
fn field_path(field: &axum::extract::multipart::Field<'_>) -> ApiResult<SafePath> {
    upload_path(field.file_name())
}

/// The relative path an upload's file name asks for (`None`: the field has none).
pub(crate) fn upload_path(name: Option<&str>) -> ApiResult<SafePath> {
    let name = name.ok_or_else(|| ApiError::bad_request("a file field has no file name"))?;
    SafePath::parse(name).map_err(|e| ApiError::bad_request(format!("bad file name: {e}")))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("the upload broke off: {e}"))
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
    shares: Vec<Started>,
}

/// `POST /api/send?to=PEER&to=PEER`: the owner's files (multipart, one field
/// per file named by its relative path) to peers and guests.
async fn send(
    State(app): State<App>,
    _: Owner,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    mut mp: Multipart,
) -> ApiResult<Json<SendReply>> {
    let node = app.node()?;
    let mut peers = Vec::new();
    let mut guests = Vec::new();
    for (k, v) in url_pairs(query.as_deref().unwrap_or("")) {
        if k != "to" {
            continue;
        }
        let id = parse_peer(&v)?;
        if app.guests.is_guest(&id) {
            guests.push(id);
        } else {
            peers.push(id);
        }
    }
    if peers.is_empty() && guests.is_empty() {
        return Err(ApiError::bad_request("name at least one peer: ?to=PEER_ID"));
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
    let total_bytes = stored.iter().map(|f| f.2).sum();
    let mut reply = SendReply {
        files: stored
            .iter()
            .map(|(p, _, size)| OfferEntry {
                path: p.as_str().to_string(),
                size: *size,
                dir: false,
            })
            .collect(),
        total_bytes,
        transfers: Vec::new(),
        shares: Vec::new(),
    };
    let mut ids = BTreeSet::new();
    if !peers.is_empty() {
        let paths: Vec<PathBuf> = roots.iter().map(|r| dir.join(r)).collect();
        match node.send_files_to(&peers, &paths).await {
            Ok(started) => {
                for (id, peer) in started.into_iter().zip(&peers) {
                    ids.insert(id);
                    reply.transfers.push(Started { id, peer: *peer });
                }
            }
            Err(e) if guests.is_empty() => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
            Err(e) => app.emit(Event::Error {
                message: format!("sending to peers failed: {e}"),
            }),
        }
    }
    for guest in guests {
        let id = TransferId(rand::random());
        ids.insert(id);
        let share = Share {
            guest,
            files: stored
                .iter()
                .map(|(p, path, size)| (p.as_str().to_string(), path.clone(), *size))
                .collect(),
            downloaded: BTreeSet::new(),
            created_ms: now_ms(),
            cancelled: false,
        };
        let event = share_progress(id, &share, None);
        files.lock().shares.insert(id, share);
        reply.shares.push(Started { id, peer: guest });
        app.emit(event);
    }
    {
        let mut g = files.lock();
        for id in &ids {
            g.batch_of.insert(*id, batch);
        }
        g.batches.insert(batch, (dir.clone(), ids.clone()));
    }
    // Transfers that already ended (a refused peer) are over: release them.
    if let Ok(list) = node.transfers() {
        for t in list {
            if ids.contains(&t.id) && t.state.is_final() {
                files.release(t.id);
            }
        }
    }
    Ok(Json(reply))
}

/// Key/value pairs of a query string, percent-decoded.
fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes each multipart field to `dir/<its path>`, at most `max` bytes in
/// all. Returns (path, file, size) per file.
async fn store_fields(
    mp: &mut Multipart,
    dir: &Path,
    max: u64,
) -> ApiResult<Vec<(SafePath, PathBuf, u64)>> {
    let mut out: Vec<(SafePath, PathBuf, u64)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut known = BTreeSet::new();
    let mut total: u64 = 0;
    std::fs::create_dir_all(dir).map_err(|e| internal(format!("outbox: {e}")))?;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        let path = field_path(&field)?;
        if !seen.insert(path.as_str().to_string()) {
            return Err(ApiError::bad_request(format!(
                "{:?} appears twice",
                path.as_str()
            )));
        }
        let target = path.components().fold(dir.to_path_buf(), |p, c| p.join(c));
        let parent = target.parent().unwrap_or(dir).to_path_buf();
        tfs::ensure_dir(dir, &parent, &mut known)
            .map_err(|e| ApiError::bad_request(format!("{}: {e}", path.as_str())))?;
        let f = tfs::open_part(&target, 0).map_err(|e| internal(format!("{e}")))?;
        let mut f = tokio::fs::File::from_std(f);
        let mut size = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            // Without a Content-Length nothing was checked up front: keep
            // the margin free as the bytes come.
            if (total + chunk.len() as u64) / SPACE_MARGIN > total / SPACE_MARGIN {
                check_space(dir, 0)?;
            }
            total += chunk.len() as u64;
            if total > max {
                return Err(too_large(max));
            }
            size += chunk.len() as u64;
            f.write_all(&chunk)
                .await
                .map_err(|e| internal(format!("writing {}: {e}", target.display())))?;
        }
        f.flush().await.map_err(|e| internal(e.to_string()))?;
        out.push((path, target, size));
    }
    // A file named like a folder another file is in cannot be both.
    let manifest = Manifest::new(
        out.iter()
            .map(|(p, _, s)| Entry::file(p.as_str(), *s))
            .collect(),
    );
    manifest.map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(out)
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

/// Live and recent transfers: peers', guests' uploads and shares.
async fn transfers(State(app): State<App>, _: Owner) -> ApiResult<Json<Vec<TransferView>>> {
    let node = app.node()?;
    let names: HashMap<PeerId, String> = node
        .peers()
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    let name = |p: &PeerId| names.get(p).cloned().unwrap_or_else(|| p.short());
    let mut out: Vec<TransferView> = Vec::new();
    {
        let g = app.files.lock();
        for (id, s) in g.shares.iter().rev() {
            out.push(TransferView {
                info: TransferInfo {
                    id: *id,
                    peer: s.guest,
                    direction: Direction::Send,
                    state: share_state(s),
                    files: s.files.len() as u64,
                    total_bytes: s.total(),
                    done_bytes: s.done(),
                    transferred: s.done(),
                    live: true,
                    error: None,
                },
                peer_name: name(&s.guest),
            });
        }
    }
    for info in node.transfers()? {
        let peer_name = name(&info.peer);
        out.push(TransferView { info, peer_name });
    }
    Ok(Json(out))
}

fn share_state(s: &Share) -> TransferState {
    if s.cancelled {
        TransferState::Cancelled
    } else if s.downloaded.len() == s.files.len() {
        TransferState::Complete
    } else if s.downloaded.is_empty() {
        TransferState::Offered
    } else {
        TransferState::Running
    }
}

/// `POST /api/transfers/{id}/pause|resume|cancel`.
async fn control(
    State(app): State<App>,
    _: Owner,
    UrlPath((id, action)): UrlPath<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let node = app.node()?;
    let is_share = app.files.lock().shares.contains_key(&id);
    match (action.as_str(), is_share) {
        ("cancel", true) => {
            let guest = {
                let mut g = app.files.lock();
                let s = g.shares.get_mut(&id).expect("checked");
                s.cancelled = true;
                s.guest
            };
            app.emit(Event::TransferCancelled {
                id,
                peer: guest,
                direction: Direction::Send,
                by_peer: false,
            });
        }
        (_, true) => {
            return Err(ApiError::bad_request(
                "a share to a browser guest can only be cancelled",
            ));
        }
        ("pause", ..) => node.pause_transfer(id)?,
        ("resume", ..) => node.resume_transfer(id)?,
        ("cancel", ..) => node.cancel_transfer(id)?,
        (other, ..) => return Err(ApiError::not_found(format!("no action {other:?}"))),
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
    serve_file(Path::new(&r.path), &r.name, None).await
}

/// Streams a file as an attachment; `on_end(bytes, blake3)` runs once it was
/// sent whole.
async fn serve_file(
    path: &Path,
    name: &str,
    on_end: Option<Box<dyn FnOnce(u64, String) + Send>>,
) -> ApiResult<Response> {
    let f = tfs::open_existing(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ApiError::new(StatusCode::GONE, format!("{name} is no longer there"))
        }
        _ => internal(format!("{}: {e}", path.display())),
    })?;
    let len = f.metadata().map_err(|e| internal(e.to_string()))?.len();
    let file = tokio::fs::File::from_std(f);
    let mut on_end = on_end;
    if len == 0
        && let Some(f) = on_end.take()
    {
        f(0, blake3::hash(b"").to_hex().to_string());
    }
    let state = (file, blake3::Hasher::new(), 0u64, on_end);
    // The server stops polling once it has `len` bytes, so the end is noticed
    // when the last byte is read, not by reading past it.
    let stream = futures::stream::unfold(Some(state), move |st| async move {
        let (mut file, mut hasher, mut sent, mut on_end) = st?;
        if sent == len {
            return None;
        }
        let mut buf = vec![0u8; READ_CHUNK.min((len - sent) as usize)];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file got shorter while it was sent",
                )),
                None,
            )),
            Ok(n) => {
                buf.truncate(n);
                hasher.update(&buf);
                sent += n as u64;
                if sent == len
                    && let Some(f) = on_end.take()
                {
                    f(sent, hasher.finalize().to_hex().to_string());
                }
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buf)),
                    Some((file, hasher, sent, on_end)),
                ))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// `attachment` with an ASCII fallback name and the UTF-8 name (RFC 6266).
pub(crate) fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut enc = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{enc}")
}

#[derive(Debug, Deserialize)]
pub(crate) struct GuestOfferReq {
    entries: Vec<GuestEntry>,
}

/// An entry of a guest's offer (`dir` may be left out for files).
#[derive(Debug, Deserialize)]
struct GuestEntry {
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    dir: bool,
}

/// The checked manifest of a guest's offer (at least one file).
pub(crate) fn guest_manifest(req: &GuestOfferReq) -> ApiResult<Manifest> {
    let manifest = Manifest::new(
        req.entries
            .iter()
            .map(|e| {
                if e.dir {
                    Entry::dir(e.path.clone())
                } else {
                    Entry::file(e.path.clone(), e.size)
                }
            })
            .collect(),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if manifest.files() == 0 {
        return Err(ApiError::bad_request("the offer holds no file"));
    }
    Ok(manifest)
}

/// A refusal of the transfer service, as an HTTP error.
fn local_error(e: LocalError) -> ApiError {
    let status = match &e {
        LocalError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        LocalError::NotFound(_) => StatusCode::NOT_FOUND,
        LocalError::Conflict(_) | LocalError::Cancelled => StatusCode::CONFLICT,
        LocalError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
        LocalError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        LocalError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

/// `POST /api/guest/offers`: a guest offers files (names and sizes). The
/// node takes it as any peer's offer (the owner is asked, budgets apply).
async fn guest_offer(
    State(app): State<App>,
    Guest(guest): Guest,
    Json(req): Json<GuestOfferReq>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = app.node()?;
    let manifest = guest_manifest(&req)?;
    let max = app.options.max_upload;
    if manifest.total_bytes() > max {
        return Err(too_large(max));
    }
    let (id, accepted) = node
        .local_transfers()
        .offer(guest, manifest)
        .await
        .map_err(local_error)?;
    Ok(Json(serde_json::json!({
        "id": id,
        "state": if accepted { "accepted" } else { "offered" },
    })))
}

/// Where a guest's offer stands.
async fn guest_offer_state(
    State(app): State<App>,
    Guest(guest): Guest,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<LocalStatus>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let status = app.node()?.local_transfers().status(id, &guest);
    Ok(Json(status.map_err(local_error)?))
}

async fn guest_cancel(
    State(app): State<App>,
    Guest(guest): Guest,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let local = app.node()?.local_transfers();
    local.cancel(id, &guest).map_err(local_error)?;
    Ok(Json(serde_json::json!({ "id": id, "state": "cancelled" })))
}

/// `POST /api/guest/offers/{id}/upload`: the files of an accepted offer, one
/// multipart field per file, named by its path in the offer, in the offer's
/// order. Each is handed to the node's receiver as it streams in; files the
/// owner did not accept are read and dropped, files not sent fail.
async fn guest_upload(
    State(app): State<App>,
    Guest(guest): Guest,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    mut mp: Multipart,
) -> ApiResult<Json<serde_json::Value>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let local = app.node()?.local_transfers();
    let offer = local.status(id, &guest).map_err(local_error)?;
    // The body holds the files and a little multipart framing.
    let framing = 1024 * (offer.entries + 1);
    let total = offer.total_bytes;
    if content_length(&headers).is_some_and(|n| n > total.saturating_add(framing)) {
        return Err(too_large(total));
    }
    let mut up = local.upload(id, &guest).await.map_err(local_error)?;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        let path = field_path(&field)?;
        let Some(index) = up.index_of(path.as_str()) else {
            return Err(ApiError::bad_request(format!(
                "{:?} was not offered",
                path.as_str()
            )));
        };
        let take = up.accepted(index);
        if take {
            up.start(index).await.map_err(local_error)?;
        }
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if take {
                up.write(&chunk).await.map_err(local_error)?;
            }
        }
        if take {
            up.end().await.map_err(local_error)?;
        }
    }
    let done = up.finish().await.map_err(local_error)?;
    Ok(Json(serde_json::json!({
        "id": id,
        "files": done.ok + done.failed,
        "failed": done.failed,
        "bytes": done.done_bytes,
    })))
}

/// The `progress` event of a share (offered, or as files are fetched).
fn share_progress(id: TransferId, s: &Share, file: Option<(String, u64)>) -> Event {
    let (file, file_bytes) = match file {
        Some((f, n)) => (Some(f), n),
        None => (None, 0),
    };
    Event::Progress {
        id,
        peer: s.guest,
        direction: Direction::Send,
        done_bytes: s.done(),
        total_bytes: s.total(),
        files_done: s.downloaded.len() as u64,
        files_total: s.files.len() as u64,
        file,
        file_done: file_bytes,
        file_bytes,
        transferred: s.done(),
        rate: 0,
        paused: false,
    }
}

#[derive(Debug, Serialize)]
struct SharedFile {
    index: usize,
    path: String,
    size: u64,
    url: String,
    downloaded: bool,
}

#[derive(Debug, Serialize)]
struct SharedView {
    id: TransferId,
    at_ms: u64,
    files: Vec<SharedFile>,
}

/// What the owner sent this guest, newest first.
async fn shared(State(app): State<App>, Guest(guest): Guest) -> Json<Vec<SharedView>> {
    let g = app.files.lock();
    let mut out: Vec<SharedView> = g
        .shares
        .iter()
        .filter(|(_, s)| s.guest == guest && !s.cancelled)
        .map(|(id, s)| SharedView {
            id: *id,
            at_ms: s.created_ms,
            files: s
                .files
                .iter()
                .enumerate()
                .map(|(i, (path, _, size))| SharedFile {
                    index: i,
                    path: path.clone(),
                    size: *size,
                    url: format!("/api/guest/shared/{id}/{i}"),
                    downloaded: s.downloaded.contains(&i),
                })
                .collect(),
        })
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.at_ms));
    Json(out)
}

async fn download_shared(
    State(app): State<App>,
    Guest(guest): Guest,
    UrlPath((id, index)): UrlPath<(String, usize)>,
) -> ApiResult<Response> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let (rel, path) = {
        let g = app.files.lock();
        let s = g
            .shares
            .get(&id)
            .filter(|s| s.guest == guest && !s.cancelled)
            .ok_or_else(|| ApiError::not_found(format!("no files {id}")))?;
        let (rel, path, _) = s
            .files
            .get(index)
            .ok_or_else(|| ApiError::not_found(format!("no file {index}")))?;
        (rel.clone(), path.clone())
    };
    let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
    let weak = std::sync::Arc::downgrade(&app);
    let on_end = Box::new(move |bytes: u64, blake3: String| {
        let Some(app) = weak.upgrade() else { return };
        let events = {
            let mut g = app.files.lock();
            let Some(s) = g.shares.get_mut(&id) else {
                return;
            };
            let first = s.downloaded.insert(index);
            let mut ev = Vec::new();
            if first {
                ev.push(Event::TransferDone {
                    id,
                    peer: guest,
                    direction: Direction::Send,
                    path: rel.clone(),
                    bytes,
                    blake3,
                });
                ev.push(share_progress(id, s, Some((rel.clone(), bytes))));
                if s.downloaded.len() == s.files.len() {
                    ev.push(Event::TransferComplete {
                        id,
                        peer: guest,
                        direction: Direction::Send,
                        files: s.files.len() as u64,
                        failed: 0,
                        bytes: s.total(),
                        transferred: s.total(),
                    });
                }
            }
            ev
        };
        for e in events {
            app.emit(e);
        }
    });
    serve_file(&path, &name, Some(on_end)).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_quoted_safely() {
        let d = content_disposition("naïve \"plan\".txt");
        assert!(
            d.starts_with("attachment; filename=\"na_ve _plan_.txt\";"),
            "{d}"
        );
        assert!(
            d.ends_with("filename*=UTF-8''na%C3%AFve%20%22plan%22.txt"),
            "{d}"
        );
    }

    #[test]
    fn query_pairs_are_percent_decoded() {
        assert_eq!(
            url_pairs("to=abc&to=d%2Fe&x"),
            vec![
                ("to".to_string(), "abc".to_string()),
                ("to".to_string(), "d/e".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(percent_decode("50%"), "50%");
    }
}
