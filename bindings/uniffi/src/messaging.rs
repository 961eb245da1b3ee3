//! Direct messages: send, read a conversation, mark read.
//!
//! Delivery (outbox, retries, receipts) is the core's; follow a sent message
//! with `Event::MessageStatus`, receive with `Event::MessageReceived`.

use peerconnect::proto::messaging::{MessageId, MessageInfo, Status};

use crate::error::ApiError;
use crate::node::PeerConnect;

/// A direct message, sent or received.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Message {
    /// 26 characters, time-ordered.
    pub id: String,
    pub sender: String,
    pub recipient: String,
    /// Whether this node sent it.
    pub outgoing: bool,
    /// The sender's clock when it was sent (ms since the Unix epoch).
    pub sent_ms: u64,
    pub text: String,
    pub reply_to: Option<String>,
    pub status: DeliveryStatus,
}

/// Where a message is on its way; only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum DeliveryStatus {
    /// Stored, waiting for a session to the peer.
    Pending,
    /// Written to a session; not acknowledged yet.
    Sent,
    /// The receiver has stored it.
    Delivered,
    /// The receiving user has seen it.
    Read,
}

impl From<Status> for DeliveryStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => Self::Pending,
            Status::Sent => Self::Sent,
            Status::Delivered => Self::Delivered,
            Status::Read => Self::Read,
        }
    }
}

impl From<MessageInfo> for Message {
    fn from(m: MessageInfo) -> Self {
        Self {
            id: m.id.to_string(),
            sender: m.from.to_string(),
            recipient: m.to.to_string(),
            outgoing: m.outgoing,
            sent_ms: m.sent_ms,
            text: m.text,
            reply_to: m.reply_to.map(|id| id.to_string()),
            status: m.status.into(),
        }
    }
}

fn message_id(id: &str) -> Result<MessageId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::Invalid(format!("message id {id:?}: {e}")))
}

#[uniffi::export(async_runtime = "tokio")]
impl PeerConnect {
    /// Sends `text` to `peer`; it is stored as pending at once and delivered,
    /// in order and exactly once, when a session to the peer is up (also after
    /// restarts). `Invalid` if the text is over 64 KiB or the peer is blocked.
    pub async fn send_message(&self, peer: String, text: String) -> Result<Message, ApiError> {
        let peer = self.peer(&peer).await?;
        Ok(self.node.send_message(peer, text, None).await?.into())
    }

    /// Up to `limit` messages with `peer` older than `before` (a message id),
    /// or the newest ones without it; oldest first.
    pub async fn conversation(
        &self,
        peer: String,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<Message>, ApiError> {
        let peer = self.peer(&peer).await?;
        let before = before.as_deref().map(message_id).transpose()?;
        let page = self.node.conversation(peer, before, limit as usize)?;
        Ok(page.into_iter().map(Message::from).collect())
    }

    /// Marks `peer`'s messages up to `up_to` read and tells the peer; returns
    /// how many were newly marked.
    pub async fn mark_read(&self, peer: String, up_to: String) -> Result<u64, ApiError> {
        let peer = self.peer(&peer).await?;
        Ok(self.node.mark_read(peer, message_id(&up_to)?).await? as u64)
    }
}
