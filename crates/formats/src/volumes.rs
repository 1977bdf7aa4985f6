//! Volume discovery for publishing and file browsing: one call,
//! [`discover_volumes`], turns a disk into the list of things that may hold
//! a filesystem: its partitions (or the whole disk when there is no
//! partition table) and the LVM2 logical volumes found inside them.
//!
//! Naming follows Linux: partitions are `<disk><N>`, or `<disk>p<N>` when
//! the disk name ends in a digit (MBR logical partitions from 5), LVs `<vg>-<lv>` as device-mapper names them, the
//! whole disk keeps the disk's name. PVs stay in the list (type hint
//! `lvm2-pv`) so a consumer can show them but knows not to mount them.
//! Nothing here fails: every problem (a bad table entry, damaged LVM
//! metadata, an I/O error while probing) lands in
//! [`DiscoveryReport::problems`] and the rest is still returned.

use crate::lvm::{self, FoundPv};
use crate::partition::{self, Scheme};
use lifeboat_vdisk::ReadDisk;
use std::sync::Arc;

/// What a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// The whole disk (no partition table).
    Whole,
    /// A GPT or MBR partition.
    Partition,
    /// An LVM2 logical volume.
    Lvm,
}

/// One volume of a disk.
#[derive(Clone)]
pub struct Volume {
    /// `disk0p1`, `disk0` (whole), `vg0-root` (LV).
    pub name: String,
    pub kind: VolumeKind,
    /// Byte offset on the disk; for an LV, the offset of its single
    /// contiguous run (see `contiguous`), else 0.
    pub start: u64,
    /// Size in bytes.
    pub length: u64,
    /// True when the volume's bytes are `start..start+length` of the disk
    /// (a loop device with `--offset/--sizelimit` can serve it); false for
    /// striped or fragmented LVs, which must be served from `disk`.
    pub contiguous: bool,
    /// `linux-filesystem`, `mbr-0x83`, `lvm2-pv`, `lvm2-lv`, `unknown`...
    pub type_hint: String,
    /// The GPT partition name, if any.
    pub label: Option<String>,
    /// The volume's bytes.
    pub disk: Arc<dyn ReadDisk>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("start", &self.start)
            .field("length", &self.length)
            .field("contiguous", &self.contiguous)
            .field("type_hint", &self.type_hint)
            .field("label", &self.label)
            .field("disk", &self.disk.describe())
            .finish()
    }
}

/// Everything [`discover_volumes`] found.
#[derive(Debug, Default)]
pub struct DiscoveryReport {
    /// The partition scheme of the disk.
    pub scheme: Option<Scheme>,
    pub volumes: Vec<Volume>,
    pub problems: Vec<String>,
}

impl DiscoveryReport {
    /// The volume named `name`.
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.name == name)
    }
}

/// The Linux name of partition `number` of `disk_name`: `sda1`, but
/// `disk0p1` when the disk name ends in a digit.
pub fn partition_name(disk_name: &str, number: u32) -> String {
    if disk_name.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk_name}p{number}")
    } else {
        format!("{disk_name}{number}")
    }
}

/// Finds the partitions of `disk` (named after `disk_name`) and the LVM
/// logical volumes inside them (or inside the whole disk).
pub fn discover_volumes(disk_name: &str, disk: Arc<dyn ReadDisk>) -> DiscoveryReport {
    let mut report = DiscoveryReport::default();
    let table = match partition::read_partition_table(disk.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            report
                .problems
                .push(format!("{disk_name}: reading the partition table: {e}"));
            return report;
        }
    };
    report.scheme = Some(table.scheme);
    for p in &table.problems {
        report.problems.push(format!("{disk_name}: {p}"));
    }
    let mut candidates = Vec::new();
    if table.scheme == Scheme::None {
        candidates.push(Volume {
            name: disk_name.to_string(),
            kind: VolumeKind::Whole,
            start: 0,
            length: disk.size(),
            contiguous: true,
            type_hint: "unknown".to_string(),
            label: None,
            disk: disk.clone(),
        });
    }
    for p in &table.partitions {
        let name = partition_name(disk_name, p.number);
        if !p.usable() {
            for why in &p.problems {
                report.problems.push(format!("{name} skipped: {why}"));
            }
            continue;
        }
        match partition::slice(&disk, p, &name) {
            Ok(slice) => candidates.push(Volume {
                name,
                kind: VolumeKind::Partition,
                start: p.start,
                length: p.length,
                contiguous: true,
                type_hint: p.type_hint.clone(),
                label: p.label.clone(),
                disk: slice,
            }),
            Err(e) => report.problems.push(format!("{name} skipped: {e}")),
        }
    }
    let mut pvs = Vec::new();
    for v in &mut candidates {
        match lvm::read_pv_label(v.disk.as_ref()) {
            Ok(Some(mut label)) => {
                v.type_hint = "lvm2-pv".to_string();
                if let Some(e) = label.metadata_problem.take() {
                    report.problems.push(format!("{}: LVM: {e}", v.name));
                }
                pvs.push(FoundPv {
                    volume: v.name.clone(),
                    base: v.start,
                    disk: v.disk.clone(),
                    label,
                });
            }
            Ok(None) => {}
            Err(e) => report.problems.push(format!("{}: LVM: {e}", v.name)),
        }
    }
    report.volumes = candidates;
    let scan = lvm::assemble_vgs(&pvs);
    report.problems.extend(scan.problems);
    for lv in scan.lvs {
        report.volumes.push(Volume {
            length: lv.disk.size(),
            name: lv.dm_name,
            kind: VolumeKind::Lvm,
            start: lv.start.unwrap_or(0),
            contiguous: lv.start.is_some(),
            type_hint: "lvm2-lv".to_string(),
            label: None,
            disk: lv.disk,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::MemDisk;

    #[test]
    fn a_blank_disk_is_one_whole_volume() {
        let disk: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("blank", vec![0; 1 << 20]));
        let r = discover_volumes("disk0", disk);
        assert_eq!(r.scheme, Some(Scheme::None));
        assert_eq!(r.volumes.len(), 1);
        assert_eq!(r.volumes[0].kind, VolumeKind::Whole);
        assert_eq!(r.volumes[0].length, 1 << 20);
        assert!(r.problems.is_empty());
    }
}
