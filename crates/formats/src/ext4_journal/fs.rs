//! The ext2/3/4 side of journal replay: the superblock fields that say
//! whether and where a journal needs replay, and the map from journal
//! blocks to filesystem blocks read from the journal inode (an extent tree,
//! or the block map of ext3) as it is on disk, before replay, as the kernel
//! reads it.
//!
//! Superblock (1024 bytes at volume byte 1024, little-endian):
//! `s_blocks_count_lo` 0x04, `s_first_data_block` 0x14, `s_log_block_size`
//! 0x18, `s_inodes_per_group` 0x28, `s_magic` 0x38 (0xEF53), `s_rev_level`
//! 0x4C, `s_inode_size` 0x58, `s_feature_compat` 0x5C, `s_feature_incompat`
//! 0x60, `s_feature_ro_compat` 0x64, `s_journal_inum` 0xE0, `s_desc_size`
//! 0xFE, `s_blocks_count_hi` 0x150, `s_checksum` 0x3FC. Group descriptor
//! (at the block after the superblock's): `bg_inode_table_lo` 0x08, and
//! with 64-byte descriptors `bg_inode_table_hi` 0x28. Inode: `i_size_lo`
//! 0x04, `i_flags` 0x20, `i_block` 0x28 (60 bytes), `i_size_high` 0x6C.

use super::{le_u16, le_u32, Damage};
use lifeboat_vdisk::ReadDisk;

pub(super) const SB_OFFSET: u64 = 1024;
pub(super) const SB_LEN: usize = 1024;
const MAGIC: u16 = 0xEF53;
pub(super) const SB_COMPAT: usize = 0x5C;
pub(super) const SB_INCOMPAT: usize = 0x60;
pub(super) const SB_RO_COMPAT: usize = 0x64;
pub(super) const SB_CHECKSUM: usize = 0x3FC;
pub(super) const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub(super) const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_64BIT: u32 = 0x80;
pub(super) const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// `i_flags`: the inode keeps its blocks in an extent tree.
const EXTENTS_FL: u32 = 0x80000;
const EXTENT_MAGIC: u16 = 0xF30A;
/// Deepest extent tree the kernel builds (`EXT4_MAX_EXTENT_DEPTH`).
const MAX_EXTENT_DEPTH: u16 = 5;
/// Extent tree or indirect blocks read for one journal inode at most (a
/// 1 GiB journal takes one or two extent blocks, or 4,100 indirect blocks
/// over 1 KiB blocks).
const MAX_TREE_BLOCKS: usize = 1 << 16;

/// What the filesystem says about its journal.
#[derive(Debug)]
pub(super) struct Ext4Sb {
    pub raw: Vec<u8>,
    pub block_size: u64,
    /// Blocks in the filesystem (`s_blocks_count`).
    pub blocks: u64,
    pub needs_recovery: bool,
    pub has_journal: bool,
    pub journal_inum: u32,
    first_data_block: u64,
    inodes_per_group: u32,
    inode_size: u64,
    desc_size: u64,
}

impl Ext4Sb {
    /// The superblock of `vol`, or `None` when it holds no ext2/3/4 (or
    /// one whose geometry makes no sense: nothing to replay then).
    pub fn read(vol: &dyn ReadDisk) -> Result<Option<Ext4Sb>, Damage> {
        if vol.size() < SB_OFFSET + SB_LEN as u64 {
            return Ok(None);
        }
        let mut raw = vec![0u8; SB_LEN];
        vol.read_at(&mut raw, SB_OFFSET)
            .map_err(|e| Damage::new(format!("reading the ext4 superblock: {e}")))?;
        if le_u16(&raw, 0x38) != MAGIC {
            return Ok(None);
        }
        let log = le_u32(&raw, 0x18);
        if log > 6 {
            return Ok(None);
        }
        let block_size = 1024u64 << log;
        let incompat = le_u32(&raw, SB_INCOMPAT);
        let mut blocks = u64::from(le_u32(&raw, 0x04));
        if incompat & INCOMPAT_64BIT != 0 {
            blocks |= u64::from(le_u32(&raw, 0x150)) << 32;
        }
        let inode_size = if le_u32(&raw, 0x4C) == 0 {
            128
        } else {
            u64::from(le_u16(&raw, 0x58))
        };
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            u64::from(le_u16(&raw, 0xFE)).max(32)
        } else {
            32
        };
        Ok(Some(Ext4Sb {
            block_size,
            blocks,
            needs_recovery: incompat & INCOMPAT_RECOVER != 0,
            has_journal: le_u32(&raw, SB_COMPAT) & COMPAT_HAS_JOURNAL != 0,
            journal_inum: le_u32(&raw, 0xE0),
            first_data_block: u64::from(le_u32(&raw, 0x14)),
            inodes_per_group: le_u32(&raw, 0x28),
            inode_size,
            desc_size,
            raw,
        }))
    }

    /// True for the journal device of an external journal.
    pub fn is_journal_device(&self) -> bool {
        le_u32(&self.raw, SB_INCOMPAT) & INCOMPAT_JOURNAL_DEV != 0
    }

    /// Reads filesystem block `block` of `vol` into `buf` (one block).
    pub fn read_block(&self, vol: &dyn ReadDisk, block: u64, buf: &mut [u8]) -> Result<(), Damage> {
        if block >= self.blocks {
            return Err(Damage::new(format!(
                "block {block} lies past the filesystem's {} blocks",
                self.blocks
            )));
        }
        vol.read_at(buf, block * self.block_size)
            .map_err(|e| Damage::new(format!("reading block {block}: {e}")))
    }

    /// The bytes of inode `ino` (its first 128: all the journal needs).
    fn inode(&self, vol: &dyn ReadDisk, ino: u32) -> Result<Vec<u8>, Damage> {
        if ino == 0 || self.inodes_per_group == 0 {
            return Err(Damage::new(format!("journal inode {ino} does not exist")));
        }
        if !(128..=self.block_size).contains(&self.inode_size)
            || !(32..=self.block_size).contains(&self.desc_size)
        {
            return Err(Damage::new(
                "the superblock's inode or group descriptor size makes no sense".to_string(),
            ));
        }
        let group = u64::from((ino - 1) / self.inodes_per_group);
        let index = u64::from((ino - 1) % self.inodes_per_group);
        let gdt = (self.first_data_block + 1) * self.block_size + group * self.desc_size;
        let mut desc = vec![0u8; self.desc_size as usize];
        vol.read_at(&mut desc, gdt)
            .map_err(|e| Damage::new(format!("reading group descriptor {group}: {e}")))?;
        let mut table = u64::from(le_u32(&desc, 0x08));
        if self.desc_size >= 64 {
            table |= u64::from(le_u32(&desc, 0x28)) << 32;
        }
        let at = table
            .checked_mul(self.block_size)
            .and_then(|t| t.checked_add(index * self.inode_size))
            .filter(|&a| table < self.blocks && a.checked_add(128).is_some_and(|e| e <= vol.size()))
            .ok_or_else(|| {
                Damage::new(format!(
                    "inode {ino}: its inode table (block {table}) lies outside the filesystem"
                ))
            })?;
        let mut inode = vec![0u8; 128];
        vol.read_at(&mut inode, at)
            .map_err(|e| Damage::new(format!("reading inode {ino}: {e}")))?;
        Ok(inode)
    }

    /// The map of the journal inode's blocks (`journal_blocks` of them
    /// wanted) to filesystem blocks.
    pub fn journal_map(&self, vol: &dyn ReadDisk) -> Result<BlockMap, Damage> {
        let ino = self.journal_inum;
        let inode = self.inode(vol, ino)?;
        let size = u64::from(le_u32(&inode, 0x04)) | (u64::from(le_u32(&inode, 0x6C)) << 32);
        let blocks = size / self.block_size;
        let mut map = BlockMap::default();
        let i_block = &inode[0x28..0x28 + 60];
        let mut budget = MAX_TREE_BLOCKS;
        if le_u32(&inode, 0x20) & EXTENTS_FL != 0 {
            self.extent_node(vol, i_block, None, &mut map, &mut budget)?;
        } else {
            self.indirect(vol, i_block, blocks, &mut map, &mut budget)?;
        }
        map.runs.sort_unstable();
        map.blocks = blocks;
        Ok(map)
    }

    /// Walks one extent tree node (`depth` checked against the parent's).
    fn extent_node(
        &self,
        vol: &dyn ReadDisk,
        node: &[u8],
        want_depth: Option<u16>,
        map: &mut BlockMap,
        budget: &mut usize,
    ) -> Result<(), Damage> {
        let bad = |what: &str| Damage::new(format!("journal inode extent tree: {what}"));
        if le_u16(node, 0) != EXTENT_MAGIC {
            return Err(bad("bad magic"));
        }
        let entries = usize::from(le_u16(node, 2));
        let depth = le_u16(node, 6);
        if depth > MAX_EXTENT_DEPTH || want_depth.is_some_and(|d| d != depth) {
            return Err(bad("bad depth"));
        }
        if 12 + entries * 12 > node.len() {
            return Err(bad("more entries than the node holds"));
        }
        for e in node[12..12 + entries * 12].chunks_exact(12) {
            if depth == 0 {
                let logical = u64::from(le_u32(e, 0));
                let mut len = u64::from(le_u16(e, 4));
                if len > 32768 {
                    len -= 32768; // unwritten: still where the blocks are
                }
                let start = (u64::from(le_u16(e, 6)) << 32) | u64::from(le_u32(e, 8));
                map.push(logical, start, len, self.blocks)?;
            } else {
                let child = (u64::from(le_u16(e, 8)) << 32) | u64::from(le_u32(e, 4));
                *budget = budget
                    .checked_sub(1)
                    .ok_or_else(|| bad("too many tree blocks"))?;
                let mut block = vec![0u8; self.block_size as usize];
                self.read_block(vol, child, &mut block)?;
                self.extent_node(vol, &block, Some(depth - 1), map, budget)?;
            }
        }
        Ok(())
    }

    /// Walks an ext3 block map: 12 direct blocks, then single, double and
    /// triple indirect blocks, up to `blocks` file blocks.
    fn indirect(
        &self,
        vol: &dyn ReadDisk,
        i_block: &[u8],
        blocks: u64,
        map: &mut BlockMap,
        budget: &mut usize,
    ) -> Result<(), Damage> {
        let mut next = 0u64;
        for i in 0..12 {
            if next >= blocks {
                return Ok(());
            }
            let b = u64::from(le_u32(i_block, i * 4));
            map.push(next, b, 1, self.blocks)?;
            next += 1;
        }
        for (level, i) in [(1u32, 12usize), (2, 13), (3, 14)] {
            let b = u64::from(le_u32(i_block, i * 4));
            self.indirect_block(vol, b, level, blocks, &mut next, map, budget)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn indirect_block(
        &self,
        vol: &dyn ReadDisk,
        block: u64,
        level: u32,
        blocks: u64,
        next: &mut u64,
        map: &mut BlockMap,
        budget: &mut usize,
    ) -> Result<(), Damage> {
        if *next >= blocks {
            return Ok(());
        }
        if block == 0 {
            return Err(Damage::new(format!(
                "journal inode: block {next} is a hole"
            )));
        }
        // Generous: the journal's blocks over 1 KiB blocks need ~blocks/256.
        *budget = budget
            .checked_sub(1)
            .ok_or_else(|| Damage::new("journal inode: too many indirect blocks".to_string()))?;
        let mut buf = vec![0u8; self.block_size as usize];
        self.read_block(vol, block, &mut buf)?;
        for p in buf.chunks_exact(4) {
            if *next >= blocks {
                break;
            }
            let b = u64::from(u32::from_le_bytes([p[0], p[1], p[2], p[3]]));
            if level == 1 {
                map.push(*next, b, 1, self.blocks)?;
                *next += 1;
            } else {
                self.indirect_block(vol, b, level - 1, blocks, next, map, budget)?;
            }
        }
        Ok(())
    }
}

/// Journal block -> filesystem block, as runs.
#[derive(Debug, Default)]
pub(super) struct BlockMap {
    /// (first journal block, first filesystem block, length), sorted.
    runs: Vec<(u64, u64, u64)>,
    /// The journal inode's size in blocks.
    pub blocks: u64,
}

impl BlockMap {
    fn push(&mut self, logical: u64, start: u64, len: u64, fs_blocks: u64) -> Result<(), Damage> {
        if start == 0 || start.checked_add(len).is_none_or(|e| e > fs_blocks) {
            return Err(Damage::new(format!(
                "journal inode: blocks {logical}..+{len} map to {start}, outside the filesystem"
            )));
        }
        match self.runs.last_mut() {
            Some((l, s, n)) if *l + *n == logical && *s + *n == start => *n += len,
            _ => self.runs.push((logical, start, len)),
        }
        Ok(())
    }

    /// The filesystem block holding journal block `j`.
    pub fn get(&self, j: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.0 <= j).checked_sub(1)?;
        let (l, s, n) = self.runs[i];
        (j < l + n).then(|| s + (j - l))
    }

    /// True when every journal block below `n` is mapped.
    pub fn covers(&self, n: u64) -> bool {
        let mut next = 0;
        for &(l, _, len) in &self.runs {
            if l > next {
                return false;
            }
            next = next.max(l + len);
            if next >= n {
                return true;
            }
        }
        next >= n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_map_joins_runs_finds_blocks_and_refuses_blocks_outside() {
        let mut m = BlockMap::default();
        m.push(0, 100, 10, 1000).unwrap();
        m.push(10, 110, 5, 1000).unwrap();
        m.push(20, 500, 5, 1000).unwrap();
        assert_eq!(m.runs.len(), 2);
        assert_eq!(
            (m.get(0), m.get(14), m.get(15), m.get(22)),
            (Some(100), Some(114), None, Some(502))
        );
        assert!(m.covers(15) && !m.covers(16));
        let e = m.push(25, 998, 5, 1000).unwrap_err().to_string();
        assert!(e.contains("outside the filesystem"), "{e}");
        assert!(m.push(25, 0, 1, 1000).is_err());
        assert!(m.push(25, u64::MAX, 2, u64::MAX).is_err());
    }
}
