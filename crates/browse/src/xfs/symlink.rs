//! XFS symlink targets: inline in the inode fork (local format), or in
//! remote blocks (extent format). A v5 remote block starts with a 56-byte
//! header: magic `XSLM` 0, offset 4 (of this piece in the target), bytes 8,
//! crc 12 (LE CRC-32C of the block), uuid 16, owner 32, blkno 40, lsn 48.

use super::bmap::{data_extents, Mapping};
use super::inode::{Format, Inode};
use super::{be32, be64, corrupt, verify_crc, Dev, XResult};

/// Longest symlink target XFS allows.
const MAX_LEN: u64 = 1024;
const REMOTE_HEADER: usize = 56;

/// The target bytes of symlink `inode`.
pub(crate) fn target(dev: &Dev, inode: &Inode) -> XResult<Vec<u8>> {
    let at = format!("symlink inode {}", inode.ino);
    read(dev, inode).map_err(|e| e.within(&at))
}

fn read(dev: &Dev, inode: &Inode) -> XResult<Vec<u8>> {
    if inode.size == 0 || inode.size > MAX_LEN {
        return Err(corrupt(format!("target length {}", inode.size)));
    }
    let len = inode.size as usize;
    match inode.format {
        Format::Local => inode
            .fork
            .get(..len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| corrupt(format!("inline target of {len} bytes exceeds the fork"))),
        Format::Extents | Format::Btree => {
            let bs = dev.sb.block_size as usize;
            let room = bs - REMOTE_HEADER;
            let mapping = Mapping {
                extents: data_extents(dev, inode)?,
                size: u64::MAX,
            };
            let mut out = Vec::with_capacity(len);
            let mut block = vec![0u8; bs];
            let mut i = 0u64;
            while out.len() < len {
                let at = format!("remote block {i}");
                mapping.read_exact_at(dev, &mut block, i * bs as u64)?;
                if block.get(0..4) != Some(b"XSLM") {
                    return Err(corrupt(format!("{at}: bad magic (not XSLM)")));
                }
                verify_crc(&block, 12, &at)?;
                let offset = be32(&block, 4)? as usize;
                let bytes = be32(&block, 8)? as usize;
                if offset != out.len()
                    || bytes == 0
                    || bytes > room
                    || be64(&block, 32)? != inode.ino
                {
                    return Err(corrupt(format!(
                        "{at}: header says {bytes} bytes at target offset {offset}"
                    )));
                }
                let take = bytes.min(len - out.len());
                out.extend_from_slice(
                    block
                        .get(REMOTE_HEADER..REMOTE_HEADER + take)
                        .unwrap_or_default(),
                );
                i += 1;
            }
            Ok(out)
        }
        Format::Dev => Err(corrupt("device fork on a symlink")),
    }
}
