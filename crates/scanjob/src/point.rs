//! Scanning one restore point for `lifeboat scan`: publish it (all disks)
//! under a private mount root, run the engines as a tree scan over every
//! mounted volume, then always unpublish (on success, on error, on Ctrl-C:
//! a guard does it when dropped; a SIGKILLed scan leaves a session that
//! `lifeboat unpublish --all --state-dir ...` removes). After a scan the
//! unpublishing runs in a thread while the caller saves the scan cache;
//! the caller waits for it before going on ([`Unpublishing`]).
//!
//! What publishing could not serve never counts as clean: a filesystem that
//! did not mount and every problem of volume discovery that leaves data
//! unserved (unreadable partition table, skipped partition, LVM metadata,
//! missing PV...) are added to the report as unreadable, so the state is at
//! best `incomplete`. Problems that serve everything all the same (the
//! backup GPT used in place of a damaged primary, an empty partition entry,
//! a VG renamed for a clash), volumes without any filesystem and swap are
//! only mentioned as notes. Which is which is the problem's
//! [`ProblemKind`], chosen where the problem was found; messages are never
//! matched.
//!
//! Dedup-aware re-scan without reading: a volume served by a loop device at
//! an offset into a restore-point disk file (partitions, linear LVs on one
//! disk) holding ext2/3/4 or XFS (whose FIEMAP gives device addresses) is
//! scanned with its place on that disk and the disk's chunk digests
//! (`Scan::scan_tree_mapped`), so unchanged files are skipped unread; an
//! ext2/3/4 volume is also handed its bytes (the window of the disk file),
//! so its files are listed and mapped in userspace
//! (`lifeboat_scan::ext4list`) rather than through the kernel. An ext4
//! volume of such a window whose journal needed replay is published from
//! a file of its own, replayed (`lifeboat_formats::ext4_journal`); it keeps
//! its place on the disk (`LoopEntry::replayed_from`), the lister reads
//! the replayed file, and the scan redoes the same replay of the disk
//! file's window to learn which bytes the journal replaced: a file with an
//! extent there gets no extent key and is read. Other volumes (btrfs,
//! whose FIEMAP gives btrfs logical addresses; FUSE filesystems; LVs
//! served from a file of their own) have their files read.
//! Each such disk also gets a *base*: the same disk (name, chunk size and
//! size) on the newest older restore point of the VM, whose chunk digests
//! let files changed since then be scanned only around their changed chunks
//! when the YARA rules are local (see `lifeboat_scan::locality`). No base
//! (first backup, index not loaded) just means changed files are read whole.

use anyhow::Context;
use lifeboat_formats::ext4_journal::replay;
use lifeboat_publish::LoopEntry;
use lifeboat_publish::{ProblemKind, PublishOptions, SessionState};
use lifeboat_repo::{DiskIndex, Manifest, Repository};
use lifeboat_scan::{
    ClamAvScanner, DiskChunks, Engine, LoadingCache, Scan, ScanReport, Unreadable, VolumeBytes,
    YaraScanner,
};
use lifeboat_vdisk::{FileDisk, ReadDisk, SliceDisk};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The engines chosen for a scan.
pub struct Engines {
    /// ClamAV, only when its signature database is usable.
    pub clamav: Option<ClamAvScanner>,
    /// When ClamAV does not scan: its version and why (named in the
    /// report, which is then at best `unproven`).
    pub clamav_skipped: Option<(String, String)>,
    pub yara: Option<YaraScanner>,
}

impl Engines {
    /// Names the engines that do not scan in `scan`'s report.
    pub fn add_skipped(&self, scan: &mut Scan<'_>) {
        if let Some((version, why)) = &self.clamav_skipped {
            scan.not_scanned(Engine::Clamav, version, why);
        }
    }
}

/// Where and how restore points are published for scanning.
pub struct PublishPlace {
    pub repo: PathBuf,
    pub mount_root: PathBuf,
    pub state_dir: PathBuf,
    /// The publisher's block store (`PublishOptions::block_store`).
    pub block_store: Option<PathBuf>,
    /// The group that may read the published restore point (`PublishOptions::group`).
    pub group: Option<u32>,
}

/// The scan of one restore point.
pub struct PointScan {
    /// The report, naming the engines and their signatures.
    pub report: ScanReport,
    /// What was not scanned without being a problem (no filesystem, swap).
    pub notes: Vec<String>,
    /// Why the outcome could not be recorded in the restore point's
    /// manifest (a repository this user may not write), when it could not.
    pub not_recorded: Option<String>,
    /// The unpublishing of the scanned session, still running: the caller
    /// saves the scan cache meanwhile, then waits for it.
    pub unpublishing: Option<Unpublishing>,
}

/// The JSON of one scanned restore point (`lifeboat scan --json`, an
/// agent's scan report): the scan report (with its engines) plus notes.
#[derive(Debug, serde::Serialize)]
pub struct PointOut {
    #[serde(flatten)]
    pub report: ScanReport,
    pub notes: Vec<String>,
}

impl From<PointScan> for PointOut {
    fn from(p: PointScan) -> Self {
        PointOut {
            report: p.report,
            notes: p.notes,
        }
    }
}

/// Unpublishes its session when dropped, unless [`Unpublish::start`] took it.
struct Unpublish {
    state_dir: PathBuf,
    session: Option<String>,
}

impl Unpublish {
    /// Starts unpublishing in a thread of its own.
    fn start(mut self) -> Unpublishing {
        let state_dir = self.state_dir.clone();
        let session = self.session.take();
        Unpublishing {
            thread: Some(std::thread::spawn(move || match session {
                Some(s) => lifeboat_publish::unpublish(&state_dir, &s)
                    .map(|_| ())
                    .with_context(|| unpublish_advice(&state_dir, &s)),
                None => Ok(()),
            })),
        }
    }
}

/// An unpublishing under way (see [`Unpublish::start`]); dropping it waits
/// for the end and prints a failure.
pub struct Unpublishing {
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Unpublishing {
    /// Waits for the unpublishing to end; its failure is the error.
    pub fn wait(mut self) -> anyhow::Result<()> {
        self.join()
    }

    fn join(&mut self) -> anyhow::Result<()> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the unpublishing thread panicked"),
        }
    }
}

impl Drop for Unpublishing {
    fn drop(&mut self) {
        if let Err(e) = self.join() {
            tracing::error!(
                error = format!("{e:#}"),
                "unpublishing a scanned restore point"
            );
        }
    }
}

impl Drop for Unpublish {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if let Err(e) = lifeboat_publish::unpublish(&self.state_dir, &s) {
                tracing::error!(
                    error = %e,
                    advice = unpublish_advice(&self.state_dir, &s),
                    "unpublishing a scan session"
                );
            }
        }
    }
}

fn unpublish_advice(state_dir: &Path, session: &str) -> String {
    format!(
        "unpublishing scan session {session} (run `lifeboat unpublish --all --state-dir {}`)",
        state_dir.display()
    )
}

/// Filesystems whose FIEMAP gives addresses on their block device.
const DEVICE_MAPPED_FS: &[&str] = &["ext2", "ext3", "ext4", "xfs"];

/// Publishes `manifest`, scans every mounted volume, unpublishes.
pub fn scan_point(
    repo: &Repository,
    place: &PublishPlace,
    manifest: &Manifest,
    engines: &Engines,
    cache: &mut LoadingCache,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<PointScan> {
    let name = manifest.name();
    let opts = PublishOptions {
        repo: place.repo.clone(),
        restore_point: name.clone(),
        mount_root: place.mount_root.clone(),
        state_dir: place.state_dir.clone(),
        disks: Vec::new(),
        block_store: place.block_store.clone(),
        group: place.group,
    };
    let exe = std::env::current_exe().context("finding the lifeboat executable")?;
    let mut daemon = std::process::Command::new(exe);
    daemon.arg("publish-daemon");
    let state = lifeboat_publish::publish(&opts, repo, daemon).map_err(|e| match e {
        lifeboat_publish::Error::Missing(_) => anyhow::Error::new(e).context(format!(
            "`lifeboat scan` publishes {name} to read its files: run it as root on a \
                 machine with /dev/fuse and loop devices"
        )),
        e => anyhow::Error::new(e).context(format!("publishing {name} for the scan")),
    })?;
    let guard = Unpublish {
        state_dir: place.state_dir.clone(),
        session: Some(state.session.clone()),
    };
    let mut scan = Scan::new(
        &name,
        engines.clamav.as_ref(),
        engines.yara.as_ref(),
        cache.get()?,
    )?
    .with_cancel(cancel.clone());
    engines.add_skipped(&mut scan);
    let mut notes = Vec::new();
    let mut disks: HashMap<String, Option<DiskChunks>> = HashMap::new();
    let mut bases: HashMap<String, Option<DiskChunks>> = HashMap::new();
    let mut history: Option<Vec<Manifest>> = None;
    for m in state.mounts.iter().filter(|m| m.mounted) {
        let place = disk_place(&state, &manifest.vm, &m.device, &m.fstype);
        // What the journal replaced on a volume served replayed (a file
        // with an extent there is read, never keyed by the disk's chunks);
        // one the scan cannot replay as the publisher did gets no place.
        let replaced = place.and_then(|l| replaced_bytes(&state, &manifest.vm, l));
        let place = place.filter(|_| replaced.is_some());
        let replaced = replaced.unwrap_or_default();
        // The volume's bytes, for listing an ext4 volume in userspace (the
        // replayed file for a volume served replayed); a file that does
        // not open just means the kernel lists it.
        let device = place
            .filter(|_| m.fstype.starts_with("ext"))
            .and_then(|l| VolumeBytes::open(&l.backing, l.offset, l.size).ok());
        let (chunks, base) = match &place {
            Some(l) => {
                let chunks = disks
                    .entry(l.disk.clone())
                    .or_insert_with(|| disk_chunks(repo, manifest, &l.disk, &mut notes))
                    .as_ref()
                    .and_then(|c| c.volume(disk_offset(l), l.size))
                    .map(|c| c.with_replaced(&replaced));
                let base = bases
                    .entry(l.disk.clone())
                    .or_insert_with(|| {
                        let older = history.get_or_insert_with(|| {
                            repo.list(Some(&manifest.vm)).unwrap_or_default()
                        });
                        let base = base_point(manifest, older, &l.disk)?;
                        chunks_of(repo.load_index(base, &l.disk).ok()?)
                    })
                    .as_ref()
                    .and_then(|c| c.volume(disk_offset(l), l.size))
                    .map(|c| c.with_replaced(&replaced));
                (chunks, base)
            }
            None => (None, None),
        };
        if chunks.is_none() {
            notes.push(format!(
                "{} ({}): files read to recognise unchanged ones (no extent map on a \
                 restore-point disk)",
                m.volume, m.fstype
            ));
        }
        scan.scan_tree_mapped(
            &m.disk,
            &m.volume,
            &m.mount_point,
            chunks.as_ref(),
            base.as_ref(),
            device.as_ref(),
        )
        .with_context(|| format!("scanning {} {}", name, m.volume))?;
    }
    let mut report = scan.finish();
    let unpublishing = guard.start();
    notes.extend(add_publish_problems(&mut report, &state));
    report.finish();
    Ok(PointScan {
        report,
        notes,
        not_recorded: None,
        unpublishing: Some(unpublishing),
    })
}

/// The loop device serving `device` when it is a window of a restore-point
/// disk file (not a file of its own) and `fstype` maps files to device
/// addresses.
fn disk_place<'s>(
    state: &'s SessionState,
    vm: &str,
    device: &str,
    fstype: &str,
) -> Option<&'s LoopEntry> {
    if !DEVICE_MAPPED_FS.contains(&fstype) {
        return None;
    }
    let l = state
        .loops
        .iter()
        .find(|l| l.device.as_deref() == Some(device))?;
    // The publisher's file of disk D; an LV served from a file of its own
    // (striped, spread over disks) has another name. A window of one disk
    // served replayed from a file of its own keeps its place on the disk.
    let disk_file = state
        .fuse_mount
        .join(lifeboat_publish::disk_file_name(vm, &l.disk));
    let replayed_file = state
        .fuse_mount
        .join(lifeboat_publish::replayed_file_name(vm, &l.volume));
    let own_place = match l.replayed_from {
        None => l.backing == disk_file,
        Some(_) => l.backing == replayed_file,
    };
    (!l.disk.contains('+') && own_place).then_some(l)
}

/// Where the volume of loop `l` lies on its restore-point disk.
fn disk_offset(l: &LoopEntry) -> u64 {
    l.replayed_from.unwrap_or(l.offset)
}

/// The volume byte ranges the publisher serves other than from the disk
/// for `l`: none for a window of the disk; for a volume served with its
/// ext4 journal replayed, what the same replay
/// (`lifeboat_formats::ext4_journal`) of the disk file's window replaces.
/// `None` when that replay cannot be redone here.
fn replaced_bytes(state: &SessionState, vm: &str, l: &LoopEntry) -> Option<Vec<Range<u64>>> {
    let Some(at) = l.replayed_from else {
        return Some(Vec::new());
    };
    let file = state
        .fuse_mount
        .join(lifeboat_publish::disk_file_name(vm, &l.disk));
    let disk: Arc<dyn ReadDisk> = Arc::new(FileDisk::open(&file).ok()?);
    let volume: Arc<dyn ReadDisk> = Arc::new(SliceDisk::new(disk, at, l.size, &l.volume).ok()?);
    replay(&l.volume, volume).view.map(|v| v.replaced_ranges())
}

/// The chunk digests of `disk`; `None` (and a note) when its index cannot
/// be loaded.
fn disk_chunks(
    repo: &Repository,
    manifest: &Manifest,
    disk: &str,
    notes: &mut Vec<String>,
) -> Option<DiskChunks> {
    let index = match repo.load_index(manifest, disk) {
        Ok(i) => i,
        Err(e) => {
            notes.push(format!("{disk}: files read, index not loaded: {e}"));
            return None;
        }
    };
    chunks_of(index)
}

/// The chunk digests of an index.
fn chunks_of(index: DiskIndex) -> Option<DiskChunks> {
    DiskChunks::new(index.chunk_size, index.disk_size, index.digest_bytes())
}

/// The newest restore point of `history` (the VM's, oldest first) older
/// than `manifest` with a disk named `disk` of the same chunk size and size.
fn base_point<'h>(
    manifest: &Manifest,
    history: &'h [Manifest],
    disk: &str,
) -> Option<&'h Manifest> {
    let now = manifest.disk(disk)?;
    history.iter().rev().find(|m| {
        m.vm == manifest.vm
            && m.time < manifest.time
            && m.disk(disk)
                .is_some_and(|d| d.chunk_size == now.chunk_size && d.size == now.size)
    })
}

/// Adds what publishing could not serve to `report` as unreadable; returns
/// notes on volumes that hold no files.
fn add_publish_problems(report: &mut ScanReport, state: &SessionState) -> Vec<String> {
    let mut notes = Vec::new();
    for m in state.mounts.iter().filter(|m| !m.mounted) {
        if m.fstype == "swap" {
            notes.push(format!("{} is swap, not scanned", m.volume));
            continue;
        }
        report.unreadable.push(Unreadable {
            disk: m.disk.clone(),
            volume: m.volume.clone(),
            path: "/".to_string(),
            reason: format!(
                "{} filesystem not mounted: {}",
                m.fstype,
                m.error.as_deref().unwrap_or("unknown error")
            ),
        });
    }
    for p in &state.problems {
        match p.kind {
            ProblemKind::Note => notes.push(p.to_string()),
            // Added above from the mount list, with their disk and volume.
            ProblemKind::NotMounted => {}
            ProblemKind::Unserved => report.unreadable.push(Unreadable {
                disk: String::new(),
                volume: String::new(),
                path: String::new(),
                reason: format!("not published: {p}"),
            }),
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_publish::{MountEntry, SessionStatus, VolumeProblem};
    use lifeboat_scan::ScanState;

    /// An empty report of a scan in which ClamAV scanned.
    fn report_with_clamav() -> ScanReport {
        let mut r = ScanReport::new("vm@1");
        r.engines.push(lifeboat_scan::EngineRun {
            name: Engine::Clamav,
            version: "ClamAV 1.4.6".into(),
            signatures: "/db: 2 signature files".into(),
            db_version: None,
            db_time: None,
            fingerprint: "fp".into(),
            not_scanned: None,
        });
        r
    }

    fn mount(volume: &str, fstype: &str, mounted: bool) -> MountEntry {
        MountEntry {
            volume: volume.into(),
            disk: "disk0".into(),
            device: "/dev/loop9".into(),
            mount_point: format!("/m/s/vm/{volume}").into(),
            fstype: fstype.into(),
            mounted,
            error: (!mounted).then(|| "bad superblock".to_string()),
        }
    }

    fn session(
        loops: Vec<LoopEntry>,
        mounts: Vec<MountEntry>,
        problems: Vec<VolumeProblem>,
    ) -> SessionState {
        SessionState {
            session: "vm-1".into(),
            restore_point: "vm@1".into(),
            repo: "/r".into(),
            session_dir: "/m/s".into(),
            fuse_mount: "/m/s/.disks".into(),
            fuse_mounted: true,
            daemon_pid: 1,
            since: chrono::Utc::now(),
            status: SessionStatus::Ready,
            files: vec![],
            loops,
            mounts,
            problems,
        }
    }

    #[test]
    fn unpublished_volumes_are_never_clean() {
        let state = session(
            vec![],
            vec![
                mount("disk0p1", "ext4", true),
                mount("disk0p2", "xfs", false),
                mount("disk0p3", "swap", false),
            ],
            vec![
                VolumeProblem::new(
                    ProblemKind::NotMounted,
                    "disk0p2 (/dev/loop9, xfs): not mounted: bad superblock",
                ),
                VolumeProblem::note("disk0p4 (/dev/loop8): no filesystem found, not mounted"),
                VolumeProblem::unserved("disk0p5: LVM: bad metadata"),
                VolumeProblem::note("disk0: primary GPT invalid (bad CRC): using the backup"),
                VolumeProblem::note("disk0p6 skipped: partition 6 is empty"),
                VolumeProblem::unserved(
                    "disk0p7 skipped: partition 7 (LBA 10..=20) lies outside the usable LBAs",
                ),
            ],
        );
        let mut r = report_with_clamav();
        let notes = add_publish_problems(&mut r, &state);
        r.finish();
        assert_eq!(r.state, ScanState::Incomplete);
        let got: Vec<_> = r
            .unreadable
            .iter()
            .map(|u| (u.volume.as_str(), u.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("", "not published: disk0p5: LVM: bad metadata"),
                (
                    "",
                    "not published: disk0p7 skipped: partition 7 (LBA 10..=20) lies outside \
                     the usable LBAs"
                ),
                ("disk0p2", "xfs filesystem not mounted: bad superblock"),
            ]
        );
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(notes[0].contains("swap") && notes[1].contains("disk0p4"));
        assert!(notes[2].contains("using the backup") && notes[3].contains("is empty"));

        // Problems that serve everything alone: clean.
        let mut only_notes = state.clone();
        only_notes.mounts.truncate(1);
        only_notes.problems = vec![
            VolumeProblem::note("disk0: primary GPT invalid (bad CRC): using the backup"),
            VolumeProblem::note(
                "LVM VG vg0 (UUID abc): another VG has the same name; its LVs are named \
                 <vg>-<lv>_abc",
            ),
        ];
        let mut r = report_with_clamav();
        let notes = add_publish_problems(&mut r, &only_notes);
        r.finish();
        assert_eq!(r.state, ScanState::Clean, "{:?}", r.unreadable);
        assert_eq!(notes.len(), 2);
    }

    #[test]
    fn each_problem_kind_lands_in_its_place() {
        // The same words under each kind: only the kind decides.
        let text = "disk0p3 skipped: partition 3 is empty";
        let place = |kind: ProblemKind| {
            let state = session(vec![], vec![], vec![VolumeProblem::new(kind, text)]);
            let mut r = report_with_clamav();
            let notes = add_publish_problems(&mut r, &state);
            r.finish();
            let unreadable: Vec<_> = r.unreadable.iter().map(|u| u.reason.clone()).collect();
            (unreadable, notes, r.state)
        };
        assert_eq!(
            place(ProblemKind::Unserved),
            (
                vec![format!("not published: {text}")],
                vec![],
                ScanState::Incomplete
            )
        );
        assert_eq!(
            place(ProblemKind::Note),
            (vec![], vec![text.to_string()], ScanState::Clean)
        );
        // Counted from the mount list (with disk and volume), not twice.
        assert_eq!(
            place(ProblemKind::NotMounted),
            (vec![], vec![], ScanState::Clean)
        );
        // A state file from before kinds: a bare string is unserved.
        let old: VolumeProblem = serde_json::from_str(&format!("{text:?}")).unwrap();
        assert_eq!(old.kind, ProblemKind::Unserved);
    }

    #[test]
    fn the_base_is_the_newest_older_point_with_the_same_disk_layout() {
        let disk = |name: &str, size: u64, chunk_size: u32| lifeboat_repo::DiskEntry {
            name: name.into(),
            size,
            chunk_size,
            source: "raw /x".into(),
            stats: Default::default(),
            format: None,
            live: None,
        };
        let point = |id: &str, minute: u32, disks: Vec<lifeboat_repo::DiskEntry>| Manifest {
            format_version: 1,
            vm: "vm".into(),
            id: id.into(),
            time: chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 1, 1, 0, minute, 0)
                .unwrap(),
            disks,
            locked_until: None,
            scan: None,
            salvage: None,
            consistency: None,
        };
        let history = vec![
            point(
                "a",
                1,
                vec![
                    disk("disk0", 8 << 20, 1 << 20),
                    disk("disk1", 4 << 20, 1 << 20),
                ],
            ),
            point("b", 2, vec![disk("disk0", 8 << 20, 1 << 20)]),
            point("c", 3, vec![disk("disk0", 9 << 20, 1 << 20)]),
            point("d", 4, vec![disk("disk0", 8 << 20, 1 << 19)]),
            point(
                "e",
                5,
                vec![
                    disk("disk0", 8 << 20, 1 << 20),
                    disk("disk1", 4 << 20, 1 << 20),
                ],
            ),
            point("f", 6, vec![disk("disk0", 8 << 20, 1 << 20)]),
        ];
        let base = |i: usize, d: &str| base_point(&history[i], &history, d).map(|m| m.id.as_str());
        // Newest older point whose disk has the same size and chunk size.
        assert_eq!(base(4, "disk0"), Some("b"));
        assert_eq!(base(4, "disk1"), Some("a"));
        assert_eq!(base(5, "disk0"), Some("e"));
        // Never itself or a newer one; none for the first or a missing disk.
        assert_eq!(base(0, "disk0"), None);
        assert_eq!(base(5, "disk1"), None);
        assert_eq!(base(2, "disk0"), None);
    }

    #[test]
    fn only_disk_windows_of_device_mapped_filesystems_get_extent_keys() {
        let lp = |volume: &str, disk: &str, file: &str, dev: &str| LoopEntry {
            volume: volume.into(),
            disk: disk.into(),
            backing: format!("/m/s/.disks/{file}").into(),
            offset: 1 << 20,
            size: 8 << 20,
            device: Some(dev.into()),
            replayed_from: None,
        };
        let state = session(
            vec![
                lp("disk0p1", "disk0", "vm-disk0.raw", "/dev/loop1"),
                lp("vg0-striped", "disk0", "vm-vg0-striped.raw", "/dev/loop2"),
                lp("vg0-span", "disk0+disk1", "vm-vg0-span.raw", "/dev/loop3"),
                lp("vg0-lin", "disk1", "vm-disk1.raw", "/dev/loop4"),
                LoopEntry {
                    replayed_from: Some(1 << 20),
                    offset: 0,
                    ..lp("disk0p2", "disk0", "vm-disk0p2@journal.raw", "/dev/loop5")
                },
                LoopEntry {
                    replayed_from: Some(1 << 20),
                    ..lp("disk0p3", "disk0", "vm-disk0.raw", "/dev/loop6")
                },
            ],
            vec![],
            vec![],
        );
        let place = |dev: &str, fs: &str| disk_place(&state, "vm", dev, fs).map(|l| &l.volume);
        assert_eq!(place("/dev/loop1", "ext4"), Some(&"disk0p1".to_string()));
        assert_eq!(place("/dev/loop4", "xfs"), Some(&"vg0-lin".to_string()));
        assert_eq!(place("/dev/loop1", "btrfs"), None);
        assert_eq!(place("/dev/loop1", "vfat"), None);
        assert_eq!(place("/dev/loop2", "ext4"), None);
        assert_eq!(place("/dev/loop3", "ext4"), None);
        assert_eq!(place("/dev/loop9", "ext4"), None);
        // Served replayed from its own file: placed at its disk offset.
        assert_eq!(place("/dev/loop5", "ext4"), Some(&"disk0p2".to_string()));
        let l = disk_place(&state, "vm", "/dev/loop5", "ext4").unwrap();
        assert_eq!((disk_offset(l), l.offset), (1 << 20, 0));
        assert_eq!(place("/dev/loop6", "ext4"), None);
    }
}
