//! `lifeboat backup --vm NAME qmp:SOCK --guest-agent SOCK --app-aware
//! --pre-freeze SCRIPT --post-thaw SCRIPT`: `--app-aware` without
//! `--guest-agent` is a usage error (exit 2); a lifeboat without its helper
//! binary beside it says where it looked and backs up without application
//! awareness, saying why; on the booted test guest, with the statically
//! linked helper, the restore point is application-consistent and the
//! scripts' output is in the JSON and in the human output.

mod common;

use common::{fails_with, init_repo, ok};
use lifeboat_hypervisor::AgentClient;
use lifeboat_testvm::{boot_agent_guest, guest_helper_binary, AgentGuest, PausedQemu};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn app_aware_without_a_guest_agent_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let repo = init_repo(d.path());
    let err = fails_with(
        2,
        &[
            "backup",
            "--repo",
            repo.to_str().unwrap(),
            "--vm",
            "web01",
            "qmp:/nonexistent.sock",
            "--app-aware",
            "--pre-freeze",
            "/bin/true",
        ],
    );
    assert!(err.contains("--guest-agent"), "{err}");
}

#[test]
fn a_missing_helper_binary_is_named_and_the_backup_goes_on() {
    let q = PausedQemu::start_sized(8 << 20, &[]);
    let d = q.dir.path();
    let repo = init_repo(d);
    // A lifeboat with nothing beside it.
    let bin_dir = d.join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let exe = bin_dir.join("lifeboat");
    std::fs::copy(env!("CARGO_BIN_EXE_lifeboat"), &exe).unwrap();
    let pre = script(d, "pre.sh", "true");
    let out = std::process::Command::new(&exe)
        .env("LIFEBOAT_PASSPHRASE", common::PASSPHRASE)
        .args(["backup", "--repo", repo.to_str().unwrap(), "--vm", "web01"])
        .arg(format!("qmp:{}", q.qmp.display()))
        .arg("--guest-agent")
        .arg(d.join("nobody.sock"))
        .arg("--app-aware")
        .arg("--pre-freeze")
        .arg(&pre)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let looked = bin_dir.join("lifeboat-guest-helper");
    assert!(
        stderr.contains(&format!("no guest helper binary at {}", looked.display()))
            && stderr.contains("looked beside the lifeboat executable")
            && stderr.contains("is not application-consistent"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["consistency"]["level"], "crash", "{report}");
    let why = report["consistency"]["why"].as_str().unwrap();
    assert!(
        why.starts_with("not application-consistent: no guest agent"),
        "{why}"
    );
}

#[test]
fn app_aware_backup_of_the_test_guest() {
    let helper = guest_helper_binary();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let AgentGuest { mut vm, qmp, agent } = boot_agent_guest(d, &[3542]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Err(e) =
        AgentClient::connect(&agent, Duration::from_secs(3)).and_then(|mut a| a.ping())
    {
        assert!(Instant::now() < deadline, "qemu-ga did not answer: {e}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let repo = init_repo(d);
    let pre = script(d, "pre.sh", "echo quiescing the app; sync");
    let post = script(d, "post.sh", "echo resuming the app");
    let address = format!("127.0.0.1:{}", vm.forwarded_port(3542).unwrap());
    let spec = format!("qmp:{}", qmp.display());
    let args = |json: bool| {
        let mut a: Vec<String> = [
            "backup",
            "--repo",
            repo.to_str().unwrap(),
            "--vm",
            "web01",
            &spec,
            "--guest-agent",
            agent.to_str().unwrap(),
            "--app-aware",
            "--pre-freeze",
            pre.to_str().unwrap(),
            "--post-thaw",
            post.to_str().unwrap(),
            "--script-timeout",
            "30",
            "--guest-helper-address",
            &address,
            "--guest-helper-bin",
            helper.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if json {
            a.push("--json".into());
        }
        a
    };
    let a = args(true);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let report: Value = serde_json::from_str(&ok(&a)).unwrap();
    assert_eq!(report["consistency"]["level"], "application", "{report}");
    let app = &report["app_aware"];
    assert_eq!(app["pre_freeze"]["exit_code"], 0, "{app}");
    assert_eq!(app["pre_freeze"]["output"][0]["text"], "quiescing the app");
    assert_eq!(app["post_thaw"]["output"][0]["text"], "resuming the app");
    assert_eq!(app["removed"], true, "{app}");
    let shown = ok(&["show", "--repo", repo.to_str().unwrap(), "web01@latest"]);
    assert!(
        shown.contains("consistency   application-consistent: the pre-freeze script succeeded"),
        "{shown}"
    );

    // The human output, incremental this time.
    let a = args(false);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let text = ok(&a);
    assert!(text.contains("application-consistent"), "{text}");
    assert!(
        text.contains("pre-freeze script exited with status 0")
            && text.contains("stdout | quiescing the app")
            && text.contains("post-thaw script exited with status 0")
            && text.contains("stdout | resuming the app")
            && text.contains(": removed"),
        "{text}"
    );
    let left = vm.run("ls -d /run/lifeboat-helper-* 2>&1").unwrap();
    assert!(left.output.contains("No such file"), "{}", left.output);
}
