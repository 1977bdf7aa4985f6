//! Consistency through the real QEMU guest agent.
//!
//! Without a guest boot (the paused QEMU of `common`): an agent socket that
//! nothing serves, and an agent channel QEMU serves but nothing in the guest
//! answers, both give a crash-consistent backup that says why, within the
//! agent's timeout.
//!
//! With the test guest booted under TCG (Debian's qemu-ga on the
//! virtio-serial port `org.qemu.guest_agent.0`): a live backup freezes the
//! guest's filesystems for the point in time (the restore point says
//! filesystem-consistent, 1 filesystem) and thaws them (status `thawed`, a
//! write in the guest succeeds); a second virtio-serial port that nobody
//! opens in the guest is a silent agent (crash-consistent, bounded); a point
//! in time that fails after the freeze (a rotation of a bitmap the disk does
//! not have) still thaws the guest; a freeze nobody ends is thawed by its
//! watchdog when its bound passes.

mod common;
use common::*;
use lifeboat_engine::NoProgress;
use lifeboat_hypervisor::{
    list_disks, live_backup, AgentClient, AgentError, AgentOptions, Fleece, FleeceDisk,
    FleeceOptions, FreezeStatus, LiveBackupOptions, LiveBackupReport, QmpClient, Quiesce, Rotation,
    LIVE_COMPRESSION_LEVEL,
};
use lifeboat_repo::{ConsistencyLevel, Repository};
use lifeboat_testsupport::repo::init_repo;
use lifeboat_testvm::{
    guest_image, virtio_serial_args, BootOptions, DriveSpec, Vm, GUEST_AGENT_PORT,
};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CHUNK: u32 = 256 << 10;
const AGENT_TIMEOUT: Duration = Duration::from_secs(2);
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn private_dir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

fn backup(
    repo: &Repository,
    c: &QmpClient,
    work_dir: &Path,
    agent: Option<&Path>,
) -> (LiveBackupReport, Duration) {
    let opts = LiveBackupOptions {
        vm: "vm1".into(),
        work_dir: work_dir.to_path_buf(),
        connections: 2,
        timeout: Duration::from_secs(60),
        method: None,
        compression_level: LIVE_COMPRESSION_LEVEL,
        agent: agent.map(|socket| AgentOptions {
            timeout: AGENT_TIMEOUT,
            ..AgentOptions::new(socket)
        }),
    };
    let t0 = Instant::now();
    let report = live_backup(repo, c, &opts, &NoProgress).unwrap();
    (report, t0.elapsed())
}

/// The report and the manifest both say crash-consistent, with `why`.
fn assert_crash(repo: &Repository, report: &LiveBackupReport, why: &str) {
    let c = &report.consistency;
    assert_eq!(c.level, ConsistencyLevel::Crash, "{report:?}");
    assert!(c.why.as_deref().unwrap_or("").contains(why), "{c:?}");
    assert_eq!(c.frozen_filesystems, 0, "{c:?}");
    let m = repo.resolve(&report.restore_point).unwrap();
    assert_eq!(m.consistency.as_ref(), Some(c), "{m:?}");
}

#[test]
fn agent_socket_nobody_serves_gives_a_crash_consistent_backup() {
    let q = Qemu::start();
    let c = q.client();
    let repo = init_repo(&q.dir.path().join("repo"), Some("pw"), CHUNK);
    let missing = q.dir.path().join("no-agent.sock");
    let (report, took) = backup(&repo, &c, &q.work_dir(), Some(&missing));
    assert_crash(&repo, &report, "cannot connect");
    assert!(
        report
            .consistency
            .why
            .as_deref()
            .unwrap_or("")
            .contains(missing.to_str().unwrap()),
        "{report:?}"
    );
    eprintln!("backup with an agent socket nobody serves: {took:?}");
}

#[test]
fn silent_agent_channel_gives_a_crash_consistent_backup_within_the_timeout() {
    let extra = virtio_serial_args(&[(Path::new("{dir}/qga.sock"), GUEST_AGENT_PORT)]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    // Paused: QEMU serves the channel, nothing in the guest ever answers.
    let q = Qemu::start_with(&extra);
    let sock = q.dir.path().join("qga.sock");
    let t0 = Instant::now();
    let err = AgentClient::connect(&sock, AGENT_TIMEOUT).unwrap_err();
    let waited = t0.elapsed();
    assert!(
        matches!(err, AgentError::NotAnswering { .. }),
        "{err:?}: {err}"
    );
    assert!(
        waited >= AGENT_TIMEOUT && waited < AGENT_TIMEOUT + Duration::from_secs(2),
        "gave up after {waited:?}, timeout {AGENT_TIMEOUT:?}"
    );

    let c = q.client();
    let repo = init_repo(&q.dir.path().join("repo"), Some("pw"), CHUNK);
    let (report, took) = backup(&repo, &c, &q.work_dir(), Some(&sock));
    assert_crash(&repo, &report, "no answer within 2s");
    eprintln!("agent gave up after {waited:?}; backup with a silent agent: {took:?}");
}

/// The test guest with QMP, its agent channel and a silent second channel.
struct Guest {
    vm: Vm,
    dir: tempfile::TempDir,
    qmp: PathBuf,
    agent: PathBuf,
    silent: PathBuf,
}

fn boot_guest() -> Guest {
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-agent-test.")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let disk = d.join("guest.raw");
    std::fs::copy(guest_image(), &disk).unwrap();
    let qmp = d.join("qmp.sock");
    let agent = d.join("qga.sock");
    let silent = d.join("silent.sock");
    let mut extra_args = vec![
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ];
    extra_args.extend(virtio_serial_args(&[
        (&agent, GUEST_AGENT_PORT),
        (&silent, "lifeboat.silent.0"),
    ]));
    let opts = BootOptions {
        extra_args,
        command_timeout: Duration::from_secs(30),
        ..BootOptions::default()
    };
    let t0 = Instant::now();
    let mut vm = Vm::boot(DriveSpec::file(&disk), &opts).unwrap();
    vm.wait_for_port22(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("the test guest did not boot: {e}"));
    eprintln!("guest booted in {:?}", t0.elapsed());
    Guest {
        vm,
        dir,
        qmp,
        agent,
        silent,
    }
}

/// Waits for qemu-ga in the guest to answer a ping; then checks that a
/// reply arriving after its command timed out is skipped by the resync.
fn wait_for_agent(g: &Guest) {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(120);
    loop {
        match AgentClient::connect(&g.agent, Duration::from_secs(3)).and_then(|mut a| a.ping()) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the guest agent: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!(
                "the guest agent (Debian's qemu-ga in the test guest) did not answer within \
                 120 s: {e}\nserial console:\n{}",
                g.vm.serial_log()
            ),
        }
    }
    eprintln!("guest agent answered after {:?}", t0.elapsed());
    let mut a = AgentClient::connect(&g.agent, Duration::from_secs(10)).unwrap();
    let err = a
        .execute_with_timeout(
            "guest-sync",
            serde_json::json!({"id": 4242}),
            Duration::ZERO,
        )
        .unwrap_err();
    assert!(matches!(err, AgentError::NotAnswering { .. }), "{err}");
    // Its late reply, {"return": 4242}, must not be taken for the ping's.
    assert_eq!(
        a.execute("guest-ping", Value::Null).unwrap(),
        serde_json::json!({})
    );
    assert_eq!(a.fsfreeze_status().unwrap(), FreezeStatus::Thawed);
}

/// The guest agent says thawed, and the guest can write to its disk.
fn assert_thawed(g: &mut Guest, what: &str) {
    let mut a = AgentClient::connect(&g.agent, Duration::from_secs(10)).unwrap();
    assert_eq!(a.fsfreeze_status().unwrap(), FreezeStatus::Thawed, "{what}");
    drop(a);
    let out =
        g.vm.run_ok(&format!(
            "echo '{what}' > /thawed-check && sync && cat /thawed-check"
        ))
        .unwrap_or_else(|e| panic!("writing in the guest after {what}: {e}"));
    assert_eq!(out.trim(), what);
}

#[test]
fn guest_agent_freezes_the_guest_for_the_point_in_time() {
    let mut g = boot_guest();
    wait_for_agent(&g);
    let c = QmpClient::connect_with_timeout(&g.qmp, Duration::from_secs(60)).unwrap();
    let work = private_dir(g.dir.path().join("work"));
    let repo = init_repo(&g.dir.path().join("repo"), Some("pw"), CHUNK);

    // (a) The agent freezes the root filesystem across the point in time.
    let t0 = Instant::now();
    let (report, took) = backup(&repo, &c, &work, Some(&g.agent));
    let cons = &report.consistency;
    assert_eq!(cons.level, ConsistencyLevel::Filesystem, "{report:?}");
    assert_eq!(cons.frozen_filesystems, 1, "the ext4 root: {cons:?}");
    assert!(cons.frozen_ms < 10_000, "frozen beyond the bound: {cons:?}");
    let m = repo.resolve(&report.restore_point).unwrap();
    assert_eq!(m.consistency.as_ref(), Some(cons), "{m:?}");
    assert_thawed(&mut g, "after the filesystem-consistent backup");
    eprintln!(
        "(a) filesystem-consistent backup: {took:?} (frozen {} ms, paused {} ms), with checks {:?}",
        cons.frozen_ms,
        report.paused_ms,
        t0.elapsed()
    );

    // (b) A channel QEMU serves but nobody opened in the guest.
    let t0 = Instant::now();
    let (report, took) = backup(&repo, &c, &work, Some(&g.silent));
    assert_crash(&repo, &report, "no answer within 2s");
    assert_thawed(&mut g, "after the crash-consistent backup");
    eprintln!("(b) silent agent channel, crash-consistent: {took:?}");
    let _ = t0;

    // (c) The point in time fails after the freeze: the guest is thawed.
    let t0 = Instant::now();
    let disk = list_disks(&c).unwrap().remove(0);
    let mut quiesce = Quiesce::connect(Some(&AgentOptions::new(&g.agent)));
    assert!(quiesce.has_agent());
    let fleece_disks = [FleeceDisk {
        rotation: Some(Rotation::new(
            &disk,
            "lifeboat-not-on-this-disk",
            "lifeboat-test-new",
        )),
        disk,
    }];
    let fleece_opts = FleeceOptions {
        work_dir: work.clone(),
        nbd_socket: work.join("nbd.sock"),
        job_timeout: Duration::from_secs(60),
        method: None,
    };
    let err = Fleece::start_with_hook(&c, &fleece_disks, &fleece_opts, &mut quiesce).unwrap_err();
    assert!(
        err.to_string().contains("lifeboat-not-on-this-disk"),
        "the transaction should fail on the missing bitmap: {err}"
    );
    let cons = quiesce.consistency();
    assert_eq!(
        cons.frozen_filesystems, 1,
        "the freeze happened before the failure: {cons:?}"
    );
    drop(quiesce);
    assert_thawed(&mut g, "after a point in time that failed while frozen");
    assert!(lifeboat_nodes(&c).is_empty(), "{:?}", lifeboat_nodes(&c));
    eprintln!("(c) failure after the freeze, thawed: {:?}", t0.elapsed());

    // (d) The bound: a freeze nobody ends is thawed by its watchdog.
    let t0 = Instant::now();
    let bound = Duration::from_millis(500);
    let guard = AgentClient::connect(&g.agent, Duration::from_secs(10))
        .unwrap()
        .freeze(bound)
        .unwrap();
    assert_eq!(guard.frozen_filesystems(), 1);
    std::thread::sleep(Duration::from_millis(1500));
    // The guard still lives: only the watchdog can have thawed the guest.
    let w = Instant::now();
    g.vm.run_ok("echo bound > /bound-check && sync")
        .unwrap_or_else(|e| panic!("writing in the guest after the freeze bound: {e}"));
    let write_took = w.elapsed();
    let thawed = guard.thaw();
    assert!(thawed.by_watchdog, "{thawed:?}");
    assert_eq!(thawed.thaw.as_ref().ok(), Some(&1), "{thawed:?}");
    assert!(
        thawed.frozen_for >= bound && thawed.frozen_for < Duration::from_millis(1500),
        "{thawed:?}"
    );
    assert!(write_took < Duration::from_secs(5), "{write_took:?}");
    assert_thawed(&mut g, "after the watchdog thawed");
    eprintln!(
        "(d) watchdog thawed after {:?} (bound {bound:?}): {:?}",
        thawed.frozen_for,
        t0.elapsed()
    );

    // (e) A backup killed while the guest was frozen (its watchdog died
    //     with it): the next backup thaws the guest first, and its own
    //     point in time is filesystem-consistent.
    let t0 = Instant::now();
    let mut a = AgentClient::connect(&g.agent, Duration::from_secs(10)).unwrap();
    assert_eq!(a.fsfreeze_freeze(Duration::from_secs(10)).unwrap(), 1);
    drop(a);
    let (report, took) = backup(&repo, &c, &work, Some(&g.agent));
    assert_eq!(
        report.consistency.level,
        ConsistencyLevel::Filesystem,
        "{report:?}"
    );
    assert_thawed(&mut g, "after a backup found the guest left frozen");
    eprintln!(
        "(e) guest left frozen, thawed by the next backup: {took:?}, with checks {:?}",
        t0.elapsed()
    );

    // qemu-ga keeps nothing on / open for writing: a clean shutdown can
    // still remount it read-only.
    g.vm.run_ok("mount -o remount,ro / && mount -o remount,rw /")
        .unwrap_or_else(|e| panic!("remounting / read-only with qemu-ga running: {e}"));

    let status = c.execute("query-status", Value::Null).unwrap();
    assert_eq!(status["running"], true, "{status}");
}
