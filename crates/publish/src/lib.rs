//! Publishing a restore point read-only on this Linux machine (the Data
//! Integration API): every disk appears as a read-only file on a FUSE mount,
//! every partition and LVM logical volume gets a read-only loop device, and
//! every filesystem found is mounted read-only (the kernel replays no
//! journal: an ext4 journal that needs replay is replayed in memory first)
//! under `<mount-root>/<session>/<vm>/<volume>`.
//!
//! ```text
//! <mount-root>/<session>/
//!     .disks/               FUSE (this crate's DiskFs), read-only
//!         web01-disk0.raw   disk0 of the restore point, via a CachedDisk
//!                           (and a StoredDisk with a block store: small
//!                           reads kept for later publishers, block_store/)
//!         web01-vg0-data.raw  an LV a loop offset cannot serve (striped,
//!                           or with PVs on several disks: all disks are
//!                           discovered together, so a VG may span them)
//!         web01-disk0p2@journal.raw  an ext4 volume whose journal needs
//!                           replay, served replayed
//!                           (lifeboat_formats::ext4_journal)
//!     web01/disk0p1/        ext4 on /dev/loopN (ro,nodev,nosuid,noexec,noload)
//!     web01/vg0-root/       xfs  on /dev/loopM (...,norecovery)
//! ```
//!
//! Only root and the group of [`PublishOptions::group`] read any of it
//! (see [`Access`]); only the filesystem types of
//! [`system::MOUNTABLE_TYPES`] are mounted; every name joined into these
//! paths is a safe single file name ([`lifeboat_formats::safe_name`]).
//!
//! Process design: FUSE must be served by a living process, but `lifeboat
//! publish` should return once the mounts are there. [`publish`] therefore
//! spawns the publisher as a detached child (own process group, stdin
//! closed once the repository's unlock secret is written to it, stderr to
//! `<state-dir>/<session>.log`), given as a command by
//! the caller (the CLI passes `lifeboat publish-daemon`), and waits for its
//! one-line report on a pipe: `ready <session>`, `missing <what>` (kept
//! as [`Error::Missing`]) or `error <why>`. The child ([`run_daemon`])
//! keeps serving until its FUSE mount is unmounted by [`unpublish`], then
//! exits. No double fork and no daemon library: the
//! child simply outlives its parent and is reparented to init.
//!
//! FUSE is the pure-Rust `fuser` 0.18 without libfuse: as root it mounts
//! with mount(2) directly, so neither libfuse headers nor `fusermount3`
//! are needed. State files (see [`state`]) make a killed publisher
//! recoverable with [`unpublish_all`].

mod access;
pub mod block_store;
mod daemon;
mod error;
mod fsprobe;
mod fsutil;
mod fusefs;
mod loopdev;
pub mod state;
mod stored_disk;
pub mod system;
mod unpublish;

pub use access::{resolve_group, Access};
pub use block_store::{BlockStore, BlockStoreStats};
pub use daemon::{disk_file_name, replayed_file_name, run_daemon, HANG_HOOK};
pub use error::{Error, Result};
pub use fusefs::{DiskFile, DiskFs};
pub use lifeboat_formats::{ProblemKind, VolumeProblem};
pub use state::{LoopEntry, MountEntry, SessionState, SessionStatus, DEFAULT_STATE_DIR};
pub use stored_disk::{StoredDisk, MAX_STORED_READ};
pub use unpublish::{daemon_alive, unpublish, unpublish_all};

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Default mount root.
pub const DEFAULT_MOUNT_ROOT: &str = "/mnt/lifeboat";

/// What to publish, as the caller asks for it.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub repo: PathBuf,
    /// `vm@id`, `vm@latest`, ... (anything `Repository::resolve` takes).
    pub restore_point: String,
    pub mount_root: PathBuf,
    pub state_dir: PathBuf,
    /// Only these disks (empty: all).
    pub disks: Vec<String>,
    /// Keep small blocks read from the repository in a [`BlockStore`] in
    /// `<block_store>/<repository id>/`, shared with later publishers.
    pub block_store: Option<PathBuf>,
    /// The group (gid) that may read what is published, besides root
    /// (see [`Access`]); `None`: root alone.
    pub group: Option<u32>,
}

/// What the publisher process is told (one JSON argument).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonRequest {
    pub session: String,
    pub repo: PathBuf,
    /// The exact `vm@id`.
    pub restore_point: String,
    pub mount_root: PathBuf,
    pub state_dir: PathBuf,
    pub disks: Vec<String>,
    /// See [`PublishOptions::block_store`] (absolute).
    #[serde(default)]
    pub block_store: Option<PathBuf>,
    /// The repository is encrypted: its unlock secret
    /// ([`lifeboat_repo::Repository::unlock_secret_hex`]) comes as the first
    /// line on the publisher's stdin.
    #[serde(default)]
    pub secret_on_stdin: bool,
    /// See [`PublishOptions::group`].
    #[serde(default)]
    pub group: Option<u32>,
}

/// The log file of a session's publisher.
pub fn log_path(state_dir: &Path, session: &str) -> PathBuf {
    state_dir.join(format!("{session}.log"))
}

/// Publishes a restore point: resolves it, picks a session name, starts
/// `daemon` (a command that ends up in [`run_daemon`]; the request JSON is
/// appended as its last argument) and waits until it reports. `repo` is
/// the repository of `opts`, already open: the child gets its unlock
/// secret through a pipe on its stdin (never on its command line, in its
/// environment or in a file) and skips the passphrase's key derivation.
pub fn publish(
    opts: &PublishOptions,
    repo: &lifeboat_repo::Repository,
    mut daemon: Command,
) -> Result<SessionState> {
    system::preflight()?;
    let manifest = repo.resolve(&opts.restore_point)?;
    for d in &opts.disks {
        if manifest.disk(d).is_none() {
            return Err(Error::Invalid(format!(
                "{} has no disk named {d} (disks: {})",
                manifest.name(),
                manifest
                    .disks
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    std::fs::create_dir_all(&opts.state_dir).map_err(|e| Error::io(&opts.state_dir, e))?;
    std::fs::create_dir_all(&opts.mount_root).map_err(|e| Error::io(&opts.mount_root, e))?;
    // Absolute paths: the publisher runs in `/` and the state outlives the
    // caller's working directory.
    let opts = &PublishOptions {
        repo: absolute(&opts.repo)?,
        mount_root: absolute(&opts.mount_root)?,
        state_dir: absolute(&opts.state_dir)?,
        block_store: match &opts.block_store {
            Some(p) => Some(std::path::absolute(p).map_err(|e| Error::io(p, e))?),
            None => None,
        },
        ..opts.clone()
    };
    // The VM's name becomes directories under the mount root.
    lifeboat_formats::safe_name(&manifest.vm)
        .map_err(|e| Error::Invalid(format!("VM of {}: {e}", manifest.name())))?;
    let session = pick_session_name(opts, &manifest.vm);
    // Some exactly when the repository is encrypted.
    let secret = repo.unlock_secret_hex();
    let req = DaemonRequest {
        session: session.clone(),
        repo: opts.repo.clone(),
        restore_point: manifest.name(),
        mount_root: opts.mount_root.clone(),
        state_dir: opts.state_dir.clone(),
        disks: opts.disks.clone(),
        block_store: opts.block_store.clone(),
        secret_on_stdin: secret.is_some(),
        group: opts.group,
    };
    let json = serde_json::to_string(&req).map_err(|e| Error::Invalid(e.to_string()))?;
    let log = log_path(&opts.state_dir, &session);
    let log_file = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
    daemon
        .arg(json)
        .current_dir("/")
        .stdin(if secret.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(log_file);
    std::os::unix::process::CommandExt::process_group(&mut daemon, 0);
    let mut child = daemon
        .spawn()
        .map_err(|e| Error::Daemon(format!("starting the publisher {daemon:?}: {e}")))?;
    if let (Some(secret), Some(mut stdin)) = (&secret, child.stdin.take()) {
        // A publisher that died at once shows below as one that did not
        // report; dropping the pipe closes it.
        let _ = writeln!(stdin, "{secret}");
    }
    let Some(out) = child.stdout.take() else {
        return Err(Error::Daemon(
            "the publisher has no stdout pipe".to_string(),
        ));
    };
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    let line = line.trim();
    if let Some(name) = line.strip_prefix("ready ") {
        return SessionState::load(&state::state_path(&opts.state_dir, name));
    }
    let error = if let Some(what) = line.strip_prefix("missing ") {
        Error::Missing(what.to_string())
    } else if let Some(why) = line.strip_prefix("error ") {
        Error::Daemon(why.to_string())
    } else {
        let _ = child.wait();
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        Error::Daemon(format!(
            "the publisher exited without reporting: {}",
            tail.lines().last().unwrap_or("(no output)")
        ))
    };
    // Whatever it left behind (it cleans up itself on a reported error).
    let _ = child.wait();
    if state::state_path(&opts.state_dir, &session).exists() {
        let _ = unpublish(&opts.state_dir, &session);
    }
    Err(error)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    p.canonicalize().map_err(|e| Error::io(p, e))
}

/// `<vm>-<n>` with the smallest `n` free in both the state dir and the
/// mount root.
fn pick_session_name(opts: &PublishOptions, vm: &str) -> String {
    let mut n = 1u64;
    loop {
        let name = format!("{vm}-{n}");
        if !state::state_path(&opts.state_dir, &name).exists()
            && !opts.mount_root.join(&name).exists()
        {
            return name;
        }
        n += 1;
    }
}

/// One published session, as `published` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedSession {
    #[serde(flatten)]
    pub state: SessionState,
    /// The publisher process is running and its FUSE mount is there.
    pub alive: bool,
}

/// Every session recorded in `state_dir`, with whether it is alive.
pub fn published(state_dir: &Path) -> Result<Vec<PublishedSession>> {
    let (sessions, _bad) = state::list_sessions(state_dir)?;
    Ok(sessions
        .into_iter()
        .map(|s| {
            let alive = daemon_alive(s.daemon_pid) && system::is_mounted(&s.fuse_mount);
            PublishedSession { state: s, alive }
        })
        .collect())
}
