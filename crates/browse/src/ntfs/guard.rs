//! The panic boundary around the `ntfs` crate: every entry point of the
//! NTFS reader (open, list, stat, read_file) runs its crate calls through
//! [`guarded`], which turns a panic into an [`Error`] naming the volume
//! and path, logged through `tracing`.
//!
//! Why: `ntfs` 0.4 panics on some failed or short reads deep in its
//! parsing. Its structures are read with `binrw`, which wraps a failed read
//! of a field in a context error, and the crate's conversion of that error
//! is `unreachable!` (a read error of a non-resident attribute list, or a
//! resident value shorter than its header; the boot sector is handed to
//! it already read). A
//! guest-written volume is hostile input and a restore point's disk can
//! fail a read (a missing chunk); neither may take down a host process
//! running as root (scan, files, publish).
//!
//! A panic caused by a failed disk read is reported as that read error
//! (with its damage flag: a missing chunk stays recognisable), because
//! [`VolumeIo`] keeps the outcome of its last read; any other panic is a
//! corrupt filesystem. `DataReader::read` needs no boundary: it reads the
//! volume directly, without the crate.

use super::io::VolumeIo;
use crate::{Error, Result};
use lifeboat_vdisk::ReadDisk;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f` with a fresh cursor on `disk`; a panic inside it becomes an
/// error naming `volume` and `path`.
pub(crate) fn guarded<'d, T>(
    volume: &str,
    path: &str,
    disk: &'d dyn ReadDisk,
    f: impl FnOnce(&mut VolumeIo<'d>) -> Result<T>,
) -> Result<T> {
    let mut io = VolumeIo::new(disk);
    // AssertUnwindSafe is sound: nothing `f` could leave half-updated is
    // used after a panic. `f` mutates only the cursor created here (of
    // which only the last read's outcome, written whole, is looked at
    // afterwards) and values it builds itself, which the unwinding drops.
    // The reader it borrows (`Ntfs`, the volume name, the disk handle) is
    // only read, and has no interior mutability except inside the disk: a
    // `ReadDisk` is `Sync`, keeps its caches consistent for concurrent
    // readers, and the parser panics in its own code between disk calls,
    // never while a disk call holds a lock. So the reader stays usable and
    // the next call sees the same state as before the panic.
    match catch_unwind(AssertUnwindSafe(|| f(&mut io))) {
        Ok(result) => result,
        Err(payload) => {
            let cause = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            let cause = cause.lines().next().unwrap_or_default().to_string();
            let (volume, path) = (volume.to_string(), path.to_string());
            let error = match io.take_failed_read() {
                Some(failed) => Error::Io {
                    volume,
                    path,
                    detail: failed.detail,
                    damaged: failed.damaged,
                },
                None => Error::Corrupt {
                    volume,
                    path,
                    fs: "ntfs",
                    detail: format!("the NTFS parser failed: {cause}"),
                },
            };
            tracing::error!(%error, panic = %cause, "the ntfs crate panicked; reported as an error");
            Err(error)
        }
    }
}
