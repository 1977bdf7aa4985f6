//! Replaying the committed fuzz corpora (`fuzz/corpus/<target>/`) in the
//! normal test run: each crate's `tests/fuzz_corpus.rs` feeds every file to
//! the same function its cargo-fuzz target calls, so a stable toolchain
//! re-checks every input the fuzzer ever kept (and every crash it found).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// `fuzz/corpus/<target>` of the workspace.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Feeds every file of `fuzz/corpus/<target>` to `run`; fails naming the
/// input that panicked, and when the corpus is missing or empty.
pub fn replay_corpus(target: &str, run: impl Fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz corpus {} is empty", dir.display());
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {target} panicked on {} of {} corpus inputs: {failed:?}",
        failed.len(),
        files.len()
    );
}
