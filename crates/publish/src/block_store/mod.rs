//! [`BlockStore`]: a persistent, content-addressed store of 4 KiB blocks of
//! restore-point chunks, so that the small metadata reads of a filesystem
//! walk (directory blocks, inode tables) over a published restore point do
//! not decode a whole repository chunk each time (see `stored_disk.rs`, the
//! disk that uses it).
//!
//! A block is keyed by (chunk digest, index of the 4 KiB block inside the
//! chunk). Chunk digests are content addresses, so an entry is valid for
//! every restore point of the repository that holds that chunk; the caller
//! keeps one store per repository (a sub-directory named by its id).
//!
//! ```text
//! <dir>/lock          flock(2)ed while a process uses the store
//! <dir>/key           only for an unencrypted repository: the store's key
//! <dir>/blocks.dat    4 KiB blocks, encrypted, appended
//! <dir>/hits          which loaded entries this run hit (hits.rs)
//! <dir>/blocks.idx    "lifeboat-blocks2" (16 bytes), then 80-byte records:
//!     0..32   chunk digest
//!    32..36   block index inside the chunk, u32 LE
//!    36..44   byte position of the block in blocks.dat, u64 LE
//!    44..56   AES-256-GCM nonce (random)
//!    56..72   AES-256-GCM tag
//!    72..76   reserved (0)
//!    76..80   first 4 bytes of BLAKE3 of bytes 0..76 (a torn or garbled
//!             record is skipped)
//! ```
//!
//! The store holds guest data in plaintext form on the host, and whoever
//! can write it could make a later publisher serve bytes of their choice
//! as a restore point's (hiding malware from a scan). So:
//! - each block is encrypted and authenticated with AES-256-GCM under a
//!   key of its own, derived from the store key and the block's address
//!   (chunk digest, block index), with a random nonce; the store key is
//!   derived from the repository's master key ([`KEY_PURPOSE`], see
//!   [`key_of`]), or for an unencrypted repository (no secret to derive
//!   from) kept at random in `<dir>/key` (mode 0600). A block that does not
//!   authenticate under its own address (flipped, planted, moved to
//!   another address, written under another key) is dropped and read from
//!   the repository;
//! - the directory is made mode 0700 and every file in it 0600 (existing
//!   ones are corrected at open); a directory that is a symlink or owned
//!   by another user is refused;
//! - an index of another format (the unencrypted `lifeboat-blocks1`)
//!   starts the store over, its data file included.
//!
//! Safety rules: a record is appended only after its block was written, so
//! a crash leaves at worst unreferenced data or a torn last record (cut off
//! at load). Every block served is authenticated first; a failure or short
//! read drops the entry and the caller reads the repository instead. Writing
//! never fails a read: any write error (ENOSPC included) is logged once and
//! the store stops adding for the rest of the run. When it fills during a
//! run it stops adding. A store locked by another process is not used
//! ([`BlockStore::open`] gives `None`). Messages go to stderr, which is the
//! publisher's log file.
//!
//! Chunk edges ([`BlockStore::put_edges`]: the first and last block of a
//! chunk) have a reserve of their own at the end of the cap
//! ([`BlockStore::open_reserving`]): other blocks stop at `cap - reserve`,
//! edges go on to `cap`. A re-scan reads a few bytes past the edge of each
//! changed chunk into its unchanged neighbour (a match may straddle the
//! two), and without the edge stored that is a whole chunk decoded for
//! 67 bytes; a full scan fills the rest of the store with small files
//! long before it is done, so edges need room of their own. "Full" below
//! means the other blocks' limit.
//!
//! Full at open (the data file reached the cap in an earlier run): a first
//! full scan of a restore point fills the store with every small file it
//! read, so starting over would leave the next publisher (the re-scan)
//! nothing. Instead each run writes which loaded entries served a read to
//! `<dir>/hits` (`hits.rs`), and a full store is
//! - compacted to the entries the previous run hit, in their recorded
//!   order (what related restore points share: directories, inode tables;
//!   crash-safe, `compact.rs`), when that run hit any;
//! - kept as it is (served; only chunk edges added) when it hit none or left no
//!   usable hits file: the run before was the one that filled it;
//! - started over empty when no block would remain, or when the hit
//!   blocks alone take 90% of the cap.
//!
//! Files: `index.rs` (the index records), `hits.rs` (the hits file),
//! `compact.rs` (the full-store policy and compaction).

mod compact;
mod hits;
mod index;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use lifeboat_repo::{LocalKey, Repository};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Size of a stored block.
pub const BLOCK: usize = 4096;
/// Default cap of the data file.
pub const DEFAULT_CAP_BYTES: u64 = 512 << 20;
/// Default part of the cap kept for chunk edges: two blocks per 4 MiB
/// chunk, so edges of about 32 GiB of chunks.
pub const DEFAULT_EDGE_RESERVE_BYTES: u64 = 64 << 20;

const DATA_FILE: &str = "blocks.dat";
const LOG_FILE: &str = "blocks.idx";
const LOCK_FILE: &str = "lock";
const KEY_FILE: &str = "key";
/// Purpose of the store key derived from the repository's master key.
pub const KEY_PURPOSE: &str = "lifeboat block store v1";
/// Associated data of every stored block.
const AAD: &[u8] = b"lifeboat block store v1";
/// Length of a block's AES-GCM tag.
const TAG: usize = 16;

/// The store key of `repo` (`None` for an unencrypted repository: the
/// store then keeps a random key of its own, see the module doc).
pub fn key_of(repo: &Repository) -> Option<LocalKey> {
    repo.local_key(KEY_PURPOSE)
}

/// Opens `path` for reading and writing, creating it with mode 0600.
fn private_file(path: &Path, truncate: bool) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(truncate)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Makes `dir` (mode 0700) or checks it: a directory, not a symlink, of
/// this process's user; makes it and every file in it private when they
/// are not.
fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    let euid = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != euid {
        return Err(Error::io(
            dir,
            std::io::Error::other(format!(
                "not a directory of user {euid} (a symlink, or owned by user {})",
                meta.uid()
            )),
        ));
    }
    let private = |path: &Path, meta: &std::fs::Metadata, mode: u32| {
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(path, e))?;
        }
        Ok::<(), Error>(())
    };
    private(dir, &meta, 0o700)?;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_file() {
            private(&path, &meta, 0o600)?;
        }
    }
    Ok(())
}

/// The address of a block as the item its key is derived from.
fn item(key: &BlockKey) -> [u8; 36] {
    let mut i = [0u8; 36];
    i[..32].copy_from_slice(&key.digest);
    i[32..].copy_from_slice(&key.block.to_le_bytes());
    i
}

/// Which block: a chunk's digest and the block's index inside the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub digest: [u8; 32],
    pub block: u32,
}

/// Where a block lives in the data file and how it is authenticated.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pos: u64,
    nonce: [u8; 12],
    tag: [u8; TAG],
    /// Number of its record in the index (see `hits.rs`).
    rec: u64,
}

/// What a store did since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStoreStats {
    /// Blocks known (loaded plus recorded).
    pub entries: u64,
    /// Size of the data file.
    pub data_bytes: u64,
    /// Reads served from the store.
    pub hit_reads: u64,
    /// Small reads that went to the repository.
    pub miss_reads: u64,
    /// Blocks added during this run.
    pub recorded: u64,
    /// Entries dropped because their block did not authenticate.
    pub bad: u64,
    /// Distinct entries loaded at open that served a read.
    pub reused: u64,
    /// Still adding every kind of block (not full, no write error).
    pub adding: bool,
}

/// The appending side, behind one lock.
struct Writer {
    log: File,
    /// End of the data file: where the next block goes.
    next: u64,
    /// Number of the next record.
    records: u64,
    /// False after a write error, or once the cap is reached: nothing more
    /// is added.
    adding: bool,
    /// True once `cap - reserve` is reached: only chunk edges are added.
    edges_only: bool,
}

/// A persistent store of 4 KiB chunk blocks (see the module doc).
pub struct BlockStore {
    dir: PathBuf,
    key: LocalKey,
    data: File,
    cap: u64,
    /// Where blocks other than chunk edges stop: `cap - reserve`.
    general_cap: u64,
    map: RwLock<HashMap<BlockKey, Slot>>,
    writer: Mutex<Writer>,
    /// Held for the store's life: the flock goes with it.
    _lock: File,
    hit_reads: AtomicU64,
    miss_reads: AtomicU64,
    recorded: AtomicU64,
    bad: AtomicU64,
    warned_bad: AtomicBool,
    hits: hits::HitLog,
}

impl BlockStore {
    /// Opens (creating it if needed) the store in `dir`, holding at most
    /// `cap` bytes of blocks, with no reserve for chunk edges, its blocks
    /// sealed with `key` (see [`key_of`]; `None`: the store's own key file).
    /// `None` when another process holds its lock.
    pub fn open(dir: &Path, cap: u64, key: Option<LocalKey>) -> Result<Option<BlockStore>> {
        Self::open_reserving(dir, cap, 0, key)
    }

    /// Like [`BlockStore::open`], keeping the last `edge_reserve` bytes of
    /// the cap for chunk edges (see the module doc).
    pub fn open_reserving(
        dir: &Path,
        cap: u64,
        edge_reserve: u64,
        key: Option<LocalKey>,
    ) -> Result<Option<BlockStore>> {
        let general_cap = cap.saturating_sub(edge_reserve);
        private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = private_file(&lock_path, false)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let key = match key {
            Some(k) => k,
            None => {
                let path = dir.join(KEY_FILE);
                LocalKey::load_or_create(&path).map_err(|e| Error::io(&path, e))?
            }
        };
        compact::recover(dir)?;
        let data_path = dir.join(DATA_FILE);
        let log_path = dir.join(LOG_FILE);
        if index::is_foreign(&log_path)? {
            eprintln!(
                "block store {}: not a store index of this version, starting it over",
                log_path.display()
            );
            compact::start_over(dir)?;
        }
        let data_len = std::fs::metadata(&data_path).map_or(0, |m| m.len());
        if data_len >= general_cap {
            compact::on_full(dir, general_cap, data_len, &key)?;
        }
        let data = private_file(&data_path, false)?;
        let data_len = data.metadata().map_err(|e| Error::io(&data_path, e))?.len();
        let (index, log) = index::load(&log_path, data_len)?;
        let hits = hits::HitLog::start(dir, index.records);
        // Unreferenced bytes past the last whole block are left alone.
        let next = data_len.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(Some(BlockStore {
            dir: dir.to_path_buf(),
            key,
            data,
            cap,
            general_cap,
            map: RwLock::new(index.map),
            writer: Mutex::new(Writer {
                log,
                next,
                records: index.records,
                adding: next < cap,
                edges_only: next >= general_cap,
            }),
            _lock: lock,
            hit_reads: AtomicU64::new(0),
            miss_reads: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            warned_bad: AtomicBool::new(false),
            hits,
        }))
    }

    /// Reads the data file once from start to end on a thread of its own,
    /// so that its blocks are in the page cache before they are asked for
    /// one by one (a random 4 KiB read of a cold file costs about as much
    /// as the chunk decode the store saves; blocks were appended in the
    /// order a walk asked for them).
    pub fn prefetch(&self) {
        let Ok(mut file) = self.data.try_clone() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("block-store-prefetch".to_string())
            .spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while matches!(std::io::Read::read(&mut file, &mut buf), Ok(n) if n > 0) {}
            });
        if let Err(e) = spawned {
            eprintln!(
                "block store {}: no prefetch thread: {e}",
                self.dir.display()
            );
        }
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `key` has an entry (not checked).
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.map.read().is_ok_and(|m| m.contains_key(key))
    }

    /// Fills `out` with block `key` when the store has it and it
    /// authenticates; otherwise drops a bad entry and returns false.
    pub fn get(&self, key: &BlockKey, out: &mut [u8; BLOCK]) -> bool {
        let slot = match self.map.read() {
            Ok(m) => m.get(key).copied(),
            Err(_) => None,
        };
        let Some(slot) = slot else {
            return false;
        };
        let why = match self.data.read_exact_at(out, slot.pos) {
            Ok(()) => match open_block(&self.key, key, &slot, out) {
                Ok(()) => {
                    self.hits.mark(slot.rec);
                    return true;
                }
                Err(e) => format!("does not authenticate: {e}"),
            },
            Err(e) => format!("cannot be read: {e}"),
        };
        if let Ok(mut m) = self.map.write() {
            m.remove(key);
        }
        self.bad.fetch_add(1, Ordering::Relaxed);
        if !self.warned_bad.swap(true, Ordering::Relaxed) {
            eprintln!(
                "block store {}: the block at {} of {} {why}; ignored, read from the \
                 repository (further bad blocks are only counted)",
                self.dir.display(),
                slot.pos,
                hex(&key.digest),
            );
        }
        false
    }

    /// Adds blocks not yet stored (each exactly [`BLOCK`] bytes; others are
    /// ignored) up to `cap - reserve`. Never fails: on a write error or
    /// when full it stops adding.
    pub fn put(&self, blocks: &[(BlockKey, &[u8])]) {
        self.put_within(blocks, false);
    }

    /// Like [`BlockStore::put`] for chunk edges, which may also fill the
    /// reserve.
    pub fn put_edges(&self, blocks: &[(BlockKey, &[u8])]) {
        self.put_within(blocks, true);
    }

    fn put_within(&self, blocks: &[(BlockKey, &[u8])], edges: bool) {
        let Ok(mut w) = self.writer.lock() else {
            return;
        };
        if !w.adding || (w.edges_only && !edges) {
            return;
        }
        let mut fresh: Vec<(BlockKey, &[u8])> = Vec::new();
        for &(key, bytes) in blocks {
            if bytes.len() == BLOCK && !self.contains(&key) && !fresh.iter().any(|f| f.0 == key) {
                fresh.push((key, bytes));
            }
        }
        let limit = if edges { self.cap } else { self.general_cap };
        let room = (limit.saturating_sub(w.next) / BLOCK as u64) as usize;
        if fresh.len() > room {
            fresh.truncate(room);
            w.edges_only = true;
            if edges || self.general_cap == self.cap {
                w.adding = false;
                eprintln!(
                    "block store {}: full ({} bytes), no more blocks added in this run",
                    self.dir.display(),
                    self.cap
                );
            } else {
                eprintln!(
                    "block store {}: {} bytes reached, only chunk edges added from now on",
                    self.dir.display(),
                    self.general_cap
                );
            }
        }
        if fresh.is_empty() {
            return;
        }
        let start = w.next;
        let mut data = vec![0u8; fresh.len() * BLOCK];
        let mut records = Vec::with_capacity(fresh.len() * index::RECORD_LEN);
        let mut slots = Vec::with_capacity(fresh.len());
        for (i, (&(key, bytes), sealed)) in fresh.iter().zip(data.chunks_mut(BLOCK)).enumerate() {
            sealed.copy_from_slice(bytes);
            let nonce = LocalKey::random::<12>();
            let tag = nonce.and_then(|n| {
                self.key
                    .seal(&item(&key), n, AAD, sealed)
                    .map(|tag| (n, tag))
            });
            let (nonce, tag) = match tag {
                Ok(t) => t,
                Err(e) => {
                    w.adding = false;
                    eprintln!(
                        "block store: sealing a block: {e}; no more blocks added in this run"
                    );
                    return;
                }
            };
            let slot = Slot {
                pos: start + (i * BLOCK) as u64,
                nonce,
                tag,
                rec: w.records + i as u64,
            };
            records.extend_from_slice(&index::encode(&key, &slot));
            slots.push((key, slot));
        }
        // Data first, then the records naming it.
        let written = self
            .data
            .write_all_at(&data, start)
            .map_err(|e| (self.dir.join(DATA_FILE), e))
            .and_then(|()| {
                w.log
                    .write_all(&records)
                    .map_err(|e| (self.dir.join(LOG_FILE), e))
            });
        if let Err((path, e)) = written {
            w.adding = false;
            eprintln!(
                "block store: writing {}: {e}; no more blocks added in this run",
                path.display()
            );
            return;
        }
        w.next = start + data.len() as u64;
        w.records += fresh.len() as u64;
        if let Ok(mut m) = self.map.write() {
            m.extend(slots);
        }
        self.recorded
            .fetch_add(fresh.len() as u64, Ordering::Relaxed);
    }

    /// Counts a read served from the store (`hit`) or from the repository.
    pub fn count_read(&self, hit: bool) {
        let c = if hit {
            &self.hit_reads
        } else {
            &self.miss_reads
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> BlockStoreStats {
        let (data_bytes, adding) = match self.writer.lock() {
            Ok(w) => (w.next, w.adding && !w.edges_only),
            Err(_) => (0, false),
        };
        BlockStoreStats {
            entries: self.map.read().map_or(0, |m| m.len() as u64),
            data_bytes,
            hit_reads: self.hit_reads.load(Ordering::Relaxed),
            miss_reads: self.miss_reads.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
            bad: self.bad.load(Ordering::Relaxed),
            reused: self.hits.count(),
            adding,
        }
    }
}

impl std::fmt::Display for BlockStoreStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reads served from the store, {} read from the repository, {} blocks \
             recorded, {} bad blocks ignored, {} stored blocks reused; {} blocks, {} MiB{}",
            self.hit_reads,
            self.miss_reads,
            self.recorded,
            self.bad,
            self.reused,
            self.entries,
            self.data_bytes >> 20,
            if self.adding { "" } else { " (not adding)" }
        )
    }
}

/// Decrypts in place the block of `key` read into `block` when it
/// authenticates under `slot`'s nonce and tag.
fn open_block(
    store_key: &LocalKey,
    key: &BlockKey,
    slot: &Slot,
    block: &mut [u8],
) -> std::result::Result<(), String> {
    store_key.open(&item(key), slot.nonce, AAD, block, &slot.tag)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
