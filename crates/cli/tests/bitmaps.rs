//! `lifeboat bitmaps qmp:SOCKET` against a real QEMU (the fixture's
//! qemu-system-x86_64, paused with -S: no guest boot needed).

mod common;

use common::{lifeboat, ok};
use lifeboat_hypervisor::{create_bitmap, list_disks, QmpClient};
use lifeboat_testvm::PausedQemu;
use serde_json::{json, Value};

/// QEMU paused with a qcow2 disk (scsi-hd `sda`) and a raw disk (`sdb`) of 8 MiB.
fn start_qemu() -> PausedQemu {
    PausedQemu::start_sized(8 << 20, &[])
}

#[test]
fn bitmaps_shows_tracking_and_the_next_read() {
    let q = start_qemu();
    let sock = q.qmp.clone();
    let spec = format!("qmp:{}", sock.display());

    let v: Value = serde_json::from_str(&ok(&["bitmaps", &spec, "--json"])).unwrap();
    assert_eq!(v["disks"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["disks"][0]["disk"], "sda");
    assert_eq!(v["disks"][0]["tracking"]["kind"], "persistent");
    assert_eq!(v["disks"][0]["next_backup"]["read"], "full");
    assert_eq!(v["disks"][1]["tracking"]["kind"], "non-persistent");
    let why = v["disks"][1]["next_backup"]["reason"].as_str().unwrap();
    assert!(why.contains("do not survive a VM restart"), "{why}");

    let c = QmpClient::connect(&sock).unwrap();
    let disks = list_disks(&c).unwrap();
    create_bitmap(&c, &disks[0], "lifeboat-1").unwrap();
    c.execute(
        "human-monitor-command",
        json!({"command-line": "qemu-io -d sda \"write -P 7 1M 64k\""}),
    )
    .unwrap();
    // QEMU serves one QMP client at a time.
    drop(c);

    let v: Value = serde_json::from_str(&ok(&["bitmaps", &spec, "--json"])).unwrap();
    let sda = &v["disks"][0];
    assert_eq!(
        sda["next_backup"],
        json!({"read": "incremental", "bitmap": "lifeboat-1", "dirty_bytes": 65536})
    );
    assert_eq!(sda["bitmaps"][0]["persistent"], true);
    let text = ok(&["bitmaps", &spec]);
    assert!(text.contains("QEMU 7."), "{text}");
    assert!(
        text.contains("bitmap lifeboat-1: persistent, recording, 64.0 KiB dirty"),
        "{text}"
    );
    assert!(
        text.contains("next backup: incremental, reads 64.0 KiB dirty (bitmap lifeboat-1)"),
        "{text}"
    );
    assert!(
        text.contains("next backup: full read: no lifeboat-* bitmap on sdb"),
        "{text}"
    );
}

#[test]
fn bitmaps_names_a_missing_or_wrong_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("web01.qmp");
    let out = lifeboat()
        .args(["bitmaps", &format!("qmp:{}", sock.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to the QMP socket") && err.contains("web01.qmp"),
        "{err}"
    );

    let out = lifeboat()
        .args(["bitmaps", "/run/web01.qmp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected qmp:/path/to/qmp.sock"), "{err}");
}

/// Lets the paused VM run.
fn cont(sock: &std::path::Path) {
    QmpClient::connect(sock)
        .unwrap()
        .execute("cont", Value::Null)
        .unwrap();
}

/// One qemu-io command through HMP on device `qdev`, as the guest writes.
fn guest_write(sock: &std::path::Path, qdev: &str, cmd: &str) {
    let c = QmpClient::connect(sock).unwrap();
    c.execute(
        "human-monitor-command",
        json!({"command-line": format!("qemu-io -d {qdev} \"{cmd}\"")}),
    )
    .unwrap();
}

#[test]
fn backup_of_a_running_vm_is_full_then_incremental_and_restores() {
    let q = start_qemu();
    let sock = q.qmp.clone();
    let spec = format!("qmp:{}", sock.display());
    cont(&sock);
    let repo = common::init_repo(q.dir.path());
    let r = repo.to_str().unwrap();
    guest_write(&sock, "sda", "write -P 0x11 0 1M");

    let full: Value = serde_json::from_str(&ok(&[
        "backup", "--repo", r, "--vm", "web01", &spec, "--json",
    ]))
    .unwrap();
    assert_eq!(full["disks"][0]["read"], "full", "{full}");
    assert!(full["disks"][0]["why_full"].is_string(), "{full}");
    assert_eq!(
        full["compression_level"], 1,
        "a live backup compresses at level 1 unless told: {full}"
    );
    guest_write(&sock, "sda", "write -P 0x22 4M 64k");
    let text = ok(&[
        "backup",
        "--repo",
        r,
        "--vm",
        "web01",
        &spec,
        "--compression-level",
        "9",
    ]);
    assert!(text.contains("crash-consistent"), "{text}");
    assert!(text.contains("zstd level 9"), "{text}");
    let sda = text
        .lines()
        .find(|l| l.trim_start().starts_with("sda"))
        .unwrap();
    assert!(
        sda.contains("incremental") && sda.contains("64.0 KiB"),
        "{text}"
    );
    assert!(
        text.contains("not persistent"),
        "the raw disk says so: {text}"
    );

    // The incremental restore point restores the disk as it was.
    let out = q.dir.path().join("sda.raw");
    let got = common::restore_raw(&repo, "web01@latest", "sda", &out);
    let mut want = vec![0u8; 8 << 20];
    want[..1 << 20].fill(0x11);
    want[4 << 20..(4 << 20) + (64 << 10)].fill(0x22);
    assert!(got == want, "restored bit-exact");
    // `show` records how each disk was read.
    let show: Value =
        serde_json::from_str(&ok(&["show", "--repo", r, "web01@latest", "--json"])).unwrap();
    assert_eq!(
        show["manifest"]["disks"][0]["live"]["read"], "incremental",
        "{show}"
    );
}

#[test]
fn a_second_live_backup_of_the_same_vm_is_refused_at_once() {
    let q = start_qemu();
    let sock = q.qmp.clone();
    let spec = format!("qmp:{}", sock.display());
    let repo = common::init_repo(q.dir.path());
    let r = repo.to_str().unwrap();
    // This test process holds the VM's lock, as a running backup does.
    let held = lifeboat_hypervisor::VmLock::acquire(&sock, "web01").unwrap();
    let err = common::fails_with(9, &["backup", "--repo", r, "--vm", "web01", &spec]);
    assert!(err.contains("another live backup of the VM"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "names the holder: {err}"
    );
    assert!(
        err.contains(&held.path().display().to_string()),
        "names the lock: {err}"
    );
    assert!(
        common::list_names(&repo).is_empty(),
        "no restore point was made"
    );
    drop(held);
    let done: Value = serde_json::from_str(&ok(&[
        "backup", "--repo", r, "--vm", "web01", &spec, "--json",
    ]))
    .unwrap();
    assert_eq!(done["disks"][0]["read"], "full", "{done}");
}

#[test]
fn a_bitmap_rotated_by_a_backup_to_another_repository_means_a_full_read() {
    let q = start_qemu();
    let sock = q.qmp.clone();
    let spec = format!("qmp:{}", sock.display());
    cont(&sock);
    let (dir_a, dir_b) = (q.dir.path().join("a"), q.dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let (repo_a, repo_b) = (common::init_repo(&dir_a), common::init_repo(&dir_b));
    let backup = |repo: &std::path::Path| -> Value {
        let r = repo.to_str().unwrap();
        serde_json::from_str(&ok(&[
            "backup", "--repo", r, "--vm", "web01", &spec, "--json",
        ]))
        .unwrap()
    };
    guest_write(&sock, "sda", "write -P 0x31 0 1M");
    assert_eq!(backup(&repo_a)["disks"][0]["read"], "full");
    guest_write(&sock, "sda", "write -P 0x32 2M 64k");
    // Another repository's backup rotates the bitmap: repository A's
    // latest restore point no longer matches it.
    assert_eq!(backup(&repo_b)["disks"][0]["read"], "full");
    guest_write(&sock, "sda", "write -P 0x33 5M 64k");
    let again = backup(&repo_a);
    let sda = &again["disks"][0];
    assert_eq!(sda["read"], "full", "{again}");
    let why = sda["why_full"].as_str().unwrap_or_default();
    assert!(
        why.contains("does not belong to the latest restore point"),
        "{again}"
    );
    // The full read holds every write, the one between A's two points too.
    let out = q.dir.path().join("sda.raw");
    let restored = common::restore_raw(&repo_a, "web01@latest", "sda", &out);
    let mut want = vec![0u8; 8 << 20];
    want[..1 << 20].fill(0x31);
    want[2 << 20..(2 << 20) + (64 << 10)].fill(0x32);
    want[5 << 20..(5 << 20) + (64 << 10)].fill(0x33);
    assert!(restored == want, "restored bit-exact");
}

#[test]
fn a_vm_killed_mid_backup_leaves_no_restore_point_and_the_next_backup_succeeds() {
    const SIZE: usize = 256 << 20;
    let mut q = PausedQemu::start_sized(SIZE as u64, &[]);
    let sock = q.qmp.clone();
    let spec = format!("qmp:{}", sock.display());
    // Incompressible data on sda, so that reading and storing it takes a
    // while: the VM is killed in the middle.
    q.kill();
    let data = common::random_bytes(SIZE, 7);
    let raw = q.dir.path().join("data.raw");
    std::fs::write(&raw, &data).unwrap();
    common::raw_to_qcow2(&raw, &q.dir.path().join("disk0.qcow2"));
    std::fs::remove_file(&raw).unwrap();
    q.restart();
    cont(&sock);
    let repo = common::init_repo(q.dir.path());
    let r = repo.to_str().unwrap();
    let work = q.work_dir();
    let w = work.to_str().unwrap();

    let backup_args = [
        "backup",
        "--repo",
        r,
        "--vm",
        "web01",
        "--work-dir",
        w,
        &spec,
    ];
    let mut backup = lifeboat()
        .args(backup_args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let overlays = || -> Vec<String> {
        std::fs::read_dir(&work)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("lifeboat-fleece-"))
            .collect()
    };
    // The point in time is held (its overlay exists): kill the VM.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while overlays().is_empty() {
        assert!(
            backup.try_wait().unwrap().is_none(),
            "the backup ended before the VM could be killed"
        );
        assert!(std::time::Instant::now() < deadline, "no overlay appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    q.kill();
    let out = backup.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the backup failed: {err}");
    assert!(err.contains("web01"), "names the VM: {err}");
    assert!(
        common::list_names(&repo).is_empty(),
        "no half restore point"
    );
    assert!(
        overlays().is_empty(),
        "the fleecing overlay is removed: {:?}",
        overlays()
    );

    // The same VM, restarted: the next backup works, reads in full and
    // says why, and restores bit-exact.
    q.restart();
    cont(&sock);
    let done: Value =
        serde_json::from_str(&ok(&[backup_args.as_slice(), &["--json"]].concat())).unwrap();
    let sda = &done["disks"][0];
    assert_eq!(sda["read"], "full", "{done}");
    assert!(sda["why_full"].is_string(), "{done}");
    let to = q.dir.path().join("sda.raw");
    let restored = common::restore_raw(&repo, "web01@latest", "sda", &to);
    assert!(restored == data, "restored bit-exact");
}
