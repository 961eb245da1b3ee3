//! Browser guests' routes: devices with no app that entered the PIN. Each is
//! a peer of kind `browser` with a random id, held by the node's registry
//! ([`crate::net::guest`], so [`Node::peers`] lists it) and remembered in the
//! store so its conversation keeps a name.
//!
//! Events: `peer_found` at login, `peer_connected` when its first WebSocket
//! opens, `peer_disconnected` when its last one closes, `peer_updated` on a
//! trust change, `peer_lost` at logout, expiry or block.
//!
//! A guest's chat with the owner is stored like any direct conversation (the
//! messages table): a guest's message is an incoming message (delivered), a
//! message to a guest is delivered once stored, since the guest reads it from
//! this node; `read` when the guest's page shows it. The guest's routes show
//! messages from the guest's side (`outgoing`: written by the guest).

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::Guest;
use super::{ApiError, ApiResult, App};
use crate::event::{Event, PeerInfo};
use crate::identity::PeerId;
pub(crate) use crate::net::guest::{Guests, LoginError, clean_name};
use crate::node::Node;
use crate::proto::messaging::{self, Envelope, MessageId, MessageInfo, Status};
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

/// Stores a message a guest wrote to the owner and announces it.
pub(crate) fn guest_says(
    app: &App,
    node: &Node,
    guest: PeerId,
    text: String,
    reply_to: Option<MessageId>,
) -> ApiResult<MessageInfo> {
    messaging::check_text(&text).map_err(crate::Error::from)?;
    let e = Envelope {
        id: app.guests.next_message_id(),
        sent_ms: now_ms(),
        text,
        reply_to,
    };
    node.store()
        .insert_incoming(&[(guest, e.clone())], now_ms())?;
    let message = MessageInfo {
        id: e.id,
        from: guest,
        to: app.me,
        outgoing: false,
        sent_ms: e.sent_ms,
        text: e.text,
        reply_to: e.reply_to,
        status: Status::Delivered,
    };
    app.emit(Event::MessageReceived {
        message: message.clone(),
    });
    Ok(message)
}

/// Stores a message from the owner to a guest: delivered at once, since the
/// guest reads it from this node.
pub(crate) fn say_to_guest(
    app: &App,
    node: &Node,
    guest: PeerId,
    text: String,
    reply_to: Option<MessageId>,
) -> ApiResult<MessageInfo> {
    messaging::check_text(&text).map_err(crate::Error::from)?;
    let e = Envelope {
        id: app.guests.next_message_id(),
        sent_ms: now_ms(),
        text,
        reply_to,
    };
    let store = node.store();
    store.insert_outgoing(&guest, &e, now_ms())?;
    store.set_outgoing_status(&guest, &[e.id], Status::Delivered)?;
    app.emit(Event::MessageStatus {
        id: e.id,
        peer: guest,
        status: Status::Delivered,
    });
    Ok(MessageInfo {
        id: e.id,
        from: app.me,
        to: guest,
        outgoing: true,
        sent_ms: e.sent_ms,
        text: e.text,
        reply_to: e.reply_to,
        status: Status::Delivered,
    })
}

/// The owner read a guest's messages up to `up_to`.
pub(crate) fn owner_read(node: &Node, guest: PeerId, up_to: MessageId) -> ApiResult<usize> {
    let store = node.store();
    let n = store
        .mark_incoming_read(&guest, &up_to)?
        .ok_or_else(|| ApiError::not_found(format!("no message {up_to} from this guest")))?;
    // A guest takes no receipts: they would wait forever for a session.
    let owed: Vec<u64> = store
        .owed_receipts(&guest, usize::MAX >> 1)?
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    store.clear_receipts(&owed)?;
    Ok(n)
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
    let node = app.node()?;
    let m = guest_says(&app, &node, id, s.text, s.reply_to)?;
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
    let node = app.node()?;
    let page = node.conversation(id, None, crate::net::messaging::MAX_HISTORY_PAGE)?;
    let Some(end) = page.iter().position(|m| m.id == r.up_to) else {
        return Err(ApiError::not_found(format!("no message {}", r.up_to)));
    };
    let ids: Vec<MessageId> = page[..=end]
        .iter()
        .filter(|m| m.outgoing && m.status < Status::Read)
        .map(|m| m.id)
        .collect();
    let changed = node.store().set_outgoing_status(&id, &ids, Status::Read)?;
    for m in &changed {
        app.emit(Event::MessageStatus {
            id: *m,
            peer: id,
            status: Status::Read,
        });
    }
    Ok(Json(serde_json::json!({ "marked": changed.len() })))
}
