//! qemu-img as the oracle of every image reader, end to end through backup
//! and restore: one raw disk, converted by qemu-img into each supported
//! format, backs up (each as its own VM, into one repository) to restore
//! points whose indexes hold exactly the raw disk's digests, and each
//! restore point restores bit-exact to raw and to a qcow2 that
//! `qemu-img compare` finds identical to the source.

use lifeboat_engine::{backup_vm, restore_to_file, DiskSource, NoProgress, RestoreFormat};
use lifeboat_repo::{DiskIndex, FormatChosenBy, Repository};
use lifeboat_testsupport::path_str as s;
use lifeboat_testsupport::repo::init_repo;
use lifeboat_testsupport::{output, qemu_img, qemu_img_from_raw, tool};
use std::path::{Path, PathBuf};

/// 64 KiB chunks: about 80 of them over the disk.
const CHUNK_SIZE: u32 = 64 * 1024;
/// A multiple of 512, not of the chunk size: the last chunk is short.
const DISK_SIZE: usize = (5 << 20) + 7 * 512;

/// (VM name, qemu-img output format, its convert options); every format
/// and subformat the readers support.
const FORMATS: &[(&str, &str, &[&str])] = &[
    ("qcow2", "qcow2", &[]),
    ("qcow2-compressed", "qcow2", &["-c"]),
    (
        "vmdk-monolithicSparse",
        "vmdk",
        &["-o", "subformat=monolithicSparse"],
    ),
    (
        "vmdk-streamOptimized",
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    ),
    (
        "vmdk-monolithicFlat",
        "vmdk",
        &["-o", "subformat=monolithicFlat"],
    ),
    (
        "vmdk-twoGbMaxExtentSparse",
        "vmdk",
        &["-o", "subformat=twoGbMaxExtentSparse"],
    ),
    (
        "vmdk-twoGbMaxExtentFlat",
        "vmdk",
        &["-o", "subformat=twoGbMaxExtentFlat"],
    ),
    ("vhdx-dynamic", "vhdx", &["-o", "subformat=dynamic"]),
    ("vhdx-fixed", "vhdx", &["-o", "subformat=fixed"]),
];

/// The source disk: the trait suite's pattern with holes, a 512 KiB run of
/// zeros (whole zero chunks), 1 MiB of pseudo-random data at an unaligned
/// offset, a chunk repeated (dedup inside the disk), and data in the short
/// last chunk.
fn source_disk() -> Vec<u8> {
    let mut v = lifeboat_vdisk::testsuite::pattern_with_holes(DISK_SIZE, 96 * 1024);
    v[3 << 20..(3 << 20) + (512 << 10)].fill(0);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in &mut v[(1 << 20) + 777..(2 << 20) + 777] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    let cs = CHUNK_SIZE as usize;
    let (from, to) = (5 * cs, 20 * cs);
    let copy = v[from..from + cs].to_vec();
    v[to..to + cs].copy_from_slice(&copy);
    let end = v.len();
    for (i, b) in v[end - 1000..].iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    v
}

/// Backs up `image` as VM `vm` (disk `disk0`), returning the restore
/// point's index. The image may open files of its own directory (VMDK
/// extents, the backing file of the chain), and nothing else.
fn backup(repo: &Repository, vm: &str, image: &Path) -> (lifeboat_repo::Manifest, DiskIndex) {
    let mut options = lifeboat_formats::OpenOptions::default();
    options
        .allowed
        .allow(image.parent().unwrap())
        .expect("allowing the image's directory");
    let (source, _) = DiskSource::open_file("disk0", image, &options)
        .unwrap_or_else(|e| panic!("opening {}: {e}", image.display()));
    let sources = [source];
    let summary = backup_vm(repo, vm, &sources, &NoProgress)
        .unwrap_or_else(|e| panic!("backup of {}: {e}", image.display()));
    let index = repo
        .load_index(&summary.manifest, "disk0")
        .expect("loading the index");
    (summary.manifest, index)
}

#[test]
fn every_format_backs_up_to_the_raw_digests_and_restores_bit_exact() {
    qemu_img(&["--version"]);
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(
        &dir.path().join("repo"),
        Some("oracle passphrase"),
        CHUNK_SIZE,
    );

    let expected = source_disk();
    let src = dir.path().join("src.raw");
    std::fs::write(&src, &expected).unwrap();

    // Every image: the raw source, each qemu-img conversion (in its own
    // folder: VMDK extents are separate files), and a qcow2 overlay with an
    // empty top over the qcow2 conversion (a backing chain).
    let mut images: Vec<(String, PathBuf)> = vec![("raw".into(), src.clone())];
    for (name, format, options) in FORMATS {
        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).unwrap();
        let out = sub.join(format!("disk.{format}"));
        qemu_img_from_raw(&src, &out, format, options);
        images.push((name.to_string(), out));
    }
    let top = dir.path().join("qcow2").join("top.qcow2");
    let base = dir.path().join("qcow2").join("disk.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        s(&base),
        "-F",
        "qcow2",
        s(&top),
    ]);
    images.push(("qcow2-backing-chain".into(), top));

    let (_, raw_index) = backup(&repo, "raw", &src);
    assert_eq!(raw_index.disk_size, DISK_SIZE as u64);
    assert_eq!(raw_index.chunk_size, CHUNK_SIZE);
    let data_chunks = raw_index.digests.iter().flatten().count();
    assert!(
        data_chunks > 40 && data_chunks < raw_index.digests.len(),
        "the source has many data chunks and some zero chunks ({data_chunks} of {})",
        raw_index.digests.len()
    );

    for (name, image) in &images {
        let (manifest, index) = backup(&repo, name, image);
        assert_eq!(index.disk_size, raw_index.disk_size, "{name}: disk size");
        assert_eq!(index.chunk_size, raw_index.chunk_size, "{name}: chunk size");
        let differ: Vec<usize> = (0..index.digests.len())
            .filter(|&i| index.digests.get(i) != raw_index.digests.get(i))
            .collect();
        assert!(
            index.digests.len() == raw_index.digests.len() && differ.is_empty(),
            "{name}: digests differ from the raw disk's at chunks {differ:?}"
        );
        // Everything was already stored by the raw backup.
        assert_eq!(manifest.disks[0].stats.new_chunks, 0, "{name}: new chunks");
        // The format read, chosen by the file name, is in the manifest.
        let recorded = manifest.disks[0].format.as_ref().expect("format recorded");
        assert_eq!(recorded.chosen_by, FormatChosenBy::FileName, "{name}");
        assert!(name.starts_with(&recorded.format), "{name}: {recorded:?}");
        assert_eq!(recorded.content_looks_like, None, "{name}");

        let disk = repo.open_disk(&manifest, "disk0").unwrap();
        let out_raw = dir.path().join(format!("{name}.restored.raw"));
        restore_to_file(
            &disk,
            &out_raw,
            RestoreFormat::Raw,
            u64::from(CHUNK_SIZE),
            &NoProgress,
        )
        .unwrap_or_else(|e| panic!("{name}: restore to raw: {e}"));
        let got = std::fs::read(&out_raw).unwrap();
        assert!(got == expected, "{name}: raw restore is not bit-exact");
        std::fs::remove_file(&out_raw).unwrap();

        let out_qcow2 = dir.path().join(format!("{name}.restored.qcow2"));
        restore_to_file(
            &disk,
            &out_qcow2,
            RestoreFormat::Qcow2,
            u64::from(CHUNK_SIZE),
            &NoProgress,
        )
        .unwrap_or_else(|e| panic!("{name}: restore to qcow2: {e}"));
        let cmp = output(tool("qemu-img", "qemu-utils").args([
            "compare",
            "-f",
            "qcow2",
            "-F",
            "raw",
            s(&out_qcow2),
            s(&src),
        ]));
        assert!(
            cmp.status.success(),
            "{name}: qemu-img compare of the qcow2 restore: {}{}",
            String::from_utf8_lossy(&cmp.stdout),
            String::from_utf8_lossy(&cmp.stderr)
        );
        std::fs::remove_file(&out_qcow2).unwrap();
    }
    assert_eq!(repo.list(None).unwrap().len(), images.len() + 1);
}
