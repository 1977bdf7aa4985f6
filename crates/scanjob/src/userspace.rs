//! Scanning one restore point without publishing it (`lifeboat scan
//! --no-publish`, and the fallback when publishing is impossible: no root,
//! no /dev/fuse, no loop devices): files are read from the repository in
//! userspace through `lifeboat-browse` and scanned with YARA as items
//! (ClamAV needs files on disk, so it is not used: the report names it
//! as not scanned, so nothing found is `unproven`, never `clean`).
//!
//! As with publishing, what cannot be read never counts as clean: a volume
//! whose filesystem cannot be probed or opened, a directory that cannot be
//! listed, a file that cannot be read, and every volume discovery problem
//! that leaves data unread are listed as unreadable. Volumes without a
//! known filesystem, swap, LVM physical volumes and discovery problems of
//! kind [`ProblemKind::Note`] (an empty partition entry, the backup GPT in
//! use, a VG renamed for a clash) are only mentioned as notes.

use crate::point::{Engines, PointScan};
use anyhow::Context;
use lifeboat_browse::{
    open_restore_point, EntryKind, Filesystem, FsType, ProblemKind, VolumeProblem,
};
use lifeboat_repo::{Manifest, Repository};
use lifeboat_scan::{Scan, ScanCache, Unreadable, YaraScanner};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Scans every file of every filesystem of `manifest` with `yara`.
pub fn scan_point_userspace(
    repo: &Repository,
    manifest: &Manifest,
    yara: &YaraScanner,
    engines: &Engines,
    cache: &mut ScanCache,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<PointScan> {
    let name = manifest.name();
    let volumes = open_restore_point(repo, manifest)
        .with_context(|| format!("opening the disks of {name}"))?;
    let mut scan = Scan::new(&name, None, Some(yara), cache)?.with_cancel(cancel.clone());
    engines.add_skipped(&mut scan);
    let mut unreadable = Vec::new();
    let mut notes = Vec::new();
    let volume_problem = |v: &lifeboat_browse::VolumeInfo, reason: String| Unreadable {
        disk: v.disk.clone(),
        volume: v.name.clone(),
        path: "/".to_string(),
        reason,
    };
    for v in volumes.volumes() {
        if v.type_hint == "lvm2-pv" {
            continue;
        }
        match (v.fs, &v.probe_error) {
            (_, Some(e)) => unreadable.push(volume_problem(&v, format!("probing: {e}"))),
            (None, None) => notes.push(format!("{}: no known filesystem, not scanned", v.name)),
            (Some(FsType::Swap), None) => notes.push(format!("{} is swap, not scanned", v.name)),
            (Some(_), None) => {
                let fs = volumes
                    .select(Some(&v.disk), Some(&v.name))
                    .and_then(|sel| sel.open());
                match fs {
                    Ok(fs) => {
                        let mut walk = Walk {
                            fs: fs.as_ref(),
                            disk: &v.disk,
                            volume: &v.name,
                            scan: &mut scan,
                            unreadable: &mut unreadable,
                        };
                        walk.dir("/")
                            .with_context(|| format!("scanning {name} {}", v.name))?;
                    }
                    Err(e) => unreadable.push(volume_problem(&v, format!("opening: {e}"))),
                }
            }
        }
    }
    add_discovery_problems(volumes.problems(), &mut unreadable, &mut notes);
    let mut report = scan.finish();
    report.unreadable.extend(unreadable);
    report.finish();
    Ok(PointScan {
        report,
        notes,
        not_recorded: None,
        unpublishing: None,
    })
}

/// Sorts the problems of volume discovery by kind: data left unread goes
/// to `unreadable`, the rest to `notes`.
fn add_discovery_problems(
    problems: &[VolumeProblem],
    unreadable: &mut Vec<Unreadable>,
    notes: &mut Vec<String>,
) {
    for p in problems {
        match p.kind {
            ProblemKind::Note => notes.push(p.to_string()),
            // Nothing is mounted here, but a volume not mounted is unread.
            ProblemKind::Unserved | ProblemKind::NotMounted => unreadable.push(Unreadable {
                disk: String::new(),
                volume: String::new(),
                path: String::new(),
                reason: format!("not read: {p}"),
            }),
        }
    }
}

/// A depth-first walk of one filesystem feeding the scan.
struct Walk<'a, 's> {
    fs: &'a dyn Filesystem,
    disk: &'a str,
    volume: &'a str,
    scan: &'a mut Scan<'s>,
    unreadable: &'a mut Vec<Unreadable>,
}

impl Walk<'_, '_> {
    fn problem(&mut self, path: &str, reason: String) {
        self.unreadable.push(Unreadable {
            disk: self.disk.to_string(),
            volume: self.volume.to_string(),
            path: path.to_string(),
            reason,
        });
    }

    fn dir(&mut self, path: &str) -> lifeboat_scan::Result<()> {
        let entries = match self.fs.list(path) {
            Ok(e) => e,
            Err(e) => {
                self.problem(path, e.to_string());
                return Ok(());
            }
        };
        for e in entries {
            match e.kind {
                EntryKind::Dir => self.dir(&e.path)?,
                EntryKind::File => match self.fs.read_file(&e.path) {
                    Ok(mut r) => {
                        self.scan
                            .scan_item(self.disk, self.volume, &e.path, &mut r, None)?
                    }
                    Err(err) => self.problem(&e.path, err.to_string()),
                },
                EntryKind::Symlink | EntryKind::Other => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_problems_are_sorted_by_kind() {
        let problems = [
            VolumeProblem::unserved("disk0: reading the partition table: I/O error"),
            VolumeProblem::note("disk0p6 skipped: partition 6 is empty"),
            VolumeProblem::new(ProblemKind::NotMounted, "disk0p2: not mounted: bad fs"),
            VolumeProblem::note("LVM VG vg0 (UUID abc): another VG has the same name"),
        ];
        let (mut unreadable, mut notes) = (Vec::new(), Vec::new());
        add_discovery_problems(&problems, &mut unreadable, &mut notes);
        let reasons: Vec<_> = unreadable.iter().map(|u| u.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "not read: disk0: reading the partition table: I/O error",
                "not read: disk0p2: not mounted: bad fs"
            ]
        );
        assert_eq!(
            notes,
            [
                "disk0p6 skipped: partition 6 is empty",
                "LVM VG vg0 (UUID abc): another VG has the same name"
            ]
        );
    }
}
