//! The qcow2 writer: images written from several threads in any order must
//! pass `qemu-img check`, compare identical to the source with
//! `qemu-img compare`, and read back through our reader and the trait suites.

mod qcow2_support;

use lifeboat_formats::open_image;
use lifeboat_formats::qcow2::Qcow2Writer;
use lifeboat_testsupport::{output, qemu_img, tool};
use lifeboat_vdisk::testsuite::{check_read_disk, check_write_disk};
use lifeboat_vdisk::{Error, ExtentKind, ReadDisk, WriteDisk};
use qcow2_support::{path_str, source_pattern, write_file};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Writes `data` through `writer` in pieces of `piece` bytes from two
/// threads, each walking its half of the pieces backwards.
fn write_parallel(writer: &Qcow2Writer, data: &[u8], piece: usize) {
    let pieces: Vec<(usize, &[u8])> = data
        .chunks(piece)
        .enumerate()
        .map(|(i, c)| (i * piece, c))
        .collect();
    std::thread::scope(|s| {
        for t in 0..2 {
            let pieces = &pieces;
            s.spawn(move || {
                for (off, chunk) in pieces.iter().rev().skip(t).step_by(2) {
                    writer.write_at(chunk, *off as u64).unwrap();
                }
            });
        }
    });
}

fn check_with_qemu(out: &str, raw: &str) {
    qemu_img(&["check", "-f", "qcow2", out]);
    let cmp = output(
        tool("qemu-img", "qemu-utils").args(["compare", "-f", "qcow2", "-F", "raw", out, raw]),
    );
    assert!(
        cmp.status.success(),
        "qemu-img compare {out} {raw}: {}{}",
        String::from_utf8_lossy(&cmp.stdout),
        String::from_utf8_lossy(&cmp.stderr)
    );
}

#[test]
fn qcow2_writer_output_passes_qemu_img_check_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let expected = source_pattern();
    let raw = write_file(dir.path(), "src.raw", &expected);
    let out = path_str(&dir.path().join("out.qcow2"));
    let writer = Qcow2Writer::create(Path::new(&out), expected.len() as u64).unwrap();
    write_parallel(&writer, &expected, 1 << 20);
    // Before finish the writer reads back what was written...
    check_read_disk(&writer, &expected);
    // ...and the file is not usable yet.
    assert!(
        open_image(Path::new(&out)).is_err(),
        "an unfinished image must not open"
    );
    writer.finish().unwrap();
    check_with_qemu(&out, &raw);
    let disk = open_image(Path::new(&out)).unwrap();
    check_read_disk(disk.as_ref(), &expected);
}

#[test]
fn qcow2_writer_handles_unaligned_pieces_sharing_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let expected = source_pattern();
    let raw = write_file(dir.path(), "src.raw", &expected);
    let out = path_str(&dir.path().join("odd.qcow2"));
    let writer = Qcow2Writer::create(Path::new(&out), expected.len() as u64).unwrap();
    // 7777-byte pieces: most clusters are filled by partial writes from
    // both threads.
    write_parallel(&writer, &expected, 7777);
    writer.finish().unwrap();
    check_with_qemu(&out, &raw);
    check_read_disk(open_image(Path::new(&out)).unwrap().as_ref(), &expected);
}

#[test]
fn qcow2_writer_does_not_allocate_zero_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let out = path_str(&dir.path().join("zeros.qcow2"));
    let size = 64u64 << 20;
    let writer = Qcow2Writer::create(Path::new(&out), size).unwrap();
    let zeros = vec![0u8; 4 << 20];
    for i in 0..16 {
        writer.write_at(&zeros, i * (4 << 20)).unwrap();
    }
    writer.write_at(&[0u8; 1000], 12345).unwrap();
    writer.finish().unwrap();
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(
        len <= 6 * 65536,
        "zero writes allocated clusters: file is {len} bytes"
    );
    qemu_img(&["check", "-f", "qcow2", &out]);
    let disk = open_image(Path::new(&out)).unwrap();
    let extents = disk.extents(0, size).unwrap();
    assert!(
        extents.iter().all(|e| e.kind == ExtentKind::Zero),
        "{extents:?}"
    );
    check_read_disk(disk.as_ref(), &vec![0u8; size as usize]);
}

#[test]
fn qcow2_writer_passes_the_write_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    check_write_disk(&|content: &[u8]| {
        let path = dir
            .path()
            .join(format!("w{}.qcow2", n.fetch_add(1, Ordering::Relaxed)));
        let writer = Qcow2Writer::create(&path, content.len() as u64).unwrap();
        writer.write_at(content, 0).unwrap();
        Box::new(writer) as Box<dyn WriteDisk>
    });
}

#[test]
fn qcow2_writer_refuses_sizes_qemu_would_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let err = Qcow2Writer::create(&dir.path().join("odd.qcow2"), 1000)
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Invalid { .. }) && err.to_string().contains("multiple of 512"),
        "{err}"
    );
}

#[test]
fn qcow2_writer_large_sparse_image_has_multiple_l2_tables() {
    // 3 GiB virtual: six L1 entries, data written in three of them.
    let dir = tempfile::tempdir().unwrap();
    let out = path_str(&dir.path().join("big.qcow2"));
    let size = 3u64 << 30;
    let writer = Qcow2Writer::create(Path::new(&out), size).unwrap();
    let block = lifeboat_vdisk::testsuite::pattern_with_holes(1 << 20, 1 << 16);
    for off in [0u64, (1 << 30) + 4096, size - (1 << 20)] {
        writer.write_at(&block, off).unwrap();
    }
    writer.finish().unwrap();
    qemu_img(&["check", "-f", "qcow2", &out]);
    let disk = open_image(Path::new(&out)).unwrap();
    for off in [0u64, (1 << 30) + 4096, size - (1 << 20)] {
        let mut buf = vec![0u8; block.len()];
        disk.read_at(&mut buf, off).unwrap();
        assert!(buf == block, "bytes at {off} differ");
    }
    // QEMU sees the same bytes: compare with a sparse raw file holding them.
    let raw = dir.path().join("big.raw");
    let file = std::fs::File::create(&raw).unwrap();
    file.set_len(size).unwrap();
    for off in [0u64, (1 << 30) + 4096, size - (1 << 20)] {
        std::os::unix::fs::FileExt::write_all_at(&file, &block, off).unwrap();
    }
    drop(file);
    check_with_qemu(&out, &path_str(&raw));
}
