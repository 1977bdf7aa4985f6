//! The publisher process (`lifeboat publish-daemon`): serves the FUSE disk
//! files on a background thread, attaches the loop devices, mounts the
//! filesystems, reports `ready <session>` (or `error <why>`) on its stdout
//! and then lives until the FUSE mount goes away (`unpublish`).
//!
//! Every loop device and mount is recorded in the state file before it is
//! created (see `state.rs`). A fatal error (no free loop device, the FUSE
//! mount refused) tears down what was created; a volume that merely fails
//! to mount is recorded in `problems` and the rest is still published.
//! Problems are typed (`VolumeProblem`): a mount failure is `NotMounted`
//! (its mount entry says which volume), a volume holding no filesystem a
//! `Note`, a volume whose filesystem could not be probed `Unserved`.

use crate::access::Access;
use crate::block_store::{BlockStore, DEFAULT_CAP_BYTES, DEFAULT_EDGE_RESERVE_BYTES};
use crate::error::{Error, Result};
use crate::fusefs::{DiskFile, DiskFs};
use crate::state::{LoopEntry, MountEntry, SessionState, SessionStatus};
use crate::stored_disk::StoredDisk;
use crate::{system, unpublish, DaemonRequest};
use chrono::Utc;
use lifeboat_formats::ext4_journal::replay_volumes;
use lifeboat_formats::volumes::discover_volumes_multi;
use lifeboat_formats::{safe_name, ProblemKind, VolumeProblem};
use lifeboat_repo::Repository;
use lifeboat_vdisk::ReadDisk;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Cache in front of each disk of the restore point (blocks of one chunk,
/// `RestorePointDisk::into_chunk_cache`: directory and inode blocks of a
/// filesystem walk are spread over nearly every chunk): at least this many
/// bytes and 8 chunks, reading 2 chunks ahead.
const CACHE_BYTES: u64 = 256 << 20;
const READ_AHEAD_BLOCKS: u32 = 2;

/// How often the block store's counters are logged while they change.
const STATS_EVERY: Duration = Duration::from_secs(10);

/// How long a publisher waits for the block store's lock.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(3);

/// Environment variable that makes the publisher hang after its first
/// loop device (tests of a publisher killed mid-publish).
pub const HANG_HOOK: &str = "LIFEBOAT_PUBLISH_TEST_HANG_AFTER_LOOP";

/// The FUSE file of a disk or volume: `<vm>-<name>.raw`.
pub fn disk_file_name(vm: &str, name: &str) -> String {
    format!("{vm}-{name}.raw")
}

/// The FUSE file of a volume served with its ext4 journal replayed:
/// `<vm>-<volume>@journal.raw` (`@` is in no disk, partition or LV name,
/// so it cannot clash with their files).
pub fn replayed_file_name(vm: &str, volume: &str) -> String {
    disk_file_name(vm, &format!("{volume}@journal"))
}

/// What to loop: a volume, as a window of one FUSE file.
struct Planned {
    /// The disk(s) it lives on, `+`-joined (`disk0`, `disk0+disk1`).
    disk: String,
    volume: String,
    file: PathBuf,
    offset: u64,
    size: u64,
    /// See [`LoopEntry::replayed_from`].
    replayed_from: Option<u64>,
}

/// Runs the publisher: sets everything up, writes `ready <session>`,
/// `missing <what>` (the target lacks something, [`Error::Missing`]) or
/// `error <why>` as one line to `report`, then serves until unmounted.
/// The repository's unlock secret, when `req` says it is encrypted, is the
/// first line of `secret` (the process's stdin).
pub fn run_daemon(
    req: &DaemonRequest,
    secret: &mut dyn std::io::BufRead,
    report: &mut dyn Write,
) -> Result<()> {
    match setup(req, secret) {
        Ok((session, state, store)) => {
            let _ = writeln!(report, "ready {}", state.session);
            let _ = report.flush();
            if let Some(s) = &store {
                log_stats_while_running(s.clone());
            }
            let ended = session
                .join()
                .map_err(|e| Error::Daemon(format!("FUSE session ended with an error: {e}")));
            if let Some(s) = &store {
                eprintln!("block store at exit: {}", s.stats());
            }
            ended
        }
        Err(e) => {
            let line = match &e {
                Error::Missing(what) => format!("missing {what}"),
                Error::Daemon(why) => format!("error {why}"),
                other => format!("error {other}"),
            };
            let _ = writeln!(report, "{}", line.replace('\n', " "));
            let _ = report.flush();
            Err(e)
        }
    }
}

/// Logs the store's counters every [`STATS_EVERY`] while they change
/// (the session's log is deleted by `unpublish`, and a publisher may be
/// sent SIGTERM right after its FUSE mount went away, so a line at exit
/// alone could be lost).
fn log_stats_while_running(store: Arc<BlockStore>) {
    let spawned = std::thread::Builder::new()
        .name("block-store-stats".to_string())
        .spawn(move || {
            let mut last = store.stats();
            loop {
                std::thread::sleep(STATS_EVERY);
                let now = store.stats();
                if now != last {
                    eprintln!("block store: {now}");
                    last = now;
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("block store: no statistics thread: {e}");
    }
}

/// The block store of `repo` under `dir` (sealed with its key), or `None` (logged) when it is
/// in use by another process or cannot be opened: publishing goes on
/// without it. A lock is waited for up to [`STORE_LOCK_WAIT`]: the previous
/// publisher of a scan of several restore points may still be exiting.
fn open_store(dir: &Path, repo: &Repository) -> Option<Arc<BlockStore>> {
    let dir = dir.join(repo.id());
    let deadline = std::time::Instant::now() + STORE_LOCK_WAIT;
    let key = crate::block_store::key_of(repo);
    let open = || {
        BlockStore::open_reserving(
            &dir,
            DEFAULT_CAP_BYTES,
            DEFAULT_EDGE_RESERVE_BYTES,
            key.clone(),
        )
    };
    let mut opened = open();
    while matches!(opened, Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        opened = open();
    }
    match opened {
        Ok(Some(s)) => {
            eprintln!("block store {}: {}", dir.display(), s.stats());
            s.prefetch();
            Some(Arc::new(s))
        }
        Ok(None) => {
            eprintln!(
                "block store {}: in use by another process, publishing without it",
                dir.display()
            );
            None
        }
        Err(e) => {
            eprintln!("block store {}: {e}; publishing without it", dir.display());
            None
        }
    }
}

/// What `setup` leaves running: the FUSE session, its state and the block
/// store in use.
type Running = (
    fuser::BackgroundSession,
    SessionState,
    Option<Arc<BlockStore>>,
);

fn setup(req: &DaemonRequest, secret: &mut dyn std::io::BufRead) -> Result<Running> {
    system::preflight()?;
    let mut line = String::new();
    if req.secret_on_stdin {
        secret.read_line(&mut line).map_err(|e| {
            Error::Daemon(format!(
                "reading the repository's unlock secret from stdin: {e}"
            ))
        })?;
    }
    let repo = Repository::open_unlocked(&req.repo, req.secret_on_stdin.then_some(line.as_str()))?
        .with_heal_on_read(true);
    let manifest = repo.resolve(&req.restore_point)?;
    let access = Access::new(req.group);
    // Names that become directories here are single, safe components.
    for name in [&req.session, &manifest.vm] {
        safe_name(name).map_err(|e| Error::Invalid(format!("{}: {e}", manifest.name())))?;
    }
    let session_dir = req.mount_root.join(&req.session);
    let fuse_mount = session_dir.join(".disks");
    // Only root and the group may enter the session: the gate to
    // everything published in it.
    access.create_dir(&session_dir)?;
    access.create_dir(&fuse_mount)?;
    let mut problems = Vec::new();

    let store = req
        .block_store
        .as_deref()
        .and_then(|dir| open_store(dir, &repo));
    let mut files = Vec::new();
    let mut disks: Vec<(String, Arc<dyn ReadDisk>)> = Vec::new();
    for entry in &manifest.disks {
        if !req.disks.is_empty() && !req.disks.contains(&entry.name) {
            continue;
        }
        let file_name = disk_file_name(&manifest.vm, &entry.name);
        if let Err(e) = safe_name(&file_name) {
            problems.push(e.problem(&format!("disk {:?}", entry.name)));
            continue;
        }
        let disk = repo.open_disk(&manifest, &entry.name)?;
        let chunk_size = disk.index().chunk_size;
        let digests = store.as_ref().map(|_| disk.index().digest_bytes());
        let mut cached: Arc<dyn ReadDisk> = Arc::new(
            disk.into_chunk_cache(CACHE_BYTES, 8)?
                .with_read_ahead(READ_AHEAD_BLOCKS),
        );
        if let (Some(s), Some(digests)) = (&store, digests) {
            cached = Arc::new(StoredDisk::new(cached, s.clone(), chunk_size, digests)?);
        }
        files.push(DiskFile {
            name: file_name,
            disk: cached.clone(),
        });
        disks.push((entry.name.clone(), cached));
    }
    // All disks at once, so a volume group spanning disks is assembled.
    let mut report = discover_volumes_multi(&disks);
    // An ext4 volume whose journal needs replay is served replayed, from a
    // file of its own (the kernel still mounts it with `noload`).
    let windows: Vec<(String, u64)> = report
        .volumes
        .iter()
        .filter(|v| v.contiguous && v.disks.len() == 1)
        .map(|v| (v.name.clone(), v.start))
        .collect();
    let replayed = replay_volumes(&mut report.volumes, &mut report.problems);
    problems.extend(report.problems);
    let mut planned = Vec::new();
    for v in &report.volumes {
        if v.type_hint == "lvm2-pv" {
            continue;
        }
        let disk = v.disks.join("+");
        match v.disks.as_slice() {
            [home] if v.contiguous => planned.push(Planned {
                disk,
                volume: v.name.clone(),
                file: fuse_mount.join(disk_file_name(&manifest.vm, home)),
                offset: v.start,
                size: v.length,
                replayed_from: None,
            }),
            // Striped, fragmented or spread over several disks, or with its
            // journal replayed: a file of its own.
            _ => {
                let name = if replayed.contains(&v.name) {
                    replayed_file_name(&manifest.vm, &v.name)
                } else {
                    disk_file_name(&manifest.vm, &v.name)
                };
                if let Err(e) = safe_name(&name) {
                    problems.push(e.problem(&format!("volume {:?}", v.name)));
                    continue;
                }
                planned.push(Planned {
                    disk,
                    volume: v.name.clone(),
                    file: fuse_mount.join(&name),
                    offset: 0,
                    size: v.length,
                    replayed_from: windows
                        .iter()
                        .find(|(n, _)| replayed.contains(n) && *n == v.name)
                        .map(|&(_, start)| start),
                });
                files.push(DiskFile {
                    name,
                    disk: v.disk.clone(),
                });
            }
        }
    }
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no disk named {}",
            manifest.name(),
            req.disks.join(", ")
        )));
    }

    let mut state = SessionState {
        session: req.session.clone(),
        restore_point: manifest.name(),
        repo: req.repo.clone(),
        session_dir: session_dir.clone(),
        fuse_mount: fuse_mount.clone(),
        fuse_mounted: false,
        daemon_pid: std::process::id(),
        since: Utc::now(),
        status: SessionStatus::Publishing,
        files: files.iter().map(|f| fuse_mount.join(&f.name)).collect(),
        loops: Vec::new(),
        mounts: Vec::new(),
        problems,
    };
    state.save(&req.state_dir)?;

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoExec,
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::FSName(format!("lifeboat:{}", manifest.name())),
        fuser::MountOption::Subtype("lifeboat".to_string()),
    ];
    config.acl = access.fuse_acl();
    config.n_threads = Some(4);
    let session = fuser::spawn_mount(DiskFs::new(files, access), &fuse_mount, &config)
        .map_err(|e| Error::Daemon(format!("FUSE mount on {}: {e}", fuse_mount.display())));
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            fail(req, &mut state);
            return Err(e);
        }
    };
    state.fuse_mounted = true;
    state.save(&req.state_dir)?;

    let vm_dir = session_dir.join(&manifest.vm);
    if let Err(e) = attach_and_mount(req, access, &mut state, &planned, &vm_dir) {
        fail(req, &mut state);
        drop(session);
        return Err(e);
    }
    state.status = SessionStatus::Ready;
    state.save(&req.state_dir)?;
    Ok((session, state, store))
}

/// Removes what was created after a fatal error.
fn fail(req: &DaemonRequest, state: &mut SessionState) {
    state.status = SessionStatus::Failed;
    let _ = state.save(&req.state_dir);
    // Unmounting FUSE from inside its own server is fine: the session
    // thread keeps answering until the kernel lets go.
    let _ = unpublish::cleanup(state, &req.state_dir, false);
}

fn attach_and_mount(
    req: &DaemonRequest,
    access: Access,
    state: &mut SessionState,
    planned: &[Planned],
    vm_dir: &Path,
) -> Result<()> {
    for p in planned {
        state.loops.push(LoopEntry {
            volume: p.volume.clone(),
            disk: p.disk.clone(),
            backing: p.file.clone(),
            offset: p.offset,
            size: p.size,
            device: None,
            replayed_from: p.replayed_from,
        });
        state.save(&req.state_dir)?;
        let dev = crate::loopdev::attach(&p.file, p.offset, p.size)?;
        if let Some(last) = state.loops.last_mut() {
            last.device = Some(dev.clone());
        }
        state.save(&req.state_dir)?;
        // Test hook: stop here, mid-publish, so a test can kill the
        // publisher with a loop device attached and nothing mounted yet.
        if std::env::var_os(HANG_HOOK).is_some() {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }

        let fstype = match system::fs_type(&dev, p.size) {
            Ok(Some(t)) => t,
            Ok(None) => {
                // Nothing found is only harmless if blkid could read where
                // signatures live.
                state
                    .problems
                    .push(match system::check_readable(&dev, p.size) {
                        Ok(()) => VolumeProblem::note(format!(
                            "{} ({dev}): no filesystem found, not mounted",
                            p.volume
                        )),
                        Err(e) => VolumeProblem::unserved(format!(
                            "{} ({dev}): no filesystem found and the volume is unreadable: {e}",
                            p.volume
                        )),
                    });
                continue;
            }
            Err(e) => {
                state.problems.push(VolumeProblem::unserved(format!(
                    "{} ({dev}): {e}",
                    p.volume
                )));
                continue;
            }
        };
        // A safe name (discovery refuses others): one directory in vm_dir.
        let target = vm_dir.join(&p.volume);
        state.mounts.push(MountEntry {
            volume: p.volume.clone(),
            disk: p.disk.clone(),
            device: dev.clone(),
            mount_point: target.clone(),
            fstype: fstype.clone(),
            mounted: false,
            error: None,
        });
        state.save(&req.state_dir)?;
        // The VM's directory comes with its first mount point (unpublish
        // removes mount points and their parent).
        let result = (if vm_dir.exists() {
            Ok(())
        } else {
            access.create_dir(vm_dir)
        })
        .and_then(|()| access.create_dir(&target))
        .and_then(|()| system::mount_ro(&dev, &fstype, &target, access));
        if let Some(last) = state.mounts.last_mut() {
            match result {
                Ok(_) => last.mounted = true,
                Err(e) => {
                    let msg = format!("{} ({dev}, {fstype}): not mounted: {e}", p.volume);
                    last.error = Some(e.to_string());
                    state
                        .problems
                        .push(VolumeProblem::new(ProblemKind::NotMounted, msg));
                    let _ = std::fs::remove_dir(&target);
                }
            }
        }
        state.save(&req.state_dir)?;
    }
    Ok(())
}
