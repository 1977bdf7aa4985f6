//! The README's first command: `lifeboat demo` runs the whole tour: backup
//! and restore proven bit-exact, files browsed and copied out, an Instant
//! Recovery session whose write lands in its overlay, and a YARA scan that
//! finds the file planted between the two backups. The demo runs once (the
//! real binary); each test checks one capability in its output.

mod common;
use common::*;
use std::sync::OnceLock;

/// The demo's output; the demo directory is checked for leftovers and removed.
fn demo() -> &'static str {
    static OUT: OnceLock<String> = OnceLock::new();
    OUT.get_or_init(|| {
        require_tool("mkfs.ext4", "e2fsprogs");
        require_tool("debugfs", "e2fsprogs");
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("demo");
        let out = ok(&["demo", "--dir", s(&work), "--disk-mib", "64"]);
        let sessions = std::fs::read_dir(work.join("ir").join("sessions"))
            .unwrap()
            .count();
        assert_eq!(sessions, 0, "the IR session folder was left behind\n{out}");
        out
    })
}

#[test]
fn demo_tour_runs_and_every_restore_is_bit_exact() {
    let out = demo();
    let proven = out
        .lines()
        .filter(|l| l.contains("BLAKE3") && l.ends_with(" bit-exact"));
    assert_eq!(proven.count(), 3, "{out}");
    assert!(out.contains("no damage"), "{out}");
    assert!(out.contains("demo finished"), "{out}");
    // The second backup stored only what changed; the qcow2 copy stored nothing.
    assert!(out.contains(", 0 new, 0 B stored new"), "{out}");
}

#[test]
fn demo_browses_files_and_copies_one_out_exactly() {
    let out = demo();
    assert!(out.contains("[10] browse files of web01@latest"), "{out}");
    assert!(out.contains("disk0 disk0p1: 63.0 MiB ext4"), "{out}");
    assert!(out.contains("files ls web01@latest /home/demo:"), "{out}");
    for name in [".profile", "invoice.txt", "report.txt"] {
        let listed = out
            .lines()
            .any(|l| l.starts_with("      - ") && l.ends_with(&format!("  {name}")));
        assert!(listed, "{name} not listed\n{out}");
    }
    let got = out
        .lines()
        .find(|l| l.contains("files get web01@latest /home/demo/report.txt -> "))
        .unwrap_or_else(|| panic!("no files get line\n{out}"));
    assert!(
        got.ends_with("identical to the file put in the image"),
        "{got}"
    );
}

#[test]
fn demo_instant_recovery_writes_to_the_overlay_only() {
    let out = demo();
    assert!(out.contains("[11] Instant VM Recovery"), "{out}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{out}"))
            .trim_start()
            .to_string()
    };
    let session = line("session web01-");
    let id = session.split_whitespace().nth(1).unwrap();
    assert!(session.contains("(nothing copied)"), "{session}");
    assert_eq!(
        line("NFS export"),
        format!("NFS export     127.0.0.1:/lifeboat/{id}")
    );
    assert_eq!(
        line("QEMU"),
        format!(
            "QEMU           qemu-system-x86_64 -m 2048 -drive \
             file=nfs://127.0.0.1/lifeboat/{id}/web01-disk0-flat.vmdk,format=raw,if=virtio"
        )
    );
    assert!(
        line("NBD client wrote 64.0 KiB").ends_with("the write merged with the backup"),
        "{out}"
    );
    assert!(
        line("the write landed in the overlay: 64.0 KiB in ")
            .ends_with(&format!("/ir/sessions/{id}/disk0.overlay")),
        "{out}"
    );
    assert!(
        line("restore point untouched: 16 chunk digests identical")
            .ends_with("base bytes at the write unchanged"),
        "{out}"
    );
    assert_eq!(
        line(&format!("session {id} stopped")),
        format!("session {id} stopped, overlay deleted, service shut down")
    );
}

#[test]
fn demo_scan_finds_the_planted_file_in_the_second_backup_only() {
    let out = demo();
    assert!(out.contains("[12] scan both backups of web01"), "{out}");
    let verdicts: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("    web01@") && l.contains(" files ("))
        .collect();
    assert_eq!(verdicts.len(), 2, "{out}");
    // YARA alone finds nothing but proves nothing clean (no ClamAV database).
    assert!(
        verdicts[0].contains(": nothing found (YARA only: unproven), "),
        "{}",
        verdicts[0]
    );
    assert!(verdicts[1].contains(": INFECTED, "), "{}", verdicts[1]);
    // The second scan reads only the files that changed.
    assert!(verdicts[1].contains(" unchanged files skipped"), "{out}");
    assert!(!verdicts[1].contains(" 0 unchanged files skipped"), "{out}");
    let detections: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("detection: "))
        .collect();
    assert_eq!(
        detections,
        ["      detection: disk0 disk0p1:/home/demo/invoice.txt matches Demo_Planted_Dropper"],
        "{out}"
    );
}

#[test]
fn demo_runs_a_job_through_the_server_on_an_enrolled_proxy() {
    let out = demo();
    assert!(out.contains("[13] the backup server"), "{out}");
    assert!(
        out.contains("proxy demo-proxy enrolled with a one-time secret"),
        "{out}"
    );
    let session = out
        .lines()
        .find(|l| l.starts_with("    session ") && l.contains(" succeeded on "))
        .unwrap_or_else(|| panic!("no succeeded session: {out}"));
    assert!(session.contains(" succeeded on demo-proxy "), "{session}");
    assert!(session.contains("stored 0 B new"), "{session}");
    assert!(
        session.contains("(0 new chunks: the disk did not change)"),
        "{session}"
    );
    assert!(
        out.contains("started (manual, attempt 1) on proxy demo-proxy"),
        "{out}"
    );
}
