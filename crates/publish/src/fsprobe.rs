//! The in-process answer to `blkid -p -o value -s TYPE` for the two
//! filesystems Linux VMs nearly always have, ext2/3/4 and XFS, so that a
//! publish needs no blkid process for them (one was ~60 ms of a publish).
//!
//! It answers only when it is sure: the superblock magic of exactly one of
//! them, and none of the other signatures blkid knows that could sit in the
//! same first 68 KiB (btrfs, NTFS, exFAT, FAT, swap, LVM2, LUKS, MD RAID,
//! ISO 9660) nor an ext journal device or test filesystem. Everything else,
//! and a volume whose first bytes cannot be read, goes to blkid as before,
//! which also keeps blkid's word on what an unreadable volume is.
//!
//! ext2/ext3/ext4 are told apart as blkid does: a journal device is none of
//! them; with no feature beyond ext2's (and no journal) it is ext2; with a
//! journal and nothing beyond ext3's it is ext3; anything else is ext4.

use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes read from the start of the volume: up to btrfs's magic at 0x10040.
const PROBE_LEN: u64 = 0x11000;

// ext superblock (at 1024) fields.
const EXT_SB: usize = 1024;
const EXT_MAGIC: usize = EXT_SB + 0x38;
const EXT_FLAGS: usize = EXT_SB + 0x160;
const EXT_COMPAT: usize = EXT_SB + 0x5C;
const EXT_INCOMPAT: usize = EXT_SB + 0x60;
const EXT_RO_COMPAT: usize = EXT_SB + 0x64;
const COMPAT_HAS_JOURNAL: u32 = 0x0004;
const INCOMPAT_FILETYPE: u32 = 0x0002;
const INCOMPAT_RECOVER: u32 = 0x0004;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const INCOMPAT_META_BG: u32 = 0x0010;
/// sparse_super, large_file, btree_dir: what ext2 and ext3 know.
const RO_COMPAT_EXT2: u32 = 0x0007;
/// `s_flags`: a test filesystem (blkid says ext4dev).
const FLAGS_TEST_FILESYS: u32 = 0x0004;

/// (offset, magic) of the signatures that make the answer ambiguous.
const OTHER_SIGNATURES: &[(usize, &[u8])] = &[
    (0x10040, b"_BHRfS_M"),            // btrfs
    (3, b"NTFS    "),                  // NTFS
    (3, b"EXFAT   "),                  // exFAT
    (54, b"FAT"),                      // FAT12/16
    (82, b"FAT32"),                    // FAT32
    (4086, b"SWAPSPACE2"),             // swap, 4 KiB pages
    (4086, b"SWAP-SPACE"),             // old swap
    (512, b"LABELONE"),                // LVM2 PV (sector 1)
    (0, b"LUKS\xba\xbe"),              // LUKS
    (4096, &[0xfc, 0x4e, 0x2b, 0xa9]), // MD RAID 1.2 superblock
    (0, &[0xfc, 0x4e, 0x2b, 0xa9]),    // MD RAID 1.1 superblock
    (0x8001, b"CD001"),                // ISO 9660
];

/// The blkid TYPE of `dev` when it is surely ext2, ext3, ext4 or xfs;
/// `None` means "ask blkid".
pub fn quick_type(dev: &Path, size: u64) -> Option<&'static str> {
    let len = PROBE_LEN.min(size);
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    std::fs::File::open(dev)
        .and_then(|f| f.read_exact_at(&mut buf, 0))
        .ok()?;
    type_of(&buf)
}

/// [`quick_type`] on the volume's first bytes.
fn type_of(head: &[u8]) -> Option<&'static str> {
    let has = |at: usize, magic: &[u8]| head.get(at..at + magic.len()) == Some(magic);
    if OTHER_SIGNATURES.iter().any(|&(at, m)| has(at, m)) {
        return None;
    }
    let ext = has(EXT_MAGIC, &[0x53, 0xEF]);
    let xfs = has(0, b"XFSB");
    match (ext, xfs) {
        (true, false) => ext_kind(head),
        (false, true) => Some("xfs"),
        _ => None,
    }
}

fn ext_kind(head: &[u8]) -> Option<&'static str> {
    let word = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (compat, incompat, ro) = (word(EXT_COMPAT)?, word(EXT_INCOMPAT)?, word(EXT_RO_COMPAT)?);
    if incompat & INCOMPAT_JOURNAL_DEV != 0 || word(EXT_FLAGS)? & FLAGS_TEST_FILESYS != 0 {
        return None;
    }
    let old_ro = ro & !RO_COMPAT_EXT2 == 0;
    if compat & COMPAT_HAS_JOURNAL == 0 {
        let ext2 = incompat & !(INCOMPAT_FILETYPE | INCOMPAT_META_BG) == 0;
        return Some(if ext2 && old_ro { "ext2" } else { "ext4" });
    }
    let ext3 = incompat & !(INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG) == 0;
    Some(if ext3 && old_ro { "ext3" } else { "ext4" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext_head(compat: u32, incompat: u32, ro: u32) -> Vec<u8> {
        let mut head = vec![0u8; PROBE_LEN as usize];
        head[EXT_MAGIC..EXT_MAGIC + 2].copy_from_slice(&[0x53, 0xEF]);
        head[EXT_COMPAT..EXT_COMPAT + 4].copy_from_slice(&compat.to_le_bytes());
        head[EXT_INCOMPAT..EXT_INCOMPAT + 4].copy_from_slice(&incompat.to_le_bytes());
        head[EXT_RO_COMPAT..EXT_RO_COMPAT + 4].copy_from_slice(&ro.to_le_bytes());
        head
    }

    #[test]
    fn ext_generations_are_told_apart_like_blkid() {
        assert_eq!(type_of(&ext_head(0, INCOMPAT_FILETYPE, 3)), Some("ext2"));
        assert_eq!(
            type_of(&ext_head(COMPAT_HAS_JOURNAL, INCOMPAT_FILETYPE, 3)),
            Some("ext3")
        );
        // extents (0x40) and flex_bg (0x200): ext4.
        assert_eq!(
            type_of(&ext_head(COMPAT_HAS_JOURNAL, 0x242, 0x7b)),
            Some("ext4")
        );
        assert_eq!(type_of(&ext_head(0, 0x242, 3)), Some("ext4"));
        assert_eq!(type_of(&ext_head(0, INCOMPAT_JOURNAL_DEV, 0)), None);
    }

    #[test]
    fn xfs_alone_is_named_and_anything_ambiguous_goes_to_blkid() {
        let mut head = vec![0u8; PROBE_LEN as usize];
        head[..4].copy_from_slice(b"XFSB");
        assert_eq!(type_of(&head), Some("xfs"));
        let mut both = ext_head(COMPAT_HAS_JOURNAL, 0x242, 0);
        both[..4].copy_from_slice(b"XFSB");
        assert_eq!(type_of(&both), None);
        let mut lvm = ext_head(COMPAT_HAS_JOURNAL, 0x242, 0);
        lvm[512..520].copy_from_slice(b"LABELONE");
        assert_eq!(type_of(&lvm), None);
        assert_eq!(type_of(&vec![0u8; 4096]), None);
        // A volume shorter than the superblock: nothing to say.
        assert_eq!(type_of(&[0u8; 100]), None);
    }
}
