//! Who is calling: the owner (loopback with the owner secret), a browser guest (PIN, then a session
//! cookie) or nobody; PIN attempts and their rate limits; the Origin check.
//!
//! # PIN attempts
//!
//! Each attempt takes a token from its client address's bucket
//! ([`PER_CLIENT_BURST`] tokens, one back every [`PER_CLIENT_REFILL`]). The
//! PIN is then compared (in constant time): the right PIN logs in whatever
//! other clients did, so strangers guessing cannot lock the owner's guests
//! out. Each wrong PIN also takes a token from a bucket shared by all
//! clients ([`GLOBAL_BURST`], one back every [`GLOBAL_REFILL`]); once that is
//! empty, a wrong PIN also empties its address's bucket, so each address is
//! down to one guess per [`PER_CLIENT_REFILL`] (no bursts) until the shared
//! bucket refills. An empty bucket answers `429` with `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, ApiResult, App};
use crate::identity::PeerId;

/// Name of the session cookie.
pub const COOKIE: &str = "pc_session";
/// Start of the owner cookie's name (the web port follows).
pub const OWNER_COOKIE_PREFIX: &str = "pc_owner_";
/// PIN attempts one client address may make in a burst.
pub const PER_CLIENT_BURST: f64 = 5.0;
/// Time for one client address to earn one more attempt.
pub const PER_CLIENT_REFILL: Duration = Duration::from_secs(30);
/// Failed attempts all clients together may make in a burst.
pub const GLOBAL_BURST: f64 = 20.0;
/// Time for all clients together to earn one more failed attempt.
pub const GLOBAL_REFILL: Duration = Duration::from_secs(60);
/// Client addresses remembered by the limiter at most.
const MAX_CLIENTS: usize = 4096;

/// A fresh random 6-digit PIN.
pub(crate) fn new_pin() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// A fresh owner secret: 32 random bytes, base32.
pub(crate) fn new_owner_token() -> String {
    crate::identity::base32_encode(&rand::random::<[u8; 32]>())
}

/// Compares without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, every: Duration, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() / every.as_secs_f64();
        self.tokens = (self.tokens + earned).min(burst);
        self.at = now;
    }

    /// Time until one token is there.
    fn wait(&self, every: Duration) -> Duration {
        every.mul_f64((1.0 - self.tokens).max(0.0))
    }
}

/// Rate limits of PIN attempts (see the module docs).
#[derive(Debug)]
pub(crate) struct Limiter {
    inner: Mutex<LimiterInner>,
}

#[derive(Debug)]
struct LimiterInner {
    clients: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            inner: Mutex::new(LimiterInner {
                clients: HashMap::new(),
                global: Bucket::full(GLOBAL_BURST, Instant::now()),
            }),
        }
    }
}

impl Limiter {
    /// Takes an attempt for `ip` from its own bucket; `Err(wait)` if it must
    /// wait that long first. The shared bucket is not looked at: a right PIN
    /// must get through however many wrong ones others sent.
    pub fn attempt(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.clients.len() >= MAX_CLIENTS && !g.clients.contains_key(&ip) {
            // Forget clients whose bucket is full again: they lose nothing.
            g.clients.retain(|_, b| {
                b.refill(PER_CLIENT_BURST, PER_CLIENT_REFILL, now);
                b.tokens < PER_CLIENT_BURST
            });
            if g.clients.len() >= MAX_CLIENTS {
                return Err(PER_CLIENT_REFILL);
            }
        }
        let b = g
            .clients
            .entry(ip)
            .or_insert_with(|| Bucket::full(PER_CLIENT_BURST, now));
        b.refill(PER_CLIENT_BURST, PER_CLIENT_REFILL, now);
        if b.tokens < 1.0 {
            return Err(b.wait(PER_CLIENT_REFILL));
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// Records that `ip`'s attempt had a wrong PIN: it takes a token from the
    /// shared bucket. `Some(wait)` if that bucket is empty: `ip` has spent its
    /// burst too and should wait that long (for one more guess).
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
        if g.global.tokens >= 1.0 {
            g.global.tokens -= 1.0;
            return None;
        }
        if let Some(b) = g.clients.get_mut(&ip) {
            b.tokens = 0.0;
            b.at = now;
        }
        Some(PER_CLIENT_REFILL)
    }
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    Owner,
    Guest(PeerId),
}

/// The client's address (from the connection).
pub(crate) fn client_ip(parts: &Parts) -> Option<IpAddr> {
    let addr = match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(c) => c.0,
        // Set by tests in place of a real connection.
        None => parts.extensions.get::<MockConnectInfo<SocketAddr>>()?.0,
    };
    Some(addr.ip().to_canonical())
}

/// Whether `Host` names this machine by `localhost` or an IP literal (not a
/// DNS name that could have been pointed here by someone else's page).
fn host_is_literal(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The value of cookie `name` in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// The session token in the request's cookies.
fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE)
}

/// Whether the request carries the owner secret (cookie or bearer token).
fn has_owner_secret(headers: &HeaderMap, app: &App) -> bool {
    let token = app.info.owner_token.as_bytes();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same_secret(t.trim().as_bytes(), token));
    bearer
        || cookie(headers, &app.info.owner_cookie_name())
            .is_some_and(|c| same_secret(c.as_bytes(), token))
}

/// Whether the request may be the owner's at all: from this machine, for a
/// `Host` no other site can claim.
fn local_literal(parts: &Parts) -> bool {
    client_ip(parts).is_some_and(|ip| ip.is_loopback()) && host_is_literal(&parts.headers)
}

/// Who is calling, if anyone we know.
pub(crate) fn identify(parts: &Parts, app: &App) -> Option<Caller> {
    let ip = client_ip(parts)?;
    if local_literal(parts)
        && !app.info.owner_token.is_empty()
        && has_owner_secret(&parts.headers, app)
    {
        return Some(Caller::Owner);
    }
    let token = session_token(&parts.headers)?;
    app.guests.by_token(&token, ip).map(Caller::Guest)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "enter the PIN shown on the node (POST /api/login)",
    )
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        identify(parts, app).ok_or_else(unauthorized)
    }
}

/// The owner (loopback); guests get 403, others 401.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner;

impl FromRequestParts<App> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        match identify(parts, app) {
            Some(Caller::Owner) => Ok(Owner),
            Some(Caller::Guest(_)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "only the node's owner may do this",
            )),
            None => Err(unauthorized()),
        }
    }
}

/// A browser guest; the owner gets 403 (these routes are the guest's side).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guest(pub PeerId);

impl FromRequestParts<App> for Guest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        match identify(parts, app) {
            Some(Caller::Guest(id)) => Ok(Guest(id)),
            Some(Caller::Owner) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "these routes are for browser guests",
            )),
            None => Err(unauthorized()),
        }
    }
}

/// Whether a request comes from a page of this origin: `Origin` (sent by
/// browsers on every cross-origin request and every POST) must be
/// `http://<Host>`; without `Origin`, `Sec-Fetch-Site` must not say another site.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    match headers.get(header::ORIGIN) {
        Some(origin) => origin
            .to_str()
            .is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}"))),
        None => headers
            .get("sec-fetch-site")
            .is_none_or(|v| v == "same-origin" || v == "none"),
    }
}

/// Whether the browser says another site made the request (`<img>`,
/// `<script>`, a form): such a page must not even read-only use the API.
fn from_another_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

/// Middleware: refuses state-changing requests and WebSocket upgrades from
/// another origin, and any API request another site's page made (403).
pub(crate) async fn check_origin(req: Request, next: Next) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let api = req.uri().path().starts_with("/api/");
    if ((changes || upgrade) && !same_origin(req.headers()))
        || (api && from_another_site(req.headers()))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin request refused (Origin must match Host)",
        )
        .into_response();
    }
    next.run(req).await
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/owner", get(owner_link))
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
}

#[derive(Debug, Deserialize)]
pub(crate) struct OwnerLink {
    #[serde(default)]
    token: String,
}

/// `GET /owner?token=…`, the link `peerconnect up` prints: with the right
/// secret, from this machine, sets the owner cookie (HttpOnly, SameSite
/// Strict) and sends the browser to the UI; else 401.
async fn owner_link(
    State(app): State<App>,
    parts: Parts,
    axum::extract::Query(q): axum::extract::Query<OwnerLink>,
) -> ApiResult<Response> {
    let token = app.info.owner_token.as_bytes();
    if !local_literal(&parts) || token.is_empty() || !same_secret(q.token.as_bytes(), token) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this owner link is wrong or from an earlier run; use the one `peerconnect up` printed",
        ));
    }
    let cookie = format!(
        "{}; HttpOnly; SameSite=Strict; Path=/",
        app.info.owner_cookie()
    );
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(r)
}

/// Who the caller is (any caller; `role` is `none` before the PIN).
async fn session(State(app): State<App>, parts: Parts) -> ApiResult<Json<serde_json::Value>> {
    let node = app.node()?;
    let base = serde_json::json!({ "id": node.id(), "name": node.name() });
    Ok(Json(match identify(&parts, &app) {
        Some(Caller::Owner) => serde_json::json!({ "role": "owner", "node": base }),
        Some(Caller::Guest(id)) => {
            let guest = app.guests.info(&id);
            // The author name its room messages carry (its page tells its
            // own messages apart by it).
            let room_author = guest
                .as_ref()
                .map(|g| crate::proto::rooms::guest_author_name(&g.name, node.name()));
            serde_json::json!({
                "role": "guest",
                "node": base,
                "guest": guest,
                "room_author": room_author,
            })
        }
        None => serde_json::json!({ "role": "none", "node": base }),
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Login {
    pin: String,
    /// The name this device shows in the owner's peer list.
    #[serde(default)]
    name: Option<String>,
}

/// Checks the PIN and starts a guest session (sets the cookie).
async fn login(
    State(app): State<App>,
    parts: Parts,
    Json(req): Json<Login>,
) -> ApiResult<Response> {
    let ip = client_ip(&parts).ok_or_else(unauthorized)?;
    let now = Instant::now();
    let too_many = |wait: Duration, what: &str| {
        let secs = wait.as_secs().max(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{what}; try again in {secs} s"),
        );
        e.retry_after = Some(secs);
        e
    };
    app.limiter
        .attempt(ip, now)
        .map_err(|wait| too_many(wait, "too many PIN attempts"))?;
    if !same_secret(req.pin.trim().as_bytes(), app.info.pin.as_bytes()) {
        return Err(match app.limiter.failed(ip, now) {
            None => ApiError::new(StatusCode::UNAUTHORIZED, "wrong PIN"),
            Some(wait) => too_many(wait, "wrong PIN, and too many wrong PINs on this node"),
        });
    }
    let name = req.name.unwrap_or_default();
    let (token, peer) = app.guests.login(ip, &name).map_err(|e| match e {
        super::guests::LoginError::Blocked => {
            ApiError::new(StatusCode::FORBIDDEN, "this device is blocked by the owner")
        }
        super::guests::LoginError::Full(n) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{n} browser guests are logged in already; try later"),
        ),
    })?;
    if let Ok(node) = app.node() {
        super::guests::remember(&node, &peer);
    }
    app.emit(crate::Event::PeerFound { peer: peer.clone() });
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        app.options.session_idle.as_secs()
    );
    let mut r = Json(serde_json::json!({ "role": "guest", "guest": peer })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// Ends the caller's guest session.
async fn logout(State(app): State<App>, Guest(id): Guest) -> Response {
    if app.guests.remove(&id) {
        app.guest_left(id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pc_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_gets_a_burst_then_one_attempt_per_refill() {
        let l = Limiter::default();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..PER_CLIENT_BURST as usize {
            l.attempt(ip, t0).unwrap();
        }
        let wait = l.attempt(ip, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= PER_CLIENT_REFILL);
        // Another client is not affected.
        l.attempt("10.0.0.3".parse().unwrap(), t0).unwrap();
        // One refill period later: exactly one more attempt.
        let t1 = t0 + PER_CLIENT_REFILL;
        l.attempt(ip, t1).unwrap();
        assert!(l.attempt(ip, t1).is_err());
    }

    #[test]
    fn once_the_global_budget_is_spent_each_address_loses_its_burst() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..GLOBAL_BURST as u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.attempt(ip, t0).unwrap();
            assert_eq!(l.failed(ip, t0), None);
        }
        // A fresh address may still try (its PIN may be right) ...
        let fresh: IpAddr = "10.9.9.9".parse().unwrap();
        l.attempt(fresh, t0).unwrap();
        // ... but a wrong guess now costs it its whole burst.
        assert_eq!(l.failed(fresh, t0), Some(PER_CLIENT_REFILL));
        assert!(l.attempt(fresh, t0).is_err());
        l.attempt(fresh, t0 + PER_CLIENT_REFILL).unwrap();
        // The shared bucket refills too.
        assert_eq!(l.failed(fresh, t0 + 2 * GLOBAL_REFILL), None);
    }

    #[test]
    fn host_literal_rule_refuses_dns_names() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, v.parse().unwrap());
            host_is_literal(&m)
        };
        assert!(h("127.0.0.1:47480"));
        assert!(h("localhost:8080"));
        assert!(h("[::1]:47480"));
        assert!(!h("evil.example:47480"));
        assert!(!h("127.0.0.1.nip.io"));
    }

    #[test]
    fn pins_are_six_digits_and_compared_whole() {
        let p = new_pin();
        assert_eq!(p.len(), 6);
        assert!(p.bytes().all(|b| b.is_ascii_digit()));
        assert!(same_secret(b"123456", b"123456"));
        assert!(!same_secret(b"123456", b"123457"));
        assert!(!same_secret(b"12345", b"123456"));
    }

    #[test]
    fn origin_must_match_host() {
        let mk = |origin: Option<&str>, site: Option<&str>| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, "10.0.0.1:47480".parse().unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, o.parse().unwrap());
            }
            if let Some(s) = site {
                m.insert("sec-fetch-site", s.parse().unwrap());
            }
            same_origin(&m)
        };
        assert!(mk(Some("http://10.0.0.1:47480"), None));
        assert!(!mk(Some("http://evil.example"), None));
        assert!(!mk(Some("null"), None));
        assert!(mk(None, None)); // curl, scripts
        assert!(mk(None, Some("same-origin")));
        assert!(!mk(None, Some("cross-site")));
    }
}
