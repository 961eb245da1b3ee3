//! The owner's REST API: the node, peers (live, remembered and browser
//! guests), trust, dialing, settings and direct messages. Each handler is a
//! few lines over the [`Node`] API; guest peers go to [`super::guests`].

use std::path::PathBuf;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::Owner;
use super::guests::{Page, Read, Say};
use super::{ApiError, ApiResult, App, parse_peer};
use crate::event::{PeerInfo, Trust};
use crate::identity::verification_code;
use crate::proto::messaging::{Conversation, MessageInfo};
use crate::proto::wire::DeviceKind;
use crate::store::SavedSettings;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/api/node", get(node_info))
        .route("/api/qr.svg", get(qr))
        .route("/api/peers", get(peers))
        .route("/api/peers/{id}/trust", post(set_trust))
        .route("/api/connect", post(connect))
        .route("/api/settings", get(settings).put(save_settings))
        .route("/api/conversations", get(conversations))
        .route("/api/messages/{peer}", get(history).post(send))
        .route("/api/messages/{peer}/read", post(read))
}

/// This node, its web addresses and the guests' PIN.
async fn node_info(State(app): State<App>, _: Owner) -> ApiResult<Json<serde_json::Value>> {
    let node = app.node()?;
    Ok(Json(serde_json::json!({
        "id": node.id(),
        "name": node.name(),
        "addrs": node.listen_addrs(),
        "web": app.info,
    })))
}

/// A QR code (SVG) of the LAN URL carrying the PIN, for a phone to scan off
/// the owner's screen.
async fn qr(State(app): State<App>, _: Owner) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let link = format!("{}#pin={}", app.info.url, app.info.pin);
    let code = qrcode::QrCode::new(link.as_bytes())
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(180, 180)
        .quiet_zone(true)
        .build();
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

/// A peer as the UI lists it.
#[derive(Debug, Serialize)]
struct PeerView {
    #[serde(flatten)]
    peer: PeerInfo,
    /// Seen now (discovered, connected or a logged-in guest), as opposed to
    /// only remembered from before.
    online: bool,
}

/// Live peers, logged-in guests, then peers remembered from before.
async fn peers(State(app): State<App>, _: Owner) -> ApiResult<Json<Vec<PeerView>>> {
    let node = app.node()?;
    let mut out: Vec<PeerView> = node
        .peers()
        .await?
        .into_iter()
        .map(|peer| PeerView { peer, online: true })
        .collect();
    for p in node.known_peers()? {
        if out.iter().any(|v| v.peer.id == p.id) {
            continue;
        }
        // Guests of earlier sessions are gone for good; keep them only if a
        // conversation or a block makes them worth showing (the chat view
        // lists conversations itself).
        if p.kind == DeviceKind::Browser && p.trust != Trust::Blocked {
            continue;
        }
        out.push(PeerView {
            peer: PeerInfo {
                verification_code: verification_code(&node.id(), &p.id),
                id: p.id,
                name: p.name,
                kind: p.kind,
                addrs: p.addrs,
                trust: p.trust,
                connected: false,
                localsend: None,
            },
            online: false,
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SetTrust {
    trust: Trust,
}

/// Trusts, blocks or resets a peer or a browser guest.
async fn set_trust(
    State(app): State<App>,
    _: Owner,
    Path(id): Path<String>,
    Json(req): Json<SetTrust>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_peer(&id)?;
    let node = app.node()?;
    // A blocked guest's session and transfers end in the node.
    node.set_trust(id, req.trust).await?;
    Ok(Json(serde_json::json!({ "id": id, "trust": req.trust })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Connect {
    /// `HOST:PORT`, a PeerId, a unique prefix or a device name.
    peer: String,
}

/// Dials a peer (for networks where discovery finds nobody).
async fn connect(
    State(app): State<App>,
    _: Owner,
    Json(req): Json<Connect>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = app
        .node()?
        .resolve_peer(&req.peer, std::time::Duration::ZERO)
        .await?;
    Ok(Json(serde_json::json!({ "id": id })))
}

/// The settings in force and the ones saved for the next start.
#[derive(Debug, Serialize)]
struct SettingsView {
    name: String,
    downloads: PathBuf,
    auto_accept_trusted: bool,
    /// Settings saved but not in force until the node restarts.
    restart_needed: Vec<&'static str>,
}

async fn settings(State(app): State<App>, _: Owner) -> ApiResult<Json<SettingsView>> {
    Ok(Json(settings_view(&app)?))
}

fn settings_view(app: &App) -> ApiResult<SettingsView> {
    let node = app.node()?;
    let saved = node.store().saved_settings()?;
    let running = node.config();
    let mut restart_needed = Vec::new();
    let name = saved
        .name
        .clone()
        .unwrap_or_else(|| node.name().to_string());
    if name != node.name() {
        restart_needed.push("name");
    }
    let downloads = saved.downloads.clone().unwrap_or(running.downloads.clone());
    if downloads != running.downloads {
        restart_needed.push("downloads");
    }
    let auto = saved
        .auto_accept_trusted
        .unwrap_or(running.auto_accept_trusted);
    if auto != running.auto_accept_trusted {
        restart_needed.push("auto_accept_trusted");
    }
    Ok(SettingsView {
        name,
        downloads,
        auto_accept_trusted: auto,
        restart_needed,
    })
}

/// Saves settings (the fields given); see `restart_needed` in the answer.
async fn save_settings(
    State(app): State<App>,
    _: Owner,
    Json(mut s): Json<SavedSettings>,
) -> ApiResult<Json<SettingsView>> {
    if let Some(n) = &s.name {
        let n = crate::proto::wire::truncate_name(n.trim());
        if n.is_empty() {
            return Err(ApiError::bad_request("the device name must not be empty"));
        }
        s.name = Some(n);
    }
    if let Some(d) = &s.downloads {
        if !d.is_absolute() {
            return Err(ApiError::bad_request(
                "the download folder must be an absolute path",
            ));
        }
        std::fs::create_dir_all(d)
            .map_err(|e| ApiError::bad_request(format!("cannot create {}: {e}", d.display())))?;
    }
    let node = app.node()?;
    node.store().save_settings(&s)?;
    Ok(Json(settings_view(&app)?))
}

/// Every conversation, the most recent first (guests' names filled in).
async fn conversations(State(app): State<App>, _: Owner) -> ApiResult<Json<Vec<Conversation>>> {
    let mut list = app.node()?.conversations()?;
    for c in &mut list {
        if let Some(g) = app.guests.info(&c.peer) {
            c.name = g.name;
        }
    }
    Ok(Json(list))
}

async fn history(
    State(app): State<App>,
    _: Owner,
    Path(peer): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Vec<MessageInfo>>> {
    let peer = parse_peer(&peer)?;
    Ok(Json(app.node()?.conversation(peer, p.before, p.limit)?))
}

/// Sends a direct message to a peer or a browser guest.
async fn send(
    State(app): State<App>,
    _: Owner,
    Path(peer): Path<String>,
    Json(s): Json<Say>,
) -> ApiResult<Json<MessageInfo>> {
    let peer = parse_peer(&peer)?;
    Ok(Json(
        app.node()?.send_message(peer, s.text, s.reply_to).await?,
    ))
}

/// Marks a conversation read up to a message (sends read receipts to peers).
async fn read(
    State(app): State<App>,
    _: Owner,
    Path(peer): Path<String>,
    Json(r): Json<Read>,
) -> ApiResult<Json<serde_json::Value>> {
    let peer = parse_peer(&peer)?;
    let n = app.node()?.mark_read(peer, r.up_to).await?;
    Ok(Json(serde_json::json!({ "marked": n })))
}
