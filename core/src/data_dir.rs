//! The data dir holds the node's secret key, its database (peers, messages,
//! settings), the owner token of the web UI and the control socket. Only the
//! OS user running the node may read any of it: the dir is `0700`, the files
//! `0600`, from their creation on (nothing is created open and narrowed
//! afterwards, so no other local user can open a file in between).
//!
//! A data dir made by an older build (`0755`, database `0644`) is narrowed
//! when a node starts on it.

use std::path::Path;

/// Mode of the data dir: only its owner may list or enter it.
#[cfg(unix)]
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the node keeps in it.
#[cfg(unix)]
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) private to this user, or narrows it
/// if it exists; then narrows the database files an older build left open.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
        let db = crate::store::DB_FILE;
        for name in [
            db.to_string(),
            format!("{db}-wal"),
            format!("{db}-shm"),
            "identity.key".to_string(),
        ] {
            match std::fs::set_permissions(
                dir.join(&name),
                std::fs::Permissions::from_mode(FILE_MODE),
            ) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        // SQLite creates the database with 0644 (and its -wal and -shm with
        // the database's mode): create it first, private.
        match create_private(&dir.join(db)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Creates a new empty file readable and writable only by this user (fails
/// if it exists).
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(FILE_MODE);
    }
    opts.open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_node_keeps_its_data_dir_and_files_private() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("nested/data");
        let mut c = crate::Config::local(&dir);
        c.web = Some("127.0.0.1:0".parse().unwrap());
        let node = crate::Node::start(c).await.unwrap();
        // Written once so the WAL exists.
        node.store()
            .save_settings(&crate::store::SavedSettings::default())
            .unwrap();
        assert_eq!(mode(&dir), 0o700, "data dir");
        let db = crate::store::DB_FILE;
        for f in [db.to_string(), format!("{db}-wal"), "identity.key".into()] {
            assert_eq!(mode(&dir.join(&f)), 0o600, "{f}");
        }
        // The control socket exists and is the owner's only.
        let sock = crate::control::socket_path(&dir);
        assert_eq!(mode(&sock), 0o600, "control socket");
        // Everything else the node left there is private too.
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = mode(&p);
            assert_eq!(m & 0o077, 0, "{} is {m:o}", p.display());
        }
        node.shutdown().await.unwrap();
    }

    #[test]
    fn an_older_open_data_dir_is_narrowed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join(crate::store::DB_FILE);
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
    }
}
