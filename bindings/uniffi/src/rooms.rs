//! Rooms: group chat for everyone on the LAN who joins the same name.
//!
//! Membership, gossip and signatures are the core's ([`peerconnect::rooms`]).
//! Messages of joined rooms, ours included, arrive as `Event::RoomMessage`.

use std::time::Duration;

use peerconnect::proto::rooms::RoomMessageId;

use crate::error::ApiError;
use crate::event::strings;
use crate::node::PeerConnect;

/// A message in a room; its author's signature was checked.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RoomMessage {
    /// 32 hex digits.
    pub id: String,
    pub room: String,
    /// The author's PeerId.
    pub author: String,
    /// The author's device name when it wrote the message.
    pub author_name: String,
    pub text: String,
    /// The author's clock (ms since the Unix epoch); history is in arrival
    /// order, not by this.
    pub time_ms: u64,
}

/// A joined room.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RoomInfo {
    pub name: String,
    /// Neighbours in the room's overlay that proved they are members.
    pub neighbors: u64,
}

/// What [`PeerConnect::room_say_and_wait`] reports.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RoomSaid {
    pub message: RoomMessage,
    /// Neighbours (PeerIds) that had read the message when the call returned.
    pub reached: Vec<String>,
}

impl From<peerconnect::RoomMessage> for RoomMessage {
    fn from(m: peerconnect::RoomMessage) -> Self {
        Self {
            id: m.id.to_string(),
            room: m.room,
            author: m.author.to_string(),
            author_name: m.author_name,
            text: m.text,
            time_ms: m.time_ms,
        }
    }
}

impl From<peerconnect::rooms::RoomInfo> for RoomInfo {
    fn from(r: peerconnect::rooms::RoomInfo) -> Self {
        Self {
            name: r.name,
            neighbors: r.neighbors as u64,
        }
    }
}

fn room_message_id(id: &str) -> Result<RoomMessageId, ApiError> {
    id.parse().map_err(ApiError::Invalid)
}

#[uniffi::export(async_runtime = "tokio")]
impl PeerConnect {
    /// Joins room `name` (no-op if already in it), bootstrapping from the
    /// peers this node knows; `RoomJoined` follows.
    pub async fn join_room(&self, name: String) -> Result<(), ApiError> {
        Ok(self.node.join_room(&name).await?)
    }

    /// Leaves room `name` (no-op if not in it); `RoomLeft` follows.
    pub async fn leave_room(&self, name: String) -> Result<(), ApiError> {
        Ok(self.node.leave_room(&name).await?)
    }

    /// Signs `text` and sends it to everyone in room `name` (joined first).
    /// `Invalid` for a text over 16 KiB or a room not joined.
    pub async fn room_say(&self, name: String, text: String) -> Result<RoomMessage, ApiError> {
        Ok(self.node.room_say(&name, &text).await?.into())
    }

    /// Like [`PeerConnect::room_say`], but first waits up to `wait_ms` for a
    /// neighbour in the room and returns once the neighbours read it (or the
    /// wait is over). For a sender about to shut down.
    pub async fn room_say_and_wait(
        &self,
        name: String,
        text: String,
        wait_ms: u64,
    ) -> Result<RoomSaid, ApiError> {
        let said = self
            .node
            .room_say_and_wait(&name, &text, Duration::from_millis(wait_ms))
            .await?;
        Ok(RoomSaid {
            message: said.message.into(),
            reached: strings(&said.reached),
        })
    }

    /// Up to `limit` (at most 1000) stored messages of room `name` older than
    /// `before` (a message id), or the latest without it; oldest first.
    pub fn room_history(
        &self,
        name: String,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<RoomMessage>, ApiError> {
        let before = before.as_deref().map(room_message_id).transpose()?;
        let page = self.node.room_history(&name, before, limit as usize)?;
        Ok(page.into_iter().map(RoomMessage::from).collect())
    }

    /// Rooms joined, with their neighbour counts.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, ApiError> {
        Ok(self
            .node
            .rooms()
            .await?
            .into_iter()
            .map(RoomInfo::from)
            .collect())
    }
}
