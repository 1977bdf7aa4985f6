//! Backup and restore jobs: the code that moves a virtual disk into a
//! repository and back out.
//!
//! ```text
//!  backup:  ReadDisk ──(chunk-aligned reads, N workers)──> digest ──> ChunkSink::store_chunk
//!                                                                   └─> DiskIndex ──> commit (manifest)
//!  restore: RestorePointDisk ──(N workers, data chunks only)──> WriteDisk (sparse raw, qcow2)
//! ```
//!
//! Both sides are the same loop ([`parallel::for_each_chunk`]): workers take
//! chunk numbers from a shared counter, so reads stay roughly sequential and
//! memory stays at a few chunk buffers per worker whatever the disk size.
//! A backup writes to a [`ChunkSink`]: a local repository's `BackupWriter`
//! or a proxy's upload to the server (see `target`).

mod backup;
mod disk_spec;
mod error;
mod parallel;
mod progress;
mod restore;
mod target;
mod usage;
mod zero;

pub use backup::{
    backup_vm, backup_vm_consistent, backup_vm_to, BackupSummary, DiskSource, IncrementalBase,
};
pub use disk_spec::{parse_format, DiskSpec, DiskSpecError, FORMAT_NAMES};
pub use error::{error_chain, Error, Result};
pub use progress::{NoProgress, Progress};
pub use restore::{copy_disk, restore_to_file, RestoreFormat, RestoreSummary};
pub use target::{BackupTarget, ChunkSink};
pub use usage::{restore_point_usage, Usage};
pub use zero::is_zero;
