//! Quarantine: damaged files are moved aside, never deleted, with a note
//! saying what they were, why they were moved, when and by which command.
//!
//! ```text
//! quarantine/chunks/<64 hex>.<unix secs>          a damaged chunk file (moved)
//! quarantine/chunks/<64 hex>.<unix secs>.json     its note (alone when the chunk was missing)
//! quarantine/points/<vm>/<id>.<unix secs>/        a restore point whose manifest or index is damaged:
//!     <id>.manifest                               its manifest (when it existed)
//!     indexes/<disk>.idx                          its index directory
//!     note.json                                   the note
//! ```
//!
//! Nothing in `quarantine/` is ever listed as a restore point, read as a
//! chunk or marked by gc, and gc never sweeps it: a quarantined chunk is
//! simply absent from `chunks/`, so the next backup that produces the same
//! content stores it again (healing), and `reuse_chunk` answers `false`
//! for it. Nothing removes quarantine automatically: `repo repair
//! --purge-quarantine DAYS` removes entries older than DAYS, or remove
//! them by hand.
//!
//! A chunk is moved under an EXCLUSIVE flock on its prefix's `.lock` (the
//! lock gc's sweep takes), after reading it once more: a chunk that reads
//! intact by then is left where it is.

use crate::damage::{DamageState, FileDamage, FileKind};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::layout::{
    INDEXES_DIR, PREFIX_LOCK, QUARANTINE_CHUNKS, QUARANTINE_DIR, QUARANTINE_NOTE,
    QUARANTINE_POINTS, TMP_PREFIX,
};
use crate::repository::{dir_names, prefix_dir, Repository};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What was quarantined: written as JSON beside the moved file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineNote {
    pub kind: FileKind,
    /// Where the file was, relative to the repository (`chunks/ab/ab12...`).
    pub original: String,
    /// Where it is now, relative to the repository; `None` when the file
    /// was already missing (the note only remembers it).
    pub moved_to: Option<String>,
    /// Missing or corrupt when it was found.
    pub state: DamageState,
    /// Why: the error that found it.
    pub reason: String,
    pub time: DateTime<Utc>,
    /// The command that moved it: `verify`, `read`, `repo repair`.
    pub by: String,
    /// Restore points (`vm@id`) that depended on it when it was moved.
    pub restore_points: Vec<String>,
}

/// What [`Repository::quarantine_chunk`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkQuarantine {
    /// Moved to this path (or, for a missing chunk, remembered in a note).
    Done(PathBuf),
    /// The chunk reads intact now (stored again meanwhile): left in place.
    Intact,
    /// Missing and already remembered by an earlier note.
    AlreadyNoted,
}

/// Parses the digest of a quarantined chunk's name `<64 hex>.<secs>...`.
fn digest_of(name: &str) -> Option<Digest> {
    name.get(..64)?.parse().ok()
}

/// Seconds since the epoch, for names.
fn stamp(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// `base`, or `base-1`, `base-2`... whichever (with `suffix`) does not exist.
fn free_name(dir: &Path, base: &str, suffix: &str) -> PathBuf {
    let mut n = 0u32;
    loop {
        let name = if n == 0 {
            format!("{base}{suffix}")
        } else {
            format!("{base}-{n}{suffix}")
        };
        let p = dir.join(name);
        if std::fs::symlink_metadata(&p).is_err() {
            return p;
        }
        n += 1;
    }
}

impl Repository {
    pub(crate) fn quarantine_dir(&self) -> PathBuf {
        self.path().join(QUARANTINE_DIR)
    }

    /// `path` relative to the repository, for notes and messages.
    pub(crate) fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.path())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn write_note(&self, path: &Path, note: &QuarantineNote) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(note).map_err(|e| Error::invalid(path.display(), e))?;
        fsutil::atomic_write(path, &json)
    }

    /// Moves chunk `digest` into `quarantine/chunks/` (or, when it is
    /// missing, writes a note remembering it), unless it reads intact now;
    /// a chunk whose read fails with an I/O error is left in place and
    /// the error returned.
    /// `reason` is the error that found it, `points` the restore points
    /// that use it, `by` the command.
    pub fn quarantine_chunk(
        &self,
        digest: &Digest,
        reason: &str,
        points: &[String],
        by: &str,
    ) -> Result<ChunkQuarantine> {
        let dir = self.quarantine_dir().join(QUARANTINE_CHUNKS);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let prefix = prefix_dir(self.path(), digest.prefix());
        let _lock = fsutil::ExclusiveLock::acquire(&prefix.join(PREFIX_LOCK))?;
        let original = self.chunk_path(digest);
        let present = std::fs::symlink_metadata(&original).is_ok();
        if present {
            // Only a chunk that reads and fails its checks is moved: an
            // I/O error (a permission, a busy system) says nothing of it.
            match self.read_chunk_only(digest) {
                Ok(_) => return Ok(ChunkQuarantine::Intact),
                Err(Error::CorruptChunk { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !present && self.quarantined_chunks()?.contains_key(digest) {
            return Ok(ChunkQuarantine::AlreadyNoted);
        }
        let now = Utc::now();
        let base = format!("{}.{}", digest.to_hex(), stamp(now));
        let target = free_name(&dir, &base, "");
        let note_path = PathBuf::from(format!("{}.json", target.display()));
        let moved_to = if present {
            std::fs::rename(&original, &target).at(&target)?;
            fsutil::fsync_dir(&prefix)?;
            Some(self.relative(&target))
        } else {
            None
        };
        let note = QuarantineNote {
            kind: FileKind::Chunk,
            original: self.relative(&original),
            moved_to,
            state: if present {
                DamageState::Corrupt
            } else {
                DamageState::Missing
            },
            reason: reason.to_string(),
            time: now,
            by: by.to_string(),
            restore_points: points.to_vec(),
        };
        self.write_note(&note_path, &note)?;
        tracing::warn!(chunk = %digest, to = %target.display(), by, "quarantined a damaged chunk");
        Ok(ChunkQuarantine::Done(if present {
            target
        } else {
            note_path
        }))
    }

    /// After a read found chunk `digest` corrupt: quarantine it when this
    /// handle heals on read and the repository lets us (best effort: a
    /// read-only repository or an unprivileged reader just reads on).
    pub(crate) fn quarantine_after_read(&self, digest: &Digest, err: &Error) {
        match self.quarantine_chunk(digest, &err.to_string(), &[], "read") {
            Ok(_) => {}
            Err(e) => tracing::debug!(chunk = %digest, error = %e, "could not quarantine"),
        }
    }

    /// The notes of quarantined chunks, the newest per digest.
    pub fn quarantined_chunks(&self) -> Result<HashMap<Digest, QuarantineNote>> {
        let dir = self.quarantine_dir().join(QUARANTINE_CHUNKS);
        let mut out: HashMap<Digest, QuarantineNote> = HashMap::new();
        for name in dir_names(&dir)? {
            if !name.ends_with(".json") || name.starts_with(TMP_PREFIX) {
                continue;
            }
            let Some(digest) = digest_of(&name) else {
                continue;
            };
            let Some(note) = read_note(&dir.join(&name)) else {
                continue;
            };
            match out.get(&digest) {
                Some(old) if old.time >= note.time => {}
                _ => {
                    out.insert(digest, note);
                }
            }
        }
        Ok(out)
    }

    /// Moves restore point `vm@id` into `quarantine/points/<vm>/<id>.<secs>/`
    /// with a note: its manifest, then (when `whole`) its index directory.
    /// `found` is the damage that sends it there (its kind and state go in
    /// the note), `reason` the words of all of it. The caller holds the
    /// snapshots lock. Returns the directory.
    pub(crate) fn quarantine_point(
        &self,
        vm: &str,
        id: &str,
        whole: bool,
        found: &FileDamage,
        reason: &str,
        by: &str,
    ) -> Result<PathBuf> {
        let vm_dir = self.quarantine_dir().join(QUARANTINE_POINTS).join(vm);
        std::fs::create_dir_all(&vm_dir).at(&vm_dir)?;
        let now = Utc::now();
        let dir = free_name(&vm_dir, &format!("{id}.{}", stamp(now)), "");
        std::fs::create_dir(&dir).at(&dir)?;
        let manifest = self.manifest_path(vm, id);
        let original = match found.kind {
            FileKind::Index => self.index_dir(vm, id),
            _ => manifest.clone(),
        };
        if std::fs::symlink_metadata(&manifest).is_ok() {
            let to = dir.join(manifest.file_name().unwrap_or_default());
            std::fs::rename(&manifest, &to).at(&to)?;
            if let Some(parent) = manifest.parent() {
                fsutil::fsync_dir(parent)?;
            }
        }
        let indexes = self.index_dir(vm, id);
        if whole && indexes.is_dir() {
            let to = dir.join(INDEXES_DIR);
            std::fs::rename(&indexes, &to).at(&to)?;
            if let Some(parent) = indexes.parent() {
                fsutil::fsync_dir(parent)?;
            }
        }
        let note = QuarantineNote {
            kind: found.kind,
            original: self.relative(&original),
            moved_to: Some(self.relative(&dir)),
            state: found.state,
            reason: reason.to_string(),
            time: now,
            by: by.to_string(),
            restore_points: vec![format!("{vm}@{id}")],
        };
        self.write_note(&dir.join(QUARANTINE_NOTE), &note)?;
        fsutil::fsync_dir(&vm_dir)?;
        tracing::warn!(restore_point = %format!("{vm}@{id}"), to = %dir.display(), by, "quarantined a damaged restore point");
        Ok(dir)
    }

    /// Every quarantine note (chunks and restore points), oldest first.
    pub fn quarantine(&self) -> Result<Vec<QuarantineNote>> {
        let mut out: Vec<QuarantineNote> = Vec::new();
        for (_, path) in self.quarantine_entries()? {
            if let Some(n) = read_note(&path) {
                out.push(n);
            }
        }
        out.sort_by(|a, b| (a.time, &a.original).cmp(&(b.time, &b.original)));
        Ok(out)
    }

    /// (entry to remove, note path) of every quarantine entry: a chunk
    /// file's note and the chunk file, or a restore point's directory.
    fn quarantine_entries(&self) -> Result<Vec<(Vec<PathBuf>, PathBuf)>> {
        let mut out = Vec::new();
        let chunks = self.quarantine_dir().join(QUARANTINE_CHUNKS);
        for name in dir_names(&chunks)? {
            if let Some(file) = name.strip_suffix(".json") {
                if digest_of(&name).is_some() && !name.starts_with(TMP_PREFIX) {
                    out.push((
                        vec![chunks.join(&name), chunks.join(file)],
                        chunks.join(&name),
                    ));
                }
            }
        }
        let points = self.quarantine_dir().join(QUARANTINE_POINTS);
        for vm in dir_names(&points)? {
            for entry in dir_names(&points.join(&vm))? {
                let dir = points.join(&vm).join(entry);
                if dir.is_dir() {
                    out.push((vec![dir.clone()], dir.join(QUARANTINE_NOTE)));
                }
            }
        }
        Ok(out)
    }

    /// Removes quarantine entries whose note is older than `before` (or,
    /// with `dry_run`, only says which). Returns the notes of the entries.
    pub fn purge_quarantine(
        &self,
        before: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<QuarantineNote>> {
        let mut out = Vec::new();
        for (paths, note_path) in self.quarantine_entries()? {
            let Some(note) = read_note(&note_path) else {
                continue;
            };
            if note.time >= before {
                continue;
            }
            if !dry_run {
                for p in &paths {
                    let r = if p.is_dir() {
                        std::fs::remove_dir_all(p)
                    } else {
                        std::fs::remove_file(p)
                    };
                    match r {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io(p, e)),
                    }
                }
            }
            out.push(note);
        }
        Ok(out)
    }
}

/// A note, or `None` (logged) when it does not read.
fn read_note(path: &Path) -> Option<QuarantineNote> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable quarantine note");
            None
        }
    }
}
