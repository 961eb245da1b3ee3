//! The LocalSend HTTPS server (protocol v2): `info` (and v1's `info`),
//! `register`, `prepare-upload`, `upload` and `cancel`.
//!
//! An offer (`prepare-upload`) is handed to the node's one receiver through
//! the local-sender adapter ([`crate::net::transfer::local`]): the owner sees
//! the same `Offer` event as for any peer and accepts all, some or none of
//! the files. The answer to the request waits for that decision, as
//! LocalSend's does: 200 with a token per accepted file, 403 when rejected.
//! The uploads then stream each file's bytes to the receiver as they come
//! (`Content-Length` or chunked bodies), checking the `sha256` the sender
//! gave (422 and the file is deleted when it does not match).
//!
//! Bounds (see SECURITY.md):
//! - one session at a time (another `prepare-upload` gets 409);
//! - [`MAX_CONNECTIONS`] connections, [`MAX_CONNECTIONS_PER_IP`] from one
//!   address; a TLS handshake must end within [`HANDSHAKE_TIMEOUT`] and a
//!   request head arrive within [`HEADER_TIMEOUT`];
//! - JSON bodies of at most [`MAX_JSON`] bytes, at most [`MAX_FILES`] files
//!   per offer, offers of at most `LocalSendConfig::max_offer_bytes`, and
//!   every budget of the receiver (concurrent transfers, free space);
//! - an upload body that sends nothing for [`BODY_IDLE`] ends the session;
//!   so does a session with no upload for [`SESSION_IDLE`];
//! - with a PIN, [`PIN_TRIES`] wrong PINs from one address get 429 for
//!   [`PIN_LOCKOUT`];
//! - a text share (one `text/plain` file whose `preview` is the whole text)
//!   becomes a direct message from the device (204, nothing uploaded), at
//!   most [`TEXT_BURST`] at once and [`TEXT_RATE`] per second from an address.
//!
//! Uploads go through one at a time in the order the client sends them (the
//! offer's, or any other: `localsend-rs` uploads in an order of its own); an
//! upload that comes while another streams waits for it as long as the
//! session lives, so a client uploading in parallel is served too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::tls::{Cert, fingerprint, hex_upper};
use super::{InfoDto, device_id, note_device};
use crate::accept::Admission;
use crate::config::{DEFAULT_LOCALSEND_PORT, LocalSendConfig};
use crate::event::Trust;
use crate::identity::PeerId;
use crate::net::transfer::TransferId;
use crate::net::transfer::local::{LocalError, LocalState, LocalTransfers, LocalUpload};
use crate::node::WeakNode;
use crate::proto::kademlia::token_bucket::TokenBuckets;
use crate::proto::transfer::{Entry, Manifest};

/// Connections open at once (all clients).
pub const MAX_CONNECTIONS: usize = 64;
/// Connections open at once from one address.
pub const MAX_CONNECTIONS_PER_IP: usize = 16;
/// A TLS handshake must end within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head must arrive within this long (also the keep-alive idle
/// timeout).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JSON body (`prepare-upload`, `register`).
pub const MAX_JSON: usize = 1 << 20;
/// Most files in one offer.
pub const MAX_FILES: usize = 10_000;
/// Longest file id or `sha256` taken from a sender.
const MAX_ID: usize = 128;
/// Wrong PINs from one address before it gets 429.
pub const PIN_TRIES: u32 = 3;
/// How long an address that used up its tries gets 429.
pub const PIN_LOCKOUT: Duration = Duration::from_secs(60);
/// Addresses with wrong PINs remembered at once (past it, new ones get 429).
const MAX_PIN_CLIENTS: usize = 1024;
/// An upload body that sends nothing for this long ends the session.
pub const BODY_IDLE: Duration = Duration::from_secs(30);
/// Text shares one address may send at once.
pub const TEXT_BURST: u32 = 10;
/// Text shares one address may send per second after its burst.
pub const TEXT_RATE: u32 = 1;
/// How often an upload waiting for another one checks that its session still
/// lives.
const WAIT_CHECK: Duration = Duration::from_secs(1);
/// A session with no upload for this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(120);

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
struct Conn {
    ip: IpAddr,
    /// The fingerprint of the client certificate, if one was presented.
    client_fp: Option<String>,
}

#[derive(Debug)]
struct Failures {
    count: u32,
    since: Instant,
}

enum Slot {
    Free,
    /// An offer waits for the owner's answer.
    Preparing,
    Active(Arc<Session>),
}

/// A file of the session the owner accepted.
#[derive(Debug)]
struct SFile {
    file_id: String,
    token: String,
    index: u32,
    sha256: Option<String>,
}

struct Session {
    id: String,
    peer: PeerId,
    ip: IpAddr,
    transfer: TransferId,
    /// Accepted files, in the offer's order.
    files: Vec<SFile>,
    /// One upload streams at a time; `None` once the session is over.
    upload: tokio::sync::Mutex<Option<LocalUpload>>,
    /// Per file: `Some(true)` arrived, `Some(false)` refused.
    results: Mutex<Vec<Option<bool>>>,
    last: Mutex<Instant>,
}

impl Session {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

struct App {
    node: WeakNode,
    me: InfoDto,
    pin: Option<String>,
    max_offer: u64,
    offer_wait: Duration,
    slot: Mutex<Slot>,
    pins: Mutex<HashMap<IpAddr, Failures>>,
    /// Text shares per address (at most [`MAX_PIN_CLIENTS`] tracked).
    texts: Mutex<TokenBuckets>,
    /// The clock of `texts`.
    started: Instant,
}

type AppRef = Arc<App>;

/// An HTTP error with LocalSend's `{"message": ...}` body.
#[derive(Debug)]
struct ApiErr(StatusCode, String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "message": self.1 }))).into_response()
    }
}

fn err(status: StatusCode, msg: impl Into<String>) -> ApiErr {
    ApiErr(status, msg.into())
}

type ApiResult<T> = Result<T, ApiErr>;

impl App {
    fn node(&self) -> ApiResult<crate::Node> {
        self.node
            .upgrade()
            .ok_or_else(|| err(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn active(&self) -> Option<Arc<Session>> {
        match &*self.slot() {
            Slot::Active(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Ends session `s` (if it is still the one): its transfer is cancelled
    /// unless it ended.
    fn end(&self, s: &Session, node: Option<&crate::Node>) {
        {
            let mut g = self.slot();
            if matches!(&*g, Slot::Active(a) if a.id == s.id) {
                *g = Slot::Free;
            }
        }
        if let Some(node) = node {
            let _ = node.local_transfers().cancel(s.transfer, &s.peer);
        }
    }

    /// A text share from `ip` is allowed: [`TEXT_BURST`] at once, then
    /// [`TEXT_RATE`] per second; 429 past it (each becomes a stored message).
    fn check_text_rate(&self, ip: IpAddr) -> ApiResult<()> {
        let now = self.started.elapsed();
        let mut g = self.texts.lock().unwrap_or_else(|p| p.into_inner());
        if g.allow(SocketAddr::new(ip, 0), now) {
            Ok(())
        } else {
            Err(err(StatusCode::TOO_MANY_REQUESTS, "too many texts"))
        }
    }

    /// Checks the PIN, if one is set: 401 without or with a wrong one, 429
    /// once an address used up its tries.
    fn check_pin(&self, ip: IpAddr, given: Option<&str>) -> ApiResult<()> {
        let Some(pin) = &self.pin else {
            return Ok(());
        };
        let now = Instant::now();
        let mut g = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|_, f| now.saturating_duration_since(f.since) < PIN_LOCKOUT);
        if g.get(&ip).is_some_and(|f| f.count >= PIN_TRIES) {
            return Err(err(StatusCode::TOO_MANY_REQUESTS, "too many wrong PINs"));
        }
        match given {
            None | Some("") => Err(err(StatusCode::UNAUTHORIZED, "PIN required")),
            Some(p) if p == pin => {
                g.remove(&ip);
                Ok(())
            }
            Some(_) => {
                if g.len() >= MAX_PIN_CLIENTS && !g.contains_key(&ip) {
                    return Err(err(StatusCode::TOO_MANY_REQUESTS, "too many wrong PINs"));
                }
                g.entry(ip)
                    .or_insert(Failures {
                        count: 0,
                        since: now,
                    })
                    .count += 1;
                Err(err(StatusCode::UNAUTHORIZED, "wrong PIN"))
            }
        }
    }
}

/// Frees the slot a `prepare-upload` reserved, unless it became a session.
struct Reserved<'a> {
    app: &'a App,
    kept: bool,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let mut g = self.app.slot();
            if matches!(&*g, Slot::Preparing) {
                *g = Slot::Free;
            }
        }
    }
}

/// Cancels an offer whose request ended before it became a session (the
/// sender gave up or disconnected while the owner was asked).
struct CancelOnDrop {
    local: LocalTransfers,
    id: TransferId,
    peer: PeerId,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.local.cancel(self.id, &self.peer);
        }
    }
}

/// Ends a session whose upload stopped midway (error, timeout, the client
/// gone).
struct AbortOnDrop<'a> {
    app: &'a App,
    s: &'a Session,
    armed: bool,
}

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let node = self.app.node.upgrade();
            self.app.end(self.s, node.as_ref());
        }
    }
}

fn routes(app: AppRef) -> Router {
    Router::new()
        .route("/api/localsend/v2/info", get(info).post(info))
        .route("/api/localsend/v1/info", get(info))
        .route("/api/localsend/v2/register", post(register))
        .route("/api/localsend/v1/register", post(register))
        .route("/api/localsend/v2/prepare-upload", post(prepare_upload))
        .route(
            "/api/localsend/v2/upload",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/localsend/v2/cancel", post(cancel))
        .layer(DefaultBodyLimit::max(MAX_JSON))
        .with_state(app)
}

async fn info(State(app): State<AppRef>) -> Json<InfoDto> {
    Json(app.me.clone())
}

/// Checks a client's claimed fingerprint against its certificate, when it
/// presented one.
fn same_device(conn: &Conn, claimed: &str) -> ApiResult<()> {
    match &conn.client_fp {
        Some(fp) if !fp.eq_ignore_ascii_case(claimed) => Err(err(
            StatusCode::FORBIDDEN,
            "the client certificate does not match the fingerprint",
        )),
        _ => Ok(()),
    }
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn register(
    State(app): State<AppRef>,
    Extension(conn): Extension<Conn>,
    body: Bytes,
) -> ApiResult<Json<InfoDto>> {
    let node = app.node()?;
    let dto: InfoDto = json(&body)?;
    let dev = dto
        .device()
        .ok_or_else(|| err(StatusCode::BAD_REQUEST, "no fingerprint"))?;
    same_device(&conn, &dev.fingerprint)?;
    if dev.fingerprint != app.me.fingerprint && !dto.is_peerconnect() {
        let port = dto.port.unwrap_or(DEFAULT_LOCALSEND_PORT);
        note_device(&node, dev, SocketAddr::new(conn.ip, port));
    }
    Ok(Json(app.me.clone()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileDto {
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<String>,
    file_name: String,
    size: u64,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    file_type: Option<String>,
    /// The whole text, for a text share.
    #[serde(default)]
    preview: Option<String>,
}

/// The text of a LocalSend text share: one `text/plain` file whose preview
/// is all of it (the app then needs no upload and gets 204).
fn text_share(files: &[(String, FileDto)]) -> Option<&str> {
    match files {
        [(_, f)] if f.file_type.as_deref() == Some("text/plain") => f
            .preview
            .as_deref()
            .filter(|p| p.len() as u64 == f.size && !p.is_empty()),
        _ => None,
    }
}

/// The files of an offer in the order they were sent (which is the order
/// they travel), at most [`MAX_FILES`].
#[derive(Debug)]
struct OrderedFiles(Vec<(String, FileDto)>);

impl<'de> Deserialize<'de> for OrderedFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedFiles;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of files")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedFiles, A::Error> {
                let mut v = Vec::new();
                while let Some((k, f)) = m.next_entry::<String, FileDto>()? {
                    if v.len() >= MAX_FILES {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_FILES} files"
                        )));
                    }
                    v.push((k, f));
                }
                Ok(OrderedFiles(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Deserialize)]
struct PrepareReq {
    info: InfoDto,
    files: OrderedFiles,
}

#[derive(Debug, Deserialize)]
struct PinQuery {
    pin: Option<String>,
}

fn token() -> String {
    hex_upper(&rand::random::<[u8; 16]>())
}

/// The manifest of an offer (the folders its paths name, then its files in
/// the sender's order) and its files.
fn manifest_of(files: &[(String, FileDto)]) -> ApiResult<(Manifest, Vec<SFile>)> {
    if files.is_empty() {
        return Err(err(StatusCode::BAD_REQUEST, "the offer holds no file"));
    }
    let mut dirs: Vec<String> = Vec::new();
    let mut seen_dirs = HashSet::new();
    let mut ids = HashSet::new();
    for (id, f) in files {
        if id.len() > MAX_ID || !ids.insert(id.as_str()) {
            return Err(err(StatusCode::BAD_REQUEST, "bad or repeated file id"));
        }
        let parts: Vec<&str> = f.file_name.split('/').collect();
        for n in 1..parts.len() {
            let d = parts[..n].join("/");
            if seen_dirs.insert(d.clone()) {
                dirs.push(d);
            }
        }
    }
    let mut entries: Vec<Entry> = dirs.iter().map(|d| Entry::dir(d.clone())).collect();
    let mut out = Vec::with_capacity(files.len());
    for (id, f) in files {
        let sha256 = match &f.sha256 {
            Some(h) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => Some(h.clone()),
            Some(h) if h.is_empty() => None,
            Some(_) => return Err(err(StatusCode::BAD_REQUEST, "sha256 is not 64 hex digits")),
            None => None,
        };
        out.push(SFile {
            file_id: id.clone(),
            token: token(),
            index: entries.len() as u32,
            sha256,
        });
        entries.push(Entry::file(f.file_name.clone(), f.size));
    }
    let manifest =
        Manifest::new(entries).map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((manifest, out))
}

/// Entry points for the fuzz targets (not an API).
#[doc(hidden)]
pub mod fuzzing {
    use super::{Manifest, PrepareReq, manifest_of};

    /// A `prepare-upload` body as the server reads it: the sender's device,
    /// the offer's manifest, and how many files get a token.
    pub fn prepare_upload(
        body: &[u8],
    ) -> Option<(Option<crate::event::LocalSendDevice>, Manifest, usize)> {
        let req: PrepareReq = serde_json::from_slice(body).ok()?;
        let dev = req.info.device();
        let (m, files) = manifest_of(&req.files.0).ok()?;
        Some((dev, m, files.len()))
    }
}

fn local_err(e: LocalError) -> ApiErr {
    let status = match &e {
        LocalError::Busy(_) | LocalError::Conflict(_) | LocalError::Cancelled => {
            StatusCode::CONFLICT
        }
        LocalError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
        LocalError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        LocalError::NotFound(_) | LocalError::NoFile(_) => StatusCode::FORBIDDEN,
        LocalError::Refused(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    err(status, e.to_string())
}

async fn prepare_upload(
    State(app): State<AppRef>,
    Extension(conn): Extension<Conn>,
    Query(q): Query<PinQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let node = app.node()?;
    app.check_pin(conn.ip, q.pin.as_deref())?;
    let req: PrepareReq = json(&body)?;
    let dev = req
        .info
        .device()
        .ok_or_else(|| err(StatusCode::BAD_REQUEST, "no fingerprint"))?;
    same_device(&conn, &dev.fingerprint)?;
    let peer = device_id(&dev.fingerprint);
    let port = req.info.port.unwrap_or(DEFAULT_LOCALSEND_PORT);
    note_device(&node, dev, SocketAddr::new(conn.ip, port));
    if node.store().trust(&peer).ok() == Some(Trust::Blocked) {
        return Err(err(StatusCode::FORBIDDEN, "blocked"));
    }
    if let Some(text) = text_share(&req.files.0) {
        app.check_text_rate(conn.ip)?;
        node.guest_message(peer, text.to_string(), None)
            .await
            .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (manifest, files) = manifest_of(&req.files.0)?;
    if manifest.total_bytes() > app.max_offer {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("offers are limited to {} bytes", app.max_offer),
        ));
    }
    let mut reserved = {
        let mut g = app.slot();
        if !matches!(&*g, Slot::Free) {
            return Err(err(StatusCode::CONFLICT, "another session is running"));
        }
        *g = Slot::Preparing;
        Reserved {
            app: &app,
            kept: false,
        }
    };
    let local = node.local_transfers();
    let (id, auto) = local.offer(peer, manifest).await.map_err(local_err)?;
    let mut cancel = CancelOnDrop {
        local: local.clone(),
        id,
        peer,
        armed: true,
    };
    let state = if auto {
        LocalState::Accepted
    } else {
        local
            .answered(id, &peer, app.offer_wait)
            .await
            .map_err(local_err)?
    };
    match state {
        LocalState::Accepted => {}
        LocalState::Offered => {
            return Err(err(StatusCode::FORBIDDEN, "nobody answered the offer"));
        }
        LocalState::Rejected => {
            cancel.armed = false;
            return Err(err(StatusCode::FORBIDDEN, "the offer was rejected"));
        }
        s => {
            return Err(err(
                StatusCode::FORBIDDEN,
                format!("the offer is {s:?}").to_lowercase(),
            ));
        }
    }
    let up = local.upload(id, &peer).await.map_err(local_err)?;
    let accepted: Vec<SFile> = files.into_iter().filter(|f| up.accepted(f.index)).collect();
    if accepted.is_empty() {
        cancel.armed = false;
        let _ = up.finish().await;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let tokens: BTreeMap<String, String> = accepted
        .iter()
        .map(|f| (f.file_id.clone(), f.token.clone()))
        .collect();
    let n = accepted.len();
    let session = Arc::new(Session {
        id: token(),
        peer,
        ip: conn.ip,
        transfer: id,
        files: accepted,
        upload: tokio::sync::Mutex::new(Some(up)),
        results: Mutex::new(vec![None; n]),
        last: Mutex::new(Instant::now()),
    });
    let body = serde_json::json!({ "sessionId": session.id, "files": tokens });
    *app.slot() = Slot::Active(session);
    reserved.kept = true;
    cancel.armed = false;
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadQuery {
    session_id: String,
    file_id: String,
    token: String,
}

async fn upload(
    State(app): State<AppRef>,
    Extension(conn): Extension<Conn>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> ApiResult<StatusCode> {
    let s = app
        .active()
        .filter(|s| s.id == q.session_id && s.ip == conn.ip)
        .ok_or_else(|| err(StatusCode::FORBIDDEN, "no such session"))?;
    let pos = s
        .files
        .iter()
        .position(|f| f.file_id == q.file_id && f.token == q.token)
        .ok_or_else(|| err(StatusCode::FORBIDDEN, "no such file or wrong token"))?;
    let mut guard = loop {
        match tokio::time::timeout(WAIT_CHECK, s.upload.lock()).await {
            Ok(g) => break g,
            Err(_) if app.active().is_some_and(|a| a.id == s.id) => continue,
            Err(_) => return Err(err(StatusCode::CONFLICT, "the session is over")),
        }
    };
    let done = s.results.lock().unwrap_or_else(|p| p.into_inner())[pos];
    match done {
        Some(false) => {
            return Err(err(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this file was refused: its sha256 did not match",
            ));
        }
        Some(true) => return Err(err(StatusCode::CONFLICT, "this file was uploaded already")),
        None => {}
    }
    let Some(up) = guard.as_mut() else {
        return Err(err(StatusCode::CONFLICT, "the session is over"));
    };
    let mut abort = AbortOnDrop {
        app: &app,
        s: &s,
        armed: true,
    };
    let f = &s.files[pos];
    s.touch();
    up.start(f.index).await.map_err(local_err)?;
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut stream = body.into_data_stream();
    loop {
        match tokio::time::timeout(BODY_IDLE, stream.next()).await {
            Err(_) => return Err(err(StatusCode::REQUEST_TIMEOUT, "the upload stalled")),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(err(StatusCode::BAD_REQUEST, e.to_string())),
            Ok(Some(Ok(chunk))) => {
                sha.update(&chunk);
                up.write(&chunk).await.map_err(local_err)?;
                s.touch();
            }
        }
    }
    let ok = match &f.sha256 {
        Some(want) => hex_upper(sha.finish().as_ref()).eq_ignore_ascii_case(want),
        None => true,
    };
    if ok {
        up.end().await.map_err(local_err)?;
    } else {
        up.end_refused().await.map_err(local_err)?;
    }
    // Whether every file was uploaded, and how many were refused by their
    // sha256 (they count as failed in the receiver's verdict).
    let (all_done, refused) = {
        let mut results = s.results.lock().unwrap_or_else(|p| p.into_inner());
        results[pos] = Some(ok);
        (
            results.iter().all(Option::is_some),
            results.iter().filter(|r| **r == Some(false)).count() as u32,
        )
    };
    s.touch();
    if all_done {
        let up = guard.take().expect("the upload is there");
        drop(guard);
        let result = up.finish().await;
        abort.armed = false;
        app.end(&s, None);
        let status = result.map_err(local_err)?;
        // A failure beyond the refused files (a disk error, say) is told
        // with the last upload, this one.
        if ok && status.failed > refused {
            return Err(err(
                StatusCode::INTERNAL_SERVER_ERROR,
                status
                    .error
                    .unwrap_or_else(|| format!("{} files failed", status.failed)),
            ));
        }
    }
    abort.armed = false;
    if ok {
        Ok(StatusCode::OK)
    } else {
        Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the file does not match its sha256",
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelQuery {
    session_id: Option<String>,
}

async fn cancel(
    State(app): State<AppRef>,
    Extension(conn): Extension<Conn>,
    Query(q): Query<CancelQuery>,
) -> ApiResult<StatusCode> {
    let Some(s) = app.active() else {
        return Ok(StatusCode::OK);
    };
    let theirs = s.ip == conn.ip && q.session_id.as_ref().is_none_or(|id| *id == s.id);
    if !theirs {
        return Err(err(StatusCode::FORBIDDEN, "not your session"));
    }
    let node = app.node.upgrade();
    app.end(&s, node.as_ref());
    Ok(StatusCode::OK)
}

/// Starts serving on `listener`; the task stops (and closes every
/// connection) when it is aborted.
pub(crate) fn spawn(
    node: &crate::Node,
    listener: TcpListener,
    cert: &Cert,
    me: InfoDto,
    config: &LocalSendConfig,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let tls = super::tls::server_config(cert).map_err(|e| format!("LocalSend TLS: {e}"))?;
    let acceptor = TlsAcceptor::from(tls);
    let app = Arc::new(App {
        node: node.downgrade(),
        me,
        pin: config.pin.clone().filter(|p| !p.is_empty()),
        max_offer: config.max_offer_bytes,
        // The receiver refuses an unanswered offer after its own timeout.
        offer_wait: node.config().transfer.offer_timeout + Duration::from_secs(5),
        slot: Mutex::new(Slot::Free),
        pins: Mutex::default(),
        texts: Mutex::new(TokenBuckets::new(TEXT_RATE, TEXT_BURST, MAX_PIN_CLIENTS)),
        started: Instant::now(),
    });
    let router = routes(app.clone());
    Ok(tokio::spawn(async move {
        let stop = CancellationToken::new();
        let _stop_all = stop.clone().drop_guard();
        let admission = Admission::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP);
        let mut backoff = crate::accept::Backoff::default();
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = sweep.tick() => {
                    sweep_idle(&app);
                    continue;
                }
            };
            let (stream, peer) = match accepted {
                Ok(a) => {
                    backoff.reset();
                    a
                }
                Err(e) => {
                    let wait = backoff.failed();
                    tracing::debug!(error = %e, ?wait, "LocalSend: accept failed");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let Some(slot) = admission.admit(peer.ip()) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, router, stop) = (acceptor.clone(), router.clone(), stop.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let tls =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(t)) => t,
                        _ => return,
                    };
                let client_fp = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| fingerprint(c));
                let conn = Conn {
                    ip: peer.ip().to_canonical(),
                    client_fp,
                };
                let service = TowerToHyperService::new(router.layer(Extension(conn)));
                let c = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), service);
                tokio::select! {
                    res = c => if let Err(e) = res {
                        tracing::trace!(error = %e, "LocalSend connection ended");
                    },
                    () = stop.cancelled() => {}
                }
            });
        }
    }))
}

/// Ends a session nothing was uploaded to for [`SESSION_IDLE`].
fn sweep_idle(app: &App) {
    let Some(s) = app.active() else { return };
    let idle = s.last.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
    // An upload under way holds the lock (and has its own timeout).
    if idle > SESSION_IDLE && s.upload.try_lock().is_ok() {
        tracing::info!(session = %s.id, "LocalSend session idle: ended");
        let node = app.node.upgrade();
        app.end(&s, node.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[(&str, u64)]) -> Vec<(String, FileDto)> {
        names
            .iter()
            .enumerate()
            .map(|(i, (n, size))| {
                (
                    format!("id{i}"),
                    FileDto {
                        id: None,
                        file_name: n.to_string(),
                        size: *size,
                        sha256: None,
                        file_type: None,
                        preview: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn an_offer_keeps_the_senders_order_and_names_its_folders() {
        let json = r#"{"info":{"alias":"a","fingerprint":"F"},"files":{
            "z":{"id":"z","fileName":"d/e/z.txt","size":3,"fileType":"text/plain"},
            "a":{"id":"a","fileName":"a.bin","size":1,"sha256":""}}}"#;
        let req: PrepareReq = serde_json::from_str(json).unwrap();
        let (m, f) = manifest_of(&req.files.0).unwrap();
        let paths: Vec<&str> = m.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["d", "d/e", "d/e/z.txt", "a.bin"]);
        assert_eq!(f[0].file_id, "z");
        assert_eq!(f[0].index, 2);
        assert_eq!(f[1].index, 3);
        assert!(f[1].sha256.is_none());
    }

    #[test]
    fn unsafe_repeated_or_empty_offers_are_refused() {
        for bad in [
            files(&[("../x", 1)]),
            files(&[("/etc/passwd", 1)]),
            files(&[("a", 1), ("a", 2)]),
            files(&[("a", 1), ("a/b", 2)]),
            files(&[]),
        ] {
            let e = manifest_of(&bad).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{:?}", e.1);
        }
        let mut many = String::from(r#"{"info":{"alias":"a","fingerprint":"F"},"files":{"#);
        for i in 0..=MAX_FILES {
            many += &format!(r#""{i}":{{"fileName":"f{i}","size":1}},"#);
        }
        many.pop();
        many += "}}";
        assert!(serde_json::from_str::<PrepareReq>(&many).is_err());
    }
}
