//! LVM2 decoded in userspace (there is no device-mapper on the targets):
//! PV labels and metadata areas ([`label`]), the text metadata format
//! ([`text`]), the VG model ([`metadata`]) and the disks that assemble an LV
//! from its segments ([`disks`]).
//!
//! Assembly ([`assemble_vgs`]): every PV found on a disk brings its current
//! metadata text; PVs are grouped by VG UUID and the copy with the highest
//! `seqno` wins. Each visible LV becomes one [`ReadDisk`]: a linear segment
//! is a [`SliceDisk`] of its PV at `pe_start + extent * extent_size`, a
//! striped segment a [`StripedDisk`] of such slices, several segments a
//! [`ConcatDisk`]. Only PVs found on the same disk are used: an LV that
//! needs a PV from elsewhere is refused with an error saying so. Every
//! problem is a message naming the VG (and LV) and never stops the others.

pub mod disks;
pub mod label;
pub mod metadata;
pub mod text;

pub use disks::{ConcatDisk, StripedDisk};
pub use label::{read_pv_label, PvLabel};
pub use metadata::{parse_vg, LogicalVolume, PhysicalVolume, Segment, VolumeGroup};

use lifeboat_vdisk::{Error, ReadDisk, Result, SliceDisk};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A PV found on a disk.
pub struct FoundPv {
    /// The volume it was found on (`disk0p2`, or the disk name).
    pub volume: String,
    /// Byte offset of the PV on the disk (the partition start).
    pub base: u64,
    /// The PV's bytes.
    pub disk: Arc<dyn ReadDisk>,
    pub label: PvLabel,
}

/// One assembled logical volume.
pub struct LvDisk {
    pub vg: String,
    pub lv: String,
    /// The device-mapper name: `<vg>-<lv>` with `-` inside names doubled.
    pub dm_name: String,
    pub disk: Arc<dyn ReadDisk>,
    /// Byte offset on the scanned disk when the LV is one contiguous run
    /// (a loop device with an offset can then serve it directly).
    pub start: Option<u64>,
}

/// What [`assemble_vgs`] found.
#[derive(Default)]
pub struct VgScan {
    pub lvs: Vec<LvDisk>,
    pub problems: Vec<String>,
}

/// The device-mapper name of `lv` in `vg`.
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// Groups `pvs` by VG and assembles every visible LV.
pub fn assemble_vgs(pvs: &[FoundPv]) -> VgScan {
    let mut scan = VgScan::default();
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
            Err(e) => scan.problems.push(format!("PV on {}: {e}", pv.volume)),
        }
    }
    for vg in vgs.values() {
        for lv in vg.lvs.iter().filter(|l| l.visible) {
            match build_lv(vg, lv, pvs) {
                Ok(built) => scan.lvs.push(built),
                Err(e) => scan.problems.push(e.to_string()),
            }
        }
    }
    scan
}

/// Builds the disk of one LV from the PVs found.
fn build_lv(vg: &VolumeGroup, lv: &LogicalVolume, pvs: &[FoundPv]) -> Result<LvDisk> {
    let what = format!("LVM VG {} LV {}", vg.name, lv.name);
    let segments = lv
        .segments
        .as_ref()
        .map_err(|why| Error::corrupt(&what, why))?;
    let name = dm_name(&vg.name, &lv.name);
    let mut parts: Vec<Arc<dyn ReadDisk>> = Vec::new();
    // Physical runs (offset on the scanned disk, length) of linear segments.
    let mut runs: Vec<Option<(u64, u64)>> = Vec::new();
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
            let found = pvs
                .iter()
                .find(|p| p.label.uuid == pv_meta.id)
                .ok_or_else(|| {
                    Error::unsupported(
                        &what,
                        format!(
                            "needs PV {} (UUID {}) which is not on this disk \
                         (VGs spanning several disks are not supported yet)",
                            pv_meta.name, pv_meta.id
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
            run = Some((found.base + start, area_len));
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
        start,
    })
}

/// The start of `runs` when they are all linear and follow each other.
fn contiguous_start(runs: &[Option<(u64, u64)>]) -> Option<u64> {
    let (first, _) = (*runs.first()?)?;
    let mut next = first;
    for r in runs {
        let (s, l) = (*r)?;
        if s != next {
            return None;
        }
        next = s + l;
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
    fn contiguity_needs_adjacent_linear_runs() {
        assert_eq!(contiguous_start(&[Some((10, 5)), Some((15, 5))]), Some(10));
        assert_eq!(contiguous_start(&[Some((10, 5)), Some((16, 5))]), None);
        assert_eq!(contiguous_start(&[Some((10, 5)), None]), None);
    }
}
