//! End-to-end use of the `lifeboat` binary: init, backup, list, show,
//! restore (raw and qcow2), verify, lock, forget, prune, and the exit codes.

mod common;
use common::*;

#[test]
fn backup_list_show_restore_verify_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let d0 = dir.path().join("d0.raw");
    let d1 = dir.path().join("d1.raw");
    let c0 = make_disk(&d0, 5 << 20, 1);
    let c1 = make_disk(&d1, (3 << 20) + 4096, 2);
    let out = ok(&[
        "backup",
        "--repo",
        s(&repo),
        "--vm",
        "web01",
        &format!("disk0={}", s(&d0)),
        &format!("disk1={}", s(&d1)),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let name = v["restore_point"].as_str().unwrap().to_string();
    assert!(name.starts_with("web01@"), "{name}");
    assert_eq!(list_names(&repo), vec![name.clone()]);

    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["show", "--repo", s(&repo), "web01@latest", "--json"])).unwrap();
    assert_eq!(shown["manifest"]["disks"].as_array().unwrap().len(), 2);
    assert!(shown["usage"]["stored_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        shown["usage"]["logical_bytes"].as_u64().unwrap(),
        (c0.len() + c1.len()) as u64
    );

    let r0 = dir.path().join("r0.raw");
    ok(&[
        "restore",
        "--repo",
        s(&repo),
        "web01@latest",
        "--disk",
        "disk0",
        "--to",
        s(&r0),
    ]);
    assert!(
        std::fs::read(&r0).unwrap() == c0,
        "disk0 restored bit-exact"
    );
    let r1 = dir.path().join("r1.qcow2");
    ok(&[
        "restore",
        "--repo",
        s(&repo),
        &name,
        "--disk",
        "disk1",
        "--to",
        s(&r1),
    ]);
    let q = lifeboat_formats::open_image(&r1).unwrap();
    let mut got = vec![0u8; c1.len()];
    q.read_at(&mut got, 0).unwrap();
    assert!(got == c1, "disk1 restored to qcow2 bit-exact");

    // Two disks and no --disk: a clear refusal naming them.
    let err = fails_with(
        1,
        &[
            "restore",
            "--repo",
            s(&repo),
            "web01@latest",
            "--to",
            s(&dir.path().join("x")),
        ],
    );
    assert!(err.contains("disk0") && err.contains("disk1"), "{err}");

    let verify = ok(&["verify", "--repo", s(&repo)]);
    assert!(verify.contains("no damage"), "{verify}");
}

#[test]
fn second_backup_stores_only_new_chunks_and_is_logically_full() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let d = dir.path().join("d.raw");
    let mut content = make_disk(&d, 8 << 20, 3);
    let disk = format!("disk0={}", s(&d));
    let backup = |extra: &[&str]| {
        let args = [&["backup", "--repo", s(&repo), "--vm", "vm", &disk], extra].concat();
        run(&args)
    };
    assert!(backup(&[]).status.success());
    let before = chunk_files(&repo).len();
    // Change 1 byte in one chunk; this backup compresses at its own level.
    content[5 << 20] ^= 0xFF;
    std::fs::write(&d, &content).unwrap();
    let out = backup(&["--compression-level", "7", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["manifest"]["disks"][0]["stats"]["new_chunks"].as_u64(),
        Some(1)
    );
    let bad = backup(&["--compression-level", "20"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("--compression-level") && stderr.contains("20"),
        "{stderr}"
    );
    assert_eq!(chunk_files(&repo).len(), before + 1);
    // Forget the first: the second still restores completely.
    let names = list_names(&repo);
    ok(&["forget", "--repo", s(&repo), &names[0]]);
    ok(&["gc", "--repo", s(&repo)]);
    let r = dir.path().join("r.raw");
    ok(&["restore", "--repo", s(&repo), "vm@latest", "--to", s(&r)]);
    assert!(std::fs::read(&r).unwrap() == content);
}

#[test]
fn wrong_passphrase_exits_4_and_names_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let out = lifeboat()
        .env("LIFEBOAT_PASSPHRASE", "not the passphrase")
        .args(["list", "--repo", s(&repo)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("passphrase") && err.contains(s(&repo)),
        "{err}"
    );
    let out = lifeboat()
        .env_remove("LIFEBOAT_PASSPHRASE")
        .args(["list", "--repo", s(&repo)])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let config = repo.join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["format_version"] = serde_json::json!(99);
    std::fs::write(&config, serde_json::to_string(&v).unwrap()).unwrap();
    let err = fails_with(1, &["list", "--repo", s(&repo)]);
    assert!(err.contains("99"), "names the version it found: {err}");
}

#[test]
fn locked_restore_point_cannot_be_forgotten_pruned_or_unlocked() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let d = dir.path().join("d.raw");
    make_disk(&d, 2 << 20, 4);
    ok(&[
        "backup",
        "--repo",
        s(&repo),
        "--vm",
        "vm",
        &format!("disk0={}", s(&d)),
    ]);
    ok(&[
        "backup",
        "--repo",
        s(&repo),
        "--vm",
        "vm",
        &format!("disk0={}", s(&d)),
    ]);
    let names = list_names(&repo);
    ok(&[
        "lock",
        "--repo",
        s(&repo),
        &names[0],
        "--until",
        "2099-01-01",
    ]);
    let err = fails_with(6, &["forget", "--repo", s(&repo), &names[0]]);
    assert!(err.contains(&names[0]), "{err}");
    fails_with(
        6,
        &[
            "lock",
            "--repo",
            s(&repo),
            &names[0],
            "--until",
            "2098-01-01",
        ],
    );
    ok(&[
        "lock",
        "--repo",
        s(&repo),
        &names[0],
        "--until",
        "2100-01-01",
    ]);
    let pruned = ok(&["prune", "--repo", s(&repo), "--keep-last", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&pruned).unwrap();
    assert!(
        v["removed"].as_array().unwrap().is_empty(),
        "locked one kept: {pruned}"
    );
    assert_eq!(list_names(&repo).len(), 2);
}

#[test]
fn prune_dry_run_removes_nothing_and_prune_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let d = dir.path().join("d.raw");
    make_disk(&d, 1 << 20, 5);
    for _ in 0..3 {
        ok(&[
            "backup",
            "--repo",
            s(&repo),
            "--vm",
            "vm",
            &format!("disk0={}", s(&d)),
        ]);
    }
    let names = list_names(&repo);
    ok(&["prune", "--repo", s(&repo), "--keep-last", "1", "--dry-run"]);
    assert_eq!(list_names(&repo), names);
    // --vm: only that VM's points are pruned.
    let prune_vm = |vm: &str| ok(&["prune", "--repo", s(&repo), "--keep-last", "1", "--vm", vm]);
    prune_vm("other");
    assert_eq!(list_names(&repo), names);
    prune_vm("vm");
    assert_eq!(list_names(&repo), vec![names[2].clone()]);
    fails_with(5, &["show", "--repo", s(&repo), &names[0]]);
}
