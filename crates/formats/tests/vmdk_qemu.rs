//! VMDK reader against qemu-img as the oracle: every subformat qemu-img
//! writes must read back as the raw source it was converted from.

use lifeboat_formats::vmdk::VmdkDisk;
use lifeboat_formats::{detect_format, open_image_with, AllowedPaths, ImageFormat, OpenOptions};
use lifeboat_testsupport::{qemu_img, qemu_img_from_raw, write_file};
use lifeboat_vdisk::testsuite::{check_read_disk, pattern_with_holes};
use lifeboat_vdisk::{ExtentKind, ReadDisk};
use std::path::{Path, PathBuf};

const MIB: usize = 1 << 20;

/// Files of the image's own directory may be opened (extents), nothing else.
fn own_dir(image: &Path) -> AllowedPaths {
    let mut allowed = AllowedPaths::none();
    allowed.allow(image.parent().unwrap()).unwrap();
    allowed
}

/// The factory, allowed to open the extents beside the image.
fn open_image(image: &Path) -> lifeboat_vdisk::Result<std::sync::Arc<dyn ReadDisk>> {
    let options = OpenOptions {
        format: None,
        allowed: own_dir(image),
    };
    Ok(open_image_with(image, &options)?.disk)
}

fn convert_vmdk(dir: &Path, src: &Path, subformat: &str) -> PathBuf {
    let dst = dir.join(format!("{subformat}.vmdk"));
    qemu_img_from_raw(
        src,
        &dst,
        "vmdk",
        &["-o", &format!("subformat={subformat}")],
    );
    dst
}

fn has_zero_extent(disk: &dyn ReadDisk) -> bool {
    disk.extents(0, disk.size())
        .unwrap()
        .iter()
        .any(|e| e.kind == ExtentKind::Zero)
}

fn check_subformat(subformat: &str, sparse: bool) {
    for size in [6 * MIB, 5 * MIB + 512] {
        let dir = tempfile::tempdir().unwrap();
        let expected = pattern_with_holes(size, MIB);
        let src = write_file(dir.path(), "src.raw", &expected);
        let image = convert_vmdk(dir.path(), &src, subformat);
        assert_eq!(detect_format(&image).unwrap(), ImageFormat::Vmdk);
        let disk = open_image(&image).unwrap();
        check_read_disk(disk.as_ref(), &expected);
        if sparse {
            assert!(
                has_zero_extent(disk.as_ref()),
                "{subformat} of {size} bytes should report its holes: {:?}",
                disk.extents(0, disk.size()).unwrap()
            );
        }
        let direct = VmdkDisk::open_with(&image, &own_dir(&image)).unwrap();
        assert_eq!(direct.create_type(), subformat);
    }
}

#[test]
fn vmdk_monolithic_sparse_matches_qemu() {
    check_subformat("monolithicSparse", true);
}

#[test]
fn vmdk_stream_optimized_matches_qemu() {
    check_subformat("streamOptimized", true);
}

#[test]
fn vmdk_monolithic_flat_matches_qemu() {
    check_subformat("monolithicFlat", false);
}

#[test]
fn vmdk_two_gb_max_extent_sparse_matches_qemu() {
    check_subformat("twoGbMaxExtentSparse", true);
}

#[test]
fn vmdk_two_gb_max_extent_flat_matches_qemu() {
    check_subformat("twoGbMaxExtentFlat", false);
}

/// VMware's stream writers put the grain directory after the grains and set
/// gdOffset to GD_AT_END in the header; the real header is a footer two
/// sectors before the end, followed by an end-of-stream marker. qemu-img
/// writes the directory up front, so rewrite its image into that shape.
#[test]
fn vmdk_stream_optimized_with_footer_reads_like_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let expected = pattern_with_holes(6 * MIB, MIB);
    let src = write_file(dir.path(), "src.raw", &expected);
    let image = convert_vmdk(dir.path(), &src, "streamOptimized");
    let mut bytes = std::fs::read(&image).unwrap();
    let header: Vec<u8> = bytes[..512].to_vec();
    bytes[56..64].copy_from_slice(&u64::MAX.to_le_bytes()); // gdOffset = GD_AT_END
                                                            // Footer marker: {numSectors 1, size 0, type 3 = MARKER_FOOTER}.
    let mut marker = vec![0u8; 512];
    marker[0..8].copy_from_slice(&1u64.to_le_bytes());
    marker[12..16].copy_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&marker);
    bytes.extend_from_slice(&header); // footer: the header with the real gdOffset
    bytes.extend_from_slice(&[0u8; 512]); // end-of-stream marker
    let footed = dir.path().join("footed.vmdk");
    std::fs::write(&footed, &bytes).unwrap();
    let disk = open_image(&footed).unwrap();
    check_read_disk(disk.as_ref(), &expected);
    assert!(has_zero_extent(disk.as_ref()));
}

/// A hand-written descriptor listing two flat extents and a zero extent
/// reads as their concatenation (what twoGbMaxExtentFlat does at 2 GB).
#[test]
fn vmdk_descriptor_concatenates_flat_and_zero_extents() {
    let dir = tempfile::tempdir().unwrap();
    let a = pattern_with_holes(2 * MIB, 256 * 1024);
    let mut b_file = vec![0xEEu8; 4096]; // skipped by the extent's offset of 8 sectors
    let b = pattern_with_holes(MIB + 512, 4096)
        .into_iter()
        .map(|x| x ^ 0x5A)
        .collect::<Vec<u8>>();
    b_file.extend_from_slice(&b);
    write_file(dir.path(), "part a.raw", &a);
    write_file(dir.path(), "b.raw", &b_file);
    let descriptor = format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\n\
         RW {} FLAT \"part a.raw\" 0\nRW 1024 ZERO\nRW {} FLAT \"b.raw\" 8\n\n\
         # The Disk Data Base\nddb.adapterType = \"lsilogic\"\n",
        a.len() / 512,
        b.len() / 512
    );
    let desc = write_file(dir.path(), "disk.vmdk", descriptor.as_bytes());
    let mut expected = a.clone();
    expected.extend_from_slice(&[0u8; 512 * 1024]);
    expected.extend_from_slice(&b);
    let disk = open_image(&desc).unwrap();
    check_read_disk(disk.as_ref(), &expected);
    let zero = disk.extents(a.len() as u64, 512 * 1024).unwrap();
    assert!(zero.iter().all(|e| e.kind == ExtentKind::Zero), "{zero:?}");
}

/// qemu-img reads back what our reader reads: a second oracle direction for
/// the sparse extent of several grain tables (a disk larger than 32 MiB).
#[test]
fn vmdk_sparse_with_several_grain_tables_matches_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let expected = pattern_with_holes(40 * MIB, 3 * MIB);
    let src = write_file(dir.path(), "src.raw", &expected);
    for sub in ["monolithicSparse", "streamOptimized"] {
        let image = convert_vmdk(dir.path(), &src, sub);
        let disk = open_image(&image).unwrap();
        check_read_disk(disk.as_ref(), &expected);
        let back = dir.path().join(format!("{sub}.back.raw"));
        qemu_img(&[
            "convert",
            "-O",
            "raw",
            image.to_str().unwrap(),
            back.to_str().unwrap(),
        ]);
        assert!(
            std::fs::read(&back).unwrap() == expected,
            "qemu-img disagrees on {sub}"
        );
    }
}

/// One disk shared by several threads (the grain-table and inflated-grain
/// caches are behind locks) reads the same bytes as one thread.
#[test]
fn vmdk_stream_optimized_reads_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let expected = pattern_with_holes(8 * MIB, MIB / 2);
    let src = write_file(dir.path(), "src.raw", &expected);
    let image = convert_vmdk(dir.path(), &src, "streamOptimized");
    let disk = open_image(&image).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let disk = disk.clone();
            let expected = &expected;
            s.spawn(move || {
                let mut buf = vec![0u8; 10_000];
                for i in 0..200u64 {
                    let at = (i * 40_009 + t * 7_777) % (8 * MIB as u64 - 10_000);
                    disk.read_at(&mut buf, at).unwrap();
                    assert!(
                        buf == expected[at as usize..at as usize + 10_000],
                        "thread {t} at {at}"
                    );
                }
            });
        }
    });
}
