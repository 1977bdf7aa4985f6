//! [`BackupWriter`]: stores chunks and commits a restore point.
//!
//! Write order: each new chunk is *staged*: written (no fsync; with
//! `O_DIRECT` from a per-thread aligned buffer, see
//! [`fsutil::write_new_unsynced`]) as `chunks/<xx>/.tmp-<tag>-<digest>`,
//! a name no other backup dedups against. At commit the staged files are
//! fsynced together on a few threads, then renamed to their chunk names,
//! and the prefix directories that gained or reused a chunk are fsynced;
//! then the indexes are written (temp + fsync + rename, directory fsync)
//! and last the manifest (same). Until the manifest's rename, nothing of
//! the new restore point is visible.
//!
//! Why staging: a chunk file under its final name is always durable (it
//! was fsynced before the rename), so a backup that finds it present may
//! reuse it. Had chunks been renamed into place unsynced, a backup that
//! never committed (power loss) could leave a torn chunk behind that the
//! next backup dedups against, or a running backup could reuse another's
//! unsynced chunk, commit, and lose it with the other's crash. The cost:
//! two backups running at once may both store a chunk neither has
//! committed yet (the second rename replaces identical bytes).
//!
//! GC interplay (see gc.rs for the whole table): a writer registers as
//! `writers/<uuid>` holding an exclusive flock on it, its start time inside
//! (written under a `.tmp-*` name and renamed, so gc never sees an unlocked
//! live registration). A chunk found present is *touched* (mtime = now)
//! instead of written. The exists-check + touch, and the rename of a new
//! chunk, run under a SHARED flock on `chunks/<xx>/.lock`; gc's sweep holds
//! it EXCLUSIVELY while it stats and unlinks. flock belongs to the open file
//! description, which all threads of this writer share, so an in-process
//! counter takes the shared lock for the first thread in and drops it after
//! the last one out.

use crate::blob::{self, BlobKind};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::layout::*;
use crate::model::{check_name, new_id, DiskEntry, DiskIndex, DiskStats, Manifest, SourceFormat};
use crate::repository::{prefix_dir, Repository};
use chrono::{DateTime, Utc};
use rustix::fs::{AtFlags, FlockOperation, Timespec, Timestamps, UTIME_NOW};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

thread_local! {
    /// Each worker thread's chunk blob buffer, reused for every chunk it
    /// stores (a fresh ~4 MiB buffer per chunk costs page faults).
    static CHUNK_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The largest body of a blob of `plain_len` bytes: zstd's bound (an
/// incompressible payload is stored as is, which is smaller) plus the tag.
fn max_blob_body(plain_len: usize) -> usize {
    zstd::zstd_safe::compress_bound(plain_len) + TAG_LEN
}

/// Writes the blob `fill` appends (at most `max_len` bytes) to the new
/// file `path` from this thread's chunk buffer, padded so the blob starts
/// on an `O_DIRECT` boundary (the capacity covers `max_len`, so filling
/// never moves the buffer); returns the blob's length.
fn write_aligned(
    path: &Path,
    max_len: usize,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<usize> {
    CHUNK_BUF.with(|cell| {
        let busy = || Error::invalid("backup writer", "chunk buffer of this thread in use");
        let mut buf = cell.try_borrow_mut().map_err(|_| busy())?;
        buf.clear();
        buf.reserve(fsutil::DIRECT_ALIGN + max_len);
        // (align_offset may in principle refuse: then write unaligned,
        // which fsutil does through the page cache.)
        let pad = Some(buf.as_ptr().align_offset(fsutil::DIRECT_ALIGN))
            .filter(|&p| p < fsutil::DIRECT_ALIGN)
            .unwrap_or(0);
        buf.resize(pad, 0);
        fill(&mut buf)?;
        let blob = buf.get(pad..).unwrap_or_default();
        fsutil::write_new_unsynced(path, blob)?;
        Ok(blob.len())
    })
}

/// What `store_chunk` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The chunk was new and is now stored in `stored_bytes` bytes on disk.
    New { stored_bytes: u64 },
    /// The chunk was already in the repository (now marked live for gc).
    Existing,
}

/// One disk of a restore point being committed (in JSON too: a proxy's
/// upload sends its disks so).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDisk {
    pub name: String,
    /// Where the disk came from, e.g. `qcow2 /vms/a.qcow2`.
    pub source: String,
    pub index: DiskIndex,
    pub stats: DiskStats,
    /// How an image file was read (`None`: not an image file).
    #[serde(default)]
    pub format: Option<SourceFormat>,
    /// How a running VM's disk was read (`None`: not a live backup).
    #[serde(default)]
    pub live: Option<crate::model::LiveRead>,
}

/// A shared flock on one prefix lock file, counted across this process's threads.
struct PrefixLock {
    file: File,
    path: PathBuf,
    holders: Mutex<u32>,
}

struct SharedGuard<'a>(&'a PrefixLock);

impl PrefixLock {
    fn shared(&self) -> Result<SharedGuard<'_>> {
        let mut n = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        if *n == 0 {
            fsutil::flock(&self.file, FlockOperation::LockShared, &self.path)?;
        }
        *n += 1;
        Ok(SharedGuard(self))
    }
}

impl Drop for SharedGuard<'_> {
    fn drop(&mut self) {
        let mut n = self.0.holders.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            let _ = rustix::fs::flock(&self.0.file, FlockOperation::Unlock);
        }
    }
}

/// A running backup. `Sync`: `store_chunk` is called from many threads.
/// Dropping it without `commit` abandons the backup (no restore point).
pub struct BackupWriter {
    repo: Repository,
    registration: File,
    registration_path: PathBuf,
    started: DateTime<Utc>,
    prefixes: Vec<PrefixLock>,
    /// Prefix dirs that received a new chunk: fsynced at commit.
    dirty: Vec<AtomicBool>,
    /// New chunks of this backup, staged under [`BackupWriter::staged_path`]
    /// until commit renames them into place (and empties the set; what is
    /// left when the writer is dropped is removed).
    staged: Mutex<HashSet<Digest>>,
    /// Names this writer's staged files (from its registration name).
    tag: String,
}

impl std::fmt::Debug for BackupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupWriter")
            .field("registration", &self.registration_path)
            .field("started", &self.started)
            .finish()
    }
}

/// Sets a file's atime and mtime to now; `Ok(false)` when it does not exist.
pub(crate) fn touch(path: &Path) -> Result<bool> {
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    };
    let times = Timestamps {
        last_access: now,
        last_modification: now,
    };
    match rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(Error::io(path, e.into())),
    }
}

impl Repository {
    /// Starts a backup: registers a running writer (for gc safety) and
    /// opens the 256 prefix lock files.
    pub fn begin_backup(&self) -> Result<BackupWriter> {
        let started = Utc::now();
        let dir = self.path().join(WRITERS_DIR);
        let tmp = fsutil::temp_path(&dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .at(&tmp)?;
        if !fsutil::try_lock_exclusive(&file, &tmp)? {
            return Err(Error::invalid(
                tmp.display(),
                "fresh registration file is locked by someone else",
            ));
        }
        let info = serde_json::json!({ "started": started, "pid": std::process::id() });
        file.write_all(info.to_string().as_bytes()).at(&tmp)?;
        let registration_path = dir.join(fsutil::random_hex(32)?);
        if let Err(e) = std::fs::rename(&tmp, &registration_path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&registration_path, e));
        }
        let tag = registration_path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.chars().take(16).collect())
            .unwrap_or_default();
        let mut writer = BackupWriter {
            repo: self.clone(),
            registration: file,
            registration_path,
            started,
            prefixes: Vec::with_capacity(PREFIX_DIRS),
            dirty: (0..PREFIX_DIRS).map(|_| AtomicBool::new(false)).collect(),
            staged: Mutex::new(HashSet::new()),
            tag,
        };
        for i in 0..PREFIX_DIRS {
            let path = prefix_dir(self.path(), i).join(PREFIX_LOCK);
            writer.prefixes.push(PrefixLock {
                file: fsutil::open_lock_file(&path)?,
                path,
                holders: Mutex::new(0),
            });
        }
        Ok(writer)
    }
}

impl BackupWriter {
    /// When this backup started (the registration's time).
    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }

    fn prefix(&self, digest: &Digest) -> Result<&PrefixLock> {
        self.prefixes
            .get(digest.prefix())
            .ok_or_else(|| Error::invalid("backup writer", "prefix lock missing"))
    }

    /// The repository this backup writes to.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Stores a chunk. If it exists (committed by an earlier backup, or
    /// staged by this one), marks it live for gc and returns `Existing`
    /// without compressing; otherwise compresses, encrypts and stages it
    /// (renamed into place and made durable at commit). `digest` must be
    /// `repo.digest(plain)` (checked in debug builds: hashing twice costs
    /// a second of a 8 GiB backup).
    pub fn store_chunk(&self, digest: &Digest, plain: &[u8]) -> Result<Stored> {
        if self.reuse_chunk(digest)? {
            return Ok(Stored::Existing);
        }
        if plain.len() > MAX_CHUNK_SIZE as usize {
            return Err(Error::invalid(
                format!("chunk {digest}"),
                format!(
                    "{} bytes exceeds the maximum chunk size {MAX_CHUNK_SIZE}",
                    plain.len()
                ),
            ));
        }
        debug_assert_eq!(
            self.repo.digest(plain),
            *digest,
            "store_chunk called with a digest that is not the data's"
        );
        self.stage(digest, |staged| {
            write_aligned(
                staged,
                BLOB_HEADER_LEN + max_blob_body(plain.len()),
                |buf| {
                    blob::encode_into(
                        BlobKind::Chunk,
                        self.repo.keys(),
                        self.repo.zstd_level(),
                        &digest.0,
                        plain,
                        buf,
                    )
                    .map_err(|e| Error::invalid(format!("chunk {digest}"), e))
                },
            )
        })
    }

    /// Stores a chunk blob encoded elsewhere (by a proxy, with
    /// [`crate::ChunkEncoder`]) as [`BackupWriter::store_chunk`] stores one
    /// it encodes: `Existing` when the repository has chunk `digest`,
    /// else the blob is staged. The blob's header, kind, encryption flag
    /// and lengths are checked against this repository (its payload at
    /// most the chunk size); its body is not decrypted and its digest not
    /// recomputed: a blob that does not hold `digest`'s data is found by
    /// `verify`, as a damaged chunk.
    pub fn store_encoded(&self, digest: &Digest, encoded: &[u8]) -> Result<Stored> {
        blob::check_chunk(
            encoded,
            self.repo.encrypted(),
            u64::from(self.repo.chunk_size()),
        )
        .map_err(|e| Error::invalid(format!("uploaded chunk {digest}"), e))?;
        if self.reuse_chunk(digest)? {
            return Ok(Stored::Existing);
        }
        // Copied to an aligned buffer: written with O_DIRECT like the
        // chunks this writer encodes, not through the page cache.
        self.stage(digest, |staged| {
            write_aligned(staged, encoded.len(), |buf| {
                buf.extend_from_slice(encoded);
                Ok(())
            })
        })
    }

    /// Stages new chunk `digest` through `write` (given the staged path,
    /// it writes the blob and returns its length). Claimed first: another
    /// thread of this backup meeting the same chunk meanwhile takes it as
    /// existing (it is, by commit time); a failed write gives the claim
    /// back.
    fn stage(&self, digest: &Digest, write: impl FnOnce(&Path) -> Result<usize>) -> Result<Stored> {
        if !self.staged_set().insert(*digest) {
            return Ok(Stored::Existing);
        }
        match write(&self.staged_path(digest)) {
            Ok(n) => Ok(Stored::New {
                stored_bytes: n as u64,
            }),
            Err(e) => {
                self.staged_set().remove(digest);
                Err(e)
            }
        }
    }

    /// The chunks `disks` refer to that neither this backup staged nor
    /// the repository holds (each one held is marked live for gc, as
    /// [`BackupWriter::reuse_chunk`] does): a commit of indexes written
    /// elsewhere checks this is empty first.
    pub fn missing_chunks(&self, disks: &[NewDisk]) -> Result<Vec<Digest>> {
        let mut seen = HashSet::new();
        let mut missing = Vec::new();
        for d in disks.iter().flat_map(|d| d.index.digests.iter().flatten()) {
            if seen.insert(*d) && !self.reuse_chunk(d)? {
                missing.push(*d);
            }
        }
        Ok(missing)
    }

    /// Marks an existing chunk live for gc without its data (for
    /// incremental backups that reuse digests of a previous index without
    /// reading the disk). Returns `false` when the chunk is not in the
    /// repository: the caller must then read and store it. A chunk staged
    /// by this backup counts as present.
    pub fn reuse_chunk(&self, digest: &Digest) -> Result<bool> {
        if self.staged_set().contains(digest) {
            return Ok(true);
        }
        let lock = self.prefix(digest)?;
        let _g = lock.shared()?;
        let present = touch(&self.repo.chunk_path(digest))?;
        if present {
            // The directory entry may be another backup's rename that its
            // commit has not fsynced yet: commit fsyncs this directory.
            self.mark_dirty(digest);
        }
        Ok(present)
    }

    fn staged_set(&self) -> std::sync::MutexGuard<'_, HashSet<Digest>> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where this backup stages chunk `digest` until commit.
    fn staged_path(&self, digest: &Digest) -> PathBuf {
        prefix_dir(self.repo.path(), digest.prefix()).join(format!(
            "{TMP_PREFIX}{}-{}",
            self.tag,
            digest.to_hex()
        ))
    }

    fn mark_dirty(&self, digest: &Digest) {
        if let Some(flag) = self.dirty.get(digest.prefix()) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Makes the staged chunks durable and renames them into place.
    fn publish_staged(&self) -> Result<()> {
        let staged: Vec<Digest> = self.staged_set().iter().copied().collect();
        let paths: Vec<PathBuf> = staged.iter().map(|d| self.staged_path(d)).collect();
        fsutil::fsync_files(&paths)?;
        for (digest, tmp) in staged.iter().zip(&paths) {
            let path = self.repo.chunk_path(digest);
            let lock = self.prefix(digest)?;
            let _g = lock.shared()?;
            std::fs::rename(tmp, &path).at(&path)?;
            self.mark_dirty(digest);
        }
        // All in place: nothing left for drop to clean up.
        self.staged_set().clear();
        Ok(())
    }

    /// Writes the indexes, then the manifest, and ends the backup. The
    /// restore point's time (and id) is the time the backup started.
    pub fn commit(self, vm: &str, disks: Vec<NewDisk>) -> Result<Manifest> {
        let started = self.started;
        self.commit_at(vm, disks, started)
    }

    /// [`BackupWriter::commit`] with an explicit restore point time: for
    /// tests (retention with synthetic times) and imports only.
    pub fn commit_at(self, vm: &str, disks: Vec<NewDisk>, time: DateTime<Utc>) -> Result<Manifest> {
        self.commit_with(vm, disks, time, None, None)
    }

    /// [`BackupWriter::commit`] of a live backup: the manifest records how
    /// consistent the point in time is.
    pub fn commit_consistent(
        self,
        vm: &str,
        disks: Vec<NewDisk>,
        consistency: crate::model::Consistency,
    ) -> Result<Manifest> {
        let started = self.started;
        self.commit_with(vm, disks, started, None, Some(consistency))
    }

    /// [`BackupWriter::commit_at`] of a restore point `repo repair
    /// --salvage` writes: the salvage record is in its manifest from the
    /// start, so it is never visible without it.
    pub(crate) fn commit_with(
        self,
        vm: &str,
        disks: Vec<NewDisk>,
        time: DateTime<Utc>,
        salvage: Option<crate::salvage::Salvage>,
        consistency: Option<crate::model::Consistency>,
    ) -> Result<Manifest> {
        check_name(vm)?;
        let mut seen = HashSet::new();
        for d in &disks {
            check_name(&d.name)?;
            if !seen.insert(d.name.as_str()) {
                return Err(Error::InvalidName {
                    name: d.name.clone(),
                    reason: "two disks of one restore point have this name".into(),
                });
            }
            d.index
                .check()
                .map_err(|e| Error::invalid(format!("index of disk {}", d.name), e))?;
        }
        // Chunks were staged without fsync: make them all durable at once,
        // then give them their names, before anything refers to them.
        self.publish_staged()?;
        // The prefix directories that gained a name, fsynced together
        // (one by one they cost a journal commit each: 4 ms apiece here).
        let dirty: Vec<PathBuf> = (0..self.dirty.len())
            .filter(|&i| self.dirty[i].load(Ordering::Relaxed))
            .map(|i| prefix_dir(self.repo.path(), i))
            .collect();
        fsutil::fsync_files(&dirty)?;
        let vm_index_dir = self.repo.path().join(INDEXES_DIR).join(vm);
        std::fs::create_dir_all(&vm_index_dir).at(&vm_index_dir)?;
        let id = self.reserve_id(vm, time)?;
        let index_dir = self.repo.index_dir(vm, &id);
        let result = self.write_restore_point(vm, &id, time, disks, salvage, consistency);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&index_dir);
        }
        result
    }

    /// Picks a fresh id and claims it by creating its index directory.
    fn reserve_id(&self, vm: &str, time: DateTime<Utc>) -> Result<String> {
        for _ in 0..64 {
            let id = new_id(time)?;
            let dir = self.repo.index_dir(vm, &id);
            if self.repo.manifest_path(vm, &id).exists() {
                continue;
            }
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        Err(Error::invalid(
            format!("restore point of {vm}"),
            "could not find a free restore point id",
        ))
    }

    fn write_restore_point(
        &self,
        vm: &str,
        id: &str,
        time: DateTime<Utc>,
        disks: Vec<NewDisk>,
        salvage: Option<crate::salvage::Salvage>,
        consistency: Option<crate::model::Consistency>,
    ) -> Result<Manifest> {
        let repo = &self.repo;
        let index_dir = repo.index_dir(vm, id);
        let mut entries = Vec::with_capacity(disks.len());
        for d in disks {
            let path = index_dir.join(format!("{}{INDEX_SUFFIX}", d.name));
            let context = format!("{vm}@{id}/{}", d.name);
            let blob = blob::encode(
                BlobKind::Index,
                repo.keys(),
                repo.zstd_level(),
                context.as_bytes(),
                &d.index.encode(),
            )
            .map_err(|e| Error::invalid(path.display(), e))?;
            let tmp = fsutil::write_temp(&index_dir, &blob)?;
            std::fs::rename(&tmp, &path).at(&path)?;
            entries.push(DiskEntry {
                name: d.name,
                size: d.index.disk_size,
                chunk_size: d.index.chunk_size,
                source: d.source,
                stats: d.stats,
                format: d.format,
                live: d.live,
            });
        }
        fsutil::fsync_dir(&index_dir)?;
        if let Some(parent) = index_dir.parent() {
            fsutil::fsync_dir(parent)?;
        }
        let snap_dir = repo.snapshots_dir().join(vm);
        std::fs::create_dir_all(&snap_dir).at(&snap_dir)?;
        fsutil::fsync_dir(&repo.snapshots_dir())?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            vm: vm.to_string(),
            id: id.to_string(),
            time,
            disks: entries,
            locked_until: None,
            scan: None,
            salvage,
            consistency,
        };
        repo.write_manifest(&manifest)?;
        // Best effort: the restore point exists now; the marker only lets a
        // later verify tell a lost manifest from a backup that never committed.
        if let Err(e) = repo.mark_committed(vm, id) {
            tracing::warn!(restore_point = %manifest.name(), error = %e, "could not write the committed marker");
        }
        Ok(manifest)
    }
}

impl Drop for BackupWriter {
    /// Unregisters: unlink first, then the lock goes with the file handle.
    fn drop(&mut self) {
        // A backup that ends without committing leaves no staged chunk
        // behind (after a kill, gc removes them once the writer is gone).
        for digest in self.staged_set().iter() {
            let _ = std::fs::remove_file(self.staged_path(digest));
        }
        let _ = std::fs::remove_file(&self.registration_path);
        let _ = rustix::fs::flock(&self.registration, FlockOperation::Unlock);
    }
}
