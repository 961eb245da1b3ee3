//! The rooms API: rooms joined, join and leave, a room's stored messages and
//! saying something in it; for the owner (`/api/rooms`) and for browser
//! guests (`/api/guest/rooms`: the node takes part for them, see
//! [`crate::rooms`]). Each handler is a few lines over the
//! [`Node`](crate::Node) room calls; live messages reach the page as
//! `room_message` events on the WebSocket (a guest's, only for its rooms).

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::{Guest, Owner};
use super::{ApiResult, App};
use crate::proto::rooms::{RoomMessage, RoomMessageId};
use crate::rooms::{GuestRoom, RoomInfo};

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/api/rooms", get(list).post(join))
        .route("/api/rooms/{room}/leave", post(leave))
        .route("/api/rooms/{room}/messages", get(history).post(say))
        .route("/api/guest/rooms", get(guest_list).post(guest_join))
        .route("/api/guest/rooms/{room}/leave", post(guest_leave))
        .route(
            "/api/guest/rooms/{room}/messages",
            get(guest_history).post(guest_say),
        )
}

#[derive(Debug, Deserialize)]
pub(crate) struct Join {
    name: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    #[serde(default)]
    before: Option<RoomMessageId>,
    #[serde(default = "default_page")]
    limit: usize,
}

fn default_page() -> usize {
    100
}

#[derive(Debug, Deserialize)]
pub(crate) struct Say {
    text: String,
}

/// Rooms this node is in, with their neighbour counts.
async fn list(State(app): State<App>, _: Owner) -> ApiResult<Json<Vec<RoomInfo>>> {
    Ok(Json(app.node()?.rooms().await?))
}

/// Joins a room (no-op if already in it); answers the room list.
async fn join(
    State(app): State<App>,
    _: Owner,
    Json(j): Json<Join>,
) -> ApiResult<Json<Vec<RoomInfo>>> {
    let node = app.node()?;
    node.join_room(j.name.trim()).await?;
    Ok(Json(node.rooms().await?))
}

async fn leave(
    State(app): State<App>,
    _: Owner,
    Path(room): Path<String>,
) -> ApiResult<Json<Vec<RoomInfo>>> {
    let node = app.node()?;
    node.leave_room(&room).await?;
    Ok(Json(node.rooms().await?))
}

/// Stored messages of a room, oldest first (at most `limit`, before `before`).
async fn history(
    State(app): State<App>,
    _: Owner,
    Path(room): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Vec<RoomMessage>>> {
    let limit = p.limit.clamp(1, 1000);
    Ok(Json(app.node()?.room_history(&room, p.before, limit)?))
}

/// Says `text` in a room this node is in; answers the signed message.
async fn say(
    State(app): State<App>,
    _: Owner,
    Path(room): Path<String>,
    Json(s): Json<Say>,
) -> ApiResult<Json<RoomMessage>> {
    Ok(Json(app.node()?.room_say(&room, &s.text).await?))
}

/// The rooms the node is in, with whether the guest joined each.
async fn guest_list(State(app): State<App>, Guest(id): Guest) -> ApiResult<Json<Vec<GuestRoom>>> {
    Ok(Json(app.node()?.guest_rooms(id).await?))
}

/// The guest joins a room; answers its room list.
async fn guest_join(
    State(app): State<App>,
    Guest(id): Guest,
    Json(j): Json<Join>,
) -> ApiResult<Json<Vec<GuestRoom>>> {
    let node = app.node()?;
    node.guest_join_room(id, j.name.trim()).await?;
    Ok(Json(node.guest_rooms(id).await?))
}

async fn guest_leave(
    State(app): State<App>,
    Guest(id): Guest,
    Path(room): Path<String>,
) -> ApiResult<Json<Vec<GuestRoom>>> {
    let node = app.node()?;
    node.guest_leave_room(id, &room).await?;
    Ok(Json(node.guest_rooms(id).await?))
}

/// Stored messages of a room the guest is in, oldest first.
async fn guest_history(
    State(app): State<App>,
    Guest(id): Guest,
    Path(room): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Vec<RoomMessage>>> {
    let limit = p.limit.clamp(1, 1000);
    Ok(Json(
        app.node()?.guest_room_history(id, &room, p.before, limit)?,
    ))
}

/// The node says `text` for the guest in a room the guest is in.
async fn guest_say(
    State(app): State<App>,
    Guest(id): Guest,
    Path(room): Path<String>,
    Json(s): Json<Say>,
) -> ApiResult<Json<RoomMessage>> {
    Ok(Json(app.node()?.guest_room_say(id, &room, &s.text).await?))
}
