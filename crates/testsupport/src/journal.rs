//! ext2/3/4 images whose newest file exists only in the journal, made by
//! the kernel: the image is mounted read-write on a loop device, files are
//! created and `fsync`ed (which commits their transaction to the journal
//! but leaves the metadata blocks dirty in the page cache, not yet written
//! in place), and the image is copied while still mounted. The copy has
//! `needs_recovery` set and a journal holding several transactions (one
//! with revoke records: a directory created, committed, then deleted),
//! the last one creating [`JOURNAL_ONLY_FILE`]. The helper checks with
//! `debugfs` that the copy, read without its journal, lacks that file and
//! that `logdump` shows the transactions, so a test relying on it knows
//! the file is only in the journal. Needs root (mount).

use crate::files::sparse_file;
use crate::process::{run, run_stdout};
use crate::tools::tool;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file only the journal holds.
pub const JOURNAL_ONLY_FILE: &str = "/dir/journal-only.txt";

/// What [`JOURNAL_ONLY_FILE`] holds, repeated.
pub const JOURNAL_MARKER: &str = "LIFEBOAT-JOURNAL-ONLY-MARKER-5d1c";

/// How many times the marker is repeated in the file.
pub const MARKER_REPEAT: usize = 100;

/// A file checkpointed in place before the journal-only ones.
pub const CHECKPOINTED_FILE: &str = "/old/a";

fn sync_path(p: &Path) {
    File::open(p)
        .and_then(|f| f.sync_all())
        .unwrap_or_else(|e| panic!("fsync {}: {e}", p.display()));
}

/// Makes at `image` an ext filesystem of `size` bytes with `mkfs`
/// (`mkfs.ext4`, `mkfs.ext3`) and `options` (e.g. `["-O",
/// "^metadata_csum"]`), whose [`JOURNAL_ONLY_FILE`] exists only in the
/// journal (see the module doc). `image` is the copy; the mounted
/// original is removed.
pub fn ext4_journal_only(image: &Path, size: u64, mkfs: &str, options: &[&str]) {
    let work = image.with_extension("orig");
    sparse_file(&work, size);
    run(tool(mkfs, "e2fsprogs")
        .args(["-q", "-F", "-b", "4096"])
        .args(options)
        .arg(&work));
    let mnt: PathBuf = image.with_extension("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(tool("mount", "mount")
        .args(["-o", "loop,rw"])
        .arg(&work)
        .arg(&mnt));
    let result = std::panic::catch_unwind(|| {
        std::fs::create_dir_all(mnt.join("old")).unwrap();
        std::fs::write(mnt.join("old/a"), b"checkpointed\n").unwrap();
        run(&mut std::process::Command::new("sync"));
        // A directory logged, then deleted: its blocks are revoked.
        let gone = mnt.join("gone");
        std::fs::create_dir_all(&gone).unwrap();
        for i in 0..300 {
            std::fs::write(gone.join(format!("f{i:03}-{}", "x".repeat(100))), b"x").unwrap();
        }
        sync_path(&gone);
        sync_path(&mnt);
        std::fs::remove_dir_all(&gone).unwrap();
        sync_path(&mnt);
        std::fs::create_dir_all(mnt.join("dir")).unwrap();
        let path = mnt.join(JOURNAL_ONLY_FILE.trim_start_matches('/'));
        let mut f = File::create(&path).unwrap();
        f.write_all(
            format!("{JOURNAL_MARKER} ")
                .repeat(MARKER_REPEAT)
                .as_bytes(),
        )
        .unwrap();
        f.sync_all().unwrap();
        drop(f);
        std::fs::copy(&work, image).unwrap();
    });
    run(tool("umount", "mount").arg(&mnt));
    let _ = std::fs::remove_dir(&mnt);
    let _ = std::fs::remove_file(&work);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    let ls = run_stdout(
        tool("debugfs", "e2fsprogs")
            .args(["-R", "ls -l /"])
            .arg(image),
    );
    assert!(
        ls.contains(" old") && !ls.contains(" dir"),
        "the unreplayed image must lack /dir (the kernel checkpointed it already?):\n{ls}"
    );
    let log = run_stdout(
        tool("debugfs", "e2fsprogs")
            .args(["-R", "logdump"])
            .arg(image),
    );
    assert!(
        log.contains("descriptor block") && log.contains("revoke table"),
        "the journal must hold the transactions:\n{log}"
    );
}
