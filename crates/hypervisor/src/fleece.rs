//! Fleecing: a point-in-time view of every disk of a running VM, exported by
//! QEMU's own NBD server.
//!
//! Per disk `i` (QEMU >= 7.1, which has the `snapshot-access` driver):
//!
//! 1. `blockdev-create` (a job) a qcow2 fleecing overlay of the disk's size in
//!    the work directory, `blockdev-add` it as `lifeboat-flf<i>` (file) and
//!    `lifeboat-fl<i>` (qcow2, `discard=unmap`).
//! 2. The point in time: `stop` the guest if it runs; ONE `transaction` with
//!    every disk's bitmap rotation; per disk `blockdev-add` a
//!    `copy-before-write` filter `lifeboat-cbw<i>` (file = the disk, target =
//!    the overlay, `on-cbw-error=break-snapshot` so a full overlay fails the
//!    backup, never the guest) and `qom-set` the device's `drive` to it; `cont`.
//!    The guest is paused for the few milliseconds these commands take.
//! 3. `blockdev-add` a `snapshot-access` node `lifeboat-snap<i>` over the filter,
//!    `nbd-server-start` on our unix socket, `block-export-add` it as
//!    `lifeboat-<disk>` with the disk's frozen bitmap exported (readable as
//!    `qemu:dirty-bitmap:<name>`).
//!
//! [`Fleece::start_with_hook`] calls a [`PointInTimeHook`] around step 2
//! (around the `transaction` with QEMU < 7.1): `before` just before the
//! guest is paused, `after` right after `cont`, also when the point in time
//! failed. The live backup freezes the guest's filesystems there.
//!
//! [`Fleece::teardown`] undoes the steps in reverse (export, server, access
//! node, device drive, filter, overlay nodes, overlay file), going on past
//! errors; a failed [`Fleece::start`] tears down what it built and merges a
//! rotation back. A killed run leaves names with the `lifeboat-` prefix, which
//! [`crate::cleanup_leftovers`] finds and removes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::bitmaps::{undo_rotation, Rotation};
use crate::disks::Disk;
use crate::error::{HypervisorError, Result};
use crate::qmp::{QemuVersion, QmpClient};
use crate::PREFIX;

/// First QEMU with the `snapshot-access` driver (and `on-cbw-error`).
pub const SNAPSHOT_ACCESS_SINCE: (u32, u32) = (7, 1);

/// First QEMU with `block-export-add` (and several bitmaps per NBD export).
pub const BLOCK_EXPORT_SINCE: (u32, u32) = (5, 2);

/// How the point in time is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FleeceMethod {
    /// QEMU >= 7.1: a `copy-before-write` filter put in front of the device
    /// with `qom-set`, read through a `snapshot-access` node. The guest is
    /// paused (`stop`/`cont`) for the milliseconds the switch takes.
    SnapshotAccess,
    /// QEMU 5.2 to 7.0: the overlay gets the disk as its backing, and a
    /// `blockdev-backup sync=none` job (which copies old data into the overlay
    /// before each guest write) starts in the same `transaction` as the bitmap
    /// rotation; the overlay node is exported. No pause.
    BackupSyncNone,
}

impl FleeceMethod {
    /// The method for a QEMU version, or the version it would need.
    pub fn for_version(v: &QemuVersion) -> std::result::Result<FleeceMethod, (u32, u32)> {
        if v.at_least(SNAPSHOT_ACCESS_SINCE.0, SNAPSHOT_ACCESS_SINCE.1) {
            Ok(FleeceMethod::SnapshotAccess)
        } else if v.at_least(BLOCK_EXPORT_SINCE.0, BLOCK_EXPORT_SINCE.1) {
            Ok(FleeceMethod::BackupSyncNone)
        } else {
            Err(BLOCK_EXPORT_SINCE)
        }
    }
}

/// What runs around the point in time (see the module docs): the guest
/// runs during both calls.
pub trait PointInTimeHook {
    /// Just before the point in time is taken.
    fn before(&mut self);
    /// Right after it, whether it was taken or failed.
    fn after(&mut self);
}

/// No hook.
struct NoHook;

impl PointInTimeHook for NoHook {
    fn before(&mut self) {}
    fn after(&mut self) {}
}

/// What to fleece, and where.
#[derive(Debug, Clone)]
pub struct FleeceOptions {
    /// Directory for the temporary qcow2 overlays (local, fast, on the QEMU host).
    pub work_dir: PathBuf,
    /// The unix socket QEMU's NBD server listens on.
    pub nbd_socket: PathBuf,
    /// Timeout of the overlay-creation jobs.
    pub job_timeout: Duration,
    /// Force a method (`None`: the best the QEMU version has).
    pub method: Option<FleeceMethod>,
}

/// One disk to fleece.
#[derive(Debug, Clone)]
pub struct FleeceDisk {
    /// The disk.
    pub disk: Disk,
    /// Its rotation at the point in time, when it has a bitmap.
    pub rotation: Option<Rotation>,
}

/// One exported point-in-time disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    /// The disk's label.
    pub disk: String,
    /// NBD export name.
    pub name: String,
    /// `nbd+unix:///<name>?socket=<path>`.
    pub uri: String,
    /// The exported bitmap (`qemu:dirty-bitmap:<bitmap>`), if any.
    pub bitmap: Option<String>,
    /// Disk size, bytes.
    pub size: u64,
}

#[derive(Debug, Clone)]
enum Step {
    File(PathBuf),
    Node(String),
    Job(String),
    Drive { qdev: String, node: String },
    NbdServer,
    Export(String),
}

/// A running fleece. Call [`Fleece::teardown`]; dropping it leaves everything
/// in place (as a killed process would) for [`crate::cleanup_leftovers`].
#[derive(Debug)]
pub struct Fleece {
    steps: Vec<Step>,
    exports: Vec<Export>,
    paused: Duration,
    method: FleeceMethod,
}

/// QOM path of a device as `query-block` names it.
pub(crate) fn qom_path(qdev: &str) -> String {
    if qdev.starts_with('/') {
        qdev.to_string()
    } else {
        format!("/machine/peripheral/{qdev}")
    }
}

fn export_name(disk: &Disk) -> String {
    let label: String = disk
        .label()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}{label}")
}

impl Fleece {
    /// Builds the point in time for `disks` and exports them (see the module docs).
    pub fn start(client: &QmpClient, disks: &[FleeceDisk], opts: &FleeceOptions) -> Result<Fleece> {
        Self::start_with_hook(client, disks, opts, &mut NoHook)
    }

    /// [`Fleece::start`], with `hook` called around the point in time.
    pub fn start_with_hook(
        client: &QmpClient,
        disks: &[FleeceDisk],
        opts: &FleeceOptions,
        hook: &mut dyn PointInTimeHook,
    ) -> Result<Fleece> {
        let v = client.version();
        let method = match (opts.method, FleeceMethod::for_version(v)) {
            (_, Err(needs)) => {
                return Err(HypervisorError::TooOld {
                    socket: client.socket().to_path_buf(),
                    version: v.to_string(),
                    feature: "fleecing exported by QEMU's NBD server (block-export-add)".into(),
                    needs: format!("{}.{}", needs.0, needs.1),
                })
            }
            (Some(FleeceMethod::SnapshotAccess), Ok(FleeceMethod::BackupSyncNone)) => {
                return Err(HypervisorError::TooOld {
                    socket: client.socket().to_path_buf(),
                    version: v.to_string(),
                    feature: "fleecing with copy-before-write + snapshot-access".into(),
                    needs: format!("{}.{}", SNAPSHOT_ACCESS_SINCE.0, SNAPSHOT_ACCESS_SINCE.1),
                })
            }
            (Some(m), Ok(_)) | (None, Ok(m)) => m,
        };
        for d in disks {
            if d.disk.qdev.is_empty() {
                return Err(HypervisorError::Invalid {
                    socket: client.socket().to_path_buf(),
                    what: format!("disk {} is attached to no device", d.disk.label()),
                });
            }
        }
        private_dir(
            client,
            &opts.work_dir,
            "the fleecing overlays (old guest data)",
        )?;
        let socket_dir = match opts.nbd_socket.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        private_dir(
            client,
            socket_dir,
            "the NBD socket (reads every exported disk)",
        )?;
        busy_check(client)?;
        let mut f = Fleece {
            steps: Vec::new(),
            exports: Vec::new(),
            paused: Duration::ZERO,
            method,
        };
        let rotations: Vec<Rotation> = disks.iter().filter_map(|d| d.rotation.clone()).collect();
        let mut rotated = false;
        match f.build(client, disks, &rotations, opts, hook, &mut rotated) {
            Ok(()) => Ok(f),
            Err(e) => {
                tracing::warn!(error = %e, "fleecing failed; tearing down what was built");
                if let Err(t) = f.teardown_steps(client) {
                    tracing::warn!(error = %t, "teardown after a failed fleece");
                }
                if rotated {
                    if let Err(u) = undo_rotation(client, &rotations) {
                        tracing::warn!(error = %u, "merging the bitmaps back");
                    }
                }
                Err(e)
            }
        }
    }

    fn build(
        &mut self,
        client: &QmpClient,
        disks: &[FleeceDisk],
        rotations: &[Rotation],
        opts: &FleeceOptions,
        hook: &mut dyn PointInTimeHook,
        rotated: &mut bool,
    ) -> Result<()> {
        if self.method == FleeceMethod::BackupSyncNone {
            return self.build_backup_sync_none(client, disks, rotations, opts, hook, rotated);
        }
        for (i, d) in disks.iter().enumerate() {
            self.add_overlay(client, i, &d.disk, opts, None)?;
        }
        // The point in time: nothing the guest writes may fall between the
        // bitmap rotation and the filters taking over.
        let running = client
            .execute("query-status", Value::Null)?
            .get("running")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        hook.before();
        let t0 = Instant::now();
        let stopped = if running {
            client.execute("stop", Value::Null).map(drop)
        } else {
            Ok(())
        };
        let r = stopped.and_then(|()| self.point_in_time(client, disks, rotations, rotated));
        let c = if running {
            let c = client.execute("cont", Value::Null);
            self.paused = t0.elapsed();
            tracing::info!(paused = ?self.paused, "guest paused for the point in time");
            c.map(drop)
        } else {
            Ok(())
        };
        hook.after();
        r?;
        c?;
        if !disks.is_empty() {
            self.start_nbd(client, &opts.nbd_socket)?;
        }
        for (i, d) in disks.iter().enumerate() {
            let snap = format!("{PREFIX}snap{i}");
            client.execute(
                "blockdev-add",
                json!({"driver": "snapshot-access", "node-name": snap,
                       "file": format!("{PREFIX}cbw{i}")}),
            )?;
            self.steps.push(Step::Node(snap.clone()));
            // The bitmap lives on the disk's node, not under the access node.
            let bitmap = d.rotation.as_ref().map(|r| r.old.clone());
            let spec = bitmap
                .as_ref()
                .map(|b| json!([{"node": d.disk.node_name, "name": b}]));
            self.export(client, &d.disk, snap, bitmap, spec, opts)?;
        }
        Ok(())
    }

    /// `block-export-add` of `node` as the disk's export, with `bitmap`
    /// (named for QEMU by `bitmap_spec`) readable as a metadata context.
    fn export(
        &mut self,
        client: &QmpClient,
        disk: &Disk,
        node: String,
        bitmap: Option<String>,
        bitmap_spec: Option<Value>,
        opts: &FleeceOptions,
    ) -> Result<()> {
        let name = export_name(disk);
        let mut args = json!({"type": "nbd", "id": name, "node-name": node, "name": name});
        if let Some(spec) = bitmap_spec {
            args["bitmaps"] = spec;
        }
        client.execute("block-export-add", args)?;
        self.steps.push(Step::Export(name.clone()));
        self.exports.push(Export {
            disk: disk.label(),
            uri: format!("nbd+unix:///{name}?socket={}", opts.nbd_socket.display()),
            name,
            bitmap,
            size: disk.size,
        });
        Ok(())
    }

    fn build_backup_sync_none(
        &mut self,
        client: &QmpClient,
        disks: &[FleeceDisk],
        rotations: &[Rotation],
        opts: &FleeceOptions,
        hook: &mut dyn PointInTimeHook,
        rotated: &mut bool,
    ) -> Result<()> {
        for (i, d) in disks.iter().enumerate() {
            self.add_overlay(client, i, &d.disk, opts, Some(&d.disk.node_name))?;
        }
        // The point in time: bitmaps and copy-before-write jobs in one transaction.
        let mut actions: Vec<Value> = rotations.iter().flat_map(Rotation::actions).collect();
        let jobs: Vec<String> = (0..disks.len())
            .map(|i| format!("{PREFIX}backup{i}"))
            .collect();
        for (i, d) in disks.iter().enumerate() {
            actions.push(json!({"type": "blockdev-backup", "data": {
                "job-id": jobs[i], "device": d.disk.node_name,
                "target": format!("{PREFIX}fl{i}"), "sync": "none"}}));
        }
        hook.before();
        let r = client.execute("transaction", json!({ "actions": actions }));
        hook.after();
        r?;
        *rotated = !rotations.is_empty();
        self.steps.extend(jobs.into_iter().map(Step::Job));
        if !disks.is_empty() {
            self.start_nbd(client, &opts.nbd_socket)?;
        }
        for (i, d) in disks.iter().enumerate() {
            // Found through the overlay's backing chain (the disk).
            let bitmap = d.rotation.as_ref().map(|r| r.old.clone());
            let spec = bitmap.as_ref().map(|b| json!([b]));
            self.export(
                client,
                &d.disk,
                format!("{PREFIX}fl{i}"),
                bitmap,
                spec,
                opts,
            )?;
        }
        Ok(())
    }

    fn add_overlay(
        &mut self,
        client: &QmpClient,
        i: usize,
        disk: &Disk,
        opts: &FleeceOptions,
        backing: Option<&str>,
    ) -> Result<()> {
        let path = opts
            .work_dir
            .join(format!("{PREFIX}fleece-{}-{}.qcow2", std::process::id(), i));
        let file_node = format!("{PREFIX}flf{i}");
        let node = format!("{PREFIX}fl{i}");
        let filename = path.to_str().ok_or_else(|| HypervisorError::Invalid {
            socket: client.socket().to_path_buf(),
            what: format!("work directory path {} is not UTF-8", path.display()),
        })?;
        if path.exists() {
            return Err(HypervisorError::Invalid {
                socket: client.socket().to_path_buf(),
                what: format!("the fleecing overlay {} already exists", path.display()),
            });
        }
        self.steps.push(Step::File(path.clone()));
        run_job(
            client,
            &format!("{PREFIX}create{i}"),
            json!({"driver": "file", "filename": filename, "size": 0}),
            opts.job_timeout,
        )?;
        client.execute(
            "blockdev-add",
            json!({"driver": "file", "node-name": file_node, "filename": filename}),
        )?;
        self.steps.push(Step::Node(file_node.clone()));
        run_job(
            client,
            &format!("{PREFIX}create{i}"),
            json!({"driver": "qcow2", "file": file_node, "size": disk.size}),
            opts.job_timeout,
        )?;
        let mut args =
            json!({"driver": "qcow2", "node-name": node, "file": file_node, "discard": "unmap"});
        if let Some(b) = backing {
            args["backing"] = json!(b);
        }
        client.execute("blockdev-add", args)?;
        self.steps.push(Step::Node(node));
        Ok(())
    }

    fn point_in_time(
        &mut self,
        client: &QmpClient,
        disks: &[FleeceDisk],
        rotations: &[Rotation],
        rotated: &mut bool,
    ) -> Result<()> {
        if !rotations.is_empty() {
            crate::bitmaps::rotate(client, rotations)?;
            *rotated = true;
        }
        for (i, d) in disks.iter().enumerate() {
            let cbw = format!("{PREFIX}cbw{i}");
            client.execute(
                "blockdev-add",
                json!({"driver": "copy-before-write", "node-name": cbw,
                       "file": d.disk.node_name, "target": format!("{PREFIX}fl{i}"),
                       "on-cbw-error": "break-snapshot"}),
            )?;
            self.steps.push(Step::Node(cbw.clone()));
            let qdev = qom_path(&d.disk.qdev);
            client.execute(
                "qom-set",
                json!({"path": qdev, "property": "drive", "value": cbw}),
            )?;
            self.steps.push(Step::Drive {
                qdev,
                node: d.disk.node_name.clone(),
            });
        }
        Ok(())
    }

    fn start_nbd(&mut self, client: &QmpClient, socket: &Path) -> Result<()> {
        if socket.exists() {
            std::fs::remove_file(socket).map_err(|source| HypervisorError::File {
                what: "removing the stale NBD socket",
                path: socket.to_path_buf(),
                source,
            })?;
        }
        client.execute(
            "nbd-server-start",
            json!({"addr": {"type": "unix", "data": {"path": socket.to_string_lossy()}}}),
        )?;
        self.steps.push(Step::NbdServer);
        Ok(())
    }

    /// The exported disks.
    pub fn exports(&self) -> &[Export] {
        &self.exports
    }

    /// The method used.
    pub fn method(&self) -> FleeceMethod {
        self.method
    }

    /// How long the guest was paused for the point in time (zero if it was not running).
    pub fn paused(&self) -> Duration {
        self.paused
    }

    /// Whether the point in time still stands: fails when QEMU closed the
    /// connection, sent `SHUTDOWN`, or reported `BLOCK_JOB_ERROR` for one of
    /// our jobs since the last check (those events are taken from the queue).
    /// A reader calls it between batches and stops on an error.
    pub fn check(&self, client: &QmpClient) -> Result<()> {
        let interrupted = |event: &str, detail: String| HypervisorError::Interrupted {
            socket: client.socket().to_path_buf(),
            event: event.to_string(),
            detail,
        };
        let events = client.take_events_matching(|e| {
            e.name == "SHUTDOWN"
                || (e.name == "BLOCK_JOB_ERROR"
                    && e.data
                        .get("device")
                        .and_then(Value::as_str)
                        .is_some_and(|d| d.starts_with(PREFIX)))
        });
        if let Some(e) = events.first() {
            let detail = if e.name == "SHUTDOWN" {
                format!(
                    "the VM shut down (reason: {}) while its point in time was being read",
                    e.data
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                )
            } else {
                format!("job error: {}", e.data)
            };
            return Err(interrupted(&e.name, detail));
        }
        if client.is_closed() {
            return Err(interrupted(
                "connection closed",
                "QEMU closed the QMP connection (quit or killed)".into(),
            ));
        }
        Ok(())
    }

    /// Removes everything [`Fleece::start`] built; returns the first error
    /// after trying every step.
    pub fn teardown(mut self, client: &QmpClient) -> Result<()> {
        self.teardown_steps(client)
    }

    fn teardown_steps(&mut self, client: &QmpClient) -> Result<()> {
        let mut first = None;
        while let Some(step) = self.steps.pop() {
            if let Err(e) = undo(client, &step) {
                tracing::warn!(?step, error = %e, "teardown step failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn undo(client: &QmpClient, step: &Step) -> Result<()> {
    match step {
        Step::Export(id) => delete_export(client, id),
        Step::NbdServer => client.execute("nbd-server-stop", Value::Null).map(drop),
        Step::Job(id) => cancel_backup_job(client, id),
        Step::Drive { qdev, node } => client
            .execute(
                "qom-set",
                json!({"path": qdev, "property": "drive", "value": node}),
            )
            .map(drop),
        Step::Node(n) => client
            .execute("blockdev-del", json!({"node-name": n}))
            .map(drop),
        Step::File(p) => match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HypervisorError::File {
                what: "removing the fleecing overlay",
                path: p.clone(),
                source: e,
            }),
            _ => Ok(()),
        },
    }
}

/// Deletes an export (disconnecting clients) and waits until QEMU has.
pub(crate) fn delete_export(client: &QmpClient, id: &str) -> Result<()> {
    client.execute("block-export-del", json!({"id": id, "mode": "hard"}))?;
    client
        .wait_event("BLOCK_EXPORT_DELETED", client.timeout(), |e| {
            e.name == "BLOCK_EXPORT_DELETED" && e.data.get("id").and_then(Value::as_str) == Some(id)
        })
        .map(drop)
}

/// Refuses a directory that others may enter: QEMU creates the overlay and
/// the NBD socket with the process umask, and both give away guest data.
fn private_dir(client: &QmpClient, dir: &Path, holds: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir).map_err(|source| HypervisorError::File {
        what: "checking the directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_dir() || mode & 0o077 != 0 {
        return Err(HypervisorError::Invalid {
            socket: client.socket().to_path_buf(),
            what: format!(
                "{} holds {holds}: it must be a directory only its owner can enter \
                 (mode 0700), not {mode:04o}",
                dir.display()
            ),
        });
    }
    Ok(())
}

/// Refuses to start while `lifeboat-*` nodes or exports exist: another
/// backup of this VM runs, or a killed one left them.
fn busy_check(client: &QmpClient) -> Result<()> {
    let nodes = client.execute("query-named-block-nodes", json!({"flat": true}))?;
    let exports = client.execute("query-block-exports", Value::Null)?;
    let ours: Vec<&str> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("node-name").and_then(Value::as_str))
        .chain(
            exports
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("id").and_then(Value::as_str)),
        )
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    Err(HypervisorError::Invalid {
        socket: client.socket().to_path_buf(),
        what: format!(
            "this VM already has a point in time ({}): another backup of it runs, \
             or a killed one left these (cleanup_leftovers removes them)",
            ours.join(", ")
        ),
    })
}

/// Cancels a `blockdev-backup sync=none` job and waits until it is gone
/// (it removes its copy-before-write filter as it ends).
pub(crate) fn cancel_backup_job(client: &QmpClient, id: &str) -> Result<()> {
    client.execute("block-job-cancel", json!({"device": id, "force": true}))?;
    client
        .wait_event(
            &format!("BLOCK_JOB_CANCELLED {id}"),
            client.timeout(),
            |e| {
                matches!(
                    e.name.as_str(),
                    "BLOCK_JOB_CANCELLED" | "BLOCK_JOB_COMPLETED"
                ) && e.data.get("device").and_then(Value::as_str) == Some(id)
            },
        )
        .map(drop)
}

/// Runs `blockdev-create` as job `id` and waits for it (JOB_STATUS_CHANGE).
fn run_job(client: &QmpClient, id: &str, options: Value, timeout: Duration) -> Result<()> {
    client.execute("blockdev-create", json!({"job-id": id, "options": options}))?;
    client.wait_event(&format!("JOB_STATUS_CHANGE {id} concluded"), timeout, |e| {
        e.name == "JOB_STATUS_CHANGE"
            && e.data.get("id").and_then(Value::as_str) == Some(id)
            && e.data.get("status").and_then(Value::as_str) == Some("concluded")
    })?;
    let jobs = client.execute("query-jobs", Value::Null)?;
    let error = jobs.as_array().and_then(|js| {
        js.iter()
            .find(|j| j.get("id").and_then(Value::as_str) == Some(id))
            .and_then(|j| j.get("error").and_then(Value::as_str).map(str::to_string))
    });
    client.execute("job-dismiss", json!({ "id": id }))?;
    // Drop the job's other status events so a later job of the same id
    // cannot be mistaken for this one.
    let _ = client.take_events_matching(|e| {
        e.name == "JOB_STATUS_CHANGE" && e.data.get("id").and_then(Value::as_str) == Some(id)
    });
    match error {
        Some(reason) => Err(HypervisorError::Job {
            socket: client.socket().to_path_buf(),
            job: id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32) -> QemuVersion {
        QemuVersion {
            major,
            minor,
            micro: 0,
            package: String::new(),
        }
    }

    #[test]
    fn each_version_gets_its_method() {
        assert_eq!(FleeceMethod::for_version(&v(5, 1)), Err((5, 2)));
        assert_eq!(
            FleeceMethod::for_version(&v(5, 2)),
            Ok(FleeceMethod::BackupSyncNone)
        );
        assert_eq!(
            FleeceMethod::for_version(&v(7, 0)),
            Ok(FleeceMethod::BackupSyncNone)
        );
        assert_eq!(
            FleeceMethod::for_version(&v(7, 1)),
            Ok(FleeceMethod::SnapshotAccess)
        );
        assert_eq!(
            FleeceMethod::for_version(&v(10, 0)),
            Ok(FleeceMethod::SnapshotAccess)
        );
    }

    #[test]
    fn export_names_are_prefixed_and_tame() {
        let d = Disk {
            device: "drive-virtio disk0".into(),
            qdev: String::new(),
            node_name: "n".into(),
            format: "qcow2".into(),
            file: String::new(),
            size: 0,
            bitmaps: Vec::new(),
            filtered_by_lifeboat: false,
        };
        assert_eq!(export_name(&d), "lifeboat-drive-virtio_disk0");
        assert_eq!(qom_path("sda"), "/machine/peripheral/sda");
        assert_eq!(
            qom_path("/machine/peripheral/vda/virtio-backend"),
            "/machine/peripheral/vda/virtio-backend"
        );
    }
}
