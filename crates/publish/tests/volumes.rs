//! Publishing the volumes discovery finds, end to end (needs root,
//! /dev/fuse, util-linux, fdisk, e2fsprogs, lvm2): an MBR disk with a
//! primary and two logical partitions, an LVM2 volume group with a linear
//! LV (served by a loop offset into the disk file) and a striped LV (served
//! by its own FUSE file), a volume group over two disks (a partition of
//! one, the whole other) whose linear and striped LVs span both (each its
//! own FUSE file), and a disk whose second ext4 will not mount
//! (reported, the first still published). Each disk is built with the real
//! tools, backed up into a repository, published, read back exact, checked
//! read-only and unpublished with nothing left behind.

mod common;

use common::*;
use lifeboat_testsupport::{create_vg, lvm_conf, Loops};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A source directory holding the [`write_tree`] files for `tag`.
fn source_tree(dirs: &Dirs, tag: &str, seed: u32) -> PathBuf {
    let src = dirs.path(&format!("src-{tag}"));
    write_tree(&src, tag, seed).unwrap();
    src
}

#[test]
fn mbr_primary_and_logical_partitions_are_all_published() {
    let (_serial, dirs) = start(&[]);
    let (disk, parts) = dirs.disk(
        "mbr.img",
        48 * MIB,
        "label: dos\nsize=16MiB, type=83\ntype=5\nsize=12MiB, type=83\nsize=12MiB, type=83\n",
    );
    assert_eq!(parts.len(), 4, "primary, extended, two logical: {parts:?}");
    assert!(
        parts[2].node.ends_with('5') && parts[3].node.ends_with('6'),
        "{parts:?}"
    );
    // Partitions 1 (primary), 5 and 6 (logical); 2 is the extended container.
    let fs_parts = [
        (&parts[0], "disk0p1"),
        (&parts[2], "disk0p5"),
        (&parts[3], "disk0p6"),
    ];
    for (i, (p, name)) in fs_parts.iter().enumerate() {
        let src = source_tree(&dirs, name, i as u32);
        let img = dirs.path(&format!("{name}.ext4"));
        ext4_image(&img, &src, p.size);
        write_image(&disk, p.start, &img);
    }
    backed_up(&dirs.repo, "web01", &[("disk0", &disk)]);

    let s = Published::new(&dirs, "web01@latest");
    assert_eq!(s.state.loops.len(), 3, "{:#?}", s.state);
    assert!(s.state.problems.is_empty(), "{:?}", s.state.problems);
    for (i, (p, name)) in fs_parts.iter().enumerate() {
        let m = s.mounted(name);
        assert_eq!(m.fstype, "ext4");
        assert_eq!(m.mount_point, s.vm_dir("web01").join(name));
        let l = s.state.loops.iter().find(|l| &l.volume == name).unwrap();
        assert_eq!((l.offset, l.size), (p.start, p.size), "{l:?}");
        check_tree(&m.mount_point, name, i as u32);
    }
    s.finish();
}

/// The text of LV `name`: one segment per `(extents, stripes)`, each over
/// `stripes` (PV, first extent), striped in 64 KiB stripes when there are
/// several.
fn lv_text(name: &str, segments: &[(u64, &[(&str, u64)])]) -> String {
    let mut segs = String::new();
    let mut start = 0;
    for (i, (extents, stripes)) in segments.iter().enumerate() {
        let list: Vec<_> = stripes
            .iter()
            .map(|(pv, e)| format!("\"{pv}\", {e}"))
            .collect();
        let stripe_size = if stripes.len() > 1 {
            "stripe_size = 128\n"
        } else {
            ""
        };
        segs.push_str(&format!(
            "segment{} {{\nstart_extent = {start}\nextent_count = {extents}\ntype = \"striped\"\n\
             stripe_count = {}\n{stripe_size}stripes = [{}]\n}}\n",
            i + 1,
            stripes.len(),
            list.join(", ")
        ));
        start += extents;
    }
    format!(
        "{name} {{\nid = \"{:a<6}-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa\"\n\
         status = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\nsegment_count = {}\n{segs}}}\n",
        name,
        segments.len(),
    )
}

/// The `logical_volumes` block appended to the `vgcfgbackup` text: `lin`,
/// 10 extents of pv0 from extent 0 (contiguous), and `str`, 10 extents
/// striped over pv0 (extents 10..15) and pv1 (extents 0..5) in 64 KiB
/// stripes.
fn lvs_text() -> String {
    format!(
        "logical_volumes {{\n{}{}}}\n",
        lv_text("lin", &[(10, &[("pv0", 0)])]),
        lv_text("str", &[(10, &[("pv0", 10), ("pv1", 0)])])
    )
}
const STRIPE: u64 = 64 << 10;
/// The GPT partition type of an LVM PV.
const LVM_GPT: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";

/// Writes the file `image` as a 2-stripe LV would hold it: 64 KiB chunks
/// alternating between `stripes` (disk image, byte offset of the stripe's
/// first extent); returns the image's bytes.
fn write_striped(image: &Path, stripes: [(&Path, u64); 2]) -> Vec<u8> {
    let bytes = std::fs::read(image).unwrap();
    for (c, piece) in bytes.chunks(STRIPE as usize).enumerate() {
        let (disk, base) = stripes[c % 2];
        let row = (c / 2) as u64;
        let f = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, piece, base + row * STRIPE).unwrap();
    }
    bytes
}

/// Writes real LVM2 metadata for VG `vg` onto the two PVs `pvs` (a disk
/// image and the byte range of the PV in it: a partition, or the whole
/// disk) with pvcreate/vgcreate/vgcfgrestore (no device-mapper needed),
/// the LVs given as a `logical_volumes` block; returns the byte offset of
/// the first extent within each PV.
fn make_vg(dirs: &Dirs, pvs: [(&Path, &Partition); 2], vg: &str, lvs: &str) -> u64 {
    let mut loops = Loops::default();
    for (disk, p) in pvs {
        loops.attach(disk, p.start, Some(p.size));
    }
    let conf = lvm_conf(dirs.tmp.path(), &[&loops.0[0], &loops.0[1]]);
    let text = create_vg(&conf, vg, &[&loops.0[0], &loops.0[1]], lvs);
    assert!(text.contains("extent_size = 2048"), "{text}");
    let pe_start: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("pe_start = "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pe_start in {text}"));
    pe_start * 512
}

#[test]
fn lvm_linear_and_striped_lvs_are_published() {
    let (_serial, dirs) = start(&[("pvcreate", "lvm2")]);
    let (disk, parts) = dirs.disk(
        "lvm.img",
        56 * MIB,
        &format!("label: gpt\nsize=24MiB, type={LVM_GPT}\nsize=24MiB, type={LVM_GPT}\n"),
    );
    assert_eq!(parts.len(), 2, "{parts:?}");
    let pe_start = make_vg(
        &dirs,
        [(&disk, &parts[0]), (&disk, &parts[1])],
        "lbpubvg",
        &lvs_text(),
    );
    let first_extent = |pv: usize, e: u64| parts[pv].start + pe_start + e * MIB;

    // lin: one run of the disk.
    let lin = dirs.path("lin.ext4");
    ext4_image(&lin, &source_tree(&dirs, "lin", 1), 10 * MIB);
    write_image(&disk, first_extent(0, 0), &lin);
    // str: 64 KiB stripes alternating between pv0 extent 10.. and pv1 extent 0..
    let striped = dirs.path("str.ext4");
    ext4_image(&striped, &source_tree(&dirs, "str", 2), 10 * MIB);
    let bytes = write_striped(
        &striped,
        [(&disk, first_extent(0, 10)), (&disk, first_extent(1, 0))],
    );
    backed_up(&dirs.repo, "db01", &[("disk0", &disk)]);

    let s = Published::new(&dirs, "db01@latest");
    assert!(s.state.problems.is_empty(), "{:?}", s.state.problems);
    // The PVs get no loop device; the LVs do.
    let vols: Vec<_> = s.state.loops.iter().map(|l| l.volume.as_str()).collect();
    assert_eq!(vols, ["lbpubvg-lin", "lbpubvg-str"], "{:#?}", s.state);
    let fuse = &s.state.fuse_mount;
    let lin_loop = &s.state.loops[0];
    assert_eq!(lin_loop.backing, fuse.join("db01-disk0.raw"));
    assert_eq!(
        (lin_loop.offset, lin_loop.size),
        (first_extent(0, 0), 10 * MIB)
    );
    let str_loop = &s.state.loops[1];
    assert_eq!(str_loop.backing, fuse.join("db01-lbpubvg-str.raw"));
    assert_eq!((str_loop.offset, str_loop.size), (0, 10 * MIB));
    assert_eq!(std::fs::read(&str_loop.backing).unwrap(), bytes);

    for (i, (name, tag)) in [("lbpubvg-lin", "lin"), ("lbpubvg-str", "str")]
        .into_iter()
        .enumerate()
    {
        let m = s.mounted(name);
        assert_eq!(m.fstype, "ext4");
        assert_eq!(m.mount_point, s.vm_dir("db01").join(name));
        check_tree(&m.mount_point, tag, i as u32 + 1);
    }
    s.finish();
}

#[test]
fn an_lv_spanning_two_disks_is_published() {
    let (_serial, dirs) = start(&[("pvcreate", "lvm2")]);
    // disk0: one LVM partition (pv0); disk1: a whole-disk PV (pv1), the
    // data disk added to the VG later. 15 extents of 1 MiB each.
    let (disk0, parts) = dirs.disk(
        "disk0.img",
        24 * MIB,
        &format!("label: gpt\nsize=16MiB, type={LVM_GPT}\n"),
    );
    let disk1 = dirs.path("disk1.img");
    sparse_file(&disk1, 16 * MIB);
    let whole = Partition {
        node: disk1.display().to_string(),
        start: 0,
        size: 16 * MIB,
    };
    // span: pv0 extents 0..10 then pv1 extents 0..10; wide: striped over
    // pv0 extents 10..14 and pv1 extents 10..14.
    let lvs = format!(
        "logical_volumes {{\n{}{}}}\n",
        lv_text("span", &[(10, &[("pv0", 0)]), (10, &[("pv1", 0)])]),
        lv_text("wide", &[(8, &[("pv0", 10), ("pv1", 10)])])
    );
    let pe_start = make_vg(
        &dirs,
        [(&disk0, &parts[0]), (&disk1, &whole)],
        "lbspan",
        &lvs,
    );
    let on0 = |e: u64| parts[0].start + pe_start + e * MIB;
    let on1 = |e: u64| pe_start + e * MIB;

    let span = dirs.path("span.ext4");
    ext4_image(&span, &source_tree(&dirs, "span", 3), 20 * MIB);
    let span_bytes = std::fs::read(&span).unwrap();
    let (head, tail) = span_bytes.split_at(10 * MIB as usize);
    let write = |disk: &Path, at: u64, bytes: &[u8]| {
        let f = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, bytes, at).unwrap();
    };
    write(&disk0, on0(0), head);
    write(&disk1, on1(0), tail);
    let wide = dirs.path("wide.ext4");
    ext4_image(&wide, &source_tree(&dirs, "wide", 4), 8 * MIB);
    let wide_bytes = write_striped(&wide, [(&disk0, on0(10)), (&disk1, on1(10))]);
    backed_up(&dirs.repo, "app01", &[("disk0", &disk0), ("disk1", &disk1)]);

    let s = Published::new(&dirs, "app01@latest");
    assert!(s.state.problems.is_empty(), "{:?}", s.state.problems);
    let fuse = &s.state.fuse_mount;
    for d in ["disk0", "disk1"] {
        assert!(s.state.files.contains(&fuse.join(format!("app01-{d}.raw"))));
    }
    // Both PVs are skipped; each LV is a FUSE file of its own.
    let vols: Vec<_> = s.state.loops.iter().map(|l| l.volume.as_str()).collect();
    assert_eq!(vols, ["lbspan-span", "lbspan-wide"], "{:#?}", s.state);
    for (i, (bytes, tag)) in [(&span_bytes, "span"), (&wide_bytes, "wide")]
        .into_iter()
        .enumerate()
    {
        let l = &s.state.loops[i];
        assert_eq!(l.disk, "disk0+disk1", "{l:?}");
        assert_eq!(l.backing, fuse.join(format!("app01-lbspan-{tag}.raw")));
        assert_eq!((l.offset, l.size), (0, bytes.len() as u64), "{l:?}");
        assert!(
            std::fs::read(&l.backing).unwrap() == *bytes,
            "{tag} differs"
        );
        let m = s.mounted(&l.volume);
        assert_eq!(m.fstype, "ext4");
        assert_eq!(m.mount_point, s.vm_dir("app01").join(&l.volume));
        check_tree(&m.mount_point, tag, i as u32 + 3);
    }
    s.finish();

    // Only disk1: the LVs need pv0, which is not published; that is
    // reported naming the VG, the LV and the missing PV, and nothing else
    // (disk1 is a PV) gets a loop device.
    let mut opts = dirs.options("app01@latest");
    opts.disks = vec!["disk1".into()];
    let state = lifeboat_publish::publish(&opts, &repo_of(&opts), daemon()).unwrap();
    let problems = lifeboat_formats::problem::join(&state.problems, "\n");
    lifeboat_publish::unpublish(&dirs.state_dir, &state.session).unwrap();
    assert_clean(&dirs.mount_root);
    assert!(state.loops.is_empty(), "{state:#?}");
    for lv in ["span", "wide"] {
        assert!(
            problems.contains(&format!("LVM VG lbspan LV {lv}: needs PV pv0 (UUID "))
                && problems.contains("missing"),
            "{problems}"
        );
    }
}

#[test]
fn a_filesystem_that_will_not_mount_is_reported_and_the_rest_published() {
    let (_serial, dirs) = start(&[]);
    let (disk, parts) = dirs.disk(
        "bad.img",
        24 * MIB,
        "label: gpt\nsize=8MiB, type=linux\nsize=8MiB, type=linux\n",
    );
    let good = dirs.path("good.ext4");
    ext4_image(&good, &source_tree(&dirs, "good", 7), parts[0].size);
    write_image(&disk, parts[0].start, &good);
    // An ext4 whose superblock is intact (blkid still says ext4) but whose
    // group descriptors (block 1 with 4 KiB blocks) are garbage.
    let bad = dirs.path("bad.ext4");
    ext4_image(&bad, &source_tree(&dirs, "bad", 8), parts[1].size);
    let f = std::fs::OpenOptions::new().write(true).open(&bad).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xff; 4096], 4096).unwrap();
    drop(f);
    let seen = run_stdout(
        Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "TYPE"])
            .arg(&bad),
    );
    assert_eq!(
        seen.trim(),
        "ext4",
        "the corrupt image must still look like ext4"
    );
    write_image(&disk, parts[1].start, &bad);
    backed_up(&dirs.repo, "web02", &[("disk0", &disk)]);

    let s = Published::new(&dirs, "web02@latest");
    assert_eq!(s.state.status, lifeboat_publish::SessionStatus::Ready);
    check_tree(&s.mounted("disk0p1").mount_point, "good", 7);
    let m = s
        .state
        .mounts
        .iter()
        .find(|m| m.volume == "disk0p2")
        .unwrap_or_else(|| panic!("disk0p2 not tried: {:#?}", s.state));
    assert!(!m.mounted && m.fstype == "ext4", "{m:?}");
    assert!(m.error.is_some(), "{m:?}");
    assert!(
        !m.mount_point.exists(),
        "an empty mount point is left: {m:?}"
    );
    assert!(
        s.state
            .problems
            .iter()
            .any(|p| p.message.contains("disk0p2")
                && p.message.contains("not mounted")
                && p.kind == lifeboat_publish::ProblemKind::NotMounted),
        "{:?}",
        s.state.problems
    );
    // `published` shows the same, from the state file.
    let listed = lifeboat_publish::published(&dirs.state_dir).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].alive);
    assert_eq!(listed[0].state.problems, s.state.problems);
    s.finish();
}
