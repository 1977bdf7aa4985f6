//! Tests of [`OverlayDisk`]: the trait suites, reopen, mismatch, damage,
//! concurrency and a full cache folder.

use super::*;
use crate::testsuite::{check_read_disk, check_write_disk, pattern_with_holes};
use crate::{ExtentKind, FileDisk, MemDisk};

fn mem_base(bytes: &[u8]) -> Arc<dyn ReadDisk> {
    Arc::new(MemDisk::new("base", bytes.to_vec()))
}

#[test]
fn unwritten_overlay_passes_the_read_suite_over_mem_and_file_bases() {
    let dir = tempfile::tempdir().unwrap();
    let expected = pattern_with_holes(5 << 20, 1 << 20);
    let ov = OverlayDisk::create(
        mem_base(&expected),
        "m",
        &dir.path().join("a.redo"),
        OverlayDisk::DEFAULT_BLOCK_SIZE,
    )
    .unwrap();
    check_read_disk(&ov, &expected);
    assert!(ov.allocated_ranges().is_empty());

    let raw = dir.path().join("base.raw");
    {
        let f = FileDisk::create(&raw, expected.len() as u64).unwrap();
        for (i, block) in expected.chunks(1 << 20).enumerate() {
            if block.iter().any(|&b| b != 0) {
                f.write_at(block, (i as u64) << 20).unwrap();
            }
        }
    }
    let base: Arc<dyn ReadDisk> = Arc::new(FileDisk::open(&raw).unwrap());
    let ov = OverlayDisk::create(base, "f", &dir.path().join("b.redo"), 4096).unwrap();
    check_read_disk(&ov, &expected);
    let extents = ov.extents(0, ov.size()).unwrap();
    assert!(
        extents.iter().any(|e| e.kind == ExtentKind::Zero),
        "{extents:?}"
    );
    assert_eq!(ov.depth(), 2);
}

#[test]
fn overlay_passes_the_write_suite_at_several_block_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for bs in [4096u32, OverlayDisk::DEFAULT_BLOCK_SIZE, 1 << 20] {
        let n = std::cell::Cell::new(0);
        check_write_disk(&|content: &[u8]| {
            n.set(n.get() + 1);
            let path = dir.path().join(format!("w{bs}-{}.redo", n.get()));
            Box::new(OverlayDisk::create(mem_base(content), "w", &path, bs).unwrap())
                as Box<dyn WriteDisk>
        });
    }
}

#[test]
fn extents_report_overlay_blocks_as_data_and_the_base_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    // A base that is all zeros but says so only through a sparse file.
    let raw = dir.path().join("zero.raw");
    drop(FileDisk::create(&raw, 1 << 20).unwrap());
    let base: Arc<dyn ReadDisk> = Arc::new(FileDisk::open(&raw).unwrap());
    let ov = OverlayDisk::create(base, "z", &dir.path().join("z.redo"), 4096).unwrap();
    ov.write_at(&[7u8; 10], 8192 + 100).unwrap();
    let ext = ov.extents(0, 1 << 20).unwrap();
    assert!(ext.contains(&Extent::data(8192, 4096)), "{ext:?}");
    assert_eq!(
        ext.first().map(|e| e.kind),
        Some(ExtentKind::Zero),
        "{ext:?}"
    );
    assert_eq!(ov.allocated_ranges(), vec![(8192, 12288)]);
}

#[test]
fn reopen_after_flush_keeps_writes_and_never_touches_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redo");
    // 3 MiB + 1000: the last block is partial.
    let content = pattern_with_holes((3 << 20) + 1000, 1 << 18);
    let base = Arc::new(MemDisk::new("base", content.clone()));
    let mut expected = content.clone();
    {
        let ov = OverlayDisk::create(base.clone(), "rp-1", &path, OverlayDisk::DEFAULT_BLOCK_SIZE)
            .unwrap();
        for (o, l, v) in [
            (10u64, 100usize, 1u8),
            (65536, 65536, 2),
            ((3 << 20) + 990, 10, 3),
        ] {
            ov.write_at(&vec![v; l], o).unwrap();
            expected[o as usize..o as usize + l].fill(v);
        }
        ov.flush().unwrap();
        assert_eq!(
            ov.allocated_ranges(),
            vec![(0, 131072), (3 << 20, (3 << 20) + 1000)]
        );
    }
    assert!(base.to_vec() == content, "the base changed");
    let ov = OverlayDisk::open(base.clone(), "rp-1", &path).unwrap();
    check_read_disk(&ov, &expected);
    assert_eq!(
        ov.allocated_ranges(),
        vec![(0, 131072), (3 << 20, (3 << 20) + 1000)]
    );
    assert_eq!(ov.base_id(), "rp-1");
    assert_eq!(ov.overlay_path(), path.as_path());
    // A second writer on the same file is refused while this one lives.
    let again = OverlayDisk::open(base.clone(), "rp-1", &path);
    assert!(
        matches!(again, Err(Error::Invalid { .. })),
        "{:?}",
        again.err()
    );
    // An existing overlay is never overwritten by create.
    drop(ov);
    let err = OverlayDisk::create(base, "rp-1", &path, 4096).err();
    assert!(matches!(err, Some(Error::Io { .. })), "{err:?}");
}

#[test]
fn unflushed_writes_are_invisible_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.redo");
    let crashed = dir.path().join("crashed.redo");
    let content = pattern_with_holes(1 << 20, 1 << 16);
    let base = mem_base(&content);
    let ov = OverlayDisk::create(base.clone(), "b", &path, 4096).unwrap();
    ov.write_at(&[9u8; 4096], 0).unwrap();
    ov.flush().unwrap();
    ov.write_at(&[8u8; 100], 40_000).unwrap();
    // The file as a crash right now would leave it.
    std::fs::copy(&path, &crashed).unwrap();
    let after = OverlayDisk::open(base, "b", &crashed).unwrap();
    let mut expected = content.clone();
    expected[..4096].fill(9);
    check_read_disk(&after, &expected);
}

#[test]
fn reopen_with_another_base_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redo");
    drop(OverlayDisk::create(mem_base(&[1u8; 100_000]), "rp-1", &path, 4096).unwrap());
    let err = OverlayDisk::open(mem_base(&[1u8; 100_001]), "rp-1", &path).err();
    assert!(
        matches!(&err, Some(Error::Invalid { detail, .. }) if detail.contains("100000")),
        "{err:?}"
    );
    let err = OverlayDisk::open(mem_base(&[1u8; 100_000]), "rp-2", &path).err();
    assert!(
        matches!(&err, Some(Error::Invalid { detail, .. }) if detail.contains("rp-1")),
        "{err:?}"
    );
    assert!(OverlayDisk::open(mem_base(&[1u8; 100_000]), "rp-1", &path).is_ok());
}

#[test]
fn damaged_headers_are_reported_as_corrupt_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.redo");
    let base = mem_base(&[5u8; 1 << 20]);
    drop(OverlayDisk::create(base.clone(), "b", &path, 4096).unwrap());
    let good = std::fs::read(&path).unwrap();
    let corrupt = |bytes: &[u8], why: &str| {
        std::fs::write(&path, bytes).unwrap();
        match OverlayDisk::open(base.clone(), "b", &path) {
            Err(Error::Corrupt { what, .. }) => assert!(what.contains("d.redo"), "{why}: {what}"),
            other => panic!("{why}: expected Corrupt, got {:?}", other.err()),
        }
    };
    let mut b = good.clone();
    b[0] = b'X';
    corrupt(&b, "wrong magic");
    let mut b = good.clone();
    b[20] ^= 1;
    corrupt(&b, "flipped disk size");
    corrupt(&good[..100], "truncated header");
    corrupt(&good[..8192], "truncated data area");
    corrupt(&[], "empty file");
    std::fs::write(&path, &good).unwrap();
    assert!(OverlayDisk::open(base, "b", &path).is_ok());
}

#[test]
fn concurrent_partial_writes_to_the_same_blocks_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let content = pattern_with_holes(2 << 20, 1 << 16);
    for round in 0..4 {
        let path = dir.path().join(format!("t{round}.redo"));
        let ov = Arc::new(OverlayDisk::create(mem_base(&content), "b", &path, 65536).unwrap());
        let threads = 8u64;
        let piece = 1000u64;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let ov = ov.clone();
                std::thread::spawn(move || {
                    for block in 0..32u64 {
                        let at = block * 65536 + 100 + t * piece;
                        ov.write_at(&vec![(t + 1) as u8; piece as usize], at)
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut expected = content.clone();
        for t in 0..threads {
            for block in 0..32u64 {
                let at = (block * 65536 + 100 + t * piece) as usize;
                expected[at..at + piece as usize].fill((t + 1) as u8);
            }
        }
        ov.flush().unwrap();
        check_read_disk(ov.as_ref(), &expected);
        assert_eq!(ov.allocated_ranges(), vec![(0, 32 * 65536)]);
    }
}

/// Runs [`enospc_in_a_small_tmpfs`] inside a private mount namespace with a
/// 512 KiB tmpfs as the cache folder (`unshare -Urm`, util-linux; works for
/// an unprivileged user where user namespaces are enabled).
#[test]
fn a_full_cache_folder_gives_an_io_error_naming_the_overlay() {
    let dir = tempfile::tempdir().unwrap();
    lifeboat_testsupport::run_ignored_in_tmpfs(
        "overlay::tests::enospc_in_a_small_tmpfs",
        dir.path(),
        "512k",
        ("LIFEBOAT_ENOSPC_DIR", dir.path()),
    );
}

#[test]
#[ignore = "run by a_full_cache_folder_gives_an_io_error_naming_the_overlay inside a small tmpfs"]
fn enospc_in_a_small_tmpfs() {
    let dir = std::env::var("LIFEBOAT_ENOSPC_DIR").expect("LIFEBOAT_ENOSPC_DIR");
    let path = Path::new(&dir).join("full.redo");
    let content = pattern_with_holes(4 << 20, 1 << 16);
    let base = Arc::new(MemDisk::new("base", content.clone()));
    let ov = OverlayDisk::create(base.clone(), "b", &path, 65536).unwrap();
    let mut failed = None;
    for block in 0..64u64 {
        // Partial writes: each copies a whole block on write.
        if let Err(e) = ov.write_at(&[1u8; 10], block * 65536 + 5) {
            failed = Some((block, e));
            break;
        }
    }
    let (block, err) = failed.expect("a 512 KiB tmpfs should fill before 4 MiB of blocks");
    match &err {
        Error::Io {
            what,
            offset,
            source,
        } => {
            assert_eq!(source.raw_os_error(), Some(28), "{err}");
            assert!(what.contains("full.redo"), "{err}");
            assert!(*offset >= 65536 + block * 65536, "{err}");
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    // Blocks written before the failure still read back; the failed one
    // still reads from the base; the base never changed.
    let mut buf = [0u8; 10];
    ov.read_at(&mut buf, 5).unwrap();
    assert_eq!(buf, [1u8; 10]);
    let at = (block * 65536) as usize;
    let mut whole = vec![0u8; 65536];
    ov.read_at(&mut whole, at as u64).unwrap();
    assert!(
        whole == content[at..at + 65536],
        "the failed block must read from the base"
    );
    assert!(base.to_vec() == content);
}
