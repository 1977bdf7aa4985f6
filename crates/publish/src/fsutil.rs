//! File helpers of the publisher with errors that name the path: replacing
//! a small file whole through a temporary name (the session state),
//! renaming, and syncing a directory.

use crate::error::{Error, Result};
use std::fs::File;
use std::path::Path;

/// Writes `bytes` to `tmp`, then renames it over `path`: a reader sees the
/// old file or the new one, never a torn one.
pub(crate) fn replace_file(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e))?;
    rename(tmp, path)
}

/// Renames `from` to `to`.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}

/// Makes the entries of `dir` (names created or renamed) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
