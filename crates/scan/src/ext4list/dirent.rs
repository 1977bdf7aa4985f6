//! ext4 directory blocks read linearly, as `readdir` of a directory without
//! an index does: a chain of entries (`inode` u32, `rec_len` u16,
//! `name_len` u8, `file_type` u8, name) that covers the block exactly.
//!
//! Entries with inode 0 are free space. Hashed (htree) directories keep
//! their index in blocks that read as one free entry (interior nodes) or
//! as `.`, `..` and one free entry (the root), so a linear read of every
//! block yields the same names as the kernel's hash-order `readdir`. With
//! metadata checksums a leaf block ends in a 12-byte tail (inode 0,
//! `rec_len` 12, `name_len` 0, `file_type` 0xDE, then the CRC32C of the
//! block before the tail from the directory inode's seed), checked here;
//! index blocks carry their checksum elsewhere and hold no entry.
//!
//! Any entry that does not fit, a name with `/` or NUL, or a leaf whose
//! checksum fails makes the whole block an error: the caller then leaves
//! the directory to the kernel, which reports what is wrong with it.

use super::csum::crc32c_raw;
use super::{le16, le32};

/// `file_type` of a regular file and of a directory.
pub const FT_REG_FILE: u8 = 1;
pub const FT_DIR: u8 = 2;
const FT_CSUM_TAIL: u8 = 0xDE;
const TAIL_LEN: usize = 12;

/// One named entry (not `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u32,
    pub file_type: u8,
    pub name: Vec<u8>,
}

/// Appends the entries of one directory block to `out`; `Err` when the
/// block is damaged (see the module doc). `seed` is the directory's
/// checksum seed when the filesystem has metadata checksums.
pub fn parse_block(block: &[u8], seed: Option<u32>, out: &mut Vec<DirEntry>) -> Result<(), ()> {
    let len = block.len();
    let mut pos = 0usize;
    let mut found = Vec::new();
    let mut only_free = true;
    while pos < len {
        if pos + 8 > len {
            return Err(());
        }
        let ino = le32(block, pos);
        let rec_len = rec_len(le16(block, pos + 4), len);
        let name_len = usize::from(block[pos + 6]);
        let file_type = block[pos + 7];
        if rec_len < 8
            || !rec_len.is_multiple_of(4)
            || pos + rec_len > len
            || 8 + name_len > rec_len
        {
            return Err(());
        }
        let name = &block[pos + 8..pos + 8 + name_len];
        if ino != 0 && name_len > 0 {
            only_free = false;
            if name.contains(&b'/') || name.contains(&0) {
                return Err(());
            }
            if name != b"." && name != b".." {
                found.push(DirEntry {
                    ino,
                    file_type,
                    name: name.to_vec(),
                });
            }
        }
        pos += rec_len;
    }
    // A leaf with entries is checked; index blocks (all free space, or the
    // root's `.` and `..` before it) hold no entry and carry their checksum
    // elsewhere (the root may still end in the stale tail of the leaf it
    // was made from).
    if let (Some(seed), false) = (seed, only_free || found.is_empty()) {
        let good =
            has_tail(block) && crc32c_raw(seed, &block[..len - TAIL_LEN]) == le32(block, len - 4);
        if !good {
            return Err(());
        }
    }
    out.extend(found);
    Ok(())
}

/// Whether the block ends in a checksum tail.
fn has_tail(block: &[u8]) -> bool {
    let len = block.len();
    len >= TAIL_LEN && {
        let t = &block[len - TAIL_LEN..];
        le32(t, 0) == 0 && le16(t, 4) == TAIL_LEN as u16 && t[6] == 0 && t[7] == FT_CSUM_TAIL
    }
}

/// `rec_len` as stored: 64 KiB blocks keep 65536 as 0 or 65535.
fn rec_len(stored: u16, block_len: usize) -> usize {
    if block_len >= 65536 && (stored == 0 || stored == 65535) {
        65536
    } else {
        usize::from(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u32, ft: u8, name: &[u8], rec: usize) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&ino.to_le_bytes());
        e.extend_from_slice(&(rec as u16).to_le_bytes());
        e.push(name.len() as u8);
        e.push(ft);
        e.extend_from_slice(name);
        e.resize(rec, 0);
        e
    }

    fn leaf(names: &[(&[u8], u32)], seed: Option<u32>) -> Vec<u8> {
        let mut b = entry(2, FT_DIR, b".", 12);
        b.extend(entry(2, FT_DIR, b"..", 12));
        for (i, (n, ino)) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let used = b.len();
            let room = 1024 - TAIL_LEN - used;
            let rec = if last {
                room
            } else {
                (8 + n.len()).div_ceil(4) * 4
            };
            b.extend(entry(*ino, FT_REG_FILE, n, rec));
        }
        let mut t = entry(0, FT_CSUM_TAIL, b"", TAIL_LEN);
        t[6] = 0;
        let crc = seed.map_or(0, |s| crc32c_raw(s, &b));
        t[8..12].copy_from_slice(&crc.to_le_bytes());
        b.extend(t);
        b
    }

    #[test]
    fn a_checksummed_leaf_gives_its_names_and_a_flipped_bit_fails_it() {
        let block = leaf(&[(b"hosts", 12), (b"passwd", 13)], Some(99));
        let mut out = Vec::new();
        parse_block(&block, Some(99), &mut out).unwrap();
        let names: Vec<&[u8]> = out.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, vec![&b"hosts"[..], &b"passwd"[..]]);
        assert_eq!(out[0].ino, 12);
        let mut bad = block.clone();
        bad[30] ^= 1;
        assert!(parse_block(&bad, Some(99), &mut Vec::new()).is_err());
        // Without metadata checksums the tail is only free space.
        assert!(parse_block(&bad, None, &mut Vec::new()).is_ok());
    }

    #[test]
    fn entries_that_do_not_fit_or_bad_names_fail_the_block() {
        let mut b = entry(5, FT_REG_FILE, b"a", 12);
        b.extend(entry(6, FT_REG_FILE, b"b", 1024 - 12));
        assert!(parse_block(&b, None, &mut Vec::new()).is_ok());
        let mut over = b.clone();
        over[12 + 4..12 + 6].copy_from_slice(&2000u16.to_le_bytes());
        assert!(parse_block(&over, None, &mut Vec::new()).is_err());
        let mut slash = b.clone();
        slash[8] = b'/';
        assert!(parse_block(&slash, None, &mut Vec::new()).is_err());
        let mut short = b;
        short[4..6].copy_from_slice(&6u16.to_le_bytes());
        assert!(parse_block(&short, None, &mut Vec::new()).is_err());
    }

    #[test]
    fn an_index_block_holds_no_entry_and_needs_no_tail() {
        let node = entry(0, 0, b"", 1024);
        let mut out = Vec::new();
        parse_block(&node, Some(1), &mut out).unwrap();
        assert!(out.is_empty());
    }
}
