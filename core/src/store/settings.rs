//! Settings the user changed at run time (the web UI's settings view), kept
//! across restarts (migration `settings_1`).
//!
//! A small key/value table. Front ends apply the saved values when they build
//! a [`Config`](crate::Config): command-line flags win over saved values, which
//! win over defaults (see [`SavedSettings::apply`]).

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// The schema of settings (appended to [`super::MIGRATIONS`]).
pub(super) const MIGRATION: (&str, &str) = (
    "settings_1",
    "CREATE TABLE settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );",
);

const NAME: &str = "name";
const DOWNLOADS: &str = "downloads";
const AUTO_ACCEPT_TRUSTED: &str = "auto_accept_trusted";

/// The settings a user can change while the node runs; `None`: never changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSettings {
    /// Device name shown to others.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Folder received files go to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub downloads: Option<PathBuf>,
    /// Accept offers from trusted peers without asking.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auto_accept_trusted: Option<bool>,
}

impl SavedSettings {
    /// The settings saved in the store of `data_dir` (none if it has no store yet).
    pub fn load(data_dir: &Path) -> Result<Self, StoreError> {
        if !data_dir.join(super::DB_FILE).exists() {
            return Ok(Self::default());
        }
        Store::open(data_dir)?.saved_settings()
    }

    /// Puts the saved values into `config` (call before applying flags, which win).
    pub fn apply(&self, config: &mut crate::Config) {
        if let Some(n) = &self.name {
            config.name = n.clone();
        }
        if let Some(d) = &self.downloads {
            config.downloads = d.clone();
        }
        if let Some(a) = self.auto_accept_trusted {
            config.auto_accept_trusted = a;
        }
    }
}

impl Store {
    /// The saved settings.
    pub fn saved_settings(&self) -> Result<SavedSettings, StoreError> {
        let get = |key: &str| -> Result<Option<String>, StoreError> {
            self.with_conn(|c| {
                Ok(
                    c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()?,
                )
            })
        };
        Ok(SavedSettings {
            name: get(NAME)?,
            downloads: get(DOWNLOADS)?.map(PathBuf::from),
            auto_accept_trusted: get(AUTO_ACCEPT_TRUSTED)?.map(|v| v == "true"),
        })
    }

    /// Saves the values `s` sets (`None` fields are left as they are).
    pub fn save_settings(&self, s: &SavedSettings) -> Result<(), StoreError> {
        let mut rows = Vec::new();
        if let Some(n) = &s.name {
            rows.push((NAME, n.clone()));
        }
        if let Some(d) = &s.downloads {
            rows.push((DOWNLOADS, d.to_string_lossy().into_owned()));
        }
        if let Some(a) = s.auto_accept_trusted {
            rows.push((AUTO_ACCEPT_TRUSTED, a.to_string()));
        }
        self.with_tx(|tx| {
            for (k, v) in &rows {
                tx.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![k, v],
                )?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_settings_round_trip_and_apply_over_defaults() {
        let store = Store::in_memory().unwrap();
        assert_eq!(store.saved_settings().unwrap(), SavedSettings::default());
        store
            .save_settings(&SavedSettings {
                name: Some("den".into()),
                ..Default::default()
            })
            .unwrap();
        store
            .save_settings(&SavedSettings {
                downloads: Some("/tmp/in".into()),
                auto_accept_trusted: Some(false),
                ..Default::default()
            })
            .unwrap();
        let s = store.saved_settings().unwrap();
        assert_eq!(s.name.as_deref(), Some("den"));
        assert_eq!(s.downloads.as_deref(), Some(Path::new("/tmp/in")));
        assert_eq!(s.auto_accept_trusted, Some(false));
        let mut c = crate::Config::new("/tmp/x");
        s.apply(&mut c);
        assert_eq!(c.name, "den");
        assert!(!c.auto_accept_trusted);
        assert_eq!(c.downloads, Path::new("/tmp/in"));
    }
}
