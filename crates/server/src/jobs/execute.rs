//! One run of a job, on a worker thread (blocking code): back up its
//! sources into its repository as a restore point of the VM named like the
//! job, with the same library calls `lifeboat backup` makes
//! ([`backup_vm`] for image files, [`live_backup_socket`] for `qmp:`),
//! then apply the job's retention to that VM only
//! ([`lifeboat_repo::Repository::prune_vm`]). A killed run leaves no half
//! restore point: the repository writes the manifest last, by rename.
//!
//! The server's runner and a proxy's worker both call [`run_job`]: they
//! differ only in where the repository was opened and where the progress
//! and log lines go ([`SessionLog`]: the catalog, or the proxy's progress
//! calls to the server).

use super::source::{parse_sources, JobSource, SourceRoots};
use crate::catalog::jobs::Job;
use lifeboat_engine::{backup_vm, error_chain as chain, DiskSource, Progress};
use lifeboat_formats::{AllowedPaths, OpenOptions};
use lifeboat_hypervisor::{live_backup_socket, LiveBackupOptions};
use lifeboat_repo::Repository;
use std::time::Duration;

/// Timeout of every QMP command and NBD request of a live source.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a successful run made.
#[derive(Debug, Clone)]
pub struct Done {
    pub restore_point: String,
    pub bytes_read: u64,
    pub bytes_stored: u64,
}

/// Where a running session's bytes and log lines go.
pub trait SessionLog: Progress {
    /// Appends a line to the session's log.
    fn log(&self, line: &str);
}

/// Runs `job` into `repo` (opened by the caller), reading its sources
/// only under `roots`, logging through `progress`; the error is the
/// session's.
pub fn run_job(
    repo: &Repository,
    job: &Job,
    roots: &SourceRoots,
    progress: &dyn SessionLog,
) -> Result<Done, String> {
    let done = match parse_sources(&job.sources, Some(roots))? {
        JobSource::Images(specs) => {
            let mut sources = Vec::new();
            for mut d in specs {
                d.path = roots
                    .resolve(&d.path)
                    .map_err(|e| format!("disk {}: {e}", d.name))?;
                let options = OpenOptions {
                    format: d.format,
                    allowed: AllowedPaths::none(),
                };
                let (source, warning) =
                    DiskSource::open_file(&d.name, &d.path, &options).map_err(|e| {
                        format!(
                            "opening disk {} ({}): {}",
                            d.name,
                            d.path.display(),
                            chain(&e)
                        )
                    })?;
                if let Some(w) = warning {
                    progress.log(&format!("warning: disk {}: {w}", d.name));
                }
                sources.push(source);
            }
            let summary = backup_vm(repo, &job.name, &sources, progress)
                .map_err(|e| format!("backup of {}: {}", job.name, chain(&e)))?;
            let disks = &summary.manifest.disks;
            Done {
                restore_point: summary.manifest.name(),
                bytes_read: disks.iter().map(|d| d.stats.bytes_read).sum(),
                bytes_stored: disks.iter().map(|d| d.stats.new_stored_bytes).sum(),
            }
        }
        JobSource::Live(socket) => {
            let socket = roots.resolve(&socket)?;
            progress.log(&format!(
                "live backup through {} (no guest agent: crash-consistent)",
                socket.display()
            ));
            let opts = LiveBackupOptions::new(&job.name, LIVE_TIMEOUT);
            let report = live_backup_socket(repo, &socket, None, opts, progress).map_err(|e| {
                format!(
                    "live backup of {} through {}: {}",
                    job.name,
                    socket.display(),
                    chain(&e)
                )
            })?;
            Done {
                restore_point: report.restore_point.clone(),
                bytes_read: report.disks.iter().map(|d| d.bytes_read).sum(),
                bytes_stored: report.disks.iter().map(|d| d.uploaded_bytes).sum(),
            }
        }
    };
    progress.log(&format!(
        "created restore point {}: read {} bytes, stored {} new bytes",
        done.restore_point, done.bytes_read, done.bytes_stored
    ));
    retention(repo, job, progress);
    Ok(done)
}

/// Applies the job's keep counts to its VM (none: keeps everything). A
/// failure is logged in the session; the backup itself succeeded.
fn retention(repo: &Repository, job: &Job, progress: &dyn SessionLog) {
    let Some(policy) = job.retention.policy() else {
        return;
    };
    match repo.prune_vm(&job.name, &policy, false) {
        Ok(report) => progress.log(&format!(
            "retention: kept {}, removed {}{}",
            report.kept.len(),
            report.removed.len(),
            if report.removed.is_empty() {
                String::new()
            } else {
                format!(" ({})", report.removed.join(", "))
            }
        )),
        Err(e) => progress.log(&format!("warning: retention failed: {}", chain(&e))),
    }
}
