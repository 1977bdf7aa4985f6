//! LVM2 decoded in userspace (there is no device-mapper on the targets):
//! PV labels and metadata areas ([`label`]), the text metadata format
//! ([`text`]), the VG model ([`metadata`]) and the disks that assemble an LV
//! from its segments ([`disks`]).
//!
//! Assembly ([`assemble_vgs`]): every PV found on any disk of a restore
//! point brings its current metadata text; PVs are grouped by VG UUID and
//! the copy with the highest `seqno` wins. The VG metadata names its PVs by
//! UUID, which is matched against the UUID in each PV label, wherever the
//! PV was found (a partition or a whole disk, on any of the scanned disks).
//! Each visible LV becomes one [`ReadDisk`]: a linear segment is a
//! [`SliceDisk`] of its PV at `pe_start + extent * extent_size`, a striped
//! segment a [`StripedDisk`] of such slices, several segments a
//! [`ConcatDisk`]; segments and stripes may live on different disks. An LV
//! that needs a PV found on none of the scanned disks is refused with a
//! message naming the VG, the LV and the missing PV UUID; the LVs of the
//! same VG that live on present PVs are still assembled. The same PV UUID
//! on two volumes (a cloned disk) is reported and the first one is used.
//! Two VGs of one name (different UUIDs) get their LVs' names suffixed
//! with the VG UUID's first characters so every name stays unique. Every
//! problem is a message naming the VG (and LV) and never stops the others;
//! a VG renamed for a clash is a note, every other problem leaves data
//! unserved ([`crate::problem::ProblemKind`]). VG and LV names are the
//! guest's: an LV whose `<vg>-<lv>` name is not a safe file name
//! ([`crate::safe_name`]: `/`, `..`, control characters...) is refused
//! with a problem saying why, and the other LVs are still served.

pub mod disks;
pub mod label;
pub mod metadata;
pub mod text;

pub use disks::{ConcatDisk, StripedDisk};
pub use label::{read_pv_label, PvLabel};
pub use metadata::{parse_vg, LogicalVolume, PhysicalVolume, Segment, VolumeGroup};

use crate::problem::VolumeProblem;
use crate::safe_name::{escaped, safe_name};
use lifeboat_vdisk::{Error, ReadDisk, Result, SliceDisk};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A PV found on a disk.
pub struct FoundPv {
    /// The restore-point disk it was found on (`disk0`).
    pub disk_name: String,
    /// The volume it was found on (`disk0p2`, or the disk name).
    pub volume: String,
    /// Byte offset of the PV on its disk (the partition start).
    pub base: u64,
    /// The PV's bytes.
    pub disk: Arc<dyn ReadDisk>,
    pub label: PvLabel,
}

/// One assembled logical volume.
pub struct LvDisk {
    pub vg: String,
    pub lv: String,
    /// The device-mapper name: `<vg>-<lv>` with `-` inside names doubled
    /// (suffixed when two VGs share a name, see the module doc).
    pub dm_name: String,
    pub disk: Arc<dyn ReadDisk>,
    /// The disks its bytes live on, in the order its segments first use them.
    pub disks: Vec<String>,
    /// Byte offset on `disks[0]` when the LV is one contiguous run of one
    /// disk (a loop device with an offset can then serve it directly).
    pub start: Option<u64>,
}

/// What [`assemble_vgs`] found.
#[derive(Default)]
pub struct VgScan {
    pub lvs: Vec<LvDisk>,
    pub problems: Vec<VolumeProblem>,
}

/// The device-mapper name of `lv` in `vg`.
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// A bare 32-character UUID written the way LVM shows it
/// (`6-4-4-4-4-4-6`); anything else is returned as it is.
pub fn display_uuid(bare: &str) -> String {
    if bare.len() != 32 || !bare.is_ascii() {
        return bare.to_string();
    }
    let mut out = String::with_capacity(38);
    let mut at = 0;
    for (i, n) in [6usize, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(&bare[at..at + n]);
        at += n;
    }
    out
}

/// Where the PVs of the scan are: looked up by PV UUID.
struct PvIndex<'a> {
    by_uuid: BTreeMap<&'a str, &'a FoundPv>,
    /// "this disk" or "any disk of the restore point (disk0, disk1)".
    scope: String,
}

/// Groups `pvs` by VG and assembles every visible LV. `scanned` names the
/// disks that were searched for PVs (it words the message about a missing
/// PV: "not on this disk" for one, the list for several).
pub fn assemble_vgs(pvs: &[FoundPv], scanned: &[String]) -> VgScan {
    let mut scan = VgScan::default();
    let mut index = PvIndex {
        by_uuid: BTreeMap::new(),
        scope: match scanned {
            [_] => "this disk".to_string(),
            _ => format!("any disk of the restore point ({})", scanned.join(", ")),
        },
    };
    for pv in pvs {
        match index.by_uuid.get(pv.label.uuid.as_str()) {
            // The other copy may differ from the one served.
            Some(first) => scan.problems.push(VolumeProblem::unserved(format!(
                "LVM PV {} is on both {} and {} (a cloned disk?); using {}",
                display_uuid(&pv.label.uuid),
                first.volume,
                pv.volume,
                first.volume
            ))),
            None => {
                index.by_uuid.insert(pv.label.uuid.as_str(), pv);
            }
        }
    }
    let mut vgs: BTreeMap<String, VolumeGroup> = BTreeMap::new();
    for pv in pvs {
        let Some(text) = &pv.label.metadata else {
            continue;
        };
        match parse_vg(text) {
            Ok(vg) => {
                let key = if vg.id.is_empty() {
                    vg.name.clone()
                } else {
                    vg.id.clone()
                };
                match vgs.get(&key) {
                    Some(old) if old.seqno >= vg.seqno => {}
                    _ => {
                        vgs.insert(key, vg);
                    }
                }
            }
            Err(e) => scan
                .problems
                .push(VolumeProblem::unserved(format!("PV on {}: {e}", pv.volume))),
        }
    }
    let mut names_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for vg in vgs.values() {
        *names_seen.entry(vg.name.as_str()).or_default() += 1;
    }
    for vg in vgs.values() {
        let shared_name = names_seen.get(vg.name.as_str()).is_some_and(|&n| n > 1);
        let suffix = if shared_name {
            let short: String = vg.id.chars().take(6).collect();
            // Every LV is still served, under a suffixed name.
            scan.problems.push(VolumeProblem::note(format!(
                "LVM VG {} (UUID {}): another VG has the same name; its LVs are named \
                 <vg>-<lv>_{short}",
                vg.name,
                display_uuid(&vg.id)
            )));
            format!("_{short}")
        } else {
            String::new()
        };
        for pv in &vg.pvs {
            if !index.by_uuid.contains_key(pv.id.as_str()) {
                scan.problems.push(VolumeProblem::unserved(format!(
                    "LVM VG {}: PV {} (UUID {}) is missing: not on {}; LVs using it are not served",
                    vg.name,
                    pv.name,
                    display_uuid(&pv.id),
                    index.scope
                )));
            }
        }
        for lv in vg.lvs.iter().filter(|l| l.visible) {
            match build_lv(vg, lv, &index) {
                Ok(mut built) => {
                    built.dm_name.push_str(&suffix);
                    // The name becomes a directory and a file name on the host.
                    match safe_name(&built.dm_name) {
                        Ok(_) => scan.lvs.push(built),
                        Err(e) => scan.problems.push(e.problem(&format!(
                            "LVM VG {} LV {}",
                            escaped(&vg.name),
                            escaped(&lv.name)
                        ))),
                    }
                }
                Err(e) => scan.problems.push(VolumeProblem::unserved(e.to_string())),
            }
        }
    }
    scan
}

/// A linear piece of an LV: (disk name, byte offset on that disk, length).
type Run<'a> = (&'a str, u64, u64);

/// Builds the disk of one LV from the PVs found.
fn build_lv(vg: &VolumeGroup, lv: &LogicalVolume, pvs: &PvIndex<'_>) -> Result<LvDisk> {
    let what = format!("LVM VG {} LV {}", vg.name, lv.name);
    let segments = lv
        .segments
        .as_ref()
        .map_err(|why| Error::corrupt(&what, why))?;
    let name = dm_name(&vg.name, &lv.name);
    let mut parts: Vec<Arc<dyn ReadDisk>> = Vec::new();
    let mut disks: Vec<String> = Vec::new();
    // Physical runs of linear segments (None for striped ones).
    let mut runs: Vec<Option<Run<'_>>> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let n = seg.stripes.len() as u64;
        let area_extents = seg.extent_count / n.max(1);
        let area_len = area_extents
            .checked_mul(vg.extent_size)
            .ok_or_else(|| Error::corrupt(&what, "segment size overflows"))?;
        let mut slices: Vec<Arc<dyn ReadDisk>> = Vec::new();
        let mut run = None;
        for area in &seg.stripes {
            let pv_meta = vg.pv(&area.pv).ok_or_else(|| {
                Error::corrupt(
                    &what,
                    format!("segment {} uses unknown PV {:?}", i + 1, area.pv),
                )
            })?;
            let found = *pvs.by_uuid.get(pv_meta.id.as_str()).ok_or_else(|| {
                Error::invalid(
                    &what,
                    format!(
                        "needs PV {} (UUID {}), which is missing: not on {}",
                        pv_meta.name,
                        display_uuid(&pv_meta.id),
                        pvs.scope
                    ),
                )
            })?;
            let end_extent = area.start_extent.checked_add(area_extents);
            if end_extent.is_none_or(|e| e > pv_meta.pe_count) {
                return Err(Error::corrupt(
                    &what,
                    format!(
                        "segment {} extents {}..+{area_extents} lie outside PV {} ({} extents)",
                        i + 1,
                        area.start_extent,
                        pv_meta.name,
                        pv_meta.pe_count
                    ),
                ));
            }
            let start = area
                .start_extent
                .checked_mul(vg.extent_size)
                .and_then(|o| o.checked_add(pv_meta.pe_start))
                .filter(|s| {
                    s.checked_add(area_len)
                        .is_some_and(|e| e <= found.disk.size())
                })
                .ok_or_else(|| {
                    Error::corrupt(
                        &what,
                        format!(
                            "segment {} on PV {} reaches past the end of {} ({} bytes)",
                            i + 1,
                            pv_meta.name,
                            found.volume,
                            found.disk.size()
                        ),
                    )
                })?;
            if !disks.contains(&found.disk_name) {
                disks.push(found.disk_name.clone());
            }
            run = found
                .base
                .checked_add(start)
                .map(|s| (found.disk_name.as_str(), s, area_len));
            slices.push(Arc::new(SliceDisk::new(
                found.disk.clone(),
                start,
                area_len,
                &format!("{name} segment {} on {}", i + 1, found.volume),
            )?));
        }
        if slices.len() == 1 {
            runs.push(run);
            parts.extend(slices);
        } else {
            runs.push(None);
            parts.push(Arc::new(StripedDisk::new(
                &format!("{name} segment {}", i + 1),
                slices,
                seg.stripe_size,
            )?));
        }
    }
    let start = contiguous_start(&runs);
    let disk: Arc<dyn ReadDisk> = if parts.len() == 1 {
        parts.remove(0)
    } else {
        Arc::new(ConcatDisk::new(&format!("LV {name}"), parts)?)
    };
    Ok(LvDisk {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        dm_name: name,
        disk,
        disks,
        start,
    })
}

/// The start of `runs` when they are all linear, on one disk, and follow
/// each other.
fn contiguous_start(runs: &[Option<Run<'_>>]) -> Option<u64> {
    let (disk, first, _) = (*runs.first()?)?;
    let mut next = first;
    for r in runs {
        let (d, s, l) = (*r)?;
        if d != disk || s != next {
            return None;
        }
        next = s.checked_add(l)?;
    }
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_names_double_hyphens() {
        assert_eq!(dm_name("vg0", "root"), "vg0-root");
        assert_eq!(dm_name("my-vg", "lv-1"), "my--vg-lv--1");
    }

    #[test]
    fn contiguity_needs_adjacent_linear_runs_on_one_disk() {
        let a = "disk0";
        assert_eq!(
            contiguous_start(&[Some((a, 10, 5)), Some((a, 15, 5))]),
            Some(10)
        );
        assert_eq!(
            contiguous_start(&[Some((a, 10, 5)), Some((a, 16, 5))]),
            None
        );
        assert_eq!(contiguous_start(&[Some((a, 10, 5)), None]), None);
        assert_eq!(
            contiguous_start(&[Some((a, 10, 5)), Some(("disk1", 15, 5))]),
            None
        );
    }

    #[test]
    fn uuids_are_shown_with_hyphens() {
        assert_eq!(
            display_uuid("z9tGrjmcfJet0ZyRZ1ucNfEGeYUVj9E4"),
            "z9tGrj-mcfJ-et0Z-yRZ1-ucNf-EGeY-UVj9E4"
        );
        assert_eq!(display_uuid("short"), "short");
    }
}
