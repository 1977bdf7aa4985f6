//! A volume group whose PVs sit on two disks of one restore point, built
//! and laid out by the real LVM tools. There is no device-mapper here, so
//! the LVs are created with `lvcreate --driverloaded n -an -Zn`: lvm2's own
//! allocator places them and writes real metadata, nothing is activated.
//! The fixture: `disk0` has a GPT with one LVM partition (PV A), `disk1` is
//! a whole-disk PV (B, the usual "second data disk added to the VG"). LVs:
//! `home` (2 extents on A), `fast` (striped over A and B, 64 KiB chunks),
//! `span` (linear, fills the rest of A and continues on B), `solo` (on B).
//!
//! The oracle is what lvm2 reports: `pvs` gives each PV's UUID, pe_start
//! and size, `lvs --segments` each segment's PE ranges and stripe size.
//! Every PV extent is filled with a pattern naming (PV, extent, sector); an
//! LV read through `discover_volumes_multi` must equal the extents lvm2
//! says it maps, in its order. Then PVs go missing and the report must name
//! VG, LV and the missing PV UUID while the LVs on present PVs still read.
//!
//! Needs root (losetup), lvm2 (`apt-get install lvm2`) and fdisk.

mod lvm_support;

use lifeboat_formats::problem::{self, ProblemKind};
use lifeboat_formats::volumes::{discover_volumes, discover_volumes_multi, MultiDiscoveryReport};
use lifeboat_testsupport::{lvm, lvm_conf, sfdisk, sparse_file, Loops, MIB};
use lifeboat_vdisk::testsuite::check_read_disk;
use lifeboat_vdisk::{FileDisk, ReadDisk};
use lvm_support::{require_root, sector_pattern};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

const SECTOR: u64 = 512;
/// PV A: partition 1 of disk0 at 1 MiB, 24 MiB long.
const PART_START: u64 = MIB;
const PART_LEN: u64 = 24 * MIB;
/// disk1, all of it PV B.
const DISK1_LEN: u64 = 16 * MIB;

/// One PV as lvm2 reports it, and where it sits on which disk image.
#[derive(Debug, Clone)]
struct Pv {
    /// The loop device lvm2 saw it on.
    dev: String,
    /// As `pvs` prints it (with hyphens).
    uuid: String,
    image: PathBuf,
    /// Byte offset of the PV in its image.
    base: u64,
    pe_start: u64,
    pe_count: u64,
}

/// One LV segment as `lvs --segments` reports it.
#[derive(Debug)]
struct Seg {
    start_pe: u64,
    /// Stripe chunk in bytes (0 for linear).
    stripe_size: u64,
    /// (index into the PV list, first extent, extent count) per stripe.
    areas: Vec<(usize, u64, u64)>,
}

struct Fixture {
    _dir: tempfile::TempDir,
    disk0: PathBuf,
    disk1: PathBuf,
    extent: u64,
    pvs: Vec<Pv>,
    lvs: BTreeMap<String, Vec<Seg>>,
}

fn build(vg: &str) -> Fixture {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let disk0 = dir.path().join("disk0.img");
    let disk1 = dir.path().join("disk1.img");
    sparse_file(&disk0, PART_START + PART_LEN + MIB);
    sparse_file(&disk1, DISK1_LEN);
    let script = format!(
        "label: gpt\nstart={}, size={}, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n",
        PART_START / SECTOR,
        PART_LEN / SECTOR
    );
    sfdisk(&disk0, &script);
    let mut loops = Loops::default();
    let a = loops.attach(&disk0, PART_START, Some(PART_LEN));
    let b = loops.attach(&disk1, 0, None);

    let conf = lvm_conf(dir.path(), &[&a, &b]);
    let lvm = |tool: &str, args: &[&str]| lvm(&conf, tool, args);
    lvm("pvcreate", &["-ff", "-y", &a, &b]);
    lvm("vgcreate", &["-s", "1M", vg, &a, &b]);
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec!["--driverloaded", "n", "-an", "-Zn", "-y", "-n", name];
        args.extend_from_slice(extra);
        lvm("lvcreate", &args);
    };
    create("home", &["-L", "2M", vg, &a]);
    create("fast", &["-i", "2", "-I", "64k", "-L", "8M", vg, &a, &b]);
    create("span", &["-L", "24M", vg, &a, &b]);
    create("solo", &["-L", "2M", vg, &b]);

    let report = |tool: &str, fields: &str, targets: &[&str]| -> Vec<Vec<String>> {
        let mut args = vec![
            "--driverloaded",
            "n",
            "--noheadings",
            "--separator",
            "|",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            fields,
        ];
        args.extend_from_slice(targets);
        lvm(tool, &args)
            .lines()
            .map(|l| l.trim().split('|').map(|f| f.trim().to_string()).collect())
            .collect()
    };
    let mut pvs = Vec::new();
    for row in report(
        "pvs",
        "pv_name,pv_uuid,pe_start,pv_pe_count,vg_extent_size",
        &[&a, &b],
    ) {
        let (image, base) = if row[0] == a {
            (disk0.clone(), PART_START)
        } else {
            (disk1.clone(), 0)
        };
        pvs.push((
            row[4].parse::<u64>().unwrap(),
            Pv {
                dev: row[0].clone(),
                uuid: row[1].clone(),
                image,
                base,
                pe_start: row[2].parse().unwrap(),
                pe_count: row[3].parse().unwrap(),
            },
        ));
    }
    let extent = pvs[0].0;
    let mut pvs: Vec<Pv> = pvs.into_iter().map(|(_, p)| p).collect();
    pvs.sort_by_key(|p| p.dev != a);
    assert_eq!(pvs.len(), 2, "{pvs:?}");

    let mut lvs: BTreeMap<String, Vec<Seg>> = BTreeMap::new();
    for row in report(
        "lvs",
        "lv_name,seg_start_pe,seg_pe_ranges,stripe_size",
        &["--segments", vg],
    ) {
        let mut areas = Vec::new();
        for range in row[2].split_whitespace() {
            let (dev, pes) = range.rsplit_once(':').unwrap();
            let (first, last) = pes.split_once('-').unwrap();
            let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
            let pv = pvs.iter().position(|p| p.dev == dev).unwrap();
            areas.push((pv, first, last - first + 1));
        }
        lvs.entry(row[0].clone()).or_default().push(Seg {
            start_pe: row[1].parse().unwrap(),
            stripe_size: row[3].parse().unwrap(),
            areas,
        });
    }
    for segs in lvs.values_mut() {
        segs.sort_by_key(|s| s.start_pe);
    }
    drop(loops);
    let f = Fixture {
        _dir: dir,
        disk0,
        disk1,
        extent,
        pvs,
        lvs,
    };
    f.fill();
    f
}

impl Fixture {
    fn open(&self, which: usize) -> Arc<dyn ReadDisk> {
        let path = if which == 0 { &self.disk0 } else { &self.disk1 };
        Arc::new(FileDisk::open(path).unwrap())
    }

    /// Writes every extent of every PV with its pattern, at the offsets lvm2 reports.
    fn fill(&self) {
        for (i, pv) in self.pvs.iter().enumerate() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&pv.image)
                .unwrap();
            for e in 0..pv.pe_count {
                let buf = self.extents(&[(i, e, 1)]);
                f.write_all_at(&buf, pv.base + pv.pe_start + e * self.extent)
                    .unwrap();
            }
        }
    }

    /// The bytes of `list` (PV, first extent, count) one after another.
    fn extents(&self, list: &[(usize, u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(pv, first, count) in list {
            for e in first..first + count {
                for s in 0..self.extent / SECTOR {
                    out.extend_from_slice(&sector_pattern(pv as u64, e, s));
                }
            }
        }
        out
    }

    /// The bytes of LV `name` as lvm2's segment report maps them.
    fn expected(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for seg in &self.lvs[name] {
            if seg.areas.len() == 1 {
                out.extend(self.extents(&seg.areas));
                continue;
            }
            let stripes: Vec<Vec<u8>> = seg.areas.iter().map(|a| self.extents(&[*a])).collect();
            let chunk = seg.stripe_size as usize;
            for row in 0..stripes[0].len() / chunk {
                for s in &stripes {
                    out.extend_from_slice(&s[row * chunk..(row + 1) * chunk]);
                }
            }
        }
        out
    }

    /// PV indexes used by LV `name`, in order, without repeats.
    fn pvs_of(&self, name: &str) -> Vec<usize> {
        let mut out = Vec::new();
        for (pv, _, _) in self.lvs[name].iter().flat_map(|s| &s.areas) {
            if !out.contains(pv) {
                out.push(*pv);
            }
        }
        out
    }
}

fn lv_names(report: &MultiDiscoveryReport) -> Vec<&str> {
    let mut names: Vec<&str> = report
        .volumes
        .iter()
        .filter(|v| v.type_hint == "lvm2-lv")
        .map(|v| v.name.as_str())
        .collect();
    names.sort();
    names
}

#[test]
fn a_vg_spanning_two_disks_reads_as_lvm2_mapped_it() {
    let f = build("mdvg");
    // The fixture must really span: span and fast use both PVs.
    assert_eq!(f.pvs_of("span"), [0, 1], "{:?}", f.lvs);
    assert_eq!(f.pvs_of("fast"), [0, 1], "{:?}", f.lvs);
    assert_eq!(f.lvs["fast"][0].stripe_size, 64 << 10);
    assert_eq!((f.pvs_of("home"), f.pvs_of("solo")), (vec![0], vec![1]));

    let report = discover_volumes_multi(&[("disk0", f.open(0)), ("disk1", f.open(1))]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let names: Vec<_> = report.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(&names[..2], ["disk0p1", "disk1"]);
    assert_eq!(
        lv_names(&report),
        ["mdvg-fast", "mdvg-home", "mdvg-solo", "mdvg-span"]
    );
    for v in &report.volumes[..2] {
        assert_eq!(v.type_hint, "lvm2-pv", "{v:?}");
    }
    let both = ["disk0", "disk1"];
    for (lv, disks, contiguous) in [
        ("span", &both[..], false),
        ("fast", &both[..], false),
        ("home", &both[..1], true),
        ("solo", &both[1..], true),
    ] {
        let v = report.volume(&format!("mdvg-{lv}")).unwrap();
        assert_eq!(v.disks, disks, "{v:?}");
        assert_eq!(v.contiguous, contiguous, "{v:?}");
        check_read_disk(v.disk.as_ref(), &f.expected(lv));
    }
    // Contiguous LVs say where they start on their own disk.
    for (lv, pv) in [("home", 0), ("solo", 1)] {
        let v = report.volume(&format!("mdvg-{lv}")).unwrap();
        let (_, first, _) = f.lvs[lv][0].areas[0];
        let p = &f.pvs[pv];
        assert_eq!(v.start, p.base + p.pe_start + first * f.extent, "{v:?}");
    }

    // The disks in the other order: the same LVs, byte for byte.
    let swapped = discover_volumes_multi(&[("disk1", f.open(1)), ("disk0", f.open(0))]);
    assert!(swapped.problems.is_empty(), "{:?}", swapped.problems);
    for lv in ["span", "fast"] {
        let v = swapped.volume(&format!("mdvg-{lv}")).unwrap();
        check_read_disk(v.disk.as_ref(), &f.expected(lv));
    }

    // A cloned disk (the same PV twice) is reported; the first copy serves.
    let cloned = discover_volumes_multi(&[
        ("disk0", f.open(0)),
        ("disk1", f.open(1)),
        ("disk2", f.open(1)),
    ]);
    let all = problem::join(&cloned.problems, "\n");
    assert!(
        all.contains(&f.pvs[1].uuid) && all.contains("both disk1 and disk2"),
        "{all}"
    );
    assert!(
        cloned
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Unserved),
        "{:?}",
        cloned.problems
    );
    let span = cloned.volume("mdvg-span").unwrap();
    assert_eq!(span.disks, both);
    check_read_disk(span.disk.as_ref(), &f.expected("span"));
}

#[test]
fn a_missing_pv_is_named_and_the_lvs_on_present_pvs_still_read() {
    let f = build("mpvg");
    // Only disk0: home is served; span, fast and solo need PV B.
    for report in [discover_volumes_multi(&[("disk0", f.open(0))]), {
        let r = discover_volumes("disk0", f.open(0));
        MultiDiscoveryReport {
            schemes: Vec::new(),
            volumes: r.volumes,
            problems: r.problems,
        }
    }] {
        assert_eq!(lv_names(&report), ["mpvg-home"]);
        check_read_disk(
            report.volume("mpvg-home").unwrap().disk.as_ref(),
            &f.expected("home"),
        );
        let all = problem::join(&report.problems, "\n");
        for lv in ["span", "fast", "solo"] {
            let line = report
                .problems
                .iter()
                .find(|p| p.message.starts_with(&format!("LVM VG mpvg LV {lv}:")))
                .unwrap_or_else(|| panic!("no problem for {lv}: {all}"));
            assert!(
                line.message.contains(&f.pvs[1].uuid) && line.message.contains("missing"),
                "{line}"
            );
            assert_eq!(line.kind, ProblemKind::Unserved, "{line}");
        }
        assert!(
            all.contains(&format!(
                "LVM VG mpvg: PV pv1 (UUID {}) is missing",
                f.pvs[1].uuid
            )),
            "{all}"
        );
    }

    // Only disk1 (PV B, no partition table): solo is served.
    let report = discover_volumes_multi(&[("disk1", f.open(1))]);
    assert_eq!(lv_names(&report), ["mpvg-solo"]);
    let solo = report.volume("mpvg-solo").unwrap();
    assert_eq!(solo.disks, ["disk1"]);
    check_read_disk(solo.disk.as_ref(), &f.expected("solo"));
    let all = problem::join(&report.problems, "\n");
    assert!(
        all.contains("LVM VG mpvg LV span")
            && all.contains(&f.pvs[0].uuid)
            && all.contains("not on this disk"),
        "{all}"
    );

    // Two disks given, but the second is not PV B: the message lists them.
    let blank: Arc<dyn ReadDisk> =
        Arc::new(lifeboat_vdisk::MemDisk::new("blank", vec![0; 1 << 20]));
    let report = discover_volumes_multi(&[("disk0", f.open(0)), ("disk9", blank)]);
    assert_eq!(lv_names(&report), ["mpvg-home"]);
    let all = problem::join(&report.problems, "\n");
    assert!(
        all.contains("not on any disk of the restore point (disk0, disk9)"),
        "{all}"
    );
}
