//! Damaged and unsupported qcow2 images: each must give a clear error that
//! names the file and what is wrong, never a panic. Images start from
//! qemu-img's output and are damaged at the byte level (offsets from the
//! qcow2 spec, see `lifeboat_formats::qcow2::layout`).

mod qcow2_support;

use lifeboat_formats::open_image;
use lifeboat_formats::qcow2::layout;
use lifeboat_testsupport::{patch_file, qemu_img, qemu_img_from_raw};
use lifeboat_vdisk::{Error, ReadDisk};
use qcow2_support::{path_str, source_pattern, write_file};
use std::path::Path;

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

/// A plain qcow2 image of the source pattern; returns its path.
fn image(dir: &Path, name: &str, opts: &[&str]) -> String {
    let raw = write_file(dir, &format!("{name}.raw"), &source_pattern());
    let out = path_str(&dir.join(format!("{name}.qcow2")));
    qemu_img_from_raw(Path::new(&raw), Path::new(&out), "qcow2", opts);
    out
}

fn open_err(path: &str) -> Error {
    match open_image(Path::new(path)) {
        Ok(_) => panic!("{path} should not open"),
        Err(e) => e,
    }
}

/// Reads the whole disk; returns the first error.
fn read_all(disk: &dyn ReadDisk) -> Result<(), Error> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < disk.size() {
        let n = (disk.size() - pos).min(buf.len() as u64) as usize;
        disk.read_at(&mut buf[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

fn patch(path: &str, offset: u64, bytes: &[u8]) {
    patch_file(Path::new(path), |data| {
        data[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes)
    });
}

fn assert_corrupt(err: &Error, path: &str, needle: &str) {
    let text = err.to_string();
    assert!(
        matches!(err, Error::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert!(text.contains(path), "{text} should name {path}");
    assert!(text.contains(needle), "{text} should mention {needle:?}");
}

#[test]
fn qcow2_truncated_header_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "t", &[]);
    let head = std::fs::read(&img).unwrap()[..50].to_vec();
    let cut = write_file(dir.path(), "cut.qcow2", &head);
    assert_corrupt(&open_err(&cut), &cut, "truncated header");
}

#[test]
fn qcow2_absurd_header_fields_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, usize, Vec<u8>, &str); 6] = [
        (
            "cluster-bits",
            layout::OFF_CLUSTER_BITS,
            40u32.to_be_bytes().to_vec(),
            "cluster_bits 40",
        ),
        (
            "size",
            layout::OFF_SIZE,
            (1u64 << 62).to_be_bytes().to_vec(),
            "L1 entries",
        ),
        (
            "l1-size",
            layout::OFF_L1_SIZE,
            u32::MAX.to_be_bytes().to_vec(),
            "absurd L1 table size",
        ),
        (
            "l1-offset",
            layout::OFF_L1_TABLE_OFFSET,
            (1u64 << 40).to_be_bytes().to_vec(),
            "L1 table",
        ),
        (
            "l1-unaligned",
            layout::OFF_L1_TABLE_OFFSET,
            4096u64.to_be_bytes().to_vec(),
            "not aligned",
        ),
        (
            "header-length",
            layout::OFF_HEADER_LENGTH,
            20u32.to_be_bytes().to_vec(),
            "header_length 20",
        ),
    ];
    for (name, off, bytes, needle) in cases {
        let img = image(dir.path(), name, &[]);
        patch(&img, off as u64, &bytes);
        assert_corrupt(&open_err(&img), &img, needle);
    }
    // A bad magic is not detected as qcow2, but the qcow2 reader itself refuses it.
    let img = image(dir.path(), "magic", &[]);
    patch(&img, 0, b"QFI\x00");
    let err = lifeboat_formats::qcow2::Qcow2Disk::open(Path::new(&img))
        .err()
        .unwrap();
    assert_corrupt(&err, &img, "bad magic");
}

#[test]
fn qcow2_l1_and_l2_entries_past_the_end_of_the_file_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "l2", &[]);
    let data = std::fs::read(&img).unwrap();
    let l1_offset = be64(&data, layout::OFF_L1_TABLE_OFFSET);
    let l2_offset = be64(&data, l1_offset as usize) & layout::L1E_OFFSET_MASK;
    // Guest cluster 4 (bytes 256K..320K) holds data in the pattern.
    assert_ne!(be64(&data, l2_offset as usize + 32), 0);
    patch(
        &img,
        l2_offset + 32,
        &((1u64 << 40) | layout::OFLAG_COPIED).to_be_bytes(),
    );
    let disk = open_image(Path::new(&img)).unwrap();
    let err = read_all(disk.as_ref()).unwrap_err();
    assert_corrupt(&err, &img, "past the end of the file");
    assert_corrupt(
        &disk.extents(0, disk.size()).unwrap_err(),
        &img,
        "past the end",
    );

    let img = image(dir.path(), "l1", &[]);
    patch(
        &img,
        l1_offset,
        &((1u64 << 40) | layout::OFLAG_COPIED).to_be_bytes(),
    );
    let disk = open_image(Path::new(&img)).unwrap();
    assert_corrupt(
        &read_all(disk.as_ref()).unwrap_err(),
        &img,
        "L2 table of L1 entry 0",
    );
}

#[test]
fn qcow2_compressed_cluster_that_fails_to_inflate_is_corrupt() {
    for (name, opts) in [
        ("deflate", vec!["-c"]),
        ("zstd", vec!["-c", "-o", "compression_type=zstd"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), name, &opts);
        let data = std::fs::read(&img).unwrap();
        let l1_offset = be64(&data, layout::OFF_L1_TABLE_OFFSET);
        let l2_offset = be64(&data, l1_offset as usize) & layout::L1E_OFFSET_MASK;
        let x = layout::compressed_offset_bits(16);
        let host = (0..8192)
            .map(|i| be64(&data, l2_offset as usize + 8 * i))
            .find(|e| e & layout::OFLAG_COMPRESSED != 0)
            .map(|e| e & ((1u64 << x) - 1))
            .expect("a compressed cluster");
        patch(&img, host, &[0xff; 64]);
        let disk = open_image(Path::new(&img)).unwrap();
        let err = read_all(disk.as_ref()).unwrap_err();
        assert_corrupt(&err, &img, "fails to inflate");
    }
}

#[test]
fn qcow2_feature_bits_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let expected = source_pattern();
    // Dirty: readable.
    let img = image(dir.path(), "dirty", &[]);
    patch(
        &img,
        layout::OFF_INCOMPATIBLE_FEATURES as u64,
        &layout::INCOMPAT_DIRTY.to_be_bytes(),
    );
    lifeboat_vdisk::testsuite::check_read_disk(
        open_image(Path::new(&img)).unwrap().as_ref(),
        &expected,
    );
    // Corrupt: refused.
    let img = image(dir.path(), "corrupt", &[]);
    patch(
        &img,
        layout::OFF_INCOMPATIBLE_FEATURES as u64,
        &layout::INCOMPAT_CORRUPT.to_be_bytes(),
    );
    assert_corrupt(&open_err(&img), &img, "marked corrupt");
    // Extended L2 and external data files: unsupported, named.
    let img = image(dir.path(), "ext-l2", &["-o", "extended_l2=on"]);
    let err = open_err(&img);
    assert!(
        matches!(err, Error::Unsupported { .. }) && err.to_string().contains("extended L2"),
        "{err}"
    );
    let data_file = path_str(&dir.path().join("data.raw"));
    let img = path_str(&dir.path().join("external.qcow2"));
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={data_file}"),
        &img,
        "1M",
    ]);
    let err = open_err(&img);
    assert!(
        matches!(err, Error::Unsupported { .. }) && err.to_string().contains("external data file"),
        "{err}"
    );
    // An unknown compression type.
    let img = image(dir.path(), "ctype", &[]);
    patch(&img, layout::OFF_COMPRESSION_TYPE as u64, &[7]);
    let err = open_err(&img);
    assert!(err.to_string().contains("compression type 7"), "{err}");
}
