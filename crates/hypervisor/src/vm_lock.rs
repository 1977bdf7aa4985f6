//! One live backup per VM at a time: [`VmLock`], an exclusive `flock` on a
//! lock file named after the VM's QMP socket, taken before anything talks
//! to QEMU.
//!
//! Two backups of one VM would fight over the same QEMU: the second one's
//! `cleanup_leftovers` would tear down the first one's point in time, and
//! QEMU serves one QMP client per socket, so the second would otherwise
//! wait for a greeting that never comes. With the lock the second backup
//! is refused at once, naming the holder (pid, since when). The kernel
//! drops the flock when its holder dies (SIGKILL included), so a killed
//! backup never blocks the next one.
//!
//! The lock files live in [`LOCK_DIR`] (`/run/lock`, the FHS place for
//! them: a tmpfs, emptied at boot), named `lifeboat-live-<hash>.lock`
//! where `<hash>` is a BLAKE3 of the socket's canonical path: any path,
//! however long or oddly named, gives one fixed, safe file name, and two
//! spellings of the same socket give the same lock.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_repo::{Acquired, HolderLock};

use crate::error::{HypervisorError, Result};

/// Where the per-VM lock files are.
pub const LOCK_DIR: &str = "/run/lock";

/// Holds the VM's live-backup lock until dropped.
pub struct VmLock {
    _lock: HolderLock,
    path: PathBuf,
}

impl VmLock {
    /// Takes the lock of the VM behind `socket` (in [`LOCK_DIR`]), or fails
    /// at once with [`HypervisorError::Busy`] naming the backup that holds it.
    pub fn acquire(socket: &Path, vm: &str) -> Result<VmLock> {
        VmLock::acquire_in(Path::new(LOCK_DIR), socket, vm)
    }

    /// [`VmLock::acquire`] with the lock file in `dir`.
    pub fn acquire_in(dir: &Path, socket: &Path, vm: &str) -> Result<VmLock> {
        let path = lock_path(dir, socket);
        let operation = format!("live backup of {vm}");
        match HolderLock::acquire(&path, &operation, Duration::ZERO) {
            Ok(Acquired::Held(lock)) => Ok(VmLock { _lock: lock, path }),
            Ok(Acquired::Busy(holder)) => Err(HypervisorError::Busy {
                socket: socket.to_path_buf(),
                lock: path,
                holder,
            }),
            Err(e) => Err(HypervisorError::Lock {
                socket: socket.to_path_buf(),
                lock: path,
                reason: e.to_string(),
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file of the VM behind `socket`: named by a hash of the
/// socket's canonical path (the path as given when it cannot be resolved).
pub fn lock_path(dir: &Path, socket: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(socket).unwrap_or_else(|_| socket.to_path_buf());
    let hash = blake3::hash(canonical.as_os_str().as_encoded_bytes());
    dir.join(format!("lifeboat-live-{}.lock", &hash.to_hex()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_second_backup_of_the_same_vm_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("web01.qmp");
        std::fs::write(&socket, b"").unwrap();
        let first = VmLock::acquire_in(dir.path(), &socket, "web01").unwrap();
        // Another spelling of the same socket is the same VM.
        let other_spelling = dir.path().join(".").join("web01.qmp");
        let err = VmLock::acquire_in(dir.path(), &other_spelling, "web01")
            .err()
            .expect("the second backup is refused");
        let text = err.to_string();
        assert!(matches!(err, HypervisorError::Busy { .. }), "{text}");
        assert!(text.contains("live backup of web01"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        // Another VM is not blocked.
        let db01 = dir.path().join("db01.qmp");
        drop(VmLock::acquire_in(dir.path(), &db01, "db01").unwrap());
        drop(first);
        VmLock::acquire_in(dir.path(), &socket, "web01").expect("free again once dropped");
    }

    #[test]
    fn a_killed_holder_does_not_block_the_next_backup() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("web01.qmp");
        let path = lock_path(dir.path(), &socket);
        // util-linux flock(1) holds the flock in another process (-o: not
        // in the command it runs).
        let mut holder = Command::new("flock")
            .arg("-o")
            .arg(&path)
            .args(["sleep", "60"])
            .stdout(Stdio::null())
            .spawn()
            .expect("flock(1) from util-linux (apt-get install util-linux)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match VmLock::acquire_in(dir.path(), &socket, "web01") {
                Err(HypervisorError::Busy { holder, .. }) => {
                    assert!(holder.contains("another process"), "{holder}");
                    break;
                }
                Ok(lock) => {
                    // flock(1) has not taken it yet.
                    drop(lock);
                    assert!(
                        std::time::Instant::now() < deadline,
                        "flock(1) never locked"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
        holder.kill().unwrap();
        holder.wait().unwrap();
        VmLock::acquire_in(dir.path(), &socket, "web01").expect("the kernel dropped the flock");
    }
}
