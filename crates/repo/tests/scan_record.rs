//! Scan records in manifests: `record_scan` persists and replaces the
//! record, keeps the retention lock, and a later `lock` keeps the record;
//! the disks of the restore point are untouched.

mod common;
use chrono::{Duration, Utc};
use common::*;
use lifeboat_repo::*;

fn record(state: ScanStatus, detections: u64) -> ScanRecord {
    ScanRecord {
        state,
        time: Utc::now(),
        engines: vec![
            ScanEngine {
                name: "clamav".into(),
                fingerprint: "db1".into(),
                ..Default::default()
            },
            ScanEngine {
                name: "yara".into(),
                fingerprint: "yara-x:r1".into(),
                ..Default::default()
            },
        ],
        detections,
        unreadable: 0,
    }
}

#[test]
fn record_scan_persists_replaces_and_coexists_with_lock() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let data = noise(300_000, 7);
    let m = backup(&repo, "vm", &data);
    assert_eq!(m.scan, None);

    // A lock first, then a scan record: both are kept.
    let until = Utc::now() + Duration::days(3);
    repo.lock(&m, until).unwrap();
    let infected = record(ScanStatus::Infected, 2);
    let after = repo.record_scan(&m, infected.clone()).unwrap();
    assert_eq!(after.scan.as_ref(), Some(&infected));
    assert_eq!(after.locked_until, Some(until));

    let reopened = Repository::open(repo.path(), Some(PASS)).unwrap();
    let read = reopened.resolve(&m.name()).unwrap();
    assert_eq!(read.scan, Some(infected));
    assert_eq!(read.disks, m.disks);
    assert_eq!(read_back(&reopened, &read, "disk0"), data);

    // A newer scan replaces the record; extending the lock keeps it.
    let clean = record(ScanStatus::Clean, 0);
    repo.record_scan(&m, clean.clone()).unwrap();
    let later = until + Duration::days(1);
    let relocked = repo.lock(&m, later).unwrap();
    assert_eq!(relocked.scan, Some(clean.clone()));
    let listed = repo.list(Some("vm")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].scan, Some(clean));
    assert_eq!(listed[0].locked_until, Some(later));
}

#[test]
fn record_scan_of_a_forgotten_point_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), false);
    let m = backup(&repo, "vm", &noise(1000, 1));
    repo.forget(&m).unwrap();
    match repo.record_scan(&m, record(ScanStatus::Clean, 0)) {
        Err(Error::NotFound { what }) => assert!(what.contains(&m.name()), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}
