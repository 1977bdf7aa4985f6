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
//! <dir>/blocks.dat    4 KiB blocks, appended
//! <dir>/blocks.idx    "lifeboat-blocks1" (16 bytes), then 80-byte records:
//!     0..32   chunk digest
//!    32..36   block index inside the chunk, u32 LE
//!    36..44   byte position of the block in blocks.dat, u64 LE
//!    44..76   BLAKE3 of the 4 KiB block
//!    76..80   first 4 bytes of BLAKE3 of bytes 0..76 (a torn or garbled
//!             record is skipped)
//! ```
//!
//! Safety rules: a record is appended only after its block was written, so
//! a crash leaves at worst unreferenced data or a torn last record (cut off
//! at load). Every block served is checked against its BLAKE3 first; a
//! mismatch or short read drops the entry and the caller reads the
//! repository instead. Writing never fails a read: any write error (ENOSPC
//! included) is logged once and the store stops adding for the rest of the
//! run. When the data file is full at open (it reached the cap during an
//! earlier run) the store starts over empty, so it follows what is read
//! now; when it fills during a run it stops adding. A store locked by
//! another process is not used ([`BlockStore::open`] gives `None`).
//! Messages go to stderr, which is the publisher's log file.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Size of a stored block.
pub const BLOCK: usize = 4096;
/// Default cap of the data file.
pub const DEFAULT_CAP_BYTES: u64 = 512 << 20;

const DATA_FILE: &str = "blocks.dat";
const LOG_FILE: &str = "blocks.idx";
const LOCK_FILE: &str = "lock";
const MAGIC: &[u8; 16] = b"lifeboat-blocks1";
const RECORD_LEN: usize = 80;

/// Which block: a chunk's digest and the block's index inside the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub digest: [u8; 32],
    pub block: u32,
}

/// Where a block lives in the data file and what it must hash to.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pos: u64,
    hash: [u8; 32],
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
    /// Entries dropped because their block did not match its hash.
    pub bad: u64,
    /// Still adding (not full, no write error).
    pub adding: bool,
}

/// The appending side, behind one lock.
struct Writer {
    log: File,
    /// End of the data file: where the next block goes.
    next: u64,
    adding: bool,
}

/// A persistent store of 4 KiB chunk blocks (see the module doc).
pub struct BlockStore {
    dir: PathBuf,
    data: File,
    cap: u64,
    map: RwLock<HashMap<BlockKey, Slot>>,
    writer: Mutex<Writer>,
    /// Held for the store's life: the flock goes with it.
    _lock: File,
    hit_reads: AtomicU64,
    miss_reads: AtomicU64,
    recorded: AtomicU64,
    bad: AtomicU64,
    warned_bad: AtomicBool,
}

impl BlockStore {
    /// Opens (creating it if needed) the store in `dir`, holding at most
    /// `cap` bytes of blocks. `None` when another process holds its lock.
    pub fn open(dir: &Path, cap: u64) -> Result<Option<BlockStore>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let data_path = dir.join(DATA_FILE);
        let log_path = dir.join(LOG_FILE);
        let data_len = std::fs::metadata(&data_path).map_or(0, |m| m.len());
        if data_len >= cap {
            eprintln!(
                "block store {}: full ({data_len} bytes), starting over empty",
                dir.display()
            );
            for p in [&log_path, &data_path] {
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(p, e)),
                }
            }
        }
        let data = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&data_path)
            .map_err(|e| Error::io(&data_path, e))?;
        let data_len = data.metadata().map_err(|e| Error::io(&data_path, e))?.len();
        let (map, log) = load_log(&log_path, data_len)?;
        // Unreferenced bytes past the last whole block are left alone.
        let next = data_len.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(Some(BlockStore {
            dir: dir.to_path_buf(),
            data,
            cap,
            map: RwLock::new(map),
            writer: Mutex::new(Writer {
                log,
                next,
                adding: next < cap,
            }),
            _lock: lock,
            hit_reads: AtomicU64::new(0),
            miss_reads: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            warned_bad: AtomicBool::new(false),
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

    /// Fills `out` with block `key` when the store has it and it matches
    /// its hash; otherwise drops a bad entry and returns false.
    pub fn get(&self, key: &BlockKey, out: &mut [u8; BLOCK]) -> bool {
        let slot = match self.map.read() {
            Ok(m) => m.get(key).copied(),
            Err(_) => None,
        };
        let Some(slot) = slot else {
            return false;
        };
        let why = match self.data.read_exact_at(out, slot.pos) {
            Ok(()) if *blake3::hash(out).as_bytes() == slot.hash => return true,
            Ok(()) => "does not match its hash".to_string(),
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
    /// ignored). Never fails: on a write error or when full it stops adding.
    pub fn put(&self, blocks: &[(BlockKey, &[u8])]) {
        let Ok(mut w) = self.writer.lock() else {
            return;
        };
        if !w.adding {
            return;
        }
        let mut fresh: Vec<(BlockKey, &[u8])> = Vec::new();
        for &(key, bytes) in blocks {
            if bytes.len() == BLOCK && !self.contains(&key) && !fresh.iter().any(|f| f.0 == key) {
                fresh.push((key, bytes));
            }
        }
        let room = (self.cap.saturating_sub(w.next) / BLOCK as u64) as usize;
        if fresh.len() > room {
            fresh.truncate(room);
            w.adding = false;
            eprintln!(
                "block store {}: full ({} bytes), no more blocks added in this run",
                self.dir.display(),
                self.cap
            );
        }
        if fresh.is_empty() {
            return;
        }
        let start = w.next;
        let mut data = Vec::with_capacity(fresh.len() * BLOCK);
        let mut records = Vec::with_capacity(fresh.len() * RECORD_LEN);
        let mut slots = Vec::with_capacity(fresh.len());
        for (i, &(key, bytes)) in fresh.iter().enumerate() {
            let slot = Slot {
                pos: start + (i * BLOCK) as u64,
                hash: *blake3::hash(bytes).as_bytes(),
            };
            data.extend_from_slice(bytes);
            records.extend_from_slice(&encode(&key, &slot));
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
            Ok(w) => (w.next, w.adding),
            Err(_) => (0, false),
        };
        BlockStoreStats {
            entries: self.map.read().map_or(0, |m| m.len() as u64),
            data_bytes,
            hit_reads: self.hit_reads.load(Ordering::Relaxed),
            miss_reads: self.miss_reads.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
            bad: self.bad.load(Ordering::Relaxed),
            adding,
        }
    }
}

impl std::fmt::Display for BlockStoreStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reads served from the store, {} read from the repository, {} blocks \
             recorded, {} bad blocks ignored; {} blocks, {} MiB{}",
            self.hit_reads,
            self.miss_reads,
            self.recorded,
            self.bad,
            self.entries,
            self.data_bytes >> 20,
            if self.adding { "" } else { " (not adding)" }
        )
    }
}

fn encode(key: &BlockKey, slot: &Slot) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0..32].copy_from_slice(&key.digest);
    r[32..36].copy_from_slice(&key.block.to_le_bytes());
    r[36..44].copy_from_slice(&slot.pos.to_le_bytes());
    r[44..76].copy_from_slice(&slot.hash);
    let check = blake3::hash(&r[0..76]);
    r[76..80].copy_from_slice(&check.as_bytes()[0..4]);
    r
}

/// A record's key and slot, or `None` when its check fails.
fn decode(r: &[u8]) -> Option<(BlockKey, Slot)> {
    let field = |a: usize, b: usize| r.get(a..b);
    let check = blake3::hash(field(0, 76)?);
    if field(76, 80)? != &check.as_bytes()[0..4] {
        return None;
    }
    Some((
        BlockKey {
            digest: field(0, 32)?.try_into().ok()?,
            block: u32::from_le_bytes(field(32, 36)?.try_into().ok()?),
        },
        Slot {
            pos: u64::from_le_bytes(field(36, 44)?.try_into().ok()?),
            hash: field(44, 76)?.try_into().ok()?,
        },
    ))
}

/// Loads the records of `path` whose block lies inside a data file of
/// `data_len` bytes; cuts off a torn last record (or starts the file when
/// it is absent or not a store log) and returns it open for appending.
fn load_log(path: &Path, data_len: u64) -> Result<(HashMap<BlockKey, Slot>, File)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut map = HashMap::new();
    let mut keep = 0u64;
    if let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) {
        let whole = body.len() / RECORD_LEN * RECORD_LEN;
        keep = (MAGIC.len() + whole) as u64;
        let mut skipped = 0usize;
        for r in body.chunks_exact(RECORD_LEN) {
            match decode(r) {
                Some((key, slot))
                    if slot.pos.is_multiple_of(BLOCK as u64)
                        && slot
                            .pos
                            .checked_add(BLOCK as u64)
                            .is_some_and(|e| e <= data_len) =>
                {
                    map.insert(key, slot);
                }
                _ => skipped += 1,
            }
        }
        if skipped > 0 || whole != body.len() {
            eprintln!(
                "block store {}: {skipped} bad records skipped, {} torn bytes cut off",
                path.display(),
                body.len() - whole
            );
        }
    } else if !bytes.is_empty() {
        eprintln!(
            "block store {}: not a block store index, starting it over",
            path.display()
        );
    }
    let mut log = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    log.set_len(keep).map_err(|e| Error::io(path, e))?;
    if keep == 0 {
        log.write_all_at(MAGIC, 0).map_err(|e| Error::io(path, e))?;
        keep = MAGIC.len() as u64;
    }
    // Appends go after the last whole record.
    std::io::Seek::seek(&mut log, std::io::SeekFrom::Start(keep))
        .map_err(|e| Error::io(path, e))?;
    Ok((map, log))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8, block: u32) -> BlockKey {
        BlockKey {
            digest: [n; 32],
            block,
        }
    }

    fn block(n: u8) -> Vec<u8> {
        (0..BLOCK).map(|i| (i as u8).wrapping_mul(7) ^ n).collect()
    }

    fn open(dir: &Path, cap: u64) -> BlockStore {
        match BlockStore::open(dir, cap) {
            Ok(Some(s)) => s,
            Ok(None) => panic!("{}: locked", dir.display()),
            Err(e) => panic!("{}: {e}", dir.display()),
        }
    }

    fn read(s: &BlockStore, k: &BlockKey) -> Option<Vec<u8>> {
        let mut out = [0u8; BLOCK];
        s.get(k, &mut out).then(|| out.to_vec())
    }

    #[test]
    fn blocks_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), DEFAULT_CAP_BYTES);
            let (a, b) = (block(1), block(2));
            s.put(&[(key(1, 0), &a), (key(1, 5), &b), (key(1, 0), &a)]);
            s.put(&[(key(2, 3), &b[..100])]); // not a whole block: ignored
            let st = s.stats();
            assert_eq!((st.entries, st.recorded, st.data_bytes), (2, 2, 8192));
        }
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
        assert_eq!(read(&s, &key(1, 5)), Some(block(2)));
        assert_eq!(read(&s, &key(2, 3)), None);
        // More appends land after the loaded ones.
        s.put(&[(key(3, 1), &block(3))]);
        drop(s);
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        assert_eq!(s.stats().entries, 3);
        assert_eq!(read(&s, &key(3, 1)), Some(block(3)));
        assert_eq!(s.stats().bad, 0);
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), DEFAULT_CAP_BYTES);
            s.put(&[(key(1, 0), &block(1))]);
            s.put(&[(key(2, 0), &block(2))]);
        }
        let log = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&log).unwrap().len();
        let f = OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(len - 30).unwrap();
        drop(f);
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
        assert_eq!(read(&s, &key(2, 0)), None);
        // The next record is whole and found after reopening.
        s.put(&[(key(4, 2), &block(4))]);
        drop(s);
        assert_eq!(
            std::fs::metadata(&log).unwrap().len(),
            (MAGIC.len() + 2 * RECORD_LEN) as u64
        );
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        assert_eq!(read(&s, &key(4, 2)), Some(block(4)));
        assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
    }

    #[test]
    fn a_flipped_data_byte_is_detected_and_the_entry_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), DEFAULT_CAP_BYTES);
            s.put(&[(key(1, 0), &block(1)), (key(1, 1), &block(2))]);
        }
        let data = dir.path().join(DATA_FILE);
        let mut bytes = std::fs::read(&data).unwrap();
        bytes[BLOCK + 17] ^= 0x40;
        std::fs::write(&data, &bytes).unwrap();
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
        assert_eq!(read(&s, &key(1, 1)), None);
        assert!(!s.contains(&key(1, 1)));
        assert_eq!(s.stats().bad, 1);
    }

    #[test]
    fn a_short_data_file_drops_its_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), DEFAULT_CAP_BYTES);
            s.put(&[(key(1, 0), &block(1)), (key(1, 1), &block(2))]);
        }
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(DATA_FILE))
            .unwrap();
        f.set_len(BLOCK as u64 + 10).unwrap();
        drop(f);
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        assert_eq!(s.stats().entries, 1);
        assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
        // New blocks go after the partial one, never over it.
        s.put(&[(key(5, 0), &block(5))]);
        assert_eq!(s.stats().data_bytes, 3 * BLOCK as u64);
        assert_eq!(read(&s, &key(5, 0)), Some(block(5)));
    }

    #[test]
    fn the_cap_stops_adding_and_a_full_store_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 3 * BLOCK as u64;
        {
            let s = open(dir.path(), cap);
            s.put(&[(key(1, 0), &block(1)), (key(1, 1), &block(2))]);
            s.put(&[(key(2, 0), &block(3)), (key(2, 1), &block(4))]);
            let st = s.stats();
            assert_eq!((st.entries, st.data_bytes, st.adding), (3, cap, false));
            s.put(&[(key(3, 0), &block(5))]);
            assert_eq!(s.stats().entries, 3);
            assert_eq!(read(&s, &key(2, 0)), Some(block(3)));
            assert_eq!(read(&s, &key(2, 1)), None);
        }
        let s = open(dir.path(), cap);
        let st = s.stats();
        assert_eq!((st.entries, st.data_bytes, st.adding), (0, 0, true));
        assert_eq!(read(&s, &key(1, 0)), None);
        s.put(&[(key(3, 0), &block(5))]);
        assert_eq!(read(&s, &key(3, 0)), Some(block(5)));
    }

    #[test]
    fn a_locked_store_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), DEFAULT_CAP_BYTES);
        assert!(matches!(
            BlockStore::open(dir.path(), DEFAULT_CAP_BYTES),
            Ok(None)
        ));
        drop(first);
        assert!(matches!(
            BlockStore::open(dir.path(), DEFAULT_CAP_BYTES),
            Ok(Some(_))
        ));
    }

    #[test]
    fn a_foreign_index_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), b"something else entirely").unwrap();
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        assert_eq!(s.stats().entries, 0);
        s.put(&[(key(1, 0), &block(1))]);
        drop(s);
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
    }
}
