//! YARA over trees and repository items, and the dedup-aware re-scan: a
//! second restore point sharing most content skips what was seen and says
//! how much; detections in unchanged files are still reported.
#![cfg(feature = "yara")]

mod common;

use std::io::{self, Read};

use common::*;
use lifeboat_scan::{ClamAvScanner, ContentKey, Engine, Scan, ScanCache, ScanState, YaraScanner};

#[test]
fn yara_tree_scan_finds_eicar_and_marker() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("vol");
    make_infected_tree(&root);
    let y = YaraScanner::builtin().unwrap();
    let mut cache = ScanCache::in_memory();
    let mut scan = Scan::new("web01@1", None, Some(&y), &mut cache).unwrap();
    scan.scan_tree("disk0", "p1", &root).unwrap();
    let r = scan.finish();
    assert_eq!(r.state, ScanState::Infected);
    let got: Vec<_> = r
        .detections
        .iter()
        .map(|d| (d.path.as_str(), d.engine, d.signature.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/home/alice/notes.txt",
                Engine::Yara,
                "Lifeboat_Test_Marker"
            ),
            ("/tmp/eicar.com", Engine::Yara, "EICAR_Test_File"),
        ]
    );
    assert_eq!(r.files_scanned, 9);
}

#[test]
fn rescan_skips_unchanged_content_and_counts_it() {
    require_clamscan();
    let t = tempfile::tempdir().unwrap();
    let db = make_clamav_db(&t.path().join("db"));
    let cache_dir = t.path().join("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let clam = ClamAvScanner::new(Some(db));
    let y = YaraScanner::builtin().unwrap();

    let rp1 = t.path().join("rp1");
    make_infected_tree(&rp1);
    let mut cache = ScanCache::open(&cache_dir, [7; 32]).unwrap();
    let mut scan = Scan::new("web01@1", Some(&clam), Some(&y), &mut cache).unwrap();
    scan.scan_tree("disk0", "p1", &rp1).unwrap();
    let r1 = scan.finish();
    cache.save().unwrap();
    assert_eq!((r1.files_scanned, r1.skipped_unchanged_files), (9, 0));
    assert_eq!(r1.detections.len(), 4, "{:?}", r1.detections);

    // The next restore point: same files plus one changed and one new copy
    // of existing content under another name.
    let rp2 = t.path().join("rp2");
    make_infected_tree(&rp2);
    std::fs::write(rp2.join("etc/hosts"), "127.0.0.1 localhost web01\n").unwrap();
    std::fs::write(rp2.join("tmp/copy.com"), EICAR).unwrap();
    let mut cache = ScanCache::open(&cache_dir, [7; 32]).unwrap();
    let mut scan = Scan::new("web01@2", Some(&clam), Some(&y), &mut cache).unwrap();
    scan.scan_tree("disk0", "p1", &rp2).unwrap();
    let r2 = scan.finish();
    assert_eq!(r2.files_scanned, 1, "{r2:?}");
    assert_eq!(r2.bytes_scanned, "127.0.0.1 localhost web01\n".len() as u64);
    assert_eq!(r2.skipped_unchanged_files, 9);
    let total: u64 = walk_sizes(&rp2);
    assert_eq!(r2.skipped_unchanged_bytes + r2.bytes_scanned, total);
    // Detections come from the cache, with this restore point's paths.
    let got: Vec<_> = r2
        .detections
        .iter()
        .map(|d| (d.restore_point.as_str(), d.path.as_str(), d.engine))
        .collect();
    assert_eq!(
        got,
        vec![
            ("web01@2", "/home/alice/notes.txt", Engine::Clamav),
            ("web01@2", "/home/alice/notes.txt", Engine::Yara),
            ("web01@2", "/tmp/copy.com", Engine::Clamav),
            ("web01@2", "/tmp/copy.com", Engine::Yara),
            ("web01@2", "/tmp/eicar.com", Engine::Clamav),
            ("web01@2", "/tmp/eicar.com", Engine::Yara),
        ]
    );

    // Another rule set: only the duplicate content within this run
    // (/tmp/copy.com = /tmp/eicar.com) is skipped.
    let y2 = YaraScanner::from_rules("rule hosts { strings: $a = \"localhost\" condition: $a }")
        .unwrap();
    let mut scan = Scan::new("web01@2", None, Some(&y2), &mut cache).unwrap();
    scan.scan_tree("disk0", "p1", &rp2).unwrap();
    let r3 = scan.finish();
    assert_eq!((r3.files_scanned, r3.skipped_unchanged_files), (9, 1));
    assert_eq!(r3.skipped_unchanged_bytes, EICAR.len() as u64);
    assert_eq!(r3.detections.len(), 1);
}

fn walk_sizes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            walk_sizes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

/// A reader failing like a corrupt chunk under a published file.
struct Eio;
impl Read for Eio {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(5))
    }
}

#[test]
fn items_from_repository_scan_with_chunk_keys_and_eio_is_unreadable() {
    let y = YaraScanner::builtin().unwrap();
    let mut cache = ScanCache::in_memory();
    let chunks = [[7u8; 32], [8u8; 32]];
    let key = ContentKey::of_chunks(&chunks);
    let mut scan = Scan::new("web01@1", None, Some(&y), &mut cache).unwrap();
    scan.scan_item(
        "disk0",
        "p1",
        "/tmp/eicar.com",
        &mut { EICAR },
        Some((key.clone(), EICAR.len() as u64)),
    )
    .unwrap();
    scan.scan_item("disk0", "p1", "/etc/clean", &mut &b"fine"[..], None)
        .unwrap();
    scan.scan_item("disk0", "p1", "/var/bad.bin", &mut Eio, None)
        .unwrap();
    let r = scan.finish();
    assert_eq!(r.state, ScanState::Infected);
    assert_eq!(r.unreadable.len(), 1);
    assert_eq!(r.unreadable[0].path, "/var/bad.bin");
    assert_eq!((r.files_scanned, r.skipped_unchanged_files), (2, 0));

    // Same chunks again: skipped without reading (the reader would fail).
    let mut scan = Scan::new("web01@2", None, Some(&y), &mut cache).unwrap();
    scan.scan_item(
        "disk0",
        "p1",
        "/tmp/eicar.com",
        &mut Eio,
        Some((key, EICAR.len() as u64)),
    )
    .unwrap();
    let r = scan.finish();
    assert_eq!(r.state, ScanState::Infected);
    assert_eq!(r.skipped_unchanged_files, 1);
    assert_eq!(r.skipped_unchanged_bytes, EICAR.len() as u64);

    // Only an unreadable file: incomplete, never clean.
    let mut scan = Scan::new("web01@3", None, Some(&y), &mut cache).unwrap();
    scan.scan_item("disk0", "p1", "/var/bad.bin", &mut Eio, None)
        .unwrap();
    assert_eq!(scan.finish().state, ScanState::Incomplete);
}
