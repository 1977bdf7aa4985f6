//! Shared fixtures: planted samples, a generated ClamAV database (the
//! public one cannot be downloaded on the test machine), and a scanner
//! over both.
#![allow(dead_code)]

use lifeboat_scan::ClamAvScanner;
use lifeboat_testsupport::{require_tool, run_stdout, tool};
use std::path::{Path, PathBuf};

pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
pub const MARKER: &str = "LIFEBOAT-TEST-MARKER-7f3a";

/// Fails the test with an install hint when clamscan is missing.
pub fn require_clamscan() {
    require_tool("clamscan", "clamav");
}

fn md5_hex(path: &Path) -> String {
    run_stdout(tool("md5sum", "coreutils").arg(path))
        .split_whitespace()
        .next()
        .expect("md5sum prints a digest")
        .to_string()
}

/// Checks for clamscan, generates the database in a new temporary folder
/// and plants a tree at `<tmp>/vol` ([`make_infected_tree`] or
/// [`make_clean_tree`]); returns the folder, the tree and a ClamAV scanner
/// over the database.
pub fn clam_fixture(infected: bool) -> (tempfile::TempDir, PathBuf, ClamAvScanner) {
    require_clamscan();
    let tmp = tempfile::tempdir().unwrap();
    let db = make_clamav_db(&tmp.path().join("db"));
    let root = tmp.path().join("vol");
    if infected {
        make_infected_tree(&root);
    } else {
        make_clean_tree(&root);
    }
    (tmp, root, ClamAvScanner::new(Some(db)))
}

/// Writes `dir/test.ndb` (hex signature of [`MARKER`]) and `dir/test.hdb`
/// (MD5:size:name of the EICAR file) and returns `dir`.
pub fn make_clamav_db(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let hex: String = MARKER.bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        dir.join("test.ndb"),
        format!("Lifeboat.Test.Marker:0:*:{hex}\n"),
    )
    .unwrap();
    let eicar = dir.join("eicar.sample");
    std::fs::write(&eicar, EICAR).unwrap();
    let line = format!("{}:{}:Lifeboat.Test.Eicar\n", md5_hex(&eicar), EICAR.len());
    std::fs::remove_file(&eicar).unwrap();
    std::fs::write(dir.join("test.hdb"), line).unwrap();
    dir.to_path_buf()
}

/// A small volume tree: EICAR in /tmp/eicar.com, the marker in
/// /home/alice/notes.txt, clean files elsewhere.
pub fn make_infected_tree(root: &Path) {
    make_clean_tree(root);
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(root.join("tmp/eicar.com"), EICAR).unwrap();
    std::fs::create_dir_all(root.join("home/alice")).unwrap();
    std::fs::write(
        root.join("home/alice/notes.txt"),
        format!("todo\n{MARKER}\nmore\n"),
    )
    .unwrap();
}

/// Clean files only.
pub fn make_clean_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(root.join("etc/hostname"), "web01\n").unwrap();
    std::fs::create_dir_all(root.join("var/lib/app")).unwrap();
    for i in 0..5u8 {
        std::fs::write(
            root.join(format!("var/lib/app/data{i}.bin")),
            vec![i; 10_000 + usize::from(i)],
        )
        .unwrap();
    }
}
