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
    QmpClient::connect(&sock)
        .unwrap()
        .execute("cont", Value::Null)
        .unwrap();
    let repo = common::init_repo(q.dir.path());
    let r = repo.to_str().unwrap();
    guest_write(&sock, "sda", "write -P 0x11 0 1M");

    let full: Value = serde_json::from_str(&ok(&[
        "backup", "--repo", r, "--vm", "web01", &spec, "--json",
    ]))
    .unwrap();
    assert_eq!(full["disks"][0]["read"], "full", "{full}");
    assert!(full["disks"][0]["why_full"].is_string(), "{full}");
    guest_write(&sock, "sda", "write -P 0x22 4M 64k");
    let text = ok(&["backup", "--repo", r, "--vm", "web01", &spec]);
    assert!(text.contains("crash-consistent"), "{text}");
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
    ok(&[
        "restore",
        "--repo",
        r,
        "web01@latest",
        "--disk",
        "sda",
        "--to",
        out.to_str().unwrap(),
    ]);
    let got = std::fs::read(&out).unwrap();
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
