//! Rooms for browser guests. A guest is not a gossip node: the node takes
//! part in the room for it.
//!
//! - **Membership.** A guest joining a room the node is not in makes the node
//!   join it (the same join as the owner's). The node leaves when its last
//!   guest left the room, unless the owner had joined it itself; the owner
//!   leaving a room that guests are still in keeps the node in it for them.
//!   A guest whose session ends (logout, expiry, block) leaves all its rooms.
//!   The node's room list ([`Node::rooms`]) shows every room it is in, also
//!   those it is in only for guests; a guest's list shows the same rooms,
//!   marked with whether that guest joined each.
//! - **Messages.** What a guest says is published by the node: author and
//!   signer are the node (so signatures and their checks are unchanged, and
//!   readers know which device vouches for it), the author name is
//!   `"NAME (guest via NODE)"` ([`rooms::guest_author_name`]). Text is bound
//!   like the owner's ([`rooms::MAX_TEXT_LEN`]); the owner's say has no rate
//!   limit and neither has a guest's.
//! - **Reading.** A guest reads the history of, and is sent live messages
//!   from, only the rooms it joined ([`Rooms::guest_in`]).
//! - **Bounds.** At most [`MAX_GUEST_ROOMS`] rooms per guest; guests are
//!   capped by the web options, so the rooms joined for guests are too.

use serde::{Deserialize, Serialize};

use super::{Rooms, invalid, lock};
use crate::error::{Error, Result};
use crate::identity::PeerId;
use crate::node::Node;
use crate::proto::rooms::{self, RoomMessage, RoomMessageId};

/// Most rooms one browser guest can be in at once.
pub const MAX_GUEST_ROOMS: usize = 8;

/// A room as a browser guest's page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRoom {
    pub name: String,
    /// Whether this guest is in it.
    pub joined: bool,
    /// Neighbours of the node in the room's overlay.
    pub neighbors: usize,
}

impl Rooms {
    /// Whether the guest `guest` is in room `name`.
    pub(crate) fn guest_in(&self, guest: &PeerId, name: &str) -> bool {
        lock(&self.members)
            .get(&rooms::topic(name))
            .is_some_and(|m| m.guests.contains(guest))
    }

    /// `guest` joins `name`; the node joins it first if it is not in it.
    pub(crate) async fn guest_join(&self, node: &Node, guest: PeerId, name: &str) -> Result<()> {
        rooms::check_name(name).map_err(invalid)?;
        let _op = self.ops.lock().await;
        if self.guest_in(&guest, name) {
            return Ok(());
        }
        let count = lock(&self.members)
            .values()
            .filter(|m| m.guests.contains(&guest))
            .count();
        if count >= MAX_GUEST_ROOMS {
            return Err(Error::Invalid(format!(
                "a guest can be in at most {MAX_GUEST_ROOMS} rooms; leave one first"
            )));
        }
        self.enter(node, name).await?;
        lock(&self.members)
            .entry(rooms::topic(name))
            .or_default()
            .guests
            .insert(guest);
        Ok(())
    }

    /// `guest` leaves `name`; the node leaves too if nobody else it is there
    /// for remains.
    pub(crate) async fn guest_leave(&self, guest: PeerId, name: &str) -> Result<()> {
        let _op = self.ops.lock().await;
        self.guest_leave_locked(guest, name).await
    }

    async fn guest_leave_locked(&self, guest: PeerId, name: &str) -> Result<()> {
        let topic = rooms::topic(name);
        let empty = {
            let mut m = lock(&self.members);
            let Some(room) = m.get_mut(&topic) else {
                return Ok(());
            };
            if !room.guests.remove(&guest) {
                return Ok(());
            }
            room.guests.is_empty() && !room.owner
        };
        if empty {
            self.exit(name).await?;
        }
        Ok(())
    }

    /// A guest's session ended: it leaves every room it was in.
    pub(crate) async fn guest_gone(&self, guest: PeerId) -> Result<()> {
        let _op = self.ops.lock().await;
        for name in self.rooms_of(&guest) {
            self.guest_leave_locked(guest, &name).await?;
        }
        Ok(())
    }

    fn rooms_of(&self, guest: &PeerId) -> Vec<String> {
        let members = lock(&self.members);
        let joined = self.lock();
        members
            .iter()
            .filter(|(_, m)| m.guests.contains(guest))
            .filter_map(|(t, _)| joined.get(t).cloned())
            .collect()
    }

    /// The rooms the node is in, marked with whether `guest` is in each.
    pub(crate) async fn guest_list(&self, guest: &PeerId) -> Result<Vec<GuestRoom>> {
        let mut out = Vec::new();
        for info in self.list().await? {
            out.push(GuestRoom {
                joined: self.guest_in(guest, &info.name),
                name: info.name,
                neighbors: info.neighbors,
            });
        }
        Ok(out)
    }

    fn check_guest_in(&self, guest: &PeerId, name: &str) -> Result<()> {
        if self.guest_in(guest, name) {
            Ok(())
        } else {
            Err(Self::not_joined(name))
        }
    }

    /// The stored messages of a room `guest` is in.
    pub(crate) fn guest_history(
        &self,
        guest: &PeerId,
        name: &str,
        before: Option<RoomMessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>> {
        self.check_guest_in(guest, name)?;
        self.history(name, before, limit)
    }

    /// The node says `text` in `name` for `guest` (named `guest_name`).
    pub(crate) async fn guest_say(
        &self,
        guest: &PeerId,
        guest_name: &str,
        name: &str,
        text: &str,
    ) -> Result<RoomMessage> {
        self.check_guest_in(guest, name)?;
        let author = rooms::guest_author_name(guest_name, &self.name);
        self.say_as(name, &author, text).await
    }
}
