//! Live backup of a running QEMU VM (real QEMU 7.2, TCG): a full backup
//! of every disk at one point in time, then an incremental that reads only
//! the chunks the dirty bitmap marks, each restore point holding exactly
//! the disk as it was at its point in time, and nothing of ours left in
//! QEMU afterwards.

mod common;
use common::*;
use lifeboat_engine::NoProgress;
use lifeboat_hypervisor::{
    live_backup, LiveBackupOptions, LiveBackupReport, QmpClient, LIVE_COMPRESSION_LEVEL,
};
use lifeboat_repo::Repository;
use lifeboat_testsupport::repo::init_repo;
use lifeboat_vdisk::ReadDisk;
use serde_json::Value;
use std::time::Duration;

const CHUNK: u32 = 256 << 10;

fn backup(q: &Qemu, c: &QmpClient, repo: &Repository) -> LiveBackupReport {
    let opts = LiveBackupOptions {
        vm: "vm1".into(),
        work_dir: q.work_dir(),
        connections: 2,
        timeout: Duration::from_secs(30),
        method: None,
        compression_level: LIVE_COMPRESSION_LEVEL,
        agent: None,
    };
    live_backup(repo, c, &opts, &NoProgress).unwrap()
}

/// The disk `name` of `rp` read back whole.
fn read_back(repo: &Repository, rp: &str, name: &str) -> Vec<u8> {
    let m = repo.resolve(rp).unwrap();
    let d = repo.open_disk(&m, name).unwrap();
    let mut buf = vec![0u8; d.size() as usize];
    d.read_at(&mut buf, 0).unwrap();
    buf
}

fn fill(buf: &mut [u8], at: usize, len: usize, byte: u8) {
    buf[at..at + len].fill(byte);
}

#[test]
fn full_then_incremental_backup_of_a_running_vm() {
    let q = Qemu::start();
    let c = q.client();
    c.execute("cont", Value::Null).unwrap();
    let repo = init_repo(&q.dir.path().join("repo"), Some("pw"), CHUNK);
    let size = DISK_SIZE as usize;

    qemu_io(&c, "sda", "write -P 0x11 0 1M");
    qemu_io(&c, "sdb", "write -P 0x44 8M 128k");
    let first = backup(&q, &c, &repo);
    assert_eq!(first.disks.len(), 2, "{first:?}");
    for d in &first.disks {
        assert_eq!(d.read, "full", "{d:?}");
        assert!(
            d.why_full.as_deref().unwrap_or("").contains("bitmap"),
            "{d:?}"
        );
    }
    assert_eq!(
        first.consistency.level,
        lifeboat_repo::ConsistencyLevel::Crash,
        "{first:?}"
    );
    assert!(
        first
            .consistency
            .why
            .as_deref()
            .unwrap_or("")
            .contains("no guest agent given"),
        "{first:?}"
    );

    // Written after the first point in time: only this is read next.
    qemu_io(&c, "sda", "write -P 0x22 4M 64k");
    let second = backup(&q, &c, &repo);
    let (sda, sdb) = (&second.disks[0], &second.disks[1]);
    assert_eq!(sda.read, "incremental", "{second:?}");
    assert_eq!(sda.changed_bytes, 64 << 10, "{sda:?}");
    assert!(
        sda.bytes_read <= u64::from(CHUNK),
        "only the dirty chunk is read: {sda:?}"
    );
    assert_eq!(sdb.read, "incremental", "{second:?}");
    assert_eq!((sdb.changed_bytes, sdb.bytes_read), (0, 0), "{sdb:?}");
    assert!(
        sda.persistent && !sdb.persistent,
        "qcow2 keeps its bitmap, raw does not"
    );

    // Each restore point holds its point in time, bit-exact.
    let mut a1 = vec![0u8; size];
    fill(&mut a1, 0, 1 << 20, 0x11);
    let mut b = vec![0u8; size];
    fill(&mut b, 8 << 20, 128 << 10, 0x44);
    let mut a2 = a1.clone();
    fill(&mut a2, 4 << 20, 64 << 10, 0x22);
    let (d0, d1) = (&first.disks[0].disk, &first.disks[1].disk);
    assert!(
        read_back(&repo, &first.restore_point, d0) == a1,
        "first point, disk 0"
    );
    assert!(
        read_back(&repo, &first.restore_point, d1) == b,
        "first point, disk 1"
    );
    assert!(
        read_back(&repo, &second.restore_point, d0) == a2,
        "second point, disk 0"
    );
    assert!(
        read_back(&repo, &second.restore_point, d1) == b,
        "second point, disk 1"
    );
    assert!(repo.verify(None).unwrap().is_ok());

    // Nothing of ours is left in QEMU but one recording bitmap per disk.
    assert!(lifeboat_nodes(&c).is_empty(), "{:?}", lifeboat_nodes(&c));
    assert!(exports(&c).is_empty());
    for d in lifeboat_hypervisor::list_disks(&c).unwrap() {
        let ours: Vec<_> = d
            .bitmaps
            .iter()
            .filter(|b| b.name.starts_with("lifeboat-"))
            .collect();
        assert_eq!(ours.len(), 1, "{d:?}");
        assert!(ours[0].recording);
    }
}

#[test]
fn a_bitmap_deleted_behind_our_back_means_a_full_read_that_says_why() {
    let q = Qemu::start();
    let c = q.client();
    c.execute("cont", Value::Null).unwrap();
    let repo = init_repo(&q.dir.path().join("repo"), Some("pw"), CHUNK);
    qemu_io(&c, "sda", "write -P 0x11 0 1M");
    backup(&q, &c, &repo);
    for d in lifeboat_hypervisor::list_disks(&c).unwrap() {
        for b in d.bitmaps.iter().filter(|b| b.name.starts_with("lifeboat-")) {
            c.execute(
                "block-dirty-bitmap-remove",
                serde_json::json!({"node": d.node_name, "name": b.name}),
            )
            .unwrap();
        }
    }
    qemu_io(&c, "sda", "write -P 0x33 2M 64k");
    let again = backup(&q, &c, &repo);
    for d in &again.disks {
        assert_eq!(d.read, "full", "{d:?}");
        assert!(d.why_full.is_some(), "{d:?}");
    }
    let mut want = vec![0u8; DISK_SIZE as usize];
    fill(&mut want, 0, 1 << 20, 0x11);
    fill(&mut want, 2 << 20, 64 << 10, 0x33);
    assert!(read_back(&repo, &again.restore_point, &again.disks[0].disk) == want);
}
