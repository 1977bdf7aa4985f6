//! External tools and machine requirements: finding a tool on the PATH (and
//! the sbin folders, where root's tools live) or failing the test with the
//! `apt-get install` line that brings it, the root check, and a lock that
//! keeps the tests of one binary that must not overlap (guest boots, loop
//! devices and mounts) one at a time.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// The path of `name` on the PATH or in the sbin/bin folders, if any.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The path of `name`; fails the test saying to `apt-get install package`
/// when it is missing.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!("`{name}` not found: install it with `apt-get install {package}` (scripts/test.sh does)")
    })
}

/// A [`Command`] for `name`, found with [`require_tool`].
pub fn tool(name: &str, package: &str) -> Command {
    Command::new(require_tool(name, package))
}

/// Fails the test unless it runs as root; `why` says what needs root
/// (e.g. "losetup, pvcreate").
pub fn require_root(why: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root ({why}): run it as root"
    );
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the tests of one test binary that take it one at a time (a test
/// that failed while holding it does not block the others).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's
/// pick; another process may take it before the caller binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}
