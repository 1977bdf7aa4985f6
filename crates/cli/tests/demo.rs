//! The README's first command: `lifeboat demo` runs the whole tour and
//! proves every restore bit-exact.

mod common;
use common::*;

#[test]
fn demo_tour_runs_and_every_restore_is_bit_exact() {
    require_tool("mkfs.ext4", "e2fsprogs");
    require_tool("debugfs", "e2fsprogs");
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let out = ok(&["demo", "--dir", s(&work), "--disk-mib", "64"]);
    let proven = out
        .lines()
        .filter(|l| l.contains("BLAKE3") && l.ends_with(" bit-exact"));
    assert_eq!(proven.count(), 3, "{out}");
    assert!(out.contains("no damage"), "{out}");
    assert!(out.contains("demo finished"), "{out}");
    // The second backup stored only what changed; the qcow2 copy stored nothing.
    assert!(out.contains(", 0 new, 0 B stored new"), "{out}");
}
