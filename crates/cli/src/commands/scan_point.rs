//! Scanning one restore point for `lifeboat scan`: publish it (all disks)
//! under a private mount root, run the engines as a tree scan over every
//! mounted volume, then always unpublish (on success, on error, on Ctrl-C:
//! a guard does it when dropped; a SIGKILLed scan leaves a session that
//! `lifeboat unpublish --all --state-dir ...` removes).
//!
//! What publishing could not serve never counts as clean: a filesystem that
//! did not mount and every problem of volume discovery (damaged partition
//! table, LVM metadata...) are added to the report as unreadable, so the
//! state is at best `incomplete`. Volumes without any filesystem and swap
//! are not files to scan; they are only mentioned as notes.

use anyhow::Context;
use lifeboat_publish::{PublishOptions, SessionState};
use lifeboat_repo::Manifest;
use lifeboat_scan::{ClamAvScanner, Engine, Scan, ScanCache, ScanReport, Unreadable, YaraScanner};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The engines chosen for a scan.
pub struct Engines {
    pub clamav: Option<ClamAvScanner>,
    pub yara: Option<YaraScanner>,
}

/// Where and how restore points are published for scanning.
pub struct PublishPlace {
    pub repo: PathBuf,
    pub passphrase: Option<String>,
    pub mount_root: PathBuf,
    pub state_dir: PathBuf,
}

/// The scan of one restore point.
pub struct PointScan {
    pub report: ScanReport,
    /// Engines with the fingerprints of their signatures / rules.
    pub engines: Vec<(Engine, String)>,
    /// What was not scanned without being a problem (no filesystem, swap).
    pub notes: Vec<String>,
}

/// Unpublishes its session when dropped, unless [`Unpublish::finish`] did.
struct Unpublish {
    state_dir: PathBuf,
    session: Option<String>,
}

impl Unpublish {
    /// Unpublishes now and reports a failure as an error.
    fn finish(mut self) -> anyhow::Result<()> {
        match self.session.take() {
            Some(s) => lifeboat_publish::unpublish(&self.state_dir, &s)
                .map(|_| ())
                .with_context(|| unpublish_advice(&self.state_dir, &s)),
            None => Ok(()),
        }
    }
}

impl Drop for Unpublish {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if let Err(e) = lifeboat_publish::unpublish(&self.state_dir, &s) {
                eprintln!("lifeboat: {}: {e}", unpublish_advice(&self.state_dir, &s));
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

/// Publishes `manifest`, scans every mounted volume, unpublishes.
pub fn scan_point(
    place: &PublishPlace,
    manifest: &Manifest,
    engines: &Engines,
    cache: &mut ScanCache,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<PointScan> {
    let name = manifest.name();
    let opts = PublishOptions {
        repo: place.repo.clone(),
        restore_point: name.clone(),
        mount_root: place.mount_root.clone(),
        state_dir: place.state_dir.clone(),
        disks: Vec::new(),
    };
    let exe = std::env::current_exe().context("finding the lifeboat executable")?;
    let mut daemon = std::process::Command::new(exe);
    daemon.arg("publish-daemon");
    let state = lifeboat_publish::publish(&opts, place.passphrase.as_deref(), daemon).map_err(
        |e| match e {
            lifeboat_publish::Error::Missing(_) => anyhow::Error::new(e).context(format!(
                "`lifeboat scan` publishes {name} to read its files: run it as root on a \
                 machine with /dev/fuse and loop devices"
            )),
            e => anyhow::Error::new(e).context(format!("publishing {name} for the scan")),
        },
    )?;
    let guard = Unpublish {
        state_dir: place.state_dir.clone(),
        session: Some(state.session.clone()),
    };
    let mut scan = Scan::new(&name, engines.clamav.as_ref(), engines.yara.as_ref(), cache)?
        .with_cancel(cancel.clone());
    let engines_used = scan.engines();
    for m in state.mounts.iter().filter(|m| m.mounted) {
        scan.scan_tree(&m.disk, &m.volume, &m.mount_point)
            .with_context(|| format!("scanning {} {}", name, m.volume))?;
    }
    let mut report = scan.finish();
    guard.finish()?;
    let notes = add_publish_problems(&mut report, &state);
    report.finish();
    Ok(PointScan {
        report,
        engines: engines_used,
        notes,
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
        if p.contains("no filesystem found") {
            notes.push(p.clone());
        } else if !p.contains(": not mounted: ") {
            // Mount failures were added above, with their disk and volume.
            report.unreadable.push(Unreadable {
                disk: String::new(),
                volume: String::new(),
                path: String::new(),
                reason: format!("not published: {p}"),
            });
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_publish::{MountEntry, SessionStatus};
    use lifeboat_scan::ScanState;

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

    #[test]
    fn unpublished_volumes_are_never_clean() {
        let state = SessionState {
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
            loops: vec![],
            mounts: vec![
                mount("disk0p1", "ext4", true),
                mount("disk0p2", "xfs", false),
                mount("disk0p3", "swap", false),
            ],
            problems: vec![
                "disk0p2 (/dev/loop9, xfs): not mounted: bad superblock".into(),
                "disk0p4 (/dev/loop8): no filesystem found, not mounted".into(),
                "disk0p5: LVM: bad metadata".into(),
            ],
        };
        let mut r = ScanReport::new("vm@1");
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
                ("disk0p2", "xfs filesystem not mounted: bad superblock"),
            ]
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("swap") && notes[1].contains("disk0p4"));
    }
}
