//! Application-aware live backup on the test guest (TCG, Debian's qemu-ga):
//! the statically linked helper is copied into the guest through the agent,
//! started, reached over TLS through a QEMU hostfwd to its port 3542, runs
//! the pre-freeze script before the freeze and the post-thaw script after
//! the thaw, and is removed. One boot, in turn:
//!
//! (a) scripts that succeed: application-consistent; the marker the
//!     pre-freeze script wrote is in the restored disk; the post-thaw
//!     script ran after the thaw (it wrote to the disk) and its output is
//!     reported; the helper's directory is gone from the guest;
//! (b) a pre-freeze script that exits 3: filesystem-consistent, saying so;
//!     the post-thaw script still runs;
//! (c) a pre-freeze script that hangs: killed at the script timeout, the
//!     guest frozen and thawed, the post-thaw script runs, no `sleep` left;
//! (d) a helper nobody can reach (a wrong address) and (e) a helper binary
//!     that does not exist: filesystem-consistent, saying why, nothing left
//!     in the guest.
//!
//! Without a guest, with the static helper run on this host: `pinned_tls`
//! (a certificate that fails its pin, either way, is `ConnectError::Mismatch`)
//! and a helper killed mid-script (the session ends at once). More of the
//! helper alone is in crates/guest-helper/tests/helper.rs.

mod common;
use common::lifeboat_nodes;
use lifeboat_engine::NoProgress;
use lifeboat_hypervisor::{
    live_backup, AgentClient, AgentOptions, AppAwareOptions, FreezeStatus, LiveBackupOptions,
    LiveBackupReport, QmpClient, LIVE_COMPRESSION_LEVEL,
};
use lifeboat_repo::{ConsistencyLevel, Repository};
use lifeboat_testsupport::repo::init_repo;
use lifeboat_testvm::{
    boot_agent_guest, guest_helper_binary, read_guest_file, try_guest_fixture, AgentGuest, Vm,
};
use lifeboat_vdisk::ReadDisk;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HELPER_PORT: u16 = 3542;

struct Guest {
    vm: Vm,
    dir: tempfile::TempDir,
    qmp: PathBuf,
    agent: PathBuf,
}

fn boot() -> Guest {
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-app-aware.")
        .tempdir()
        .unwrap();
    let t0 = Instant::now();
    let AgentGuest { mut vm, qmp, agent } = boot_agent_guest(dir.path(), &[HELPER_PORT]);
    vm.set_command_timeout(Duration::from_secs(30));
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
    eprintln!("guest and agent up in {:?}", t0.elapsed());
    Guest {
        vm,
        dir,
        qmp,
        agent,
    }
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn backup(g: &Guest, repo: &Repository, c: &QmpClient, app: AppAwareOptions) -> LiveBackupReport {
    let work = g.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700)).unwrap();
    let opts = LiveBackupOptions {
        vm: "vm1".into(),
        work_dir: work,
        connections: 2,
        timeout: Duration::from_secs(60),
        method: None,
        compression_level: LIVE_COMPRESSION_LEVEL,
        agent: Some(AgentOptions {
            app_aware: Some(app),
            ..AgentOptions::new(&g.agent)
        }),
    };
    let t0 = Instant::now();
    let report = live_backup(repo, c, &opts, &NoProgress).unwrap();
    eprintln!(
        "backup {:?}: {} ({:?})\n{}",
        t0.elapsed(),
        report.consistency.describe(),
        report.app_aware,
        serde_json::to_string_pretty(&report.app_aware).unwrap()
    );
    let m = repo.resolve(&report.restore_point).unwrap();
    assert_eq!(m.consistency.as_ref(), Some(&report.consistency));
    report
}

fn why(r: &LiveBackupReport) -> String {
    r.consistency.why.clone().unwrap_or_default()
}

/// No helper directory, no helper process, the filesystems thawed.
fn assert_clean(g: &mut Guest, what: &str) {
    let out = g
        .vm
        .run("ls -d /run/lifeboat-helper-* 2>&1; ps | grep -v grep | grep -e lifeboat-guest-helper -e 'sleep 600'")
        .unwrap();
    assert!(
        out.output.contains("No such file")
            && !out.output.contains("lifeboat-guest-helper ")
            && !out.output.contains("sleep 600"),
        "{what}: {}",
        out.output
    );
    let mut a = AgentClient::connect(&g.agent, Duration::from_secs(10)).unwrap();
    assert_eq!(a.fsfreeze_status().unwrap(), FreezeStatus::Thawed, "{what}");
}

/// A file of the restore point's disk, read with debugfs.
fn restored_file(repo: &Repository, rp: &str, dir: &Path, path: &str) -> String {
    let m = repo.resolve(rp).unwrap();
    let name = m.disks[0].name.clone();
    let d = repo.open_disk(&m, &name).unwrap();
    let mut buf = vec![0u8; d.size() as usize];
    d.read_at(&mut buf, 0).unwrap();
    let img = dir.join("restored.raw");
    std::fs::write(&img, &buf).unwrap();
    let offset = try_guest_fixture().unwrap().partition_offset;
    let data = read_guest_file(&img, offset, path).unwrap_or_else(|e| panic!("{path}: {e}"));
    std::fs::remove_file(&img).unwrap();
    String::from_utf8_lossy(&data).into_owned()
}

#[test]
fn application_aware_backups_of_the_test_guest() {
    let helper = guest_helper_binary();
    let mut g = boot();
    let c = QmpClient::connect_with_timeout(&g.qmp, Duration::from_secs(60)).unwrap();
    let repo = init_repo(&g.dir.path().join("repo"), Some("pw"), 256 << 10);
    let host_port = g.vm.forwarded_port(HELPER_PORT).unwrap();
    let sd = g.dir.path().to_path_buf();
    let opts = |pre: PathBuf| AppAwareOptions {
        post_thaw: Some(script(
            &sd,
            "post.sh",
            "echo post-thaw ran; date > /post-marker && sync && echo wrote the post marker",
        )),
        script_timeout: Duration::from_secs(20),
        address: Some(format!("127.0.0.1:{host_port}")),
        ..AppAwareOptions::new(&helper, pre)
    };

    // (a) Everything works: application-consistent.
    let pre = script(
        &sd,
        "pre.sh",
        "echo pre-freeze in the guest; echo flushed-by-the-app > /app-marker && sync",
    );
    let r = backup(&g, &repo, &c, opts(pre));
    assert_eq!(r.consistency.level, ConsistencyLevel::Application, "{r:?}");
    assert_eq!(r.consistency.frozen_filesystems, 1);
    assert!(why(&r).contains("the pre-freeze script succeeded"), "{r:?}");
    let app = r.app_aware.as_ref().unwrap();
    let pre = app.pre_freeze.as_ref().unwrap();
    assert_eq!((pre.status, pre.exit_code), ("exited", Some(0)));
    assert_eq!(pre.output[0].text, "pre-freeze in the guest");
    let post = app.post_thaw.as_ref().unwrap();
    assert_eq!(
        (post.status, post.exit_code),
        ("exited", Some(0)),
        "{post:?}"
    );
    let lines: Vec<&str> = post.output.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(lines, ["post-thaw ran", "wrote the post marker"]);
    assert!(app.removed && app.fault.is_none(), "{app:?}");
    assert_clean(&mut g, "after (a)");
    assert!(g.vm.run_ok("cat /post-marker").unwrap().len() > 5);
    assert_eq!(
        restored_file(&repo, &r.restore_point, g.dir.path(), "/app-marker").trim(),
        "flushed-by-the-app"
    );

    // (b) The pre-freeze script fails: filesystem-consistent, post-thaw runs.
    let pre = script(&sd, "pre-fail.sh", "echo about to fail >&2; exit 3");
    let r = backup(&g, &repo, &c, opts(pre));
    assert_eq!(r.consistency.level, ConsistencyLevel::Filesystem, "{r:?}");
    assert!(
        why(&r).contains("not application-consistent: the pre-freeze script exited with status 3"),
        "{r:?}"
    );
    let app = r.app_aware.as_ref().unwrap();
    assert_eq!(app.pre_freeze.as_ref().unwrap().output[0].stream, "stderr");
    assert_eq!(
        app.post_thaw.as_ref().unwrap().exit_code,
        Some(0),
        "{app:?}"
    );
    assert!(app.removed, "{app:?}");
    assert_clean(&mut g, "after (b)");

    // (c) The pre-freeze script hangs: killed at the timeout.
    let pre = script(&sd, "pre-hang.sh", "echo hanging; sleep 600");
    let t0 = Instant::now();
    let r = backup(
        &g,
        &repo,
        &c,
        AppAwareOptions {
            script_timeout: Duration::from_secs(3),
            ..opts(pre)
        },
    );
    assert!(
        t0.elapsed() < Duration::from_secs(120),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.consistency.level, ConsistencyLevel::Filesystem, "{r:?}");
    assert!(why(&r).contains("timed out after 3s"), "{r:?}");
    let app = r.app_aware.as_ref().unwrap();
    assert_eq!(app.pre_freeze.as_ref().unwrap().status, "timed_out");
    assert_eq!(
        app.post_thaw.as_ref().unwrap().exit_code,
        Some(0),
        "{app:?}"
    );
    assert_clean(&mut g, "after (c)");

    // (d) Nobody at the address: the helper is stopped and removed.
    let pre = script(&sd, "pre-ok.sh", "true");
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = nobody.local_addr().unwrap();
    drop(nobody);
    let r = backup(
        &g,
        &repo,
        &c,
        AppAwareOptions {
            address: Some(addr.to_string()),
            start_timeout: Duration::from_secs(3),
            ..opts(pre.clone())
        },
    );
    assert_eq!(r.consistency.level, ConsistencyLevel::Filesystem, "{r:?}");
    assert!(
        why(&r).contains("the helper could not start: not reachable at"),
        "{r:?}"
    );
    let app = r.app_aware.as_ref().unwrap();
    assert!(app.removed && app.pre_freeze.is_none() && app.post_thaw.is_none());
    assert_clean(&mut g, "after (d)");

    // (e) No helper binary on this host.
    let missing = g.dir.path().join("no-such-helper");
    let r = backup(
        &g,
        &repo,
        &c,
        AppAwareOptions {
            helper_bin: missing.clone(),
            ..opts(pre)
        },
    );
    assert_eq!(r.consistency.level, ConsistencyLevel::Filesystem, "{r:?}");
    assert!(
        why(&r).contains(&format!(
            "cannot read the guest helper binary {}",
            missing.display()
        )),
        "{r:?}"
    );
    assert_clean(&mut g, "after (e)");
    assert!(lifeboat_nodes(&c).is_empty());
}

/// The static helper run on this host in a fresh `lifeboat-helper-*`
/// directory with a pre-freeze script.
struct HostHelper {
    child: std::process::Child,
    _parent: tempfile::TempDir,
    dir: PathBuf,
    ids: lifeboat_hypervisor::BackupIdentities,
    addr: String,
}

fn host_helper(pre_freeze: &str) -> HostHelper {
    use lifeboat_guest_helper::layout::{HELPER_CERT, HELPER_KEY, PRE_FREEZE, PROXY_CERT};
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("lifeboat-helper-pin");
    std::fs::create_dir(&dir).unwrap();
    let ids = lifeboat_hypervisor::make_identities().unwrap();
    std::fs::write(dir.join(HELPER_CERT), &ids.helper.cert).unwrap();
    std::fs::write(dir.join(HELPER_KEY), &ids.helper.key).unwrap();
    std::fs::write(dir.join(PROXY_CERT), &ids.proxy.cert).unwrap();
    script(&dir, PRE_FREEZE, pre_freeze);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = std::process::Command::new(guest_helper_binary())
        .arg("--dir")
        .arg(&dir)
        .args(["--listen", &addr, "--idle-timeout", "30"])
        .spawn()
        .unwrap();
    HostHelper {
        child,
        _parent: parent,
        dir,
        ids,
        addr,
    }
}

/// Connects, retrying while the helper does not listen yet.
fn connect_to(
    addr: &str,
    own: &lifeboat_guest_helper::pin::Identity,
    peer: &[u8],
) -> Result<lifeboat_hypervisor::HelperSession, lifeboat_hypervisor::ConnectError> {
    use lifeboat_guest_helper::pin::client_config;
    use lifeboat_hypervisor::{ConnectError, HelperSession};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tls = client_config(own, peer).unwrap();
        match HelperSession::connect(addr, tls, Duration::from_secs(5)) {
            Err(ConnectError::Other { detail, .. }) if Instant::now() < deadline => {
                eprintln!("not yet: {detail}");
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The proxy's session against the static helper run on this host: a
/// helper whose certificate is not the pinned one is refused, a proxy
/// whose certificate the helper does not pin is refused, both as
/// `ConnectError::Mismatch`; the pinned pair runs a script.
#[test]
fn pinned_tls() {
    use lifeboat_guest_helper::wire::{Phase, ScriptEnd};
    use lifeboat_hypervisor::{make_identities, ConnectError};

    let mut h = host_helper("echo pinned");
    let others = make_identities().unwrap();
    // The helper's certificate is not the one pinned.
    let err = connect_to(&h.addr, &h.ids.proxy, &others.helper.cert).unwrap_err();
    assert!(matches!(err, ConnectError::Mismatch { .. }), "{err}");
    // The proxy's certificate is not the one the helper pins.
    let err = connect_to(&h.addr, &others.proxy, &h.ids.helper.cert).unwrap_err();
    assert!(matches!(err, ConnectError::Mismatch { .. }), "{err}");
    // The pinned pair.
    let mut s = connect_to(&h.addr, &h.ids.proxy, &h.ids.helper.cert).unwrap();
    let mut lines = Vec::new();
    let end = s
        .run(Phase::PreFreeze, Duration::from_secs(5), &mut |_, l| {
            lines.push(l)
        })
        .unwrap();
    assert_eq!(
        (end, lines),
        (ScriptEnd::Exited(0), vec!["pinned".to_string()])
    );
    s.quit().unwrap();
    assert!(h.child.wait().unwrap().success());
    assert!(!h.dir.exists());
}

/// A helper that dies while its script runs: the proxy's `run` returns an
/// error at once (no wait for the script's timeout), no panic.
#[test]
fn a_helper_killed_mid_script_is_a_lost_session() {
    use lifeboat_guest_helper::wire::Phase;

    let mut h = host_helper("echo killing my helper; sleep 1; kill -9 $PPID; sleep 30");
    let mut s = connect_to(&h.addr, &h.ids.proxy, &h.ids.helper.cert).unwrap();
    let t0 = Instant::now();
    let mut lines = Vec::new();
    let err = s
        .run(Phase::PreFreeze, Duration::from_secs(60), &mut |_, l| {
            lines.push(l)
        })
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(lines, ["killing my helper"], "{err}");
    assert!(!h.child.wait().unwrap().success());
}
