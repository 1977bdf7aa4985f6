//! XFS v5 directories: every (name, inode) pair of one directory.
//!
//! Shortform (local fork): `count u8, i8count u8, parent (4 or 8 bytes)`,
//! then per entry `namelen u8, offset u16, name, [ftype u8], inode (4
//! bytes, or 8 when i8count != 0)`. `.` and `..` are not stored.
//!
//! Block, leaf and node forms keep entries in data blocks of
//! `blocksize << dirblklog` bytes below directory offset 32 GiB (the leaf
//! and free-index blocks above it only speed lookups up and are not read).
//! A data block starts with a 64-byte header (magic `XDB3` for the single
//! block of a block directory, `XDD3` otherwise; crc 4, owner 40), then
//! entries: unused `0xffff, length u16, ...` or `inode u64, namelen u8,
//! name, [ftype u8], pad to 8, tag u16`. A block directory ends with its
//! hash leaf entries (8 bytes each) and a tail `count u32, stale u32`.

use super::bmap::{data_extents, Mapping};
use super::inode::{Format, Inode};
use super::{be16, be32, be64, byte, corrupt, verify_crc, Dev, XResult};

/// Directory offset where the leaf blocks start.
const LEAF_OFFSET: u64 = 32 << 30;
const DATA_HEADER: usize = 64;
/// Most directory data blocks read for one directory.
const MAX_DIR_BLOCKS: u64 = 1 << 22;

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
}

/// Every entry of directory `inode`, `.` and `..` excluded, in disk order.
pub(crate) fn read_dir(dev: &Dev, inode: &Inode) -> XResult<Vec<DirEntry>> {
    let at = format!("directory inode {}", inode.ino);
    let result = match inode.format {
        Format::Local => shortform(&inode.fork, inode.size, dev.sb.ftype),
        Format::Extents | Format::Btree => block_dir(dev, inode),
        Format::Dev => Err(corrupt("device fork on a directory")),
    };
    result.map_err(|e| e.within(&at))
}

fn shortform(fork: &[u8], size: u64, ftype: bool) -> XResult<Vec<DirEntry>> {
    if size > fork.len() as u64 {
        return Err(corrupt(format!(
            "shortform size {size} exceeds the {}-byte fork",
            fork.len()
        )));
    }
    let data = fork.get(..size as usize).unwrap_or_default();
    let count = byte(data, 0)?;
    let wide = byte(data, 1)? != 0;
    let ino_len = if wide { 8 } else { 4 };
    let mut pos = 2 + ino_len;
    let mut out = Vec::with_capacity(usize::from(count));
    for i in 0..count {
        let at = format!("shortform entry {i} (fork offset {pos})");
        let namelen = usize::from(byte(data, pos)?);
        let name_at = pos + 3;
        let name = data
            .get(name_at..name_at + namelen)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| corrupt(format!("{at}: name of {namelen} bytes runs past the fork")))?;
        let ino_at = name_at + namelen + usize::from(ftype);
        let ino = if wide {
            be64(data, ino_at)?
        } else {
            u64::from(be32(data, ino_at)?)
        };
        out.push(DirEntry {
            name: name.to_vec(),
            ino,
        });
        pos = ino_at + ino_len;
    }
    Ok(out)
}

/// The directory block numbers (in directory blocks) holding data.
fn data_blocks(dev: &Dev, mapping: &Mapping) -> XResult<Vec<u64>> {
    let sb = &dev.sb;
    let leaf_fsb = LEAF_OFFSET >> sb.block_log;
    let mut out: Vec<u64> = Vec::new();
    for e in &mapping.extents {
        let end = e.file_block.saturating_add(e.blocks).min(leaf_fsb);
        if e.file_block >= end {
            continue;
        }
        let first = e.file_block >> sb.dir_block_log;
        let last = (end - 1) >> sb.dir_block_log;
        for db in first..=last {
            if out.last() == Some(&db) {
                continue;
            }
            if out.len() as u64 >= MAX_DIR_BLOCKS {
                return Err(corrupt(format!(
                    "more than {MAX_DIR_BLOCKS} directory data blocks"
                )));
            }
            out.push(db);
        }
    }
    Ok(out)
}

fn block_dir(dev: &Dev, inode: &Inode) -> XResult<Vec<DirEntry>> {
    let extents = data_extents(dev, inode)?;
    let dbs = u64::from(dev.sb.dir_block_size());
    let mapping = Mapping {
        extents,
        size: LEAF_OFFSET,
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; dbs as usize];
    for db in data_blocks(dev, &mapping)? {
        let offset = db * dbs;
        mapping.read_exact_at(dev, &mut buf, offset)?;
        data_block(&buf, inode.ino, dev.sb.ftype, &mut out)
            .map_err(|e| e.within(&format!("data block at directory offset {offset}")))?;
    }
    Ok(out)
}

/// Appends the entries of one directory data block.
fn data_block(buf: &[u8], ino: u64, ftype: bool, out: &mut Vec<DirEntry>) -> XResult<()> {
    let magic = buf.get(0..4).unwrap_or_default();
    let end = match magic {
        b"XDB3" => {
            let tail = buf.len().saturating_sub(8);
            let leaf_count = be32(buf, tail)? as usize;
            leaf_count
                .checked_mul(8)
                .and_then(|l| tail.checked_sub(l))
                .filter(|&e| e >= DATA_HEADER)
                .ok_or_else(|| corrupt(format!("block tail counts {leaf_count} leaf entries")))?
        }
        b"XDD3" => buf.len(),
        other => {
            return Err(corrupt(format!(
                "bad magic {:?} (not XDB3/XDD3)",
                String::from_utf8_lossy(other)
            )))
        }
    };
    verify_crc(buf, 4, "directory block")?;
    let owner = be64(buf, 40)?;
    if owner != ino {
        return Err(corrupt(format!("owned by inode {owner}")));
    }
    let mut pos = DATA_HEADER;
    while pos < end {
        if be16(buf, pos)? == 0xffff {
            let len = usize::from(be16(buf, pos + 2)?);
            if len < 8 || len % 8 != 0 || pos + len > end {
                return Err(corrupt(format!("free space of {len} bytes at byte {pos}")));
            }
            pos += len;
            continue;
        }
        let entry_ino = be64(buf, pos)?;
        let namelen = usize::from(byte(buf, pos + 8)?);
        let len = (8 + 1 + namelen + usize::from(ftype) + 2).div_ceil(8) * 8;
        let name = buf
            .get(pos + 9..pos + 9 + namelen)
            .filter(|n| !n.is_empty() && pos + len <= end)
            .ok_or_else(|| corrupt(format!("entry at byte {pos}: name of {namelen} bytes")))?;
        if name != b"." && name != b".." {
            out.push(DirEntry {
                name: name.to_vec(),
                ino: entry_ino,
            });
        }
        pos += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shortform() {
        // count 2, 4-byte inodes, parent 128; "a" -> 131, "bc" -> 132.
        let mut f = vec![2, 0, 0, 0, 0, 128];
        f.extend_from_slice(&[1, 0, 0x60, b'a', 1, 0, 0, 0, 131]);
        f.extend_from_slice(&[2, 0, 0x70, b'b', b'c', 2, 0, 0, 0, 132]);
        let size = f.len() as u64;
        f.resize(336, 0);
        let got = shortform(&f, size, true).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].name.as_slice(), got[1].ino), (&b"bc"[..], 132));
        // A name running past the end is an error, not a panic.
        let mut bad = f.clone();
        bad[6] = 200;
        let e = shortform(&bad, size, true).unwrap_err().to_string();
        assert!(e.contains("shortform entry 0"), "{e}");
        assert!(shortform(&f, 1000, true).is_err());
    }

    #[test]
    fn refuses_bad_data_blocks() {
        let mut out = Vec::new();
        let e = data_block(&[0u8; 4096], 5, true, &mut out).unwrap_err();
        assert!(e.to_string().contains("bad magic"), "{e}");
        let mut b = vec![0u8; 4096];
        b[..4].copy_from_slice(b"XDD3");
        let e = data_block(&b, 5, true, &mut out).unwrap_err();
        assert!(e.to_string().contains("CRC"), "{e}");
    }
}
