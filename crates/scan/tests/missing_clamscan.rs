//! Without clamscan on PATH the scanner says to install clamav. Alone in its
//! own test binary because it changes PATH for the process.

use lifeboat_scan::{ClamAvScanner, ScanError};

#[test]
fn missing_clamscan_says_install_clamav() {
    let t = tempfile::tempdir().unwrap();
    std::env::set_var("PATH", t.path());
    let e = ClamAvScanner::new(Some(t.path().join("db.ndb")))
        .scan_tree(t.path())
        .unwrap_err();
    assert!(matches!(e, ScanError::ToolMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("install clamav"), "{e}");
}
