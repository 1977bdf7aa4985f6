//! Browse across disks: a VM of two disks whose LVM volume group spans
//! both, backed up into a repository, then listed and read back through
//! `open_restore_point` -> `select` -> `Filesystem`; and a restore point
//! holding only the first disk, which must name the missing PV and still
//! serve the LV that lives wholly on the disk it has.
//!
//! The VG is written by the real lvm2 tools without device-mapper
//! (`pvcreate`, `vgcreate`, `vgcfgrestore` of hand-written LV segments,
//! through lifeboat-testsupport's `create_vg`): `disk0` holds a GPT with
//! one LVM partition (pv0, 15 extents of 1 MiB), `disk1` is a whole-disk PV
//! (pv1, 15 extents). LVs: `home` (pv0 extents 0..4) and `data` (pv0
//! extents 4..15, then pv1 extents 0..9: 20 MiB crossing the disks). Each
//! holds an ext4 made by `mkfs.ext4 -d`, written extent by extent where the
//! segments put it; `data` holds a 13 MiB file, which cannot fit in the
//! 11 MiB on disk0, so reading it back exact proves both disks are used.
//!
//! Needs root (losetup), lvm2, fdisk (sfdisk) and e2fsprogs; a missing one
//! fails the test saying what to install.

mod fixture;

use fixture::{backed_up, names, pseudo_random, read_all, MIB};
use lifeboat_browse::{open_restore_point, FsType, ProblemKind, RestorePointVolumes};
use lifeboat_testsupport::{
    create_vg, ext4_image, lvm_conf, require_root, require_tool, sfdisk, sparse_file, write_file,
    Loops,
};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// pv0: partition 1 of disk0, at 1 MiB, 16 MiB long; disk1 is all pv1.
const PART_START: u64 = MIB;
const PV_LEN: u64 = 16 * MIB;
/// `vgcreate -s 1M`.
const EXTENT: u64 = MIB;
/// Extents of `data` on pv0 (from extent 4) and on pv1 (from extent 0).
const DATA_ON_PV0: u64 = 11;
const DATA_ON_PV1: u64 = 9;
const HOME_EXTENTS: u64 = 4;
/// The GPT partition type of an LVM PV.
const LVM_GPT: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";

/// One linear LV over `runs` (PV name, first extent, extent count), as a
/// `logical_volumes` entry for `vgcfgrestore`.
fn linear_lv(name: &str, runs: &[(&str, u64, u64)]) -> String {
    let mut text = format!(
        "{name} {{\nid = \"{name:x<6}-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx\"\n\
         status = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\nsegment_count = {}\n",
        runs.len()
    );
    let mut start = 0;
    for (i, (pv, first, count)) in runs.iter().enumerate() {
        text += &format!(
            "segment{} {{ start_extent = {start} extent_count = {count} type = \"striped\" \
             stripe_count = 1 stripes = [\"{pv}\", {first}] }}\n",
            i + 1
        );
        start += count;
    }
    text + "}\n"
}

/// The two disk images, the files of each LV and pv1's UUID.
struct Vm {
    _dir: tempfile::TempDir,
    disk0: PathBuf,
    disk1: PathBuf,
    /// (LV, path in its filesystem, contents).
    files: Vec<(&'static str, String, Vec<u8>)>,
    pv1_uuid: String,
}

/// Writes the file `image` at `runs` (disk image, byte offset, length), one
/// piece after another.
fn scatter(image: &Path, runs: &[(&Path, u64, u64)]) {
    let bytes = std::fs::read(image).unwrap();
    let mut at = 0usize;
    for &(disk, offset, len) in runs {
        let piece = &bytes[at..at + len as usize];
        let f = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
        f.write_all_at(piece, offset).unwrap();
        at += len as usize;
    }
    assert_eq!(at, bytes.len(), "{} not all written", image.display());
}

/// The id lvm2 gave PV `pv` in the `vgcfgbackup` text.
fn pv_uuid(text: &str, pv: &str) -> String {
    let block = text
        .split_once(&format!("{pv} {{"))
        .unwrap_or_else(|| panic!("no {pv} in {text}"))
        .1;
    let id = block.split_once("id = \"").expect("a PV id").1;
    id.split('"').next().unwrap_or_default().to_string()
}

fn build(vg: &str) -> Vm {
    require_root("losetup, pvcreate");
    for (tool, package) in [
        ("pvcreate", "lvm2"),
        ("sfdisk", "fdisk"),
        ("mkfs.ext4", "e2fsprogs"),
        ("losetup", "util-linux"),
    ] {
        require_tool(tool, package);
    }
    let dir = tempfile::tempdir().unwrap();
    let disk0 = dir.path().join("disk0.img");
    let disk1 = dir.path().join("disk1.img");
    sparse_file(&disk0, PART_START + PV_LEN + MIB);
    sparse_file(&disk1, PV_LEN);
    sfdisk(
        &disk0,
        &format!(
            "label: gpt\nstart={}, size={}, type={LVM_GPT}\n",
            PART_START / 512,
            PV_LEN / 512
        ),
    );

    let lvs = format!(
        "logical_volumes {{\n{}{}}}\n",
        linear_lv("home", &[("pv0", 0, HOME_EXTENTS)]),
        linear_lv(
            "data",
            &[("pv0", HOME_EXTENTS, DATA_ON_PV0), ("pv1", 0, DATA_ON_PV1)]
        ),
    );
    let mut loops = Loops::default();
    let a = loops.attach(&disk0, PART_START, Some(PV_LEN));
    let b = loops.attach(&disk1, 0, None);
    let conf = lvm_conf(dir.path(), &[&a, &b]);
    let text = create_vg(&conf, vg, &[&a, &b], &lvs);
    drop(loops);
    for want in ["extent_size = 2048", "pe_start = 2048", "pe_count = 15"] {
        assert!(text.contains(want), "the fixture assumes {want}:\n{text}");
    }
    let pe_start = MIB;
    let on0 = |e: u64| PART_START + pe_start + e * EXTENT;
    let on1 = |e: u64| pe_start + e * EXTENT;

    let mut files = Vec::new();
    for (lv, size, contents) in [
        (
            "home",
            HOME_EXTENTS * EXTENT,
            vec![("notes.txt", b"kept on disk0 only\n".to_vec())],
        ),
        (
            "data",
            (DATA_ON_PV0 + DATA_ON_PV1) * EXTENT,
            vec![
                ("big.bin", pseudo_random(13 * MIB as usize + 77, 7)),
                ("readme.txt", b"this filesystem spans two disks\n".to_vec()),
            ],
        ),
    ] {
        let src = dir.path().join(format!("src-{lv}"));
        std::fs::create_dir_all(&src).unwrap();
        for (name, data) in contents {
            write_file(&src, name, &data);
            files.push((lv, format!("/{name}"), data));
        }
        let image = dir.path().join(format!("{lv}.ext4"));
        ext4_image(&image, &src, size);
        if lv == "home" {
            scatter(&image, &[(&disk0, on0(0), size)]);
        } else {
            scatter(
                &image,
                &[
                    (&disk0, on0(HOME_EXTENTS), DATA_ON_PV0 * EXTENT),
                    (&disk1, on1(0), DATA_ON_PV1 * EXTENT),
                ],
            );
        }
    }
    Vm {
        disk0,
        disk1,
        files,
        pv1_uuid: pv_uuid(&text, "pv1"),
        _dir: dir,
    }
}

/// Opens the filesystem of LV `lv` of VG `vg` and checks every file of it
/// lists and reads back exact.
fn check_lv(rp: &RestorePointVolumes, vm: &Vm, vg: &str, lv: &str, disk: &str) {
    let sel = rp.select(None, Some(&format!("{vg}-{lv}"))).unwrap();
    assert_eq!(sel.disk, disk);
    let fs = sel.open().unwrap();
    assert_eq!(fs.fs_type(), FsType::Ext4);
    let listed = fs.list("/").unwrap();
    for (_, path, data) in vm.files.iter().filter(|(l, _, _)| *l == lv) {
        let name = &path[1..];
        assert!(names(&listed).contains(&name), "{name} not in {listed:?}");
        assert_eq!(fs.stat(path).unwrap().size, data.len() as u64, "{path}");
        assert!(read_all(fs.as_ref(), path) == *data, "{lv}: {path} differs");
    }
}

#[test]
fn an_lv_spanning_two_disks_lists_and_reads_back_exact() {
    let vm = build("lbbrowse");
    let tmp = tempfile::tempdir().unwrap();
    let (repo, m) = backed_up(
        tmp.path(),
        "app01",
        &[("disk0", &vm.disk0), ("disk1", &vm.disk1)],
    );
    let rp = open_restore_point(&repo, &m).unwrap();
    assert!(rp.problems().is_empty(), "{:?}", rp.problems());

    let vols = rp.volumes();
    let lv = |name: &str| {
        vols.iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no volume {name} in {vols:#?}"))
    };
    let data = lv("lbbrowse-data");
    assert_eq!(
        (data.disk.as_str(), data.type_hint.as_str(), data.fs),
        ("disk0+disk1", "lvm2-lv", Some(FsType::Ext4))
    );
    assert_eq!(data.size, (DATA_ON_PV0 + DATA_ON_PV1) * EXTENT);
    let home = lv("lbbrowse-home");
    assert_eq!((home.disk.as_str(), home.fs), ("disk0", Some(FsType::Ext4)));
    // The PVs are volumes too, without a filesystem.
    for pv in ["disk0p1", "disk1"] {
        assert_eq!(lv(pv).type_hint, "lvm2-pv");
    }

    check_lv(&rp, &vm, "lbbrowse", "data", "disk0+disk1");
    check_lv(&rp, &vm, "lbbrowse", "home", "disk0");
    // The spanning LV is a choice on either of its disks.
    for disk in ["disk0", "disk1"] {
        let sel = rp.select(Some(disk), Some("lbbrowse-data")).unwrap();
        assert_eq!(sel.disk, "disk0+disk1");
    }
    // Two filesystems: without --volume the error lists both.
    let e = rp.select(None, None).err().unwrap().to_string();
    assert!(
        e.contains("--volume lbbrowse-data") && e.contains("--volume lbbrowse-home"),
        "{e}"
    );
}

#[test]
fn a_restore_point_missing_a_disk_names_the_pv_and_serves_the_rest() {
    let vm = build("lbmissing");
    let tmp = tempfile::tempdir().unwrap();
    let (repo, m) = backed_up(tmp.path(), "app01", &[("disk0", &vm.disk0)]);
    let rp = open_restore_point(&repo, &m).unwrap();

    let problems: Vec<String> = rp.problems().iter().map(|p| p.to_string()).collect();
    let missing = rp
        .problems()
        .iter()
        .find(|p| {
            p.message.starts_with("LVM VG lbmissing LV data:")
                && p.message.contains("PV pv1")
                && p.message.contains(&vm.pv1_uuid)
                && p.message.contains("missing")
        })
        .unwrap_or_else(|| panic!("pv1 {} not named: {problems:#?}", vm.pv1_uuid));
    assert_eq!(missing.kind, ProblemKind::Unserved, "{missing}");
    assert!(
        problems.iter().any(|p| p.contains(&format!(
            "LVM VG lbmissing: PV pv1 (UUID {}) is missing",
            vm.pv1_uuid
        ))),
        "{problems:#?}"
    );

    // data is not offered; home, wholly on disk0, is.
    let vols = rp.volumes();
    let listed: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(listed, ["disk0p1", "lbmissing-home"], "{vols:#?}");
    let e = rp
        .select(None, Some("lbmissing-data"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no volume \"lbmissing-data\"") && e.contains("lbmissing-home"),
        "{e}"
    );
    // The only filesystem left is chosen without asking.
    let sel = rp.select(None, None).unwrap();
    assert_eq!(sel.volume.name, "lbmissing-home");
    check_lv(&rp, &vm, "lbmissing", "home", "disk0");
}
