//! SIGKILL at a bad moment: during a backup and during gc. The kill is
//! timed by polling the repository (chunk files appearing or disappearing),
//! never by sleeping, and the test checks the child was still running when
//! it was killed.
//!
//! What each proves: earlier restore points restore bit-exact, no half
//! restore point is listed, verify finds no damage, and the next backup and
//! gc work and clean up what the killed process left.

mod common;
use common::*;
use lifeboat_repo::layout::GC_MARGIN_SECS;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How long a poll waits for the repository to change before failing.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `lifeboat args...` in the background.
fn spawn(args: &[&str]) -> Child {
    lifeboat()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting lifeboat")
}

/// Polls `ready` until it holds, then SIGKILLs `child`. Fails the test if
/// the child ended before (the kill would not have interrupted anything)
/// or the condition never held.
fn kill_when(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("polling the child") {
            panic!("lifeboat ended ({status}) before {what}: nothing to interrupt");
        }
        if ready() {
            break;
        }
        assert!(
            start.elapsed() < POLL_TIMEOUT,
            "timed out after {POLL_TIMEOUT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reaping the child");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "lifeboat was killed: {status}");
}

/// Waits until files written before `since` are older than gc's cutoff
/// (`now - GC_MARGIN_SECS`), so gc may remove them.
fn wait_past_gc_margin(since: Instant) {
    let until = since + Duration::from_secs(GC_MARGIN_SECS) + Duration::from_millis(300);
    if let Some(left) = until.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// Runs `gc --json` and returns (chunks_removed, temp_files_removed).
fn gc(repo: &Path) -> (u64, u64) {
    let out = ok(&["gc", "--repo", s(repo), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("gc --json is JSON");
    (
        v["chunks_removed"].as_u64().expect("chunks_removed"),
        v["temp_files_removed"]
            .as_u64()
            .expect("temp_files_removed"),
    )
}

fn verify_clean(repo: &Path) {
    let out = ok(&["verify", "--repo", s(repo)]);
    assert!(out.contains("no damage"), "{out}");
}

#[test]
fn sigkill_during_backup_leaves_no_half_restore_point() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let a = dir.path().join("a.raw");
    let a_bytes = make_disk(&a, 4 << 20, 41);
    let rp_a = backup(&repo, "vma", &[("disk0", &a)]);
    let chunks_a = chunk_files(&repo);

    let b = dir.path().join("b.raw");
    std::fs::write(&b, random_bytes(192 << 20, 42)).unwrap();
    let mut child = spawn(&[
        "backup",
        "--repo",
        s(&repo),
        "--vm",
        "vmb",
        &format!("disk0={}", s(&b)),
    ]);
    // New chunks are staged (`.tmp-*` in the chunk directories) until the
    // backup commits.
    kill_when(&mut child, "the backup staged 16 chunks", || {
        temp_files(&repo.join("chunks")).len() >= 16
    });
    let killed_at = Instant::now();

    // What the killed backup left: staged chunks (temp files no other
    // backup reuses), its writer registration; no chunk under its name.
    let stale_chunks = chunk_files(&repo).len() - chunks_a.len();
    let temps = temp_files(&repo);
    let staged = temp_files(&repo.join("chunks")).len();
    let writers: Vec<PathBuf> = std::fs::read_dir(repo.join("writers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stale_chunks, 0, "an uncommitted backup names no chunk");
    assert!(
        staged >= 16,
        "the killed backup left {staged} staged chunks"
    );
    assert!(staged < 768, "the backup was interrupted, not finished");
    assert_eq!(
        writers.len(),
        1,
        "the killed backup's registration stays: {writers:?}"
    );

    // No half restore point; A restores bit-exact; no damage.
    assert_eq!(list_names(&repo), vec![rp_a.clone()]);
    let got = restore_raw(&repo, &rp_a, "disk0", &dir.path().join("a-out.raw"));
    assert!(got == a_bytes, "A restores bit-exact after the kill");
    verify_clean(&repo);

    // gc (once the leftovers are older than its safety margin) removes
    // exactly the temp files the killed backup left, and its stale
    // registration, and no chunk.
    wait_past_gc_margin(killed_at);
    let (removed, temps_removed) = gc(&repo);
    assert_eq!(removed, 0, "no orphan chunks to remove");
    assert!(
        temps_removed >= temps.len() as u64,
        "gc removes the {} temp files ({temps:?}), said {temps_removed}",
        temps.len()
    );
    assert_eq!(chunk_files(&repo), chunks_a, "only A's chunks remain");
    assert!(temp_files(&repo).is_empty(), "{:?}", temp_files(&repo));
    assert_eq!(std::fs::read_dir(repo.join("writers")).unwrap().count(), 0);

    // A new backup of B works; both restore points are sound.
    let rp_b = backup(&repo, "vmb", &[("disk0", &b)]);
    assert_eq!(list_names(&repo), vec![rp_a.clone(), rp_b]);
    assert_eq!(chunk_files(&repo).len(), chunks_a.len() + 768);
    verify_clean(&repo);
    let got = restore_raw(&repo, &rp_a, "disk0", &dir.path().join("a-out2.raw"));
    assert!(got == a_bytes);
    assert_eq!(gc(&repo), (0, 0), "nothing left to collect");
}

#[test]
fn sigkill_during_gc_leaves_remaining_restore_points_intact() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let k = dir.path().join("k.raw");
    let k_bytes = make_disk(&k, 4 << 20, 51);
    let rp_keep = backup(&repo, "keep", &[("disk0", &k)]);

    // Three restore points with 40 MiB of unique data each (160 chunks of
    // 256 KiB), sharing disk0 with the kept ones: 480 chunks to collect.
    let mut doomed_rps = Vec::new();
    let mut doomed_chunks: Vec<PathBuf> = Vec::new();
    for i in 0..3u64 {
        let r = dir.path().join(format!("r{i}.raw"));
        std::fs::write(&r, random_bytes(40 << 20, 100 + i)).unwrap();
        let before = chunk_files(&repo);
        doomed_rps.push(backup(&repo, "old", &[("disk0", &k), ("disk1", &r)]));
        doomed_chunks.extend(
            chunk_files(&repo)
                .into_iter()
                .filter(|c| !before.contains(c)),
        );
        std::fs::remove_file(&r).unwrap();
    }
    let doomed_written = Instant::now();
    assert_eq!(doomed_chunks.len(), 480);
    // A kept restore point of the same VM, sharing disk0.
    let r4 = dir.path().join("r4.raw");
    let r4_bytes = random_bytes(6 << 20, 104);
    std::fs::write(&r4, &r4_bytes).unwrap();
    let rp_old_kept = backup(&repo, "old", &[("disk0", &k), ("disk1", &r4)]);
    for rp in &doomed_rps {
        ok(&["forget", "--repo", s(&repo), rp]);
    }
    let live: Vec<PathBuf> = chunk_files(&repo)
        .into_iter()
        .filter(|c| !doomed_chunks.contains(c))
        .collect();

    // gc sweeps prefixes in name order: kill it once the count starts to
    // drop, i.e. 10 of the lowest-named doomed chunks are gone.
    doomed_chunks.sort();
    wait_past_gc_margin(doomed_written);
    let lowest = &doomed_chunks[..64];
    let mut child = spawn(&["gc", "--repo", s(&repo)]);
    kill_when(&mut child, "gc removed its first 10 chunks", || {
        lowest.iter().filter(|c| !c.exists()).count() >= 10
    });
    let left = doomed_chunks.iter().filter(|c| c.exists()).count();
    assert!(
        left > 0 && left < doomed_chunks.len(),
        "gc was interrupted mid-sweep ({left} of {} doomed chunks left)",
        doomed_chunks.len()
    );
    assert!(live.iter().all(|c| c.exists()), "no live chunk was removed");

    // The remaining restore points are intact.
    assert_eq!(
        list_names(&repo),
        vec![rp_keep.clone(), rp_old_kept.clone()]
    );
    let got = restore_raw(&repo, &rp_keep, "disk0", &dir.path().join("k-out.raw"));
    assert!(got == k_bytes, "keep disk0 restores bit-exact");
    let got = restore_raw(&repo, &rp_old_kept, "disk0", &dir.path().join("o0.raw"));
    assert!(got == k_bytes, "old disk0 restores bit-exact");
    let got = restore_raw(&repo, &rp_old_kept, "disk1", &dir.path().join("o1.raw"));
    assert!(got == r4_bytes, "old disk1 restores bit-exact");
    verify_clean(&repo);

    // A second gc finishes the job.
    let (removed, _) = gc(&repo);
    assert_eq!(removed, left as u64, "the second gc removes the rest");
    assert_eq!(chunk_files(&repo), live, "exactly the live chunks remain");
    verify_clean(&repo);
}
