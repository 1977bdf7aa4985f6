//! A live backup started from the path of a VM's QMP socket, the way the
//! CLI and the server's jobs start one: the VM's live-backup lock first (a
//! second backup of the same VM is refused at once, before any QMP), a
//! private work directory for the fleecing overlays and QEMU's NBD socket
//! (the one given, made 0700 if new, or a fresh one removed afterwards),
//! the QMP connection with the options' timeout, then [`live_backup`].

use crate::error::HypervisorError;
use crate::live::{
    live_backup, LiveBackupError, LiveBackupOptions, LiveBackupReport, LIVE_COMPRESSION_LEVEL,
};
use crate::qmp::QmpClient;
use crate::vm_lock::VmLock;
use lifeboat_engine::{BackupTarget, Progress};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Reads in flight per disk of a live backup unless told otherwise: six
/// on 2 cores, so QEMU reads while the workers hash, compress and encrypt.
pub const LIVE_CONNECTIONS: usize = 6;

impl LiveBackupOptions {
    /// The defaults of a live backup of `vm` through a QMP socket:
    /// [`LIVE_CONNECTIONS`], [`LIVE_COMPRESSION_LEVEL`], the best fleecing
    /// method, no guest agent (crash-consistent), and `timeout` for every
    /// QMP command and NBD request. [`live_backup_socket`] fills in the
    /// work directory.
    pub fn new(vm: impl Into<String>, timeout: Duration) -> LiveBackupOptions {
        LiveBackupOptions {
            vm: vm.into(),
            work_dir: PathBuf::new(),
            connections: LIVE_CONNECTIONS,
            timeout,
            method: None,
            compression_level: LIVE_COMPRESSION_LEVEL,
            agent: None,
        }
    }
}

/// The work directory of one live backup.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    fn new(given: Option<&Path>) -> Result<WorkDir, HypervisorError> {
        let (path, remove) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("lifeboat-live-{}", std::process::id())),
                true,
            ),
        };
        if !path.exists() {
            let file_err = |what: &'static str, source| HypervisorError::File {
                what,
                path: path.clone(),
                source,
            };
            std::fs::create_dir_all(&path)
                .map_err(|e| file_err("creating the work directory", e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| file_err("making the work directory private", e))?;
        }
        Ok(WorkDir { path, remove })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Backs up the VM behind the QMP socket `socket` into `repo` (a local
/// repository or a proxy's upload): `opts.work_dir` is replaced by
/// `work_dir` (or a fresh private directory when `None`).
pub fn live_backup_socket<T: BackupTarget>(
    repo: &T,
    socket: &Path,
    work_dir: Option<&Path>,
    mut opts: LiveBackupOptions,
    progress: &dyn Progress,
) -> Result<LiveBackupReport, LiveBackupError> {
    let work = WorkDir::new(work_dir)?;
    opts.work_dir = work.path.clone();
    let _vm_lock = VmLock::acquire(socket, &opts.vm)?;
    let client = QmpClient::connect_with_timeout(socket, opts.timeout)?;
    live_backup(repo, &client, &opts, progress)
}
