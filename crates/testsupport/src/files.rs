//! Scratch files of the tests: whole files, sparse files, data written
//! with its zero blocks left as holes, writes and byte patches in place,
//! UTF-8 paths for command lines, and the check that an error names the
//! file it is about.

use std::fmt::Display;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Writes `data` to `dir/name`; returns the path.
pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Creates (or truncates) `path` as a sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(size))
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
}

/// Writes `bytes` to a new file at `path`, leaving each all-zero block of
/// `block` bytes a hole (so `FileDisk::extents` reports it), and syncs it.
pub fn write_sparse(path: &Path, bytes: &[u8], block: usize) {
    sparse_file(path, bytes.len() as u64);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    for (i, chunk) in bytes.chunks(block).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, (i * block) as u64)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }
    f.sync_all()
        .unwrap_or_else(|e| panic!("syncing {}: {e}", path.display()));
}

/// Writes `data` into the existing file `path` at byte `offset`.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.write_all_at(data, offset))
        .unwrap_or_else(|e| panic!("writing {} at {offset}: {e}", path.display()));
}

/// Rewrites the file `path` with `edit` applied to its bytes.
pub fn patch_file(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    edit(&mut bytes);
    std::fs::write(path, &bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// `p` as `&str` (test paths are UTF-8), for command lines.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 test path")
}

/// Asserts that the message of `err` names the file `path` and says each
/// of `words`.
pub fn assert_error_names(err: &dyn Display, path: &Path, words: &[&str]) {
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "the error names no file: {text}"
    );
    for w in words {
        assert!(text.contains(w), "the error {text:?} does not say {w:?}");
    }
}
