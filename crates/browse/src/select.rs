//! From a restore point to one volume: every disk is opened from the
//! repository behind a `CachedDisk` (block = the disk's chunk size, since a
//! chunk read means authenticate + decompress), the partitions of every
//! disk and the LVM logical volumes are discovered together (a volume group
//! may span disks), and [`RestorePointVolumes::select`]
//! picks one by `--disk` / `--volume`. An ext2/3/4 volume whose journal
//! needs replay is read through its replayed view
//! (`lifeboat_formats::ext4_journal`), as publish and the scan read it;
//! what could not be replayed is among [`RestorePointVolumes::problems`]. With one disk holding one
//! filesystem, nothing needs choosing; otherwise the error lists the
//! choices.

use crate::{detect, probe, Error, Filesystem, FsType, Result};
use lifeboat_formats::ext4_journal::replay_volumes;
use lifeboat_formats::volumes::{discover_volumes_multi, MultiDiscoveryReport, Volume};
use lifeboat_formats::VolumeProblem;
use lifeboat_repo::{Manifest, Repository};
use lifeboat_vdisk::ReadDisk;
use serde::Serialize;
use std::sync::Arc;

/// Cache per disk: at least this many bytes, and at least 8 chunks.
const CACHE_BYTES: u64 = 64 << 20;

/// What the volume list shows.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    /// The disk the volume lives on; `disk0+disk1` for an LV spanning disks.
    pub disk: String,
    pub name: String,
    pub size: u64,
    pub type_hint: String,
    pub label: Option<String>,
    /// The filesystem found by magic, if any.
    pub fs: Option<FsType>,
    /// Why probing failed (an unreadable chunk), if it did.
    pub probe_error: Option<String>,
}

/// The disks and volumes of one restore point.
pub struct RestorePointVolumes {
    restore_point: String,
    disk_names: Vec<String>,
    report: MultiDiscoveryReport,
}

/// One chosen volume.
pub struct SelectedVolume {
    /// As in [`VolumeInfo::disk`].
    pub disk: String,
    pub volume: Volume,
}

impl SelectedVolume {
    /// Opens its filesystem; a volume with no known filesystem is an error
    /// naming the volume.
    pub fn open(&self) -> Result<Box<dyn Filesystem>> {
        probe(&self.volume.name, self.volume.disk.clone())?.ok_or_else(|| Error::NoFilesystem {
            volume: self.volume.name.clone(),
            type_hint: self.volume.type_hint.clone(),
        })
    }
}

/// Opens every disk of `manifest` and discovers its volumes.
pub fn open_restore_point(repo: &Repository, manifest: &Manifest) -> Result<RestorePointVolumes> {
    let mut disks: Vec<(String, Arc<dyn ReadDisk>)> = Vec::new();
    for entry in &manifest.disks {
        let cached: Arc<dyn ReadDisk> = Arc::new(
            repo.open_disk(manifest, &entry.name)?
                .into_chunk_cache(CACHE_BYTES, 8)?,
        );
        disks.push((entry.name.clone(), cached));
    }
    let mut report = discover_volumes_multi(&disks);
    replay_volumes(&mut report.volumes, &mut report.problems);
    Ok(RestorePointVolumes {
        restore_point: manifest.name(),
        disk_names: disks.iter().map(|(n, _)| n.clone()).collect(),
        report,
    })
}

impl RestorePointVolumes {
    /// Problems discovery reported (bad partition entries, damaged LVM),
    /// each saying whether it leaves data unread or is only a note.
    pub fn problems(&self) -> &[VolumeProblem] {
        &self.report.problems
    }

    /// Every volume of every disk, with the filesystem found on it.
    pub fn volumes(&self) -> Vec<VolumeInfo> {
        self.report
            .volumes
            .iter()
            .map(|v| {
                let (fs, probe_error) = fs_of(v);
                VolumeInfo {
                    disk: v.disks.join("+"),
                    name: v.name.clone(),
                    size: v.length,
                    type_hint: v.type_hint.clone(),
                    label: v.label.clone(),
                    fs,
                    probe_error,
                }
            })
            .collect()
    }

    /// Picks a volume. `disk` limits the choice to one disk, `volume` names
    /// the volume; without them the single volume holding a filesystem is
    /// chosen, and anything else is an error listing the choices.
    pub fn select(&self, disk: Option<&str>, volume: Option<&str>) -> Result<SelectedVolume> {
        let rp = &self.restore_point;
        if let Some(d) = disk {
            if !self.disk_names.iter().any(|n| n == d) {
                return Err(Error::Select(format!(
                    "{rp} has no disk {d:?}; its disks: {}",
                    self.disk_names.join(", ")
                )));
            }
        }
        // A volume spanning disks (an LV) is a candidate for each of them.
        let candidates: Vec<&Volume> = self
            .report
            .volumes
            .iter()
            .filter(|v| disk.is_none_or(|d| v.disks.iter().any(|x| x == d)))
            .collect();
        let names = |list: &[&Volume]| {
            list.iter()
                .map(|v| match v.disks.as_slice() {
                    // Volume names are unique across the restore point;
                    // naming the disk too only helps for partitions.
                    [one] if v.type_hint != "lvm2-lv" => {
                        format!("--disk {one} --volume {}", v.name)
                    }
                    _ => format!("--volume {}", v.name),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let pick = |v: &Volume| SelectedVolume {
            disk: v.disks.join("+"),
            volume: v.clone(),
        };
        if let Some(want) = volume {
            return candidates
                .iter()
                .find(|v| v.name == want)
                .map(|v| pick(v))
                .ok_or_else(|| {
                    Error::Select(format!(
                        "{rp} has no volume {want:?}; choices: {}",
                        names(&candidates)
                    ))
                });
        }
        let with_fs: Vec<&Volume> = candidates
            .iter()
            .filter(|v| matches!(fs_of(v).0, Some(fs) if fs != FsType::Swap))
            .copied()
            .collect();
        match (with_fs.as_slice(), candidates.as_slice()) {
            ([one], _) => Ok(pick(one)),
            ([], [only]) => Ok(pick(only)),
            ([], []) => Err(Error::Select(format!("{rp} has no volumes"))),
            ([], all) => Err(Error::Select(format!(
                "{rp}: no known filesystem found; choose a volume: {}",
                names(all)
            ))),
            (many, _) => Err(Error::Select(format!(
                "{rp} has {} filesystems: choose one with {}",
                many.len(),
                names(many)
            ))),
        }
    }
}

fn fs_of(v: &Volume) -> (Option<FsType>, Option<String>) {
    if v.type_hint == "lvm2-pv" {
        return (None, None);
    }
    match detect(v.disk.as_ref()) {
        Ok(fs) => (fs, None),
        Err(e) => (None, Some(e.to_string())),
    }
}
