//! Direct messages in the store: the outbox, the history of each conversation
//! and owed read receipts (migration `messages_1`).
//!
//! One table holds both directions. `seq` (AUTOINCREMENT, never reused) is the
//! local order: for outgoing messages the order the user sent them (the outbox
//! order), for incoming ones the order they arrived, which is the order the
//! sender sent them (see [`crate::proto::messaging`]). A message is unique per
//! (peer, direction, id): a duplicate delivery is dropped by the insert, and a
//! peer cannot collide with another peer's ids.
//!
//! Status updates follow [`Status::allowed_from`], so an update that arrives
//! late (an ack after a read receipt) never moves a message backwards.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::identity::PeerId;
use crate::proto::messaging::{Conversation, Envelope, MessageId, MessageInfo, Queued, Status};

/// The schema of messages (appended to [`super::MIGRATIONS`]).
pub(super) const MIGRATION: (&str, &str) = (
    "messages_1",
    "CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        peer TEXT NOT NULL,
        outgoing INTEGER NOT NULL,
        id BLOB NOT NULL,
        sent_ms INTEGER NOT NULL,
        stored_ms INTEGER NOT NULL,
        text TEXT NOT NULL,
        reply_to BLOB,
        status INTEGER NOT NULL,
        receipt_owed INTEGER NOT NULL DEFAULT 0,
        UNIQUE (peer, outgoing, id)
    );
    CREATE INDEX messages_by_peer ON messages (peer, seq);
    CREATE INDEX messages_unacked ON messages (peer, seq) WHERE outgoing = 1 AND status < 2;
    CREATE INDEX messages_unread ON messages (peer, seq) WHERE outgoing = 0 AND status < 3;
    CREATE INDEX messages_receipts ON messages (peer, seq) WHERE receipt_owed = 1;",
);

/// How many messages a conversation holds, by direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageCounts {
    pub incoming: u64,
    pub outgoing: u64,
}

/// How much a store keeps of what peers nobody trusted sent: the newest
/// messages, by count and by text bytes, per peer and for all of them together.
///
/// Resource: disk and history of direct messages from peers whose trust is not
/// `trusted` (anyone on the LAN can make a key and write). Limits (defaults):
/// 10,000 messages or 16 MiB of text per peer, 50,000 messages or 64 MiB in
/// total. At the limit: the new message is stored and acknowledged, and the
/// oldest received messages of that peer (per-peer limit) or of all untrusted
/// peers (total limit) are deleted. Trusted peers' messages and our own are
/// never deleted, so nothing stored from a trusted peer is lost; the sender is
/// never stalled retrying. The limits are enforced every `check_every` new
/// untrusted messages (a scan of their history), so they may be passed by
/// fewer than that many messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UntrustedMessageQuota {
    pub per_peer_messages: u64,
    pub per_peer_bytes: u64,
    pub total_messages: u64,
    pub total_bytes: u64,
    /// New messages from untrusted peers between two enforcements.
    pub check_every: u64,
}

impl Default for UntrustedMessageQuota {
    fn default() -> Self {
        Self {
            per_peer_messages: 10_000,
            per_peer_bytes: 16 << 20,
            total_messages: 50_000,
            total_bytes: 64 << 20,
            check_every: 64,
        }
    }
}

const COLUMNS: &str = "seq, peer, outgoing, id, sent_ms, text, reply_to, status";

impl Store {
    /// Stores a message we send to `peer` as pending; returns its place in the
    /// outbox.
    pub fn insert_outgoing(
        &self,
        peer: &PeerId,
        envelope: &Envelope,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO messages (peer, outgoing, id, sent_ms, stored_ms, text, reply_to, status)
                 VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    peer.to_string(),
                    envelope.id.to_bytes(),
                    envelope.sent_ms as i64,
                    now_ms as i64,
                    envelope.text,
                    envelope.reply_to.map(|r| r.to_bytes()),
                    Status::Pending.as_u8()
                ],
            )?;
            Ok(c.last_insert_rowid() as u64)
        })
    }

    /// Stores messages received from peers, in order, in one transaction.
    /// Returns, for each, whether it is new (`false`: a duplicate, dropped).
    pub fn insert_incoming(
        &self,
        messages: &[(PeerId, Envelope)],
        now_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        self.with_tx(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages
                 (peer, outgoing, id, sent_ms, stored_ms, text, reply_to, status)
                 VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut out = Vec::with_capacity(messages.len());
            for (peer, e) in messages {
                let n = stmt.execute(params![
                    peer.to_string(),
                    e.id.to_bytes(),
                    e.sent_ms as i64,
                    now_ms as i64,
                    e.text,
                    e.reply_to.map(|r| r.to_bytes()),
                    Status::Delivered.as_u8()
                ])?;
                out.push(n == 1);
            }
            drop(stmt);
            let quota = self.untrusted_message_quota();
            let new = out.iter().filter(|n| **n).count() as u64;
            if !self.untrusted_check_due(new, quota.check_every) {
                return Ok(out);
            }
            let mut peers: Vec<&PeerId> = messages
                .iter()
                .zip(&out)
                .filter(|(_, new)| **new)
                .map(|((p, _), _)| p)
                .collect();
            peers.sort();
            peers.dedup();
            let mut untrusted_wrote = false;
            for peer in peers {
                let trusted: bool = tx
                    .query_row(
                        "SELECT trust = 'trusted' FROM peers WHERE id = ?1",
                        [peer.to_string()],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(false);
                if trusted {
                    continue;
                }
                untrusted_wrote = true;
                tx.execute(
                    "DELETE FROM messages WHERE seq IN (
                        SELECT seq FROM (
                            SELECT seq, ROW_NUMBER() OVER w AS n,
                                   SUM(length(CAST(text AS BLOB))) OVER w AS bytes
                            FROM messages WHERE peer = ?1 AND outgoing = 0
                            WINDOW w AS (ORDER BY seq DESC))
                        WHERE n > ?2 OR bytes > ?3)",
                    params![
                        peer.to_string(),
                        quota.per_peer_messages as i64,
                        quota.per_peer_bytes as i64
                    ],
                )?;
            }
            if untrusted_wrote {
                tx.execute(
                    "DELETE FROM messages WHERE seq IN (
                        SELECT seq FROM (
                            SELECT seq, ROW_NUMBER() OVER w AS n,
                                   SUM(length(CAST(text AS BLOB))) OVER w AS bytes
                            FROM messages WHERE outgoing = 0
                              AND peer NOT IN (SELECT id FROM peers WHERE trust = 'trusted')
                            WINDOW w AS (ORDER BY seq DESC))
                        WHERE n > ?1 OR bytes > ?2)",
                    params![quota.total_messages as i64, quota.total_bytes as i64],
                )?;
            }
            Ok(out)
        })
    }

    /// Up to `limit` pending messages to `peer` after outbox place `after`,
    /// oldest first.
    pub fn outbox_page(
        &self,
        peer: &PeerId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        self.with_conn(|c| {
            // `status < 2` lets SQLite use the partial index of unacked messages.
            let mut stmt = c.prepare_cached(
                "SELECT seq, id, sent_ms, text, reply_to FROM messages
                 WHERE peer = ?1 AND outgoing = 1 AND status < 2 AND status = 0 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![
                    peer.to_string(),
                    after.map_or(-1, |a| a as i64),
                    limit as i64
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<Vec<u8>>>(4)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, id, sent_ms, text, reply_to) = row?;
                out.push(Queued {
                    seq: seq as u64,
                    envelope: Envelope {
                        id: blob_to_id(&id)?,
                        sent_ms: sent_ms.max(0) as u64,
                        text,
                        reply_to: reply_to.as_deref().map(blob_to_id).transpose()?,
                    },
                });
            }
            Ok(out)
        })
    }

    /// Moves our messages `ids` to `peer` to `status` where that is a step
    /// [`Status::allowed_from`] allows; returns the ids that changed.
    pub fn set_outgoing_status(
        &self,
        peer: &PeerId,
        ids: &[MessageId],
        status: Status,
    ) -> Result<Vec<MessageId>, StoreError> {
        let from: Vec<String> = status
            .allowed_from()
            .iter()
            .map(|s| s.as_u8().to_string())
            .collect();
        let sql = format!(
            "UPDATE messages SET status = ?1
             WHERE peer = ?2 AND outgoing = 1 AND id = ?3 AND status IN ({})",
            from.join(",")
        );
        let peer = peer.to_string();
        self.with_tx(|tx| {
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut changed = Vec::new();
            for id in ids {
                if stmt.execute(params![status.as_u8(), peer, id.to_bytes()])? == 1 {
                    changed.push(*id);
                }
            }
            Ok(changed)
        })
    }

    /// Puts every message left `sent` by a previous run back to pending (its
    /// session is gone, and whether it arrived is unknown: it is sent again and
    /// the receiver drops it if it has it). Returns how many.
    pub fn requeue_sent_messages(&self) -> Result<usize, StoreError> {
        self.with_conn(|c| {
            Ok(c.execute(
                "UPDATE messages SET status = 0 WHERE outgoing = 1 AND status = 1",
                [],
            )?)
        })
    }

    /// Peers we have unacknowledged messages for (at most `limit`).
    pub fn peers_with_unacked_messages(&self, limit: usize) -> Result<Vec<PeerId>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT peer FROM messages WHERE outgoing = 1 AND status < 2 LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(parse_peer(&r?)?);
            }
            Ok(out)
        })
    }

    /// The id of the newest message this node sent (to continue its ids after a
    /// restart).
    pub fn last_outgoing_message_id(&self) -> Result<Option<MessageId>, StoreError> {
        self.with_conn(|c| {
            let id: Option<Vec<u8>> = c
                .query_row(
                    "SELECT id FROM messages WHERE outgoing = 1 ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            id.as_deref().map(blob_to_id).transpose()
        })
    }

    /// One message of the conversation with `peer` (either direction).
    pub fn message(
        &self,
        me: &PeerId,
        peer: &PeerId,
        id: &MessageId,
    ) -> Result<Option<MessageInfo>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM messages WHERE peer = ?1 AND outgoing IN (0, 1) AND id = ?2
                     ORDER BY seq LIMIT 1"
                ),
                params![peer.to_string(), id.to_bytes()],
                |r| row_to_info(me, r),
            )
            .optional()?
            .transpose()
        })
    }

    /// Up to `limit` messages with `peer` older than `before` (or the newest),
    /// oldest first. `Ok(None)` if `before` is not in this conversation.
    pub fn conversation(
        &self,
        me: &PeerId,
        peer: &PeerId,
        before: Option<&MessageId>,
        limit: usize,
    ) -> Result<Option<Vec<MessageInfo>>, StoreError> {
        self.with_conn(|c| {
            let bound = match before {
                None => i64::MAX,
                Some(id) => match seq_of(c, peer, id)? {
                    Some(seq) => seq,
                    None => return Ok(None),
                },
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE peer = ?1 AND seq < ?2
                 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![peer.to_string(), bound, limit as i64], |r| {
                row_to_info(me, r)
            })?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            out.reverse();
            Ok(Some(out))
        })
    }

    /// Marks every message from `peer` up to and including `up_to` read, and
    /// owes the peer a receipt for each. Returns how many changed, or `None` if
    /// `up_to` is not in this conversation.
    pub fn mark_incoming_read(
        &self,
        peer: &PeerId,
        up_to: &MessageId,
    ) -> Result<Option<usize>, StoreError> {
        self.with_tx(|tx| {
            let Some(seq) = seq_of(tx, peer, up_to)? else {
                return Ok(None);
            };
            let n = tx.execute(
                "UPDATE messages SET status = 3, receipt_owed = 1
                 WHERE peer = ?1 AND outgoing = 0 AND status < 3 AND seq <= ?2",
                params![peer.to_string(), seq],
            )?;
            Ok(Some(n))
        })
    }

    /// Up to `limit` read receipts owed to `peer`: (place, id), oldest first.
    pub fn owed_receipts(
        &self,
        peer: &PeerId,
        limit: usize,
    ) -> Result<Vec<(u64, MessageId)>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, id FROM messages WHERE peer = ?1 AND receipt_owed = 1
                 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![peer.to_string(), limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (seq, id) = r?;
                out.push((seq as u64, blob_to_id(&id)?));
            }
            Ok(out)
        })
    }

    /// The receipts for these places were sent.
    pub fn clear_receipts(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            let mut stmt =
                tx.prepare_cached("UPDATE messages SET receipt_owed = 0 WHERE seq = ?1")?;
            for s in seqs {
                stmt.execute([*s as i64])?;
            }
            Ok(())
        })
    }

    /// Every conversation, the most recently active first, with its last
    /// message and how many incoming messages are unread.
    pub fn conversations(&self, me: &PeerId) -> Result<Vec<Conversation>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS},
                    (SELECT COUNT(*) FROM messages u
                     WHERE u.peer = m.peer AND u.outgoing = 0 AND u.status < 3),
                    COALESCE((SELECT name FROM peers p WHERE p.id = m.peer), '')
                 FROM messages m
                 WHERE seq IN (SELECT MAX(seq) FROM messages GROUP BY peer)
                 ORDER BY seq DESC"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    row_to_info(me, r)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, String>(9)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (last, unread, name) = r?;
                let last = last?;
                out.push(Conversation {
                    peer: last.peer(),
                    name,
                    last,
                    unread: unread.max(0) as u64,
                });
            }
            Ok(out)
        })
    }

    /// How many messages the conversation with `peer` holds.
    pub fn message_counts(&self, peer: &PeerId) -> Result<MessageCounts, StoreError> {
        self.with_conn(|c| {
            let (incoming, outgoing): (i64, i64) = c.query_row(
                "SELECT COALESCE(SUM(outgoing = 0), 0), COALESCE(SUM(outgoing = 1), 0)
                 FROM messages WHERE peer = ?1",
                [peer.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(MessageCounts {
                incoming: incoming as u64,
                outgoing: outgoing as u64,
            })
        })
    }
}

fn seq_of(
    c: &rusqlite::Connection,
    peer: &PeerId,
    id: &MessageId,
) -> Result<Option<i64>, StoreError> {
    Ok(c.query_row(
        "SELECT seq FROM messages WHERE peer = ?1 AND outgoing IN (0, 1) AND id = ?2 ORDER BY seq LIMIT 1",
        params![peer.to_string(), id.to_bytes()],
        |r| r.get(0),
    )
    .optional()?)
}

fn blob_to_id(b: &[u8]) -> Result<MessageId, StoreError> {
    let bytes: [u8; 16] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("message id of {} bytes", b.len())))?;
    Ok(MessageId::from_bytes(bytes))
}

fn parse_peer(s: &str) -> Result<PeerId, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("peer id {s:?}: {e}")))
}

fn row_to_info(
    me: &PeerId,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<MessageInfo, StoreError>> {
    let peer: String = r.get(1)?;
    let outgoing: bool = r.get(2)?;
    let id: Vec<u8> = r.get(3)?;
    let sent_ms: i64 = r.get(4)?;
    let text: String = r.get(5)?;
    let reply_to: Option<Vec<u8>> = r.get(6)?;
    let status: u8 = r.get(7)?;
    Ok((|| {
        let peer = parse_peer(&peer)?;
        let (from, to) = if outgoing { (*me, peer) } else { (peer, *me) };
        Ok(MessageInfo {
            id: blob_to_id(&id)?,
            from,
            to,
            outgoing,
            sent_ms: sent_ms.max(0) as u64,
            text,
            reply_to: reply_to.as_deref().map(blob_to_id).transpose()?,
            status: Status::from_u8(status)
                .ok_or_else(|| StoreError::Corrupt(format!("message status {status}")))?,
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn peer(n: u8) -> PeerId {
        Identity::from_secret([n; 32]).peer_id()
    }

    fn env(n: u128) -> Envelope {
        Envelope {
            id: MessageId::from_parts(1_000, n),
            sent_ms: 1_000,
            text: format!("m{n}"),
            reply_to: None,
        }
    }

    fn ids(rows: &[Queued]) -> Vec<MessageId> {
        rows.iter().map(|q| q.envelope.id).collect()
    }

    #[test]
    fn the_outbox_pages_pending_messages_in_order() {
        let s = Store::in_memory().unwrap();
        let (b, c) = (peer(2), peer(3));
        for n in 0..5 {
            s.insert_outgoing(&b, &env(n), 1).unwrap();
            s.insert_outgoing(&c, &env(100 + n), 1).unwrap();
        }
        let first = s.outbox_page(&b, None, 2).unwrap();
        assert_eq!(ids(&first), [env(0).id, env(1).id]);
        let next = s.outbox_page(&b, Some(first[1].seq), 10).unwrap();
        assert_eq!(ids(&next), [env(2).id, env(3).id, env(4).id]);
        // sent messages leave the outbox; acks make them delivered
        s.set_outgoing_status(&b, &[env(0).id], Status::Sent)
            .unwrap();
        assert_eq!(s.outbox_page(&b, None, 10).unwrap().len(), 4);
        assert_eq!(s.peers_with_unacked_messages(10).unwrap().len(), 2);
        assert_eq!(s.last_outgoing_message_id().unwrap(), Some(env(104).id));
    }

    #[test]
    fn statuses_only_move_forward_and_sent_returns_to_pending() {
        let s = Store::in_memory().unwrap();
        let b = peer(2);
        s.insert_outgoing(&b, &env(1), 1).unwrap();
        s.insert_outgoing(&b, &env(2), 1).unwrap();
        let both = [env(1).id, env(2).id];
        assert_eq!(
            s.set_outgoing_status(&b, &both, Status::Sent).unwrap(),
            both
        );
        assert_eq!(
            s.set_outgoing_status(&b, &[env(1).id], Status::Delivered)
                .unwrap(),
            [env(1).id]
        );
        // only the unacknowledged one goes back to pending
        assert_eq!(
            s.set_outgoing_status(&b, &both, Status::Pending).unwrap(),
            [env(2).id]
        );
        assert_eq!(
            s.set_outgoing_status(&b, &[env(1).id], Status::Read)
                .unwrap()
                .len(),
            1
        );
        // a late ack does not undo the read
        assert!(
            s.set_outgoing_status(&b, &[env(1).id], Status::Delivered)
                .unwrap()
                .is_empty()
        );
        // another peer cannot touch our messages to b
        assert!(
            s.set_outgoing_status(&peer(3), &both, Status::Read)
                .unwrap()
                .is_empty()
        );
        s.set_outgoing_status(&b, &[env(2).id], Status::Sent)
            .unwrap();
        assert_eq!(s.requeue_sent_messages().unwrap(), 1);
        assert_eq!(ids(&s.outbox_page(&b, None, 10).unwrap()), [env(2).id]);
    }

    #[test]
    fn duplicate_deliveries_are_dropped_per_peer() {
        let s = Store::in_memory().unwrap();
        let (a, b) = (peer(1), peer(2));
        let got = s
            .insert_incoming(&[(a, env(1)), (a, env(1)), (b, env(1)), (a, env(2))], 5)
            .unwrap();
        assert_eq!(got, [true, false, true, true]);
        assert_eq!(s.insert_incoming(&[(a, env(2))], 6).unwrap(), [false]);
        assert_eq!(
            s.message_counts(&a).unwrap(),
            MessageCounts {
                incoming: 2,
                outgoing: 0
            }
        );
    }

    #[test]
    fn history_pages_back_from_the_newest_and_reads_are_counted() {
        let s = Store::in_memory().unwrap();
        let (me, b) = (peer(1), peer(2));
        for n in 0..5 {
            if n % 2 == 0 {
                s.insert_outgoing(&b, &env(n), 1).unwrap();
            } else {
                s.insert_incoming(&[(b, env(n))], 1).unwrap();
            }
        }
        let page = s.conversation(&me, &b, None, 2).unwrap().unwrap();
        assert_eq!(
            page.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["m3", "m4"]
        );
        assert!(page[1].outgoing && page[1].from == me && page[1].to == b);
        assert!(!page[0].outgoing && page[0].from == b);
        let older = s
            .conversation(&me, &b, Some(&page[0].id), 10)
            .unwrap()
            .unwrap();
        assert_eq!(
            older.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["m0", "m1", "m2"]
        );
        assert!(
            s.conversation(&me, &b, Some(&env(99).id), 10)
                .unwrap()
                .is_none()
        );

        let list = s.conversations(&me).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].peer, list[0].unread), (b, 2));
        assert_eq!(list[0].last.text, "m4");
        // reading up to m1 reads m1 only, and owes one receipt
        assert_eq!(s.mark_incoming_read(&b, &env(1).id).unwrap(), Some(1));
        assert_eq!(s.conversations(&me).unwrap()[0].unread, 1);
        let owed = s.owed_receipts(&b, 10).unwrap();
        assert_eq!(
            owed.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
            [env(1).id]
        );
        s.clear_receipts(&[owed[0].0]).unwrap();
        assert!(s.owed_receipts(&b, 10).unwrap().is_empty());
        assert_eq!(s.mark_incoming_read(&b, &env(99).id).unwrap(), None);
        let m = s.message(&me, &b, &env(1).id).unwrap().unwrap();
        assert_eq!(m.status, Status::Read);
    }

    #[test]
    fn the_outbox_survives_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let b = peer(2);
        {
            let s = Store::open(dir.path()).unwrap();
            s.insert_outgoing(&b, &env(1), 1).unwrap();
            s.set_outgoing_status(&b, &[env(1).id], Status::Sent)
                .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.requeue_sent_messages().unwrap(), 1);
        assert_eq!(ids(&s.outbox_page(&b, None, 10).unwrap()), [env(1).id]);
    }
}
