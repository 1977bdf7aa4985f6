//! LVM2 decoding against the real LVM tools. There is no device-mapper here,
//! so the fixture is built the way ARCHITECTURE.md section 7 describes: a
//! GPT disk image with two LVM partitions, each attached as its own loop
//! device (`--offset/--sizelimit`), `pvcreate` + `vgcreate`, `vgcfgbackup`,
//! a `logical_volumes` block appended by hand (a linear LV over both PVs, a
//! striped LV over both PVs, a contiguous linear LV with a `-` in its name),
//! `vgcfgrestore -f` to write real metadata, loops detached. Every PV extent
//! is then filled with a pattern naming (PV, extent, sector), and each LV
//! read through `discover_volumes` must equal the extents the test maps by
//! hand. Fault tests rewrite the real metadata (flipped byte, bad segment,
//! foreign PV, unsupported type) and expect clear errors naming the VG.
//!
//! Needs root (losetup) and lvm2 (`apt-get install lvm2`) and fdisk.

mod lvm_support;

use lifeboat_formats::lvm::label::{lvm_crc, INITIAL_CRC};
use lifeboat_formats::problem::{self, ProblemKind};
use lifeboat_formats::volumes::{discover_volumes, DiscoveryReport, VolumeKind};
use lifeboat_testsupport::{create_vg, lvm_conf, sfdisk, sparse_file, Loops, MIB};
use lifeboat_vdisk::testsuite::check_read_disk;
use lifeboat_vdisk::{FileDisk, ReadDisk};
use lvm_support::{require_root, sector_pattern};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Partition starts and length in sectors (two PVs of 20 MiB, one 4 MiB filesystem).
const PV_STARTS: [u64; 2] = [2048, 43008];
const PV_SECTORS: u64 = 40960;
/// `vgcreate -s 1M`, and LVM's default data alignment of 1 MiB.
const EXTENT: u64 = MIB;
const PE_START: u64 = MIB;
const PE_COUNT: u64 = 19;

const LVS: &str = r#"
	logical_volumes {
		data {
			id = "dataaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 2
			segment1 {
				start_extent = 0
				extent_count = 4
				type = "striped"
				stripe_count = 1
				stripes = [
					"pv0", 0
				]
			}
			segment2 {
				start_extent = 4
				extent_count = 2
				type = "striped"
				stripe_count = 1
				stripes = [
					"pv1", 10
				]
			}
		}
		fast {
			id = "fastaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 8
				type = "striped"
				stripe_count = 2
				stripe_size = 128
				stripes = [
					"pv0", 4,
					"pv1", 0
				]
			}
		}
		my-lv {
			id = "mylvaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 3
				type = "striped"
				stripe_count = 1
				stripes = [
					"pv0", 12
				]
			}
		}
	}
"#;

/// Builds the fixture image in `dir` with VG `vg`; returns its path.
fn build_image(dir: &Path, vg: &str) -> PathBuf {
    require_root();
    let img = dir.join("disk0.img");
    sparse_file(&img, 64 * MIB);
    let lvm_type = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
    let script = format!(
        "label: gpt\nstart={}, size={PV_SECTORS}, type={lvm_type}, name=\"pva\"\n\
         start={}, size={PV_SECTORS}, type={lvm_type}, name=\"pvb\"\n\
         start=86016, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
        PV_STARTS[0], PV_STARTS[1]
    );
    sfdisk(&img, &script);
    let mut loops = Loops::default();
    for start in PV_STARTS {
        loops.attach(&img, start * 512, Some(PV_SECTORS * 512));
    }
    let conf = lvm_conf(dir, &[&loops.0[0], &loops.0[1]]);
    let text = create_vg(&conf, vg, &[&loops.0[0], &loops.0[1]], LVS);
    for (key, want) in [
        ("pe_start", "2048"),
        ("pe_count", "19"),
        ("extent_size", "2048"),
    ] {
        assert!(
            text.contains(&format!("{key} = {want}")),
            "the fixture assumes {key} = {want}:\n{text}"
        );
    }
    drop(loops);
    fill_extents(&img);
    img
}

fn fill_extents(img: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    for (pv, start) in PV_STARTS.iter().enumerate() {
        for e in 0..PE_COUNT {
            let mut buf = Vec::with_capacity(EXTENT as usize);
            for s in 0..EXTENT / 512 {
                buf.extend_from_slice(&sector_pattern(pv as u64, e, s));
            }
            f.write_all_at(&buf, start * 512 + PE_START + e * EXTENT)
                .unwrap();
        }
    }
}

/// The bytes of `extents` (PV, first extent, count) one after another.
fn extents(list: &[(u64, u64, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(pv, first, count) in list {
        for e in first..first + count {
            for s in 0..EXTENT / 512 {
                out.extend_from_slice(&sector_pattern(pv, e, s));
            }
        }
    }
    out
}

fn discover(img: &Path) -> DiscoveryReport {
    let disk: Arc<dyn ReadDisk> = Arc::new(FileDisk::open(img).unwrap());
    discover_volumes("disk0", disk)
}

#[test]
fn linear_and_striped_lvs_read_as_mapped_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let img = build_image(dir.path(), "tvg");
    let report = discover(&img);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let names: Vec<_> = report.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "disk0p1",
            "disk0p2",
            "disk0p3",
            "tvg-data",
            "tvg-fast",
            "tvg-my--lv"
        ]
    );
    assert_eq!(report.volume("disk0p1").unwrap().type_hint, "lvm2-pv");
    assert_eq!(
        report.volume("disk0p3").unwrap().type_hint,
        "linux-filesystem"
    );

    let data = report.volume("tvg-data").unwrap();
    assert_eq!(data.kind, VolumeKind::Lvm);
    assert!(!data.contiguous);
    check_read_disk(data.disk.as_ref(), &extents(&[(0, 0, 4), (1, 10, 2)]));

    // Striped: 64 KiB chunks alternate between pv0 extents 4.. and pv1 extents 0..
    let fast = report.volume("tvg-fast").unwrap();
    let (a, b) = (extents(&[(0, 4, 4)]), extents(&[(1, 0, 4)]));
    let chunk = 64 << 10;
    let mut expected = Vec::new();
    for row in 0..a.len() / chunk {
        expected.extend_from_slice(&a[row * chunk..(row + 1) * chunk]);
        expected.extend_from_slice(&b[row * chunk..(row + 1) * chunk]);
    }
    check_read_disk(fast.disk.as_ref(), &expected);

    let my = report.volume("tvg-my--lv").unwrap();
    assert!(my.contiguous);
    assert_eq!(my.start, PV_STARTS[0] * 512 + PE_START + 12 * EXTENT);
    assert_eq!(my.length, 3 * EXTENT);
    check_read_disk(my.disk.as_ref(), &extents(&[(0, 12, 3)]));
}

/// The current metadata (absolute offset, size) of the PV at `pv_start`.
fn metadata_location(f: &std::fs::File, pv_start: u64) -> (u64, u64) {
    let mut h = [0u8; 512];
    f.read_exact_at(&mut h, pv_start + 4096).unwrap();
    assert_eq!(&h[4..20], b" LVM2 x[5A%r0N*>", "no metadata area at 4096");
    let off = u64::from_le_bytes(h[40..48].try_into().unwrap());
    let size = u64::from_le_bytes(h[48..56].try_into().unwrap());
    (pv_start + 4096 + off, size)
}

/// Replaces the current metadata of the PV at `pv_start` with `edit(text)`,
/// with valid checksums, so only the content is wrong.
fn rewrite_metadata(img: &Path, pv_start: u64, edit: &dyn Fn(&str) -> String) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let (at, size) = metadata_location(&f, pv_start);
    let mut text = vec![0u8; size as usize];
    f.read_exact_at(&mut text, at).unwrap();
    let new = edit(std::str::from_utf8(&text).unwrap()).into_bytes();
    f.write_all_at(&new, at).unwrap();
    let mut h = [0u8; 512];
    f.read_exact_at(&mut h, pv_start + 4096).unwrap();
    h[48..56].copy_from_slice(&(new.len() as u64).to_le_bytes());
    h[56..60].copy_from_slice(&lvm_crc(INITIAL_CRC, &new).to_le_bytes());
    let crc = lvm_crc(INITIAL_CRC, &h[4..]);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&h, pv_start + 4096).unwrap();
}

fn lv_names(report: &DiscoveryReport) -> Vec<&str> {
    report
        .volumes
        .iter()
        .filter(|v| v.kind == VolumeKind::Lvm)
        .map(|v| v.name.as_str())
        .collect()
}

#[test]
fn corrupt_metadata_is_reported_naming_the_vg() {
    let dir = tempfile::tempdir().unwrap();
    let img = build_image(dir.path(), "cvg");
    let pv0 = PV_STARTS[0] * 512;
    let pv1 = PV_STARTS[1] * 512;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();

    // A flipped byte in pv0's copy: reported, and pv1's copy still serves.
    let (at, _) = metadata_location(&f, pv0);
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at + 10).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], at + 10).unwrap();
    let report = discover(&img);
    let all = problem::join(&report.problems, "\n");
    assert!(
        all.contains("disk0p1") && all.contains("VG cvg: checksum mismatch"),
        "{all}"
    );
    assert_eq!(lv_names(&report), ["cvg-data", "cvg-fast", "cvg-my--lv"]);

    // Both copies damaged: no LV, two problems, nothing panics.
    let (at, _) = metadata_location(&f, pv1);
    f.write_all_at(b"#", at + 3).unwrap();
    let report = discover(&img);
    assert!(lv_names(&report).is_empty());
    assert_eq!(
        report
            .problems
            .iter()
            .filter(|p| p.message.contains("checksum mismatch") && p.kind == ProblemKind::Unserved)
            .count(),
        2,
        "{:?}",
        report.problems
    );
}

#[test]
fn bad_segments_are_refused_per_lv() {
    let dir = tempfile::tempdir().unwrap();
    let img = build_image(dir.path(), "svg");
    for pv in PV_STARTS {
        rewrite_metadata(&img, pv * 512, &|t| {
            // data: second segment far outside pv1; fast: an unsupported type.
            let fast = t.find("fast {").unwrap();
            let ty = fast + t[fast..].find("type = \"striped\"").unwrap();
            let t = format!("{}type = \"raid0\"{}", &t[..ty], &t[ty + 16..]);
            t.replacen("\"pv1\", 10", "\"pv1\", 500", 1)
                // Raise seqno so this copy wins.
                .replacen("seqno = ", "seqno = 9", 1)
        });
    }
    let report = discover(&img);
    let all = problem::join(&report.problems, "\n");
    assert!(
        all.contains("LVM VG svg LV data") && all.contains("lie outside PV pv1"),
        "{all}"
    );
    assert!(
        all.contains("LVM VG svg LV fast") && all.contains("not supported"),
        "{all}"
    );
    assert_eq!(lv_names(&report), ["svg-my--lv"]);
}

#[test]
fn pv_on_another_disk_and_syntax_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let img = build_image(dir.path(), "mvg");
    let id_line = |t: &str, pv: &str| {
        let at = t.find(&format!("{pv} {{")).unwrap();
        let id_at = at + t[at..].find("id = \"").unwrap() + 6;
        t[id_at..id_at + 38].to_string()
    };
    for pv in PV_STARTS {
        rewrite_metadata(&img, pv * 512, &|t| {
            let id = id_line(t, "pv1");
            t.replace(&id, "zzzzzz-zzzz-zzzz-zzzz-zzzz-zzzz-zzzzzz")
                .replacen("seqno = ", "seqno = 9", 1)
        });
    }
    let report = discover(&img);
    let all = problem::join(&report.problems, "\n");
    assert!(
        all.contains("LVM VG mvg LV data") && all.contains("not on this disk"),
        "{all}"
    );
    assert_eq!(lv_names(&report), ["mvg-my--lv"]);

    for pv in PV_STARTS {
        rewrite_metadata(&img, pv * 512, &|t| {
            t.replacen("extent_size = ", "extent_size = = ", 1)
        });
    }
    let report = discover(&img);
    let all = problem::join(&report.problems, "\n");
    assert!(
        all.contains("LVM VG mvg") && all.contains("syntax error at line"),
        "{all}"
    );
    assert!(lv_names(&report).is_empty());
}
