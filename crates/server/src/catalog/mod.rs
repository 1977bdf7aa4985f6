//! The SQLite catalog in the data dir (`catalog.sqlite`): tokens, the
//! audit log, jobs and their sessions, proxies and agents and their enrollments. Opened in WAL mode (readers
//! never wait for the writer) with a busy timeout; the schema is brought
//! up to date by the migrations in [`migrations`] inside one transaction,
//! and a file from a newer program is refused ([`Error::CatalogTooNew`]).
//!
//! One connection behind a mutex: the server's queries are point lookups
//! and small inserts, far below what one SQLite connection serves; handlers
//! call the catalog from blocking threads (`spawn_blocking`), never on the
//! async workers.

pub mod agents;
pub mod audit;
pub mod jobs;
pub mod leases;
pub mod migrations;
pub mod proxies;
pub mod sessions;
pub mod tokens;

use crate::error::{Error, Result};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The catalog file's name in the data dir.
pub const CATALOG_FILE: &str = "catalog.sqlite";

/// The open catalog.
pub struct Catalog {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish()
    }
}

impl Catalog {
    /// Opens (creating it if needed) the catalog at `path` and migrates it
    /// to [`migrations::current_version`].
    pub fn open(path: &Path) -> Result<Catalog> {
        let err = |source| Error::Catalog {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "catalog is not in WAL mode");
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(err)?;
        migrate(&mut conn, path)?;
        Ok(Catalog {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The catalog file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection (a panicked holder does not poison it for good: the
    /// statements it ran were each atomic).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wraps a SQLite error with the catalog's path.
    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Catalog {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// The journal mode (`wal`).
    pub fn journal_mode(&self) -> Result<String> {
        self.conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

/// Applies the migrations the file lacks, each with its version bump in
/// one transaction; refuses a file newer than this program.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let err = |source| Error::Catalog {
        path: path.to_path_buf(),
        source,
    };
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    let supported = migrations::current_version();
    if found > supported {
        return Err(Error::CatalogTooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    for (i, sql) in migrations::MIGRATIONS
        .iter()
        .enumerate()
        .skip(found as usize)
    {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(path = %path.display(), version = i + 1, "catalog migrated");
    }
    Ok(())
}

/// Now, as the catalog stores times (RFC 3339, UTC, seconds).
pub(crate) fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_catalog_is_migrated_and_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join(CATALOG_FILE)).unwrap();
        assert_eq!(c.schema_version().unwrap(), migrations::current_version());
        assert_eq!(c.journal_mode().unwrap(), "wal");
    }

    #[test]
    fn a_newer_catalog_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CATALOG_FILE);
        drop(Catalog::open(&path).unwrap());
        let newer = migrations::current_version() + 1;
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let e = Catalog::open(&path).unwrap_err();
        assert!(
            matches!(e, Error::CatalogTooNew { found, .. } if found == newer),
            "{e}"
        );
        assert!(e.to_string().contains("newer than this program"), "{e}");
    }

    #[test]
    fn reopening_keeps_the_data_and_runs_no_migration_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CATALOG_FILE);
        let c = Catalog::open(&path).unwrap();
        let (_, secret) = c.create_token("keep", crate::Role::Viewer, None).unwrap();
        drop(c);
        let c = Catalog::open(&path).unwrap();
        let t = c.token_by_secret(&secret).unwrap().expect("token survives");
        assert_eq!(t.name, "keep");
    }
}
