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
//! [`Fleece::teardown`] undoes the steps in reverse (export, server, access
//! node, device drive, filter, overlay nodes, overlay file), going on past
//! errors; a failed [`Fleece::start`] tears down what it built and merges a
//! rotation back. A killed run leaves names with the `lifeboat-` prefix, which
//! [`cleanup_leftovers`] finds and removes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::bitmaps::{undo_rotation, Rotation};
use crate::disks::{child_node, Disk};
use crate::error::{HypervisorError, Result};
use crate::qmp::QmpClient;
use crate::PREFIX;

/// First QEMU with the `snapshot-access` driver (and `on-cbw-error`).
pub const SNAPSHOT_ACCESS_SINCE: (u32, u32) = (7, 1);

/// What to fleece, and where.
#[derive(Debug, Clone)]
pub struct FleeceOptions {
    /// Directory for the temporary qcow2 overlays (local, fast, on the QEMU host).
    pub work_dir: PathBuf,
    /// The unix socket QEMU's NBD server listens on.
    pub nbd_socket: PathBuf,
    /// Timeout of the overlay-creation jobs.
    pub job_timeout: Duration,
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
    Drive { qdev: String, node: String },
    NbdServer,
    Export(String),
}

/// A running fleece. Call [`Fleece::teardown`]; dropping it leaves everything
/// in place (as a killed process would) for [`cleanup_leftovers`].
#[derive(Debug)]
pub struct Fleece {
    steps: Vec<Step>,
    exports: Vec<Export>,
    paused: Duration,
}

/// QOM path of a device as `query-block` names it.
fn qom_path(qdev: &str) -> String {
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
        let v = client.version();
        if !v.at_least(SNAPSHOT_ACCESS_SINCE.0, SNAPSHOT_ACCESS_SINCE.1) {
            return Err(HypervisorError::TooOld {
                socket: client.socket().to_path_buf(),
                version: v.to_string(),
                feature: "fleecing (copy-before-write + snapshot-access)".into(),
                needs: format!("{}.{}", SNAPSHOT_ACCESS_SINCE.0, SNAPSHOT_ACCESS_SINCE.1),
            });
        }
        for d in disks {
            if d.disk.qdev.is_empty() {
                return Err(HypervisorError::Invalid {
                    socket: client.socket().to_path_buf(),
                    what: format!("disk {} is attached to no device", d.disk.label()),
                });
            }
        }
        let mut f = Fleece {
            steps: Vec::new(),
            exports: Vec::new(),
            paused: Duration::ZERO,
        };
        let rotations: Vec<Rotation> = disks.iter().filter_map(|d| d.rotation.clone()).collect();
        let mut rotated = false;
        match f.build(client, disks, &rotations, opts, &mut rotated) {
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
        rotated: &mut bool,
    ) -> Result<()> {
        for (i, d) in disks.iter().enumerate() {
            self.add_overlay(client, i, &d.disk, opts)?;
        }
        // The point in time: nothing the guest writes may fall between the
        // bitmap rotation and the filters taking over.
        let running = client
            .execute("query-status", Value::Null)?
            .get("running")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let t0 = Instant::now();
        if running {
            client.execute("stop", Value::Null)?;
        }
        let r = self.point_in_time(client, disks, rotations, rotated);
        if running {
            let c = client.execute("cont", Value::Null);
            self.paused = t0.elapsed();
            tracing::info!(paused = ?self.paused, "guest paused for the point in time");
            c?;
        }
        r?;
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
            let name = export_name(&d.disk);
            let bitmap = d.rotation.as_ref().map(|r| r.old.clone());
            let mut args = json!({"type": "nbd", "id": name, "node-name": snap, "name": name});
            if let Some(b) = &bitmap {
                args["bitmaps"] = json!([{"node": d.disk.node_name, "name": b}]);
            }
            client.execute("block-export-add", args)?;
            self.steps.push(Step::Export(name.clone()));
            self.exports.push(Export {
                disk: d.disk.label(),
                uri: format!("nbd+unix:///{name}?socket={}", opts.nbd_socket.display()),
                name,
                bitmap,
                size: d.disk.size,
            });
        }
        Ok(())
    }

    fn add_overlay(
        &mut self,
        client: &QmpClient,
        i: usize,
        disk: &Disk,
        opts: &FleeceOptions,
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
        client.execute(
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": node, "file": file_node, "discard": "unmap"}),
        )?;
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

    /// How long the guest was paused for the point in time (zero if it was not running).
    pub fn paused(&self) -> Duration {
        self.paused
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
fn delete_export(client: &QmpClient, id: &str) -> Result<()> {
    client.execute("block-export-del", json!({"id": id, "mode": "hard"}))?;
    client
        .wait_event("BLOCK_EXPORT_DELETED", client.timeout(), |e| {
            e.name == "BLOCK_EXPORT_DELETED" && e.data.get("id").and_then(Value::as_str) == Some(id)
        })
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

/// What [`cleanup_leftovers`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Exports deleted.
    pub exports: Vec<String>,
    /// Whether the NBD server was stopped (it served only our exports).
    pub nbd_server_stopped: bool,
    /// Devices whose drive was set back from our filter to the disk.
    pub devices_restored: Vec<String>,
    /// Block nodes deleted.
    pub nodes: Vec<String>,
    /// Overlay files deleted.
    pub files: Vec<PathBuf>,
    /// Disabled bitmaps of interrupted backups merged back (`old -> new`) or re-enabled.
    pub bitmaps: Vec<String>,
}

impl CleanupReport {
    /// Whether anything was left over.
    pub fn is_empty(&self) -> bool {
        *self == CleanupReport::default()
    }
}

/// Finds and removes what an earlier, killed run left in this QEMU: exports,
/// filters, overlay nodes and files named `lifeboat-*`, and the disabled
/// bitmap of an interrupted rotation (merged into the recording one, so no
/// change is forgotten).
pub fn cleanup_leftovers(client: &QmpClient) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let exports = client.execute("query-block-exports", Value::Null)?;
    let ids: Vec<String> = exports
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
        .collect();
    for id in ids.iter().filter(|id| id.starts_with(PREFIX)) {
        delete_export(client, id)?;
        report.exports.push(id.clone());
    }
    if !report.exports.is_empty() && report.exports.len() == ids.len() {
        match client.execute("nbd-server-stop", Value::Null) {
            Ok(_) => report.nbd_server_stopped = true,
            Err(e) => tracing::debug!(error = %e, "no NBD server to stop"),
        }
    }

    let graph = client.execute("x-debug-query-block-graph", Value::Null)?;
    let blocks = client.execute("query-block", Value::Null)?;
    let nodes = client.execute("query-named-block-nodes", json!({"flat": true}))?;
    let mut ours: Vec<(String, String, String)> = Vec::new();
    let mut bitmap_nodes = Vec::new();
    for n in nodes.as_array().into_iter().flatten() {
        let s = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let name = s("node-name");
        if name.starts_with(PREFIX) {
            ours.push((name, s("drv"), s("file")));
        } else if n.get("dirty-bitmaps").is_some() {
            bitmap_nodes.push(n.clone());
        }
    }
    // Parents before children: access nodes, filters, qcow2 overlays, files.
    let rank = |n: &str| {
        let kind = &n[PREFIX.len()..];
        match () {
            _ if kind.starts_with("snap") => 0,
            _ if kind.starts_with("cbw") => 1,
            _ if kind.starts_with("flf") => 3,
            _ if kind.starts_with("fl") => 2,
            _ => 4,
        }
    };
    ours.sort_by_key(|(n, _, _)| rank(n));
    // The access nodes go first: while one sits on a filter, the filter
    // refuses to give the device its disk back.
    for stage in 0..5 {
        if stage == 1 {
            restore_devices(client, &graph, &blocks, &mut report)?;
        }
        for (name, drv, file) in ours.iter().filter(|(n, _, _)| rank(n) == stage) {
            client.execute("blockdev-del", json!({"node-name": name}))?;
            report.nodes.push(name.clone());
            let path = Path::new(file);
            let is_overlay = drv == "file"
                && path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(&format!("{PREFIX}fleece-")));
            if is_overlay {
                match std::fs::remove_file(path) {
                    Ok(()) => report.files.push(path.to_path_buf()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(HypervisorError::File {
                            what: "removing the fleecing overlay",
                            path: path.to_path_buf(),
                            source,
                        })
                    }
                }
            }
        }
    }

    for n in &bitmap_nodes {
        let node = n.get("node-name").and_then(Value::as_str).unwrap_or("");
        let bms: Vec<(String, bool)> = n
            .get("dirty-bitmaps")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| {
                let name = b.get("name").and_then(Value::as_str)?;
                name.starts_with(PREFIX).then(|| {
                    (
                        name.to_string(),
                        b.get("recording").and_then(Value::as_bool).unwrap_or(false),
                    )
                })
            })
            .collect();
        let recording: Vec<&String> = bms.iter().filter(|b| b.1).map(|b| &b.0).collect();
        for (old, _) in bms.iter().filter(|b| !b.1) {
            if let [new] = recording.as_slice() {
                let r = Rotation {
                    node: node.to_string(),
                    old: old.clone(),
                    new: (*new).clone(),
                    persistent: true,
                };
                undo_rotation(client, &[r])?;
                report.bitmaps.push(format!("{node}: {old} -> {new}"));
            } else if recording.is_empty() {
                client.execute(
                    "block-dirty-bitmap-enable",
                    json!({"node": node, "name": old}),
                )?;
                report.bitmaps.push(format!("{node}: {old} enabled"));
            }
        }
    }
    if !report.is_empty() {
        tracing::info!(?report, "removed leftovers of an earlier run");
    }
    Ok(report)
}

/// Sets each device whose drive is one of our filters back to the disk below it.
fn restore_devices(
    client: &QmpClient,
    graph: &Value,
    blocks: &Value,
    report: &mut CleanupReport,
) -> Result<()> {
    for b in blocks.as_array().into_iter().flatten() {
        let root = b
            .pointer("/inserted/node-name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let qdev = b.get("qdev").and_then(Value::as_str).unwrap_or("");
        if !root.starts_with(PREFIX) || qdev.is_empty() {
            continue;
        }
        let Some(disk) = child_node(graph, root, "file") else {
            continue;
        };
        client.execute(
            "qom-set",
            json!({"path": qom_path(qdev), "property": "drive", "value": disk}),
        )?;
        report.devices_restored.push(qdev.to_string());
    }
    Ok(())
}
