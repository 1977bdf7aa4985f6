//! Small filesystem helpers: durable atomic replace (write `.tmp-*`, fsync,
//! rename, fsync the directory), directory fsync, random names, flock.

use crate::crypto;
use crate::digest::hex;
use crate::error::{Error, IoContext, Result};
use crate::layout::TMP_PREFIX;
use rustix::fs::{FlockOperation, OFlags};
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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

/// Alignment of buffers, offsets and lengths of `O_DIRECT` writes.
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// Like [`write_temp`] but into a given new path, without the fsync, and
/// bypassing the page cache
/// where it can: for chunks, which a backup makes durable all at once with
/// [`fsync_files`] before its indexes and manifest are written.
///
/// When `bytes` starts on a [`DIRECT_ALIGN`] boundary, its aligned prefix
/// is written with `O_DIRECT` and only the short tail (< 4 KiB) through the
/// page cache. Buffered chunk writes cost a kernel copy and page-cache
/// allocation, and left ~1.7 GB of dirty pages for the commit's fsync to
/// write while the CPUs sat idle (2.5 s at the end of the bench backup);
/// direct writes reach the disk while the workers compress the next chunks.
/// Where the filesystem refuses `O_DIRECT` (tmpfs), everything is buffered.
/// The file is created as `tmp`, which must not exist yet.
pub(crate) fn write_new_unsynced(tmp: &Path, bytes: &[u8]) -> Result<()> {
    let aligned = bytes.len() - bytes.len() % DIRECT_ALIGN;
    if aligned == 0 || bytes.as_ptr().align_offset(DIRECT_ALIGN) != 0 {
        return write_new_with(tmp, bytes, false);
    }
    let direct = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(OFlags::DIRECT.bits() as i32)
        .open(tmp);
    let mut f = match direct {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {
            let _ = std::fs::remove_file(tmp);
            return write_new_with(tmp, bytes, false);
        }
        Err(e) => return Err(Error::io(tmp, e)),
    };
    let res = (|| {
        let mut done = 0;
        while done < aligned {
            match f.write(&bytes[done..aligned]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Refused (or a short write left us unaligned): the rest
                // goes through the page cache.
                Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => break,
                Err(e) => return Err(e),
            }
        }
        let flags = rustix::fs::fcntl_getfl(&f)?;
        rustix::fs::fcntl_setfl(&f, flags - OFlags::DIRECT)?;
        f.write_all(&bytes[done..])
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::io(tmp, e));
    }
    Ok(())
}

fn write_temp_with(dir: &Path, bytes: &[u8], sync: bool) -> Result<PathBuf> {
    let tmp = temp_path(dir)?;
    write_new_with(&tmp, bytes, sync)?;
    Ok(tmp)
}

fn write_new_with(tmp: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::io(tmp, e));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer holding `len` patterned bytes from an aligned start.
    fn aligned_bytes(storage: &mut Vec<u8>, len: usize) -> &[u8] {
        storage.clear();
        storage.reserve(len + DIRECT_ALIGN);
        let pad = storage.as_ptr().align_offset(DIRECT_ALIGN);
        storage.resize(pad, 0);
        storage.extend((0..len).map(|i| (i % 253) as u8));
        &storage[pad..]
    }

    #[test]
    fn unsynced_temp_files_hold_exactly_the_bytes_aligned_or_not() {
        // /dev/shm is tmpfs (no O_DIRECT): the buffered fallback.
        let dirs: Vec<tempfile::TempDir> = [std::env::temp_dir(), "/dev/shm".into()]
            .iter()
            .filter_map(|d| tempfile::tempdir_in(d).ok())
            .collect();
        assert!(!dirs.is_empty());
        let mut storage = Vec::new();
        for dir in &dirs {
            for len in [0, 100, 4096, 3 * 4096 + 17, (1 << 20) + 5] {
                let bytes = aligned_bytes(&mut storage, len);
                for b in [bytes, &bytes[1.min(len)..]] {
                    let tmp = temp_path(dir.path()).unwrap();
                    write_new_unsynced(&tmp, b).unwrap();
                    assert_eq!(std::fs::read(&tmp).unwrap(), b, "len {}", b.len());
                    // The path must be new: an existing file is refused.
                    assert!(write_new_unsynced(&tmp, b).is_err());
                }
            }
        }
    }
}
