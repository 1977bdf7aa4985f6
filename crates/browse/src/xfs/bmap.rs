//! Block maps: from an inode's data fork (extent list or bmbt btree) to a
//! sorted list of [`Extent`]s, and [`Mapping::read_at`], which reads file
//! bytes through it (holes and unwritten extents read as zeros).
//!
//! An extent record is 128 bits, big-endian: bit 127 unwritten flag,
//! bits 126..73 file offset (blocks), 72..21 start block (filesystem block
//! number), 20..0 length (blocks).
//!
//! bmbt: the root sits in the inode fork (`level u16, numrecs u16`, then
//! `maxrecs` keys of 8 bytes and the pointers, `maxrecs = (fork - 4) / 16`).
//! Tree blocks (v5, magic `BMA3`) have a 72-byte header: magic 0, level 4,
//! numrecs 6, siblings 8/16, blkno 24, lsn 32, uuid 40, owner 56, crc 64
//! (LE CRC-32C of the block); leaves hold extent records from byte 72,
//! nodes keys from 72 and pointers from `72 + maxrecs * 8`. The walk goes
//! down from the root, requires levels to drop by one per step and every
//! record to start past the previous one, so a looping or repeating tree
//! fails fast instead of running forever.

use super::inode::{Format, Inode};
use super::{be16, be64, corrupt, verify_crc, Dev, XResult};

/// Deepest bmbt accepted (XFS itself needs at most 9 levels).
const MAX_LEVELS: u16 = 12;
const BLOCK_HEADER: usize = 72;

/// One mapped range of a file, in filesystem blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub file_block: u64,
    pub disk_block: u64,
    pub blocks: u64,
    pub unwritten: bool,
}

impl Extent {
    fn end(&self) -> u64 {
        self.file_block + self.blocks
    }
}

/// Decodes one 16-byte extent record.
pub(crate) fn decode(rec: &[u8]) -> XResult<Extent> {
    let l0 = be64(rec, 0)?;
    let l1 = be64(rec, 8)?;
    Ok(Extent {
        unwritten: l0 >> 63 != 0,
        file_block: (l0 & ((1 << 63) - 1)) >> 9,
        disk_block: ((l0 & 0x1ff) << 43) | (l1 >> 21),
        blocks: l1 & ((1 << 21) - 1),
    })
}

/// Collects extents, checking order and bounds as they arrive.
struct Collector<'a> {
    dev: &'a Dev,
    inode: &'a Inode,
    out: Vec<Extent>,
}

impl Collector<'_> {
    fn push(&mut self, rec: &[u8]) -> XResult<()> {
        let e = decode(rec)?;
        let n = self.out.len();
        if e.blocks == 0 {
            return Err(corrupt(format!("extent {n} has length 0")));
        }
        if let Some(prev) = self.out.last() {
            if e.file_block < prev.end() {
                return Err(corrupt(format!(
                    "extent {n} at file block {} overlaps or precedes the previous one",
                    e.file_block
                )));
            }
        }
        if e.file_block.checked_add(e.blocks).is_none() {
            return Err(corrupt(format!("extent {n}: file offset overflows")));
        }
        self.dev
            .sb
            .fsb_to_byte(e.disk_block, e.blocks)
            .map_err(|err| err.within(&format!("extent {n}")))?;
        if n as u64 >= self.inode.nextents {
            return Err(corrupt(format!(
                "more extents than the {} the inode records",
                self.inode.nextents
            )));
        }
        self.out.push(e);
        Ok(())
    }

    /// Walks the subtree under block `fsb`, which must be at `level`.
    fn walk(&mut self, fsb: u64, level: u16) -> XResult<()> {
        let sb = &self.dev.sb;
        let bs = sb.block_size as usize;
        let offset = sb.fsb_to_byte(fsb, 1)?;
        let at = format!("bmbt block {fsb} (offset {offset})");
        let buf = self.dev.read(offset, bs)?;
        if buf.get(0..4) != Some(b"BMA3") {
            return Err(corrupt(format!("{at}: bad magic (not BMA3)")));
        }
        verify_crc(&buf, 64, &at)?;
        let got_level = be16(&buf, 4)?;
        let numrecs = usize::from(be16(&buf, 6)?);
        let owner = be64(&buf, 56)?;
        if got_level != level || owner != self.inode.ino {
            return Err(corrupt(format!(
                "{at}: level {got_level} owner {owner}, expected level {level} owner {}",
                self.inode.ino
            )));
        }
        let maxrecs = (bs - BLOCK_HEADER) / 16;
        if numrecs == 0 || numrecs > maxrecs {
            return Err(corrupt(format!("{at}: {numrecs} records")));
        }
        if level == 0 {
            for i in 0..numrecs {
                let rec = buf
                    .get(BLOCK_HEADER + i * 16..BLOCK_HEADER + (i + 1) * 16)
                    .ok_or_else(|| corrupt(format!("{at}: record {i} cut short")))?;
                self.push(rec).map_err(|e| e.within(&at))?;
            }
            return Ok(());
        }
        let ptrs = BLOCK_HEADER + maxrecs * 8;
        for i in 0..numrecs {
            self.walk(be64(&buf, ptrs + i * 8)?, level - 1)?;
        }
        Ok(())
    }
}

/// The extents of `inode`'s data fork, sorted by file offset.
pub(crate) fn data_extents(dev: &Dev, inode: &Inode) -> XResult<Vec<Extent>> {
    let mut c = Collector {
        dev,
        inode,
        out: Vec::new(),
    };
    let fork = &inode.fork;
    match inode.format {
        Format::Extents => {
            let count = usize::try_from(inode.nextents).unwrap_or(usize::MAX);
            if count > fork.len() / 16 {
                return Err(corrupt(format!(
                    "{count} extents do not fit in the {}-byte data fork",
                    fork.len()
                )));
            }
            for rec in fork.chunks_exact(16).take(count) {
                c.push(rec)?;
            }
        }
        Format::Btree => {
            let level = be16(fork, 0)?;
            let numrecs = usize::from(be16(fork, 2)?);
            let maxrecs = fork.len().saturating_sub(4) / 16;
            if level == 0 || level > MAX_LEVELS || numrecs == 0 || numrecs > maxrecs {
                return Err(corrupt(format!(
                    "bmbt root: level {level} with {numrecs} records"
                )));
            }
            let ptrs = 4 + maxrecs * 8;
            for i in 0..numrecs {
                c.walk(be64(fork, ptrs + i * 8)?, level - 1)?;
            }
        }
        Format::Local | Format::Dev => return Ok(Vec::new()),
    }
    Ok(c.out)
}

/// A file's block map plus its size: reads logical bytes.
pub(crate) struct Mapping {
    pub extents: Vec<Extent>,
    /// Bytes readable (the file size).
    pub size: u64,
}

impl Mapping {
    /// Reads at most `buf.len()` bytes at file offset `pos`, stopping at an
    /// extent boundary; returns how many (0 at or past the end).
    pub fn read_at(&self, dev: &Dev, buf: &mut [u8], pos: u64) -> XResult<usize> {
        if pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let log = u32::from(dev.sb.block_log);
        let block = pos >> log;
        let idx = self.extents.partition_point(|e| e.end() <= block);
        let left = self.size - pos;
        let (run_end, source) = match self.extents.get(idx) {
            Some(e) if e.file_block <= block => {
                let end = e.end().checked_shl(log).filter(|v| v >> log == e.end());
                (end.unwrap_or(u64::MAX), (!e.unwritten).then_some(e))
            }
            Some(e) => (e.file_block.checked_shl(log).unwrap_or(u64::MAX), None),
            None => (u64::MAX, None),
        };
        let n = usize::try_from((run_end - pos).min(left))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let dst = buf.get_mut(..n).unwrap_or_default();
        match source {
            None => dst.fill(0),
            Some(e) => {
                let base = dev.sb.fsb_to_byte(e.disk_block, e.blocks)?;
                let at = base + (pos - (e.file_block << log));
                dev.read_into(dst, at)?;
            }
        }
        Ok(n)
    }

    /// Fills `buf` from file offset `pos`; bytes past the size are zeros.
    pub fn read_exact_at(&self, dev: &Dev, buf: &mut [u8], pos: u64) -> XResult<()> {
        let mut done = 0;
        while done < buf.len() {
            let rest = buf.get_mut(done..).unwrap_or_default();
            let n = self.read_at(dev, rest, pos + done as u64)?;
            if n == 0 {
                rest.fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_records() {
        // unwritten, file block 5, disk block (1 << 43) | 3, length 7
        let start: u64 = (1 << 43) | 3;
        let l0: u64 = (1 << 63) | (5 << 9) | (start >> 43);
        let l1: u64 = ((start & ((1 << 43) - 1)) << 21) | 7;
        let mut rec = l0.to_be_bytes().to_vec();
        rec.extend_from_slice(&l1.to_be_bytes());
        let e = decode(&rec).unwrap();
        assert_eq!(
            e,
            Extent {
                file_block: 5,
                disk_block: start,
                blocks: 7,
                unwritten: true
            }
        );
        assert!(decode(&rec[..8]).is_err());
    }
}
