//! Tearing a session down, in the one safe order: filesystem mounts
//! (`umount2`, then a lazy one), loop devices (`LOOP_CLR_FD`), the FUSE
//! mount, then the publisher process (normally gone by itself once its FUSE
//! mount is), the empty directories and the state file.
//!
//! Cleanup trusts the system more than the state file: besides what the
//! file records, it removes every mount under the session directory (from
//! /proc/mounts) and every loop device whose backing file lies on the
//! session's FUSE mount (from sysfs), so a publisher killed between
//! creating something and recording its name leaves nothing behind.

use crate::error::{Error, Result};
use crate::state::{list_sessions, state_path, SessionState};
use crate::system;
use std::path::Path;

/// Unpublishes session `name` recorded in `state_dir`.
pub fn unpublish(state_dir: &Path, name: &str) -> Result<SessionState> {
    let path = state_path(state_dir, name);
    if !path.exists() {
        return Err(Error::NoSession(name.to_string()));
    }
    let mut state = SessionState::load(&path)?;
    cleanup(&mut state, state_dir, true)?;
    Ok(state)
}

/// Unpublishes every session in `state_dir`; returns the sessions removed
/// and the errors of those that could not be.
pub fn unpublish_all(state_dir: &Path) -> Result<(Vec<SessionState>, Vec<Error>)> {
    let (sessions, mut errors) = list_sessions(state_dir)?;
    let mut done = Vec::new();
    for mut s in sessions {
        match cleanup(&mut s, state_dir, true) {
            Ok(()) => done.push(s),
            Err(e) => errors.push(e),
        }
    }
    Ok((done, errors))
}

/// Removes everything `state` created. With `kill_daemon`, a publisher
/// still alive after its FUSE mount is gone is sent SIGTERM. The state file
/// is deleted only when nothing is left.
pub(crate) fn cleanup(state: &mut SessionState, state_dir: &Path, kill_daemon: bool) -> Result<()> {
    let mut errors = Vec::new();
    // 1. Filesystem mounts: recorded ones and anything under the session
    //    directory except the FUSE mount, deepest first.
    let mut targets: Vec<_> = system::mounts_under(&state.session_dir)
        .into_iter()
        .filter(|p| p != &state.fuse_mount)
        .collect();
    for m in &state.mounts {
        if !targets.contains(&m.mount_point) && system::is_mounted(&m.mount_point) {
            targets.push(m.mount_point.clone());
        }
    }
    for t in &targets {
        if let Err(e) = system::unmount(t) {
            errors.push(e.to_string());
        }
    }
    // 2. Loop devices over the FUSE files.
    for dev in system::loops_backed_under(&state.fuse_mount) {
        if let Err(e) = crate::loopdev::detach(&dev) {
            errors.push(e.to_string());
        }
    }
    // 3. The FUSE mount.
    if system::is_mounted(&state.fuse_mount) {
        if let Err(e) = system::unmount(&state.fuse_mount) {
            errors.push(e.to_string());
        }
    }
    // 4. The publisher, if it outlived its mount.
    if kill_daemon && daemon_alive(state.daemon_pid) {
        if let Some(pid) = rustix::process::Pid::from_raw(state.daemon_pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    // 5. Empty directories (never a recursive delete: a mount could hide
    //    under one).
    for m in &state.mounts {
        let _ = std::fs::remove_dir(&m.mount_point);
        if let Some(parent) = m.mount_point.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    let _ = std::fs::remove_dir(&state.fuse_mount);
    let _ = std::fs::remove_dir(&state.session_dir);

    let left_mounts = system::mounts_under(&state.session_dir);
    let left_loops = system::loops_backed_under(&state.fuse_mount);
    if !left_mounts.is_empty() || !left_loops.is_empty() {
        errors.push(format!(
            "still there: mounts {:?}, loop devices {:?}",
            left_mounts, left_loops
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Daemon(format!(
            "unpublishing {}: {}",
            state.session,
            errors.join("; ")
        )));
    }
    let path = state_path(state_dir, &state.session);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let _ = std::fs::remove_file(crate::log_path(state_dir, &state.session));
    Ok(())
}

/// True when `pid` runs a Lifeboat publisher (checked by its command line,
/// so a recycled pid is left alone).
pub fn daemon_alive(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie has already exited.
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains("publish")
}
