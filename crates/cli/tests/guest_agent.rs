//! `lifeboat backup --vm NAME qmp:SOCKET --guest-agent SOCKET`: with the
//! test guest booted (TCG) and Debian's qemu-ga answering, the restore point
//! is filesystem-consistent and `show`/`list` say so; with an agent socket
//! nothing serves (a paused QEMU, no boot), the backup succeeds
//! crash-consistent and warns why on stderr.

mod common;

use common::{init_repo, lifeboat, ok};
use lifeboat_hypervisor::AgentClient;
use lifeboat_testvm::{
    guest_image, virtio_serial_args, BootOptions, DriveSpec, PausedQemu, Vm, GUEST_AGENT_PORT,
};
use serde_json::Value;
use std::time::{Duration, Instant};

#[test]
fn backup_with_the_guest_agent_is_filesystem_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("guest.raw");
    std::fs::copy(guest_image(), &disk).unwrap();
    let (qmp, agent) = (d.join("qmp.sock"), d.join("qga.sock"));
    let mut extra_args = vec![
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ];
    extra_args.extend(virtio_serial_args(&[(&agent, GUEST_AGENT_PORT)]));
    let opts = BootOptions {
        extra_args,
        ..BootOptions::default()
    };
    let mut vm = Vm::boot(DriveSpec::file(&disk), &opts).unwrap();
    vm.wait_for_port22(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("the test guest did not boot: {e}"));
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

    let repo = init_repo(d);
    let r = repo.to_str().unwrap();
    let spec = format!("qmp:{}", qmp.display());
    let a = agent.to_str().unwrap();
    let report: Value = serde_json::from_str(&ok(&[
        "backup",
        "--repo",
        r,
        "--vm",
        "web01",
        &spec,
        "--guest-agent",
        a,
        "--json",
    ]))
    .unwrap();
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
