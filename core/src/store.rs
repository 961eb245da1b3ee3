//! Durable state in SQLite: known peers and trust, room history (and, as
//! features land, messages and transfers).
//!
//! One file `peerconnect.db` in the data dir, WAL mode, `synchronous=NORMAL`
//! (durable across process crashes; an OS crash may lose the last transactions but
//! never corrupts). The schema is versioned by named migrations recorded in the
//! `migrations` table: each runs once, in list order, inside a transaction, and old
//! databases upgrade on open. A database holding a migration this build does not
//! know was written by a newer build and is refused rather than modified.
//!
//! Each feature keeps its queries in its own file (`store/<feature>.rs`, an
//! `impl Store` block) and appends its migrations to [`MIGRATIONS`].
//!
//! The connection sits behind a mutex: calls are short, and the store is not
//! protocol state (that lives in the actors).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use crate::event::Trust;
use crate::identity::PeerId;
use crate::proto::wire::DeviceKind;

mod rooms;
mod transfers;
pub use transfers::TransferRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "store at {path} was written by a newer PeerConnect (it has migration {found:?}, unknown to this build)"
    )]
    TooNew { path: String, found: String },
    #[error("corrupt value in store: {0}")]
    Corrupt(String),
}

mod messages;
mod settings;

pub use messages::{MessageCounts, UntrustedMessageQuota};
pub use rooms::UntrustedRoomQuota;
pub use settings::SavedSettings;

/// The database file in the data dir.
pub(crate) const DB_FILE: &str = "peerconnect.db";

/// The schema, one named migration per entry; never edit a released entry, append.
pub(crate) const MIGRATIONS: &[(&str, &str)] = &[
    (
        "peers_1",
        "CREATE TABLE peers (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL DEFAULT 'other',
        addrs TEXT NOT NULL DEFAULT '[]',
        last_seen_ms INTEGER NOT NULL DEFAULT 0,
        trust TEXT NOT NULL DEFAULT 'unknown'
    );",
    ),
    transfers::MIGRATION,
    messages::MIGRATION,
    settings::MIGRATION,
    ("rooms_1", rooms::MIGRATION),
];

/// A peer as remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPeer {
    pub id: PeerId,
    pub name: String,
    pub kind: DeviceKind,
    pub addrs: Vec<SocketAddr>,
    pub last_seen_ms: u64,
    pub trust: Trust,
}

/// Most addresses remembered per peer.
const MAX_STORED_ADDRS: usize = 8;

/// Resource: `peers` rows of keys nobody trusted (any device can make keys for
/// free, and each connection stores its key). Limit: 1,000 rows with trust
/// `unknown`. At the limit: storing one more deletes the least recently seen
/// unknown rows; trusted and blocked peers are never evicted.
pub const MAX_UNTRUSTED_PEERS: usize = 1_000;

#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    untrusted_peer_limit: AtomicUsize,
    untrusted_messages: Mutex<UntrustedMessageQuota>,
    /// New incoming messages since the untrusted quota was last enforced.
    messages_since_quota_check: std::sync::atomic::AtomicU64,
    untrusted_room: Mutex<UntrustedRoomQuota>,
    /// New room messages since the room quota was last enforced.
    room_messages_since_check: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens (creating and migrating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Small page cache: many nodes may share one process in tests and benches.
        conn.pragma_update(None, "cache_size", -512)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Self {
            conn: Mutex::new(conn),
            untrusted_peer_limit: AtomicUsize::new(MAX_UNTRUSTED_PEERS),
            untrusted_messages: Mutex::new(UntrustedMessageQuota::default()),
            messages_since_quota_check: std::sync::atomic::AtomicU64::new(0),
            untrusted_room: Mutex::new(UntrustedRoomQuota::default()),
            room_messages_since_check: std::sync::atomic::AtomicU64::new(0),
        };
        store.migrate(&path.display().to_string())?;
        Ok(store)
    }

    /// A throwaway in-memory store (tests, benchmarks of many nodes).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        // Every table and index takes at least one page, all of it held in
        // memory: 1 KiB pages instead of 4 KiB keep an idle store of the
        // schema ~50 KiB smaller (thousands of such nodes share a process).
        conn.pragma_update(None, "page_size", 1024)?;
        let store = Self {
            conn: Mutex::new(conn),
            untrusted_peer_limit: AtomicUsize::new(MAX_UNTRUSTED_PEERS),
            untrusted_messages: Mutex::new(UntrustedMessageQuota::default()),
            messages_since_quota_check: std::sync::atomic::AtomicU64::new(0),
            untrusted_room: Mutex::new(UntrustedRoomQuota::default()),
            room_messages_since_check: std::sync::atomic::AtomicU64::new(0),
        };
        store.migrate(":memory:")?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (every
        // write is a transaction), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self, path: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS migrations (
                name TEXT PRIMARY KEY NOT NULL,
                applied_ms INTEGER NOT NULL
            );",
        )?;
        let applied = applied_migrations(&conn)?;
        if let Some(unknown) = applied
            .iter()
            .find(|a| !MIGRATIONS.iter().any(|(name, _)| name == a))
        {
            return Err(StoreError::TooNew {
                path: path.into(),
                found: unknown.clone(),
            });
        }
        for (name, sql) in MIGRATIONS {
            if applied.iter().any(|a| a == name) {
                continue;
            }
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO migrations (name, applied_ms) VALUES (?1, ?2)",
                params![name, now_ms() as i64],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Names of the migrations applied to this database.
    pub fn migrations(&self) -> Result<Vec<String>, StoreError> {
        applied_migrations(&self.lock())
    }

    /// Runs `f` inside one transaction (all or nothing).
    #[allow(dead_code)] // for the feature stores (messages, transfers)
    pub(crate) fn with_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` with the connection (single statements, reads).
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.lock())
    }

    /// Lowers (or raises) the cap on stored untrusted peers from
    /// [`MAX_UNTRUSTED_PEERS`]; for tests and small devices.
    pub fn set_untrusted_peer_limit(&self, limit: usize) {
        self.untrusted_peer_limit.store(limit, Ordering::Relaxed);
    }

    /// Changes how many messages from untrusted peers are kept (see
    /// [`UntrustedMessageQuota`]); for tests and small devices.
    pub fn set_untrusted_message_quota(&self, quota: UntrustedMessageQuota) {
        *self
            .untrusted_messages
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = quota;
    }

    pub(crate) fn untrusted_message_quota(&self) -> UntrustedMessageQuota {
        *self
            .untrusted_messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Changes how much room history from untrusted authors is kept (see
    /// [`UntrustedRoomQuota`]); for tests and small devices.
    pub fn set_untrusted_room_quota(&self, quota: UntrustedRoomQuota) {
        *self
            .untrusted_room
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = quota;
    }

    pub(crate) fn untrusted_room_quota(&self) -> UntrustedRoomQuota {
        *self
            .untrusted_room
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one new room message; true every `every` of them.
    pub(crate) fn room_check_due(&self, every: u64) -> bool {
        let n = self
            .room_messages_since_check
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if n >= every.max(1) {
            self.room_messages_since_check.store(0, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Counts `new` incoming messages; true when the untrusted quota is due for
    /// enforcement (every `every` of them), which resets the count.
    pub(crate) fn untrusted_check_due(&self, new: u64, every: u64) -> bool {
        let n = self
            .messages_since_quota_check
            .fetch_add(new, Ordering::Relaxed)
            + new;
        if n >= every.max(1) {
            self.messages_since_quota_check.store(0, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Records that we saw `id` now: name, kind and (merged, newest first)
    /// addresses. A new row may evict the least recently seen untrusted peers
    /// (see [`MAX_UNTRUSTED_PEERS`]).
    pub fn upsert_peer(
        &self,
        id: &PeerId,
        name: &str,
        kind: DeviceKind,
        addrs: &[SocketAddr],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        let old: Option<String> = conn
            .query_row(
                "SELECT addrs FROM peers WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let mut merged: Vec<SocketAddr> = addrs.to_vec();
        let is_new = old.is_none();
        if let Some(old) = old {
            for a in parse_addrs(&old) {
                if !merged.contains(&a) {
                    merged.push(a);
                }
            }
        }
        merged.truncate(MAX_STORED_ADDRS);
        let addrs_json = serde_json::to_string(&merged).expect("addresses serialize");
        conn.execute(
            "INSERT INTO peers (id, name, kind, addrs, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET name = ?2, kind = ?3, addrs = ?4, last_seen_ms = ?5",
            params![
                id.to_string(),
                name,
                kind.as_str(),
                addrs_json,
                now_ms as i64
            ],
        )?;
        if is_new {
            let limit = self.untrusted_peer_limit.load(Ordering::Relaxed);
            conn.execute(
                "DELETE FROM peers WHERE trust = 'unknown' AND id != ?2 AND id IN (
                    SELECT id FROM peers WHERE trust = 'unknown'
                    ORDER BY last_seen_ms DESC, id LIMIT -1 OFFSET ?1)",
                params![limit as i64, id.to_string()],
            )?;
        }
        Ok(())
    }

    pub fn peer(&self, id: &PeerId) -> Result<Option<StoredPeer>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT id, name, kind, addrs, last_seen_ms, trust FROM peers WHERE id = ?1",
            [id.to_string()],
            row_to_peer,
        )
        .optional()?
        .transpose()
    }

    /// Every remembered peer, most recently seen first.
    pub fn peers(&self) -> Result<Vec<StoredPeer>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, name, kind, addrs, last_seen_ms, trust FROM peers ORDER BY last_seen_ms DESC",
        )?;
        let rows = stmt.query_map([], row_to_peer)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// Sets the trust of a peer, remembering it if it was not known yet.
    pub fn set_trust(&self, id: &PeerId, trust: Trust) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO peers (id, trust) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET trust = ?2",
            params![id.to_string(), trust.as_str()],
        )?;
        Ok(())
    }

    pub fn trust(&self, id: &PeerId) -> Result<Trust, StoreError> {
        let t: Option<String> = self
            .lock()
            .query_row(
                "SELECT trust FROM peers WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        match t {
            None => Ok(Trust::Unknown),
            Some(t) => t.parse().map_err(StoreError::Corrupt),
        }
    }
}

fn applied_migrations(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT name FROM migrations")?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// Wall clock in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn parse_addrs(json: &str) -> Vec<SocketAddr> {
    serde_json::from_str(json).unwrap_or_default()
}

type PeerRow = Result<StoredPeer, StoreError>;

fn row_to_peer(r: &rusqlite::Row<'_>) -> rusqlite::Result<PeerRow> {
    let id: String = r.get(0)?;
    let name: String = r.get(1)?;
    let kind: String = r.get(2)?;
    let addrs: String = r.get(3)?;
    let last_seen: i64 = r.get(4)?;
    let trust: String = r.get(5)?;
    Ok((|| {
        Ok(StoredPeer {
            id: id
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("peer id {id:?}: {e}")))?,
            name,
            kind: kind.parse().unwrap_or(DeviceKind::Other),
            addrs: parse_addrs(&addrs),
            last_seen_ms: last_seen.max(0) as u64,
            trust: trust.parse().map_err(StoreError::Corrupt)?,
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn peers_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::generate().peer_id();
        {
            let s = Store::open(dir.path()).unwrap();
            s.upsert_peer(&id, "laptop", DeviceKind::Laptop, &[addr(1)], 10)
                .unwrap();
            s.set_trust(&id, Trust::Trusted).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let p = s.peer(&id).unwrap().unwrap();
        assert_eq!(p.name, "laptop");
        assert_eq!(p.kind, DeviceKind::Laptop);
        assert_eq!(p.addrs, vec![addr(1)]);
        assert_eq!(p.trust, Trust::Trusted);
        assert_eq!(s.migrations().unwrap().len(), MIGRATIONS.len());
    }

    #[test]
    fn addresses_merge_newest_first_and_trust_is_kept() {
        let s = Store::in_memory().unwrap();
        let id = Identity::generate().peer_id();
        s.set_trust(&id, Trust::Blocked).unwrap();
        s.upsert_peer(&id, "a", DeviceKind::Phone, &[addr(1)], 1)
            .unwrap();
        s.upsert_peer(&id, "b", DeviceKind::Phone, &[addr(2)], 2)
            .unwrap();
        let p = s.peer(&id).unwrap().unwrap();
        assert_eq!(p.addrs, vec![addr(2), addr(1)]);
        assert_eq!(p.name, "b");
        assert_eq!(s.trust(&id).unwrap(), Trust::Blocked);
    }

    #[test]
    fn untrusted_peers_are_capped_and_trusted_ones_never_evicted() {
        let s = Store::in_memory().unwrap();
        s.set_untrusted_peer_limit(10);
        let trusted = Identity::generate().peer_id();
        s.upsert_peer(&trusted, "friend", DeviceKind::Laptop, &[addr(1)], 0)
            .unwrap();
        s.set_trust(&trusted, Trust::Trusted).unwrap();
        let mut strangers = Vec::new();
        for i in 0..25u64 {
            let id = Identity::generate().peer_id();
            s.upsert_peer(&id, "x", DeviceKind::Other, &[addr(2)], 100 + i)
                .unwrap();
            strangers.push(id);
        }
        let peers = s.peers().unwrap();
        let unknown: Vec<_> = peers.iter().filter(|p| p.trust == Trust::Unknown).collect();
        assert_eq!(unknown.len(), 10);
        // the most recently seen strangers are the ones kept
        assert!(unknown.iter().all(|p| strangers[15..].contains(&p.id)));
        assert_eq!(s.peer(&trusted).unwrap().unwrap().trust, Trust::Trusted);
    }

    #[test]
    fn unknown_peer_has_unknown_trust() {
        let s = Store::in_memory().unwrap();
        assert_eq!(
            s.trust(&Identity::generate().peer_id()).unwrap(),
            Trust::Unknown
        );
    }

    #[test]
    fn a_newer_schema_is_refused_not_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let c = Connection::open(dir.path().join("peerconnect.db")).unwrap();
        c.execute("INSERT INTO migrations VALUES ('from_the_future_1', 0)", [])
            .unwrap();
        drop(c);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { .. })
        ));
        // and the database was left as it was
        let c = Connection::open(dir.path().join("peerconnect.db")).unwrap();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, MIGRATIONS.len() + 1);
    }
}
