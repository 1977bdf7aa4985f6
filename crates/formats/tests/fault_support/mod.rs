//! Shared by the damaged-image tests (VHDX, VMDK): reading an opened disk
//! through, and expecting an error that names the file and the structure.

use lifeboat_testsupport::assert_error_names;
use lifeboat_vdisk::{Error, ReadDisk};
use std::path::Path;

/// Reads the disk whole (or its first 8 MiB when a damaged header claims
/// more) and lists its extents; returns the first error.
pub fn read_through(disk: &dyn ReadDisk) -> Result<(), Error> {
    let mut buf = vec![0u8; disk.size().min(8 << 20) as usize];
    disk.read_at(&mut buf, 0)?;
    disk.extents(0, disk.size())?;
    Ok(())
}

/// Asserts that opening and reading `path` failed (`result`) with an error
/// naming `path` and saying each of `words`; returns the error.
pub fn expect_error(result: Result<(), Error>, path: &Path, words: &[&str]) -> Error {
    let err = result.expect_err("a damaged image must fail");
    assert_error_names(&err, path, words);
    err
}
