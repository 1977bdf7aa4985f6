//! Listing the regular files of a tree (a mounted volume) for a tree scan,
//! with a few threads.
//!
//! On a published restore point every directory block the kernel has not
//! cached is a FUSE request whose answer may need a repository chunk
//! fetched, decrypted and decompressed: a walk is bound by that latency,
//! not by this process's CPU. [`WALK_THREADS`] threads take directories
//! from one shared queue, so several requests are in flight at once.
//! Symlinks are not followed. Files come back in inode order (ties by
//! path): on ext4 and XFS that is roughly disk order, so opening them in
//! that order reads the inode tables, and mostly the data, sequentially.

use std::collections::VecDeque;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Directories listed at once.
pub const WALK_THREADS: usize = 4;

/// The regular files of a tree and the directories that could not be read.
#[derive(Debug, Default)]
pub struct Listing {
    /// (inode number, path), in inode order.
    pub files: Vec<(u64, PathBuf)>,
    /// (directory or entry, error), sorted by path.
    pub errors: Vec<(PathBuf, String)>,
}

/// The shared queue: directories to list and how many are being listed.
struct Queue {
    dirs: VecDeque<PathBuf>,
    busy: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A worker never panics while holding the lock; a poisoned lock
        // still holds a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next directory to list, or `None` once every directory is done.
    fn take(&self) -> Option<PathBuf> {
        let mut q = self.lock();
        loop {
            if let Some(d) = q.dirs.pop_front() {
                q.busy += 1;
                return Some(d);
            }
            if q.busy == 0 {
                self.wake.notify_all();
                return None;
            }
            q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Queues the subdirectories found by one listing and marks it done.
    fn done(&self, subdirs: Vec<PathBuf>) {
        let mut q = self.lock();
        q.dirs.extend(subdirs);
        q.busy = q.busy.saturating_sub(1);
        self.wake.notify_all();
    }
}

/// Lists every regular file under `root`.
pub fn list_files(root: &Path) -> Listing {
    let shared = Shared {
        queue: Mutex::new(Queue {
            dirs: VecDeque::from([root.to_path_buf()]),
            busy: 0,
        }),
        wake: Condvar::new(),
    };
    let parts: Vec<Listing> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WALK_THREADS)
            .map(|_| s.spawn(|| worker(&shared)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut all = Listing::default();
    for p in parts {
        all.files.extend(p.files);
        all.errors.extend(p.errors);
    }
    all.files.sort();
    all.errors.sort();
    all
}

fn worker(shared: &Shared) -> Listing {
    let mut out = Listing::default();
    while let Some(dir) = shared.take() {
        let subdirs = list_dir(&dir, &mut out);
        shared.done(subdirs);
    }
    out
}

/// Lists one directory into `out`; returns its subdirectories.
fn list_dir(dir: &Path, out: &mut Listing) -> Vec<PathBuf> {
    let mut subdirs = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            out.errors.push((dir.to_path_buf(), e.to_string()));
            return subdirs;
        }
    };
    for entry in rd {
        let e = match entry {
            Ok(e) => e,
            Err(e) => {
                out.errors.push((dir.to_path_buf(), e.to_string()));
                continue;
            }
        };
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => subdirs.push(path),
            Ok(t) if t.is_file() => out.files.push((e.ino(), path)),
            Ok(_) => {}
            Err(err) => out.errors.push((path, err.to_string())),
        }
    }
    subdirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn lists_every_file_once_in_inode_order_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut want = Vec::new();
        for a in 0..5 {
            for b in 0..4 {
                let d = root.join(format!("d{a}/e{b}"));
                std::fs::create_dir_all(&d).unwrap();
                for f in 0..3 {
                    let p = d.join(format!("f{f}"));
                    std::fs::write(&p, b"x").unwrap();
                    want.push((std::fs::metadata(&p).unwrap().ino(), p));
                }
            }
        }
        std::fs::write(root.join("top"), b"y").unwrap();
        want.push((
            std::fs::metadata(root.join("top")).unwrap().ino(),
            root.join("top"),
        ));
        std::os::unix::fs::symlink(root.join("d0"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("top"), root.join("flink")).unwrap();
        want.sort();
        let got = list_files(root);
        assert_eq!(got.files, want);
        assert!(got.errors.is_empty(), "{:?}", got.errors);
    }

    #[test]
    fn a_missing_root_is_an_error_not_a_hang() {
        let got = list_files(Path::new("/nonexistent/lifeboat-walk"));
        assert!(got.files.is_empty());
        assert_eq!(got.errors.len(), 1, "{:?}", got.errors);
    }
}
