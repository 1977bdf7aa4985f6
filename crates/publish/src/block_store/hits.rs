//! The hits file of a [`super::BlockStore`]: which of the entries loaded at
//! open served a read during the run, so the next open of a full store
//! knows what to keep (`compact.rs`).
//!
//! ```text
//! <dir>/hits   "lifeboat-hits-01" (16 bytes), u64 LE: records the index
//!              held when the run opened it, 8 bytes: nonce of the run;
//!              then 8-byte entries, one per entry's first hit:
//!     0..4   record number (position in blocks.idx), u32 LE
//!     4..8   first 4 bytes of BLAKE3(header || bytes 0..4)
//! ```
//!
//! Only entries loaded at open are marked: a block recorded and read again
//! in the same run (a first full scan re-reading its own blocks) says
//! nothing about what the next run shares with this one.
//!
//! Entries are appended as they happen (one 8-byte `O_APPEND` write per
//! entry, the first time it is hit), not from a timer: a publisher is sent
//! SIGTERM right after its FUSE mount goes away (`unpublish`) and a re-scan
//! can be over in 5 s, so a periodic or at-exit write would lose most of
//! it. The header goes in via a temp file and a rename. At the next open a
//! missing, torn or garbled file (bad magic, a length not header + 8n, an
//! entry failing its check, a record number outside the index) is "no hit
//! information". A write error is logged once and hits are then only
//! counted.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(super) const HITS_FILE: &str = "hits";
const HITS_TMP: &str = "hits.tmp";
const MAGIC: &[u8; 16] = b"lifeboat-hits-01";
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 8;

/// This run's record of hit entries.
pub(super) struct HitLog {
    /// One bit per record loaded at open.
    bits: Vec<AtomicU64>,
    /// Records loaded at open.
    records: u64,
    header: [u8; HEADER_LEN],
    /// `None` when the file could not be started.
    file: Option<File>,
    failed: AtomicBool,
    count: AtomicU64,
}

impl HitLog {
    /// Starts the hits file of `dir` (replacing the previous run's) for an
    /// index of `records` loaded records. A failure is logged and hits are
    /// then only counted.
    pub(super) fn start(dir: &Path, records: u64) -> HitLog {
        let header = header(records);
        let file = match write_header(dir, &header) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("block store {}: {e}; hits not recorded", dir.display());
                None
            }
        };
        let words = usize::try_from(records.div_ceil(64)).unwrap_or(0);
        HitLog {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            records,
            header,
            failed: AtomicBool::new(file.is_none()),
            file,
            count: AtomicU64::new(0),
        }
    }

    /// Marks record `rec` hit; the first time, appends it to the file.
    /// Records not loaded at open are ignored.
    pub(super) fn mark(&self, rec: u64) {
        let word = usize::try_from(rec / 64)
            .ok()
            .and_then(|w| self.bits.get(w));
        let Some(word) = word.filter(|_| rec < self.records) else {
            return;
        };
        let bit = 1u64 << (rec % 64);
        if word.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            return;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let (Some(mut file), Ok(rec)) = (self.file.as_ref(), u32::try_from(rec)) else {
            return;
        };
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = file.write_all(&entry(&self.header, rec)) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                eprintln!("block store: writing its hits file: {e}; hits no longer recorded");
            }
        }
    }

    /// Distinct loaded entries hit so far.
    pub(super) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The record numbers (sorted, distinct) the previous run's hits file of
/// `dir` names, for an index of `records` records; `None` when there is no
/// usable file (logged unless it is simply absent).
pub(super) fn read(dir: &Path, records: u64) -> Option<Vec<u64>> {
    let path = dir.join(HITS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("block store {}: {e}; no hit information", path.display());
            }
            return None;
        }
    };
    let parsed = parse(&bytes, records);
    if parsed.is_none() {
        eprintln!(
            "block store {}: torn or garbled ({} bytes); no hit information",
            path.display(),
            bytes.len()
        );
    }
    parsed
}

fn parse(bytes: &[u8], records: u64) -> Option<Vec<u64>> {
    let header: [u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    let body = bytes.get(HEADER_LEN..)?;
    let loaded = u64::from_le_bytes(header.get(16..24)?.try_into().ok()?);
    if !header.starts_with(MAGIC) || loaded > records || body.len() % ENTRY_LEN != 0 {
        return None;
    }
    let mut recs = Vec::with_capacity(body.len() / ENTRY_LEN);
    for e in body.chunks_exact(ENTRY_LEN) {
        let rec = u32::from_le_bytes(e.get(0..4)?.try_into().ok()?);
        if e != entry(&header, rec) || u64::from(rec) >= loaded {
            return None;
        }
        recs.push(u64::from(rec));
    }
    recs.sort_unstable();
    recs.dedup();
    Some(recs)
}

/// Removes the hits file of `dir` (absent is fine).
pub(super) fn remove(dir: &Path) -> Result<()> {
    let path = dir.join(HITS_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn header(records: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..16].copy_from_slice(MAGIC);
    h[16..24].copy_from_slice(&records.to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut seed = blake3::Hasher::new();
    seed.update(&now.to_le_bytes());
    seed.update(&std::process::id().to_le_bytes());
    h[24..32].copy_from_slice(&seed.finalize().as_bytes()[..8]);
    h
}

fn entry(header: &[u8; HEADER_LEN], rec: u32) -> [u8; ENTRY_LEN] {
    let mut e = [0u8; ENTRY_LEN];
    e[..4].copy_from_slice(&rec.to_le_bytes());
    let mut check = blake3::Hasher::new();
    check.update(header);
    check.update(&e[..4]);
    e[4..].copy_from_slice(&check.finalize().as_bytes()[..4]);
    e
}

/// Writes `header` to a temp file, renames it over the hits file and
/// returns the result open for appending.
fn write_header(dir: &Path, header: &[u8; HEADER_LEN]) -> Result<File> {
    let tmp = dir.join(HITS_TMP);
    let path = dir.join(HITS_FILE);
    super::private_file(&tmp, true)?
        .write_all(header)
        .map_err(|e| Error::io(&tmp, e))?;
    crate::fsutil::rename(&tmp, &path)?;
    OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_appended_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = HitLog::start(dir.path(), 100);
        for rec in [7, 3, 7, 99, 100, 5000] {
            log.mark(rec);
        }
        assert_eq!(log.count(), 3);
        drop(log);
        let len = std::fs::metadata(dir.path().join(HITS_FILE)).unwrap().len();
        assert_eq!(len, (HEADER_LEN + 3 * ENTRY_LEN) as u64);
        assert_eq!(read(dir.path(), 100), Some(vec![3, 7, 99]));
        // An index that lost records no longer matches the file.
        assert_eq!(read(dir.path(), 50), None);
        // The next run starts the file over.
        drop(HitLog::start(dir.path(), 100));
        assert_eq!(read(dir.path(), 100), Some(vec![]));
    }

    #[test]
    fn a_torn_or_garbled_hits_file_is_no_information() {
        let dir = tempfile::tempdir().unwrap();
        let log = HitLog::start(dir.path(), 10);
        log.mark(1);
        log.mark(2);
        drop(log);
        let path = dir.path().join(HITS_FILE);
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert_eq!(read(dir.path(), 10), None);
        let mut garbled = good.clone();
        garbled[HEADER_LEN + ENTRY_LEN] ^= 1; // rec 2 -> 3: check fails
        std::fs::write(&path, &garbled).unwrap();
        assert_eq!(read(dir.path(), 10), None);
        std::fs::write(&path, &good[..10]).unwrap();
        assert_eq!(read(dir.path(), 10), None);
        std::fs::write(&path, &good).unwrap();
        assert_eq!(read(dir.path(), 10), Some(vec![1, 2]));
    }
}
