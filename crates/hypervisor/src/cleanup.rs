//! Leftovers of a killed run: everything [`crate::Fleece`] creates is named
//! `lifeboat-*`, so a later run finds it by name and removes it in an order
//! QEMU accepts: exports (and the NBD server when it served only ours), backup
//! jobs, snapshot-access nodes, the devices' drives set back from our filters
//! to their disks, filters, overlay nodes, overlay files. A rotation the run
//! never finished (a disabled `lifeboat-*` bitmap beside the recording one) is
//! merged back, so the next backup still reads every change.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use crate::bitmaps::{undo_rotation, Rotation};
use crate::disks::child_node;
use crate::error::{HypervisorError, Result};
use crate::fleece::{cancel_backup_job, delete_export, qom_path};
use crate::qmp::QmpClient;
use crate::PREFIX;

/// What [`cleanup_leftovers`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Exports deleted.
    pub exports: Vec<String>,
    /// Whether the NBD server was stopped (it served only our exports).
    pub nbd_server_stopped: bool,
    /// Jobs cancelled or dismissed.
    pub jobs: Vec<String>,
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

    let jobs = client.execute("query-jobs", Value::Null)?;
    for j in jobs.as_array().into_iter().flatten() {
        let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or("");
        let id = s("id");
        if !id.starts_with(PREFIX) {
            continue;
        }
        if s("type") == "backup" {
            cancel_backup_job(client, id)?;
        } else if s("status") == "concluded" {
            client.execute("job-dismiss", json!({ "id": id }))?;
        } else {
            continue;
        }
        report.jobs.push(id.to_string());
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
