//! [`HolderLock`]: an exclusive `flock` on a lock file whose content names
//! the holder; [`RepoLock`]: the repository-wide advisory locks in
//! `locks/`, made of it.
//!
//! | lock file                | held by                                                        | wait |
//! |--------------------------|----------------------------------------------------------------|------|
//! | `locks/snapshots.lock`   | manifest changes: `lock`, scan records, `forget`, `prune`; the legacy config upgrade | up to the repository's lock wait (60 s default), then [`Error::Busy`] |
//! | `locks/gc.lock`          | `gc` (two at once would only repeat each other's work)          | none: [`Error::Busy`] at once |
//!
//! Backups take neither: they run concurrently with each other and with
//! gc (per-prefix flocks and writer registrations, see `gc.rs`).
//!
//! The flock is the lock; the file's content is only a note for humans:
//! `{"pid":..,"host":..,"operation":..,"since":..}`, written right after
//! the flock is taken and emptied before it is released. The kernel
//! releases a flock when its holder dies (SIGKILL included), so a lock
//! file left by a dead process never blocks: the next taker finds the
//! flock free and overwrites the dead holder's stale note.
//! A process that cannot take the flock reads the note to say who holds
//! it.

use crate::error::{Error, Result};
use crate::fsutil;
use crate::layout::LOCKS_DIR;
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting process tries the flock again.
const RETRY: Duration = Duration::from_millis(100);
/// Largest holder note read (anything longer is not ours).
const MAX_NOTE: u64 = 4096;

/// Who holds (or last held) a lock, as its file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// What it is doing: `prune`, `gc`, `lock`...
    pub operation: String,
    /// When it took the lock (RFC 3339, UTC).
    pub since: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on host {}, since {})",
            self.operation, self.pid, self.host, self.since
        )
    }
}

/// The host name, for the holder note.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The note in a lock file, if it holds one.
fn read_note(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(MAX_NOTE).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// An exclusive flock on one lock file, with the holder's note written in
/// it; released (note emptied, flock dropped) when dropped. The
/// repository's locks are these, and so is any other "one at a time"
/// lock of Lifeboat (a live backup's per-VM lock).
pub struct HolderLock {
    file: File,
}

/// The outcome of [`HolderLock::acquire`].
pub enum Acquired {
    /// The lock is ours.
    Held(HolderLock),
    /// Another process holds it: who, as its note says (with whether that
    /// process still runs), for the caller's busy error.
    Busy(String),
}

impl HolderLock {
    /// Takes the flock of `path` (created when missing) for `operation`,
    /// trying for up to `wait`. I/O errors (the file cannot be opened)
    /// are errors; a holder that keeps it past `wait` is [`Acquired::Busy`].
    pub fn acquire(path: &Path, operation: &str, wait: Duration) -> Result<Acquired> {
        let mut file = fsutil::open_lock_file(path)?;
        let start = Instant::now();
        while !fsutil::try_lock_exclusive(&file, path)? {
            if start.elapsed() >= wait {
                return Ok(Acquired::Busy(describe(read_note(&mut file))));
            }
            std::thread::sleep(RETRY.min(wait.saturating_sub(start.elapsed())));
        }
        // A note still there is stale (its writer died holding the lock:
        // the kernel released the flock); it is overwritten.
        let note = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            operation: operation.to_string(),
            since: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        let text = serde_json::to_string(&note).map_err(|e| Error::invalid(path.display(), e))?;
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(format!("{text}\n").as_bytes())
        };
        write(&mut file).map_err(|e| Error::io(path, e))?;
        Ok(Acquired::Held(HolderLock { file }))
    }
}

impl Drop for HolderLock {
    fn drop(&mut self) {
        // Empty the note while the flock is still ours; closing the file
        // releases the flock.
        let _ = self.file.set_len(0);
    }
}

/// An exclusive repository lock (`locks/<name>`), released when dropped.
pub(crate) struct RepoLock {
    _lock: HolderLock,
}

impl RepoLock {
    /// Takes `locks/<name>` of the repository at `repo` for `operation`,
    /// trying for up to `wait`; [`Error::Busy`] naming the holder after.
    pub fn acquire(repo: &Path, name: &str, operation: &str, wait: Duration) -> Result<RepoLock> {
        let path = repo.join(LOCKS_DIR).join(name);
        match HolderLock::acquire(&path, operation, wait)? {
            Acquired::Held(lock) => Ok(RepoLock { _lock: lock }),
            Acquired::Busy(holder) => Err(busy(repo, &path, holder)),
        }
    }
}

/// Who holds a lock, for a busy error: the note, and whether its process
/// (on this host) still runs.
fn describe(holder: Option<LockHolder>) -> String {
    match holder {
        Some(h) => {
            let here = h.host == host_name();
            let alive = Path::new("/proc").join(h.pid.to_string()).exists();
            if here && !alive {
                format!(
                    "{h}, not running any more: a process it started may have inherited the lock"
                )
            } else {
                h.to_string()
            }
        }
        None => "another process (it has not written its note yet)".to_string(),
    }
}

fn busy(repo: &Path, lock: &Path, holder: String) -> Error {
    let lock = lock
        .strip_prefix(repo)
        .map(PathBuf::from)
        .unwrap_or_else(|_| lock.to_path_buf());
    Error::Busy {
        path: repo.to_path_buf(),
        lock: lock.display().to_string(),
        holder,
    }
}
