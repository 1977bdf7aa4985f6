//! XFS v3 inodes: the core fields and the raw data fork.
//!
//! Inode core (big-endian): magic `IN` 0, mode 2, version 4 (must be 3),
//! format 5 (data fork: 0 dev, 1 local, 2 extents, 3 btree), uid 8, gid 12,
//! nlink 16, big_nextents 24 (u64, with the NREXT64 flag), atime 32,
//! mtime 40, ctime 48 (each: i32 seconds + u32 ns, or with the BIGTIME
//! flag one u64 of ns since 1901-12-13T20:45:52Z), size 56, nblocks 64,
//! nextents 76 (u32), forkoff 82 (attr fork offset in 8-byte units, 0 =
//! none), flags 90, crc 100 (LE CRC-32C of the whole inode), flags2 120,
//! ino 152. The data fork starts at byte 176.

use super::superblock::Superblock;
use super::{be16, be32, be64, byte, corrupt, verify_crc, Dev, XResult};

const CORE_SIZE: usize = 176;
const CRC_OFFSET: usize = 100;
const FLAG_REALTIME: u16 = 0x1;
const FLAG2_BIGTIME: u64 = 1 << 3;
const FLAG2_NREXT64: u64 = 1 << 4;
/// Seconds between 1901-12-13T20:45:52Z (bigtime 0) and the Unix epoch.
const BIGTIME_EPOCH_OFFSET: i64 = 1 << 31;

pub(crate) const S_IFMT: u16 = 0o170000;
pub(crate) const S_IFREG: u16 = 0o100000;
pub(crate) const S_IFDIR: u16 = 0o040000;
pub(crate) const S_IFLNK: u16 = 0o120000;

/// How a data fork stores its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Dev,
    Local,
    Extents,
    Btree,
}

/// One inode's core fields and data fork bytes.
#[derive(Debug, Clone)]
pub(crate) struct Inode {
    pub ino: u64,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub format: Format,
    pub nextents: u64,
    pub realtime: bool,
    /// The data fork (the literal area up to the attribute fork).
    pub fork: Vec<u8>,
}

/// Seconds since the epoch of the timestamp at `at`.
fn timestamp(buf: &[u8], at: usize, bigtime: bool) -> XResult<i64> {
    if bigtime {
        let ns = be64(buf, at)?;
        let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
        Ok(secs - BIGTIME_EPOCH_OFFSET)
    } else {
        Ok(i64::from(be32(buf, at)? as i32))
    }
}

impl Inode {
    /// Reads and checks inode `ino`.
    pub fn read(dev: &Dev, ino: u64) -> XResult<Inode> {
        let sb = &dev.sb;
        let offset = sb.ino_to_byte(ino)?;
        let buf = dev.read(offset, usize::from(sb.inode_size))?;
        Inode::parse(sb, ino, &buf).map_err(|e| e.within(&format!("inode {ino} (offset {offset})")))
    }

    /// Parses the inode bytes `buf` of inode `ino`.
    pub fn parse(sb: &Superblock, ino: u64, buf: &[u8]) -> XResult<Inode> {
        if buf.get(0..2) != Some(b"IN") {
            return Err(corrupt("bad magic (not IN)"));
        }
        let version = byte(buf, 4)?;
        if version != 3 {
            return Err(corrupt(format!(
                "inode version {version} on a v5 filesystem"
            )));
        }
        verify_crc(buf, CRC_OFFSET, "inode")?;
        let stored_ino = be64(buf, 152)?;
        if stored_ino != ino {
            return Err(corrupt(format!("records inode number {stored_ino}")));
        }
        let mode = be16(buf, 2)?;
        if mode == 0 {
            return Err(corrupt("the inode is free (mode 0)"));
        }
        let format = match byte(buf, 5)? {
            0 => Format::Dev,
            1 => Format::Local,
            2 => Format::Extents,
            3 => Format::Btree,
            f => return Err(corrupt(format!("data fork format {f}"))),
        };
        let flags2 = be64(buf, 120)?;
        let bigtime = flags2 & FLAG2_BIGTIME != 0;
        let nextents = if flags2 & FLAG2_NREXT64 != 0 {
            be64(buf, 24)?
        } else {
            u64::from(be32(buf, 76)?)
        };
        let size = be64(buf, 56)?;
        if size > i64::MAX as u64 {
            return Err(corrupt(format!("size {size} is negative")));
        }
        let literal = usize::from(sb.inode_size) - CORE_SIZE;
        let fork_len = match byte(buf, 82)? {
            0 => literal,
            off => usize::from(off) * 8,
        };
        if fork_len > literal {
            return Err(corrupt(format!(
                "attribute fork offset {fork_len} is past the literal area ({literal} bytes)"
            )));
        }
        let fork = buf
            .get(CORE_SIZE..CORE_SIZE + fork_len)
            .ok_or_else(|| corrupt("data fork is cut short"))?
            .to_vec();
        Ok(Inode {
            ino,
            mode,
            uid: be32(buf, 8)?,
            gid: be32(buf, 12)?,
            nlink: be32(buf, 16)?,
            size,
            atime: timestamp(buf, 32, bigtime)?,
            mtime: timestamp(buf, 40, bigtime)?,
            ctime: timestamp(buf, 48, bigtime)?,
            format,
            nextents,
            realtime: be16(buf, 90)? & FLAG_REALTIME != 0,
            fork,
        })
    }

    pub fn file_type(&self) -> u16 {
        self.mode & S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(timestamp(&b, 0, false).unwrap(), -5);
        let ns = (1_600_000_000u64 + (1 << 31)) * 1_000_000_000 + 7;
        assert_eq!(
            timestamp(&ns.to_be_bytes(), 0, true).unwrap(),
            1_600_000_000
        );
        assert_eq!(timestamp(&0u64.to_be_bytes(), 0, true).unwrap(), -(1 << 31));
    }
}
