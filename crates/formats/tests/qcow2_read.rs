//! The qcow2 reader against images made by QEMU's own tools (the oracle):
//! every variant qemu-img writes must read back byte for byte and pass the
//! trait suite; backing chains must read like `qemu-img convert -O raw`.

mod qcow2_support;

use lifeboat_formats::open_image;
use lifeboat_formats::qcow2::Qcow2Disk;
use lifeboat_testsupport::{qemu_img, qemu_img_from_raw, qemu_io};
use lifeboat_vdisk::testsuite::check_read_disk;
use lifeboat_vdisk::{ExtentKind, ReadDisk};
use qcow2_support::{
    open_in_own_dir, own_dir, path_str, qcow2_overlay, source_pattern, write_file,
};
use std::path::Path;

fn convert_and_check(dir: &Path, raw: &str, expected: &[u8], name: &str, opts: &[&str]) {
    let out = path_str(&dir.join(format!("{name}.qcow2")));
    qemu_img_from_raw(Path::new(raw), Path::new(&out), "qcow2", opts);
    if opts.contains(&"-c") {
        check_compressed_in_map(name, &out);
    }
    let disk = open_image(Path::new(&out)).unwrap_or_else(|e| panic!("{name}: open: {e}"));
    assert_eq!(disk.describe(), format!("qcow2 {out}"));
    assert_eq!(disk.depth(), 1);
    check_read_disk(disk.as_ref(), expected);
    let extents = disk.extents(0, disk.size()).unwrap();
    // With 2 MiB clusters no zero block of the pattern spans a whole cluster.
    let big_clusters = name.contains("2m");
    assert!(
        big_clusters || extents.iter().any(|e| e.kind == ExtentKind::Zero),
        "{name}: the zero blocks of the pattern should be reported as zero: {extents:?}"
    );
    // The direct constructor reads the same bytes.
    let direct = Qcow2Disk::open(Path::new(&out)).unwrap();
    check_read_disk(&direct, expected);
}

/// The qemu-img release whose `map --output=json` first reports a
/// "compressed" field per extent (QEMU 8.2, "qemu-img: map: report
/// compressed data blocks"); Debian 12's 7.2 has no such field.
const MAP_COMPRESSED_SINCE: (u32, u32) = (8, 2);

/// qemu-img's (major, minor) version, from `qemu-img --version`.
fn qemu_img_version() -> (u32, u32) {
    let out = qemu_img(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_else(|| panic!("no version in `qemu-img --version`: {text}"));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Asserts that qemu-img stored compressed clusters in `image` (so the
/// reader's inflate path is exercised), where qemu-img can say so.
fn check_compressed_in_map(name: &str, image: &str) {
    let map = qemu_img(&["map", "--output=json", image]);
    let map = String::from_utf8_lossy(&map.stdout);
    let version = qemu_img_version();
    if !map.contains("\"compressed\"") && version < MAP_COMPRESSED_SINCE {
        eprintln!(
            "{name}: not checking that qemu-img wrote compressed clusters: qemu-img {}.{} \
             has no \"compressed\" field in `map --output=json` (it came with {}.{})",
            version.0, version.1, MAP_COMPRESSED_SINCE.0, MAP_COMPRESSED_SINCE.1
        );
        return;
    }
    assert!(
        map.contains("\"compressed\": true"),
        "{name}: no compressed cluster (qemu-img {}.{}): {map}",
        version.0,
        version.1
    );
}

#[test]
fn qcow2_variants_written_by_qemu_img_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let expected = source_pattern();
    let raw = write_file(dir.path(), "src.raw", &expected);
    let variants: [(&str, &[&str]); 8] = [
        ("plain", &[]),
        ("deflate", &["-c"]),
        ("zstd", &["-c", "-o", "compression_type=zstd"]),
        ("v2", &["-o", "compat=0.10"]),
        ("v2-deflate", &["-c", "-o", "compat=0.10"]),
        ("clusters-512", &["-o", "cluster_size=512"]),
        (
            "clusters-2m-zstd",
            &["-c", "-o", "cluster_size=2M,compression_type=zstd"],
        ),
        ("clusters-4k-deflate", &["-c", "-o", "cluster_size=4096"]),
    ];
    for (name, opts) in variants {
        convert_and_check(dir.path(), &raw, &expected, name, opts);
    }
}

#[test]
fn qcow2_v2_and_v3_report_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = path_str(&dir.path().join("v2.qcow2"));
    let v3 = path_str(&dir.path().join("v3.qcow2"));
    qemu_img(&["create", "-f", "qcow2", "-o", "compat=0.10", &v2, "1M"]);
    qemu_img(&["create", "-f", "qcow2", &v3, "1M"]);
    assert_eq!(Qcow2Disk::open(Path::new(&v2)).unwrap().version(), 2);
    let disk = Qcow2Disk::open(Path::new(&v3)).unwrap();
    assert_eq!(disk.version(), 3);
    assert_eq!(disk.cluster_size(), 65536);
    check_read_disk(&disk, &vec![0u8; 1 << 20]);
}

#[test]
fn qcow2_backing_chain_reads_like_qemu_img_convert() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = write_file(d, "src.raw", &source_pattern());
    let base = path_str(&d.join("base.qcow2"));
    let top = path_str(&d.join("top.qcow2"));
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", &raw, &base]);
    // A relative backing name: resolved against the overlay's directory.
    qcow2_overlay(&top, "base.qcow2", "qcow2", &[]);
    for cmd in [
        "write -P 0x77 1M 64k",
        "write -z 2M 128k",
        "write -P 0x55 3000 1000",
        "write -P 0x66 4194000 70000",
    ] {
        qemu_io(&["-f", "qcow2", "-c", cmd, &top]);
    }
    let flat = path_str(&d.join("top.raw"));
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", &top, &flat]);
    let expected = std::fs::read(&flat).unwrap();

    let disk = open_in_own_dir(&top).unwrap();
    assert_eq!(disk.depth(), 2);
    check_read_disk(disk.as_ref(), &expected);
    // The zero write over backing data is a zero extent of the overlay.
    let extents = disk.extents(2 << 20, 128 << 10).unwrap();
    assert!(
        extents.iter().all(|e| e.kind == ExtentKind::Zero),
        "{extents:?}"
    );
}

#[test]
fn qcow2_backing_file_smaller_than_the_image_reads_zeros_past_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small: Vec<u8> = lifeboat_vdisk::testsuite::pattern_with_holes((1 << 20) + 512, 65536);
    write_file(d, "small.raw", &small);
    let top = path_str(&d.join("big.qcow2"));
    qcow2_overlay(&top, "small.raw", "raw", &["3M"]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x11 2M 4k", &top]);
    let flat = path_str(&d.join("big.raw"));
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", &top, &flat]);
    let expected = std::fs::read(&flat).unwrap();
    let disk = open_in_own_dir(&top).unwrap();
    check_read_disk(disk.as_ref(), &expected);
    let past = disk.extents((1 << 20) + 512, 512 << 10).unwrap();
    assert!(past.iter().all(|e| e.kind == ExtentKind::Zero), "{past:?}");
}

#[test]
fn qcow2_backing_loops_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = path_str(&d.join("a.qcow2"));
    let b = path_str(&d.join("b.qcow2"));
    let c = path_str(&d.join("c.qcow2"));
    for img in [&a, &b, &c] {
        qemu_img(&["create", "-f", "qcow2", img, "1M"]);
    }
    qemu_img(&[
        "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", &a,
    ]);
    qemu_img(&[
        "rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", &b,
    ]);
    qemu_img(&[
        "rebase", "-u", "-f", "qcow2", "-b", "c.qcow2", "-F", "qcow2", &c,
    ]);
    for img in [&a, &b, &c] {
        let err = open_in_own_dir(img)
            .err()
            .expect("a looping chain must not open");
        assert!(err.to_string().contains("loop"), "{img}: {err}");
        let err = Qcow2Disk::open_with(Path::new(img), &own_dir(img))
            .err()
            .expect("a looping chain must not open");
        assert!(err.to_string().contains("loop"), "{img}: {err}");
    }
}

/// The backing format the header records is the format read, whatever the
/// backing file's content looks like (as QEMU does): a backing file
/// declared raw that holds a qcow2 header is read as those raw bytes, and
/// the header's own backing file is never looked at.
#[test]
fn qcow2_declared_backing_format_wins_over_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = path_str(&d.join("base.qcow2"));
    let top = path_str(&d.join("top.qcow2"));
    let host_file = write_file(d, "host-file", b"not to be read");
    qemu_img(&[
        "create", "-f", "qcow2", "-b", &host_file, "-F", "raw", &base, "1M",
    ]);
    qcow2_overlay(&top, "base.qcow2", "raw", &["1M"]);
    let disk = open_in_own_dir(&top).unwrap();
    assert_eq!(disk.depth(), 2);
    let base_bytes = std::fs::read(&base).unwrap();
    let mut got = vec![0u8; base_bytes.len()];
    disk.read_at(&mut got, 0).unwrap();
    assert!(got == base_bytes, "the backing file is read as raw bytes");
}

/// Without a recorded backing format the content is not trusted to name
/// one: a backing file that looks raw is read as raw, one that looks like
/// another format is refused with the command that records its format.
#[test]
fn qcow2_backing_without_recorded_format_is_raw_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = path_str(&d.join("base.qcow2"));
    let raw = write_file(d, "base.raw", &source_pattern());
    let top = path_str(&d.join("top.qcow2"));
    qemu_img(&["create", "-f", "qcow2", &base, "6M"]);
    for (backing, ok) in [(&raw, true), (&base, false)] {
        qemu_img(&[
            "create", "-f", "qcow2", "-b", backing, "-F", "raw", &top, "6M",
        ]);
        // Drop the backing format extension: `rebase -u` with no -F keeps
        // none (what images made before QEMU 6.1 without -F look like).
        strip_backing_format(&top);
        let opened = open_in_own_dir(&top);
        if ok {
            let disk = opened.unwrap();
            let mut got = vec![0u8; 4096];
            disk.read_at(&mut got, 0).unwrap();
            assert!(got == source_pattern()[..4096]);
        } else {
            let err = opened
                .err()
                .expect("a qcow2-looking backing file without -F");
            let text = err.to_string();
            assert!(
                text.contains("no recorded format") && text.contains("-F qcow2"),
                "{text}"
            );
        }
    }
}

/// Removes the backing format header extension of the qcow2 image at
/// `path` by turning it into an unknown extension type, which readers skip
/// (type 0xe2792aca → 0x00000001; header extensions in QEMU's
/// docs/interop/qcow2.txt).
fn strip_backing_format(path: &str) {
    let mut b = std::fs::read(path).unwrap();
    let at = b
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .expect("backing format extension");
    b[at..at + 4].copy_from_slice(&[0, 0, 0, 1]);
    std::fs::write(path, b).unwrap();
}

#[test]
fn qcow2_reads_from_many_threads_agree() {
    let dir = tempfile::tempdir().unwrap();
    let expected = source_pattern();
    let raw = write_file(dir.path(), "src.raw", &expected);
    let img = path_str(&dir.path().join("c.qcow2"));
    qemu_img_from_raw(
        Path::new(&raw),
        Path::new(&img),
        "qcow2",
        &["-c", "-o", "cluster_size=4096"],
    );
    let disk = open_image(Path::new(&img)).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (disk, expected) = (&disk, &expected);
            s.spawn(move || {
                let mut x = t * 7919 + 1;
                for _ in 0..300 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let off = (x >> 20) % expected.len() as u64;
                    let len = ((x >> 8) % 70_000).min(expected.len() as u64 - off) as usize;
                    let mut buf = vec![0u8; len];
                    disk.read_at(&mut buf, off).unwrap();
                    assert!(
                        buf == expected[off as usize..off as usize + len],
                        "thread {t}: {len} bytes at {off}"
                    );
                }
            });
        }
    });
}

#[test]
fn qcow2_missing_backing_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = path_str(&dir.path().join("gone.qcow2"));
    let top = path_str(&dir.path().join("top.qcow2"));
    qemu_img(&["create", "-f", "qcow2", &base, "1M"]);
    qcow2_overlay(&top, "gone.qcow2", "qcow2", &[]);
    std::fs::remove_file(&base).unwrap();
    let err = open_in_own_dir(&top)
        .err()
        .expect("a missing backing file must fail");
    assert!(err.to_string().contains("gone.qcow2"), "{err}");
}
