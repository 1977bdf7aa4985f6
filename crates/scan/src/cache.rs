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
//! line `{"key": "...", "signatures": [...]}`; later lines win. Saved by
//! writing a temporary file and renaming it over the old one.

use std::collections::HashMap;
use std::io::Write;
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

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    key: String,
    signatures: Vec<String>,
}

/// Content → scan result, per engine and rule-set fingerprint.
#[derive(Debug, Default)]
pub struct ScanCache {
    path: Option<PathBuf>,
    entries: HashMap<String, Vec<String>>,
    dirty: bool,
}

impl ScanCache {
    /// An empty cache that is not persisted.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Loads `dir/scan-cache.jsonl` (an absent file is an empty cache).
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(CACHE_FILE);
        let mut entries = HashMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (i, l) in text.lines().enumerate() {
                    if l.trim().is_empty() {
                        continue;
                    }
                    let line: Line =
                        serde_json::from_str(l).map_err(|e| ScanError::CacheCorrupt {
                            path: path.clone(),
                            line: i.saturating_add(1),
                            message: e.to_string(),
                        })?;
                    entries.insert(line.key, line.signatures);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ScanError::io(&path, e)),
        }
        Ok(ScanCache {
            path: Some(path),
            entries,
            dirty: false,
        })
    }

    fn key(engine: Engine, fingerprint: &str, content: &ContentKey) -> String {
        format!("{}:{}:{}", engine.as_str(), fingerprint, content.as_str())
    }

    /// The cached signatures for this content, engine and rule set.
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

    /// Records a scan result (empty `signatures` = clean).
    pub fn insert(
        &mut self,
        engine: Engine,
        fingerprint: &str,
        content: &ContentKey,
        signatures: Vec<String>,
    ) {
        self.entries
            .insert(Self::key(engine, fingerprint, content), signatures);
        self.dirty = true;
    }

    /// Number of cached results.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache back to its file (no-op for in-memory caches or when
    /// nothing changed).
    pub fn save(&mut self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let tmp = path.with_extension("jsonl.tmp");
        let mut keys: Vec<&String> = self.entries.keys().collect();
        keys.sort();
        let mut buf = Vec::new();
        for k in keys {
            let line = Line {
                key: k.clone(),
                signatures: self.entries.get(k).cloned().unwrap_or_default(),
            };
            serde_json::to_writer(&mut buf, &line).map_err(|e| ScanError::io(&tmp, e.into()))?;
            buf.push(b'\n');
        }
        let mut f = std::fs::File::create(&tmp).map_err(|e| ScanError::io(&tmp, e))?;
        f.write_all(&buf)
            .and_then(|_| f.sync_all())
            .map_err(|e| ScanError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ScanError::io(path, e))?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let a = ContentKey::of_bytes(b"hello");
        let b = ContentKey::of_chunks(&[[1u8; 32], [2u8; 32]]);
        let mut c = ScanCache::open(dir.path()).unwrap();
        assert!(c.is_empty());
        c.insert(Engine::Yara, "fp1", &a, vec![]);
        c.insert(Engine::Clamav, "db1", &b, vec!["Eicar".into()]);
        c.save().unwrap();
        let c2 = ScanCache::open(dir.path()).unwrap();
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

    #[test]
    fn chunk_keys_differ_from_byte_keys_and_by_order() {
        let x = ContentKey::of_chunks(&[[1u8; 32], [2u8; 32]]);
        let y = ContentKey::of_chunks(&[[2u8; 32], [1u8; 32]]);
        assert_ne!(x, y);
        assert_ne!(x, ContentKey::of_bytes(&[1u8; 64]));
    }

    #[test]
    fn corrupt_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CACHE_FILE),
            "{\"key\":\"a\",\"signatures\":[]}\nnot json\n",
        )
        .unwrap();
        let e = ScanCache::open(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 2") && msg.contains(CACHE_FILE), "{msg}");
    }
}
