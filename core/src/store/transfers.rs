//! Transfers in the store: one row per transfer, both directions, kept after
//! the end as history.
//!
//! For an incoming transfer the row holds what a later attempt needs to resume
//! it: the download folder, the names its top-level entries got there (`roots`,
//! after the " (1)" rule), the accepted selection and the manifest fingerprint.
//! Partial files themselves are found on disk (`<name>.part` beside where the
//! file goes), so a crash loses nothing the row does not point to, and the row
//! is written once per transfer and once per state change, never per file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_ms};
use crate::identity::PeerId;
use crate::proto::transfer::{Direction, TransferId, TransferState};

/// The `transfers_1` migration.
pub(crate) const MIGRATION: (&str, &str) = (
    "transfers_1",
    "CREATE TABLE transfers (
        id TEXT PRIMARY KEY NOT NULL,
        peer TEXT NOT NULL,
        direction TEXT NOT NULL,
        state TEXT NOT NULL,
        fingerprint TEXT NOT NULL DEFAULT '',
        files INTEGER NOT NULL DEFAULT 0,
        total_bytes INTEGER NOT NULL DEFAULT 0,
        done_bytes INTEGER NOT NULL DEFAULT 0,
        dir TEXT NOT NULL DEFAULT '',
        roots TEXT NOT NULL DEFAULT '{}',
        selected TEXT NOT NULL DEFAULT '[]',
        error TEXT,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX transfers_by_peer ON transfers (peer, direction, fingerprint);",
);

/// A transfer as remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    pub id: TransferId,
    pub peer: PeerId,
    pub direction: Direction,
    pub state: TransferState,
    /// Hex BLAKE3 of the manifest ([`crate::proto::transfer::Manifest::fingerprint`]).
    pub fingerprint: String,
    pub files: u64,
    pub total_bytes: u64,
    pub done_bytes: u64,
    /// Receive: the folder files go to.
    pub dir: PathBuf,
    /// Receive: top-level name in the offer → name chosen on disk.
    pub roots: BTreeMap<String, String>,
    /// Receive: accepted entries, as sorted half-open index ranges.
    pub selected: Vec<(u32, u32)>,
    pub error: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// How long the user's consent to an incoming transfer lasts for resuming it:
/// an unfinished transfer older than this (since its last change) is offered
/// to the user again instead of being resumed without asking.
pub const RESUME_CONSENT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

const COLUMNS: &str = "id, peer, direction, state, fingerprint, files, total_bytes, done_bytes, \
                       dir, roots, selected, error, created_ms, updated_ms";

impl Store {
    /// Records a new transfer (or replaces the row of the same id).
    pub fn put_transfer(&self, t: &TransferRecord) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                &format!(
                    "INSERT OR REPLACE INTO transfers ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                params![
                    t.id.to_string(),
                    t.peer.to_string(),
                    t.direction.as_str(),
                    t.state.as_str(),
                    t.fingerprint,
                    t.files as i64,
                    t.total_bytes as i64,
                    t.done_bytes as i64,
                    t.dir.to_string_lossy(),
                    serde_json::to_string(&t.roots).expect("roots serialize"),
                    serde_json::to_string(&t.selected).expect("ranges serialize"),
                    t.error,
                    t.created_ms as i64,
                    t.updated_ms as i64,
                ],
            )?;
            Ok(())
        })
    }

    /// Updates where a transfer stands.
    pub fn set_transfer_state(
        &self,
        id: TransferId,
        state: TransferState,
        done_bytes: u64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE transfers SET state = ?2, done_bytes = ?3, error = ?4, updated_ms = ?5
                 WHERE id = ?1",
                params![
                    id.to_string(),
                    state.as_str(),
                    done_bytes as i64,
                    error,
                    now_ms() as i64
                ],
            )?;
            Ok(())
        })
    }

    pub fn transfer(&self, id: TransferId) -> Result<Option<TransferRecord>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM transfers WHERE id = ?1"),
                [id.to_string()],
                row_to_transfer,
            )
            .optional()?
            .transpose()
        })
    }

    /// The newest unfinished incoming transfer of the same files from `peer`,
    /// touched within [`RESUME_CONSENT`]: what a new offer with this
    /// fingerprint resumes without asking the user again.
    pub fn resumable_transfer(
        &self,
        peer: &PeerId,
        fingerprint: &str,
    ) -> Result<Option<TransferRecord>, StoreError> {
        let since = now_ms().saturating_sub(RESUME_CONSENT.as_millis() as u64);
        self.with_conn(|c| {
            c.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM transfers
                     WHERE peer = ?1 AND direction = 'receive' AND fingerprint = ?2
                       AND state IN ('running', 'paused', 'interrupted')
                       AND updated_ms >= ?3
                     ORDER BY updated_ms DESC LIMIT 1"
                ),
                params![peer.to_string(), fingerprint, since as i64],
                row_to_transfer,
            )
            .optional()?
            .transpose()
        })
    }

    /// Marks transfers that were live when the node last stopped (or crashed)
    /// as interrupted; returns how many.
    pub fn interrupt_live_transfers(&self) -> Result<usize, StoreError> {
        self.with_conn(|c| {
            Ok(c.execute(
                "UPDATE transfers SET state = 'interrupted', updated_ms = ?1
                 WHERE state IN ('offered', 'running', 'paused')",
                [now_ms() as i64],
            )?)
        })
    }

    /// The newest `limit` transfers, newest first.
    pub fn transfers(&self, limit: usize) -> Result<Vec<TransferRecord>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM transfers ORDER BY created_ms DESC, id LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit as i64], row_to_transfer)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
    }
}

type TransferRow = Result<TransferRecord, StoreError>;

fn row_to_transfer(r: &rusqlite::Row<'_>) -> rusqlite::Result<TransferRow> {
    let id: String = r.get(0)?;
    let peer: String = r.get(1)?;
    let direction: String = r.get(2)?;
    let state: String = r.get(3)?;
    let fingerprint: String = r.get(4)?;
    let files: i64 = r.get(5)?;
    let total: i64 = r.get(6)?;
    let done: i64 = r.get(7)?;
    let dir: String = r.get(8)?;
    let roots: String = r.get(9)?;
    let selected: String = r.get(10)?;
    let error: Option<String> = r.get(11)?;
    let created: i64 = r.get(12)?;
    let updated: i64 = r.get(13)?;
    Ok((|| {
        let corrupt = |what: &str, e: String| StoreError::Corrupt(format!("transfer {what}: {e}"));
        Ok(TransferRecord {
            id: id.parse().map_err(|e| corrupt("id", e))?,
            peer: peer
                .parse()
                .map_err(|e: crate::identity::ParsePeerIdError| corrupt("peer", e.to_string()))?,
            direction: direction.parse().map_err(|e| corrupt("direction", e))?,
            state: state.parse().map_err(|e| corrupt("state", e))?,
            fingerprint,
            files: files.max(0) as u64,
            total_bytes: total.max(0) as u64,
            done_bytes: done.max(0) as u64,
            dir: PathBuf::from(dir),
            roots: serde_json::from_str(&roots).map_err(|e| corrupt("roots", e.to_string()))?,
            selected: serde_json::from_str(&selected)
                .map_err(|e| corrupt("selection", e.to_string()))?,
            error,
            created_ms: created.max(0) as u64,
            updated_ms: updated.max(0) as u64,
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn record(id: u64, peer: PeerId, state: TransferState) -> TransferRecord {
        TransferRecord {
            id: TransferId(id),
            peer,
            direction: Direction::Receive,
            state,
            fingerprint: "ab".into(),
            files: 2,
            total_bytes: 10,
            done_bytes: 3,
            dir: "/tmp/d".into(),
            roots: BTreeMap::from([("photos".into(), "photos (1)".into())]),
            selected: vec![(0, 2)],
            error: None,
            created_ms: id,
            updated_ms: id,
        }
    }

    #[test]
    fn an_interrupted_incoming_transfer_is_found_again_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let peer = Identity::generate().peer_id();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_transfer(&record(1, peer, TransferState::Running))
                .unwrap();
            s.put_transfer(&record(2, peer, TransferState::Complete))
                .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.interrupt_live_transfers().unwrap(), 1);
        let r = s.resumable_transfer(&peer, "ab").unwrap().unwrap();
        assert_eq!(r.id, TransferId(1));
        assert_eq!(r.state, TransferState::Interrupted);
        assert_eq!(r.roots["photos"], "photos (1)");
        assert_eq!(r.selected, vec![(0, 2)]);
        assert!(s.resumable_transfer(&peer, "cd").unwrap().is_none());
        let other = Identity::generate().peer_id();
        assert!(s.resumable_transfer(&other, "ab").unwrap().is_none());
    }

    /// Consent to resume does not last forever: a transfer left unfinished
    /// for longer than RESUME_CONSENT is not resumed without asking.
    #[test]
    fn old_unfinished_transfers_are_not_resumed_without_asking() {
        let s = Store::in_memory().unwrap();
        let peer = Identity::generate().peer_id();
        let now = now_ms();
        let old = now - RESUME_CONSENT.as_millis() as u64 - 1_000;
        let mut r = record(1, peer, TransferState::Interrupted);
        r.updated_ms = old;
        s.put_transfer(&r).unwrap();
        assert_eq!(s.resumable_transfer(&peer, "ab").unwrap(), None);
        r.updated_ms = now;
        s.put_transfer(&r).unwrap();
        assert_eq!(
            s.resumable_transfer(&peer, "ab").unwrap().map(|t| t.id),
            Some(TransferId(1))
        );
    }

    #[test]
    fn state_changes_are_kept_as_history() {
        let s = Store::in_memory().unwrap();
        let peer = Identity::generate().peer_id();
        s.put_transfer(&record(5, peer, TransferState::Running))
            .unwrap();
        s.set_transfer_state(TransferId(5), TransferState::Failed, 7, Some("disk full"))
            .unwrap();
        let t = s.transfer(TransferId(5)).unwrap().unwrap();
        assert_eq!(
            (t.state, t.done_bytes, t.error.as_deref()),
            (TransferState::Failed, 7, Some("disk full"))
        );
        assert!(s.resumable_transfer(&peer, "ab").unwrap().is_none());
        assert_eq!(s.transfers(10).unwrap().len(), 1);
    }
}
