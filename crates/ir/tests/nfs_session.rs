//! The NFS path end to end with the libnfs tools: a session over a backed-up
//! disk is listed by nfs-ls, copied out bit-exact by nfs-cp, written through
//! NFS WRITE into its overlay, survives a restart of the service with the
//! same handles, migrates to raw and qcow2, and never changes the restore
//! point.
mod common;
use common::*;
use lifeboat_ir::{Request, Response, StartRequest};
use lifeboat_testsupport::nfs::*;
use lifeboat_testsupport::repo::repo_snapshot;
use lifeboat_testsupport::{run, tool};
use std::time::Instant;

const SIZE: usize = 8 << 20;

#[test]
fn a_session_is_served_written_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("web01.raw");
    let mut bytes = make_image(&image, SIZE);
    let (repo, manifest) = backup(dir.path(), "web01", &image);
    let before = repo_snapshot(&repo);
    let cache = dir.path().join("cache");

    let svc = service(&repo, &cache, "127.0.0.1", None);
    let t = Instant::now();
    let (s, start_ms) = start_session(&cache, "web01@latest", false);
    println!(
        "session start: {start_ms} ms in the service, {:?} round trip",
        t.elapsed()
    );
    assert!(start_ms < 1000, "session start took {start_ms} ms");
    assert_eq!(s.restore_point, manifest.name());
    let disk = &s.disks[0];
    assert_eq!(disk.file, "web01-disk0-flat.vmdk");
    assert_eq!(disk.size, SIZE as u64);
    assert!(s
        .qemu_drive(disk)
        .contains(&format!("/lifeboat/{}/web01-disk0-flat.vmdk", s.id)));

    let ls = String::from_utf8(run(nfs_tool("nfs-ls").arg(url(&s, &s.id))).stdout).unwrap();
    assert!(ls.lines().any(|l| l.ends_with(&disk.file)), "{ls}");
    assert!(ls.lines().any(|l| l.ends_with("web01-disk0.vmdk")), "{ls}");
    let root = String::from_utf8(run(nfs_tool("nfs-ls").arg(url(&s, ""))).stdout).unwrap();
    assert!(root.contains(&s.id), "{root}");

    let copy = dir.path().join("copy.raw");
    let t = Instant::now();
    run(nfs_tool("nfs-cp")
        .arg(url(&s, &format!("{}/{}", s.id, disk.file)))
        .arg(&copy));
    println!("nfs-cp of {} MiB: {:?}", SIZE >> 20, t.elapsed());
    assert!(
        std::fs::read(&copy).unwrap() == bytes,
        "nfs-cp copy differs from the disk"
    );

    // Write through NFS: lands in the overlay.
    let (mount, nfs) = (
        addr("127.0.0.1", s.service.mount_port),
        addr("127.0.0.1", s.service.nfs_port),
    );
    let fh = file_handle(mount, nfs, &s.id, &disk.file);
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 253) as u8).collect();
    let at = (1 << 20) + 100;
    assert_eq!(write(&mut connect(nfs), &fh, at as u64, &data, 2).0, 0);
    bytes[at..at + data.len()].copy_from_slice(&data);
    let listed = list(&cache);
    assert_eq!(listed.len(), 1);
    assert!(listed[0].disks[0].overlay_bytes > 0, "{listed:?}");

    // Restart: a new Service on the same cache folder.
    drop(svc);
    let svc = service(&repo, &cache, "127.0.0.1", None);
    assert!(
        svc.log().lines().iter().any(|l| l.contains("re-opened")),
        "{:?}",
        svc.log().lines()
    );
    let after = list(&cache);
    assert_eq!(after.len(), 1, "the session is back");
    let s2 = &after[0];
    assert_eq!((&s2.id, &s2.disks[0].file), (&s.id, &disk.file));
    let (mount, nfs) = (
        addr("127.0.0.1", s2.service.mount_port),
        addr("127.0.0.1", s2.service.nfs_port),
    );
    assert_eq!(
        file_handle(mount, nfs, &s.id, &disk.file),
        fh,
        "same handle after a restart"
    );
    let (st, got, _) = read(&mut connect(nfs), &fh, at as u64, data.len() as u32);
    assert_eq!(st, 0);
    assert!(got == data, "the old handle reads the written bytes");
    let cat = run(nfs_tool("nfs-cat").arg(url(s2, &format!("{}/{}", s.id, disk.file)))).stdout;
    assert!(cat == bytes, "nfs-cat after the restart differs");

    // Migrate while the session runs: base + overlay.
    let raw = dir.path().join("migrated.raw");
    let qcow = dir.path().join("migrated.qcow2");
    for (to, format) in [(&raw, None), (&qcow, None)] {
        match lifeboat_ir::request(
            &cache,
            &Request::Migrate {
                session: s.id.clone(),
                to: to.clone(),
                format,
            },
        )
        .unwrap()
        {
            Response::Migrated { migrated } => assert_eq!(migrated.len(), 1),
            other => panic!("migrate: {other:?}"),
        }
    }
    assert!(
        std::fs::read(&raw).unwrap() == bytes,
        "migrated raw image differs"
    );
    let converted = dir.path().join("converted.raw");
    run(tool("qemu-img", "qemu-utils")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&qcow)
        .arg(&converted));
    assert!(
        std::fs::read(&converted).unwrap() == bytes,
        "migrated qcow2 image differs"
    );
    // A second migrate to an existing file is refused.
    let again = lifeboat_ir::request(
        &cache,
        &Request::Migrate {
            session: s.id.clone(),
            to: raw.clone(),
            format: Some("raw".into()),
        },
    )
    .unwrap();
    assert!(
        matches!(again, Response::Error { ref message } if message.contains("exists")),
        "{again:?}"
    );

    // Stop deletes the overlay and the export.
    let overlay = s2.disks[0].overlay.clone();
    assert!(overlay.exists());
    let stop = lifeboat_ir::request(
        &cache,
        &Request::Stop {
            session: s.id.clone(),
            keep_overlay: false,
        },
    )
    .unwrap();
    assert!(matches!(stop, Response::Stopped { .. }), "{stop:?}");
    assert!(!overlay.exists());
    assert!(list(&cache).is_empty());
    let (st, _, _) = read(&mut connect(nfs), &fh, 0, 512);
    assert_eq!(st, 70, "handles of a stopped session are STALE");
    drop(svc);

    assert_restore_point_untouched(&repo, &manifest, &before);
}

#[test]
fn keep_overlay_keeps_the_redo_log_but_not_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("db01.raw");
    make_image(&image, 1 << 20);
    let (repo, _) = backup(dir.path(), "db01", &image);
    let cache = dir.path().join("cache");
    let svc = service(&repo, &cache, "127.0.0.1", None);
    let (s, _) = start_session(&cache, "db01@latest", true);
    let overlay = s.disks[0].overlay.clone();
    let stop = svc.handle(Request::Stop {
        session: s.id.clone(),
        keep_overlay: true,
    });
    assert!(
        matches!(
            stop,
            Response::Stopped {
                overlay_kept: true,
                ..
            }
        ),
        "{stop:?}"
    );
    assert!(overlay.exists());
    assert!(overlay.with_file_name("session.stopped.json").exists());
    drop(svc);
    let svc = service(&repo, &cache, "127.0.0.1", None);
    assert!(
        list(&cache).is_empty(),
        "a stopped session is not re-opened"
    );
    let missing = svc.handle(Request::Stop {
        session: s.id.clone(),
        keep_overlay: false,
    });
    assert!(matches!(missing, Response::Error { .. }), "{missing:?}");
}

#[test]
fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("web01.raw");
    make_image(&image, 1 << 20);
    let (repo, _) = backup(dir.path(), "web01", &image);
    let cache = dir.path().join("cache");
    let svc = service(&repo, &cache, "127.0.0.1", None);

    // A second service on the same cache folder is refused.
    let mut c = lifeboat_ir::ServiceConfig::ephemeral(&repo, &cache, "127.0.0.1".parse().unwrap());
    c.nbd_port = None;
    let err = lifeboat_ir::Service::start(c)
        .err()
        .expect("second service");
    assert!(err.to_string().contains("another service"), "{err}");

    let err_of = |req: Request| match svc.handle(req) {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    };
    let start = |spec: &str, repo: Option<std::path::PathBuf>, allow: Vec<String>| {
        Request::Start(StartRequest {
            restore_point: spec.into(),
            repo,
            allow,
            nbd: false,
        })
    };
    let m = err_of(start("nosuchvm@latest", None, vec![]));
    assert!(m.contains("nosuchvm"), "{m}");
    let m = err_of(start(
        "web01@latest",
        Some(dir.path().join("other")),
        vec![],
    ));
    assert!(m.contains("serves repository"), "{m}");
    let m = err_of(start("web01@latest", None, vec!["10.0.0.0/99".into()]));
    assert!(m.contains("10.0.0.0/99"), "{m}");
    let m = err_of(Request::Migrate {
        session: "nope".into(),
        to: "/tmp/x.raw".into(),
        format: None,
    });
    assert!(m.contains("nope"), "{m}");
    assert!(
        std::fs::read_dir(cache.join("sessions"))
            .unwrap()
            .next()
            .is_none(),
        "failed starts leave nothing"
    );
}

#[test]
fn clients_off_the_allow_list_are_refused_on_nfs_and_nbd() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("web01.raw");
    make_image(&image, 1 << 20);
    let (repo, _) = backup(dir.path(), "web01", &image);
    let cache = dir.path().join("cache");
    let mut c = lifeboat_ir::ServiceConfig::ephemeral(&repo, &cache, "127.0.0.1".parse().unwrap());
    c.allow = vec!["10.9.9.0/24".into()];
    let svc = lifeboat_ir::Service::start(c).unwrap();
    let (s, _) = start_session(&cache, "web01@latest", true);
    // NFS: closed when accepted, before the MNT is read or answered.
    let mut m = connect(addr("127.0.0.1", s.service.mount_port));
    let mut path = Vec::new();
    lifeboat_nfs::xdr::XdrWrite::put_string(&mut path, "/lifeboat");
    let _ = std::io::Write::write_all(&mut m, &call_record(1, MOUNT, 3, 1, sys_cred(), &path));
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut m, &mut got);
    assert!(got.is_empty(), "MOUNT answered a refused client");
    let out = tool("nbdinfo", "libnbd-bin")
        .arg(s.nbd_url(&s.disks[0]).unwrap())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "nbdinfo from a refused address succeeded"
    );
    assert!(
        svc.log().lines().iter().any(|l| l.contains("nbd: refused")),
        "{:?}",
        svc.log().lines()
    );
}

#[test]
fn starting_a_session_over_a_64_gib_sparse_disk_is_instant() {
    use lifeboat_engine::{backup_vm, DiskSource, NoProgress};
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("big.raw");
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(64 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"boot sector", 0).unwrap();
    f.write_all_at(b"the end", (64 << 30) - 4096).unwrap();
    drop(f);
    let repo_path = dir.path().join("repo");
    let repo =
        lifeboat_repo::Repository::init(&repo_path, lifeboat_repo::InitOptions::new(None)).unwrap();
    let disk = std::sync::Arc::new(lifeboat_vdisk::FileDisk::open(&image).unwrap());
    backup_vm(
        &repo,
        "big",
        &[DiskSource::from_disk("disk0", disk)],
        &NoProgress,
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let _svc = service(&repo_path, &cache, "127.0.0.1", None);
    let t = Instant::now();
    let (s, start_ms) = start_session(&cache, "big@latest", true);
    println!(
        "64 GiB session start: {start_ms} ms in the service, {:?} round trip",
        t.elapsed()
    );
    assert!(start_ms < 1000, "{start_ms} ms");
    assert_eq!(s.disks[0].size, 64 << 30);
    let used = std::fs::metadata(&s.disks[0].overlay).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        used.blocks() * 512 < 4 << 20,
        "the overlay is sparse: {} bytes used",
        used.blocks() * 512
    );
    let (mount, nfs) = (
        addr("127.0.0.1", s.service.mount_port),
        addr("127.0.0.1", s.service.nfs_port),
    );
    let fh = file_handle(mount, nfs, &s.id, &s.disks[0].file);
    let (st, got, _) = read(&mut connect(nfs), &fh, (64 << 30) - 4096, 7);
    assert_eq!((st, got.as_slice()), (0, &b"the end"[..]));
}
