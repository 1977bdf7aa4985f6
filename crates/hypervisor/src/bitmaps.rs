//! Dirty bitmaps for changed-block tracking (QEMU's docs/interop/bitmaps.rst).
//!
//! A disk's tracking bitmap is created with its first full backup:
//! persistent (stored in the image, survives a VM restart) on qcow2,
//! non-persistent on anything else (a VM restart loses it: the next backup
//! reads the whole disk). Each point in time rotates it in ONE `transaction`
//! with every other disk of the VM: `block-dirty-bitmap-add NEW` (recording
//! from now on) and `block-dirty-bitmap-disable OLD` (frozen: exactly the
//! writes between the previous point in time and this one, what the
//! incremental reads). No guest write can fall between OLD and NEW. When the
//! backup is stored, [`finish_rotation`] removes OLD; when it failed,
//! [`undo_rotation`] merges OLD into NEW and removes OLD, so the next backup
//! still reads every change since the last stored one.
//!
//! Every bitmap name carries the crate's prefix (`lifeboat-`).

use serde::Serialize;
use serde_json::{json, Value};

use crate::disks::Disk;
use crate::error::{HypervisorError, Result};
use crate::qmp::QmpClient;
use crate::PREFIX;

/// Whether a bitmap survives a VM restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Persistence {
    /// Stored in the qcow2 image.
    Persistent,
    /// Kept in QEMU's memory only.
    NonPersistent {
        /// Why (the disk's format).
        reason: String,
    },
}

/// One disk's part of a rotation: OLD is frozen, NEW starts recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The disk's format node.
    pub node: String,
    /// The bitmap that recorded up to the point in time (disabled by the rotation).
    pub old: String,
    /// The bitmap created at the point in time.
    pub new: String,
    /// Whether NEW is persistent.
    pub persistent: bool,
}

impl Rotation {
    /// Plans rotating `old` to `new` on `disk`.
    pub fn new(disk: &Disk, old: &str, new: &str) -> Rotation {
        Rotation {
            node: disk.node_name.clone(),
            old: old.to_string(),
            new: new.to_string(),
            persistent: disk.supports_persistent_bitmaps(),
        }
    }

    /// The two transaction actions of this rotation.
    pub fn actions(&self) -> Vec<Value> {
        vec![
            json!({"type": "block-dirty-bitmap-add", "data": {
                "node": self.node, "name": self.new, "persistent": self.persistent}}),
            json!({"type": "block-dirty-bitmap-disable", "data": {
                "node": self.node, "name": self.old}}),
        ]
    }
}

/// A bitmap name with the crate's prefix: `lifeboat-<tag>`.
pub fn bitmap_name(tag: &str) -> String {
    format!("{PREFIX}{tag}")
}

/// How `disk`'s bitmaps will be kept.
pub fn persistence(disk: &Disk) -> Persistence {
    if disk.supports_persistent_bitmaps() {
        Persistence::Persistent
    } else {
        Persistence::NonPersistent {
            reason: format!(
                "{} is a {} disk: QEMU stores bitmaps only in qcow2 images, so a VM restart \
                 loses the bitmap and the next backup reads the whole disk",
                disk.label(),
                disk.format
            ),
        }
    }
}

fn check_name(client: &QmpClient, name: &str) -> Result<()> {
    if name.len() > PREFIX.len() && name.starts_with(PREFIX) {
        Ok(())
    } else {
        Err(HypervisorError::Invalid {
            socket: client.socket().to_path_buf(),
            what: format!("bitmap name {name:?} must start with {PREFIX:?}"),
        })
    }
}

/// Creates a recording bitmap on `disk`: persistent on qcow2, else not.
pub fn create_bitmap(client: &QmpClient, disk: &Disk, name: &str) -> Result<Persistence> {
    check_name(client, name)?;
    let p = persistence(disk);
    if let Persistence::NonPersistent { reason } = &p {
        tracing::warn!(disk = %disk.label(), "non-persistent bitmap: {reason}");
    }
    client.execute(
        "block-dirty-bitmap-add",
        json!({"node": disk.node_name, "name": name,
               "persistent": matches!(p, Persistence::Persistent)}),
    )?;
    Ok(p)
}

/// Rotates every disk's bitmap in one `transaction` (all or nothing).
pub fn rotate(client: &QmpClient, rotations: &[Rotation]) -> Result<()> {
    for r in rotations {
        check_name(client, &r.old)?;
        check_name(client, &r.new)?;
    }
    let actions: Vec<Value> = rotations.iter().flat_map(Rotation::actions).collect();
    client.execute("transaction", json!({ "actions": actions }))?;
    Ok(())
}

/// After a stored backup: removes each rotation's OLD bitmap (one transaction).
pub fn finish_rotation(client: &QmpClient, rotations: &[Rotation]) -> Result<()> {
    let actions: Vec<Value> = rotations
        .iter()
        .map(|r| json!({"type": "block-dirty-bitmap-remove", "data": {"node": r.node, "name": r.old}}))
        .collect();
    client.execute("transaction", json!({ "actions": actions }))?;
    Ok(())
}

/// After a failed backup: merges each OLD into its NEW and removes OLD (one
/// transaction), so no change since the last stored backup is forgotten.
pub fn undo_rotation(client: &QmpClient, rotations: &[Rotation]) -> Result<()> {
    let actions: Vec<Value> = rotations
        .iter()
        .flat_map(|r| {
            [
                json!({"type": "block-dirty-bitmap-merge", "data": {
                    "node": r.node, "target": r.new, "bitmaps": [r.old]}}),
                json!({"type": "block-dirty-bitmap-remove", "data": {"node": r.node, "name": r.old}}),
            ]
        })
        .collect();
    client.execute("transaction", json!({ "actions": actions }))?;
    Ok(())
}

/// Removes one bitmap.
pub fn remove_bitmap(client: &QmpClient, disk: &Disk, name: &str) -> Result<()> {
    client.execute(
        "block-dirty-bitmap-remove",
        json!({"node": disk.node_name, "name": name}),
    )?;
    Ok(())
}

/// What the next backup of a disk would read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "read", rename_all = "kebab-case")]
pub enum NextRead {
    /// Only the dirty extents of `bitmap`.
    Incremental {
        /// The recording lifeboat bitmap.
        bitmap: String,
        /// Bytes it marks dirty.
        dirty_bytes: u64,
    },
    /// The whole disk.
    Full {
        /// Why no bitmap can be used.
        reason: String,
    },
}

/// Decides from the disk's bitmaps what the next backup would read. (Whether
/// the bitmap matches the latest restore point is the engine's check.)
pub fn next_read(disk: &Disk) -> NextRead {
    let ours: Vec<_> = disk
        .bitmaps
        .iter()
        .filter(|b| b.name.starts_with(PREFIX))
        .collect();
    let full = |reason: String| NextRead::Full { reason };
    if ours.is_empty() {
        return full(format!(
            "no {PREFIX}* bitmap on {} (first backup, or the bitmap was lost{})",
            disk.label(),
            if disk.supports_persistent_bitmaps() {
                ""
            } else {
                ": bitmaps of non-qcow2 disks do not survive a VM restart"
            }
        ));
    }
    if let Some(b) = ours.iter().find(|b| b.inconsistent) {
        return full(format!(
            "bitmap {} is inconsistent (QEMU stopped without saving it)",
            b.name
        ));
    }
    let recording: Vec<_> = ours.iter().filter(|b| b.recording).collect();
    match recording.as_slice() {
        [] => full(format!(
            "no {PREFIX}* bitmap is recording ({} disabled: an interrupted backup; cleanup merges it back)",
            ours.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
        [b] if ours.len() == 1 => NextRead::Incremental {
            bitmap: b.name.clone(),
            dirty_bytes: b.dirty_bytes,
        },
        [b] => full(format!(
            "an interrupted backup left {} besides {}: run cleanup first (it merges them)",
            ours.iter()
                .filter(|o| o.name != b.name)
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            b.name
        )),
        _ => full(format!(
            "several {PREFIX}* bitmaps record at once: {}",
            recording.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::BitmapInfo;

    fn disk(format: &str, bitmaps: Vec<BitmapInfo>) -> Disk {
        Disk {
            device: String::new(),
            qdev: "/machine/peripheral/vda/virtio-backend".into(),
            node_name: "n".into(),
            format: format.into(),
            file: "f".into(),
            size: 1 << 20,
            bitmaps,
            filtered_by_lifeboat: false,
        }
    }

    fn bm(name: &str, recording: bool, inconsistent: bool) -> BitmapInfo {
        BitmapInfo {
            name: name.into(),
            dirty_bytes: 4096,
            granularity: 65536,
            persistent: true,
            recording,
            busy: false,
            inconsistent,
        }
    }

    #[test]
    fn next_read_explains_full_reads() {
        let d = disk("raw", vec![bm("other", true, false)]);
        assert_eq!(d.label(), "vda");
        match next_read(&d) {
            NextRead::Full { reason } => assert!(reason.contains("do not survive"), "{reason}"),
            r => panic!("{r:?}"),
        }
        let d = disk("qcow2", vec![bm("lifeboat-1", true, true)]);
        assert!(
            matches!(next_read(&d), NextRead::Full { reason } if reason.contains("inconsistent"))
        );
        let d = disk("qcow2", vec![bm("lifeboat-1", false, false)]);
        assert!(
            matches!(next_read(&d), NextRead::Full { reason } if reason.contains("interrupted"))
        );
        let d = disk("qcow2", vec![bm("lifeboat-1", true, false)]);
        assert_eq!(
            next_read(&d),
            NextRead::Incremental {
                bitmap: "lifeboat-1".into(),
                dirty_bytes: 4096
            }
        );
    }

    #[test]
    fn persistence_follows_the_format() {
        assert_eq!(persistence(&disk("qcow2", vec![])), Persistence::Persistent);
        assert!(matches!(
            persistence(&disk("raw", vec![])),
            Persistence::NonPersistent { .. }
        ));
        let r = Rotation::new(&disk("raw", vec![]), "lifeboat-a", "lifeboat-b");
        assert!(!r.persistent);
        assert_eq!(r.actions()[0]["type"], "block-dirty-bitmap-add");
        assert_eq!(r.actions()[1]["data"]["name"], "lifeboat-a");
    }
}
