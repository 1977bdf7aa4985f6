//! Live backup of a running VM: one restore point of every disk at one point
//! in time, read from QEMU's own NBD export of a fleecing node, incremental
//! where a dirty bitmap proves what changed.
//!
//! ```text
//! connect QMP, cleanup_leftovers (a killed run's nodes, exports, rotation)
//! Quiesce::connect: the guest agent, when given (resync within its timeout)
//! per disk: decide full or incremental
//!     incremental iff the disk has a recording lifeboat-* bitmap that the
//!     latest restore point recorded for that disk (same size): it holds
//!     exactly the writes since that point; else full, with the reason
//! Fleece::start_with_hook: the overlays, then the point in time: freeze the
//!     guest's filesystems (guest-fsfreeze-freeze), stop, ONE transaction in
//!     which each disk's bitmap rotates (OLD frozen and exported, NEW records
//!     from now on) and the copy-before-write filters take over, cont, thaw
//!     (also when the point in time failed; at most MAX_FREEZE frozen); a
//!     disk without a bitmap gets NEW just before (over-marking, never under)
//! per disk: NbdExportDisk on the export (base:allocation: holes are not
//!     read); incremental: the ranges OLD marks, the previous index for the rest
//! backup_vm_consistent -> restore point (each disk records NEW as its
//!     bitmap; the manifest records the consistency level and why)
//! teardown; success: remove OLD; failure: merge OLD back into NEW
//! ```
//!
//! The restore point is application-consistent when the guest helper's
//! pre-freeze script succeeded before the freeze and its post-thaw script
//! ran after (`app_aware`), filesystem-consistent when the guest agent froze
//! the guest's filesystems across the point in time, else crash-consistent
//! with the reason (see `quiesce`).

use crate::bitmaps::{
    bitmap_name, create_bitmap, finish_rotation, next_read, remove_bitmap, undo_rotation, NextRead,
    Rotation,
};
use crate::cleanup::cleanup_leftovers;
use crate::disks::{list_disks, Disk};
use crate::error::HypervisorError;
use crate::fleece::{Fleece, FleeceDisk, FleeceMethod, FleeceOptions};
use crate::qmp::QmpClient;
use crate::quiesce::{AgentOptions, Quiesce};
use lifeboat_engine::{backup_vm_to, BackupTarget, DiskSource, IncrementalBase, Progress};
use lifeboat_nbd::{ClientError, NbdExportDisk};
use lifeboat_repo::{Consistency, LiveRead, Manifest};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What went wrong in a live backup.
#[derive(Debug, thiserror::Error)]
pub enum LiveBackupError {
    /// QMP, bitmaps, fleecing.
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    /// Reading QEMU's export of a disk.
    #[error("reading disk {disk} of the running VM through QEMU's NBD export: {source}")]
    Export {
        disk: String,
        #[source]
        source: ClientError,
    },
    /// The backup itself (repository, reads).
    #[error("live backup of {vm}: {source}")]
    Backup {
        vm: String,
        #[source]
        source: lifeboat_engine::Error,
    },
    /// The repository outside the backup (finding the previous point).
    #[error(transparent)]
    Repo(#[from] lifeboat_repo::Error),
    /// Nothing to back up, or names that do not fit.
    #[error("live backup of {vm}: {detail}")]
    Invalid { vm: String, detail: String },
}

impl LiveBackupError {
    /// The hypervisor error this is (a busy VM lock, QMP faults), if any:
    /// the `transparent` variant keeps it out of the `source()` chain.
    pub fn hypervisor_error(&self) -> Option<&HypervisorError> {
        match self {
            LiveBackupError::Hypervisor(e) => Some(e),
            _ => None,
        }
    }

    /// The repository error under this one, if any.
    pub fn repo_error(&self) -> Option<&lifeboat_repo::Error> {
        match self {
            LiveBackupError::Repo(e) => Some(e),
            LiveBackupError::Backup { source, .. } => source.repo_error(),
            _ => None,
        }
    }
}

/// How to back up a running VM.
#[derive(Debug, Clone)]
pub struct LiveBackupOptions {
    /// The VM's name in the repository.
    pub vm: String,
    /// A private directory (0700) on the QEMU host for the fleecing
    /// overlays and QEMU's NBD socket.
    pub work_dir: PathBuf,
    /// NBD connections per disk, and as many backup workers (requests in
    /// flight: more than the cores, so reads overlap the computing).
    pub connections: usize,
    /// Timeout of every QMP command and NBD request.
    pub timeout: Duration,
    /// Force a fleecing method (`None`: the best the QEMU version has).
    pub method: Option<FleeceMethod>,
    /// The guest agent that freezes the guest's filesystems for the point
    /// in time (`None`: crash-consistent).
    pub agent: Option<AgentOptions>,
    /// The zstd level of this backup's new chunks
    /// ([`LIVE_COMPRESSION_LEVEL`] unless the user chose one).
    pub compression_level: i32,
}

/// The zstd level live backups compress at unless told otherwise: level 1,
/// as Proxmox Backup Server compresses every chunk. The guest pays
/// copy-before-write for every first write to a cluster for as long as the
/// backup runs, so a live backup keeps its window short: level 1 takes
/// about 0.6x the CPU of the repository's default level 3 and stores about
/// 8% more (docs/live-backup.md, "Compression").
pub const LIVE_COMPRESSION_LEVEL: i32 = 1;

/// What happened to one disk.
#[derive(Debug, Clone, Serialize)]
pub struct LiveDiskReport {
    /// The disk's name in the restore point.
    pub disk: String,
    /// QEMU's name for it.
    pub device: String,
    /// `full` or `incremental`.
    pub read: String,
    /// Why the whole disk was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_full: Option<String>,
    /// Bytes the bitmap marked changed (incremental).
    pub changed_bytes: u64,
    /// Bytes read from the VM.
    pub bytes_read: u64,
    /// Bytes written to the repository (new chunks, compressed, encrypted).
    pub uploaded_bytes: u64,
    /// The bitmap that records writes since this restore point.
    pub bitmap: String,
    /// Whether it survives a VM restart.
    pub persistent: bool,
}

/// What a live backup did.
#[derive(Debug, Clone, Serialize)]
pub struct LiveBackupReport {
    pub restore_point: String,
    pub disks: Vec<LiveDiskReport>,
    /// How the point in time was built.
    pub method: FleeceMethod,
    /// How long the guest was paused for the point in time.
    pub paused_ms: u64,
    /// How consistent the point in time is, and why.
    pub consistency: Consistency,
    /// The guest helper and its scripts (with `--app-aware`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_aware: Option<crate::app_aware::AppAwareReport>,
    /// The zstd level the new chunks were compressed at.
    pub compression_level: i32,
    pub elapsed_ms: u64,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

/// One disk's plan.
struct Plan {
    disk: Disk,
    name: String,
    rotation: Option<Rotation>,
    /// The bitmap created before the point in time (no rotation).
    created: Option<String>,
    new: String,
    base: Option<lifeboat_repo::DiskIndex>,
    why_full: Option<String>,
}

/// The restore point's name for a disk: QEMU's label with anything outside
/// `[A-Za-z0-9._-]` replaced, unique within the VM.
fn disk_name(disk: &Disk, taken: &[String]) -> String {
    let mut name: String = disk
        .label()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(56)
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name = format!("disk{}", taken.len());
    }
    let base = name.clone();
    let mut n = 1;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// Backs up every disk of the running VM that `client` controls as one
/// restore point into `target` (a local repository, or a proxy's upload
/// to the server's). (QEMU serves one client per QMP socket: the caller
/// connects, with [`QmpClient::connect_with_timeout`].)
pub fn live_backup<T: BackupTarget>(
    target: &T,
    client: &QmpClient,
    opts: &LiveBackupOptions,
    progress: &dyn Progress,
) -> Result<LiveBackupReport, LiveBackupError> {
    let started = Instant::now();
    let vm = opts.vm.clone();
    lifeboat_repo::check_zstd_level(opts.compression_level).map_err(|e| {
        LiveBackupError::Invalid {
            vm: vm.clone(),
            detail: format!("compression level: {e}"),
        }
    })?;
    let backup_err = |source| LiveBackupError::Backup {
        vm: vm.clone(),
        source,
    };
    let cleaned = cleanup_leftovers(client)?;
    if !cleaned.is_empty() {
        tracing::warn!(vm = %vm, "removed what an interrupted backup left: {cleaned:?}");
    }
    let mut quiesce = Quiesce::connect(opts.agent.as_ref());
    let disks = list_disks(client)?;
    if disks.is_empty() {
        return Err(LiveBackupError::Invalid {
            vm,
            detail: "the VM has no disk".into(),
        });
    }
    let previous = target.latest(&vm).map_err(backup_err)?;
    // Unique per backup: the bitmaps of two backups must never share a name.
    let tag = chrono::Utc::now().format("%Y%m%d%H%M%S%9f").to_string();
    let mut plans: Vec<Plan> = Vec::with_capacity(disks.len());
    for disk in disks {
        let taken: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
        let name = disk_name(&disk, &taken);
        let new = bitmap_name(&format!("{tag}-{}", plans.len()));
        let mut plan = Plan {
            rotation: None,
            created: None,
            base: None,
            why_full: None,
            new,
            name,
            disk,
        };
        match next_read(&plan.disk) {
            NextRead::Incremental { bitmap, .. } => {
                plan.rotation = Some(Rotation::new(&plan.disk, &bitmap, &plan.new));
                let entry = previous
                    .as_ref()
                    .and_then(|m| m.disk(&plan.name).map(|d| (m, d)));
                match entry {
                    Some((m, d))
                        if d.size == plan.disk.size
                            && d.live.as_ref().and_then(|l| l.bitmap.as_deref())
                                == Some(bitmap.as_str()) =>
                    {
                        plan.base = Some(target.load_index(m, &plan.name).map_err(backup_err)?);
                    }
                    Some((m, _)) => {
                        plan.why_full = Some(format!(
                            "bitmap {bitmap} does not belong to the latest restore point {} \
                             (another tool's backup, a restored or resized disk)",
                            m.name()
                        ))
                    }
                    None => {
                        plan.why_full = Some(format!(
                            "no earlier restore point of {vm} has disk {}",
                            plan.name
                        ))
                    }
                }
            }
            NextRead::Full { reason } => plan.why_full = Some(reason),
        }
        plans.push(plan);
    }
    // Disks without a bitmap get NEW now: it may also mark writes made
    // before the point in time (read again next time), never miss one.
    for p in plans.iter_mut().filter(|p| p.rotation.is_none()) {
        create_bitmap(client, &p.disk, &p.new)?;
        p.created = Some(p.new.clone());
    }
    let fleece_disks: Vec<FleeceDisk> = plans
        .iter()
        .map(|p| FleeceDisk {
            disk: p.disk.clone(),
            rotation: p.rotation.clone(),
        })
        .collect();
    let fleece_opts = FleeceOptions {
        work_dir: opts.work_dir.clone(),
        nbd_socket: opts.work_dir.join("nbd.sock"),
        job_timeout: opts.timeout,
        method: opts.method,
    };
    let fleece = match Fleece::start_with_hook(client, &fleece_disks, &fleece_opts, &mut quiesce) {
        Ok(f) => f,
        Err(e) => {
            forget_created(client, &plans);
            return Err(e.into());
        }
    };
    let consistency = quiesce.consistency();
    let app_aware = quiesce.app_report();
    if consistency.level == lifeboat_repo::ConsistencyLevel::Crash {
        tracing::warn!(vm = %vm, "crash-consistent: {}", consistency.why.as_deref().unwrap_or(""));
    }
    let point = PointInTime {
        fleece: &fleece,
        nbd_socket: &fleece_opts.nbd_socket,
        consistency: consistency.clone(),
    };
    let outcome = back_up(target, &vm, &plans, point, opts, progress);
    let method = fleece.method();
    let paused = fleece.paused();
    let teardown = fleece.teardown(client);
    let rotations: Vec<Rotation> = plans.iter().filter_map(|p| p.rotation.clone()).collect();
    let (manifest, mut reports) =
        match (outcome, teardown) {
            (Ok(done), Ok(())) => done,
            (outcome, teardown) => {
                if let Err(e) = &teardown {
                    tracing::warn!(vm = %vm, error = %e, "tearing down the point in time");
                }
                if !rotations.is_empty() {
                    if let Err(e) = undo_rotation(client, &rotations) {
                        tracing::warn!(vm = %vm, error = %e, "merging the bitmaps back");
                    }
                }
                forget_created(client, &plans);
                return Err(match outcome {
                    Err(e) => e,
                    Ok(_) => teardown.err().map(LiveBackupError::from).unwrap_or(
                        LiveBackupError::Invalid {
                            vm,
                            detail: "teardown failed".into(),
                        },
                    ),
                });
            }
        };
    if !rotations.is_empty() {
        finish_rotation(client, &rotations)?;
    }
    for (r, p) in reports.iter_mut().zip(&plans) {
        r.bitmap = p.new.clone();
    }
    Ok(LiveBackupReport {
        restore_point: manifest.name(),
        disks: reports,
        method,
        paused_ms: paused.as_millis() as u64,
        compression_level: opts.compression_level,
        consistency,
        app_aware,
        elapsed_ms: started.elapsed().as_millis() as u64,
        manifest: Some(manifest),
    })
}

/// Removes the bitmaps created for a backup that did not happen.
fn forget_created(client: &QmpClient, plans: &[Plan]) {
    for p in plans {
        if let Some(name) = &p.created {
            if let Err(e) = remove_bitmap(client, &p.disk, name) {
                tracing::warn!(disk = %p.disk.label(), error = %e, "removing bitmap {name}");
            }
        }
    }
}

/// The point in time a backup reads.
struct PointInTime<'a> {
    fleece: &'a Fleece,
    nbd_socket: &'a std::path::Path,
    consistency: Consistency,
}

/// Reads the exports into one restore point.
fn back_up<T: BackupTarget>(
    target: &T,
    vm: &str,
    plans: &[Plan],
    point: PointInTime<'_>,
    opts: &LiveBackupOptions,
    progress: &dyn Progress,
) -> Result<(Manifest, Vec<LiveDiskReport>), LiveBackupError> {
    let PointInTime {
        fleece,
        nbd_socket,
        consistency,
    } = point;
    let mut sources = Vec::with_capacity(plans.len());
    for p in plans {
        let export = fleece
            .exports()
            .iter()
            .find(|e| e.disk == p.disk.label())
            .ok_or_else(|| LiveBackupError::Invalid {
                vm: vm.to_string(),
                detail: format!("QEMU exported no point in time of {}", p.disk.label()),
            })?;
        let export_err = |source| LiveBackupError::Export {
            disk: p.name.clone(),
            source,
        };
        let disk = NbdExportDisk::open(nbd_socket, &export.name, opts.connections, opts.timeout)
            .map_err(export_err)?;
        let mut changed_bytes = 0;
        let mut base = None;
        if let (Some(index), Some(bitmap)) = (&p.base, &export.bitmap) {
            let ranges = disk
                .marked_ranges(&format!("qemu:dirty-bitmap:{bitmap}"))
                .map_err(export_err)?;
            changed_bytes = ranges.iter().map(|(_, l)| l).sum();
            base = Some(IncrementalBase {
                index: index.clone(),
                changed: ranges,
            });
        }
        let mut source = DiskSource::from_disk(p.name.clone(), Arc::new(disk));
        source.base = base;
        // One worker per connection: each waits on its read while the
        // others compute, so QEMU's export and the cores work at once.
        source.workers = Some(opts.connections.max(1));
        let incremental = source.base.is_some();
        source.live = Some(LiveRead {
            read: if incremental { "incremental" } else { "full" }.into(),
            why_full: if incremental {
                None
            } else {
                p.why_full.clone()
            },
            changed_bytes,
            bitmap: Some(p.new.clone()),
            persistent: p.disk.supports_persistent_bitmaps(),
        });
        sources.push(source);
    }
    let backup_err = |source| LiveBackupError::Backup {
        vm: vm.to_string(),
        source,
    };
    let sink = target
        .begin(Some(opts.compression_level))
        .map_err(backup_err)?;
    let summary =
        backup_vm_to(sink, vm, &sources, Some(consistency), progress).map_err(backup_err)?;
    let reports = plans
        .iter()
        .zip(&summary.manifest.disks)
        .zip(&sources)
        .map(|((p, d), s)| {
            let live = s.live.clone().unwrap_or_else(|| LiveRead {
                read: "full".into(),
                why_full: None,
                changed_bytes: 0,
                bitmap: None,
                persistent: false,
            });
            LiveDiskReport {
                disk: p.name.clone(),
                device: p.disk.label(),
                read: live.read,
                why_full: live.why_full,
                changed_bytes: live.changed_bytes,
                bytes_read: d.stats.bytes_read,
                uploaded_bytes: d.stats.new_stored_bytes,
                bitmap: p.new.clone(),
                persistent: live.persistent,
            }
        })
        .collect();
    Ok((summary.manifest, reports))
}
