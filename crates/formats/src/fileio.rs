//! Positioned reads of on-disk structures from an image file: a read that
//! reaches past the end of the file is a corruption that names the
//! structure, never a short read or a panic. Shared by the VMDK and VHDX
//! readers.

use lifeboat_vdisk::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Reads exactly `buf.len()` bytes at `offset` of `file` (of `file_size`
/// bytes), or says which structure (`thing`) reached past the end of `what`.
pub(crate) fn read_exact(
    what: &str,
    file: &File,
    file_size: u64,
    buf: &mut [u8],
    offset: u64,
    thing: &dyn Fn() -> String,
) -> Result<()> {
    let len = buf.len() as u64;
    if offset.checked_add(len).is_none_or(|end| end > file_size) {
        return Err(Error::corrupt(
            what,
            format!(
                "{} at offset {offset} ({len} bytes) reaches past the end of the file ({file_size} bytes)",
                thing()
            ),
        ));
    }
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(
                what,
                format!("{} at offset {offset}: the file shrank", thing()),
            )
        } else {
            Error::io(what, offset, e)
        }
    })
}
