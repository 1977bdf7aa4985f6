//! `lifeboat backup --vm NAME qmp:SOCKET --guest-agent SOCKET`: with the
//! test guest booted (TCG) and Debian's qemu-ga answering, the restore point
//! is filesystem-consistent and `show`/`list` say so; with an agent socket
//! nothing serves (a paused QEMU, no boot), the backup succeeds
//! crash-consistent and warns why on stderr.

mod common;

use common::{init_repo, lifeboat, ok};
use lifeboat_hypervisor::AgentClient;
use lifeboat_testvm::{guest_image, BootOptions, DriveSpec, PausedQemu, Vm};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Boots the test guest from `disk` with a QMP socket, the guest agent's
/// channel and `extra` QEMU arguments; returns once the agent answers.
fn boot_with_agent(
    d: &std::path::Path,
    disk: &std::path::Path,
    extra: Vec<String>,
) -> (Vm, std::path::PathBuf, std::path::PathBuf) {
    let lifeboat_testvm::AgentGuest { vm, qmp, agent } =
        lifeboat_testvm::boot_agent_guest_from(d, disk, &[], extra);
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Err(e) =
        AgentClient::connect(&agent, Duration::from_secs(3)).and_then(|mut a| a.ping())
    {
        assert!(
            Instant::now() < deadline,
            "qemu-ga in the test guest did not answer within 120 s: {e}\n{}",
            vm.serial_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    (vm, qmp, agent)
}

/// `lifeboat backup --json` of VM web01 through `qmp` with the agent at
/// `agent`: the report.
fn backup_with_agent(repo: &str, qmp: &std::path::Path, agent: &std::path::Path) -> Value {
    let spec = format!("qmp:{}", qmp.display());
    serde_json::from_str(&ok(&[
        "backup",
        "--repo",
        repo,
        "--vm",
        "web01",
        &spec,
        "--guest-agent",
        agent.to_str().unwrap(),
        "--json",
    ]))
    .unwrap()
}

#[test]
fn backup_with_the_guest_agent_is_filesystem_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("guest.raw");
    std::fs::copy(guest_image(), &disk).unwrap();
    let (mut vm, qmp, agent) = boot_with_agent(d, &disk, Vec::new());

    let repo = init_repo(d);
    let r = repo.to_str().unwrap();
    let report = backup_with_agent(r, &qmp, &agent);
    assert_eq!(report["consistency"]["level"], "filesystem", "{report}");
    assert_eq!(report["consistency"]["frozen_filesystems"], 1, "{report}");

    let shown = ok(&["show", "--repo", r, "web01@latest"]);
    assert!(
        shown.contains("consistency   filesystem-consistent: 1 filesystem frozen"),
        "{shown}"
    );
    let listed = ok(&["list", "--repo", r]);
    assert!(listed.contains("filesystem-consistent"), "{listed}");
    // Thawed: the guest writes to its disk.
    assert_eq!(
        vm.run_ok("echo ok > /after && sync && cat /after")
            .unwrap()
            .trim(),
        "ok"
    );
}

#[test]
fn backup_with_an_unreachable_agent_warns_crash_consistent() {
    let q = PausedQemu::start_sized(8 << 20, &[]);
    let repo = init_repo(q.dir.path());
    let spec = format!("qmp:{}", q.qmp.display());
    let missing = q.dir.path().join("nobody.sock");
    let out = lifeboat()
        .args([
            "backup",
            "--repo",
            repo.to_str().unwrap(),
            "--vm",
            "web01",
            &spec,
            "--guest-agent",
            missing.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains("crash-consistent")
            && stderr.contains("cannot connect"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["consistency"]["level"], "crash", "{report}");
    let shown = ok(&["show", "--repo", repo.to_str().unwrap(), "web01@latest"]);
    assert!(
        shown.contains("consistency   crash-consistent: no guest agent at"),
        "{shown}"
    );
}

/// The report entry of the disk whose QEMU device is `id`.
fn disk_report<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"].as_str().unwrap_or_default().contains(id))
        .unwrap_or_else(|| panic!("no disk {id} in {report}"))
}

/// `e2fsck -n -f` of an ext4 image: its exit status and output.
fn e2fsck(image: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new("e2fsck")
        .args(["-n", "-f"])
        .arg(image)
        .output()
        .expect("e2fsck (apt-get install e2fsprogs)");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn live_backups_of_a_writing_guest_restore_what_the_guest_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let boot = d.join("guest.raw");
    std::fs::copy(guest_image(), &boot).unwrap();
    // The data disk: ext4 in a qcow2 (persistent bitmaps), /dev/vdb in the guest.
    let data_raw = d.join("data.raw");
    std::fs::File::create(&data_raw)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mkfs = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&data_raw)
        .status()
        .expect("mkfs.ext4 (apt-get install e2fsprogs)");
    assert!(mkfs.success());
    let data = d.join("data.qcow2");
    common::raw_to_qcow2(&data_raw, &data);
    let data_disk = vec![
        "-blockdev".to_string(),
        format!("driver=file,filename={},node-name=datafile", data.display()),
        "-blockdev".to_string(),
        "driver=qcow2,file=datafile,node-name=data".to_string(),
        "-device".to_string(),
        // A late PCI slot: the boot disk comes first, for the firmware
        // and as the guest's /dev/vda.
        "virtio-blk-pci,drive=data,id=vdb,addr=0x10".to_string(),
    ];
    let (mut vm, qmp, agent) = boot_with_agent(d, &boot, data_disk);
    let repo = init_repo(d);
    let r = repo.to_str().unwrap();
    let backup = || backup_with_agent(r, &qmp, &agent);

    // 1. Full backup of what the guest wrote.
    vm.run_ok(
        "mkdir -p /m && mount -t ext4 /dev/vdb /m && \
         dd if=/dev/urandom of=/m/a bs=1M count=4 2>/dev/null && sync",
    )
    .unwrap();
    let first = backup();
    assert_eq!(disk_report(&first, "vdb")["read"], "full", "{first}");
    assert_eq!(first["consistency"]["level"], "filesystem", "{first}");
    assert_eq!(first["consistency"]["frozen_filesystems"], 2, "{first}");

    // 2. A guest that writes all along: the point in time is frozen, so the
    //    restored filesystem checks clean.
    vm.run_ok(
        "sh -c 'i=0; while :; do dd if=/dev/urandom of=/m/c$((i % 8)) bs=64k count=8 \
         conv=fsync 2>/dev/null; i=$((i + 1)); done' >/dev/null 2>&1 & echo $! > /run/writer.pid",
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let busy = backup();
    let vdb = disk_report(&busy, "vdb");
    assert_eq!(vdb["read"], "incremental", "{busy}");
    assert_eq!(busy["consistency"]["level"], "filesystem", "{busy}");
    let busy_point = busy["restore_point"].as_str().unwrap().to_string();
    let vdb_name = vdb["disk"].as_str().unwrap().to_string();
    let restored = d.join("busy-vdb.raw");
    common::restore_raw(&repo, &busy_point, &vdb_name, &restored);
    let (code, report) = e2fsck(&restored);
    assert_eq!(
        code, 0,
        "the restore of a writing guest checks clean:\n{report}"
    );
    vm.run_ok("kill $(cat /run/writer.pid); sleep 1; sync")
        .unwrap();

    // 3. Known writes, the filesystem made read-only (nothing writes after),
    //    an incremental backup: its restore equals the disk QEMU holds.
    vm.run_ok(
        "dd if=/dev/urandom of=/m/b bs=1M count=3 2>/dev/null && \
         dd if=/dev/urandom of=/m/a bs=64k count=4 seek=10 conv=notrunc 2>/dev/null && \
         sync && mount -o remount,ro /m",
    )
    .unwrap();
    let last = backup();
    let vdb = disk_report(&last, "vdb");
    assert_eq!(vdb["read"], "incremental", "{last}");
    assert!(
        vdb["bytes_read"].as_u64().unwrap() < 64 << 20,
        "reads only what changed: {last}"
    );
    let point = last["restore_point"].as_str().unwrap().to_string();
    let vda_name = last["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["disk"] != vdb_name.as_str())
        .and_then(|d| d["disk"].as_str())
        .unwrap_or_else(|| panic!("no boot disk in {last}"))
        .to_string();
    vm.shutdown(Duration::from_secs(60)).unwrap();
    let now = d.join("data-now.raw");
    common::qemu_img(&[
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        data.to_str().unwrap(),
        now.to_str().unwrap(),
    ]);
    let got = common::restore_raw(&repo, &point, &vdb_name, &d.join("last-vdb.raw"));
    assert!(
        got == std::fs::read(&now).unwrap(),
        "the incremental restore point equals the guest's disk"
    );

    // 4. The restored boot disk boots.
    let vda = d.join("last-vda.raw");
    common::restore_raw(&repo, &point, &vda_name, &vda);
    let mut again = Vm::boot(DriveSpec::file(&vda), &BootOptions::default()).unwrap();
    again
        .wait_for_port22(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("the restored boot disk did not boot: {e}"));
}
