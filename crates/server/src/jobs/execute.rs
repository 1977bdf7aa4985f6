//! One run of a job, on a worker thread (blocking code): back up its
//! sources into its repository as a restore point of the VM named like the
//! job, with the same library calls `lifeboat backup` makes
//! ([`backup_vm`] for image files, [`live_backup_socket`] for `qmp:`),
//! then apply the job's retention to that VM only
//! ([`lifeboat_repo::Repository::prune_vm`]). A killed run leaves no half
//! restore point: the repository writes the manifest last, by rename.
//!
//! The server's runner calls [`run_job`] with the repository it serves; a
//! proxy's worker calls [`back_up_job`], the same backup, into its upload
//! to that repository ([`lifeboat_engine::BackupTarget`]), and the server
//! applies the retention when the upload commits ([`apply_retention`]).
//! Progress and log lines go through [`SessionLog`]: to the catalog, or
//! to the proxy's progress calls to the server.

use super::source::{parse_sources, JobSource, SourceRoots};
use crate::catalog::jobs::Job;
use lifeboat_engine::{backup_vm_to, error_chain as chain, BackupTarget, DiskSource, Progress};
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
/// only under `roots`, then its retention, logging through `progress`;
/// the error is the session's.
pub fn run_job(
    repo: &Repository,
    job: &Job,
    roots: &SourceRoots,
    progress: &dyn SessionLog,
) -> Result<Done, String> {
    let done = back_up_job(repo, job, roots, progress)?;
    if let Some(line) = apply_retention(repo, job) {
        progress.log(&line);
    }
    Ok(done)
}

/// Backs up `job`'s sources, read only under `roots`, into `target` (a
/// repository, or a proxy's upload) as one restore point of the VM named
/// like the job, logging through `progress`; the error is the session's.
pub fn back_up_job<T: BackupTarget>(
    target: &T,
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
                let (mut source, warning) = DiskSource::open_file(&d.name, &d.path, &options)
                    .map_err(|e| {
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
                source.workers = target.workers();
                sources.push(source);
            }
            let failed =
                |e: lifeboat_engine::Error| format!("backup of {}: {}", job.name, chain(&e));
            let sink = target.begin(None).map_err(failed)?;
            let summary =
                backup_vm_to(sink, &job.name, &sources, None, progress).map_err(failed)?;
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
            let report =
                live_backup_socket(target, &socket, None, opts, progress).map_err(|e| {
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
    Ok(done)
}

/// Applies the job's keep counts to its VM: the session's log line
/// (`None`: the job keeps everything). A failure is a warning line; the
/// backup itself succeeded.
pub fn apply_retention(repo: &Repository, job: &Job) -> Option<String> {
    let policy = job.retention.policy()?;
    Some(match repo.prune_vm(&job.name, &policy, false) {
        Ok(report) => format!(
            "retention: kept {}, removed {}{}",
            report.kept.len(),
            report.removed.len(),
            if report.removed.is_empty() {
                String::new()
            } else {
                format!(" ({})", report.removed.join(", "))
            }
        ),
        Err(e) => format!("warning: retention failed: {}", chain(&e)),
    })
}
