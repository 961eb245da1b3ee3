//! The web UI: an axum server every node can run, serving the static UI in
//! `web/` (embedded into the binary), a JSON REST API and a WebSocket that
//! carries the node's [`Event`]s, to any browser on the LAN.
//!
//! # Who may do what
//!
//! - The **owner** (the OS user running the node) may do everything. A
//!   request is the owner's if it comes from a loopback address, for a
//!   `Host` that is `localhost` or an IP literal, and carries the owner
//!   secret ([`WebInfo::owner_token`], random at every start): in the owner
//!   cookie, which opening [`WebInfo::owner_url`] (printed by `peerconnect
//!   up`, readable through the 0600 control socket) sets, or as
//!   `Authorization: Bearer <token>`. Loopback alone is not enough: other
//!   users of this machine reach loopback too. The `Host` rule stops DNS
//!   rebinding: a web page from elsewhere that points its own name at
//!   127.0.0.1 is not the owner.
//! - Any other client is a **browser guest** once it has entered the 6-digit
//!   PIN that `peerconnect up` prints ([`WebInfo::pin`]): it then holds an
//!   HttpOnly, SameSite=Strict session cookie, appears in the peer list as a
//!   peer of kind `browser`, and may upload files to this node (an offer the
//!   owner accepts or rejects), download what the owner sends it, and chat
//!   with the owner. PIN attempts are rate-limited per client address and in
//!   total ([`auth`]).
//! - Anyone else (a local user without the owner secret included) gets the
//!   static UI (which asks for the PIN) and `401` from the API.
//! - State-changing requests and WebSocket upgrades must come from this
//!   origin (`Origin` = `http://<Host>`), against cross-site requests.
//!
//! Guests live in memory: a restart ends every session (and makes a new PIN).
//!
//! # Layout
//!
//! - [`auth`]: PIN, rate limits, sessions, who is calling, the Origin check.
//! - [`guests`]: browser guests as peers, and their chat with the owner.
//! - [`api`]: the owner's REST API (peers, trust, settings, messages).
//! - [`files`]: uploads (the owner's to send, guests' with consent), offers,
//!   received files, downloads.
//! - [`socket`]: the WebSocket event stream.
//! - [`assets`]: the embedded static files.
//! - [`conn`]: the accept loop: connection caps and the header timeout.
//!
//! The API is documented in `docs/api.md`.

pub(crate) mod api;
pub(crate) mod assets;
pub(crate) mod auth;
pub(crate) mod conn;
pub(crate) mod files;
pub(crate) mod guests;
pub(crate) mod rooms;
pub(crate) mod socket;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::identity::PeerId;
use crate::node::{Node, WeakNode};

pub use crate::config::{
    WEB_HEADER_TIMEOUT as HEADER_TIMEOUT, WEB_MAX_CONNECTIONS as MAX_CONNECTIONS,
    WEB_MAX_CONNECTIONS_PER_IP as MAX_CONNECTIONS_PER_IP, WebOptions,
};

/// Where the web UI is and how guests get in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebInfo {
    /// The address the server is bound to.
    pub addr: SocketAddr,
    /// The URL to give other devices: a LAN address if the server listens on
    /// one, else the loopback URL.
    pub url: String,
    /// Every URL the UI is reachable at (LAN addresses first, then loopback).
    pub urls: Vec<String>,
    /// The 6-digit PIN browser guests must enter (new at every start).
    pub pin: String,
    /// The owner's link: opening it on this machine makes that browser the
    /// owner (it sets the owner cookie). Holds [`WebInfo::owner_token`]: show
    /// it only to the node's own user (`peerconnect up` prints it).
    pub owner_url: String,
    /// The owner's secret (random, new at every start); never serialized.
    #[serde(skip)]
    pub owner_token: String,
}

impl WebInfo {
    /// Name of the owner cookie: per port, so two nodes on one machine do not
    /// overwrite each other's (cookies ignore the port).
    pub fn owner_cookie_name(&self) -> String {
        format!("{}{}", auth::OWNER_COOKIE_PREFIX, self.addr.port())
    }

    /// A `Cookie` header value that makes a request the owner's (for
    /// scripts and tests on this machine).
    pub fn owner_cookie(&self) -> String {
        format!("{}={}", self.owner_cookie_name(), self.owner_token)
    }
}

/// A bound but not yet serving web server.
pub(crate) struct Bound {
    listener: TcpListener,
    info: WebInfo,
}

impl Bound {
    pub(crate) fn info(&self) -> &WebInfo {
        &self.info
    }
}

/// Binds the web UI's address if the config asks for one. With
/// [`WebOptions::optional`], a failure is returned as `Err(message)` inside
/// `Ok` so the node can start without it.
pub(crate) async fn bind(config: &Config) -> Result<Option<std::result::Result<Bound, String>>> {
    let Some(addr) = config.web else {
        return Ok(None);
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if config.web_options.optional => {
            return Ok(Some(Err(format!(
                "web UI not started: cannot listen on {addr}: {e} (use --web ADDR or --no-web)"
            ))));
        }
        Err(e) => return Err(Error::io(format!("web UI: listening on {addr}"), e)),
    };
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("web UI address", e))?;
    let urls = urls_for(local);
    let owner_token = auth::new_owner_token();
    let loopback = urls.last().cloned().unwrap_or_default();
    let info = WebInfo {
        addr: local,
        url: urls[0].clone(),
        owner_url: format!("{loopback}owner?token={owner_token}"),
        urls,
        pin: auth::new_pin(),
        owner_token,
    };
    Ok(Some(Ok(Bound { listener, info })))
}

/// The URLs a server bound to `local` is reachable at, LAN addresses first.
fn urls_for(local: SocketAddr) -> Vec<String> {
    let url = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{}/", local.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}/", local.port()),
    };
    if !local.ip().is_unspecified() {
        return vec![url(local.ip())];
    }
    let mut lan = Vec::new();
    if let Ok(ifs) = if_addrs::get_if_addrs() {
        for i in ifs {
            let ip = i.ip();
            // IPv6 link-local addresses need a scope id browsers do not take.
            let link_local_v6 =
                matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
            if ip.is_ipv4() == local.is_ipv4() && !ip.is_loopback() && !link_local_v6 {
                lan.push(url(ip));
            }
        }
    }
    lan.sort();
    lan.dedup();
    lan.push(url(if local.is_ipv4() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    }));
    lan
}

/// What every request handler shares.
pub(crate) struct AppState {
    pub node: WeakNode,
    pub info: WebInfo,
    pub options: WebOptions,
    pub limiter: auth::Limiter,
    pub guests: Arc<guests::Guests>,
    pub files: files::Files,
    /// Cancelled when the server stops: long-lived handlers (WebSockets) end.
    pub stop: CancellationToken,
}

pub(crate) type App = Arc<AppState>;

impl AppState {
    /// The node, or 503 once it has shut down.
    pub fn node(&self) -> std::result::Result<Node, ApiError> {
        self.node
            .upgrade()
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the node has shut down"))
    }

    pub fn emit(&self, e: Event) {
        if let Some(n) = self.node.upgrade() {
            // Through the transfer service, so the file lists (fed by its
            // notes) see the guests' transfers like the peers'.
            if e.transfer_id().is_some() {
                n.transfer_service().emit(e);
            } else {
                n.emit(e);
            }
        }
    }

    /// A guest's session ended (logout, expiry, block): its transfers both
    /// ways end too (the node's), and it leaves the peer list.
    pub fn guest_left(&self, id: PeerId) {
        if let Some(n) = self.node.upgrade() {
            n.local_transfers().peer_gone(&id);
            // Its rooms are left in the background (this runs in handlers).
            tokio::spawn(async move { n.guest_gone(id).await });
        }
        self.emit(Event::PeerLost { id });
    }
}

/// Starts serving on `bound` until the node shuts down (the task is owned by
/// the node and aborted then).
pub(crate) fn serve(node: &Node, bound: Bound, options: WebOptions) -> tokio::task::JoinHandle<()> {
    let app = new_app(node, bound.info, options.clone());
    let stop = app.stop.clone();
    let sweeper = guests::spawn_sweeper(app.clone());
    let watcher = files::spawn_watcher(app.clone(), node);
    let router = router(app);
    tokio::spawn(async move {
        // Aborting this task drops the guard: WebSockets and the sweeper end.
        let _guard = stop.clone().drop_guard();
        let _sweeper = AbortOnDrop(sweeper);
        let _watcher = AbortOnDrop(watcher);
        conn::serve(bound.listener, router, &options, stop).await;
    })
}

/// The state of a server for `node`.
pub(crate) fn new_app(node: &Node, info: WebInfo, options: WebOptions) -> App {
    Arc::new(AppState {
        node: node.downgrade(),
        guests: node.guests().clone(),
        files: files::Files::new(node.data_dir()),
        info,
        options,
        limiter: auth::Limiter::default(),
        stop: CancellationToken::new(),
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every route of the UI and the API.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .merge(auth::routes())
        .merge(api::routes())
        .merge(guests::routes())
        .merge(rooms::routes())
        .merge(files::routes())
        .merge(socket::routes())
        .fallback(assets::serve)
        .layer(axum::middleware::from_fn(auth::check_origin))
        .with_state(app)
}

/// An API error: a status and a JSON body `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds to wait (429 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = s.to_string().parse()
        {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use crate::proto::messaging::Error as M;
        let status = match &e {
            Error::PeerNotFound(_) => StatusCode::NOT_FOUND,
            Error::AmbiguousPeer(..) => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Messaging(M::TooLong { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Messaging(M::Blocked(_)) => StatusCode::FORBIDDEN,
            Error::Messaging(M::GuestLeft(_)) => StatusCode::GONE,
            Error::Messaging(_) => StatusCode::BAD_REQUEST,
            Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Error::from(e).into()
    }
}

pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;

/// Parses a PeerId from a path segment (400 if it is not one).
pub(crate) fn parse_peer(s: &str) -> ApiResult<PeerId> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("{s:?} is not a peer id")))
}

/// What the web UI does with request bodies, query strings and names that
/// browsers send, reachable from the fuzz targets in `fuzz/`. Not an API: it
/// only calls what the handlers call.
#[doc(hidden)]
pub mod fuzzing {
    use axum::extract::Query;
    use axum::http::Uri;

    use crate::proto::transfer::{Manifest, SafePath};
    use crate::store::SavedSettings;

    /// Parses `body` as each JSON request body the web UI accepts and runs the
    /// handlers' checks that need no node. Returns the guest offer's manifest
    /// when `body` is a valid one.
    pub fn json_body(body: &[u8]) -> Option<Manifest> {
        let _ = serde_json::from_slice::<super::api::SetTrust>(body);
        let _ = serde_json::from_slice::<super::api::Connect>(body);
        let _ = serde_json::from_slice::<super::auth::Login>(body);
        let _ = serde_json::from_slice::<super::guests::Say>(body);
        let _ = serde_json::from_slice::<super::guests::Read>(body);
        let _ = serde_json::from_slice::<super::rooms::Join>(body);
        let _ = serde_json::from_slice::<super::rooms::Say>(body);
        if let Ok(s) = serde_json::from_slice::<SavedSettings>(body)
            && let Some(n) = &s.name
        {
            let _ = crate::proto::wire::truncate_name(n.trim());
        }
        let req = serde_json::from_slice::<super::files::GuestOfferReq>(body).ok()?;
        super::files::guest_manifest(&req).ok()
    }

    /// Parses `query` (the part after `?`) as each query string the web UI reads.
    pub fn query(query: &str) {
        let Ok(uri) = format!("/?{query}").parse::<Uri>() else {
            return;
        };
        let _ = Query::<super::guests::Page>::try_from_uri(&uri);
        let _ = Query::<super::rooms::Page>::try_from_uri(&uri);
        let _ = Query::<super::auth::OwnerLink>::try_from_uri(&uri);
    }

    /// The path an upload's multipart file name becomes, or why it is refused.
    pub fn upload_path(file_name: &str) -> Result<SafePath, String> {
        super::files::upload_path(Some(file_name)).map_err(|e| e.message)
    }

    /// The `Content-Disposition` value of a download named `name`.
    pub fn content_disposition(name: &str) -> String {
        super::files::content_disposition(name)
    }

    /// The display name a guest who typed `name` gets.
    pub fn guest_name(name: &str) -> String {
        super::guests::clean_name(name)
    }
}

#[cfg(test)]
mod tests;
