//! Damaged VMDK images: every fault is a clear error naming the file and
//! the structure, never a panic. Images come from qemu-img, then get broken.

mod fault_support;

use fault_support::read_through;
use lifeboat_formats::open_image;
use lifeboat_formats::vmdk::VmdkDisk;
use lifeboat_formats::AllowedPaths;
use lifeboat_testsupport::{patch_file, qemu_img_from_raw};
use lifeboat_vdisk::testsuite::pattern_with_holes;
use lifeboat_vdisk::{Error, ReadDisk};
use std::path::{Path, PathBuf};

const MIB: usize = 1 << 20;

/// Header field offsets (see `lifeboat_formats::vmdk::layout`).
const GRAIN_SIZE_AT: usize = 20;
const CAPACITY_AT: usize = 12;
const GTES_AT: usize = 44;
const GD_OFFSET_AT: usize = 56;

/// A 6 MiB image of `subformat` made by qemu-img from the test pattern.
fn make(dir: &Path, subformat: &str) -> PathBuf {
    let src = dir.join("src.raw");
    std::fs::write(&src, pattern_with_holes(6 * MIB, MIB)).unwrap();
    let dst = dir.join(format!("{subformat}.vmdk"));
    qemu_img_from_raw(
        &src,
        &dst,
        "vmdk",
        &["-o", &format!("subformat={subformat}")],
    );
    dst
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Opens the image, allowed to open the extent files beside it.
fn open_vmdk(path: &Path) -> Result<VmdkDisk, Error> {
    let mut allowed = AllowedPaths::none();
    allowed.allow(path.parent().unwrap())?;
    VmdkDisk::open_with(path, &allowed)
}

/// Opens the image and reads it whole (or its first 8 MiB when a damaged
/// header claims more); returns the first error.
fn open_and_read(path: &Path) -> Result<(), Error> {
    read_through(&open_vmdk(path)?)
}

/// Opens the image and reads 64 KiB at a few places; returns the first error.
fn open_and_probe(path: &Path) -> Result<(), Error> {
    let disk = open_vmdk(path)?;
    let mut buf = vec![0u8; 65536];
    for at in [0, MIB as u64, 5 * MIB as u64] {
        if at + 65536 <= disk.size() {
            disk.read_at(&mut buf, at)?;
        }
    }
    disk.extents(0, disk.size().min(1 << 30))?;
    Ok(())
}

fn expect_error(path: &Path, words: &[&str]) -> Error {
    fault_support::expect_error(open_and_read(path), path, words)
}

#[test]
fn vmdk_truncated_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.vmdk");
    std::fs::write(&path, b"KDMV\x01\x00\x00\x00 only a few bytes").unwrap();
    let err = expect_error(&path, &["truncated header"]);
    assert!(matches!(err, Error::Corrupt { .. }));
    // Through the factory too (detected by its magic).
    let Err(err) = open_image(&path) else {
        panic!("the factory opened a truncated VMDK");
    };
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn vmdk_bad_magic_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "monolithicSparse");
    patch_file(&path, |b| b[0..4].copy_from_slice(b"KDMW"));
    expect_error(&path, &["KDMV"]);
    let extent = make(dir.path(), "twoGbMaxExtentSparse");
    let s001 = dir.path().join("twoGbMaxExtentSparse-s001.vmdk");
    patch_file(&s001, |b| b[0..4].copy_from_slice(b"XXXX"));
    let text = open_and_read(&extent).unwrap_err().to_string();
    assert!(
        text.contains("magic") && text.contains(&s001.display().to_string()),
        "{text}"
    );
}

#[test]
fn vmdk_absurd_header_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(usize, u64, &str); 4] = [
        (GRAIN_SIZE_AT, 3, "grain size"),
        (GRAIN_SIZE_AT, 1 << 30, "grain size"),
        (CAPACITY_AT, u64::MAX / 2, "capacity"),
        (GD_OFFSET_AT, 1 << 40, "grain directory"),
    ];
    for (at, value, words) in cases {
        let path = make(dir.path(), "monolithicSparse");
        patch_file(&path, |b| {
            b[at..at + 8].copy_from_slice(&value.to_le_bytes())
        });
        expect_error(&path, &[words]);
    }
    let path = make(dir.path(), "monolithicSparse");
    patch_file(&path, |b| {
        b[GTES_AT..GTES_AT + 4].copy_from_slice(&0u32.to_le_bytes())
    });
    expect_error(&path, &["grain table entries"]);
}

#[test]
fn vmdk_grain_table_pointer_past_eof_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "monolithicSparse");
    patch_file(&path, |b| {
        let gd = u64_at(b, GD_OFFSET_AT) as usize * 512;
        b[gd..gd + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    });
    expect_error(&path, &["grain table", "past the end"]);
}

#[test]
fn vmdk_grain_pointer_past_eof_is_an_error_at_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "monolithicSparse");
    patch_file(&path, |b| {
        let gd = u64_at(b, GD_OFFSET_AT) as usize * 512;
        let gt = u32_at(b, gd) as usize * 512;
        // Grain 16 (1 MiB into the disk) holds data in the pattern.
        b[gt + 16 * 4..gt + 17 * 4].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    });
    let disk = VmdkDisk::open(&path).unwrap();
    let mut buf = vec![0u8; 4096];
    disk.read_at(&mut buf, 0).unwrap(); // grain 0 is untouched
    let err = disk.read_at(&mut buf, MIB as u64).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("grain 16") && text.contains("past the end"),
        "{text}"
    );
}

#[test]
fn vmdk_missing_extent_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "monolithicFlat");
    std::fs::remove_file(dir.path().join("monolithicFlat-flat.vmdk")).unwrap();
    let err = expect_error(&path, &["monolithicFlat-flat.vmdk"]);
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let path = make(dir.path(), "twoGbMaxExtentSparse");
    std::fs::remove_file(dir.path().join("twoGbMaxExtentSparse-s001.vmdk")).unwrap();
    expect_error(&path, &["twoGbMaxExtentSparse-s001.vmdk"]);
}

#[test]
fn vmdk_flat_extent_shorter_than_described_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "monolithicFlat");
    let flat = dir.path().join("monolithicFlat-flat.vmdk");
    std::fs::File::options()
        .write(true)
        .open(&flat)
        .unwrap()
        .set_len(MIB as u64)
        .unwrap();
    expect_error(&path, &["flat extent", "holds 1048576 bytes"]);
}

#[test]
fn vmdk_inflate_failure_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "streamOptimized");
    patch_file(&path, |b| {
        let gd = u64_at(b, GD_OFFSET_AT) as usize * 512;
        let gt = u32_at(b, gd) as usize * 512;
        let grain = u32_at(b, gt + 16 * 4) as usize * 512;
        // Keep the marker (12 bytes) and zlib header, wreck the deflate stream.
        for x in &mut b[grain + 14..grain + 200] {
            *x = 0xff;
        }
    });
    expect_error(&path, &["grain 16", "inflate failed"]);
}

#[test]
fn vmdk_descriptor_without_extents_or_with_parent_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vmdk");
    std::fs::write(
        &path,
        "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n",
    )
    .unwrap();
    expect_error(&path, &["no extents"]);
    std::fs::write(
        &path,
        "# Disk DescriptorFile\nversion=1\nparentCID=1234abcd\nparentFileNameHint=\"base.vmdk\"\nRW 8 SPARSE \"x.vmdk\"\n",
    )
    .unwrap();
    let err = expect_error(&path, &["parent"]);
    assert!(matches!(err, Error::Unsupported { .. }));
}

/// Truncating a sparse image anywhere and flipping header bytes gives
/// errors or zeros, never a panic.
#[test]
fn vmdk_truncations_and_header_flips_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["monolithicSparse", "streamOptimized"] {
        let path = make(dir.path(), sub);
        let good = std::fs::read(&path).unwrap();
        let broken = dir.path().join("broken.vmdk");
        let mut errors = 0;
        for len in [
            0,
            3,
            100,
            511,
            512,
            600,
            4096,
            10_000,
            20_000,
            good.len() / 2,
            good.len() - 1,
        ] {
            std::fs::write(&broken, &good[..len]).unwrap();
            match open_and_read(&broken) {
                Err(_) => errors += 1,
                Ok(()) => eprintln!("{sub} cut to {len} bytes still reads"),
            }
        }
        assert!(
            errors >= 9,
            "{sub}: most truncations must be errors ({errors})"
        );
        for at in (0..80).chain([512, 600, 700]) {
            let mut bytes = good.clone();
            bytes[at] ^= 0xa5;
            std::fs::write(&broken, &bytes).unwrap();
            let _ = open_and_probe(&broken); // error or success, never a panic
        }
    }
}
