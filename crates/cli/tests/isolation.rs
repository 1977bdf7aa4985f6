//! The two defects of issue 22, end to end through the `lifeboat` binary:
//! `verify` must not say "no damage" over a truncated index, and one
//! truncated manifest must not take the other restore points of its VM
//! with it (restore, show, `@latest`, list, prune, gc).

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Three restore points of web01 (each of a different disk content) with
/// their contents; the middle one shares nothing with the others.
fn three_points(dir: &Path) -> (PathBuf, Vec<String>, Vec<Vec<u8>>) {
    let repo = init_repo(dir);
    let mut rps = Vec::new();
    let mut data = Vec::new();
    for seed in 1..=3 {
        let disk = dir.join(format!("d{seed}.raw"));
        data.push(make_disk(&disk, 1 << 20, seed));
        rps.push(backup(&repo, "web01", &[("disk0", &disk)]));
    }
    (repo, rps, data)
}

fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len / 2).unwrap();
}

fn file_of(repo: &Path, rp: &str, index: bool) -> PathBuf {
    let (vm, id) = rp.split_once('@').unwrap();
    if index {
        repo.join("indexes").join(vm).join(id).join("disk0.idx")
    } else {
        repo.join("snapshots")
            .join(vm)
            .join(format!("{id}.manifest"))
    }
}

#[test]
fn verify_reports_a_truncated_index_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, rps, data) = three_points(dir.path());
    let idx = file_of(&repo, &rps[1], true);
    truncate_half(&idx);

    let out = run(&["verify", "--repo", s(&repo)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "verify: {stdout}");
    assert!(!stdout.contains("no damage"), "{stdout}");
    assert!(stdout.contains(s(&idx)), "names the index file: {stdout}");
    assert!(
        stdout.contains(&rps[1]),
        "names its restore point: {stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["verify", "--repo", s(&repo), "--json"]).stdout).unwrap();
    assert_eq!(v["damage"][0]["kind"], "index", "{v}");
    assert_eq!(
        v["restore_points_damaged"],
        serde_json::json!([rps[1]]),
        "{v}"
    );

    // Verify of another point is clean; of the damaged one, exit 3.
    ok(&["verify", "--repo", s(&repo), &rps[0]]);
    fails_with(3, &["verify", "--repo", s(&repo), &rps[1]]);
    // The others still restore; gc refuses to sweep, naming the index.
    for i in [0, 2] {
        let got = restore_raw(
            &repo,
            &rps[i],
            "disk0",
            &dir.path().join(format!("r{i}.raw")),
        );
        assert!(got == data[i], "{} restored bit-exact", rps[i]);
    }
    let err = fails_with(3, &["gc", "--repo", s(&repo)]);
    assert!(
        err.contains(s(&idx)) && err.contains("repo repair"),
        "{err}"
    );
}

#[test]
fn a_truncated_manifest_takes_only_its_own_restore_point() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, rps, data) = three_points(dir.path());
    let man = file_of(&repo, &rps[2], false);
    truncate_half(&man);

    // Every other restore point restores bit-exact, by id.
    for i in [0, 1] {
        let got = restore_raw(
            &repo,
            &rps[i],
            "disk0",
            &dir.path().join(format!("r{i}.raw")),
        );
        assert!(got == data[i], "{} restored bit-exact", rps[i]);
    }
    // @latest is the newest intact point, and says which it skipped.
    let to = dir.path().join("latest.raw");
    let out = run(&[
        "restore",
        "--repo",
        s(&repo),
        "web01@latest",
        "--disk",
        "disk0",
        "--to",
        s(&to),
        "--format",
        "raw",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        std::fs::read(&to).unwrap() == data[1],
        "@latest is {}",
        rps[1]
    );
    assert!(
        stderr.contains("skipped damaged restore point") && stderr.contains(&rps[2]),
        "{stderr}"
    );
    // The damaged one, named by its id, is refused naming its manifest.
    let err = fails_with(3, &["show", "--repo", s(&repo), &rps[2]]);
    assert!(err.contains(s(&man)), "{err}");
    // show of the others works.
    for rp in &rps[..2] {
        assert!(ok(&["show", "--repo", s(&repo), rp]).contains(rp.as_str()));
    }

    // list shows all three, the damaged one as such, and exits 0.
    let listed = ok(&["list", "--repo", s(&repo)]);
    assert!(
        listed.contains(&rps[0]) && listed.contains(&rps[1]),
        "{listed}"
    );
    assert!(listed.contains(&format!("DAMAGED {}", rps[2])), "{listed}");
    let names = list_names(&repo);
    assert_eq!(names, rps, "list --json lists the damaged one too");

    // verify: exit 3, names the manifest and only its point.
    let out = run(&["verify", "--repo", s(&repo)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(s(&man)) && stdout.contains(&rps[2]),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("restore point {} depends", rps[0])),
        "{stdout}"
    );

    // prune keeps the newest intact point and leaves the damaged one; gc
    // keeps every chunk the intact points need.
    let pruned = ok(&["prune", "--repo", s(&repo), "--keep-last", "1"]);
    assert!(pruned.contains(&format!("keep   {}", rps[1])), "{pruned}");
    assert!(pruned.contains(&format!("removed {}", rps[0])), "{pruned}");
    assert!(pruned.contains(&format!("damaged {}", rps[2])), "{pruned}");
    ok(&["gc", "--repo", s(&repo)]);
    let got = restore_raw(&repo, &rps[1], "disk0", &dir.path().join("after-gc.raw"));
    assert!(got == data[1], "restores after gc");
}
