//! [`Repository`]: opening and creating a repository, reading chunks,
//! indexes and manifests, listing and resolving restore points, retention
//! locks and forget. Writing lives in `writer.rs`, prune in `prune.rs`, gc
//! in `gc.rs`, verify in `verify.rs`.
//!
//! Manifest changes (lock, scan records, forget, prune) serialise on the
//! repository lock `locks/snapshots.lock` (see `lock.rs`), so "check the
//! lock, then delete" cannot race a concurrent `lock` extending it, and a
//! scan record and a lock written at the same time both survive. A process
//! that cannot take it within [`Repository::with_lock_wait`] gets
//! [`Error::Busy`] naming the holder.

use crate::blob::{self, BlobKind};
use crate::config::{check_kdf, check_zstd_level, Config, EncryptionConfig, Unlocked};
use crate::crypto::{ChunkKeys, KdfParams, Keys};
use crate::digest::Digest;
use crate::disk::{ChunkReader, RestorePointDisk};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::keyslot::{self, KeySlot};
use crate::layout::*;
use crate::lock::RepoLock;
use crate::model::{DiskIndex, Manifest, ScanRecord};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a manifest change waits for the repository lock by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);
/// How long opening a legacy repository waits for the lock to add the MAC.
const UPGRADE_LOCK_WAIT: Duration = Duration::from_secs(1);

/// How to create a repository. `Debug` does not show the passphrase.
#[derive(Clone)]
pub struct InitOptions {
    /// `None` creates an unencrypted repository (`--no-encryption`).
    pub passphrase: Option<String>,
    pub chunk_size: u32,
    pub zstd_level: i32,
}

impl InitOptions {
    /// Defaults for chunk size and compression with the given passphrase.
    pub fn new(passphrase: Option<String>) -> Self {
        InitOptions {
            passphrase,
            chunk_size: DEFAULT_CHUNK_SIZE,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

impl std::fmt::Debug for InitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOptions")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("chunk_size", &self.chunk_size)
            .field("zstd_level", &self.zstd_level)
            .finish()
    }
}

pub(crate) struct Inner {
    pub path: PathBuf,
    pub config: Config,
    pub keys: Option<Keys>,
    /// The key-encryption key the passphrase gave (see
    /// [`Repository::unlock_secret_hex`]).
    pub kek: Option<[u8; 32]>,
    /// The master secret (checks and writes key slots, see keys.rs).
    pub master: Option<[u8; MASTER_KEY_LEN]>,
    /// The key wrap `kek` opened (of the config or of a key slot).
    pub wrap: Option<EncryptionConfig>,
}

/// The repository-wide locks (`locks/`, see [`Repository::hold_lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryLock {
    /// `locks/snapshots.lock`: lock, scan records, forget, prune.
    Manifests,
    /// `locks/gc.lock`: gc.
    Gc,
}

/// A repository lock held until dropped.
pub struct LockGuard {
    _lock: RepoLock,
}

/// A repository on a local directory. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Repository {
    pub(crate) inner: Arc<Inner>,
    /// How long manifest changes wait for `locks/snapshots.lock`.
    lock_wait: Duration,
    /// Whether a chunk that fails authentication on read is quarantined
    /// (see [`Repository::with_heal_on_read`]).
    heal_on_read: bool,
    /// The zstd level this handle writes with instead of the configured one
    /// (see [`Repository::with_compression_level`]).
    compression_level: Option<i32>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("path", &self.inner.path)
            .field("encrypted", &self.encrypted())
            .finish()
    }
}

impl Repository {
    /// Creates a repository at `path` (which must not exist or be an empty
    /// directory) with the default, strong Argon2id parameters.
    pub fn init(path: &Path, opts: InitOptions) -> Result<Repository> {
        Self::init_with_kdf(path, opts, KdfParams::default())
    }

    /// [`Repository::init`] with explicit Argon2id parameters (tests use
    /// [`KdfParams::insecure_for_tests`]; imports may keep foreign ones).
    pub fn init_with_kdf(path: &Path, opts: InitOptions, kdf: KdfParams) -> Result<Repository> {
        if opts.passphrase.is_some() {
            check_kdf(&kdf).map_err(|detail| Error::KdfRefused {
                path: path.into(),
                detail,
            })?;
        }
        match std::fs::read_dir(path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::AlreadyExists { path: path.into() });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).at(path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(Error::AlreadyExists { path: path.into() });
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        let (config, unlocked) = Config::new(
            opts.chunk_size,
            opts.zstd_level,
            opts.passphrase.as_deref(),
            kdf,
        )?;
        for d in [
            INDEXES_DIR,
            SNAPSHOTS_DIR,
            WRITERS_DIR,
            LOCKS_DIR,
            CHUNKS_DIR,
            KEYS_DIR,
        ] {
            std::fs::create_dir(path.join(d)).at(path.join(d))?;
        }
        for i in 0..PREFIX_DIRS {
            let dir = prefix_dir(path, i);
            std::fs::create_dir(&dir).at(&dir)?;
            fsutil::open_lock_file(&dir.join(PREFIX_LOCK))?;
        }
        fsutil::open_lock_file(&path.join(LOCKS_DIR).join(SNAPSHOTS_LOCK))?;
        rustix::fs::sync(); // the 256 directories, cheaply, before the slot and the config make it a repository
        KeySlot::new(&config, unlocked.as_ref().map(|u| &u.master))?.save(path)?;
        config.save(path)?;
        Ok(Self::unlocked(path, config, unlocked))
    }

    /// A repository from its config and, when encrypted, its keys with the
    /// key-encryption key that unwrapped them.
    fn unlocked(path: &Path, config: Config, unlocked: Option<Unlocked>) -> Repository {
        let (keys, kek, master, wrap) = match unlocked {
            Some(u) => (Some(u.keys), Some(u.kek), Some(u.master), Some(u.wrap)),
            None => (None, None, None, None),
        };
        Repository {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                config,
                keys,
                kek,
                master,
                wrap,
            }),
            lock_wait: DEFAULT_LOCK_WAIT,
            compression_level: None,
            heal_on_read: false,
        }
    }

    /// Opens the repository at `path`, unwrapping its key with `passphrase`
    /// and authenticating its config with that key (see `config.rs`), from
    /// the config or any intact key slot (see `unlock.rs`).
    ///
    /// A repository from before key slots (no `keys/`) opens from its
    /// config as before; with the passphrase, under the repository lock, a
    /// legacy config without a MAC is given one (a fresh salt, same KDF
    /// parameters) and then its first key slot (a copy of the config). If
    /// that cannot be written (a read-only repository, a busy lock) it is
    /// used as it is.
    pub fn open(path: &Path, passphrase: Option<&str>) -> Result<Repository> {
        let secret = match passphrase {
            Some(p) => crate::unlock::Secret::Passphrase(p),
            None => crate::unlock::Secret::None,
        };
        if let Some((config, unlocked)) = crate::unlock::open_with_slots(path, &secret)? {
            return Ok(Self::unlocked(path, config, unlocked));
        }
        let mut config = Config::load(path)?;
        let mut unlocked = config.unlock(path, passphrase)?;
        if let (Some(u), Some(pass)) = (&unlocked, passphrase) {
            if u.legacy {
                if let Ok(Some((c, u))) = Self::upgrade_config(path, &config, u, pass) {
                    (config, unlocked) = (c, Some(u));
                }
            }
        }
        if let Some(u) = unlocked.as_ref().filter(|u| !u.legacy) {
            // Opportunistic, like the MAC upgrade.
            let _ = Self::add_first_slot(path, &config, u);
        }
        Ok(Self::unlocked(path, config, unlocked))
    }

    /// Gives a repository without `keys/` its first key slot, a copy of
    /// its authenticated config (see [`Repository::open`]).
    fn add_first_slot(path: &Path, config: &Config, u: &Unlocked) -> Result<()> {
        let _guard =
            RepoLock::acquire(path, SNAPSHOTS_LOCK, "key slot upgrade", UPGRADE_LOCK_WAIT)?;
        if keyslot::has_keys_dir(path) || Config::load(path)? != *config {
            return Ok(()); // another process got there first
        }
        let slot = KeySlot::new(config, Some(&u.master))?;
        let dir = keyslot::keys_dir(path);
        std::fs::create_dir(&dir).at(&dir)?;
        slot.save(path)?;
        fsutil::fsync_dir(path)
    }

    /// Rewrites the legacy `config` with a MAC (see [`Repository::open`]);
    /// `None` when another process changed the config meanwhile.
    fn upgrade_config(
        path: &Path,
        config: &Config,
        legacy: &Unlocked,
        pass: &str,
    ) -> Result<Option<(Config, Unlocked)>> {
        let kdf = config
            .kdf()
            .ok_or_else(|| Error::invalid("config upgrade", "not encrypted"))?;
        // Opportunistic: a busy lock leaves the config as it is for now.
        let _guard = RepoLock::acquire(path, SNAPSHOTS_LOCK, "config upgrade", UPGRADE_LOCK_WAIT)?;
        let now = Config::load(path)?;
        if now.config_mac.is_some()
            || now.encryption.as_ref().map(|e| &e.wrapped_key)
                != config.encryption.as_ref().map(|e| &e.wrapped_key)
        {
            return Ok(None);
        }
        let (upgraded, unlocked) = config.authenticated(pass, legacy.master, kdf)?;
        upgraded.save(path)?;
        Ok(Some((upgraded, unlocked)))
    }

    /// This handle with manifest changes (lock, scan records, forget,
    /// prune) waiting up to `wait` for the repository lock before failing
    /// with [`Error::Busy`] (default [`DEFAULT_LOCK_WAIT`]).
    pub fn with_lock_wait(mut self, wait: Duration) -> Repository {
        self.lock_wait = wait;
        self
    }

    /// This handle with chunks that fail authentication on read moved into
    /// `quarantine/` (best effort: a read-only repository or an
    /// unprivileged reader reads on), so the next backup of the same data
    /// stores them again. Off by default; the CLI turns it on.
    pub fn with_heal_on_read(mut self, heal: bool) -> Repository {
        self.heal_on_read = heal;
        self
    }

    /// This handle writing new chunks, indexes and manifests at zstd
    /// `level` instead of the repository's configured level (a backup's
    /// choice: every blob's zstd frame decodes whatever level made it).
    /// Fails for a level outside 1..=19.
    pub fn with_compression_level(mut self, level: i32) -> Result<Repository> {
        check_zstd_level(level).map_err(|e| Error::invalid("compression level", e))?;
        self.compression_level = Some(level);
        Ok(self)
    }

    /// The secret that unlocked this repository (the key-encryption key
    /// derived from the passphrase), as hex, for a helper process this one
    /// starts: with [`Repository::open_unlocked`] it skips the Argon2id
    /// derivation (~0.15 s). `None` when the repository is not encrypted.
    /// It unlocks the repository as the passphrase does: hand it over a
    /// pipe, never on a command line, in the environment or in a file.
    pub fn unlock_secret_hex(&self) -> Option<String> {
        self.inner.kek.as_ref().map(|k| crate::digest::hex(k))
    }

    /// Opens the repository at `path` with the secret of
    /// [`Repository::unlock_secret_hex`] (`None` for an unencrypted one); a
    /// wrong secret is refused like a wrong passphrase.
    pub fn open_unlocked(path: &Path, secret_hex: Option<&str>) -> Result<Repository> {
        let kek: Option<[u8; 32]> = match secret_hex {
            Some(h) => Some(
                crate::digest::unhex(h.trim())
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| Error::WrongKey { path: path.into() })?,
            ),
            None => None,
        };
        let secret = match kek {
            Some(k) => crate::unlock::Secret::Kek(k),
            None => crate::unlock::Secret::None,
        };
        if let Some((config, unlocked)) = crate::unlock::open_with_slots(path, &secret)? {
            return Ok(Self::unlocked(path, config, unlocked));
        }
        let config = Config::load(path)?;
        let unlocked = config.unlock_with_kek(path, kek)?;
        Ok(Self::unlocked(path, config, unlocked))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Chunk size new backups use.
    pub fn chunk_size(&self) -> u32 {
        self.inner.config.chunk_size
    }

    /// zstd level new chunks are compressed with: this handle's
    /// [`Repository::with_compression_level`], else the configured one.
    pub fn zstd_level(&self) -> i32 {
        self.compression_level
            .unwrap_or(self.inner.config.zstd_level)
    }

    pub fn encrypted(&self) -> bool {
        self.inner.keys.is_some()
    }

    /// The repository id (random, from the config).
    pub fn id(&self) -> &str {
        &self.inner.config.id
    }

    /// The digest of a chunk's plaintext: BLAKE3, keyed with the id key when
    /// the repository is encrypted.
    pub fn digest(&self, plain: &[u8]) -> Digest {
        digest_with(self.keys(), plain)
    }

    pub(crate) fn keys(&self) -> Option<&ChunkKeys> {
        self.inner.keys.as_ref().map(|k| &k.chunk)
    }

    // ---- paths ----

    pub(crate) fn chunk_path(&self, d: &Digest) -> PathBuf {
        prefix_dir(&self.inner.path, d.prefix()).join(d.to_hex())
    }

    pub(crate) fn snapshots_dir(&self) -> PathBuf {
        self.inner.path.join(SNAPSHOTS_DIR)
    }

    pub(crate) fn manifest_path(&self, vm: &str, id: &str) -> PathBuf {
        self.snapshots_dir()
            .join(vm)
            .join(format!("{id}{MANIFEST_SUFFIX}"))
    }

    pub(crate) fn index_dir(&self, vm: &str, id: &str) -> PathBuf {
        self.inner.path.join(INDEXES_DIR).join(vm).join(id)
    }

    /// Takes one of the repository-wide locks for `operation` (a word
    /// others see in [`Error::Busy`]) until the guard is dropped, waiting
    /// up to the lock wait: for maintenance that must not overlap a prune,
    /// a forget, a lock change or a gc (copying the repository, say).
    pub fn hold_lock(&self, which: RepositoryLock, operation: &str) -> Result<LockGuard> {
        let name = match which {
            RepositoryLock::Manifests => SNAPSHOTS_LOCK,
            RepositoryLock::Gc => GC_LOCK,
        };
        let lock = RepoLock::acquire(&self.inner.path, name, operation, self.lock_wait)?;
        Ok(LockGuard { _lock: lock })
    }

    /// The repository lock of manifest changes, for `operation`.
    pub(crate) fn snapshots_lock(&self, operation: &str) -> Result<RepoLock> {
        RepoLock::acquire(&self.inner.path, SNAPSHOTS_LOCK, operation, self.lock_wait)
    }

    // ---- manifests ----

    /// Encodes and atomically writes a manifest.
    pub(crate) fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let path = self.manifest_path(&m.vm, &m.id);
        let json = serde_json::to_vec(m).map_err(|e| Error::corrupt_file(&path, e))?;
        let blob = blob::encode(
            BlobKind::Manifest,
            self.keys(),
            self.zstd_level(),
            m.name().as_bytes(),
            &json,
        )
        .map_err(|e| Error::invalid(path.display(), e))?;
        fsutil::atomic_write(&path, &blob)
    }

    /// Reads the manifest of `vm@id`; `NotFound` when it does not exist.
    pub(crate) fn read_manifest(&self, vm: &str, id: &str) -> Result<Manifest> {
        let path = self.manifest_path(vm, id);
        let bytes = fsutil::read_optional(&path)?.ok_or_else(|| Error::NotFound {
            what: format!("restore point {vm}@{id}"),
        })?;
        let name = format!("{vm}@{id}");
        let json = blob::decode(
            BlobKind::Manifest,
            self.keys(),
            name.as_bytes(),
            bytes,
            MAX_MANIFEST_PLAIN,
        )
        .map_err(|e| Error::corrupt_file(&path, e))?;
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| Error::corrupt_file(&path, e))?;
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        if found != u64::from(FORMAT_VERSION) {
            return Err(Error::UnknownVersion {
                path,
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        let m: Manifest =
            serde_json::from_value(value).map_err(|e| Error::corrupt_file(&path, e))?;
        if m.vm != vm || m.id != id {
            return Err(Error::corrupt_file(
                &path,
                format!("holds restore point {}", m.name()),
            ));
        }
        Ok(m)
    }

    /// `indexes/<vm>/<id>/<disk>.idx`.
    pub(crate) fn index_path(&self, vm: &str, id: &str, disk: &str) -> PathBuf {
        self.index_dir(vm, id).join(format!("{disk}{INDEX_SUFFIX}"))
    }

    /// Writes `indexes/<vm>/<id>/.committed` (see [`COMMITTED_MARKER`]).
    pub(crate) fn mark_committed(&self, vm: &str, id: &str) -> Result<()> {
        let dir = self.index_dir(vm, id);
        let marker = dir.join(COMMITTED_MARKER);
        std::fs::write(&marker, b"").at(&marker)?;
        fsutil::fsync_dir(&dir)
    }

    /// Whether `indexes/<vm>/<id>/` holds the committed marker.
    pub(crate) fn is_marked_committed(&self, vm: &str, id: &str) -> bool {
        self.index_dir(vm, id).join(COMMITTED_MARKER).exists()
    }

    /// Reads and authenticates the index file of `disk` of `vm@id` without
    /// its manifest (gc marks the indexes of a damaged manifest with it).
    pub(crate) fn load_index_file(&self, vm: &str, id: &str, disk: &str) -> Result<DiskIndex> {
        let path = self.index_path(vm, id, disk);
        let bytes = fsutil::read_optional(&path)?
            .ok_or_else(|| Error::corrupt_file(&path, "index file is missing"))?;
        let context = format!("{vm}@{id}/{disk}");
        let payload = blob::decode(
            BlobKind::Index,
            self.keys(),
            context.as_bytes(),
            bytes,
            MAX_INDEX_PLAIN,
        )
        .map_err(|e| Error::corrupt_file(&path, e))?;
        DiskIndex::decode(&payload).map_err(|e| Error::corrupt_file(&path, e))
    }

    /// Reads the index of `disk` of a restore point and checks it against
    /// the manifest.
    pub fn load_index(&self, manifest: &Manifest, disk: &str) -> Result<DiskIndex> {
        let entry = manifest.disk(disk).ok_or_else(|| Error::NotFound {
            what: format!("disk {disk:?} in restore point {}", manifest.name()),
        })?;
        let index = self.load_index_file(&manifest.vm, &manifest.id, disk)?;
        if index.chunk_size != entry.chunk_size || index.disk_size != entry.size {
            return Err(Error::corrupt_file(
                self.index_path(&manifest.vm, &manifest.id, disk),
                format!(
                    "index is for {} bytes in chunks of {}, manifest says {} in chunks of {}",
                    index.disk_size, index.chunk_size, entry.size, entry.chunk_size
                ),
            ));
        }
        Ok(index)
    }

    /// Reads a chunk: authenticates, decompresses and checks its digest.
    /// A corrupt chunk is quarantined when the handle heals on read.
    pub fn read_chunk(&self, digest: &Digest) -> Result<Vec<u8>> {
        let read = self.read_chunk_only(digest);
        if let (true, Err(e @ Error::CorruptChunk { .. })) = (self.heal_on_read, &read) {
            self.quarantine_after_read(digest, e);
        }
        read
    }

    /// [`Repository::read_chunk`] without quarantining.
    pub(crate) fn read_chunk_only(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.chunk_path(digest);
        let corrupt = |detail: String| Error::CorruptChunk {
            digest: *digest,
            detail,
        };
        let bytes = match read_bounded(&path, MAX_CHUNK_FILE) {
            Ok(Some(b)) => b,
            Ok(None) => return Err(Error::MissingChunk { digest: *digest }),
            Err(ReadError::TooLarge(n)) => {
                return Err(corrupt(format!(
                    "chunk file of {n} bytes exceeds {MAX_CHUNK_FILE}"
                )))
            }
            Err(ReadError::Io(e)) => return Err(e),
        };
        let plain = blob::decode(
            BlobKind::Chunk,
            self.keys(),
            &digest.0,
            bytes,
            u64::from(MAX_CHUNK_SIZE),
        )
        .map_err(corrupt)?;
        let actual = self.digest(&plain);
        if actual != *digest {
            return Err(corrupt(format!("content has digest {actual}")));
        }
        Ok(plain)
    }

    /// Asks the kernel to start reading a chunk file into the page cache
    /// (`posix_fadvise(WILLNEED)`), so a later [`Repository::read_chunk`]
    /// finds it there; a file that does not open is left to that read to
    /// report.
    pub fn prefetch_chunk(&self, digest: &Digest) {
        if let Ok(f) = std::fs::File::open(self.chunk_path(digest)) {
            let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
        }
    }

    /// Size of the chunk file on disk.
    pub fn chunk_stored_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.chunk_path(digest);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::MissingChunk { digest: *digest })
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// A restore point's disk as a [`lifeboat_vdisk::ReadDisk`] (no cache inside).
    pub fn open_disk(&self, manifest: &Manifest, disk: &str) -> Result<RestorePointDisk> {
        let index = self.load_index(manifest, disk)?;
        Ok(RestorePointDisk::new(
            format!("{} disk {disk}", manifest.name()),
            index,
            Arc::new(self.clone()),
        ))
    }

    /// Sets or extends the retention lock; an earlier date than the current
    /// lock is refused with `LockShortening`.
    pub fn lock(&self, manifest: &Manifest, until: DateTime<Utc>) -> Result<Manifest> {
        let _guard = self.snapshots_lock("lock")?;
        let mut current = self.read_manifest(&manifest.vm, &manifest.id)?;
        if let Some(cur) = current.locked_until {
            if until < cur {
                return Err(Error::LockShortening {
                    restore_point: current.name(),
                    current: cur,
                    requested: until,
                });
            }
        }
        current.locked_until = Some(until);
        self.write_manifest(&current)?;
        Ok(current)
    }

    /// Records the outcome of a malware scan in the manifest (replacing an
    /// earlier one), rewriting it atomically like `lock`; the disks and the
    /// retention lock are kept as they are on disk now. Allowed on locked
    /// restore points: the lock protects the data, not this record.
    pub fn record_scan(&self, manifest: &Manifest, record: ScanRecord) -> Result<Manifest> {
        let _guard = self.snapshots_lock("scan record")?;
        let mut current = self.read_manifest(&manifest.vm, &manifest.id)?;
        current.scan = Some(record);
        self.write_manifest(&current)?;
        Ok(current)
    }

    /// Deletes a restore point: the manifest first (it disappears
    /// atomically), then its indexes. Chunks are left for gc.
    pub fn forget(&self, manifest: &Manifest) -> Result<()> {
        let _guard = self.snapshots_lock("forget")?;
        self.forget_locked(manifest, Utc::now())
    }

    /// `forget` with the snapshots lock already held.
    pub(crate) fn forget_locked(&self, manifest: &Manifest, now: DateTime<Utc>) -> Result<()> {
        let current = self.read_manifest(&manifest.vm, &manifest.id)?;
        if let Some(until) = current.locked_until.filter(|_| current.is_locked(now)) {
            return Err(Error::Locked {
                restore_point: current.name(),
                until,
            });
        }
        // The marker goes first: an index dir without a manifest and
        // without it is a leftover, not a lost manifest.
        let marker = self
            .index_dir(&manifest.vm, &manifest.id)
            .join(COMMITTED_MARKER);
        match std::fs::remove_file(&marker) {
            Ok(()) => fsutil::fsync_dir(&self.index_dir(&manifest.vm, &manifest.id))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&marker, e)),
        }
        let path = self.manifest_path(&manifest.vm, &manifest.id);
        std::fs::remove_file(&path).at(&path)?;
        if let Some(dir) = path.parent() {
            fsutil::fsync_dir(dir)?;
        }
        // Best effort: an index dir left behind (crash, error) is removed by gc.
        let _ = std::fs::remove_dir_all(self.index_dir(&manifest.vm, &manifest.id));
        Ok(())
    }
}

impl ChunkReader for Repository {
    fn read_chunk(&self, digest: &Digest) -> Result<Vec<u8>> {
        Repository::read_chunk(self, digest)
    }
    fn describe(&self) -> String {
        format!("repository {}", self.inner.path.display())
    }
}

/// Largest possible chunk file: header + uncompressed maximum + tag
/// (compression is only kept when it shrinks the payload).
const MAX_CHUNK_FILE: u64 = (BLOB_HEADER_LEN + MAX_CHUNK_SIZE as usize + TAG_LEN) as u64;

enum ReadError {
    TooLarge(u64),
    Io(Error),
}

/// Reads a file of at most `max` bytes; `Ok(None)` when it does not exist.
fn read_bounded(path: &Path, max: u64) -> std::result::Result<Option<Vec<u8>>, ReadError> {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(Error::io(path, e))),
    };
    let len = f
        .metadata()
        .map_err(|e| ReadError::Io(Error::io(path, e)))?
        .len();
    if len > max {
        return Err(ReadError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.read_to_end(&mut buf)
        .map_err(|e| ReadError::Io(Error::io(path, e)))?;
    Ok(Some(buf))
}

/// A chunk's digest: BLAKE3, keyed with the id key when there are keys.
pub(crate) fn digest_with(keys: Option<&ChunkKeys>, plain: &[u8]) -> Digest {
    match keys {
        Some(k) => Digest(*blake3::keyed_hash(&k.id_key, plain).as_bytes()),
        None => Digest(*blake3::hash(plain).as_bytes()),
    }
}

/// `chunks/<xx>` of prefix `i`.
pub(crate) fn prefix_dir(repo: &Path, i: usize) -> PathBuf {
    repo.join(CHUNKS_DIR).join(format!("{i:02x}"))
}

/// Names of the entries of `dir` (empty when it does not exist), skipping
/// names that are not UTF-8.
pub(crate) fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.at(dir)?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}
