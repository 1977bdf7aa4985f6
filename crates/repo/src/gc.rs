//! Garbage collection: mark-and-sweep with mtimes (as in Proxmox Backup
//! Server), safe beside running backups and SIGKILL at any instant.
//!
//! 1. `T0 = now`. Active writers = `writers/*` whose flock gc cannot take
//!    (entries it can lock are stale: removed). `cutoff = min(T0, oldest
//!    active writer start) - 2 s`.
//! 2. Mark: read every manifest (after the cutoff is fixed) and every index
//!    they name, and every index file of a damaged manifest. An index that
//!    does not read aborts gc with [`Error::Damaged`] naming it: deleting on
//!    incomplete marks could destroy referenced chunks (`repo repair`
//!    quarantines it; then gc runs again).
//! 3. Sweep each `chunks/<xx>` holding an EXCLUSIVE flock on its `.lock`: a
//!    chunk is unlinked only if unmarked AND its mtime < cutoff. `.tmp-*`
//!    files (chunks, indexes, manifests, registrations) and index dirs
//!    without a manifest older than the cutoff go too.
//!
//! | concurrent event                                   | why no live chunk is lost |
//! |----------------------------------------------------|---------------------------|
//! | writer active at step 1 touches/writes chunk X     | X.mtime >= writer start > cutoff |
//! | writer registers after step 1                      | its touches are > T0 > cutoff |
//! | writer commits between step 1 and 2                | its manifest is read in step 2 (and mtimes > cutoff anyway) |
//! | writer touches X while gc sweeps prefix xx         | touch holds the SHARED prefix lock: it runs before gc's stat (new mtime, kept) or after gc's unlink (X absent, so the writer writes it anew) |
//! | forget during gc                                   | chunks only become unreferenced; a later gc takes them |
//! | gc killed                                          | it only ever unlinked unreferenced old chunks and temp files |
//! | a second gc                                        | refused at once with `Busy` (`locks/gc.lock`, see lock.rs) |
//! | registration being created                         | written as `.tmp-*`, flock taken right after creating it and before the rename; gc counts a `.tmp-*` registration younger than 10 minutes as a live writer from the epoch (that run removes nothing) instead of as dead, and removes older unlocked ones |

use crate::damage::FileKind;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::layout::*;
use crate::lock::RepoLock;
use crate::repository::{dir_names, prefix_dir, Repository};
use rustix::fs::FlockOperation;
use serde::Serialize;
use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What gc did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub chunks_removed: u64,
    pub bytes_removed: u64,
    pub chunks_kept: u64,
    pub temp_files_removed: u64,
    /// Restore points whose manifest is damaged: their index files were
    /// marked all the same, so their chunks stay until `repo repair`.
    pub damaged_manifests: u64,
}

fn mtime(path: &Path) -> Result<Option<(SystemTime, u64)>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some((m.modified().at(path)?, m.len()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn remove_file(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A registration temp file younger than this may be one whose writer has
/// not taken its flock yet.
const YOUNG_REGISTRATION: Duration = Duration::from_secs(600);

/// Whether `path` was modified within [`YOUNG_REGISTRATION`] (a file gone
/// meanwhile counts as young: there is nothing to remove).
fn is_young(path: &Path) -> Result<bool> {
    Ok(match mtime(path)? {
        Some((t, _)) => SystemTime::now()
            .duration_since(t)
            .map_or(true, |age| age < YOUNG_REGISTRATION),
        None => true,
    })
}

/// Removes `.tmp-*` files in `dir` older than `cutoff`.
fn sweep_temps(dir: &Path, cutoff: SystemTime, report: &mut GcReport) -> Result<()> {
    for name in dir_names(dir)? {
        if !name.starts_with(TMP_PREFIX) {
            continue;
        }
        let path = dir.join(&name);
        if let Some((t, _)) = mtime(&path)? {
            if t < cutoff
                && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
                && remove_file(&path)?
            {
                report.temp_files_removed += 1;
            }
        }
    }
    Ok(())
}

impl Repository {
    /// Every digest any index may reference: the indexes of the intact
    /// manifests, and every index file in the index directory of a
    /// damaged manifest (its disk list is unknown, its indexes may still
    /// read). An index that does not read (or is missing for an intact
    /// manifest) could have referenced any chunk: gc then refuses to
    /// sweep, naming the files, rather than delete on incomplete marks.
    fn mark(&self, report: &mut GcReport) -> Result<HashSet<Digest>> {
        let listing = self.list_all(None)?;
        let mut live: HashSet<Digest> = HashSet::new();
        let mut unreadable = Vec::new();
        let mut mark_file = |vm: &str, id: &str, disk: &str, unreadable: &mut Vec<_>| {
            match self.load_index_file(vm, id, disk) {
                Ok(index) => live.extend(index.digests.iter().flatten().copied()),
                // Forgotten meanwhile: its chunks only became unreferenced.
                Err(_) if !self.manifest_path(vm, id).exists() => {}
                Err(e) => unreadable.push(self.point_damage(
                    FileKind::Index,
                    self.index_path(vm, id, disk),
                    format!("{vm}@{id}"),
                    &e,
                )),
            }
        };
        for m in &listing.points {
            for d in &m.disks {
                mark_file(&m.vm, &m.id, &d.name, &mut unreadable);
            }
        }
        for damaged in &listing.damaged {
            let Some((vm, id)) = damaged
                .restore_points
                .first()
                .and_then(|p| p.split_once('@'))
            else {
                continue;
            };
            report.damaged_manifests += 1;
            for name in dir_names(&self.index_dir(vm, id))? {
                if let Some(disk) = name.strip_suffix(INDEX_SUFFIX) {
                    mark_file(vm, id, disk, &mut unreadable);
                }
            }
        }
        if !unreadable.is_empty() {
            return Err(Error::Damaged {
                operation: "gc".into(),
                files: unreadable,
            });
        }
        Ok(live)
    }

    /// Start time of the oldest running backup, removing stale registrations.
    fn oldest_active_writer(&self, report: &mut GcReport) -> Result<Option<SystemTime>> {
        let dir = self.path().join(WRITERS_DIR);
        let mut oldest: Option<SystemTime> = None;
        for name in dir_names(&dir)? {
            let path = dir.join(&name);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            if name.starts_with(TMP_PREFIX) && is_young(&path)? {
                // A registration being created: its writer opens it and
                // takes the flock a moment later, so unlocked does not mean
                // dead yet. Count it as live from the epoch: this run keeps
                // everything.
                oldest = Some(SystemTime::UNIX_EPOCH);
                continue;
            }
            if fsutil::try_lock_exclusive(&file, &path)? {
                // Nobody holds it: the writer died. Remove while we hold the lock.
                if remove_file(&path)? && name.starts_with(TMP_PREFIX) {
                    report.temp_files_removed += 1;
                }
                let _ = rustix::fs::flock(&file, FlockOperation::Unlock);
                continue;
            }
            // Live: its start time, or the epoch (keep everything) if unreadable.
            let started = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("started").and_then(|s| s.as_str()).map(str::to_owned))
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            oldest = Some(oldest.map_or(started, |o| o.min(started)));
        }
        Ok(oldest)
    }

    /// Removes unreferenced chunks older than the cutoff (see the module doc).
    /// Fails at once with [`Error::Busy`] while another gc runs.
    pub fn gc(&self) -> Result<GcReport> {
        let _gc = RepoLock::acquire(self.path(), GC_LOCK, "gc", Duration::ZERO)?;
        let mut report = GcReport::default();
        let t0 = SystemTime::now();
        let oldest = self.oldest_active_writer(&mut report)?;
        let cutoff = oldest
            .map_or(t0, |o| o.min(t0))
            .checked_sub(Duration::from_secs(GC_MARGIN_SECS))
            .unwrap_or(SystemTime::UNIX_EPOCH);

        let live = self.mark(&mut report)?;

        // Orphan index dirs and temp files outside chunks/.
        self.sweep_indexes(cutoff, &mut report)?;
        let snaps = self.snapshots_dir();
        for vm in dir_names(&snaps)? {
            sweep_temps(&snaps.join(vm), cutoff, &mut report)?;
        }
        sweep_temps(self.path(), cutoff, &mut report)?;

        // Sweep.
        for i in 0..PREFIX_DIRS {
            let dir = prefix_dir(self.path(), i);
            let _lock = fsutil::ExclusiveLock::acquire(&dir.join(PREFIX_LOCK))?;
            let mut removed_here = 0u64;
            for name in dir_names(&dir)? {
                if name.starts_with(TMP_PREFIX) {
                    let path = dir.join(&name);
                    if let Some((t, _)) = mtime(&path)? {
                        if t < cutoff && remove_file(&path)? {
                            report.temp_files_removed += 1;
                        }
                    }
                    continue;
                }
                let Ok(digest) = name.parse::<Digest>() else {
                    continue; // .lock and foreign files
                };
                if live.contains(&digest) {
                    report.chunks_kept += 1;
                    continue;
                }
                let path = dir.join(&name);
                let Some((t, len)) = mtime(&path)? else {
                    continue; // removed meanwhile
                };
                if t >= cutoff {
                    report.chunks_kept += 1;
                } else if remove_file(&path)? {
                    report.chunks_removed += 1;
                    report.bytes_removed += len;
                    removed_here += 1;
                }
            }
            // Make the unlinks durable before the lock is released.
            if removed_here > 0 {
                fsutil::fsync_dir(&dir)?;
            }
        }
        Ok(report)
    }

    /// Removes index dirs whose manifest does not exist and that are older
    /// than `cutoff` (left by a crashed commit or an interrupted forget).
    fn sweep_indexes(&self, cutoff: SystemTime, report: &mut GcReport) -> Result<()> {
        let root = self.path().join(INDEXES_DIR);
        for vm in dir_names(&root)? {
            let vm_dir = root.join(&vm);
            if !vm_dir.is_dir() {
                continue;
            }
            for id in dir_names(&vm_dir)? {
                let dir = vm_dir.join(&id);
                if self.manifest_path(&vm, &id).exists() || !dir.is_dir() {
                    continue;
                }
                if self.is_marked_committed(&vm, &id) {
                    continue; // a lost manifest: damage for `repo repair`, not a leftover
                }
                sweep_temps(&dir, cutoff, report)?;
                if let Some((t, _)) = mtime(&dir)? {
                    if t < cutoff {
                        match std::fs::remove_dir_all(&dir) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(Error::io(&dir, e)),
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
