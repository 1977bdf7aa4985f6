//! End-to-end tests against the real NBD clients: nbdinfo and nbdcopy
//! (libnbd-bin), qemu-img and qemu-io (qemu-utils).

mod common;

use common::*;
use lifeboat_testsupport::{output, require_tool, run_stdout, tool};
use std::process::Command;

fn nbdinfo() -> Command {
    tool("nbdinfo", "libnbd-bin")
}

fn qemu_img() -> Command {
    tool("qemu-img", "qemu-utils")
}

#[test]
fn nbdinfo_shows_size_name_and_description() {
    let f = Fixture::new();
    let out = run_stdout(nbdinfo().arg("--json").arg(f.url("sparse")));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let e = &v["exports"][0];
    assert_eq!(e["export-name"], "sparse", "{out}");
    assert_eq!(e["export-size"], SIZE as u64, "{out}");
    assert_eq!(e["description"], "sparse test pattern", "{out}");
    assert_eq!(e["is_read_only"], true, "{out}");
    assert_eq!(e["can_zero"], false, "{out}");
    assert_eq!(v["structured"], true, "{out}");
    assert_eq!(v["protocol"], "newstyle-fixed", "{out}");
    assert_eq!(e["block_size_maximum"], 32 << 20, "{out}");
    let contexts = e["contexts"].as_array().expect("contexts listed");
    assert!(contexts.iter().any(|c| c == "base:allocation"), "{out}");

    let rw = run_stdout(nbdinfo().arg("--json").arg(f.url("rw")));
    let v: serde_json::Value = serde_json::from_str(&rw).unwrap();
    assert_eq!(v["exports"][0]["is_read_only"], false, "{rw}");
    assert_eq!(v["exports"][0]["can_zero"], true, "{rw}");

    let list = run_stdout(nbdinfo().arg("--list").arg(f.url("")));
    for name in ["sparse", "mem", "rw", "broken"] {
        assert!(
            list.contains(&format!("export=\"{name}\"")),
            "{name} not listed:\n{list}"
        );
    }
}

#[test]
fn nbdinfo_map_reports_holes_where_the_pattern_is_zero() {
    let f = Fixture::new();
    let out = run_stdout(nbdinfo().args(["--map", "--json"]).arg(f.url("sparse")));
    let map: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    // Every 64 KiB block whose index is a multiple of 3 is a hole+zero (3),
    // the others data (0).
    let mut pos = 0u64;
    for m in &map {
        let (off, len, ty) = (
            m["offset"].as_u64().unwrap(),
            m["length"].as_u64().unwrap(),
            m["type"].as_u64().unwrap(),
        );
        assert_eq!(off, pos, "map has a gap: {out}");
        let mut b = off;
        while b < off + len {
            let zero = (b as usize / BLOCK).is_multiple_of(3);
            assert_eq!(ty, if zero { 3 } else { 0 }, "block at {b}: {m}");
            b += BLOCK as u64;
        }
        pos = off + len;
    }
    assert_eq!(pos, SIZE as u64);
    assert!(map.len() > 10, "holes were not reported: {out}");

    // A MemDisk knows no holes: everything is data.
    let out = run_stdout(nbdinfo().args(["--map", "--json"]).arg(f.url("mem")));
    let map: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(map.len(), 1, "{out}");
    assert_eq!(map[0]["type"], 0, "{out}");
}

#[test]
fn qemu_img_info_and_map_see_the_export() {
    let f = Fixture::new();
    let out = run_stdout(
        qemu_img()
            .args(["info", "--output=json"])
            .arg(f.url("sparse")),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["virtual-size"], SIZE as u64, "{out}");

    let out = run_stdout(
        qemu_img()
            .args(["map", "--output=json", "-f", "raw"])
            .arg(f.url("sparse")),
    );
    let map: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let first = &map[0];
    assert_eq!(
        (first["start"].as_u64(), first["length"].as_u64()),
        (Some(0), Some(BLOCK as u64)),
        "{out}"
    );
    assert_eq!(first["zero"], true, "{out}");
    assert_eq!(first["data"], false, "{out}");
    let second = &map[1];
    assert_eq!(second["data"], true, "{out}");
    assert_eq!(second["length"].as_u64(), Some(2 * BLOCK as u64), "{out}");
}

#[test]
fn qemu_img_convert_and_nbdcopy_copy_bit_exact() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    for export in ["sparse", "mem"] {
        let out = dir.path().join(format!("{export}.raw"));
        run_stdout(
            qemu_img()
                .args(["convert", "-f", "raw", "-O", "raw"])
                .arg(f.url(export))
                .arg(&out),
        );
        assert!(
            std::fs::read(&out).unwrap() == f.bytes,
            "qemu-img convert of {export} differs"
        );
    }
    let out = dir.path().join("nbdcopy.raw");
    run_stdout(tool("nbdcopy", "libnbd-bin").arg(f.url("sparse")).arg(&out));
    assert!(
        std::fs::read(&out).unwrap() == f.bytes,
        "nbdcopy output differs"
    );
}

#[test]
fn qemu_io_writes_land_on_a_writable_export_and_not_on_a_read_only_one() {
    let f = Fixture::new();
    let qemu_io = require_tool("qemu-io", "qemu-utils");
    run_stdout(
        Command::new(&qemu_io)
            .args(["-f", "raw"])
            .arg(f.url("rw"))
            .args([
                "-c",
                "write -P 0x55 0 64k",
                "-c",
                "write -z 128k 64k",
                "-c",
                "flush",
            ]),
    );
    let now = f.rw.to_vec();
    assert!(
        now[..64 << 10].iter().all(|&b| b == 0x55),
        "write did not land"
    );
    assert!(
        now[128 << 10..192 << 10].iter().all(|&b| b == 0),
        "write zeroes did not land"
    );
    assert!(
        now[64 << 10..128 << 10] == f.bytes[64 << 10..128 << 10],
        "bytes between changed"
    );
    assert!(
        now[192 << 10..] == f.bytes[192 << 10..],
        "bytes after changed"
    );

    // Read back through NBD too.
    let out = run_stdout(
        Command::new(&qemu_io)
            .args(["-f", "raw"])
            .arg(f.url("rw"))
            .args(["-c", "read -P 0x55 0 64k"]),
    );
    assert!(!out.contains("Pattern verification failed"), "{out}");

    // A read-only export: qemu sees NBD_FLAG_READ_ONLY and refuses to open
    // it writable ("Permission denied"); the raw EPERM replies are checked
    // in tests/bad_input.rs.
    let out = output(
        Command::new(&qemu_io)
            .args(["-f", "raw"])
            .arg(f.url("mem"))
            .args(["-c", "write -P 0x55 0 64k"]),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "write to a read-only export succeeded: {text}"
    );
    assert!(
        text.contains("Permission denied") || text.contains("read-only"),
        "unexpected refusal: {text}"
    );
    assert!(!text.contains("wrote 65536"), "write accepted: {text}");
}

#[test]
fn a_failing_disk_fails_the_copy_instead_of_copying_wrong_bytes() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("broken.raw");
    let r = output(
        qemu_img()
            .args(["convert", "-f", "raw", "-O", "raw"])
            .arg(f.url("broken"))
            .arg(&out),
    );
    assert!(
        !r.status.success(),
        "qemu-img convert of a failing disk succeeded"
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("Input/output error"), "{err}");
}
