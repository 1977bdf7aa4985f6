//! Dedup-aware scan cache: remembers the result of scanning some content with
//! one engine and one rule set / signature database, so a re-scan of a
//! restore point that shares content with a scanned one skips the same bytes.
//!
//! Key: `ENGINE:FINGERPRINT:CONTENT` where CONTENT is a [`ContentKey`] (BLAKE3
//! of the bytes, of the repository chunk digest list when the caller has
//! it, or an extent key, see [`extent_key`](crate::extent_key)). Value:
//! the matching signature names (empty = clean). Unreadable
//! files are never cached.
//!
//! On disk: `scan-cache.jsonl` in the given directory, one JSON object per
//! line `{"key": "...", "signatures": [...], "mac": "..."}`; later lines
//! win. A save appends the results added since the file was read (a
//! re-scan adds a few thousand lines to a file of hundreds of thousands)
//! and syncs them; it rewrites the whole file (a temporary file renamed
//! over the old one) when superseded lines would outnumber the live ones,
//! or when the file ended in a torn line (a save cut short by a crash:
//! that line is dropped on load, every complete line before it is kept)
//! or held lines that were dropped.
//!
//! Authentication: whoever can write this file could otherwise mark any
//! content clean. Every line carries `mac`, the first 16 bytes (hex) of
//! BLAKE3 keyed with the cache key over the key text and the signatures
//! (each length-prefixed, see [`line_mac`]); the caller derives the cache
//! key from the repository's key (or keeps a random one in a 0600 file for
//! an unencrypted repository). A line whose MAC does not verify, that is
//! not JSON or that has no MAC (a cache written before lines were
//! authenticated) is dropped and counted ([`ScanCache::rejected`]): its
//! content is scanned again. A MAC binds a result to its key (engine,
//! signature fingerprint, content), so a line cannot be moved to another
//! content either; dropping lines only costs a re-scan.
//!
//! The file and its temporary file are created with mode 0600.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, ScanError};
use crate::report::Engine;

/// File name of the cache inside its directory.
pub const CACHE_FILE: &str = "scan-cache.jsonl";

/// Identifies file content independently of its path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentKey(String);

impl ContentKey {
    /// BLAKE3 of the file bytes.
    pub fn of_bytes(data: &[u8]) -> Self {
        ContentKey(format!("b3:{}", blake3::hash(data).to_hex()))
    }

    /// From the ordered list of repository chunk digests that make up the
    /// file (same chunks = same bytes), without reading the data.
    pub fn of_chunks<D: AsRef<[u8]>>(digests: &[D]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"lifeboat-chunks\0");
        for d in digests {
            let d = d.as_ref();
            h.update(&(d.len() as u64).to_le_bytes());
            h.update(d);
        }
        ContentKey(format!("chunks:{}", h.finalize().to_hex()))
    }

    /// A key made elsewhere in this crate (e.g. an extent key).
    pub(crate) fn from_text(text: String) -> Self {
        ContentKey(text)
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Serialize)]
struct Line<'a> {
    key: &'a str,
    signatures: &'a [String],
    mac: &'a str,
}

/// A line as read: the key borrowed from the file's text where it holds no
/// escapes.
#[derive(Debug, Deserialize)]
struct LineIn<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    signatures: Vec<String>,
    #[serde(default)]
    mac: Option<String>,
}

/// Hex digits of a line's MAC (16 bytes).
const MAC_HEX: usize = 32;

/// The MAC of a line holding `key` and `signatures` (see the module doc):
/// BLAKE3 keyed with `mac_key` over a domain string, then the key and each
/// signature prefixed with its length, truncated to 16 bytes, as hex.
pub fn line_mac(mac_key: &[u8; 32], key: &str, signatures: &[String]) -> String {
    let mut h = blake3::Hasher::new_keyed(mac_key);
    h.update(b"lifeboat scan cache line v1\0");
    for part in std::iter::once(key).chain(signatures.iter().map(String::as_str)) {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let full = h.finalize();
    full.to_hex()
        .get(..MAC_HEX)
        .map(str::to_string)
        .unwrap_or_default()
}

/// Lines of a cache file that were dropped on load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejected {
    /// How many.
    pub count: usize,
    /// The first few line numbers (1-based), for the warning.
    pub first_lines: Vec<usize>,
}

/// Content → scan result, per engine and rule-set fingerprint.
#[derive(Debug, Default)]
pub struct ScanCache {
    path: Option<PathBuf>,
    /// The key of the lines' MACs.
    mac_key: [u8; 32],
    rejected: Rejected,
    entries: HashMap<String, Vec<String>>,
    /// Keys added or changed since the file was read or written, in order.
    unsaved: Vec<String>,
    /// Lines in the file, superseded ones included.
    file_lines: usize,
    /// The file ends with a complete line: a save may append to it.
    appendable: bool,
}

impl ScanCache {
    /// An empty cache that is not persisted.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens (or starts) the cache file in `dir`, whose lines are
    /// authenticated with `mac_key` (see the module doc).
    pub fn open(dir: &Path, mac_key: [u8; 32]) -> Result<Self> {
        let path = dir.join(CACHE_FILE);
        let mut cache = ScanCache {
            path: Some(path.clone()),
            mac_key,
            appendable: true,
            ..Self::default()
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cache),
            Err(e) => return Err(ScanError::io(&path, e)),
        };
        let mut lines = text.split('\n').enumerate().peekable();
        while let Some((i, l)) = lines.next() {
            let last = lines.peek().is_none();
            if l.trim().is_empty() {
                continue;
            }
            if let Some((key, mac)) = clean_line_key(l) {
                if mac == line_mac(&cache.mac_key, key, &[]) {
                    cache.entries.insert(key.to_string(), Vec::new());
                    cache.file_lines = cache.file_lines.saturating_add(1);
                } else {
                    cache.reject(i);
                }
                continue;
            }
            match serde_json::from_str::<LineIn>(l) {
                Ok(line)
                    if line.mac.as_deref()
                        == Some(line_mac(&cache.mac_key, &line.key, &line.signatures).as_str()) =>
                {
                    cache.entries.insert(line.key.into_owned(), line.signatures);
                    cache.file_lines = cache.file_lines.saturating_add(1);
                }
                // No newline after it: a torn append, dropped (the next
                // save rewrites the file).
                Err(_) if last => cache.appendable = false,
                _ => cache.reject(i),
            }
        }
        Ok(cache)
    }

    /// Counts line `i` (0-based) as dropped; the next save rewrites the file.
    fn reject(&mut self, i: usize) {
        self.rejected.count = self.rejected.count.saturating_add(1);
        if self.rejected.first_lines.len() < 5 {
            self.rejected.first_lines.push(i.saturating_add(1));
        }
        self.appendable = false;
    }

    /// The lines dropped on load (failed authentication or not readable).
    pub fn rejected(&self) -> &Rejected {
        &self.rejected
    }

    /// The cache file (`None` for an in-memory cache).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn key(engine: Engine, fingerprint: &str, content: &ContentKey) -> String {
        format!("{}:{}:{}", engine.as_str(), fingerprint, content.as_str())
    }

    /// The cached result of `content` under `engine` with rule set /
    /// database `fingerprint`.
    pub fn get(
        &self,
        engine: Engine,
        fingerprint: &str,
        content: &ContentKey,
    ) -> Option<&[String]> {
        self.entries
            .get(&Self::key(engine, fingerprint, content))
            .map(Vec::as_slice)
    }

    /// Records a result (empty `signatures` = clean).
    pub fn insert(
        &mut self,
        engine: Engine,
        fingerprint: &str,
        content: &ContentKey,
        signatures: Vec<String>,
    ) {
        let key = Self::key(engine, fingerprint, content);
        if self.entries.get(&key) == Some(&signatures) {
            return;
        }
        self.entries.insert(key.clone(), signatures);
        self.unsaved.push(key);
    }

    /// Number of cached results.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes what changed back to the cache file (no-op for in-memory
    /// caches or when nothing changed): appended, or the whole file
    /// rewritten (see the module doc).
    pub fn save(&mut self) -> Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if self.unsaved.is_empty() {
            return Ok(());
        }
        let lines_after = self.file_lines.saturating_add(self.unsaved.len());
        if self.appendable && lines_after <= self.entries.len().saturating_mul(2) {
            self.append(&path)?;
            self.file_lines = lines_after;
        } else {
            self.rewrite(&path)?;
            self.file_lines = self.entries.len();
            self.appendable = true;
        }
        self.unsaved.clear();
        Ok(())
    }

    /// Appends the unsaved results (in insertion order; a key changed twice
    /// is written twice, the later line wins on load).
    fn append(&self, path: &Path) -> Result<()> {
        let mut buf = Vec::new();
        for k in &self.unsaved {
            self.write_line(&mut buf, k, path)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ScanError::io(path, e))?;
        f.write_all(&buf)
            .and_then(|_| f.sync_data())
            .map_err(|e| ScanError::io(path, e))
    }

    /// Writes every result, sorted by key, to a temporary file renamed over
    /// the cache file.
    fn rewrite(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("jsonl.tmp");
        let mut keys: Vec<&String> = self.entries.keys().collect();
        keys.sort();
        let mut buf = Vec::new();
        for k in keys {
            self.write_line(&mut buf, k, &tmp)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ScanError::io(&tmp, e))?;
        f.write_all(&buf)
            .and_then(|_| f.sync_all())
            .map_err(|e| ScanError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ScanError::io(path, e))
    }

    /// One line (with its newline) of key `k` into `buf`.
    fn write_line(&self, buf: &mut Vec<u8>, k: &str, path: &Path) -> Result<()> {
        let signatures = self.entries.get(k).map_or(&[][..], Vec::as_slice);
        let mac = line_mac(&self.mac_key, k, signatures);
        let line = Line {
            key: k,
            signatures,
            mac: &mac,
        };
        serde_json::to_writer(&mut *buf, &line).map_err(|e| ScanError::io(path, e.into()))?;
        buf.push(b'\n');
        Ok(())
    }
}

/// A scan cache read by a thread of its own ([`LoadingCache::start`]): a
/// large cache file (hundreds of thousands of lines after a full scan)
/// takes a few tenths of a second to read, which then overlaps the
/// caller's other start-up work (publishing the restore point).
pub struct LoadingCache {
    /// The cache file, named in errors.
    file: PathBuf,
    state: LoadState,
}

enum LoadState {
    Loading(std::thread::JoinHandle<Result<ScanCache>>),
    Ready(ScanCache),
    /// The load failed and its error was returned.
    Failed,
}

impl LoadingCache {
    /// Starts reading the cache in `dir` (see [`ScanCache::open`]).
    pub fn start(dir: &Path, mac_key: [u8; 32]) -> Self {
        let owned = dir.to_path_buf();
        LoadingCache {
            file: dir.join(CACHE_FILE),
            state: LoadState::Loading(std::thread::spawn(move || ScanCache::open(&owned, mac_key))),
        }
    }

    /// The cache, once read; the first call after a failed read returns its
    /// error, later calls an error pointing to it.
    pub fn get(&mut self) -> Result<&mut ScanCache> {
        match std::mem::replace(&mut self.state, LoadState::Failed) {
            LoadState::Loading(t) => {
                let loaded = t.join().unwrap_or_else(|_| {
                    Err(ScanError::io(
                        &self.file,
                        std::io::Error::other("the thread reading the scan cache panicked"),
                    ))
                });
                self.state = LoadState::Ready(loaded?);
            }
            other => self.state = other,
        }
        match &mut self.state {
            LoadState::Ready(c) => Ok(c),
            _ => Err(ScanError::io(
                &self.file,
                std::io::Error::other("not read (see the error above)"),
            )),
        }
    }

    /// Saves the cache when it was read (see [`ScanCache::save`]); nothing
    /// to do when it never was.
    pub fn save(&mut self) -> Result<()> {
        match &mut self.state {
            LoadState::Ready(c) => c.save(),
            _ => Ok(()),
        }
    }
}

/// The key and MAC of a line exactly as [`ScanCache::save`] writes a clean
/// result with a key that needs no escaping
/// (`{"key":"K","signatures":[],"mac":"M"}`, the bulk of every cache
/// file), read without a JSON parser; `None` for any other line, which
/// then goes through serde.
fn clean_line_key(line: &str) -> Option<(&str, &str)> {
    let (key, mac) = line
        .strip_prefix("{\"key\":\"")?
        .strip_suffix("\"}")?
        .split_once("\",\"signatures\":[],\"mac\":\"")?;
    let plain = |t: &str| !t.contains(['"', '\\']) && !t.chars().any(char::is_control);
    (plain(key) && plain(mac)).then_some((key, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let a = ContentKey::of_bytes(b"hello");
        let b = ContentKey::of_chunks(&[[1u8; 32], [2u8; 32]]);
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        assert!(c.is_empty());
        c.insert(Engine::Yara, "fp1", &a, vec![]);
        c.insert(Engine::Clamav, "db1", &b, vec!["Eicar".into()]);
        c.save().unwrap();
        let c2 = ScanCache::open(dir.path(), KEY).unwrap();
        assert_eq!(c2.len(), 2);
        assert_eq!(c2.get(Engine::Yara, "fp1", &a), Some(&[][..]));
        assert_eq!(
            c2.get(Engine::Clamav, "db1", &b).unwrap(),
            ["Eicar".to_string()]
        );
        // Other engine, other rule set, other content: misses.
        assert!(c2.get(Engine::Clamav, "fp1", &a).is_none());
        assert!(c2.get(Engine::Yara, "fp2", &a).is_none());
        assert!(c2
            .get(Engine::Yara, "fp1", &ContentKey::of_bytes(b"hellO"))
            .is_none());
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join(CACHE_FILE))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn saves_append_what_changed_and_rewrite_when_superseded_lines_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let k = |i: u32| ContentKey::of_bytes(&i.to_le_bytes());
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        for i in 0..10 {
            c.insert(Engine::Yara, "fp", &k(i), vec![]);
        }
        c.save().unwrap();
        assert_eq!(lines(dir.path()).len(), 10);
        // Re-inserting the same result is no change: nothing written.
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        c.insert(Engine::Yara, "fp", &k(3), vec![]);
        c.insert(Engine::Yara, "fp", &k(10), vec![]);
        c.insert(Engine::Yara, "fp", &k(4), vec!["Evil".into()]);
        c.save().unwrap();
        let l = lines(dir.path());
        assert_eq!(l.len(), 12, "appended the two changes: {l:?}");
        let c = ScanCache::open(dir.path(), KEY).unwrap();
        assert_eq!(c.len(), 11);
        assert_eq!(c.get(Engine::Yara, "fp", &k(4)).unwrap(), ["Evil"]);
        assert_eq!(c.get(Engine::Yara, "fp", &k(10)), Some(&[][..]));
        // Changing results over and over: once superseded lines would
        // outnumber live ones, the file is rewritten with one line each.
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        for round in 0..3 {
            for i in 0..11 {
                c.insert(Engine::Yara, "fp", &k(i), vec![format!("S{round}")]);
            }
            c.save().unwrap();
        }
        assert!(lines(dir.path()).len() <= 22, "{}", lines(dir.path()).len());
        let c = ScanCache::open(dir.path(), KEY).unwrap();
        assert_eq!(c.len(), 11);
        assert_eq!(c.get(Engine::Yara, "fp", &k(0)).unwrap(), ["S2"]);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_next_save_rewrites_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = ContentKey::of_bytes(b"a");
        let b = ContentKey::of_bytes(b"b");
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        c.insert(Engine::Yara, "fp", &a, vec![]);
        c.save().unwrap();
        // A crash in the middle of an append.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(CACHE_FILE))
            .unwrap();
        f.write_all(b"{\"key\":\"yara:fp:b3:12").unwrap();
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(Engine::Yara, "fp", &a), Some(&[][..]));
        c.insert(Engine::Yara, "fp", &b, vec![]);
        c.save().unwrap();
        assert_eq!(
            lines(dir.path()).len(),
            2,
            "rewritten without the torn line"
        );
        let c = ScanCache::open(dir.path(), KEY).unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn the_fast_path_reads_only_lines_it_can_read_exactly() {
        let c = clean_line_key;
        assert_eq!(
            c(r#"{"key":"yara:fp:b3:00ab","signatures":[],"mac":"12"}"#),
            Some(("yara:fp:b3:00ab", "12"))
        );
        assert_eq!(
            c(r#"{"key":"yara:fp:b3:00ab","signatures":["X"],"mac":"12"}"#),
            None
        );
        assert_eq!(c(r#"{"key":"yara:fp:b3:00ab","signatures":[]}"#), None);
        assert_eq!(c(r#"{"key":"a\"b","signatures":[],"mac":"12"}"#), None);
        assert_eq!(c(r#"{"key":"a"b","signatures":[],"mac":"12"}"#), None);
        assert_eq!(c(r#"{"signatures":[],"key":"a","mac":"12"}"#), None);
        // Whatever the path, a saved cache reads back the same.
        let dir = tempfile::tempdir().unwrap();
        let mut w = ScanCache::open(dir.path(), KEY).unwrap();
        let odd = ContentKey::from_text("b3:quote\"back\\slash\ttab".to_string());
        let plain = ContentKey::of_bytes(b"x");
        w.insert(Engine::Yara, "fp", &odd, vec![]);
        w.insert(Engine::Yara, "fp", &plain, vec![]);
        w.insert(Engine::Clamav, "db", &plain, vec!["Sig \"1\"".into()]);
        w.save().unwrap();
        let r = ScanCache::open(dir.path(), KEY).unwrap();
        assert_eq!(r.entries, w.entries);
        assert_eq!(r.rejected().count, 0);
    }

    /// Rewrites every line of the cache in `dir` with `edit`.
    fn edit_lines(dir: &Path, edit: impl Fn(&str) -> String) {
        let text: String = lines(dir).iter().map(|l| edit(l) + "\n").collect();
        std::fs::write(dir.join(CACHE_FILE), text).unwrap();
    }

    #[test]
    fn tampered_moved_unauthenticated_and_foreign_lines_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let evil = ContentKey::of_bytes(b"evil");
        let fine = ContentKey::of_bytes(b"fine");
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        c.insert(Engine::Clamav, "db", &evil, vec!["Trojan.X".into()]);
        c.insert(Engine::Clamav, "db", &fine, vec![]);
        c.save().unwrap();
        let good = lines(dir.path());
        // The infected result marked clean, keeping its MAC.
        edit_lines(dir.path(), |l| l.replace(r#"["Trojan.X"]"#, "[]"));
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        assert_eq!(c.get(Engine::Clamav, "db", &evil), None);
        assert_eq!(c.get(Engine::Clamav, "db", &fine), Some(&[][..]));
        assert_eq!(
            c.rejected(),
            &Rejected {
                count: 1,
                first_lines: vec![1]
            }
        );
        // The next save rewrites the file without the dropped line.
        c.insert(Engine::Clamav, "db", &evil, vec!["Trojan.X".into()]);
        c.save().unwrap();
        let sorted = |mut l: Vec<String>| {
            l.sort();
            l
        };
        assert_eq!(sorted(lines(dir.path())), sorted(good));
        // The clean line's MAC moved to the infected content's key.
        let fine_key = format!("clamav:db:{}", fine.as_str());
        let evil_key = format!("clamav:db:{}", evil.as_str());
        edit_lines(dir.path(), |l| l.replace(&fine_key, &evil_key));
        let c = ScanCache::open(dir.path(), KEY).unwrap();
        assert_eq!(c.get(Engine::Clamav, "db", &evil).unwrap(), ["Trojan.X"]);
        assert_eq!(c.rejected().count, 1);
        // Lines without a MAC (an older cache), garbage, another key.
        std::fs::write(
            dir.path().join(CACHE_FILE),
            format!("{{\"key\":\"{evil_key}\",\"signatures\":[]}}\nnot json\n"),
        )
        .unwrap();
        let c = ScanCache::open(dir.path(), KEY).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.rejected().first_lines, [1, 2]);
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        c.insert(Engine::Clamav, "db", &fine, vec![]);
        c.save().unwrap();
        let c = ScanCache::open(dir.path(), [8; 32]).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.rejected().count, 1);
    }

    #[test]
    fn a_cache_read_in_the_background_is_the_same_and_its_errors_surface() {
        let dir = tempfile::tempdir().unwrap();
        let a = ContentKey::of_bytes(b"a");
        let mut c = ScanCache::open(dir.path(), KEY).unwrap();
        c.insert(Engine::Yara, "fp", &a, vec!["X".into()]);
        c.save().unwrap();
        let mut l = LoadingCache::start(dir.path(), KEY);
        assert_eq!(l.get().unwrap().get(Engine::Yara, "fp", &a).unwrap(), ["X"]);
        l.get().unwrap().insert(Engine::Yara, "fp", &a, vec![]);
        l.save().unwrap();
        assert_eq!(
            ScanCache::open(dir.path(), KEY)
                .unwrap()
                .get(Engine::Yara, "fp", &a),
            Some(&[][..])
        );

        std::fs::remove_file(dir.path().join(CACHE_FILE)).unwrap();
        std::fs::create_dir(dir.path().join(CACHE_FILE)).unwrap();
        let mut l = LoadingCache::start(dir.path(), KEY);
        let first = l.get().err().unwrap().to_string();
        assert!(first.contains(CACHE_FILE), "{first}");
        let again = l.get().err().unwrap().to_string();
        assert!(again.contains("not read"), "{again}");
        l.save().unwrap();
    }

    #[test]
    fn chunk_keys_differ_from_byte_keys_and_by_order() {
        let x = ContentKey::of_chunks(&[[1u8; 32], [2u8; 32]]);
        let y = ContentKey::of_chunks(&[[2u8; 32], [1u8; 32]]);
        assert_ne!(x, y);
        assert_ne!(x, ContentKey::of_bytes(&[1u8; 64]));
    }
}
