//! The repository locks (`locks/snapshots.lock`, `locks/gc.lock`) between
//! real processes: this test binary runs itself as the holder (the ignored
//! test `child_holds_the_repository_locks`), so the contending process and
//! the holder are two processes, as two `lifeboat` commands would be.

mod common;
use common::*;
use lifeboat_repo::*;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOLD_ENV: &str = "LIFEBOAT_TEST_HOLD_REPO";
const READY_ENV: &str = "LIFEBOAT_TEST_HOLD_READY";

/// Not a test of its own: the child process of the tests below. Takes
/// both repository locks of the repository named in `HOLD_ENV`, creates
/// the file named in `READY_ENV`, and keeps the locks until its stdin
/// closes (or it is killed).
#[test]
#[ignore = "the child process of the lock tests, run by them"]
fn child_holds_the_repository_locks() {
    let path = std::env::var(HOLD_ENV).expect("run by the lock tests only");
    let repo = Repository::open(Path::new(&path), None).unwrap();
    let _m = repo.hold_lock(RepositoryLock::Manifests, "prune").unwrap();
    let _g = repo.hold_lock(RepositoryLock::Gc, "gc").unwrap();
    std::fs::write(std::env::var(READY_ENV).unwrap(), b"held").unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

/// Starts the holder over `repo` and waits until it holds the locks.
fn holder(repo: &Path) -> Child {
    let ready = repo.with_extension("held");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_holds_the_repository_locks"])
        .arg("--test-threads=1")
        .env(HOLD_ENV, repo)
        .env(READY_ENV, &ready)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the holder process ended ({status}) before holding the locks");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the holder process did not take the locks within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Asserts `r` is `Busy` naming the holder `pid` doing `operation`.
fn assert_busy<T: std::fmt::Debug>(r: Result<T>, pid: u32, operation: &str, lock: &str) {
    match r {
        Err(e @ Error::Busy { .. }) => {
            let msg = e.to_string();
            for part in [
                format!("{operation} (pid {pid} on host {}", host()),
                format!("locks/{lock}"),
                "is busy".to_string(),
            ] {
                assert!(msg.contains(&part), "{msg:?} does not name {part:?}");
            }
        }
        other => panic!("expected Busy naming pid {pid}, got {other:?}"),
    }
}

#[test]
fn a_second_process_is_refused_with_a_message_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = init(&path, false);
    let m = backup(&repo, "web01", &noise(100_000, 1));
    let mut child = holder(&path);
    let pid = child.id();
    let repo = repo.with_lock_wait(Duration::from_millis(300));
    let start = Instant::now();
    assert_busy(
        repo.lock(&m, chrono::Utc::now() + chrono::Duration::days(1)),
        pid,
        "prune",
        "snapshots.lock",
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "did not wait"
    );
    assert_busy(repo.forget(&m), pid, "prune", "snapshots.lock");
    let keep = KeepPolicy {
        last: 1,
        ..Default::default()
    };
    assert_busy(repo.prune(&keep, false), pid, "prune", "snapshots.lock");
    // gc does not wait: a second gc would only repeat the first's work.
    assert_busy(repo.gc(), pid, "gc", "gc.lock");
    // Backups are not serialised by either lock.
    backup(&repo, "web01", &noise(50_000, 2));
    // Released (stdin closed): the same calls now go through.
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    repo.lock(&m, chrono::Utc::now() + chrono::Duration::days(1))
        .unwrap();
    repo.gc().unwrap();
    assert_eq!(repo.list(None).unwrap().len(), 2);
    // A clean release leaves no holder note behind.
    let note = std::fs::read(path.join("locks/snapshots.lock")).unwrap();
    assert!(note.is_empty(), "{:?}", String::from_utf8_lossy(&note));
}

#[test]
fn a_lock_file_left_by_a_killed_process_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = init(&path, false);
    let m = backup(&repo, "web01", &noise(100_000, 3));
    let mut child = holder(&path);
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    // The dead holder's note is still in the file...
    let note = std::fs::read_to_string(path.join("locks/snapshots.lock")).unwrap();
    assert!(note.contains(&format!("\"pid\":{pid}")), "{note:?}");
    // ...but the kernel released its flock: nothing waits.
    let repo = repo.with_lock_wait(Duration::ZERO);
    let start = Instant::now();
    repo.lock(&m, chrono::Utc::now() + chrono::Duration::days(1))
        .unwrap();
    repo.gc().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    let guard = repo
        .hold_lock(RepositoryLock::Manifests, "maintenance")
        .unwrap();
    let note = std::fs::read_to_string(path.join("locks/snapshots.lock")).unwrap();
    assert!(
        note.contains(&format!("\"pid\":{}", std::process::id())),
        "{note:?}"
    );
    assert!(note.contains("maintenance"), "{note:?}");
    drop(guard);
}
