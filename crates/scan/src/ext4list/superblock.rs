//! The ext4 superblock and group descriptors, as far as the lister needs
//! them: block and inode sizes, where each group's inode table lies and how
//! much of it is in use, and the metadata checksum seed.
//!
//! Superblock (1024 bytes at volume byte 1024, little-endian):
//! `s_inodes_count` 0x00, `s_blocks_count_lo` 0x04, `s_first_data_block`
//! 0x14, `s_log_block_size` 0x18, `s_inodes_per_group` 0x28, `s_magic` 0x38
//! (0xEF53), `s_creator_os` 0x48, `s_rev_level` 0x4C, `s_inode_size` 0x58,
//! `s_feature_incompat` 0x60, `s_feature_ro_compat` 0x64, `s_uuid` 0x68,
//! `s_desc_size` 0xFE, `s_checksum_seed` 0x270. Group descriptors follow
//! the superblock's block: `bg_inode_table_lo` 0x08, `bg_flags` 0x12,
//! `bg_itable_unused_lo` 0x1C, and with 64-byte descriptors
//! `bg_inode_table_hi` 0x28, `bg_itable_unused_hi` 0x32.
//!
//! Only filesystems the lister reads exactly as the kernel does are taken:
//! directory entries with file types, files in extents, no feature the
//! lister does not know (compression, external journal device, `meta_bg`
//! descriptors, `dirdata`, encryption) and no journal awaiting replay
//! (`needs_recovery`); anything else is `None` and the
//! volume is listed through the kernel.

use super::csum::crc32c_raw;
use super::volume::VolumeBytes;
use super::{le16, le32};

const MAGIC: u16 = 0xEF53;

const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_MMP: u32 = 0x100;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const INCOMPAT_EA_INODE: u32 = 0x400;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
const INCOMPAT_INLINE_DATA: u32 = 0x8000;
const INCOMPAT_CASEFOLD: u32 = 0x20000;
/// Incompatible features the lister reads as the kernel does.
/// Not `needs_recovery`: such a volume reaches the lister only through its
/// replayed view (`lifeboat_formats::ext4_journal`), which clears it; one
/// that still has it is left to the kernel.
const INCOMPAT_KNOWN: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_CASEFOLD;
const RO_COMPAT_GDT_CSUM: u32 = 0x10;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

const BG_INODE_UNINIT: u16 = 0x1;

/// What the lister knows of an ext4 filesystem.
#[derive(Debug)]
pub struct Superblock {
    pub block_size: u64,
    pub inode_size: u64,
    pub inodes_per_group: u32,
    pub inodes_count: u32,
    /// The checksum seed when metadata checksums are on (and the creator
    /// is Linux, the only case where the kernel checks them).
    pub csum_seed: Option<u32>,
    /// Per group: the inode table's byte position and the inodes in use
    /// at its start.
    pub groups: Vec<GroupInodes>,
}

/// One group's inode table.
#[derive(Debug, Clone, Copy)]
pub struct GroupInodes {
    pub table: u64,
    pub used: u32,
}

impl Superblock {
    /// Reads the superblock and group descriptors of `vol`; `None` when it
    /// is not an ext4 the lister takes (see the module doc) or cannot be
    /// read.
    pub fn read(vol: &VolumeBytes) -> Option<Superblock> {
        let mut sb = [0u8; 1024];
        vol.read_exact_at(&mut sb, 1024).ok()?;
        if le16(&sb, 0x38) != MAGIC || le32(&sb, 0x4C) < 1 {
            return None;
        }
        let incompat = le32(&sb, 0x60);
        let need = INCOMPAT_FILETYPE | INCOMPAT_EXTENTS;
        if incompat & need != need || incompat & !INCOMPAT_KNOWN != 0 {
            return None;
        }
        let log = le32(&sb, 0x18);
        if log > 6 {
            return None;
        }
        let block_size = 1024u64 << log;
        let inode_size = u64::from(le16(&sb, 0x58));
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return None;
        }
        let inodes_per_group = le32(&sb, 0x28);
        let inodes_count = le32(&sb, 0x00);
        if inodes_per_group == 0 {
            return None;
        }
        let ro_compat = le32(&sb, 0x64);
        let linux = le32(&sb, 0x48) == 0;
        let csum_seed = (ro_compat & RO_COMPAT_METADATA_CSUM != 0 && linux).then(|| {
            if incompat & INCOMPAT_CSUM_SEED != 0 {
                le32(&sb, 0x270)
            } else {
                crc32c_raw(!0, &sb[0x68..0x78])
            }
        });
        let uninit_bg = ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0;
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            u64::from(le16(&sb, 0xFE))
        } else {
            32
        };
        if !(32..=block_size).contains(&desc_size) {
            return None;
        }
        let first_data_block = u64::from(le32(&sb, 0x14));
        let group_count = inodes_count.div_ceil(inodes_per_group);
        let gdt_len = u64::from(group_count).checked_mul(desc_size)?;
        let gdt_pos = (first_data_block + 1) * block_size;
        // Both counts come from the volume: a table that cannot fit in it
        // is refused before its buffer is allocated.
        if gdt_pos.checked_add(gdt_len)? > vol.size() {
            return None;
        }
        let mut gdt = vec![0u8; usize::try_from(gdt_len).ok()?];
        vol.read_exact_at(&mut gdt, gdt_pos).ok()?;
        let groups = gdt
            .chunks_exact(desc_size as usize)
            .map(|d| {
                let wide = desc_size >= 64;
                let mut table = u64::from(le32(d, 0x08));
                let mut unused = u32::from(le16(d, 0x1C));
                if wide {
                    table |= u64::from(le32(d, 0x28)) << 32;
                    unused |= u32::from(le16(d, 0x32)) << 16;
                }
                let used = if !uninit_bg {
                    inodes_per_group
                } else if le16(d, 0x12) & BG_INODE_UNINIT != 0 {
                    0
                } else {
                    inodes_per_group.saturating_sub(unused)
                };
                GroupInodes {
                    table: table.saturating_mul(block_size),
                    used,
                }
            })
            .collect();
        Some(Superblock {
            block_size,
            inode_size,
            inodes_per_group,
            inodes_count,
            csum_seed,
            groups,
        })
    }

    /// The byte position of inode `ino` in its table, when the inode lies
    /// in the part of the table in use.
    pub fn inode_pos(&self, ino: u32) -> Option<u64> {
        if ino == 0 || ino > self.inodes_count {
            return None;
        }
        let group = (ino - 1) / self.inodes_per_group;
        let index = (ino - 1) % self.inodes_per_group;
        let g = self.groups.get(group as usize)?;
        (index < g.used).then_some(())?;
        // The table position comes from the volume: checked arithmetic.
        u64::from(index)
            .checked_mul(self.inode_size)
            .and_then(|at| g.table.checked_add(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock whose inode counts make a group descriptor table of
    /// 128 TiB, on a 128 KiB volume: refused before the table's buffer is
    /// allocated (the allocation aborted the process).
    #[test]
    fn a_descriptor_table_larger_than_the_volume_is_refused() {
        let mut vol = vec![0u8; 128 << 10];
        let sb = &mut vol[1024..2048];
        sb[0x00..0x04].copy_from_slice(&u32::MAX.to_le_bytes()); // inodes
        sb[0x18..0x1C].copy_from_slice(&6u32.to_le_bytes()); // 64 KiB blocks
        sb[0x28..0x2C].copy_from_slice(&1u32.to_le_bytes()); // inodes per group
        sb[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        sb[0x4C..0x50].copy_from_slice(&1u32.to_le_bytes()); // dynamic revision
        sb[0x58..0x5A].copy_from_slice(&256u16.to_le_bytes()); // inode size
        let incompat = INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT;
        sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        sb[0xFE..0x100].copy_from_slice(&32768u16.to_le_bytes()); // descriptor size
        assert!(Superblock::read(&VolumeBytes::from_memory("huge-gdt", vol.clone())).is_none());

        // The same superblock with one group of 64-byte descriptors reads.
        let sb = &mut vol[1024..2048];
        sb[0x00..0x04].copy_from_slice(&1u32.to_le_bytes());
        sb[0xFE..0x100].copy_from_slice(&64u16.to_le_bytes());
        let read = Superblock::read(&VolumeBytes::from_memory("one-group", vol)).unwrap();
        assert_eq!(read.groups.len(), 1);
    }
}
