//! Browser guests' routes: devices with no app that entered the PIN. Each is
//! a peer of kind `browser` with a random id, held by the node's registry
//! ([`crate::net::guest`], so [`Node::peers`] lists it) and remembered in the
//! store so its conversation keeps a name.
//!
//! Events: `peer_found` at login, `peer_connected` when its first WebSocket
//! opens, `peer_disconnected` when its last one closes, `peer_updated` on a
//! trust change, `peer_lost` at logout, expiry or block.
//!
//! A guest's chat with the owner is the messaging service's (the node's
//! `send_message`, `guest_message`, `guest_read`: see
//! [`crate::net::messaging`] on local peers); these routes only show it from
//! the guest's side (`outgoing`: written by the guest).

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::Guest;
use super::{ApiResult, App};
use crate::event::PeerInfo;
use crate::identity::PeerId;
pub(crate) use crate::net::guest::{Guests, LoginError, clean_name};
use crate::node::Node;
use crate::proto::messaging::{MessageId, MessageInfo};
use crate::proto::wire::DeviceKind;
use crate::store::now_ms;

/// How often expired sessions are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Remembers a guest in the store (so its conversation keeps its name after
/// the session ends). It has no address, so nothing ever dials it.
pub(crate) fn remember(node: &Node, peer: &PeerInfo) {
    if let Err(e) =
        node.store()
            .upsert_peer(&peer.id, &peer.name, DeviceKind::Browser, &[], now_ms())
    {
        tracing::warn!(error = %e, "cannot remember a browser guest");
    }
}

/// Ends idle sessions every [`SWEEP_EVERY`].
pub(crate) fn spawn_sweeper(app: App) -> tokio::task::JoinHandle<()> {
    let weak = std::sync::Arc::downgrade(&app);
    drop(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { return };
            for id in app.guests.expire(Instant::now()) {
                app.guest_left(id);
            }
        }
    })
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/api/guest", get(me))
        .route("/api/guest/messages", get(history).post(say))
        .route("/api/guest/read", post(read))
}

/// The guest's own entry and the node it talks to.
async fn me(State(app): State<App>, Guest(id): Guest) -> ApiResult<Json<serde_json::Value>> {
    let node = app.node()?;
    Ok(Json(serde_json::json!({
        "guest": app.guests.info(&id),
        "node": { "id": node.id(), "name": node.name() },
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    #[serde(default)]
    pub before: Option<MessageId>,
    #[serde(default = "default_page")]
    pub limit: usize,
}

fn default_page() -> usize {
    100
}

/// A message as the guest sees it: `outgoing` means sent by the guest.
fn guest_view(mut m: MessageInfo, guest: &PeerId) -> MessageInfo {
    m.outgoing = m.from == *guest;
    m
}

/// The guest's conversation with the owner, oldest first.
async fn history(
    State(app): State<App>,
    Guest(id): Guest,
    Query(p): Query<Page>,
) -> ApiResult<Json<Vec<MessageInfo>>> {
    let page = app.node()?.conversation(id, p.before, p.limit)?;
    Ok(Json(page.into_iter().map(|m| guest_view(m, &id)).collect()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Say {
    pub text: String,
    #[serde(default)]
    pub reply_to: Option<MessageId>,
}

async fn say(
    State(app): State<App>,
    Guest(id): Guest,
    Json(s): Json<Say>,
) -> ApiResult<Json<MessageInfo>> {
    let m = app.node()?.guest_message(id, s.text, s.reply_to).await?;
    Ok(Json(guest_view(m, &id)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Read {
    pub up_to: MessageId,
}

/// The guest's page showed the owner's messages up to `up_to`.
async fn read(
    State(app): State<App>,
    Guest(id): Guest,
    Json(r): Json<Read>,
) -> ApiResult<Json<serde_json::Value>> {
    let n = app.node()?.guest_read(id, r.up_to).await?;
    Ok(Json(serde_json::json!({ "marked": n })))
}
