//! Direct messages: the [`Node`] methods over the messaging service
//! ([`crate::net::messaging`]) and the store.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::Node;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::identity::PeerId;
use crate::net::messaging::{MAX_HISTORY_PAGE, MessagingStats};
use crate::proto::messaging::{self, Conversation, MessageId, MessageInfo, Status};
use crate::proto::wire::DeviceKind;
use crate::store::MessageCounts;

/// Is a peer one that reads through this node?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// A browser guest logged in now.
    Guest,
    /// A browser guest whose session ended.
    Gone,
    /// A LocalSend device listed now (messages go as text shares).
    Device,
    /// A peer with sessions of its own.
    No,
}

/// Direct messages.
impl Node {
    /// Sends `text` to `peer`. The message is stored as pending before this
    /// returns and is delivered (in order, exactly once) as soon as a session to
    /// the peer is up: now if it is connected or can be dialed at a known
    /// address, otherwise when it is seen again, also after restarts. Follow its
    /// progress with [`Event::MessageStatus`].
    ///
    /// A browser guest ([`DeviceKind::Browser`]) reads its messages from this
    /// node: a message to one is `delivered` once stored; to a guest that has
    /// left it fails ([`messaging::Error::GuestLeft`]).
    ///
    /// Fails, storing nothing, if the text is over 64 KiB, the peer is this node
    /// or is blocked.
    pub async fn send_message(
        &self,
        peer: PeerId,
        text: impl Into<String>,
        reply_to: Option<MessageId>,
    ) -> Result<MessageInfo> {
        match self.local_peer(&peer)? {
            Local::Guest => {
                self.messaging()
                    .send_local(peer, text.into(), reply_to)
                    .await
            }
            Local::Device => {
                let text = text.into();
                let devices = self.localsend_devices();
                let (Some(out), Some(to)) = (devices.outbound(), devices.target(&peer)) else {
                    return Err(crate::Error::Invalid(
                        "LocalSend does not run on this node, or the device is gone".into(),
                    ));
                };
                messaging::check_text(&text)?;
                crate::localsend::send::text(&out, &to, &text)
                    .await
                    .map_err(crate::Error::Invalid)?;
                self.messaging().send_local(peer, text, reply_to).await
            }
            Local::Gone => Err(messaging::Error::GuestLeft(peer.short()).into()),
            Local::No => self.messaging().send(peer, text.into(), reply_to).await,
        }
    }

    /// Whether `peer` is a browser guest (logged in, or gone).
    fn local_peer(&self, peer: &PeerId) -> Result<Local> {
        if self.guests().is_guest(peer) {
            return Ok(Local::Guest);
        }
        if self.localsend_devices().is_device(peer) {
            return Ok(Local::Device);
        }
        let browser = self
            .store()
            .peer(peer)?
            .is_some_and(|p| p.kind == DeviceKind::Browser);
        Ok(if browser { Local::Gone } else { Local::No })
    }

    /// Stores a message the logged-in browser guest `guest` wrote to this
    /// node's owner (received, with an id of the messaging service's) and
    /// emits [`Event::MessageReceived`].
    pub(crate) async fn guest_message(
        &self,
        guest: PeerId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<MessageInfo> {
        self.messaging().receive_local(guest, text, reply_to).await
    }

    /// The browser guest `guest` has seen the owner's messages up to `up_to`:
    /// they are `read` (emitted as [`Event::MessageStatus`]).
    pub(crate) async fn guest_read(&self, guest: PeerId, up_to: MessageId) -> Result<usize> {
        self.messaging().local_peer_read(guest, up_to).await
    }

    /// [`send_message`](Self::send_message), then waits up to `wait` for the
    /// peer to acknowledge it. Returns the message and its status at the end
    /// (`Delivered` or `Read` if it arrived in time).
    pub async fn send_message_and_wait(
        &self,
        peer: PeerId,
        text: impl Into<String>,
        reply_to: Option<MessageId>,
        wait: Duration,
    ) -> Result<(MessageInfo, Status)> {
        let mut events = self.subscribe_events();
        let info = self.send_message(peer, text, reply_to).await?;
        let deadline = Instant::now() + wait;
        loop {
            let status = self
                .store()
                .message(&self.id(), &peer, &info.id)?
                .map_or(Status::Pending, |m| m.status);
            if status >= Status::Delivered {
                return Ok((info, status));
            }
            // Re-read the store on every status event of ours (and after a lag).
            let ours = async {
                loop {
                    match events.recv().await {
                        Ok(Event::MessageStatus { id, .. }) if id == info.id => return true,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return true,
                        Err(broadcast::error::RecvError::Closed) => return false,
                    }
                }
            };
            match tokio::time::timeout_at(deadline, ours).await {
                Ok(true) => continue,
                Ok(false) => return Err(Error::Shutdown),
                Err(_) => return Ok((info, status)),
            }
        }
    }

    /// A page of the conversation with `peer`: up to `limit` (at most
    /// [`MAX_HISTORY_PAGE`]) messages older than `before`, or the newest ones
    /// if `before` is `None`; oldest first, so the newest page is the last.
    pub fn conversation(
        &self,
        peer: PeerId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<MessageInfo>> {
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        self.store()
            .conversation(&self.id(), &peer, before.as_ref(), limit)?
            .ok_or_else(|| {
                let id = before.expect("only an unknown `before` finds nothing");
                messaging::Error::UnknownMessage(id, peer.short()).into()
            })
    }

    /// Every conversation, the most recently active first, with its last
    /// message and unread count.
    pub fn conversations(&self) -> Result<Vec<Conversation>> {
        Ok(self.store().conversations(&self.id())?)
    }

    /// Marks the messages from `peer` up to and including `up_to` read and sends
    /// the peer read receipts (now, or when it is next connected). Returns how
    /// many messages were newly marked.
    /// A browser guest takes no receipts.
    pub async fn mark_read(&self, peer: PeerId, up_to: MessageId) -> Result<usize> {
        let local = self.local_peer(&peer)? != Local::No;
        self.messaging().mark_read(peer, up_to, local).await
    }

    /// How many messages the conversation with `peer` holds.
    pub fn message_counts(&self, peer: PeerId) -> Result<MessageCounts> {
        Ok(self.store().message_counts(&peer)?)
    }

    /// The messaging service's counters and bounds.
    pub async fn messaging_stats(&self) -> Result<MessagingStats> {
        self.messaging().stats().await
    }
}
