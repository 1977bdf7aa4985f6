//! `lifeboat backup --vm NAME qmp:SOCKET`: every disk of a running VM at one
//! point in time, incremental where a dirty bitmap proves what changed
//! (lifeboat_hypervisor::live_backup). Prints, per disk, full or
//! incremental and why, bytes read, changed and uploaded, how long the
//! guest was paused, and the restore point's consistency: filesystem-
//! consistent when `--guest-agent` froze the guest, else crash-consistent
//! with the reason (also on stderr).

use super::open_repo;
use crate::args::BackupArgs;
use crate::exit;
use crate::output::{bytes, print_json};
use crate::progress::Bars;
use anyhow::Context;
use lifeboat_hypervisor::{live_backup, AgentOptions, LiveBackupOptions, QmpClient, VmLock};
use lifeboat_repo::ConsistencyLevel;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A private work directory: the one given (made 0700 if new), or a fresh
/// one removed afterwards.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    fn new(given: Option<&Path>) -> anyhow::Result<WorkDir> {
        let (path, remove) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("lifeboat-live-{}", std::process::id())),
                true,
            ),
        };
        if !path.exists() {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating the work directory {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private", path.display()))?;
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

pub fn run(a: &BackupArgs, socket: &Path) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let work = WorkDir::new(a.work_dir.as_deref())?;
    let timeout = Duration::from_secs(a.qmp_timeout.max(1));
    // Before QMP: a second backup of the VM is refused at once.
    let _vm_lock = VmLock::acquire(socket, &a.vm)?;
    let client = QmpClient::connect_with_timeout(socket, timeout)?;
    let opts = LiveBackupOptions {
        vm: a.vm.clone(),
        work_dir: work.path.clone(),
        connections: 4,
        timeout,
        method: None,
        agent: a.guest_agent.as_ref().map(|socket| AgentOptions {
            timeout: Duration::from_secs(a.agent_timeout.max(1)),
            ..AgentOptions::new(socket)
        }),
    };
    let report = live_backup(&repo, &client, &opts, &Bars::new())
        .with_context(|| format!("live backup of {} through {}", a.vm, socket.display()))?;
    if report.consistency.level == ConsistencyLevel::Crash {
        eprintln!(
            "warning: {} is crash-consistent: {}",
            report.restore_point,
            report
                .consistency
                .why
                .as_deref()
                .unwrap_or("nothing was frozen")
        );
    }
    if a.output.json {
        print_json(&report)?;
        return Ok(exit::OK);
    }
    println!(
        "created restore point {} ({}; point in time by {:?}, guest paused {} ms)",
        report.restore_point,
        report.consistency.describe(),
        report.method,
        report.paused_ms
    );
    for d in &report.disks {
        println!(
            "  {:<12} {:<11} read {:>10}  changed {:>10}  uploaded {:>10}  bitmap {}{}",
            d.disk,
            d.read,
            bytes(d.bytes_read),
            bytes(d.changed_bytes),
            bytes(d.uploaded_bytes),
            d.bitmap,
            if d.persistent {
                ""
            } else {
                " (not persistent: a VM restart means a full read)"
            }
        );
        if let Some(why) = &d.why_full {
            println!("  {:<12} full because {why}", "");
        }
    }
    println!("  {:.2} s", report.elapsed_ms as f64 / 1000.0);
    Ok(exit::OK)
}
