//! ext4 inodes as the lister reads them: type, size, flags and generation,
//! the checksum the kernel would check, and the extent tree (the root in
//! `i_block`, deeper nodes in blocks of their own, each checked).
//!
//! Inode fields: `i_mode` 0x00, `i_size_lo` 0x04, `i_links_count` 0x1A,
//! `i_flags` 0x20, `i_block` 0x28 (60 bytes), `i_generation` 0x64,
//! `i_size_high` 0x6C, `i_checksum_lo` 0x7C, `i_extra_isize` 0x80,
//! `i_checksum_hi` 0x82. The checksum is CRC32C from the inode's seed over
//! the whole inode with both checksum fields taken as zero (the high half
//! only when `i_extra_isize` covers it; otherwise only the low 16 bits are
//! compared).
//!
//! Extent nodes: a 12-byte header (magic 0xF30A, entries, max, depth) then
//! 12-byte entries: leaves (`ee_block` u32, `ee_len` u16 — above 32768 an
//! unwritten extent of `ee_len - 32768` blocks —, `ee_start_hi` u16,
//! `ee_start_lo` u32) or indexes (`ei_block` u32, `ei_leaf_lo` u32,
//! `ei_leaf_hi` u16). A node in a block of its own ends with a CRC32C of
//! the header and its `max` entries, from the inode's seed.

use super::csum::{crc32c_raw, inode_seed};
use super::superblock::Superblock;
use super::volume::VolumeBytes;
use super::{le16, le32};
use crate::fiemap::FileExtent;

const S_IFMT: u16 = 0xF000;
const S_IFREG: u16 = 0x8000;
const S_IFDIR: u16 = 0x4000;
const EXTENTS_FL: u32 = 0x0008_0000;
const INLINE_DATA_FL: u32 = 0x1000_0000;
const ENCRYPT_FL: u32 = 0x0000_0800;

const EXTENT_MAGIC: u16 = 0xF30A;
const MAX_DEPTH: u16 = 5;
const UNWRITTEN_OFFSET: u16 = 32768;
/// Extent blocks read for one file at most (a damaged tree gives up).
const MAX_NODES: usize = 1 << 16;

/// One inode, checked.
#[derive(Debug, Clone)]
pub struct Inode {
    pub ino: u32,
    pub mode: u16,
    pub size: u64,
    pub flags: u32,
    pub generation: u32,
    block: [u8; 60],
}

impl Inode {
    /// Parses inode `ino` from its `raw` bytes; `None` when its checksum
    /// fails (the kernel would refuse it) or it is not in use (no links).
    pub fn parse(raw: &[u8], ino: u32, sb: &Superblock) -> Option<Inode> {
        if raw.len() < 128 || le16(raw, 0x1A) == 0 {
            return None;
        }
        let generation = le32(raw, 0x64);
        if let Some(seed) = sb.csum_seed {
            if !checksum_ok(raw, inode_seed(seed, ino, generation)) {
                return None;
            }
        }
        let mut block = [0u8; 60];
        block.copy_from_slice(&raw[0x28..0x28 + 60]);
        Some(Inode {
            ino,
            mode: le16(raw, 0x00),
            size: u64::from(le32(raw, 0x04)) | u64::from(le32(raw, 0x6C)) << 32,
            flags: le32(raw, 0x20),
            generation,
            block,
        })
    }

    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// The seed of this inode's block checksums, when the filesystem has them.
    pub fn seed(&self, sb: &Superblock) -> Option<u32> {
        sb.csum_seed
            .map(|s| inode_seed(s, self.ino, self.generation))
    }

    /// The extents of the inode in logical order (volume byte addresses,
    /// as FIEMAP gives them, not merged); `None` when its data is not in
    /// plain extents (inline data, encryption, block maps) or the tree is
    /// damaged.
    pub fn extents(&self, sb: &Superblock, vol: &VolumeBytes) -> Option<Vec<FileExtent>> {
        if self.flags & EXTENTS_FL == 0 || self.flags & (INLINE_DATA_FL | ENCRYPT_FL) != 0 {
            return None;
        }
        let mut walk = Walk {
            sb,
            vol,
            seed: self.seed(sb),
            out: Vec::new(),
            nodes: 0,
        };
        walk.node(&self.block, None)?;
        let ordered = walk.out.windows(2).all(|w| {
            w[0].logical
                .checked_add(w[0].length)
                .is_some_and(|e| e <= w[1].logical)
        });
        ordered.then_some(walk.out)
    }
}

/// Whether `raw`'s stored checksum matches (see the module doc).
fn checksum_ok(raw: &[u8], seed: u32) -> bool {
    let mut copy = raw.to_vec();
    copy[0x7C..0x7E].fill(0);
    let has_hi = raw.len() > 128 && le16(raw, 0x80) >= 4;
    if has_hi {
        copy[0x82..0x84].fill(0);
    }
    let crc = crc32c_raw(seed, &copy);
    let lo = u32::from(le16(raw, 0x7C));
    if has_hi {
        crc == (lo | u32::from(le16(raw, 0x82)) << 16)
    } else {
        crc & 0xFFFF == lo
    }
}

/// One walk of an extent tree.
struct Walk<'a> {
    sb: &'a Superblock,
    vol: &'a VolumeBytes,
    seed: Option<u32>,
    out: Vec<FileExtent>,
    nodes: usize,
}

impl Walk<'_> {
    /// Adds the extents under `node` (of the depth `expect`, any for the
    /// root); `None` when the node is damaged.
    fn node(&mut self, node: &[u8], expect: Option<u16>) -> Option<()> {
        if node.len() < 12 || le16(node, 0) != EXTENT_MAGIC {
            return None;
        }
        let entries = usize::from(le16(node, 2));
        let max = usize::from(le16(node, 4));
        let depth = le16(node, 6);
        if entries > max || 12 + 12 * max > node.len() || depth > MAX_DEPTH {
            return None;
        }
        if expect.is_some_and(|e| e != depth) {
            return None;
        }
        let bs = self.sb.block_size;
        for i in 0..entries {
            let at = 12 + 12 * i;
            if depth == 0 {
                let len = le16(node, at + 4);
                let unwritten = len > UNWRITTEN_OFFSET;
                let blocks = if unwritten {
                    len - UNWRITTEN_OFFSET
                } else {
                    len
                };
                if blocks == 0 {
                    return None;
                }
                let start = u64::from(le16(node, at + 6)) << 32 | u64::from(le32(node, at + 8));
                self.out.push(FileExtent {
                    logical: u64::from(le32(node, at)) * bs,
                    physical: start.checked_mul(bs)?,
                    length: u64::from(blocks) * bs,
                    unwritten,
                });
            } else {
                let leaf = u64::from(le16(node, at + 8)) << 32 | u64::from(le32(node, at + 4));
                self.child(leaf.checked_mul(bs)?, depth - 1)?;
            }
        }
        Some(())
    }

    /// Reads the node block at byte `pos`, checks it and walks it.
    fn child(&mut self, pos: u64, depth: u16) -> Option<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return None;
        }
        let mut block = vec![0u8; usize::try_from(self.sb.block_size).ok()?];
        self.vol.read_exact_at(&mut block, pos).ok()?;
        if let Some(seed) = self.seed {
            let max = usize::from(le16(&block, 4));
            let tail = 12 + 12 * max;
            if tail + 4 > block.len() || crc32c_raw(seed, &block[..tail]) != le32(&block, tail) {
                return None;
            }
        }
        self.node(&block, Some(depth))
    }
}
