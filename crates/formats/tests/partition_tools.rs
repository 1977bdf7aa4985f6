//! Partition table reader against sfdisk as the oracle: MBR disks with
//! primary, extended and logical partitions and GPT disks made by sfdisk on
//! sparse files must read back as `sfdisk --dump` lists them; faults
//! (overlaps, partitions past the end, a looping EBR chain, a damaged
//! primary GPT, no table at all) are reported and the good partitions kept.

use lifeboat_formats::partition::{read_partition_table, Scheme};
use lifeboat_formats::problem::{self, ProblemKind};
use lifeboat_formats::volumes::{discover_volumes, VolumeKind};
use lifeboat_testsupport::{run_stdout, sfdisk, sparse_file, tool, write_at, Loops, MIB};
use lifeboat_vdisk::testsuite::check_read_disk;
use lifeboat_vdisk::{FileDisk, ReadDisk};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One line of `sfdisk --dump`: (number, start sector, sectors, type, name).
type DumpLine = (u32, u64, u64, String, Option<String>);

fn sfdisk_dump(image: &Path) -> Vec<DumpLine> {
    let text = run_stdout(tool("sfdisk", "fdisk").arg("-d").arg(image));
    let mut lines = Vec::new();
    for line in text.lines() {
        let Some((dev, rest)) = line.split_once(" : ") else {
            continue;
        };
        let number: u32 = dev
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let field = |k: &str| {
            rest.split(", ").find_map(|f| {
                f.trim()
                    .strip_prefix(&format!("{k}="))
                    .map(|v| v.trim().to_string())
            })
        };
        lines.push((
            number,
            field("start").unwrap().parse().unwrap(),
            field("size").unwrap().parse().unwrap(),
            field("type").unwrap(),
            field("name").map(|n| n.trim_matches('"').to_string()),
        ));
    }
    lines
}

/// A sparse image of `size` bytes where each 512-byte sector starts with its number.
fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    sparse_file(&path, size);
    for sector in (2048..size / 512).step_by(97) {
        write_at(
            &path,
            sector * 512,
            format!("sector {sector:08}").as_bytes(),
        );
    }
    path
}

fn open(path: &Path) -> Arc<dyn ReadDisk> {
    Arc::new(FileDisk::open(path).unwrap())
}

const MBR_SCRIPT: &str = "label: dos\n\
    start=2048, size=4096, type=83\n\
    start=6144, size=4096, type=8e\n\
    start=10240, size=40960, type=5\n\
    start=12288, size=4096, type=83\n\
    start=18432, size=4096, type=7\n\
    start=24576, size=8192, type=82\n";

#[test]
fn mbr_with_logical_partitions_matches_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), "mbr.img", 64 * MIB);
    sfdisk(&path, MBR_SCRIPT);
    let disk = open(&path);
    let table = read_partition_table(disk.as_ref()).unwrap();
    assert_eq!(table.scheme, Scheme::Mbr);
    assert!(table.problems.is_empty(), "{:?}", table.problems);
    let dump = sfdisk_dump(&path);
    // sfdisk lists the extended container (3) too; it is not a volume.
    let expected: Vec<_> = dump.iter().filter(|d| d.3 != "5").collect();
    assert_eq!(
        table.partitions.len(),
        expected.len(),
        "{:?}",
        table.partitions
    );
    for (p, d) in table.partitions.iter().zip(&expected) {
        assert_eq!(p.number, d.0);
        assert_eq!(p.start, d.1 * 512, "partition {}", d.0);
        assert_eq!(p.length, d.2 * 512, "partition {}", d.0);
        assert_eq!(p.mbr_type, Some(u8::from_str_radix(&d.3, 16).unwrap()));
        assert!(p.usable());
    }
    assert_eq!(table.partitions[3].type_hint, "ntfs");

    let whole = std::fs::read(&path).unwrap();
    let report = discover_volumes("disk0", disk);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let names: Vec<_> = report.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["disk0p1", "disk0p2", "disk0p5", "disk0p6", "disk0p7"]
    );
    for v in &report.volumes {
        assert_eq!(v.kind, VolumeKind::Partition);
        let (s, l) = (v.start as usize, v.length as usize);
        check_read_disk(v.disk.as_ref(), &whole[s..s + l]);
    }
}

#[test]
fn gpt_matches_sfdisk_and_survives_a_damaged_primary() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), "gpt.img", 64 * MIB);
    sfdisk(
        &path,
        "label: gpt\n\
         start=2048, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system\"\n\
         start=4096, size=40960, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=\"pv\"\n\
         start=45056, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    );
    let check = |problems_expected: bool| {
        let table = read_partition_table(open(&path).as_ref()).unwrap();
        assert_eq!(table.scheme, Scheme::Gpt);
        assert_eq!(
            !table.problems.is_empty(),
            problems_expected,
            "{:?}",
            table.problems
        );
        let dump = sfdisk_dump(&path);
        assert_eq!(table.partitions.len(), dump.len());
        for (p, d) in table.partitions.iter().zip(&dump) {
            assert_eq!(
                (p.number, p.start, p.length),
                (d.0, d.1 * 512, d.2 * 512),
                "partition {}",
                d.0
            );
            assert_eq!(p.type_guid.as_deref(), Some(d.3.as_str()));
            assert_eq!(p.label, d.4);
        }
        assert_eq!(table.partitions[0].type_hint, "efi-system");
        assert_eq!(table.partitions[1].type_hint, "linux-lvm");
        table
    };
    check(false);
    let report = discover_volumes("sda", open(&path));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.volume("sda2").unwrap().label.as_deref(), Some("pv"));
    assert_eq!(report.volume("sda3").unwrap().length, 8192 * 512);

    // Damage the primary header's CRC-covered bytes: the backup is used.
    write_at(&path, 512 + 60, &[0xAB]);
    let table = check(true);
    assert!(
        table.problems[0].message.contains("using the backup")
            && table.problems[0].kind == ProblemKind::Note,
        "{:?}",
        table.problems
    );
}

/// A GPT of 4096-byte blocks (made by sfdisk on a loop device of 4096-byte
/// sectors) is read at 4096; finding no GPT at 512-byte blocks is a note.
#[test]
fn a_gpt_of_4096_byte_blocks_serves_everything() {
    lifeboat_testsupport::require_root("losetup --sector-size 4096");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("4k.img");
    sparse_file(&path, 64 * MIB);
    let mut loops = Loops::default();
    let mut attach = tool("losetup", "util-linux");
    attach
        .args(["-f", "--show", "--sector-size", "4096"])
        .arg(&path);
    loops.0.push(run_stdout(&mut attach).trim().to_string());
    sfdisk(
        Path::new(&loops.0[0]),
        "label: gpt\nstart=256, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    );
    drop(loops);
    let report = discover_volumes("disk0", open(&path));
    let p1 = report.volume("disk0p1").map(|v| (v.start, v.length));
    assert_eq!(p1, Some((256 * 4096, 2048 * 4096)), "{:?}", report.problems);
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::Note], "{:?}", report.problems);
    assert!(
        report.problems[0]
            .message
            .starts_with("disk0: 512-byte blocks: primary GPT: no "),
        "{}",
        report.problems[0]
    );
}

#[test]
fn overlapping_and_out_of_range_partitions_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), "bad.img", 64 * MIB);
    sfdisk(
        &path,
        "label: dos\nstart=2048, size=4096, type=83\nstart=6144, size=4096, type=83\n\
         start=10240, size=4096, type=83\nstart=40960, size=81920, type=83\n",
    );
    // Entry 3 (offset 446 + 32): move its start into partition 2.
    write_at(&path, 446 + 32 + 8, &8192u32.to_le_bytes());
    // Shrink the image: partition 4 (sectors 40960..122880) now reaches past the end.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(48 * MIB))
        .unwrap();
    let report = discover_volumes("disk0", open(&path));
    let names: Vec<_> = report.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["disk0p1"], "{:?}", report.problems);
    let all = problem::join(&report.problems, "\n");
    assert!(
        all.contains("disk0p2 skipped: partition 2") && all.contains("overlaps partition 3"),
        "{all}"
    );
    assert!(all.contains("disk0p3 skipped"), "{all}");
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Unserved),
        "{:?}",
        report.problems
    );
    assert!(
        all.contains("disk0p4 skipped: partition 4") && all.contains("past the end"),
        "{all}"
    );
}

#[test]
fn looping_ebr_chain_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), "loop.img", 64 * MIB);
    sfdisk(&path, MBR_SCRIPT);
    // The first EBR sits at the extended start (10240); its second entry
    // points at the next EBR relative to that start. Point that EBR's
    // "next" entry back at the first EBR (relative offset 0).
    let ebr = 10240 * 512 + 446 + 16 + 8;
    let bytes = std::fs::read(&path).unwrap();
    let rel = u32::from_le_bytes(bytes[ebr..ebr + 4].try_into().unwrap());
    let second_ebr = (10240 + u64::from(rel)) * 512;
    write_at(&path, second_ebr + 446 + 16 + 8, &0u32.to_le_bytes());
    let report = discover_volumes("disk0", open(&path));
    let all = problem::join(&report.problems, "\n");
    assert!(
        all.contains("EBR chain loops back to sector 10240"),
        "{all}"
    );
    let names: Vec<_> = report.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["disk0p1", "disk0p2", "disk0p5", "disk0p6"]);
}

#[test]
fn disk_without_a_table_is_one_whole_volume() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), "plain.img", 8 * MIB);
    let report = discover_volumes("disk1", open(&path));
    assert_eq!(report.scheme, Some(Scheme::None));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.volumes.len(), 1);
    let v = &report.volumes[0];
    assert_eq!(
        (v.name.as_str(), v.kind, v.start, v.length),
        ("disk1", VolumeKind::Whole, 0, 8 * MIB)
    );
}
