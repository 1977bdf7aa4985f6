//! Volume discovery for publishing and file browsing: one call turns the
//! disks of a restore point into the list of things that may hold a
//! filesystem: their partitions (or a whole disk when it has no partition
//! table) and the LVM2 logical volumes found inside them.
//! [`discover_volumes_multi`] looks at all disks together, so a volume group
//! whose PVs sit on several disks is assembled (PVs are matched by the UUID
//! in their label, wherever they are); [`discover_volumes`] is the same over
//! a single disk.
//!
//! Naming follows Linux: partitions are `<disk><N>`, or `<disk>p<N>` when
//! the disk name ends in a digit (MBR logical partitions from 5), LVs
//! `<vg>-<lv>` as device-mapper names them, the whole disk keeps the disk's
//! name. Every volume says which disks its bytes live on
//! ([`Volume::disks`]: one for a partition, one or more for an LV). PVs stay
//! in the list (type hint `lvm2-pv`) so a consumer can show them but knows
//! not to mount them. Nothing here fails: every problem (a bad table entry,
//! damaged LVM metadata, a PV missing from the restore point, an I/O error
//! while probing) lands in the report's `problems` and the rest is still
//! returned. Each problem says whether it leaves data unserved or is only a
//! note ([`VolumeProblem`], chosen where the problem is found). Every
//! volume name returned is a safe single file name and unique
//! ([`crate::safe_name`]): a volume whose name is not is left out with a
//! problem saying why.

use crate::lvm::{self, FoundPv};
use crate::partition::{self, Scheme};
use crate::problem::VolumeProblem;
use crate::safe_name::{escaped, safe_name};
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
    /// Byte offset on the disk (`disks[0]`); for an LV, the offset of its
    /// single contiguous run (see `contiguous`), else 0.
    pub start: u64,
    /// Size in bytes.
    pub length: u64,
    /// True when the volume's bytes are `start..start+length` of the disk
    /// `disks[0]` (a loop device with `--offset/--sizelimit` can serve it);
    /// false for striped, fragmented or multi-disk LVs, which must be
    /// served from `disk`.
    pub contiguous: bool,
    /// The disks of the restore point its bytes live on: the one disk of a
    /// partition or whole disk; for an LV, every disk holding one of its
    /// segments, in the order the LV uses them.
    pub disks: Vec<String>,
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
            .field("disks", &self.disks)
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
    pub problems: Vec<VolumeProblem>,
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

/// Everything [`discover_volumes_multi`] found on the disks of a restore point.
#[derive(Debug, Default)]
pub struct MultiDiscoveryReport {
    /// Each disk, in the order given, with its partition scheme (`None`
    /// when its partition table could not be read).
    pub schemes: Vec<(String, Option<Scheme>)>,
    /// Partitions (or whole disks) disk by disk, then every LV.
    pub volumes: Vec<Volume>,
    pub problems: Vec<VolumeProblem>,
}

impl MultiDiscoveryReport {
    /// The volume named `name`.
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.name == name)
    }
}

/// Finds the partitions of `disk` (named after `disk_name`) and the LVM
/// logical volumes inside them (or inside the whole disk). An LV that needs
/// a PV on another disk is reported in `problems`: use
/// [`discover_volumes_multi`] to assemble VGs that span disks.
pub fn discover_volumes(disk_name: &str, disk: Arc<dyn ReadDisk>) -> DiscoveryReport {
    let multi = discover_volumes_multi(&[(disk_name, disk)]);
    DiscoveryReport {
        scheme: multi.schemes.into_iter().next().and_then(|(_, s)| s),
        volumes: multi.volumes,
        problems: multi.problems,
    }
}

/// Finds the partitions of every disk of `disks` (`(name, bytes)`, names
/// unique) and the LVM logical volumes of all of them together: the PVs of
/// a VG may be partitions or whole disks on any of the disks, and an LV's
/// segments may live on several.
pub fn discover_volumes_multi<S: AsRef<str>>(
    disks: &[(S, Arc<dyn ReadDisk>)],
) -> MultiDiscoveryReport {
    let mut report = MultiDiscoveryReport::default();
    let mut pvs = Vec::new();
    for (name, disk) in disks {
        let name = name.as_ref();
        let (scheme, mut candidates) = disk_candidates(name, disk, &mut report.problems);
        report.schemes.push((name.to_string(), scheme));
        find_pvs(name, &mut candidates, &mut pvs, &mut report.problems);
        report.volumes.extend(candidates);
    }
    let scanned: Vec<String> = disks.iter().map(|(n, _)| n.as_ref().to_string()).collect();
    let scan = lvm::assemble_vgs(&pvs, &scanned);
    report.problems.extend(scan.problems);
    for lv in scan.lvs {
        report.volumes.push(Volume {
            length: lv.disk.size(),
            name: lv.dm_name,
            kind: VolumeKind::Lvm,
            start: lv.start.unwrap_or(0),
            contiguous: lv.start.is_some(),
            disks: lv.disks,
            type_hint: "lvm2-lv".to_string(),
            label: None,
            disk: lv.disk,
        });
    }
    refuse_unsafe_names(&mut report.volumes, &mut report.problems);
    report
}

/// Drops every volume whose name is not a safe file name
/// ([`crate::safe_name`]; LV names were checked where they were built, a
/// partition's name carries the disk's) or repeats an earlier volume's
/// name (a VG and LV named to look like a partition), each with a problem
/// saying why: a volume's name becomes a directory and a file on the host.
fn refuse_unsafe_names(volumes: &mut Vec<Volume>, problems: &mut Vec<VolumeProblem>) {
    let mut seen = std::collections::HashSet::new();
    volumes.retain(|v| {
        if let Err(e) = safe_name(&v.name) {
            problems.push(e.problem(&format!("volume on {}", v.disks.join("+"))));
            return false;
        }
        if !seen.insert(v.name.clone()) {
            problems.push(VolumeProblem::unserved(format!(
                "volume {} on {}: another volume has the same name; refused, not served",
                escaped(&v.name),
                v.disks.join("+")
            )));
            return false;
        }
        true
    });
}

/// The partitions of one disk, or the whole disk when it has no partition
/// table; `None` and no volume when the table cannot be read.
fn disk_candidates(
    disk_name: &str,
    disk: &Arc<dyn ReadDisk>,
    problems: &mut Vec<VolumeProblem>,
) -> (Option<Scheme>, Vec<Volume>) {
    let table = match partition::read_partition_table(disk.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            problems.push(VolumeProblem::unserved(format!(
                "{disk_name}: reading the partition table: {e}"
            )));
            return (None, Vec::new());
        }
    };
    for p in &table.problems {
        problems.push(p.prefixed(&format!("{disk_name}: ")));
    }
    let mut candidates = Vec::new();
    if table.scheme == Scheme::None {
        candidates.push(Volume {
            name: disk_name.to_string(),
            kind: VolumeKind::Whole,
            start: 0,
            length: disk.size(),
            contiguous: true,
            disks: vec![disk_name.to_string()],
            type_hint: "unknown".to_string(),
            label: None,
            disk: disk.clone(),
        });
    }
    for p in &table.partitions {
        let name = partition_name(disk_name, p.number);
        if !p.usable() {
            for why in &p.problems {
                problems.push(why.prefixed(&format!("{name} skipped: ")));
            }
            continue;
        }
        match partition::slice(disk, p, &name) {
            Ok(slice) => candidates.push(Volume {
                name,
                kind: VolumeKind::Partition,
                start: p.start,
                length: p.length,
                contiguous: true,
                disks: vec![disk_name.to_string()],
                type_hint: p.type_hint.clone(),
                label: p.label.clone(),
                disk: slice,
            }),
            Err(e) => problems.push(VolumeProblem::unserved(format!("{name} skipped: {e}"))),
        }
    }
    (Some(table.scheme), candidates)
}

/// Reads the LVM label of each candidate of disk `disk_name`: PVs get the
/// type hint `lvm2-pv` and join `pvs`.
fn find_pvs(
    disk_name: &str,
    candidates: &mut [Volume],
    pvs: &mut Vec<FoundPv>,
    problems: &mut Vec<VolumeProblem>,
) {
    for v in candidates {
        match lvm::read_pv_label(v.disk.as_ref()) {
            Ok(Some(mut label)) => {
                v.type_hint = "lvm2-pv".to_string();
                if let Some(e) = label.metadata_problem.take() {
                    problems.push(VolumeProblem::unserved(format!("{}: LVM: {e}", v.name)));
                }
                pvs.push(FoundPv {
                    disk_name: disk_name.to_string(),
                    volume: v.name.clone(),
                    base: v.start,
                    disk: v.disk.clone(),
                    label,
                });
            }
            Ok(None) => {}
            Err(e) => problems.push(VolumeProblem::unserved(format!("{}: LVM: {e}", v.name))),
        }
    }
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
        assert_eq!(r.volumes[0].disks, ["disk0"]);
    }

    #[test]
    fn each_disk_of_a_restore_point_is_listed_in_order() {
        let a: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("a", vec![0; 1 << 20]));
        let b: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("b", vec![0; 2 << 20]));
        let r = discover_volumes_multi(&[("disk0", a), ("disk1", b)]);
        let names: Vec<_> = r.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["disk0", "disk1"]);
        assert_eq!(r.volume("disk1").unwrap().disks, ["disk1"]);
        assert_eq!(r.volume("disk1").unwrap().length, 2 << 20);
        assert_eq!(
            r.schemes,
            [
                ("disk0".to_string(), Some(Scheme::None)),
                ("disk1".to_string(), Some(Scheme::None))
            ]
        );
        assert!(r.problems.is_empty());
    }

    #[test]
    fn a_disk_name_that_is_no_file_name_serves_no_volume() {
        let a: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("a", vec![0; 1 << 20]));
        let b: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("b", vec![0; 1 << 20]));
        let c: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("c", vec![0; 1 << 20]));
        let r = discover_volumes_multi(&[("../x", a), ("disk0", b), ("disk0", c)]);
        let names: Vec<_> = r.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["disk0"]);
        let all = crate::problem::join(&r.problems, "\n");
        assert!(
            all.contains("\"../x\"") && all.contains("contains `/`"),
            "{all}"
        );
        assert!(all.contains("another volume has the same name"), "{all}");
        assert!(r.problems.iter().all(|p| p.kind.leaves_data_unserved()));
    }
}
