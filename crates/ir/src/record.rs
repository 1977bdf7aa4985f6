//! `session.json`: what the service needs to re-open a session after a
//! restart, and the paths of the cache folder.
//!
//! ```text
//! {"format":1,"id":"web01-3f2a1c","repo_id":"...","restore_point":"web01@2026...",
//!  "vm":"web01","disks":[{"name":"disk0","size":1073741824,"overlay":"disk0.overlay"}],
//!  "nbd":true,"allow":["10.0.0.5"],"created":"2026-11-22T11:09:30Z"}
//! ```
//!
//! The record is written last when a session starts (temporary file,
//! fsync, rename), so a folder without one is a session that never
//! finished starting. `stop --keep-overlay` renames it to
//! `session.stopped.json`: the overlay and the record stay, the session is
//! not re-opened.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the record format.
pub const RECORD_FORMAT: u32 = 1;
/// Largest record read back.
const MAX_RECORD: u64 = 1 << 20;

/// One disk of a session record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDisk {
    pub name: String,
    pub size: u64,
    /// Overlay file name inside the session folder.
    pub overlay: String,
}

/// The persisted description of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub format: u32,
    pub id: String,
    pub repo_id: String,
    /// `vm@id` (exact, never `latest`).
    pub restore_point: String,
    pub vm: String,
    pub disks: Vec<SessionDisk>,
    pub nbd: bool,
    pub allow: Vec<String>,
    pub created: DateTime<Utc>,
}

/// `<cache>/sessions`.
pub(crate) fn sessions_dir(cache: &Path) -> PathBuf {
    cache.join("sessions")
}

/// `<cache>/sessions/<id>`.
pub(crate) fn session_dir(cache: &Path, id: &str) -> PathBuf {
    sessions_dir(cache).join(id)
}

pub(crate) fn record_path(dir: &Path) -> PathBuf {
    dir.join("session.json")
}

pub(crate) fn stopped_record_path(dir: &Path) -> PathBuf {
    dir.join("session.stopped.json")
}

impl SessionRecord {
    /// The clients this session admits: `None` when `allow` is empty (every
    /// client the service allows), else the parsed list.
    pub fn clients(&self) -> Result<Option<lifeboat_nfs::AllowList>> {
        if self.allow.is_empty() {
            return Ok(None);
        }
        Ok(Some(lifeboat_nfs::AllowList::parse(&self.allow)?))
    }

    /// The overlay's base identity: `<repo id>/<vm>@<id>/<disk>`.
    pub fn base_id(&self, disk: &str) -> String {
        format!("{}/{}/{disk}", self.repo_id, self.restore_point)
    }

    /// Writes the record into session folder `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = record_path(dir);
        let tmp = dir.join("session.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Record {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Reads the record of session folder `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = record_path(dir);
        let bad = |reason: String| Error::Record {
            path: path.clone(),
            reason,
        };
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        if len > MAX_RECORD {
            return Err(bad(format!("{len} bytes, more than {MAX_RECORD}")));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let rec: SessionRecord = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if rec.format != RECORD_FORMAT {
            return Err(bad(format!("format {} is not {RECORD_FORMAT}", rec.format)));
        }
        let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if rec.id != dir_name {
            return Err(bad(format!(
                "names session {:?} in folder {dir_name:?}",
                rec.id
            )));
        }
        for d in &rec.disks {
            if d.overlay.contains('/') || d.overlay.starts_with('.') || d.overlay.is_empty() {
                return Err(bad(format!(
                    "overlay name {:?} is not a plain file name",
                    d.overlay
                )));
            }
        }
        Ok(rec)
    }

    /// Session folders under `<cache>/sessions` that hold a record, sorted.
    pub(crate) fn scan(cache: &Path) -> Result<Vec<PathBuf>> {
        let dir = sessions_dir(cache);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        let mut out: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| record_path(p).is_file())
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> SessionRecord {
        SessionRecord {
            format: RECORD_FORMAT,
            id: id.into(),
            repo_id: "r1".into(),
            restore_point: "web01@x".into(),
            vm: "web01".into(),
            disks: vec![SessionDisk {
                name: "disk0".into(),
                size: 4096,
                overlay: "disk0.overlay".into(),
            }],
            nbd: false,
            allow: vec![],
            created: Utc::now(),
        }
    }

    #[test]
    fn the_client_list_is_persisted_and_parsed_back() {
        let cache = tempfile::tempdir().unwrap();
        let dir = session_dir(cache.path(), "s2");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(rec("s2").clients().unwrap(), None, "empty: no list");
        let mut r = rec("s2");
        r.allow = vec!["127.0.0.1".into(), "10.0.0.0/24".into()];
        r.save(&dir).unwrap();
        let back = SessionRecord::load(&dir).unwrap();
        let clients = back.clients().unwrap().unwrap();
        assert!(clients.allows("10.0.0.77".parse().unwrap()));
        assert!(!clients.allows("10.9.9.9".parse().unwrap()));
        r.allow = vec!["not-an-address".into()];
        assert!(r.clients().is_err(), "a bad entry never opens the session");
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let cache = tempfile::tempdir().unwrap();
        let dir = session_dir(cache.path(), "s1");
        std::fs::create_dir_all(&dir).unwrap();
        let r = rec("s1");
        r.save(&dir).unwrap();
        assert_eq!(SessionRecord::load(&dir).unwrap(), r);
        assert_eq!(r.base_id("disk0"), "r1/web01@x/disk0");
        assert_eq!(
            SessionRecord::scan(cache.path()).unwrap(),
            vec![dir.clone()]
        );

        rec("other").save(&dir).unwrap();
        assert!(SessionRecord::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("other"));
        let mut evil = rec("s1");
        evil.disks[0].overlay = "../../etc/passwd".into();
        evil.save(&dir).unwrap();
        assert!(SessionRecord::load(&dir).is_err());
        std::fs::write(record_path(&dir), b"{not json").unwrap();
        assert!(SessionRecord::load(&dir).is_err());
        std::fs::write(record_path(&dir), b"").unwrap();
        assert!(SessionRecord::load(&dir).is_err());
    }
}
