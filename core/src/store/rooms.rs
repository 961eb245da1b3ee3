//! Room history: every accepted room message, in arrival order, paged.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::proto::rooms::{RoomMessage, RoomMessageId, SignedRoomMessage};

/// The `rooms_1` migration.
pub(crate) const MIGRATION: &str = "CREATE TABLE room_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        room TEXT NOT NULL,
        id TEXT NOT NULL,
        author TEXT NOT NULL,
        author_name TEXT NOT NULL,
        text TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        signature BLOB NOT NULL,
        UNIQUE (room, id)
    );";

/// How much room history a store keeps from authors nobody trusted.
///
/// Resource: disk and history of room messages whose author's trust is not
/// `trusted` (anyone can join a room with a fresh key). Limits (defaults): the
/// newest 1,000 messages per author and room, and 10,000 per room from all
/// such authors. At the limit: the message is stored and the oldest of that
/// author (or of the room's untrusted authors) are deleted. Our own messages
/// and trusted authors' are never deleted. Enforced every `check_every` new
/// messages, so a limit may be passed by fewer than that many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UntrustedRoomQuota {
    pub per_author: u64,
    pub per_room: u64,
    pub check_every: u64,
}

impl Default for UntrustedRoomQuota {
    fn default() -> Self {
        Self {
            per_author: 1_000,
            per_room: 10_000,
            check_every: 64,
        }
    }
}

impl Store {
    /// Records a verified room message from another author, then keeps the
    /// room within [`UntrustedRoomQuota`] (`me` is never counted). Returns
    /// false if the room already had it.
    pub fn insert_room_message_from_peer(
        &self,
        signed: &SignedRoomMessage,
        received_ms: u64,
        me: &crate::identity::PeerId,
    ) -> Result<bool, StoreError> {
        if !self.insert_room_message(signed, received_ms)? {
            return Ok(false);
        }
        let quota = self.untrusted_room_quota();
        if !self.room_check_due(quota.check_every) {
            return Ok(true);
        }
        let m = &signed.message;
        self.with_tx(|tx| {
            let trusted: bool = tx
                .query_row(
                    "SELECT trust = 'trusted' FROM peers WHERE id = ?1",
                    [m.author.to_string()],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(false);
            if trusted {
                return Ok(());
            }
            tx.execute(
                "DELETE FROM room_messages WHERE seq IN (
                    SELECT seq FROM (
                        SELECT seq, ROW_NUMBER() OVER (ORDER BY seq DESC) AS n
                        FROM room_messages WHERE room = ?1 AND author = ?2)
                    WHERE n > ?3)",
                params![m.room, m.author.to_string(), quota.per_author as i64],
            )?;
            tx.execute(
                "DELETE FROM room_messages WHERE seq IN (
                    SELECT seq FROM (
                        SELECT seq, ROW_NUMBER() OVER (ORDER BY seq DESC) AS n
                        FROM room_messages WHERE room = ?1 AND author != ?2
                          AND author NOT IN (SELECT id FROM peers WHERE trust = 'trusted'))
                    WHERE n > ?3)",
                params![m.room, me.to_string(), quota.per_room as i64],
            )?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Records a room message (ours or a verified one). Returns false if the
    /// room already had a message with this id (nothing is changed).
    pub fn insert_room_message(
        &self,
        signed: &SignedRoomMessage,
        received_ms: u64,
    ) -> Result<bool, StoreError> {
        let m = &signed.message;
        self.with_conn(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO room_messages
                 (room, id, author, author_name, text, time_ms, received_ms, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    m.room,
                    m.id.to_string(),
                    m.author.to_string(),
                    m.author_name,
                    m.text,
                    m.time_ms as i64,
                    received_ms as i64,
                    signed.signature.0.as_slice(),
                ],
            )?;
            Ok(n == 1)
        })
    }

    /// Up to `limit` messages of `room`, oldest first: the newest ones, or with
    /// `before`, the newest ones that arrived before that message. `None` if
    /// `before` is not a message of the room.
    pub fn room_history(
        &self,
        room: &str,
        before: Option<RoomMessageId>,
        limit: usize,
    ) -> Result<Option<Vec<RoomMessage>>, StoreError> {
        self.with_conn(|c| {
            let cursor = match before {
                None => i64::MAX,
                Some(id) => {
                    let seq: Option<i64> = c
                        .query_row(
                            "SELECT seq FROM room_messages WHERE room = ?1 AND id = ?2",
                            params![room, id.to_string()],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match seq {
                        Some(s) => s,
                        None => return Ok(None),
                    }
                }
            };
            let mut stmt = c.prepare(
                "SELECT id, room, author, author_name, text, time_ms FROM room_messages
                 WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![room, cursor, limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, room, author, author_name, text, time_ms) = row?;
                out.push(RoomMessage {
                    id: id.parse().map_err(StoreError::Corrupt)?,
                    room,
                    author: author
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("author {author:?}: {e}")))?,
                    author_name,
                    text,
                    time_ms: time_ms.max(0) as u64,
                });
            }
            out.reverse();
            Ok(Some(out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn say(me: &Identity, room: &str, text: &str, id: u8) -> SignedRoomMessage {
        let m = RoomMessage::new(RoomMessageId([id; 16]), me, "me", room, text, 5).unwrap();
        SignedRoomMessage::sign(m, me)
    }

    #[test]
    fn history_pages_backwards_in_arrival_order_per_room() {
        let s = Store::in_memory().unwrap();
        let me = Identity::generate();
        for i in 0..5u8 {
            assert!(
                s.insert_room_message(&say(&me, "a", &format!("a{i}"), i), 1)
                    .unwrap()
            );
            s.insert_room_message(&say(&me, "b", &format!("b{i}"), i), 1)
                .unwrap();
        }
        // the same id again is ignored
        assert!(
            !s.insert_room_message(&say(&me, "a", "again", 0), 2)
                .unwrap()
        );
        let texts = |v: Vec<RoomMessage>| v.into_iter().map(|m| m.text).collect::<Vec<_>>();
        let last = s.room_history("a", None, 2).unwrap().unwrap();
        assert_eq!(texts(last.clone()), ["a3", "a4"]);
        let before = s.room_history("a", Some(last[0].id), 10).unwrap().unwrap();
        assert_eq!(texts(before), ["a0", "a1", "a2"]);
        assert_eq!(s.room_history("c", None, 10).unwrap().unwrap(), vec![]);
        assert_eq!(
            s.room_history("a", Some(RoomMessageId([99; 16])), 10)
                .unwrap(),
            None
        );
        let got = &s.room_history("b", None, 1).unwrap().unwrap()[0];
        assert_eq!((got.author, got.author_name.as_str()), (me.peer_id(), "me"));
    }
}
