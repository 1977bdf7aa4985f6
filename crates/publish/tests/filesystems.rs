//! xfs, btrfs and ntfs published read-only, end to end (needs root,
//! /dev/fuse, util-linux, fdisk, xfsprogs, btrfs-progs, ntfs-3g): each
//! filesystem is made with its real mkfs, populated through a real mount
//! (a loop mount for xfs and btrfs, ntfs-3g for ntfs), placed in a GPT
//! partition, backed up, published and read back exact; writes fail with
//! EROFS and the mount options refuse journal/log replay.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

/// Makes filesystem image `name` of `size` bytes with `mkfs` (the image
/// path appended), mounts it on a scratch directory with `mount_cmd`,
/// writes the [`write_tree`] files for `name`, unmounts.
fn make_fs(
    dirs: &Dirs,
    name: &str,
    size: u64,
    mkfs: &mut Command,
    mount_cmd: &mut Command,
) -> PathBuf {
    let image = dirs.path(&format!("{name}.img"));
    sparse_file(&image, size);
    run_stdout(mkfs.arg(&image));
    let dir = dirs.path(&format!("populate-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    run_stdout(mount_cmd.arg(&image).arg(&dir));
    let written = write_tree(&dir, name, name.len() as u32);
    run_stdout(Command::new("umount").arg(&dir));
    written.unwrap();
    image
}

#[test]
fn xfs_btrfs_and_ntfs_are_published_read_only_and_read_back_exact() {
    let tools = [
        ("mkfs.xfs", "xfsprogs"),
        ("mkfs.btrfs", "btrfs-progs"),
        ("mkfs.ntfs", "ntfs-3g"),
        ("ntfs-3g", "ntfs-3g"),
    ];
    let (_serial, dirs) = start(&tools);
    let (disk, parts) = dirs.disk(
        "fs.img",
        72 * MIB,
        "label: gpt\nsize=32MiB, type=linux\nsize=16MiB, type=linux\nsize=16MiB, type=linux\n",
    );
    assert_eq!(parts.len(), 3, "{parts:?}");
    let loop_mount = || {
        let mut c = Command::new("mount");
        c.args(["-o", "loop"]);
        c
    };
    // xfs refuses filesystems under 300 MiB unless run the way fstests
    // runs it (these variables lift that policy check only).
    let mut mkfs_xfs = Command::new("mkfs.xfs");
    mkfs_xfs
        .args(["-q", "-f"])
        .env("TEST_DIR", "1")
        .env("TEST_DEV", "1")
        .env("QA_CHECK_FS", "1");
    let xfs = make_fs(
        &dirs,
        "xfs",
        parts[0].size,
        &mut mkfs_xfs,
        &mut loop_mount(),
    );
    // btrfs: mixed block groups make 16 MiB enough.
    let btrfs = make_fs(
        &dirs,
        "btrfs",
        parts[1].size,
        Command::new("mkfs.btrfs").args(["-q", "-f", "--mixed"]),
        &mut loop_mount(),
    );
    let ntfs = make_fs(
        &dirs,
        "ntfs",
        parts[2].size,
        Command::new("mkfs.ntfs").args(["-q", "-F", "-f"]),
        &mut Command::new("ntfs-3g"),
    );
    for (img, p) in [(&xfs, &parts[0]), (&btrfs, &parts[1]), (&ntfs, &parts[2])] {
        write_image(&disk, p.start, img);
    }
    backed_up(&dirs.repo, "files01", &[("disk0", &disk)]);

    let s = Published::new(&dirs, "files01@latest");
    assert!(s.state.problems.is_empty(), "{:?}", s.state.problems);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for (volume, fstype) in [
        ("disk0p1", "xfs"),
        ("disk0p2", "btrfs"),
        ("disk0p3", "ntfs"),
    ] {
        let m = s.mounted(volume);
        assert_eq!(m.fstype, fstype, "{m:?}");
        assert_eq!(m.mount_point, s.vm_dir("files01").join(volume));
        let dir = &m.mount_point;
        check_tree(dir, fstype, fstype.len() as u32);

        // The mount itself: read-only, and for the journaling ones with
        // replay refused.
        let point = format!(" {} ", dir.display());
        let line = mountinfo
            .lines()
            .find(|l| l.contains(&point))
            .unwrap_or_else(|| panic!("{volume} not in mountinfo:\n{mountinfo}"));
        let opts = line.split(' ').nth(5).unwrap_or_default();
        assert!(opts.split(',').any(|o| o == "ro"), "{volume}: {line}");
        match fstype {
            "xfs" => assert!(line.contains("norecovery"), "{line}"),
            "btrfs" => assert!(line.contains("nologreplay"), "{line}"),
            _ => assert!(line.contains("fuseblk"), "ntfs through ntfs-3g: {line}"),
        }
    }
    s.finish();
}
