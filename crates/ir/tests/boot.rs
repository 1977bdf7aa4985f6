//! The real end to end: the test guest is backed up, a session exports it,
//! QEMU (TCG) boots it from the nfs:// URL (portmapper on port 111 of a
//! dedicated loopback address, since QEMU's nfs driver always asks 111) and
//! from the nbd:// URL, port 22 answers, a file the guest writes lands in
//! the overlay, the restore point is untouched, and `migrate` produces an
//! image that holds the file and boots on its own.
//!
//! Needs the guest fixture (scripts/build-test-guest.sh: Debian packages,
//! QEMU with qemu-block-extra), debugfs (e2fsprogs).
mod common;
use common::*;
use lifeboat_ir::{Request, Response};
use lifeboat_testsupport::repo::repo_snapshot;
use lifeboat_testsupport::serial;
use lifeboat_testvm::{read_guest_file, try_guest_fixture, BootOptions, DriveSpec, Vm};
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn guest_boots_from_nfs_writes_to_the_overlay_and_migrates() {
    // TCG is CPU-bound and the machine has 2 cores: one guest at a time.
    let _one = serial();
    let fixture = try_guest_fixture().unwrap_or_else(|e| panic!("test guest: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let (repo, manifest) = backup(dir.path(), "guest", &fixture.image);
    let before = repo_snapshot(&repo);
    let cache = dir.path().join("cache");
    let ip = "127.0.0.31";
    let mut c = lifeboat_ir::ServiceConfig::ephemeral(&repo, &cache, ip.parse().unwrap());
    c.portmap_port = Some(111);
    c.allow = vec!["127.0.0.0/8".into()];
    c.log_hook = Some(std::sync::Arc::new(|l: &str| eprintln!("[service] {l}")));
    let svc =
        lifeboat_ir::Service::start(c).expect("service with its portmapper on 127.0.0.31:111");
    let (s, start_ms) = start_session(&cache, "guest@latest", false);
    println!("session start: {start_ms} ms");
    let disk = &s.disks[0];
    let url = s.nfs_url(disk);
    assert_eq!(url, format!("nfs://{ip}/lifeboat/{}/{}", s.id, disk.file));

    let mut vm = Vm::boot(DriveSpec::url(&url).unwrap(), &BootOptions::default()).expect("boot");
    let nfs_boot = vm
        .wait_for_port22(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("port 22 over NFS: {e}"));
    println!("boot time from NFS (TCG): {nfs_boot:?}");
    vm.run_ok("echo hello > /lifeboat-marker; sync")
        .expect("guest command");
    vm.shutdown(SHUTDOWN_TIMEOUT).expect("clean shutdown");

    let listed = list(&cache);
    let written = listed[0].disks[0].overlay_bytes;
    println!("overlay holds {written} bytes after the boot");
    assert!(written > 0, "{listed:?}");
    assert_restore_point_untouched(&repo, &manifest, &before);

    let migrated = dir.path().join("migrated.raw");
    match svc.handle(Request::Migrate {
        session: s.id.clone(),
        to: migrated.clone(),
        format: None,
    }) {
        Response::Migrated { migrated } => println!("migrate: {migrated:?}"),
        other => panic!("migrate: {other:?}"),
    }
    let marker =
        read_guest_file(&migrated, fixture.partition_offset, "/lifeboat-marker").expect("debugfs");
    assert_eq!(marker, b"hello\n");
    assert!(
        read_guest_file(&fixture.image, fixture.partition_offset, "/lifeboat-marker").is_err(),
        "the pristine image has no marker"
    );
    let stop = svc.handle(Request::Stop {
        session: s.id.clone(),
        keep_overlay: false,
    });
    assert!(matches!(stop, Response::Stopped { .. }), "{stop:?}");
    drop(svc);

    let mut vm = Vm::boot(DriveSpec::file(&migrated), &BootOptions::default()).expect("boot");
    let local_boot = vm
        .wait_for_port22(BOOT_TIMEOUT)
        .expect("port 22 from the migrated image");
    println!("boot time from the migrated local raw image (TCG): {local_boot:?}");
    let out = vm.run_ok("cat /lifeboat-marker").expect("guest command");
    assert_eq!(out, "hello\n");
    vm.shutdown(SHUTDOWN_TIMEOUT).expect("clean shutdown");
    println!(
        "NFS boot / local boot = {:.2}",
        nfs_boot.as_secs_f64() / local_boot.as_secs_f64()
    );
    assert_restore_point_untouched(&repo, &manifest, &before);
}

#[test]
fn guest_boots_from_nbd() {
    // TCG is CPU-bound and the machine has 2 cores: one guest at a time.
    let _one = serial();
    let fixture = try_guest_fixture().unwrap_or_else(|e| panic!("test guest: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let (repo, manifest) = backup(dir.path(), "guest", &fixture.image);
    let before = repo_snapshot(&repo);
    let cache = dir.path().join("cache");
    let svc = service(&repo, &cache, "127.0.0.1", None);
    let (s, _) = start_session(&cache, "guest@latest", true);
    let url = s.nbd_url(&s.disks[0]).expect("an NBD URL");
    let mut vm = Vm::boot(DriveSpec::url(&url).unwrap(), &BootOptions::default()).expect("boot");
    let t = vm
        .wait_for_port22(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("port 22 over NBD: {e}"));
    println!("boot time from NBD (TCG): {t:?}");
    vm.run_ok("echo nbd > /lifeboat-marker; sync")
        .expect("guest command");
    vm.shutdown(SHUTDOWN_TIMEOUT).expect("clean shutdown");
    assert!(list(&cache)[0].disks[0].overlay_bytes > 0);
    drop(svc);
    assert_restore_point_untouched(&repo, &manifest, &before);
}
