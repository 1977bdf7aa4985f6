//! [`SparseInputDisk`]: a read-only disk decoded from a compact "sparse
//! image" byte string, so a fuzz input (or a corpus file) can stand for a
//! volume far larger than itself. Filesystems such as XFS (300 MB minimum
//! outside fstests) place their metadata megabytes apart; the bytes between
//! are zeros and cost nothing here.
//!
//! ```text
//! off len field
//!   0   4 size_kib   u32 LE: disk size in KiB (at most MAX_SPARSE_SIZE)
//!   4   . pieces     repeated until the input ends:
//!                      u32 LE  offset in 512-byte sectors
//!                      u16 LE  length in bytes (the bytes follow)
//! ```
//!
//! Bytes outside every piece read as zeros; a later piece overrides an
//! earlier one where they overlap; a piece (or its tail) past the disk
//! size and a truncated last piece are dropped. Every input decodes to
//! some disk: decoding never fails, so a fuzzer's mutations all reach the
//! reader behind it. `fuzz/make_seeds.py` writes real images this way.

use crate::{check_range, ReadDisk, Result};

/// Largest disk a sparse input may describe: 4 GiB.
pub const MAX_SPARSE_SIZE: u64 = 4 << 30;

/// A disk of zeros with the pieces of a sparse input laid over it.
pub struct SparseInputDisk {
    size: u64,
    /// `(offset, bytes)` in input order.
    pieces: Vec<(u64, Vec<u8>)>,
}

impl SparseInputDisk {
    /// Decodes `data` (see the module doc); never fails.
    pub fn decode(data: &[u8]) -> SparseInputDisk {
        let size_kib = data
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let size = (u64::from(size_kib) * 1024).min(MAX_SPARSE_SIZE);
        let mut pieces = Vec::new();
        let mut rest = data.get(4..).unwrap_or_default();
        while rest.len() >= 6 {
            let sector = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let len = usize::from(u16::from_le_bytes([rest[4], rest[5]]));
            let Some(bytes) = rest.get(6..6 + len) else {
                break;
            };
            rest = &rest[6 + len..];
            let offset = u64::from(sector) * 512;
            let keep = size.saturating_sub(offset).min(len as u64) as usize;
            if keep > 0 {
                pieces.push((offset, bytes[..keep].to_vec()));
            }
        }
        SparseInputDisk { size, pieces }
    }
}

impl ReadDisk for SparseInputDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size)?;
        buf.fill(0);
        let end = offset + buf.len() as u64;
        for (at, bytes) in &self.pieces {
            let p_end = at + bytes.len() as u64;
            if p_end <= offset || *at >= end {
                continue;
            }
            let from = offset.max(*at);
            let to = end.min(p_end);
            let dst = (from - offset) as usize..(to - offset) as usize;
            let src = (from - at) as usize..(to - at) as usize;
            buf[dst].copy_from_slice(&bytes[src]);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("sparse fuzz input disk of {} bytes", self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_overlay_zeros_and_later_pieces_win() {
        let mut input = 2u32.to_le_bytes().to_vec(); // 2 KiB
        input.extend_from_slice(&1u32.to_le_bytes());
        input.extend_from_slice(&4u16.to_le_bytes());
        input.extend_from_slice(b"abcd");
        input.extend_from_slice(&1u32.to_le_bytes());
        input.extend_from_slice(&2u16.to_le_bytes());
        input.extend_from_slice(b"XY");
        input.extend_from_slice(&3u32.to_le_bytes()); // 1536: tail cut at 2048
        input.extend_from_slice(&1000u16.to_le_bytes());
        input.extend_from_slice(&[9u8; 1000]);
        input.extend_from_slice(&[1, 2, 3]); // truncated piece: dropped
        let d = SparseInputDisk::decode(&input);
        assert_eq!(d.size(), 2048);
        let mut buf = vec![0xffu8; 2048];
        d.read_at(&mut buf, 0).unwrap();
        assert!(buf[..512].iter().all(|&b| b == 0));
        assert_eq!(&buf[512..516], b"XYcd");
        assert!(buf[1536..].iter().all(|&b| b == 9));
        let mut small = [0u8; 3];
        d.read_at(&mut small, 513).unwrap();
        assert_eq!(&small, b"Ycd");
        assert!(d.read_at(&mut small, 2047).is_err());
        assert_eq!(SparseInputDisk::decode(&[]).size(), 0);
    }
}
