//! The QMP client, bitmaps and fleecing against a real QEMU (see common/mod.rs).

mod common;

use std::time::Duration;

use common::{
    dirty_extents, exports, lifeboat_nodes, qemu_io, qemu_io_drive, read_export, Qemu, QemuClient,
    DISK_SIZE,
};
use lifeboat_hypervisor::{
    cleanup_leftovers, create_bitmap, find_disk, finish_rotation, list_disks, next_read, rotate,
    undo_rotation, Fleece, FleeceDisk, FleeceMethod, FleeceOptions, HypervisorError, NextRead,
    Persistence, QmpClient, Rotation,
};
use serde_json::{json, Value};

const K: u64 = 1024;
const M: u64 = 1024 * 1024;

fn options(q: &Qemu) -> FleeceOptions {
    FleeceOptions {
        work_dir: q.work_dir(),
        nbd_socket: q.nbd_socket(),
        job_timeout: Duration::from_secs(30),
        method: None,
    }
}

fn options_with(q: &Qemu, method: FleeceMethod) -> FleeceOptions {
    FleeceOptions {
        method: Some(method),
        ..options(q)
    }
}

fn work_files(q: &Qemu) -> Vec<String> {
    std::fs::read_dir(q.work_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn client_reads_version_and_disks() {
    let q = Qemu::start();
    let c = q.client();
    let v = c.query_version().unwrap();
    assert_eq!(&v, c.version(), "greeting and query-version agree");
    assert!(v.at_least(7, 1), "fixture QEMU {v}");
    let disks = list_disks(&c).unwrap();
    assert_eq!(disks.len(), 2, "{disks:?}");
    let sda = find_disk(&c, &disks, "sda").unwrap();
    assert_eq!(
        (sda.node_name.as_str(), sda.format.as_str(), sda.size),
        ("disk0", "qcow2", DISK_SIZE)
    );
    assert!(sda.file.ends_with("disk0.qcow2"), "{}", sda.file);
    assert!(sda.bitmaps.is_empty() && !sda.filtered_by_lifeboat);
    let sdb = find_disk(&c, &disks, "sdb").unwrap();
    assert_eq!(
        (sdb.node_name.as_str(), sdb.format.as_str()),
        ("disk1", "raw")
    );
    let err = find_disk(&c, &disks, "vdz").unwrap_err();
    assert!(err.to_string().contains("sda, sdb"), "{err}");
}

#[test]
fn bitmap_records_exactly_the_written_extents() {
    bitmap_records_exactly_the_written_extents_with(FleeceMethod::SnapshotAccess);
}

#[test]
fn bitmap_records_exactly_the_written_extents_backup_sync_none() {
    bitmap_records_exactly_the_written_extents_with(FleeceMethod::BackupSyncNone);
}

fn bitmap_records_exactly_the_written_extents_with(method: FleeceMethod) {
    let q = Qemu::start();
    let c = q.client();
    let disks = list_disks(&c).unwrap();
    let (sda, sdb) = (&disks[0], &disks[1]);
    assert_eq!(
        create_bitmap(&c, sda, "lifeboat-1").unwrap(),
        Persistence::Persistent
    );
    match create_bitmap(&c, sdb, "lifeboat-1").unwrap() {
        Persistence::NonPersistent { reason } => assert!(reason.contains("raw"), "{reason}"),
        p => panic!("raw disk got {p:?}"),
    }
    let err = create_bitmap(&c, sda, "mine").unwrap_err();
    assert!(err.to_string().contains("must start with"), "{err}");

    qemu_io(&c, "sda", "write -P 0xab 1M 64k");
    qemu_io(&c, "sda", "write -P 0xac 5M 128k");
    qemu_io(&c, "sdb", "write -P 0xad 2M 64k");
    let disks = list_disks(&c).unwrap();
    let b = disks[0].bitmap("lifeboat-1").unwrap();
    assert_eq!(b.dirty_bytes, 192 * K);
    assert!(
        b.persistent && b.recording && !b.busy && !b.inconsistent,
        "{b:?}"
    );
    assert!(!disks[1].bitmap("lifeboat-1").unwrap().persistent);
    assert_eq!(
        next_read(&disks[0]),
        NextRead::Incremental {
            bitmap: "lifeboat-1".into(),
            dirty_bytes: 192 * K
        }
    );

    // The bitmap as an NBD client sees it, through the fleecing export.
    let fd: Vec<FleeceDisk> = disks
        .iter()
        .map(|d| FleeceDisk {
            disk: d.clone(),
            rotation: Some(Rotation::new(d, "lifeboat-1", "lifeboat-2")),
        })
        .collect();
    let f = Fleece::start(&c, &fd, &options_with(&q, method)).unwrap();
    let e = &f.exports()[0];
    assert_eq!(
        (e.name.as_str(), e.bitmap.as_deref()),
        ("lifeboat-sda", Some("lifeboat-1"))
    );
    assert_eq!(
        dirty_extents(&e.uri, "lifeboat-1"),
        vec![(M, 64 * K), (5 * M, 128 * K)]
    );
    let e1 = &f.exports()[1];
    assert_eq!(dirty_extents(&e1.uri, "lifeboat-1"), vec![(2 * M, 64 * K)]);
    f.teardown(&c).unwrap();
    let rotations: Vec<Rotation> = fd.iter().filter_map(|d| d.rotation.clone()).collect();
    finish_rotation(&c, &rotations).unwrap();
    let disks = list_disks(&c).unwrap();
    let names: Vec<&str> = disks[0].bitmaps.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["lifeboat-2"]);
}

#[test]
fn rotation_in_one_transaction_splits_before_and_after() {
    let q = Qemu::start();
    let c = q.client();
    let disks = list_disks(&c).unwrap();
    for d in &disks {
        create_bitmap(&c, d, "lifeboat-1").unwrap();
    }
    qemu_io(&c, "sda", "write -P 1 0 64k");
    qemu_io(&c, "sdb", "write -P 1 0 128k");
    let rotations: Vec<Rotation> = disks
        .iter()
        .map(|d| Rotation::new(d, "lifeboat-1", "lifeboat-2"))
        .collect();
    rotate(&c, &rotations).unwrap();
    qemu_io(&c, "sda", "write -P 2 8M 256k");
    qemu_io(&c, "sdb", "write -P 2 8M 512k");
    let disks = list_disks(&c).unwrap();
    for (d, before, after) in [(&disks[0], 64 * K, 256 * K), (&disks[1], 128 * K, 512 * K)] {
        let old = d.bitmap("lifeboat-1").unwrap();
        let new = d.bitmap("lifeboat-2").unwrap();
        assert_eq!(
            (old.dirty_bytes, old.recording),
            (before, false),
            "{}",
            d.label()
        );
        assert_eq!(
            (new.dirty_bytes, new.recording),
            (after, true),
            "{}",
            d.label()
        );
    }
    assert!(disks[0].bitmap("lifeboat-2").unwrap().persistent);
    assert!(!disks[1].bitmap("lifeboat-2").unwrap().persistent);

    // All or nothing: a rotation naming a missing bitmap changes no disk.
    let bad = vec![
        Rotation::new(&disks[0], "lifeboat-2", "lifeboat-3"),
        Rotation::new(&disks[1], "lifeboat-missing", "lifeboat-3"),
    ];
    let err = rotate(&c, &bad).unwrap_err();
    assert_eq!(err.qemu_class(), Some("GenericError"), "{err}");
    assert!(list_disks(&c).unwrap()[0].bitmap("lifeboat-3").is_none());

    // A failed backup merges the frozen bitmap back: nothing is forgotten.
    undo_rotation(&c, &rotations).unwrap();
    let disks = list_disks(&c).unwrap();
    assert!(disks[0].bitmap("lifeboat-1").is_none());
    assert_eq!(disks[0].bitmap("lifeboat-2").unwrap().dirty_bytes, 320 * K);
    assert_eq!(disks[1].bitmap("lifeboat-2").unwrap().dirty_bytes, 640 * K);
}

#[test]
fn fleecing_export_reads_the_point_in_time_and_teardown_removes_everything() {
    fleecing_case(FleeceMethod::SnapshotAccess);
}

#[test]
fn fleecing_backup_sync_none_reads_the_point_in_time_and_teardown_removes_everything() {
    fleecing_case(FleeceMethod::BackupSyncNone);
}

fn fleecing_case(method: FleeceMethod) {
    let q = Qemu::start();
    let c = q.client();
    // The VM runs (firmware finds no boot disk and waits): the point in time
    // pauses it briefly (snapshot-access) or not at all (backup sync=none).
    c.execute("cont", Value::Null).unwrap();
    let running = || c.execute("query-status", Value::Null).unwrap()["running"] == true;
    assert!(running());
    qemu_io(&c, "sda", "write -P 0xab 1M 64k");
    let disks = list_disks(&c).unwrap();
    let fd = vec![FleeceDisk {
        disk: disks[0].clone(),
        rotation: None,
    }];
    let f = Fleece::start(&c, &fd, &options_with(&q, method)).unwrap();
    assert_eq!(f.method(), method);
    let events = c.take_events();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    if method == FleeceMethod::SnapshotAccess {
        assert!(
            f.paused() > Duration::ZERO && f.paused() < Duration::from_secs(5),
            "{:?}",
            f.paused()
        );
        assert!(
            names.contains(&"STOP") && names.contains(&"RESUME"),
            "{names:?}"
        );
    } else {
        assert_eq!(f.paused(), Duration::ZERO);
        assert!(!names.contains(&"STOP"), "{names:?}");
    }
    assert!(running(), "the guest runs after the point in time");
    // The overlay-creation jobs' JOB_STATUS_CHANGE events were awaited and taken.
    assert!(
        !events.iter().any(|e| e.name == "JOB_STATUS_CHANGE"
            && e.data["id"]
                .as_str()
                .unwrap()
                .starts_with("lifeboat-create")),
        "{events:?}"
    );
    assert_eq!(work_files(&q).len(), 1, "one overlay file");
    assert_eq!(
        list_disks(&c).unwrap()[0].node_name,
        "disk0",
        "looked through our filter"
    );
    // The guest writes after the point in time, over old data and elsewhere.
    qemu_io(&c, "sda", "write -P 0xcd 1M 4k");
    qemu_io(&c, "sda", "write -P 0xee 4M 64k");
    let data = read_export(&f.exports()[0].uri, q.dir.path());
    assert_eq!(data.len() as u64, DISK_SIZE);
    let mut want = vec![0u8; DISK_SIZE as usize];
    want[M as usize..(M + 64 * K) as usize].fill(0xab);
    assert!(
        data == want,
        "the export shows the disk as it was at the point in time"
    );
    // The disk itself has the new data.
    qemu_io(&c, "sda", "read -P 0xcd 1M 4k");
    qemu_io(&c, "sda", "read -P 0xee 4M 64k");

    f.teardown(&c).unwrap();
    assert_eq!(lifeboat_nodes(&c), Vec::<String>::new());
    assert_eq!(exports(&c), Vec::<String>::new());
    assert_eq!(work_files(&q), Vec::<String>::new(), "overlay file removed");
    let blocks = c.execute("query-block", Value::Null).unwrap();
    assert_eq!(
        blocks[0]["inserted"]["node-name"], "disk0",
        "device back on the disk"
    );
    // Writes still reach the disk, and a second point in time works.
    qemu_io(&c, "sda", "write -P 0x11 0 4k");
    let f = Fleece::start(&c, &fd, &options_with(&q, method)).unwrap();
    assert_eq!(
        &read_export(&f.exports()[0].uri, q.dir.path())[..4096],
        &[0x11; 4096][..]
    );
    f.teardown(&c).unwrap();
}

#[test]
fn cleanup_leftovers_after_a_killed_run() {
    cleanup_case(FleeceMethod::SnapshotAccess);
}

#[test]
fn cleanup_leftovers_after_a_killed_run_backup_sync_none() {
    cleanup_case(FleeceMethod::BackupSyncNone);
}

fn cleanup_case(method: FleeceMethod) {
    let q = Qemu::start();
    let c = q.client();
    let disks = list_disks(&c).unwrap();
    create_bitmap(&c, &disks[0], "lifeboat-1").unwrap();
    qemu_io(&c, "sda", "write -P 1 0 64k");
    let fd: Vec<FleeceDisk> = disks
        .iter()
        .map(|d| FleeceDisk {
            disk: d.clone(),
            rotation: (d.node_name == "disk0")
                .then(|| Rotation::new(d, "lifeboat-1", "lifeboat-2")),
        })
        .collect();
    let f = Fleece::start(&c, &fd, &options_with(&q, method)).unwrap();
    qemu_io(&c, "sda", "write -P 2 8M 64k");
    // The process dies: no teardown, the connection closes.
    drop(f);
    drop(c);

    let c = q.client();
    let disks = list_disks(&c).unwrap();
    assert!(disks.iter().all(|d| d.filtered_by_lifeboat), "{disks:?}");
    assert!(
        matches!(next_read(&disks[0]), NextRead::Full { reason } if reason.contains("interrupted"))
    );
    let mut report = cleanup_leftovers(&c).unwrap();
    report.exports.sort();
    report.devices_restored.sort();
    assert_eq!(report.exports, ["lifeboat-sda", "lifeboat-sdb"]);
    assert!(report.nbd_server_stopped);
    if method == FleeceMethod::SnapshotAccess {
        assert_eq!(report.devices_restored, ["sda", "sdb"]);
        assert_eq!(report.nodes.len(), 8, "{:?}", report.nodes);
        assert!(report.jobs.is_empty(), "{:?}", report.jobs);
    } else {
        assert!(report.devices_restored.is_empty());
        report.jobs.sort();
        assert_eq!(report.jobs, ["lifeboat-backup0", "lifeboat-backup1"]);
        assert_eq!(report.nodes.len(), 4, "{:?}", report.nodes);
    }
    assert_eq!(report.files.len(), 2, "{:?}", report.files);
    assert_eq!(report.bitmaps, ["disk0: lifeboat-1 -> lifeboat-2"]);
    assert_eq!(lifeboat_nodes(&c), Vec::<String>::new());
    assert_eq!(exports(&c), Vec::<String>::new());
    assert_eq!(work_files(&q), Vec::<String>::new());
    let disks = list_disks(&c).unwrap();
    assert!(disks.iter().all(|d| !d.filtered_by_lifeboat));
    assert_eq!(
        next_read(&disks[0]),
        NextRead::Incremental {
            bitmap: "lifeboat-2".into(),
            dirty_bytes: 128 * K
        },
        "the writes before and after the lost point in time are both kept"
    );
    assert!(
        cleanup_leftovers(&c).unwrap().is_empty(),
        "a second cleanup finds nothing"
    );
    // The next run succeeds.
    let fd: Vec<FleeceDisk> = disks
        .iter()
        .map(|d| FleeceDisk {
            disk: d.clone(),
            rotation: None,
        })
        .collect();
    Fleece::start(&c, &fd, &options_with(&q, method))
        .unwrap()
        .teardown(&c)
        .unwrap();
}

#[test]
fn a_failed_fleece_tears_down_and_keeps_the_bitmap() {
    let q = Qemu::start();
    let c = q.client();
    let disks = list_disks(&c).unwrap();
    create_bitmap(&c, &disks[0], "lifeboat-1").unwrap();
    qemu_io(&c, "sda", "write -P 1 0 64k");
    // Another NBD server already runs: our nbd-server-start fails after the
    // point in time was taken.
    let other = q.dir.path().join("other-nbd.sock");
    c.execute(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": other.to_str().unwrap()}}}),
    )
    .unwrap();
    let fd = vec![FleeceDisk {
        disk: disks[0].clone(),
        rotation: Some(Rotation::new(&disks[0], "lifeboat-1", "lifeboat-2")),
    }];
    let err = Fleece::start(&c, &fd, &options(&q)).unwrap_err();
    assert!(
        matches!(err, HypervisorError::Qemu { ref command, .. } if command == "nbd-server-start"),
        "{err}"
    );
    assert_eq!(lifeboat_nodes(&c), Vec::<String>::new());
    assert_eq!(work_files(&q), Vec::<String>::new());
    let d = &list_disks(&c).unwrap()[0];
    assert!(!d.filtered_by_lifeboat);
    assert_eq!(
        next_read(d),
        NextRead::Incremental {
            bitmap: "lifeboat-2".into(),
            dirty_bytes: 64 * K
        },
        "the rotation was merged back"
    );
}

#[test]
fn qemu_errors_are_typed_with_class_and_desc() {
    let q = Qemu::start();
    let c = q.client();
    let err = c
        .execute(
            "block-dirty-bitmap-add",
            json!({"node": "nope", "name": "lifeboat-x"}),
        )
        .unwrap_err();
    match &err {
        HypervisorError::Qemu {
            command,
            class,
            desc,
            socket,
        } => {
            assert_eq!(command, "block-dirty-bitmap-add");
            assert_eq!(class, "GenericError");
            assert!(desc.contains("nope"), "{desc}");
            assert_eq!(socket, &q.qmp);
        }
        e => panic!("{e:?}"),
    }
    let err = c.execute("no-such-command", Value::Null).unwrap_err();
    assert_eq!(err.qemu_class(), Some("CommandNotFound"), "{err}");
    // The client goes on working after errors.
    c.query_version().unwrap();
}

#[test]
fn every_command_times_out_and_events_are_delivered() {
    let mut q = Qemu::start();
    let c = QmpClient::connect_with_timeout(&q.qmp, Duration::from_secs(1)).unwrap();
    let pid = q.pid().to_string();
    let signal = |s: &str| {
        assert!(std::process::Command::new("kill")
            .args([s, &pid])
            .status()
            .unwrap()
            .success())
    };
    signal("-STOP");
    let err = c.query_version().unwrap_err();
    signal("-CONT");
    match err {
        HypervisorError::Timeout {
            command, timeout, ..
        } => {
            assert_eq!(
                (command.as_str(), timeout),
                ("query-version", Duration::from_secs(1))
            )
        }
        e => panic!("{e:?}"),
    }
    // The late reply is dropped; the next command gets its own.
    assert_eq!(c.query_version().unwrap().major, c.version().major);
    let err = c
        .wait_event("NEVER", Duration::from_millis(100), |e| e.name == "NEVER")
        .unwrap_err();
    assert!(matches!(err, HypervisorError::EventTimeout { .. }), "{err}");

    c.execute("quit", Value::Null).unwrap();
    let e = c
        .wait_event("SHUTDOWN", Duration::from_secs(10), |e| {
            e.name == "SHUTDOWN"
        })
        .unwrap();
    assert_eq!(e.data["guest"], false, "{e:?}");
    q.wait_exit();
    let err = c.query_version().unwrap_err();
    assert!(
        matches!(
            err,
            HypervisorError::Closed { .. } | HypervisorError::Io { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_second_client_is_told_that_qemu_serves_one_at_a_time() {
    let q = Qemu::start();
    let first = q.client();
    let err = QmpClient::connect_with_timeout(&q.qmp, Duration::from_millis(500)).unwrap_err();
    assert!(matches!(err, HypervisorError::NotQmp { .. }), "{err:?}");
    assert!(
        err.to_string().contains("one client per QMP socket"),
        "{err}"
    );
    drop(first);
    q.client().query_version().unwrap();
}

#[test]
fn a_second_point_in_time_of_the_same_vm_is_refused() {
    let q = Qemu::start();
    let c = q.client();
    qemu_io(&c, "sda", "write -P 0x5a 0 64k");
    let disks = list_disks(&c).unwrap();
    let fd = vec![FleeceDisk {
        disk: disks[0].clone(),
        rotation: None,
    }];
    let f = Fleece::start(&c, &fd, &options(&q)).unwrap();
    let err = Fleece::start(&c, &fd, &options(&q)).unwrap_err();
    assert!(matches!(err, HypervisorError::Invalid { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("another backup of it runs") && msg.contains("lifeboat-cbw0"),
        "{msg}"
    );
    // The first one is untouched.
    assert_eq!(work_files(&q).len(), 1);
    assert_eq!(
        &read_export(&f.exports()[0].uri, q.dir.path())[..65536],
        &[0x5a; 65536][..]
    );
    f.teardown(&c).unwrap();
}

/// A virtio-blk disk attached the older way (`-drive if=none` + device):
/// the device's drive is switched to the filter through its
/// `.../virtio-backend` QOM path, and writes through its named
/// BlockBackend `drive2` (the one the guest writes through) go through it.
#[test]
fn fleecing_a_virtio_blk_disk_attached_with_drive() {
    let q = Qemu::start_with(&[
        "-drive",
        "if=none,id=drive2,format=qcow2,node-name=disk2,file={dir}/disk2.qcow2",
        "-device",
        "virtio-blk-pci,drive=drive2,id=vda",
    ]);
    let c = q.client();
    let disks = list_disks(&c).unwrap();
    let vda = find_disk(&c, &disks, "drive2").unwrap().clone();
    assert_eq!(
        (vda.qdev.as_str(), vda.node_name.as_str()),
        ("/machine/peripheral/vda/virtio-backend", "disk2")
    );
    create_bitmap(&c, &vda, "lifeboat-1").unwrap();
    qemu_io_drive(&c, "drive2", "write -P 0x21 2M 64k");
    let fd = vec![FleeceDisk {
        rotation: Some(Rotation::new(&vda, "lifeboat-1", "lifeboat-2")),
        disk: vda,
    }];
    let f = Fleece::start(&c, &fd, &options(&q)).unwrap();
    qemu_io_drive(&c, "drive2", "write -P 0x22 2M 4k");
    qemu_io_drive(&c, "drive2", "write -P 0x23 6M 64k");
    let e = &f.exports()[0];
    assert_eq!(e.name, "lifeboat-drive2");
    assert_eq!(dirty_extents(&e.uri, "lifeboat-1"), vec![(2 * M, 64 * K)]);
    let data = read_export(&e.uri, q.dir.path());
    let mut want = vec![0u8; DISK_SIZE as usize];
    want[2 * M as usize..(2 * M + 64 * K) as usize].fill(0x21);
    assert!(data == want, "the export shows the point in time");
    qemu_io_drive(&c, "drive2", "read -P 0x22 2M 4k");
    f.teardown(&c).unwrap();
    let blocks = c.execute("query-block", Value::Null).unwrap();
    let vda = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "drive2")
        .unwrap();
    assert_eq!(vda["inserted"]["node-name"], "disk2");
    finish_rotation(
        &c,
        &[Rotation::new(
            find_disk(&c, &list_disks(&c).unwrap(), "drive2").unwrap(),
            "lifeboat-1",
            "lifeboat-2",
        )],
    )
    .unwrap();
    let disks = list_disks(&c).unwrap();
    let d = find_disk(&c, &disks, "drive2").unwrap();
    assert_eq!(
        d.bitmap("lifeboat-2").unwrap().dirty_bytes,
        128 * K,
        "the writes after the point in time"
    );
}

#[test]
fn a_vm_that_stops_while_its_point_in_time_is_held_is_reported() {
    let mut q = Qemu::start();
    let c = q.client();
    let disks = list_disks(&c).unwrap();
    let fd = vec![FleeceDisk {
        disk: disks[0].clone(),
        rotation: None,
    }];
    let f = Fleece::start(&c, &fd, &options(&q)).unwrap();
    f.check(&c).unwrap();
    c.execute("quit", Value::Null).unwrap();
    q.wait_exit();
    let err = f.check(&c).unwrap_err();
    match &err {
        HypervisorError::Interrupted { event, detail, .. } => {
            assert_eq!(event, "SHUTDOWN");
            assert!(detail.contains("reason: host-qmp-quit"), "{detail}");
        }
        e => panic!("{e:?}"),
    }
    let err = f.check(&c).unwrap_err();
    assert!(
        err.to_string().contains("QEMU closed the QMP connection"),
        "{err}"
    );
    // Teardown reports the closed connection and still removes the overlay file.
    assert!(f.teardown(&c).is_err());
    assert_eq!(work_files(&q), Vec::<String>::new());
}

#[test]
fn overlays_and_the_nbd_socket_need_private_directories() {
    use std::os::unix::fs::PermissionsExt;
    let q = Qemu::start();
    let c = q.client();
    let disks = list_disks(&c).unwrap();
    let fd = vec![FleeceDisk {
        disk: disks[0].clone(),
        rotation: None,
    }];
    let open_dir = q.dir.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut o = options(&q);
    o.work_dir = open_dir.clone();
    let err = Fleece::start(&c, &fd, &o).unwrap_err();
    assert!(
        err.to_string().contains("overlays") && err.to_string().contains("0755"),
        "{err}"
    );
    let mut o = options(&q);
    o.nbd_socket = open_dir.join("nbd.sock");
    let err = Fleece::start(&c, &fd, &o).unwrap_err();
    assert!(
        err.to_string().contains("NBD socket") && err.to_string().contains("mode 0700"),
        "{err}"
    );
    assert_eq!(
        lifeboat_nodes(&c),
        Vec::<String>::new(),
        "nothing was built"
    );
}
