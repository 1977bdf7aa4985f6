//! The per-session state file: `<state-dir>/<session>.json`.
//!
//! The publisher records every FUSE mount, loop device and filesystem mount
//! *before* creating it (status `pending`), and updates the entry once it
//! exists, so that `unpublish` can clean up after a publisher killed at any
//! point. Files are written to a temporary name and renamed, so a reader
//! never sees half a file.
//!
//! `problems` are typed ([`VolumeProblem`]: kind and message). State files
//! written before problems had kinds hold them as bare strings; those still
//! load, each as kind `unserved`.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use lifeboat_formats::VolumeProblem;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default directory of the state files.
pub const DEFAULT_STATE_DIR: &str = "/run/lifeboat/publish";

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// The publisher is still setting things up (or died doing so).
    Publishing,
    /// Everything that could be published is.
    Ready,
    /// Publishing failed; what was created is being or was removed.
    Failed,
}

/// One loop device of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopEntry {
    /// The volume it serves (`disk0p1`, `vg0-root`).
    pub volume: String,
    /// The disk the volume belongs to; an LV spread over several disks
    /// names them all, `+`-joined (`disk0+disk1`).
    pub disk: String,
    /// The FUSE file it is attached to.
    pub backing: PathBuf,
    pub offset: u64,
    pub size: u64,
    /// `/dev/loopN`, once attached (`None`: attaching was started).
    pub device: Option<String>,
    /// When `backing` is the volume's own file served with its ext4
    /// journal replayed over it (`lifeboat_formats::ext4_journal`), and
    /// the volume is otherwise a window of `disk`: its offset there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_from: Option<u64>,
}

/// One read-only filesystem mount of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    pub volume: String,
    pub disk: String,
    pub device: String,
    pub mount_point: PathBuf,
    /// As blkid reports it (`ext4`, `vfat`...).
    pub fstype: String,
    /// True once mounted; false while pending or when it failed.
    pub mounted: bool,
    /// Why it is not mounted, if it failed.
    pub error: Option<String>,
}

/// Everything one publishing session created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    pub session: String,
    /// `vm@id`.
    pub restore_point: String,
    pub repo: PathBuf,
    /// `<mount-root>/<session>`.
    pub session_dir: PathBuf,
    /// The FUSE mount holding the disk files (`<session_dir>/.disks`).
    pub fuse_mount: PathBuf,
    /// True once the FUSE mount exists (it is recorded before).
    pub fuse_mounted: bool,
    /// The process serving the FUSE mount.
    pub daemon_pid: u32,
    pub since: DateTime<Utc>,
    pub status: SessionStatus,
    /// The FUSE files (disks and non-contiguous LVs).
    pub files: Vec<PathBuf>,
    pub loops: Vec<LoopEntry>,
    pub mounts: Vec<MountEntry>,
    /// Things that could not be published, and why; each says whether it
    /// leaves data unserved or is only a note.
    pub problems: Vec<VolumeProblem>,
}

/// The state file of `session` in `dir`.
pub fn state_path(dir: &Path, session: &str) -> PathBuf {
    dir.join(format!("{session}.json"))
}

impl SessionState {
    /// Writes the state atomically to `<dir>/<session>.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = state_path(dir, &self.session);
        let tmp = dir.join(format!(".{}.json.tmp", self.session));
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::State {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        crate::fsutil::replace_file(&path, &tmp, &text)
    }

    /// Reads one state file.
    pub fn load(path: &Path) -> Result<SessionState> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::State {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }
}

/// Every session recorded in `dir`, oldest first. Unreadable files are
/// returned as errors beside the good ones.
pub fn list_sessions(dir: &Path) -> Result<(Vec<SessionState>, Vec<Error>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((good, bad)),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        match SessionState::load(&entry.path()) {
            Ok(s) => good.push(s),
            Err(e) => bad.push(e),
        }
    }
    good.sort_by(|a, b| a.since.cmp(&b.since).then(a.session.cmp(&b.session)));
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_formats::ProblemKind;

    fn sample(name: &str) -> SessionState {
        SessionState {
            session: name.to_string(),
            restore_point: "web01@abc".into(),
            repo: "/r".into(),
            session_dir: "/mnt/x".into(),
            fuse_mount: "/mnt/x/.disks".into(),
            fuse_mounted: false,
            daemon_pid: 1,
            since: Utc::now(),
            status: SessionStatus::Publishing,
            files: vec![],
            loops: vec![LoopEntry {
                volume: "disk0p1".into(),
                disk: "disk0".into(),
                backing: "/mnt/x/.disks/web01-disk0.raw".into(),
                offset: 1 << 20,
                size: 4 << 20,
                device: None,
                replayed_from: None,
            }],
            mounts: vec![],
            problems: vec![],
        }
    }

    #[test]
    fn state_round_trips_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        sample("b").save(dir.path()).unwrap();
        sample("a").save(dir.path()).unwrap();
        std::fs::write(dir.path().join("junk.json"), b"{").unwrap();
        let (good, bad) = list_sessions(dir.path()).unwrap();
        assert_eq!(good.len(), 2);
        assert_eq!(bad.len(), 1);
        let back = SessionState::load(&state_path(dir.path(), "a")).unwrap();
        assert_eq!(
            back,
            good.iter().find(|s| s.session == "a").unwrap().clone()
        );
    }

    #[test]
    fn typed_problems_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample("p");
        s.problems = vec![
            VolumeProblem::unserved("disk0p5: LVM: bad metadata"),
            VolumeProblem::note("disk0p4 (/dev/loop8): no filesystem found, not mounted"),
            VolumeProblem::new(ProblemKind::NotMounted, "disk0p2: not mounted: bad fs"),
        ];
        s.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(state_path(dir.path(), "p")).unwrap();
        assert!(text.contains("\"kind\": \"not_mounted\""), "{text}");
        assert_eq!(SessionState::load(&state_path(dir.path(), "p")).unwrap(), s);
    }

    #[test]
    fn an_old_state_file_with_plain_string_problems_loads() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{
  "session": "web01-1",
  "restore_point": "web01@abc",
  "repo": "/r",
  "session_dir": "/mnt/x",
  "fuse_mount": "/mnt/x/.disks",
  "fuse_mounted": true,
  "daemon_pid": 42,
  "since": "2024-05-01T10:00:00Z",
  "status": "ready",
  "files": ["/mnt/x/.disks/web01-disk0.raw"],
  "loops": [],
  "mounts": [],
  "problems": [
    "disk0p5: LVM: bad metadata",
    "disk0p6 skipped: partition 6 is empty"
  ]
}"#;
        let path = state_path(dir.path(), "web01-1");
        std::fs::write(&path, old).unwrap();
        let s = SessionState::load(&path).unwrap();
        assert_eq!(s.status, SessionStatus::Ready);
        // Without a recorded kind, nothing can be taken for harmless.
        assert_eq!(
            s.problems,
            [
                VolumeProblem::unserved("disk0p5: LVM: bad metadata"),
                VolumeProblem::unserved("disk0p6 skipped: partition 6 is empty"),
            ]
        );
        let (good, bad) = list_sessions(dir.path()).unwrap();
        assert_eq!((good.len(), bad.len()), (1, 0));
    }

    #[test]
    fn a_missing_state_dir_lists_nothing() {
        let (good, bad) = list_sessions(Path::new("/nonexistent/lifeboat-state")).unwrap();
        assert!(good.is_empty() && bad.is_empty());
    }
}
