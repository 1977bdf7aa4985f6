//! The VM's disks as QEMU sees them: `query-block` gives each attached
//! device and its root node, `query-named-block-nodes` the format node's
//! driver, file, size and dirty bitmaps. A root node that is one of our own
//! copy-before-write filters (left by a killed run) is looked through to the
//! disk below it with `x-debug-query-block-graph`.

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{HypervisorError, Result};
use crate::qmp::QmpClient;
use crate::PREFIX;

/// Filter drivers a backup job puts above a disk (`backup-top` before QEMU 6.2).
const FILTERS: [&str; 2] = ["copy-before-write", "backup-top"];

/// One dirty bitmap of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BitmapInfo {
    /// Bitmap name.
    pub name: String,
    /// Dirty bytes (QEMU's `count`).
    pub dirty_bytes: u64,
    /// Tracking granularity, bytes.
    pub granularity: u64,
    /// Stored in the qcow2 file and survives a VM restart.
    pub persistent: bool,
    /// Records guest writes now (false once disabled).
    pub recording: bool,
    /// In use by a job or an export.
    pub busy: bool,
    /// Marked inconsistent by QEMU (QEMU was not shut down cleanly): unusable.
    pub inconsistent: bool,
}

/// One disk attached to the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// The BlockBackend name (`-drive id=`); empty for `-blockdev` disks.
    pub device: String,
    /// The QOM path or id of the device the disk is attached to.
    pub qdev: String,
    /// The node holding the disk's data and its bitmaps (the format node).
    pub node_name: String,
    /// The format driver (`qcow2`, `raw`, ...).
    pub format: String,
    /// The image file (or URL) QEMU opened.
    pub file: String,
    /// Virtual size, bytes.
    pub size: u64,
    /// Named dirty bitmaps on the node.
    pub bitmaps: Vec<BitmapInfo>,
    /// A copy-before-write filter sits above the disk (ours, or a backup job's).
    pub filtered_by_lifeboat: bool,
}

impl Disk {
    /// A short name for people: the device name, else the qdev id.
    pub fn label(&self) -> String {
        if !self.device.is_empty() {
            return self.device.clone();
        }
        let q = self
            .qdev
            .trim_end_matches("/virtio-backend")
            .trim_start_matches("/machine/peripheral/");
        if q.is_empty() {
            self.node_name.clone()
        } else {
            q.to_string()
        }
    }

    /// Whether bitmaps on this disk can be persistent (stored in the image).
    pub fn supports_persistent_bitmaps(&self) -> bool {
        self.format == "qcow2"
    }

    /// The named bitmap, if the disk has it.
    pub fn bitmap(&self, name: &str) -> Option<&BitmapInfo> {
        self.bitmaps.iter().find(|b| b.name == name)
    }
}

/// Lists the disks of the VM (devices with media; empty CD-ROMs are skipped).
pub fn list_disks(client: &QmpClient) -> Result<Vec<Disk>> {
    let blocks = client.execute("query-block", Value::Null)?;
    let nodes = client.execute("query-named-block-nodes", json!({ "flat": true }))?;
    let bad = |reason: &str| HypervisorError::BadReply {
        socket: client.socket().to_path_buf(),
        command: "query-block".into(),
        reason: reason.to_string(),
    };
    let blocks = blocks.as_array().ok_or_else(|| bad("not a list"))?;
    let nodes = nodes.as_array().cloned().unwrap_or_default();
    let find_node = |name: &str| {
        nodes
            .iter()
            .find(|n| n.get("node-name").and_then(Value::as_str) == Some(name))
    };
    let mut graph = None;
    let mut disks = Vec::new();
    for b in blocks {
        let Some(inserted) = b.get("inserted") else {
            continue;
        };
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut node_name = s(inserted, "node-name");
        let mut filtered = false;
        let drv = s(inserted, "drv");
        if node_name.starts_with(PREFIX) || FILTERS.contains(&drv.as_str()) {
            if graph.is_none() {
                graph = Some(client.execute("x-debug-query-block-graph", Value::Null)?);
            }
            let g = graph.as_ref().expect("fetched above");
            if let Some(child) =
                child_node(g, &node_name, "file").or_else(|| child_node(g, &node_name, "backing"))
            {
                node_name = child;
                filtered = true;
            }
        }
        let node = find_node(&node_name).unwrap_or(inserted);
        let image = node.get("image").cloned().unwrap_or(Value::Null);
        disks.push(Disk {
            device: s(b, "device"),
            qdev: s(b, "qdev"),
            format: s(node, "drv"),
            file: s(node, "file"),
            size: image
                .get("virtual-size")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            bitmaps: parse_bitmaps(node),
            node_name,
            filtered_by_lifeboat: filtered,
        });
    }
    Ok(disks)
}

/// Finds one disk by label, device, qdev or node name.
pub fn find_disk<'a>(client: &QmpClient, disks: &'a [Disk], name: &str) -> Result<&'a Disk> {
    disks
        .iter()
        .find(|d| d.label() == name || d.device == name || d.qdev == name || d.node_name == name)
        .ok_or_else(|| HypervisorError::Invalid {
            socket: client.socket().to_path_buf(),
            what: format!(
                "no disk named {name:?} (the VM has: {})",
                disks.iter().map(Disk::label).collect::<Vec<_>>().join(", ")
            ),
        })
}

/// The named dirty bitmaps of one node of `query-named-block-nodes`.
fn parse_bitmaps(node: &Value) -> Vec<BitmapInfo> {
    let Some(list) = node.get("dirty-bitmaps").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|b| {
            let name = b.get("name").and_then(Value::as_str)?;
            let flag = |k: &str| b.get(k).and_then(Value::as_bool).unwrap_or(false);
            let num = |k: &str| b.get(k).and_then(Value::as_u64).unwrap_or(0);
            Some(BitmapInfo {
                name: name.to_string(),
                dirty_bytes: num("count"),
                granularity: num("granularity"),
                persistent: flag("persistent"),
                recording: flag("recording"),
                busy: flag("busy"),
                inconsistent: flag("inconsistent"),
            })
        })
        .collect()
}

/// In an `x-debug-query-block-graph` result, the node name of `parent`'s child `edge`.
pub(crate) fn child_node(graph: &Value, parent: &str, edge: &str) -> Option<String> {
    let nodes = graph.get("nodes")?.as_array()?;
    let id_of = |name: &str| {
        nodes
            .iter()
            .find(|n| n.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|n| n.get("id").and_then(Value::as_u64))
    };
    let pid = id_of(parent)?;
    let cid = graph
        .get("edges")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("parent").and_then(Value::as_u64) == Some(pid)
                && e.get("name").and_then(Value::as_str) == Some(edge)
        })?
        .get("child")?
        .as_u64()?;
    nodes
        .iter()
        .find(|n| n.get("id").and_then(Value::as_u64) == Some(cid))
        .and_then(|n| n.get("name").and_then(Value::as_str))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_children_are_found() {
        let g = json!({"nodes": [{"id": 1, "name": "lifeboat-cbw0"}, {"id": 2, "name": "disk0"}, {"id": 3, "name": "lifeboat-fl0"}],
                       "edges": [{"parent": 1, "child": 2, "name": "file"}, {"parent": 1, "child": 3, "name": "target"}]});
        assert_eq!(
            child_node(&g, "lifeboat-cbw0", "file").as_deref(),
            Some("disk0")
        );
        assert_eq!(
            child_node(&g, "lifeboat-cbw0", "target").as_deref(),
            Some("lifeboat-fl0")
        );
        assert_eq!(child_node(&g, "disk0", "file"), None);
    }

    #[test]
    fn unnamed_bitmaps_are_skipped() {
        let n = json!({"dirty-bitmaps": [{"recording": false, "count": 5}, {"name": "lifeboat-a", "recording": true, "persistent": true, "count": 65536, "granularity": 65536}]});
        let b = parse_bitmaps(&n);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].name, "lifeboat-a");
        assert!(b[0].recording && b[0].persistent && !b[0].busy && !b[0].inconsistent);
        assert_eq!(b[0].dirty_bytes, 65536);
    }
}
