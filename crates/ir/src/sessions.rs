//! Sessions: building a session's disk stack, exporting it, listing,
//! stopping and migrating it. Methods of `service::Inner`.
//!
//! ```text
//! start:   resolve restore point → mkdir sessions/<id> → per disk:
//!            RestorePointDisk → CachedDisk → OverlayDisk::create (sparse)
//!          → session.json (last) → SessionTree::add_session_for (with the
//!          session's client list) → NBD exports (+ their client lists)
//! reopen:  session.json → same stack with OverlayDisk::open → same exports,
//!          same client lists (a list that no longer parses keeps the
//!          session closed: it is not re-opened)
//! stop:    remove exports → flush → delete the folder (or keep it with the
//!          record renamed to session.stopped.json)
//! migrate: flush → restore_to_file(overlay disk) → raw or qcow2 image,
//!          while the session keeps running
//! ```
//!
//! A migrate while the VM runs copies whatever the overlay holds at each
//! moment: shut the guest down (or pause it) first for a consistent image.

use crate::error::{Error, Result};
use crate::protocol::{DiskInfo, MigrateInfo, SessionInfo, StartRequest};
use crate::record::{
    record_path, session_dir, stopped_record_path, SessionDisk, SessionRecord, RECORD_FORMAT,
};
use crate::service::{chain, Inner};
use lifeboat_engine::{restore_to_file, NoProgress, RestoreFormat};
use lifeboat_nbd::Export;
use lifeboat_nfs::AllowList;
use lifeboat_repo::Manifest;
use lifeboat_vdisk::{OverlayDisk, ReadDisk, WriteDisk};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Read-ahead, in cache blocks (= chunks), for chunks up to 1 MiB.
const READ_AHEAD_SMALL: u32 = 8;
/// Read-ahead for larger chunks (4 MiB by default: 16 MiB ahead).
const READ_AHEAD_LARGE: u32 = 4;

/// One exported disk of a running session.
pub(crate) struct LiveDisk {
    name: String,
    overlay: Arc<OverlayDisk>,
    chunk_size: u32,
}

/// A running session.
pub(crate) struct Live {
    record: SessionRecord,
    dir: PathBuf,
    disks: Vec<LiveDisk>,
}

impl Live {
    fn nbd_name(&self, disk: &str) -> String {
        format!("{}-{disk}", self.record.id)
    }
}

/// The format of a migrate target: `format` if given, else from the
/// extension of `to` (`.qcow2` → qcow2, anything else raw).
pub fn parse_format(format: Option<&str>, to: &Path) -> Result<RestoreFormat> {
    match format {
        Some("raw") => Ok(RestoreFormat::Raw),
        Some("qcow2") => Ok(RestoreFormat::Qcow2),
        Some(other) => Err(Error::Invalid(format!(
            "unknown image format {other:?} (use raw or qcow2)"
        ))),
        None => Ok(match to.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("qcow2") => RestoreFormat::Qcow2,
            _ => RestoreFormat::Raw,
        }),
    }
}

fn format_name(f: RestoreFormat) -> &'static str {
    match f {
        RestoreFormat::Raw => "raw",
        RestoreFormat::Qcow2 => "qcow2",
    }
}

/// `<vm>-<6 hex digits>`.
fn new_session_id(vm: &str) -> Result<String> {
    let mut b = [0u8; 3];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::io("reading /dev/urandom", e))?;
    Ok(format!("{vm}-{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl Inner {
    fn manifest(&self, record: &SessionRecord) -> Result<Manifest> {
        if record.repo_id != self.repo.id() {
            return Err(Error::Invalid(format!(
                "session {} belongs to repository {}, this service serves {}",
                record.id,
                record.repo_id,
                self.repo.id()
            )));
        }
        self.repo
            .resolve(&record.restore_point)
            .map_err(|source| Error::Repo {
                path: self.repo.path().to_path_buf(),
                source,
            })
    }

    /// RestorePointDisk → CachedDisk → OverlayDisk (created or re-opened).
    fn open_disk(
        &self,
        record: &SessionRecord,
        manifest: &Manifest,
        disk: &SessionDisk,
        dir: &Path,
        create: bool,
    ) -> Result<LiveDisk> {
        let derr = |source| Error::Disk {
            session: record.id.clone(),
            source,
        };
        let rp = self
            .repo
            .open_disk(manifest, &disk.name)
            .map_err(|source| Error::Repo {
                path: self.repo.path().to_path_buf(),
                source,
            })?;
        let chunk_size = rp.index().chunk_size;
        let read_ahead = if chunk_size <= 1 << 20 {
            READ_AHEAD_SMALL
        } else {
            READ_AHEAD_LARGE
        };
        let cached: Arc<dyn ReadDisk> = Arc::new(
            rp.into_shared_chunk_cache(self.cache_budget.clone())
                .map_err(derr)?
                .with_read_ahead(read_ahead),
        );
        let path = dir.join(&disk.overlay);
        let base_id = record.base_id(&disk.name);
        let overlay = if create {
            OverlayDisk::create(cached, &base_id, &path, OverlayDisk::DEFAULT_BLOCK_SIZE)
        } else {
            OverlayDisk::open(cached, &base_id, &path)
        }
        .map_err(derr)?;
        Ok(LiveDisk {
            name: disk.name.clone(),
            overlay: Arc::new(overlay),
            chunk_size,
        })
    }

    /// Adds the session to the NFS tree (and the NBD table) and the map.
    fn attach(&self, live: Live) -> Result<()> {
        let id = live.record.id.clone();
        let disks: Vec<(String, Arc<dyn WriteDisk>)> = live
            .disks
            .iter()
            .map(|d| (d.name.clone(), d.overlay.clone() as Arc<dyn WriteDisk>))
            .collect();
        let clients = live.record.clients()?;
        self.tree
            .add_session_for(&id, &live.record.vm, disks, &live.dir, clients.clone())?;
        if live.record.nbd {
            for d in &live.disks {
                if let Some(c) = &clients {
                    self.export_clients
                        .restrict(&live.nbd_name(&d.name), c.clone());
                }
                let export = Export::writable(live.nbd_name(&d.name), d.overlay.clone())
                    .with_description(format!(
                        "{} {} (instant recovery session {id})",
                        live.record.restore_point, d.name
                    ));
                self.exports.insert(export);
            }
        }
        self.sessions_lock().insert(id, Arc::new(live));
        Ok(())
    }

    fn detach(&self, live: &Live) {
        self.tree.remove_session(&live.record.id);
        for d in &live.disks {
            self.exports.remove(&live.nbd_name(&d.name));
            self.export_clients.forget(&live.nbd_name(&d.name));
        }
        for d in &live.disks {
            if let Err(e) = d.overlay.flush() {
                self.log.line(format!(
                    "session {}: flushing {}: {}",
                    live.record.id,
                    d.name,
                    chain(&e)
                ));
            }
        }
    }

    /// Removes every session from the exports (service shutdown).
    pub(crate) fn detach_all(&self) {
        let all = std::mem::take(&mut *self.sessions_lock());
        for live in all.values() {
            self.detach(live);
        }
    }

    fn sessions_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Arc<Live>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, id: &str) -> Result<Arc<Live>> {
        self.sessions_lock()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NoSession(id.to_owned()))
    }

    pub(crate) fn start_session(&self, req: &StartRequest) -> Result<SessionInfo> {
        if let Some(repo) = &req.repo {
            if !same_file(repo, self.repo.path()) {
                return Err(Error::Invalid(format!(
                    "this service serves repository {}, not {}; run `lifeboat nfs serve --repo {}` with its own --cache-dir",
                    self.repo.path().display(),
                    repo.display(),
                    repo.display()
                )));
            }
        }
        AllowList::parse(&req.allow)?;
        let manifest = self
            .repo
            .resolve(&req.restore_point)
            .map_err(|source| Error::Repo {
                path: self.repo.path().to_path_buf(),
                source,
            })?;
        if manifest.disks.is_empty() {
            return Err(Error::Invalid(format!(
                "restore point {} has no disks",
                manifest.name()
            )));
        }
        let (id, dir) = self.new_session_dir(&manifest.vm)?;
        let record = SessionRecord {
            format: RECORD_FORMAT,
            id: id.clone(),
            repo_id: self.repo.id().to_owned(),
            restore_point: manifest.name(),
            vm: manifest.vm.clone(),
            disks: manifest
                .disks
                .iter()
                .map(|d| SessionDisk {
                    name: d.name.clone(),
                    size: d.size,
                    overlay: format!("{}.overlay", d.name),
                })
                .collect(),
            nbd: req.nbd,
            allow: req.allow.clone(),
            created: chrono::Utc::now(),
        };
        let build = || -> Result<Live> {
            let mut disks = Vec::new();
            for d in &record.disks {
                disks.push(self.open_disk(&record, &manifest, d, &dir, true)?);
            }
            record.save(&dir)?;
            Ok(Live {
                record: record.clone(),
                dir: dir.clone(),
                disks,
            })
        };
        let result = build().and_then(|live| self.attach(live));
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.log.line(format!(
            "session {id}: started from {} ({} disk(s), nbd {})",
            record.restore_point,
            record.disks.len(),
            record.nbd
        ));
        let live = self.live(&id)?;
        Ok(self.info_of(&live))
    }

    fn new_session_dir(&self, vm: &str) -> Result<(String, PathBuf)> {
        let mut last = None;
        for _ in 0..16 {
            let id = new_session_id(vm)?;
            let dir = session_dir(&self.cache_dir, &id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
            }
        }
        Err(Error::io(
            "picking a free session id",
            last.unwrap_or_else(|| std::io::Error::other("no free id")),
        ))
    }

    /// Re-opens the session recorded in `dir`; returns its id.
    pub(crate) fn reopen(&self, dir: &Path) -> Result<String> {
        let record = SessionRecord::load(dir)?;
        let manifest = self.manifest(&record)?;
        let mut disks = Vec::new();
        for d in &record.disks {
            disks.push(self.open_disk(&record, &manifest, d, dir, false)?);
        }
        let id = record.id.clone();
        self.attach(Live {
            record,
            dir: dir.to_path_buf(),
            disks,
        })?;
        Ok(id)
    }

    fn info_of(&self, live: &Live) -> SessionInfo {
        let files = self.tree.disk_files(&live.record.id).unwrap_or_default();
        let disks = live
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| DiskInfo {
                name: d.name.clone(),
                file: files.get(i).cloned().unwrap_or_default(),
                size: d.overlay.size(),
                overlay: d.overlay.overlay_path().to_path_buf(),
                overlay_bytes: d
                    .overlay
                    .allocated_ranges()
                    .iter()
                    .map(|(a, b)| b.saturating_sub(*a))
                    .sum(),
                nbd_export: live.record.nbd.then(|| live.nbd_name(&d.name)),
            })
            .collect();
        SessionInfo {
            id: live.record.id.clone(),
            restore_point: live.record.restore_point.clone(),
            vm: live.record.vm.clone(),
            created: live.record.created,
            nbd: live.record.nbd,
            allow: live.record.allow.clone(),
            disks,
            nfs_dir: format!(
                "{}/{}",
                self.info.export_path.trim_end_matches('/'),
                live.record.id
            ),
            service: self.info.clone(),
        }
    }

    pub(crate) fn list(&self) -> Vec<SessionInfo> {
        let all: Vec<Arc<Live>> = self.sessions_lock().values().cloned().collect();
        all.iter().map(|l| self.info_of(l)).collect()
    }

    pub(crate) fn stop_session(&self, id: &str, keep_overlay: bool) -> Result<()> {
        let live = self
            .sessions_lock()
            .remove(id)
            .ok_or_else(|| Error::NoSession(id.to_owned()))?;
        self.detach(&live);
        let dir = live.dir.clone();
        drop(live);
        if keep_overlay {
            std::fs::rename(record_path(&dir), stopped_record_path(&dir))
                .map_err(|e| Error::io(format!("keeping {}", dir.display()), e))?;
            self.log.line(format!(
                "session {id}: stopped, overlay kept in {}",
                dir.display()
            ));
        } else {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
            self.log
                .line(format!("session {id}: stopped, overlay deleted"));
        }
        Ok(())
    }

    /// Writes base + overlay of every disk of session `id` to `to` (one
    /// disk) or `<stem>-<disk>.<ext>` beside it (several disks).
    pub(crate) fn migrate(
        &self,
        id: &str,
        to: &Path,
        format: Option<&str>,
    ) -> Result<Vec<MigrateInfo>> {
        let live = self.live(id)?;
        let fmt = parse_format(format, to)?;
        if !to.is_absolute() {
            return Err(Error::Invalid(format!(
                "migrate target {} must be an absolute path",
                to.display()
            )));
        }
        let targets: Vec<PathBuf> = if live.disks.len() == 1 {
            vec![to.to_path_buf()]
        } else {
            let stem = to.file_stem().and_then(|s| s.to_str()).unwrap_or("disk");
            let ext = to.extension().and_then(|s| s.to_str()).unwrap_or("raw");
            live.disks
                .iter()
                .map(|d| to.with_file_name(format!("{stem}-{}.{ext}", d.name)))
                .collect()
        };
        for t in &targets {
            if std::fs::metadata(t).is_ok_and(|m| m.is_file()) {
                return Err(Error::Invalid(format!(
                    "{} exists; remove it or pick another --to",
                    t.display()
                )));
            }
        }
        let mut out = Vec::new();
        for (d, path) in live.disks.iter().zip(&targets) {
            let started = Instant::now();
            d.overlay.flush().map_err(|source| Error::Disk {
                session: id.to_owned(),
                source,
            })?;
            let summary = restore_to_file(
                d.overlay.as_ref(),
                path,
                fmt,
                u64::from(d.chunk_size),
                &NoProgress,
            )
            .map_err(|source| Error::Migrate {
                session: id.to_owned(),
                path: path.clone(),
                source: Box::new(source),
            })?;
            self.log.line(format!(
                "session {id}: migrated {} to {} ({})",
                d.name,
                path.display(),
                format_name(fmt)
            ));
            out.push(MigrateInfo {
                session: id.to_owned(),
                disk: d.name.clone(),
                path: path.clone(),
                format: format_name(fmt).into(),
                size: summary.size,
                bytes_written: summary.bytes_written,
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_flag_or_the_extension() {
        let q = Path::new("/v/a.QCOW2");
        assert_eq!(parse_format(None, q).unwrap(), RestoreFormat::Qcow2);
        assert_eq!(
            parse_format(None, Path::new("/v/a.img")).unwrap(),
            RestoreFormat::Raw
        );
        assert_eq!(parse_format(Some("raw"), q).unwrap(), RestoreFormat::Raw);
        assert!(parse_format(Some("vmdk"), q).is_err());
    }

    #[test]
    fn session_ids_are_named_after_the_vm() {
        let a = new_session_id("web01").unwrap();
        assert!(
            a.starts_with("web01-") && a.len() == "web01-".len() + 6,
            "{a}"
        );
    }
}
