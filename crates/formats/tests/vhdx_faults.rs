//! Damaged VHDX images: every fault is a clear error naming the file and
//! the structure, never a panic. Images come from qemu-img, then get broken
//! (with checksums recomputed where the test wants the damage to be "valid").

mod fault_support;

use fault_support::read_through;
use lifeboat_formats::vhdx::layout as l;
use lifeboat_formats::vhdx::VhdxDisk;
use lifeboat_testsupport::{patch_file, qemu_img_from_raw};
use lifeboat_vdisk::testsuite::{check_read_disk, pattern_with_holes};
use lifeboat_vdisk::{Error, ReadDisk};
use std::path::{Path, PathBuf};

const MIB: usize = 1 << 20;

/// A 6 MiB dynamic VHDX with 1 MiB blocks made by qemu-img from the test
/// pattern, and the pattern.
fn make(dir: &Path) -> (PathBuf, Vec<u8>) {
    let expected = pattern_with_holes(6 * MIB, MIB);
    let src = dir.join("src.raw");
    std::fs::write(&src, &expected).unwrap();
    let dst = dir.join("d.vhdx");
    qemu_img_from_raw(
        &src,
        &dst,
        "vhdx",
        &["-o", "subformat=dynamic,block_size=1M"],
    );
    (dst, expected)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Recomputes the CRC-32C of the `len`-byte structure at `at` ([MS-VHDX] 2.2.2.1).
fn fix_crc(b: &mut [u8], at: usize, len: usize) {
    b[at + 4..at + 8].fill(0);
    let crc = crc32c::crc32c(&b[at..at + len]);
    b[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// File offset of the region with `guid` in region table 1.
fn region(b: &[u8], guid: &[u8; 16]) -> usize {
    let table = l::REGION_TABLE_OFFSETS[0] as usize;
    (0..u32_at(b, table + 8) as usize)
        .map(|i| table + 16 + 32 * i)
        .find(|&e| &b[e..e + 16] == guid)
        .map(|e| u64_at(b, e + 16) as usize)
        .expect("region present")
}

/// File offset of the metadata item with `guid`.
fn metadata_item(b: &[u8], guid: &[u8; 16]) -> usize {
    let meta = region(b, &l::METADATA_GUID);
    (0..u16::from_le_bytes([b[meta + 10], b[meta + 11]]) as usize)
        .map(|i| meta + 32 + 32 * i)
        .find(|&e| &b[e..e + 16] == guid)
        .map(|e| meta + u32_at(b, e + 16) as usize)
        .expect("metadata item present")
}

fn open_and_read(path: &Path) -> Result<(), Error> {
    read_through(&VhdxDisk::open(path)?)
}

fn expect_error(path: &Path, words: &[&str]) -> Error {
    fault_support::expect_error(open_and_read(path), path, words)
}

#[test]
fn vhdx_truncated_file_and_bad_signature_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = make(dir.path());
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, &good[..100 * 1024]).unwrap();
    expect_error(&path, &["truncated header"]);
    let mut bad = good.clone();
    bad[0..8].copy_from_slice(b"vhdxfilf");
    std::fs::write(&path, &bad).unwrap();
    expect_error(&path, &["vhdxfile"]);
}

#[test]
fn vhdx_with_both_header_crcs_broken_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = make(dir.path());
    patch_file(&path, |b| {
        for h in l::HEADER_OFFSETS {
            b[h as usize + 100] ^= 0xff;
        }
    });
    let err = expect_error(&path, &["both headers are damaged", "CRC-32C"]);
    assert!(matches!(err, Error::Corrupt { .. }));
}

#[test]
fn vhdx_with_one_header_broken_uses_the_other() {
    let dir = tempfile::tempdir().unwrap();
    for broken in l::HEADER_OFFSETS {
        let (path, expected) = make(dir.path());
        patch_file(&path, |b| b[broken as usize + 8] ^= 0x01); // sequence number, CRC now wrong
        let disk = VhdxDisk::open(&path).unwrap();
        check_read_disk(&disk, &expected);
    }
}

#[test]
fn vhdx_needing_log_replay_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = make(dir.path());
    let good = std::fs::read(&path).unwrap();
    let seq = |b: &[u8], h: u64| u64_at(b, h as usize + 8);
    let [h1, h2] = l::HEADER_OFFSETS;
    let (current, other) = if seq(&good, h2) > seq(&good, h1) {
        (h2, h1)
    } else {
        (h1, h2)
    };
    let set_log = |b: &mut Vec<u8>, h: u64| {
        let h = h as usize;
        b[h + 48..h + 64].copy_from_slice(&[0x42; 16]); // LogGuid
        fix_crc(b, h, l::HEADER_SIZE);
    };
    // In the current header: refused.
    let mut bytes = good.clone();
    set_log(&mut bytes, current);
    std::fs::write(&path, &bytes).unwrap();
    let err = expect_error(&path, &["log", "replayed"]);
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    // Only in the older header: the current one says the log is empty.
    let mut bytes = good.clone();
    set_log(&mut bytes, other);
    std::fs::write(&path, &bytes).unwrap();
    open_and_read(&path).unwrap();
}

#[test]
fn vhdx_with_both_region_tables_broken_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = make(dir.path());
    patch_file(&path, |b| {
        b[l::REGION_TABLE_OFFSETS[0] as usize + 20] ^= 0xff
    });
    check_read_disk(&VhdxDisk::open(&path).unwrap(), &expected); // table 2 still good
    patch_file(&path, |b| {
        b[l::REGION_TABLE_OFFSETS[1] as usize + 20] ^= 0xff
    });
    expect_error(&path, &["both region tables are damaged"]);
}

#[test]
fn vhdx_absurd_metadata_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = make(dir.path());
    let good = std::fs::read(&path).unwrap();
    let fp = metadata_item(&good, &l::FILE_PARAMETERS_GUID);
    let mut bytes = good.clone();
    bytes[fp..fp + 4].copy_from_slice(&3000u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    expect_error(&path, &["block size 3000"]);

    let mut bytes = good.clone();
    bytes[fp + 4] |= l::FP_HAS_PARENT as u8;
    std::fs::write(&path, &bytes).unwrap();
    let err = expect_error(&path, &["differencing"]);
    assert!(matches!(err, Error::Unsupported { .. }));

    let size = metadata_item(&good, &l::VIRTUAL_DISK_SIZE_GUID);
    let mut bytes = good.clone();
    bytes[size..size + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    expect_error(&path, &["virtual disk size"]);

    let lss = metadata_item(&good, &l::LOGICAL_SECTOR_SIZE_GUID);
    let mut bytes = good.clone();
    bytes[lss..lss + 4].copy_from_slice(&513u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    expect_error(&path, &["logical sector size"]);
}

#[test]
fn vhdx_bad_bat_entries_are_errors_at_read() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = make(dir.path());
    let good = std::fs::read(&path).unwrap();
    let bat = region(&good, &l::BAT_GUID);
    // Block 1 holds data in the pattern: point it 1 TiB into the file.
    let mut bytes = good.clone();
    bytes[bat + 8..bat + 16]
        .copy_from_slice(&((1u64 << 40) | l::PAYLOAD_FULLY_PRESENT).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let disk = VhdxDisk::open(&path).unwrap();
    let mut buf = vec![0u8; 4096];
    disk.read_at(&mut buf, 0).unwrap();
    let text = disk.read_at(&mut buf, MIB as u64).unwrap_err().to_string();
    assert!(
        text.contains("block 1") && text.contains("past the end"),
        "{text}"
    );

    let mut bytes = good.clone();
    bytes[bat + 8] = (bytes[bat + 8] & !7) | l::PAYLOAD_PARTIALLY_PRESENT as u8;
    std::fs::write(&path, &bytes).unwrap();
    let err = expect_error(&path, &["block 1", "partially present"]);
    assert!(matches!(err, Error::Unsupported { .. }));

    let mut bytes = good.clone();
    bytes[bat + 8] = (bytes[bat + 8] & !7) | 5;
    std::fs::write(&path, &bytes).unwrap();
    expect_error(&path, &["unknown BAT state 5"]);
}

/// Truncating anywhere and flipping header bytes gives errors or data,
/// never a panic.
#[test]
fn vhdx_truncations_and_flips_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = make(dir.path());
    let good = std::fs::read(&path).unwrap();
    let broken = dir.path().join("broken.vhdx");
    let mut errors = 0;
    let cuts = [
        0,
        7,
        4096,
        65536,
        70_000,
        200_000,
        300_000,
        MIB,
        2 * MIB,
        good.len() / 2,
        good.len() - 1,
    ];
    for len in cuts {
        std::fs::write(&broken, &good[..len]).unwrap();
        if open_and_read(&broken).is_err() {
            errors += 1;
        }
    }
    assert_eq!(errors, cuts.len(), "every truncation must be an error");
    let bat = region(&good, &l::BAT_GUID);
    let meta = region(&good, &l::METADATA_GUID);
    let spots = (0..16)
        .chain(l::HEADER_OFFSETS[0] as usize..l::HEADER_OFFSETS[0] as usize + 80)
        .chain(bat..bat + 64)
        .chain(meta..meta + 256);
    std::fs::write(&broken, &good).unwrap();
    let file = std::fs::File::options().write(true).open(&broken).unwrap();
    for at in spots {
        use std::os::unix::fs::FileExt;
        file.write_all_at(&[good[at] ^ 0xa5], at as u64).unwrap();
        let _ = open_and_read(&broken); // error or success, never a panic
        file.write_all_at(&[good[at]], at as u64).unwrap();
    }
}
