//! XFS, read in-house (no well-kept Rust crate reads XFS): v5 (CRC)
//! filesystems as made by mkfs.xfs 5.x/6.x, read-only through `ReadDisk`.
//!
//! Modules: `superblock` (geometry, address arithmetic), `inode` (v3 inode
//! core and data fork), `bmap` (extent lists, bmbt btrees, reading file
//! bytes through them), `dir` (shortform, block, leaf and node
//! directories), `symlink` (inline and remote targets), `fs` (paths and the
//! [`crate::Filesystem`] implementation).
//!
//! Every value read from the volume is checked before use (checked
//! arithmetic, bounded loops); superblock, inode, bmbt, directory and
//! symlink block CRCs are verified. Errors are [`XfsError`]s naming the
//! structure (inode number, block, byte offset), mapped to
//! [`crate::Error`] with the volume and path by `fs`.
//!
//! Not read: the log (a filesystem captured with a dirty log shows its last
//! checkpointed state, changes still only in the log are not seen),
//! realtime files (refused), v4 filesystems (refused), extended attributes.

mod bmap;
mod dir;
mod fs;
mod inode;
mod superblock;
mod symlink;

pub use fs::{XfsFs, XfsInodeInfo};

use lifeboat_vdisk::ReadDisk;
use std::sync::Arc;
use superblock::Superblock;

/// What went wrong inside the XFS reader.
#[derive(Debug, thiserror::Error)]
pub(crate) enum XfsError {
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("reading {len} bytes at volume offset {offset}: {source}")]
    Disk {
        offset: u64,
        len: usize,
        #[source]
        source: lifeboat_vdisk::Error,
    },
}

impl XfsError {
    /// Prefixes the message with where it happened (`inode 131`).
    pub(crate) fn within(self, at: &str) -> XfsError {
        match self {
            XfsError::Corrupt(m) => XfsError::Corrupt(format!("{at}: {m}")),
            XfsError::Unsupported(m) => XfsError::Unsupported(format!("{at}: {m}")),
            disk => disk,
        }
    }
}

pub(crate) type XResult<T> = std::result::Result<T, XfsError>;

pub(crate) fn corrupt(msg: impl Into<String>) -> XfsError {
    XfsError::Corrupt(msg.into())
}

pub(crate) fn unsupported(msg: impl Into<String>) -> XfsError {
    XfsError::Unsupported(msg.into())
}

fn field<const N: usize>(buf: &[u8], at: usize) -> XResult<[u8; N]> {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            corrupt(format!(
                "field at byte {at} lies past the end of a {}-byte structure",
                buf.len()
            ))
        })
}

pub(crate) fn byte(buf: &[u8], at: usize) -> XResult<u8> {
    Ok(field::<1>(buf, at)?[0])
}

pub(crate) fn be16(buf: &[u8], at: usize) -> XResult<u16> {
    field(buf, at).map(u16::from_be_bytes)
}

pub(crate) fn be32(buf: &[u8], at: usize) -> XResult<u32> {
    field(buf, at).map(u32::from_be_bytes)
}

pub(crate) fn be64(buf: &[u8], at: usize) -> XResult<u64> {
    field(buf, at).map(u64::from_be_bytes)
}

/// Checks the little-endian CRC-32C stored at `at` in `buf` (computed over
/// `buf` with that field zeroed), as every v5 metadata block carries.
pub(crate) fn verify_crc(buf: &[u8], at: usize, what: &str) -> XResult<()> {
    let stored = field::<4>(buf, at).map(u32::from_le_bytes)?;
    let (head, rest) = buf.split_at(at);
    let tail = rest.get(4..).unwrap_or_default();
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(head), &[0; 4]), tail);
    if crc != stored {
        return Err(corrupt(format!(
            "{what}: CRC mismatch (stored {stored:#010x}, computed {crc:#010x})"
        )));
    }
    Ok(())
}

/// The volume and its superblock.
pub(crate) struct Dev {
    pub disk: Arc<dyn ReadDisk>,
    pub sb: Superblock,
}

impl Dev {
    /// Reads `len` bytes at volume offset `offset`.
    pub fn read(&self, offset: u64, len: usize) -> XResult<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_into(&mut buf, offset)?;
        Ok(buf)
    }

    /// Fills `buf` from volume offset `offset`.
    pub fn read_into(&self, buf: &mut [u8], offset: u64) -> XResult<()> {
        read_disk(self.disk.as_ref(), buf, offset)
    }
}

/// Fills `buf` from `disk` at `offset`; past the end is corruption.
fn read_disk(disk: &dyn ReadDisk, buf: &mut [u8], offset: u64) -> XResult<()> {
    let end = offset.checked_add(buf.len() as u64);
    if end.is_none_or(|e| e > disk.size()) {
        return Err(corrupt(format!(
            "{} bytes at offset {offset} lie beyond the end of the {}-byte volume",
            buf.len(),
            disk.size()
        )));
    }
    disk.read_at(buf, offset).map_err(|source| XfsError::Disk {
        offset,
        len: buf.len(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_fields() {
        let mut b = vec![7u8; 64];
        b[8..12].copy_from_slice(&[0; 4]);
        let crc = crc32c::crc32c(&b);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        verify_crc(&b, 8, "test").unwrap();
        b[30] = 0;
        let e = verify_crc(&b, 8, "test block").unwrap_err().to_string();
        assert!(e.contains("test block: CRC mismatch"), "{e}");
        assert!(verify_crc(&b, 62, "x").is_err());
        assert_eq!(be16(&[1, 2], 0).unwrap(), 0x102);
        let e = be32(&[1, 2], 0).unwrap_err().to_string();
        assert!(e.contains("byte 0"), "{e}");
        assert!(be64(&[0; 8], usize::MAX).is_err());
    }

    #[test]
    fn within_prefixes() {
        let e = corrupt("bad").within("inode 5").within("path");
        assert_eq!(e.to_string(), "path: inode 5: bad");
    }
}
