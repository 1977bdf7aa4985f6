//! ClamAV against generated signatures: planted EICAR and marker files are
//! found at the right paths, a clean tree is clean, missing files are
//! reported unreadable.

mod common;

use std::path::PathBuf;

use common::*;
use lifeboat_scan::{ClamAvScanner, Engine, Scan, ScanCache, ScanState};

#[test]
fn clamscan_finds_planted_samples_at_their_paths() {
    let (_t, root, clam) = clam_fixture(true);
    assert!(!clam.uses_clamd());
    let out = clam.scan_tree(&root).unwrap();
    let mut hits: Vec<_> = out
        .detections
        .iter()
        .map(|h| (h.path.clone(), h.signature.clone()))
        .collect();
    hits.sort();
    assert_eq!(
        hits,
        vec![
            (
                root.join("home/alice/notes.txt"),
                "Lifeboat.Test.Marker.UNOFFICIAL".to_string()
            ),
            (
                root.join("tmp/eicar.com"),
                "Lifeboat.Test.Eicar.UNOFFICIAL".to_string()
            ),
        ]
    );
    assert!(out.unreadable.is_empty(), "{:?}", out.unreadable);
}

#[test]
fn clean_tree_reports_clean() {
    let (_t, root, clam) = clam_fixture(false);
    let out = clam.scan_tree(&root).unwrap();
    assert!(
        out.detections.is_empty() && out.unreadable.is_empty(),
        "{out:?}"
    );

    let mut cache = ScanCache::in_memory();
    let mut scan = Scan::new("web01@1", Some(&clam), None, &mut cache).unwrap();
    scan.scan_tree("disk0", "p1", &root).unwrap();
    let r = scan.finish();
    assert_eq!(r.state, ScanState::Clean);
    assert_eq!(r.files_scanned, 7);
    assert_eq!(r.skipped_unchanged_files, 0);
}

#[test]
fn scan_report_names_restore_point_disk_volume_and_path() {
    let (_t, root, clam) = clam_fixture(true);
    let mut cache = ScanCache::in_memory();
    let mut scan = Scan::new("web01@3", Some(&clam), None, &mut cache).unwrap();
    scan.scan_tree("disk0", "lvm/root", &root).unwrap();
    let r = scan.finish();
    assert_eq!(r.state, ScanState::Infected);
    let got: Vec<_> = r
        .detections
        .iter()
        .map(|d| (d.path.as_str(), d.signature.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/home/alice/notes.txt", "Lifeboat.Test.Marker.UNOFFICIAL"),
            ("/tmp/eicar.com", "Lifeboat.Test.Eicar.UNOFFICIAL"),
        ]
    );
    for d in &r.detections {
        assert_eq!(
            (d.restore_point.as_str(), d.disk.as_str(), d.volume.as_str()),
            ("web01@3", "disk0", "lvm/root")
        );
        assert_eq!(d.engine, Engine::Clamav);
    }
    let json = r.to_json();
    assert!(json.contains("\"/tmp/eicar.com\""), "{json}");
}

/// Real clamscan output for a file it cannot access (as root, no honest
/// way to make a file in a tree unreadable without FUSE; the EIO form is
/// covered by the parser unit tests on captured lines).
#[test]
fn file_clamscan_cannot_access_is_unreadable_not_clean() {
    let (_t, root, clam) = clam_fixture(true);
    let gone = root.join("vanished.bin");
    let out = clam
        .scan_files(&[root.join("tmp/eicar.com"), gone.clone()])
        .unwrap();
    assert_eq!(out.detections.len(), 1);
    let paths: Vec<PathBuf> = out.unreadable.iter().map(|u| u.path.clone()).collect();
    assert_eq!(paths, vec![gone]);
}

#[test]
fn bad_database_is_an_error_with_stderr() {
    require_clamscan();
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("bad.ndb");
    std::fs::write(&db, "this is not a signature\n").unwrap();
    let root = t.path().join("vol");
    make_clean_tree(&root);
    let e = ClamAvScanner::new(Some(db)).scan_tree(&root).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("clamscan") && msg.contains("exit code"),
        "{msg}"
    );
}

/// Dedup-aware re-scan with ClamAV alone (runs without the `yara` feature).
#[test]
fn clamav_rescan_skips_unchanged_files() {
    require_clamscan();
    let t = tempfile::tempdir().unwrap();
    let clam = ClamAvScanner::new(Some(make_clamav_db(&t.path().join("db"))));
    let cache_dir = t.path().join("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let rp1 = t.path().join("rp1");
    make_infected_tree(&rp1);
    let mut cache = ScanCache::open(&cache_dir, [7; 32]).unwrap();
    let mut scan = Scan::new("web01@1", Some(&clam), None, &mut cache).unwrap();
    scan.scan_tree("disk0", "p1", &rp1).unwrap();
    assert_eq!(scan.finish().files_scanned, 9);
    cache.save().unwrap();

    let rp2 = t.path().join("rp2");
    make_infected_tree(&rp2);
    std::fs::write(rp2.join("etc/hostname"), "web02\n").unwrap();
    let mut cache = ScanCache::open(&cache_dir, [7; 32]).unwrap();
    let mut scan = Scan::new("web01@2", Some(&clam), None, &mut cache).unwrap();
    scan.scan_tree("disk0", "p1", &rp2).unwrap();
    let r = scan.finish();
    assert_eq!((r.files_scanned, r.bytes_scanned), (1, 6));
    assert_eq!(r.skipped_unchanged_files, 8);
    assert_eq!(r.state, ScanState::Infected);
    let paths: Vec<_> = r.detections.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, vec!["/home/alice/notes.txt", "/tmp/eicar.com"]);
}

#[test]
fn scan_without_engine_is_an_error() {
    let mut cache = ScanCache::in_memory();
    let e = Scan::new("web01@1", None, None, &mut cache).err().unwrap();
    assert!(e.to_string().contains("no engine"), "{e}");
}
