//! Windowed re-scan of real files: files written on the test machine's own
//! filesystem (ext4/XFS, FIEMAP gives their places on its device), two
//! chunk indexes of that device standing for a base and a newer restore
//! point, bytes changed in place inside one chunk of each file. With local
//! rules only the windows around the changed chunks are read, matches
//! reaching up to `M - 1` bytes out of a changed chunk are found, and the
//! result is cached for a third scan; non-local rules and files whose base
//! copy matched are read whole.
#![cfg(feature = "yara")]

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::MARKER;
use lifeboat_scan::{
    file_extents, DiskChunks, Engine, FileExtent, Scan, ScanCache, ScanReport, YaraScanner,
};

const MIB: u64 = 1 << 20;
/// Chunk size of the synthetic indexes.
const CS: u64 = MIB;
/// File size: the chunk holding byte 3 MiB is inside the file.
const SIZE: u64 = 6 * MIB;

fn pseudo_random(len: u64, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn write_at(path: &Path, at: u64, data: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, at).unwrap();
    f.sync_all().unwrap();
}

fn extents(path: &Path) -> Vec<FileExtent> {
    file_extents(&File::open(path).unwrap()).unwrap_or_else(|| {
        panic!(
            "{}: no FIEMAP extent map; run the test with TMPDIR on ext4 or XFS",
            path.display()
        )
    })
}

/// The disk chunk holding file byte `at` and the file range of `at`'s
/// extent inside that chunk.
fn chunk_at(map: &[FileExtent], at: u64) -> (u64, Range<u64>) {
    let e = map
        .iter()
        .find(|e| e.logical <= at && at < e.logical + e.length)
        .expect("byte mapped");
    let k = (e.physical + (at - e.logical)) / CS;
    let start = (k * CS).max(e.physical) - e.physical + e.logical;
    let end = ((k + 1) * CS).min(e.physical + e.length) - e.physical + e.logical;
    (k, start..end)
}

/// Chunk `i`'s digest, `seed` for the changed ones.
fn disk(size: u64, changed: &BTreeSet<u64>, seed: u8) -> DiskChunks {
    let n = size.div_ceil(CS);
    let digests = (0..n)
        .map(|i| {
            let mut d = *blake3::hash(&i.to_le_bytes()).as_bytes();
            if changed.contains(&i) {
                d[0] = seed;
                d[1] = !d[1];
            }
            Some(d)
        })
        .collect();
    DiskChunks::new(CS as u32, size, digests).unwrap()
}

/// A tree scan of `root` as a volume filling disks of `size` bytes.
fn scan(
    y: &YaraScanner,
    cache: &mut ScanCache,
    root: &Path,
    (now, base): (&DiskChunks, Option<&DiskChunks>),
    size: u64,
) -> ScanReport {
    let mut s = Scan::new("vm@x", None, Some(y), cache).unwrap();
    let v = now.volume(0, size).unwrap();
    let b = base.map(|b| b.volume(0, size).unwrap());
    s.scan_tree_mapped("disk0", "vol", root, Some(&v), b.as_ref(), None)
        .unwrap();
    s.finish()
}

fn found(r: &ScanReport) -> Vec<(&str, &str)> {
    r.detections
        .iter()
        .map(|d| {
            assert_eq!(d.engine, Engine::Yara);
            (d.path.as_str(), d.signature.as_str())
        })
        .collect()
}

#[test]
fn windows_around_changed_chunks_find_every_match_and_read_little() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("vol");
    std::fs::create_dir_all(&root).unwrap();
    let names = ["clean", "head", "infected", "mid", "tail", "untouched"];
    for (i, n) in names.iter().enumerate() {
        let p = root.join(format!("{n}.bin"));
        std::fs::write(&p, pseudo_random(SIZE, 1000 + i as u64)).unwrap();
        File::open(&p).unwrap().sync_all().unwrap();
    }
    let m = MARKER.as_bytes();
    let last = m.len() as u64 - 1;
    // The base contents: the marker minus its last byte ending where a
    // changed chunk's range starts in head.bin, minus its first byte
    // starting where it ends in tail.bin, whole in infected.bin.
    let mut changed = BTreeSet::new();
    let mut ranges = Vec::new();
    for n in names {
        let p = root.join(format!("{n}.bin"));
        let (k, r) = chunk_at(&extents(&p), 3 * MIB);
        // A whole chunk of the file, none of another file's.
        assert_eq!(
            r.end - r.start,
            CS,
            "{n}.bin is fragmented around 3 MiB: {r:?}"
        );
        match n {
            "head" => write_at(&p, r.start - last, &[&m[..m.len() - 1], b"X"].concat()),
            "tail" => write_at(&p, r.end - 1, &[b"X", &m[1..]].concat()),
            "infected" => write_at(&p, 100, m),
            _ => {}
        }
        if n != "untouched" {
            changed.insert(k);
        }
        ranges.push((p, r));
    }
    let maps: Vec<_> = ranges.iter().map(|(p, _)| extents(p)).collect();
    let end = maps
        .iter()
        .flatten()
        .map(|e| e.physical + e.length)
        .max()
        .unwrap();
    let size = (end / (1 << 30) + 1) * (1 << 30);
    let base = disk(size, &BTreeSet::new(), 0);
    let now = disk(size, &changed, 0xA5);

    let local = YaraScanner::from_rules(&format!(
        "rule Marker {{ strings: $m = \"{MARKER}\" condition: $m }}"
    ))
    .unwrap();
    assert_eq!(local.local_match_len(), Some(m.len() as u64));
    let whole = YaraScanner::from_rules(&format!(
        "rule Marker {{ strings: $m = \"{MARKER}\" condition: $m and filesize > 0 }}"
    ))
    .unwrap();
    assert_eq!(whole.local_match_len(), None);
    let mut cache = ScanCache::in_memory();
    for y in [&local, &whole] {
        let r = scan(y, &mut cache, &root, (&base, None), size);
        assert_eq!(found(&r), vec![("/infected.bin", "Marker")]);
        assert_eq!((r.files_scanned, r.bytes_scanned), (6, 6 * SIZE));
    }

    // The changes, in place, inside each file's changed chunk.
    for (p, r) in &ranges {
        match p.file_stem().and_then(|s| s.to_str()).unwrap() {
            "head" => write_at(p, r.start, &m[m.len() - 1..]),
            "tail" => write_at(p, r.end - 1, &m[..1]),
            "mid" => write_at(p, (r.start + r.end) / 2, m),
            "clean" | "infected" => write_at(p, r.start + 1000, &pseudo_random(4096, 7)),
            _ => {}
        }
    }
    let after: Vec<_> = ranges.iter().map(|(p, _)| extents(p)).collect();
    assert_eq!(after, maps, "overwrites in place keep the extents");
    let expect = vec![
        ("/head.bin", "Marker"),
        ("/infected.bin", "Marker"),
        ("/mid.bin", "Marker"),
        ("/tail.bin", "Marker"),
    ];

    // Local rules: four files scanned in windows (the base copy of
    // infected.bin matched: read whole), untouched.bin skipped unread.
    let r = scan(&local, &mut cache, &root, (&now, Some(&base)), size);
    assert_eq!(found(&r), expect);
    assert!(r.unreadable.is_empty(), "{:?}", r.unreadable);
    assert_eq!(r.window_scanned_files, 4, "{r:?}");
    // Each window: the changed chunk and M - 1 bytes on each side.
    assert_eq!(r.window_scanned_bytes, 4 * (CS + 2 * last));
    assert!(r.window_scanned_bytes < SIZE, "far less than one file");
    assert_eq!(r.files_scanned, 5);
    assert_eq!(r.bytes_scanned, r.window_scanned_bytes + SIZE);
    assert_eq!((r.skipped_unread_files, r.skipped_unread_bytes), (1, SIZE));

    // A third scan: everything from the cache, unread.
    let r = scan(&local, &mut cache, &root, (&now, Some(&base)), size);
    assert_eq!(found(&r), expect);
    assert_eq!((r.files_scanned, r.skipped_unread_files), (0, 6));

    // Non-local rules: the changed files are read whole.
    let r = scan(&whole, &mut cache, &root, (&now, Some(&base)), size);
    assert_eq!(found(&r), expect);
    assert_eq!((r.files_scanned, r.bytes_scanned), (5, 5 * SIZE));
    assert_eq!(r.window_scanned_files, 0);
}
