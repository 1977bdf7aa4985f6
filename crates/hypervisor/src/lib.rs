//! lifeboat-hypervisor: control of running QEMU/KVM VMs for live backup.
//!
//! - [`QmpClient`] (`qmp`): QMP over a unix socket, a timeout on every
//!   command, QEMU's errors typed, events queued by a reader thread.
//! - [`list_disks`] (`disks`): the VM's disks, their format node and bitmaps.
//! - `bitmaps`: changed-block tracking with dirty bitmaps, rotated for all
//!   disks in one QMP `transaction` at each point in time.
//! - [`Fleece`] (`fleece`): the point-in-time view of every disk
//!   (copy-before-write + snapshot-access over a temporary qcow2 overlay),
//!   exported by QEMU's NBD server with the bitmap; teardown and
//!   [`cleanup_leftovers`] for runs that were killed.
//! - [`AgentClient`] (`agent`): the QEMU guest agent (resync, ping,
//!   fsfreeze) and [`FreezeGuard`], a freeze bounded by [`MAX_FREEZE`].
//! - `guest_ops`: files and programs in the guest through the agent
//!   (guest-file-*, guest-exec), and its IPv4 addresses.
//! - [`AppAware`] (`app_aware`): application-aware processing: the guest
//!   helper injected (`helper_inject`) with this backup's pinned
//!   identities (`helper_certs`), its TLS session (`helper_session`), the
//!   pre-freeze and post-thaw scripts.
//! - [`Quiesce`] (`quiesce`): the scripts and the freeze around the point in
//!   time and the consistency level the restore point records.
//! - [`VmLock`] (`vm_lock`): one live backup per VM at a time.
//!
//! Everything this crate creates inside QEMU (nodes, exports, bitmaps, jobs)
//! and every overlay file is named with [`PREFIX`]. docs/live-backup.md
//! describes the QMP sequence and which QEMU version gets which path.

mod agent;
mod app_aware;
mod bitmaps;
mod cleanup;
mod disks;
mod error;
mod fleece;
mod guest_ops;
mod helper_certs;
mod helper_inject;
mod helper_session;
mod live;
mod live_socket;
mod qmp;
mod quiesce;
mod vm_lock;

pub use agent::{
    AgentClient, AgentError, FreezeGuard, FreezeStatus, Thawed, AGENT_TIMEOUT, MAX_FREEZE,
};
pub use app_aware::{AppAware, AppAwareOptions, AppAwareReport, OutputLine, ScriptReport};
pub use bitmaps::{
    bitmap_name, create_bitmap, finish_rotation, next_read, persistence, remove_bitmap, rotate,
    undo_rotation, NextRead, Persistence, Rotation,
};
pub use cleanup::{cleanup_leftovers, CleanupReport};
pub use disks::{find_disk, list_disks, BitmapInfo, Disk};
pub use error::{HypervisorError, Result};
pub use fleece::{
    Export, Fleece, FleeceDisk, FleeceMethod, FleeceOptions, PointInTimeHook, BLOCK_EXPORT_SINCE,
    SNAPSHOT_ACCESS_SINCE,
};
pub use guest_ops::{ExecStatus, FILE_CHUNK};
pub use helper_certs::{make_identities, BackupIdentities};
pub use helper_session::{ConnectError, HelperSession};
/// The guest helper's file name (beside `lifeboat`, and in the guest).
pub use lifeboat_guest_helper::layout::HELPER_BIN as GUEST_HELPER_BIN;
pub use live::{
    live_backup, LiveBackupError, LiveBackupOptions, LiveBackupReport, LiveDiskReport,
    LIVE_COMPRESSION_LEVEL,
};
pub use live_socket::{live_backup_socket, LIVE_CONNECTIONS};
pub use qmp::{QemuVersion, QmpClient, QmpEvent, DEFAULT_TIMEOUT};
pub use quiesce::{AgentOptions, Quiesce};
pub use vm_lock::{lock_path, VmLock, LOCK_DIR};

/// The prefix of every name this crate creates in QEMU and of its overlay files.
pub const PREFIX: &str = "lifeboat-";
