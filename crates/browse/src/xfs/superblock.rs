//! The XFS superblock (sector 0 of allocation group 0) and the address
//! arithmetic it defines.
//!
//! Layout (big-endian, offsets in bytes): magic `XFSB` 0, blocksize 4,
//! rootino 56, agblocks 84, agcount 88, versionnum 100,
//! sectsize 102, inodesize 104, inopblock 106, blocklog 120, sectlog 121,
//! inodelog 122, inopblog 123, agblklog 124, dirblklog 192,
//! features_incompat 216, crc 224 (little-endian CRC-32C of the whole
//! sector with the field zeroed). Only v5 (CRC) filesystems are read.
//!
//! Addresses: a filesystem block number is `agno << agblklog | agbno`, its
//! byte offset `(agno * agblocks + agbno) * blocksize`. An inode number is
//! `agno << (agblklog + inopblog) | agbno << inopblog | index`, the inode
//! sitting at `index * inodesize` inside that block.

use super::{be16, be32, be64, byte, corrupt, unsupported, verify_crc, XResult};

/// incompat feature bits this reader understands.
const INCOMPAT_FTYPE: u32 = 1 << 0;
const INCOMPAT_SPINODES: u32 = 1 << 1;
const INCOMPAT_META_UUID: u32 = 1 << 2;
const INCOMPAT_BIGTIME: u32 = 1 << 3;
const INCOMPAT_NEEDSREPAIR: u32 = 1 << 4;
const INCOMPAT_NREXT64: u32 = 1 << 5;
const INCOMPAT_EXCHRANGE: u32 = 1 << 6;
const INCOMPAT_PARENT: u32 = 1 << 7;
const INCOMPAT_KNOWN: u32 = INCOMPAT_FTYPE
    | INCOMPAT_SPINODES
    | INCOMPAT_META_UUID
    | INCOMPAT_BIGTIME
    | INCOMPAT_NEEDSREPAIR
    | INCOMPAT_NREXT64
    | INCOMPAT_EXCHRANGE
    | INCOMPAT_PARENT;

/// Offset of the superblock CRC.
const CRC_OFFSET: usize = 224;
/// Bytes of the v5 superblock this reader looks at.
pub(super) const MIN_SB_BYTES: usize = 264;

/// The geometry and features of one XFS filesystem.
#[derive(Debug, Clone)]
pub(crate) struct Superblock {
    pub block_size: u32,
    pub block_log: u8,
    pub ag_blocks: u32,
    pub ag_count: u32,
    pub ag_block_log: u8,
    pub inode_size: u16,
    pub inodes_per_block_log: u8,
    pub root_ino: u64,
    pub dir_block_log: u8,
    /// Directory entries carry a file type byte.
    pub ftype: bool,
}

fn log2_exact(v: u64) -> Option<u8> {
    (v.is_power_of_two()).then(|| v.trailing_zeros() as u8)
}

impl Superblock {
    /// Parses and checks the superblock sector `buf` (`sectsize` bytes).
    pub fn parse(buf: &[u8]) -> XResult<Superblock> {
        let at = "superblock (volume offset 0)";
        if buf.get(0..4) != Some(b"XFSB") {
            return Err(corrupt(format!("{at}: magic is not XFSB")));
        }
        let version = be16(buf, 100)?;
        if version & 0xf != 5 {
            return Err(unsupported(format!(
                "XFS version {} filesystem (versionnum {version:#06x}) is not \
                 supported: only v5 (CRC-enabled) XFS is read",
                version & 0xf
            )));
        }
        let sector_size = be16(buf, 102)?;
        if !(512..=32768).contains(&sector_size) || !sector_size.is_power_of_two() {
            return Err(corrupt(format!("{at}: sector size {sector_size}")));
        }
        let sector = buf
            .get(..usize::from(sector_size))
            .ok_or_else(|| corrupt(format!("{at}: shorter than its sector size")))?;
        verify_crc(sector, CRC_OFFSET, at)?;

        let block_size = be32(buf, 4)?;
        let block_log = byte(buf, 120)?;
        if !(512..=65536).contains(&block_size)
            || log2_exact(u64::from(block_size)) != Some(block_log)
        {
            return Err(corrupt(format!(
                "{at}: block size {block_size} (log {block_log})"
            )));
        }
        let inode_size = be16(buf, 104)?;
        let inode_log = byte(buf, 122)?;
        if !(512..=2048).contains(&inode_size)
            || log2_exact(u64::from(inode_size)) != Some(inode_log)
            || u32::from(inode_size) > block_size
        {
            return Err(corrupt(format!(
                "{at}: inode size {inode_size} (log {inode_log})"
            )));
        }
        let inodes_per_block_log = byte(buf, 123)?;
        if u32::from(inodes_per_block_log) + u32::from(inode_log) != u32::from(block_log) {
            return Err(corrupt(format!(
                "{at}: inodes per block log {inodes_per_block_log} does not match \
                 block and inode size"
            )));
        }
        let ag_blocks = be32(buf, 84)?;
        let ag_count = be32(buf, 88)?;
        let ag_block_log = byte(buf, 124)?;
        let ag_ok = ag_blocks >= 16
            && ag_count >= 1
            && ag_block_log <= 31
            && u64::from(ag_blocks) <= 1u64 << ag_block_log
            && u64::from(ag_blocks) > (1u64 << ag_block_log) / 2;
        if !ag_ok {
            return Err(corrupt(format!(
                "{at}: {ag_count} allocation groups of {ag_blocks} blocks (log {ag_block_log})"
            )));
        }
        let dir_block_log = byte(buf, 192)?;
        if u32::from(block_log) + u32::from(dir_block_log) > 16 {
            return Err(corrupt(format!(
                "{at}: directory block log {dir_block_log} gives blocks over 64 KiB"
            )));
        }
        let incompat = be32(buf, 216)?;
        let unknown = incompat & !INCOMPAT_KNOWN;
        if unknown != 0 {
            return Err(unsupported(format!(
                "XFS incompatible features {unknown:#x} are not supported by this reader"
            )));
        }
        let root_ino = be64(buf, 56)?;
        if root_ino == 0 {
            return Err(corrupt(format!("{at}: root inode number is 0")));
        }
        Ok(Superblock {
            block_size,
            block_log,
            ag_blocks,
            ag_count,
            ag_block_log,
            inode_size,
            inodes_per_block_log,
            root_ino,
            dir_block_log,
            ftype: incompat & INCOMPAT_FTYPE != 0,
        })
    }

    /// Directory block size in bytes.
    pub fn dir_block_size(&self) -> u32 {
        self.block_size << self.dir_block_log
    }

    /// The volume byte offset of `count` blocks starting at filesystem
    /// block `fsb`, which must lie inside one allocation group.
    pub fn fsb_to_byte(&self, fsb: u64, count: u64) -> XResult<u64> {
        let agno = fsb >> self.ag_block_log;
        let agbno = fsb & ((1u64 << self.ag_block_log) - 1);
        let end = agbno.checked_add(count);
        if agno >= u64::from(self.ag_count) || end.is_none_or(|e| e > u64::from(self.ag_blocks)) {
            return Err(corrupt(format!(
                "block {fsb} (+{count}) is outside the filesystem (AG {agno}, block {agbno})"
            )));
        }
        agno.checked_mul(u64::from(self.ag_blocks))
            .and_then(|b| b.checked_add(agbno))
            .and_then(|b| b.checked_mul(u64::from(self.block_size)))
            .ok_or_else(|| corrupt(format!("block {fsb}: byte offset overflows")))
    }

    /// The volume byte offset of inode `ino`.
    pub fn ino_to_byte(&self, ino: u64) -> XResult<u64> {
        let index = ino & ((1u64 << self.inodes_per_block_log) - 1);
        let agbno_bits = ino >> self.inodes_per_block_log;
        let agno = agbno_bits >> self.ag_block_log;
        let agbno = agbno_bits & ((1u64 << self.ag_block_log) - 1);
        let fsb = agno
            .checked_shl(u32::from(self.ag_block_log))
            .filter(|v| v >> self.ag_block_log == agno)
            .map(|v| v | agbno)
            .ok_or_else(|| corrupt(format!("inode number {ino} is out of range")))?;
        let block = self
            .fsb_to_byte(fsb, 1)
            .map_err(|_| corrupt(format!("inode number {ino} is outside the filesystem")))?;
        Ok(block + index * u64::from(self.inode_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> Superblock {
        Superblock {
            block_size: 4096,
            block_log: 12,
            ag_blocks: 4096,
            ag_count: 4,
            ag_block_log: 12,
            inode_size: 512,
            inodes_per_block_log: 3,
            root_ino: 128,
            dir_block_log: 0,
            ftype: true,
        }
    }

    #[test]
    fn address_arithmetic() {
        let sb = geometry();
        assert_eq!(sb.ino_to_byte(128).unwrap(), 16 * 4096);
        assert_eq!(sb.ino_to_byte(131).unwrap(), 16 * 4096 + 3 * 512);
        // AG 1, block 2, inode 1.
        let ino = (1 << 15) | (2 << 3) | 1;
        assert_eq!(sb.ino_to_byte(ino).unwrap(), (4096 + 2) * 4096 + 512);
        assert_eq!(sb.fsb_to_byte((2 << 12) | 5, 1).unwrap(), (8192 + 5) * 4096);
        let e = sb.ino_to_byte(9 << 15).unwrap_err().to_string();
        assert!(e.contains("inode number"), "{e}");
        let e = sb.fsb_to_byte(4090, 10).unwrap_err().to_string();
        assert!(e.contains("outside the filesystem"), "{e}");
        assert!(sb.ino_to_byte(u64::MAX).is_err());
    }

    #[test]
    fn refuses_garbage() {
        let e = Superblock::parse(&[0u8; 512]).unwrap_err().to_string();
        assert!(e.contains("XFSB"), "{e}");
        let mut v4 = vec![0u8; 512];
        v4[..4].copy_from_slice(b"XFSB");
        v4[100..102].copy_from_slice(&0xb4a4u16.to_be_bytes());
        let e = Superblock::parse(&v4).unwrap_err().to_string();
        assert!(
            e.contains("XFS version 4 filesystem") && e.contains("not supported"),
            "{e}"
        );
        let mut v5 = v4.clone();
        v5[100..102].copy_from_slice(&0xb4a5u16.to_be_bytes());
        v5[102..104].copy_from_slice(&512u16.to_be_bytes());
        let e = Superblock::parse(&v5).unwrap_err().to_string();
        assert!(e.contains("CRC"), "{e}");
    }
}
