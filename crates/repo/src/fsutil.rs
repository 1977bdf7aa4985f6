//! Small filesystem helpers: durable atomic replace (write `.tmp-*`, fsync,
//! rename, fsync the directory), directory fsync, random names, flock.

use crate::crypto;
use crate::digest::hex;
use crate::error::{Error, IoContext, Result};
use crate::layout::TMP_PREFIX;
use rustix::fs::FlockOperation;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `n` random lowercase hex digits.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n.div_ceil(2)];
    crypto::random_bytes(&mut buf).map_err(|e| Error::invalid("random", e))?;
    let mut s = hex(&buf);
    s.truncate(n);
    Ok(s)
}

/// A fresh temporary path inside `dir`.
pub(crate) fn temp_path(dir: &Path) -> Result<PathBuf> {
    Ok(dir.join(format!("{TMP_PREFIX}{}", random_hex(16)?)))
}

/// Fsyncs every file in `paths`, on up to 8 threads: a backup makes the
/// chunks it wrote durable all at once before its indexes and manifest
/// refer to them. Concurrent fsyncs share the filesystem's journal commits,
/// which makes this much cheaper than one fsync per chunk inline (measured:
/// 6 s of a 17 s backup of the 8 GiB bench image), and unlike `syncfs` it
/// never waits for other programs' dirty data.
pub(crate) fn fsync_files(paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let threads = paths.len().min(8);
    let per = paths.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(per)
            .map(|part| {
                scope.spawn(move || -> Result<()> {
                    for p in part {
                        File::open(p).and_then(|f| f.sync_all()).at(p)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::invalid(
                        "fsync of new chunks",
                        "a sync thread panicked",
                    ))
                }
            }
        }
        Ok(())
    })
}

/// Fsyncs a directory so renames and unlinks inside it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes `bytes` to a new temporary file in `dir`, fsyncs it, and returns
/// its path. The caller renames it into place.
pub(crate) fn write_temp(dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    write_temp_with(dir, bytes, true)
}

/// Like [`write_temp`] but without the fsync: for chunks, which a backup
/// makes durable all at once with [`sync_filesystem`] before its indexes
/// and manifest are written.
pub(crate) fn write_temp_unsynced(dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    write_temp_with(dir, bytes, false)
}

fn write_temp_with(dir: &Path, bytes: &[u8], sync: bool) -> Result<PathBuf> {
    let tmp = temp_path(dir)?;
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    Ok(tmp)
}

/// Atomically replaces `path` with `bytes`: temp file, fsync, rename, fsync
/// the directory. A crash leaves either the old or the new content.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::invalid(path.display(), "has no parent directory"))?;
    let tmp = write_temp(dir, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    fsync_dir(dir)
}

/// Reads a whole file; `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Opens (creating if needed) a lock file.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)
}

/// `flock(fd, op)`, retrying on EINTR.
pub(crate) fn flock(file: &File, op: FlockOperation, path: &Path) -> Result<()> {
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::io(path, e.into())),
        }
    }
}

/// Tries to take an exclusive flock without blocking; `Ok(false)` when
/// someone else holds it.
pub(crate) fn try_lock_exclusive(file: &File, path: &Path) -> Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(Error::io(path, e.into())),
    }
}

/// Holds an exclusive flock on a file until dropped.
pub(crate) struct ExclusiveLock {
    _file: File,
}

impl ExclusiveLock {
    /// Blocks until the exclusive lock on `path` is ours.
    pub fn acquire(path: &Path) -> Result<ExclusiveLock> {
        let file = open_lock_file(path)?;
        flock(&file, FlockOperation::LockExclusive, path)?;
        Ok(ExclusiveLock { _file: file })
    }
}
