//! VHDX reader against qemu-img as the oracle: fixed and dynamic images
//! (default and 1 MiB blocks) must read back as the raw source.

use lifeboat_formats::vhdx::VhdxDisk;
use lifeboat_formats::{detect_format, open_image, ImageFormat};
use lifeboat_testsupport::qemu_img_from_raw;
use lifeboat_vdisk::testsuite::{check_read_disk, pattern_with_holes};
use lifeboat_vdisk::{ExtentKind, ReadDisk};
use std::path::{Path, PathBuf};

const MIB: usize = 1 << 20;

fn convert_vhdx(dir: &Path, src: &Path, options: &str) -> PathBuf {
    let dst = dir.join(format!("{}.vhdx", options.replace([',', '='], "_")));
    qemu_img_from_raw(src, &dst, "vhdx", &["-o", options]);
    dst
}

fn zero_extents(disk: &dyn ReadDisk) -> usize {
    disk.extents(0, disk.size())
        .unwrap()
        .iter()
        .filter(|e| e.kind == ExtentKind::Zero)
        .count()
}

/// `holes`: whether the image must report Zero extents (a dynamic image
/// whose blocks are small enough that some hold only zeros).
fn check_options(options: &str, dynamic: bool, holes: bool, block_size: Option<u64>) {
    for size in [6 * MIB, 5 * MIB + 512] {
        let dir = tempfile::tempdir().unwrap();
        let expected = pattern_with_holes(size, MIB);
        let src = dir.path().join("src.raw");
        std::fs::write(&src, &expected).unwrap();
        let image = convert_vhdx(dir.path(), &src, options);
        assert_eq!(detect_format(&image).unwrap(), ImageFormat::Vhdx);
        let disk = open_image(&image).unwrap();
        check_read_disk(disk.as_ref(), &expected);
        if holes {
            assert!(
                zero_extents(disk.as_ref()) > 0,
                "{options}: a dynamic VHDX should report holes"
            );
        }
        let vhdx = VhdxDisk::open(&image).unwrap();
        assert_eq!(vhdx.is_fixed(), !dynamic, "{options}: LeaveBlocksAllocated");
        assert_eq!(vhdx.logical_sector_size(), 512);
        if let Some(bs) = block_size {
            assert_eq!(vhdx.block_size(), bs);
        }
    }
}

/// qemu-img's default block size (32 MiB) is larger than the disk: one
/// block holds everything, so there is no hole to report.
#[test]
fn vhdx_dynamic_matches_qemu() {
    check_options("subformat=dynamic", true, false, None);
}

#[test]
fn vhdx_fixed_matches_qemu() {
    check_options("subformat=fixed", false, false, None);
}

#[test]
fn vhdx_dynamic_with_1m_blocks_matches_qemu() {
    check_options("subformat=dynamic,block_size=1M", true, true, Some(1 << 20));
}

#[test]
fn vhdx_fixed_with_1m_blocks_matches_qemu() {
    check_options("subformat=fixed,block_size=1M", false, false, Some(1 << 20));
}

/// A sector-bitmap entry follows every `chunk_ratio` payload entries of the
/// BAT. At 1 MiB blocks the first one comes after 4096 blocks; at 256 MiB
/// blocks (chunk ratio 16) after block 15, so a 5 GiB sparse source (20
/// blocks) puts blocks 16 to 19 behind it.
#[test]
fn vhdx_bat_with_interleaved_bitmap_entries_matches_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = 5 << 30;
    let src = dir.path().join("src.raw");
    let file = std::fs::File::create(&src).unwrap();
    file.set_len(size).unwrap();
    // Data at a few places, among them blocks 15, 16 and 17 (around the first bitmap entry).
    let marks: [(u64, u8); 5] = [
        (0, 1),
        (15 * (256 << 20) + 4096, 2),
        (16 * (256 << 20), 3),
        (17 * (256 << 20) + 77, 4),
        (size - 512, 5),
    ];
    {
        use std::os::unix::fs::FileExt;
        for &(at, v) in &marks {
            file.write_all_at(&[v; 512], at).unwrap();
        }
    }
    drop(file);
    let image = convert_vhdx(dir.path(), &src, "subformat=dynamic,block_size=256M");
    let disk = open_image(&image).unwrap();
    assert_eq!(disk.size(), size);
    for &(at, v) in &marks {
        let mut buf = [0u8; 1024];
        let start = at.saturating_sub(256).min(size - 1024);
        disk.read_at(&mut buf, start).unwrap();
        for (i, &b) in buf.iter().enumerate() {
            let pos = start + i as u64;
            let want = marks
                .iter()
                .find(|&&(m, _)| pos >= m && pos < m + 512)
                .map_or(0, |&(_, mv)| mv);
            assert_eq!(b, want, "byte at {pos} (mark {v} at {at})");
        }
    }
    let extents = disk.extents(0, size).unwrap();
    let data: u64 = extents
        .iter()
        .filter(|e| e.kind == ExtentKind::Data)
        .map(|e| e.length)
        .sum();
    assert_eq!(
        data,
        5 * (256 << 20),
        "blocks 0, 15, 16, 17 and 19 hold data: {extents:?}"
    );
}
