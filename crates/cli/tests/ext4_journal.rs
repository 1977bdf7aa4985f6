//! One ext4 reader, journal included, through the real binary (as root):
//! a GPT disk whose ext4 partition holds a file that exists only in the
//! journal (the kernel committed it but had not written it in place when
//! the image was copied, see `lifeboat_testsupport::journal`), backed up.
//! The file browser (`files ls`/`files get`), the scan (ClamAV with a
//! generated database, and a YARA rule, over the published restore point)
//! and `publish` (the mounted tree) must all show the file and its marker,
//! and the restore point must scan as infected, never clean.

mod common;
#[path = "../../browse/tests/fixture/mod.rs"]
mod fixture;

use common::{backup, init_repo, ok, run, s};
use fixture::{gpt_disk, require_tool};
use lifeboat_testsupport::{ext4_journal_only, require_root, JOURNAL_MARKER, JOURNAL_ONLY_FILE};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn require_env() {
    require_root("publish, loop mounts");
    require_tool("clamscan", "clamav");
    require_tool("losetup", "util-linux");
}

/// A ClamAV database (`.ndb`) of the journal marker, in `dir`.
fn clamav_db(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let hex: String = JOURNAL_MARKER.bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        dir.join("journal.ndb"),
        format!("Lifeboat.Test.Journal:0:*:{hex}\n"),
    )
    .unwrap();
    dir.to_path_buf()
}

/// The backed-up disk: GPT, one ext4 partition whose newest file is only
/// in the journal.
fn journal_disk(dir: &Path) -> PathBuf {
    let img = dir.join("part.ext4");
    ext4_journal_only(&img, 32 << 20, "mkfs.ext4", &[]);
    let disk = dir.join("disk.raw");
    gpt_disk(&disk, &[&img]);
    disk
}

#[test]
fn a_file_only_in_the_journal_is_listed_scanned_and_published_alike() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let r = s(&repo);
    let disk = journal_disk(dir.path());
    let rp = backup(&repo, "web01", &[("disk0", &disk)]);

    // The file browser.
    let ls = ok(&["files", "ls", "--repo", r, &rp, "/dir", "--json"]);
    assert!(ls.contains("journal-only.txt"), "files ls /dir: {ls}");
    let to = dir.path().join("got.txt");
    ok(&[
        "files",
        "get",
        "--repo",
        r,
        &rp,
        JOURNAL_ONLY_FILE,
        "--to",
        s(&to),
    ]);
    let got = std::fs::read_to_string(&to).unwrap();
    assert!(got.starts_with(JOURNAL_MARKER), "{got:.80}");

    // The scan over the published restore point: ClamAV and YARA.
    let db = clamav_db(&dir.path().join("db"));
    let rules = dir.path().join("journal.yar");
    std::fs::write(
        &rules,
        format!("rule Journal_Marker {{ strings: $a = \"{JOURNAL_MARKER}\" condition: $a }}\n"),
    )
    .unwrap();
    let mount_root = dir.path().join("mnt");
    let state_dir = dir.path().join("state");
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&mount_root).unwrap();
    let args = [
        "scan",
        "--repo",
        r,
        "--scan-cache",
        s(&cache),
        "--mount-root",
        s(&mount_root),
        "--state-dir",
        s(&state_dir),
        &rp,
        "--clamav",
        "--clamav-db",
        s(&db),
        "--yara",
        s(&rules),
        "--json",
    ];
    let scan = || -> Value {
        let out = run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(7),
            "scan: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap()
    };
    let report = scan();
    let detections = |report: &Value| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = report["detections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["path"].as_str().unwrap().to_string(),
                    d["signature"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let want = [
        (JOURNAL_ONLY_FILE.to_string(), "Journal_Marker".to_string()),
        (
            JOURNAL_ONLY_FILE.to_string(),
            "Lifeboat.Test.Journal.UNOFFICIAL".to_string(),
        ),
    ];
    assert_eq!(detections(&report), want, "{report}");
    assert_eq!(report["unreadable"].as_array().map(Vec::len), Some(0));
    // Both files (/old/a and the journal's) listed in userspace, from the
    // publisher's replayed file of the volume.
    assert_eq!(report["files_listed_in_userspace"], 2, "{report}");
    assert_eq!(report["files_scanned"], 2, "{report}");
    // A re-scan recognises both as unchanged by their extents (neither's
    // data lies in a block the journal replaced) and still reports.
    let again = scan();
    assert_eq!(detections(&again), want, "{again}");
    assert_eq!(again["skipped_unchanged_files"], 2, "{again}");

    // publish: the mounted tree holds the file.
    let published = ok(&[
        "publish",
        "--repo",
        r,
        &rp,
        "--mount-root",
        s(&mount_root),
        "--state-dir",
        s(&state_dir),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&published).unwrap();
    let session = v["session"].as_str().unwrap().to_string();
    let tree = mount_root.join(&session).join("web01").join("disk0p1");
    let read = std::fs::read_to_string(tree.join(JOURNAL_ONLY_FILE.trim_start_matches('/')));
    ok(&["unpublish", &session, "--state-dir", s(&state_dir)]);
    let read = read.unwrap_or_else(|e| panic!("{JOURNAL_ONLY_FILE} in {}: {e}", tree.display()));
    assert!(read.starts_with(JOURNAL_MARKER));
}
