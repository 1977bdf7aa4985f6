//! The on-disk header of an overlay file: its constants, its layout
//! arithmetic and its encoding. Nothing here does I/O.
//!
//! ```text
//! offset  size  field
//! 0       8     MAGIC                 b"LBOVRLY\0"
//! 8       4     version (u32 LE)      VERSION
//! 12      4     block size (u32 LE)   power of two, MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE
//! 16      8     disk size (u64 LE)    base.size() when the overlay was created
//! 24      8     map offset (u64 LE)   always HEADER_SIZE
//! 32      8     map length (u64 LE)   ceil(blocks / 8) bytes
//! 40      8     data offset (u64 LE)  map end rounded up to the block size
//! 48      2     base id length (u16 LE), at most BASE_ID_MAX
//! 50      14    reserved, zero
//! 64      1024  base identity (UTF-8), zero padded
//! 1088    3004  reserved, zero
//! 4092    4     CRC-32C (u32 LE) of bytes 0..4092
//! ```

use crate::{Error, Result};

/// Identifies an overlay file ("LifeBoat OVeRLaY").
pub const MAGIC: [u8; 8] = *b"LBOVRLY\0";
/// The only layout version written and read.
pub const VERSION: u32 = 1;
/// Size of the header block; the bitmap starts right after it. One page, so
/// the header is written with one aligned write.
pub const HEADER_SIZE: u64 = 4096;
/// Smallest block: the page size, so a block never shares a filesystem block.
pub const MIN_BLOCK_SIZE: u32 = 4096;
/// Largest block: beyond 4 MiB a partial write copies too much of the base.
pub const MAX_BLOCK_SIZE: u32 = 4 << 20;
/// Longest base identity, in bytes (a restore point id, a path, a digest).
pub const BASE_ID_MAX: usize = 1024;
/// Largest bitmap accepted (256 MiB: 2^31 blocks, 128 TiB at 64 KiB
/// blocks); it is held in memory whole, so a corrupt size cannot make us
/// allocate without bound.
pub const MAX_MAP_LEN: u64 = 256 << 20;

const OFF_VERSION: usize = 8;
const OFF_BLOCK_SIZE: usize = 12;
const OFF_DISK_SIZE: usize = 16;
const OFF_MAP_OFFSET: usize = 24;
const OFF_MAP_LEN: usize = 32;
const OFF_DATA_OFFSET: usize = 40;
const OFF_BASE_ID_LEN: usize = 48;
const OFF_BASE_ID: usize = 64;
/// Where the CRC-32C of the bytes before it lives: the last 4 bytes.
const OFF_CHECKSUM: usize = HEADER_SIZE as usize - 4;

const _: () = assert!(OFF_BASE_ID + BASE_ID_MAX <= OFF_CHECKSUM);
const _: () = assert!(OFF_BASE_ID_LEN + 2 <= OFF_BASE_ID);
const _: () = assert!(MIN_BLOCK_SIZE as u64 >= HEADER_SIZE);

/// The decoded header, with the layout derived from block and disk size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub block_size: u32,
    pub disk_size: u64,
    pub base_id: String,
    pub map_offset: u64,
    pub map_len: u64,
    pub data_offset: u64,
    /// Number of blocks (the last one may be partial).
    pub blocks: u64,
    /// One past the last byte of the data area: the file's length.
    pub data_end: u64,
}

impl Header {
    /// The header of a new overlay. `what` names the file in errors.
    pub fn new(what: &str, block_size: u32, disk_size: u64, base_id: &str) -> Result<Self> {
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(Error::invalid(
                what,
                format!(
                    "block size {block_size} is not a power of two in \
                     {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE}"
                ),
            ));
        }
        if base_id.len() > BASE_ID_MAX {
            return Err(Error::invalid(
                what,
                format!(
                    "base identity is {} bytes, at most {BASE_ID_MAX}",
                    base_id.len()
                ),
            ));
        }
        layout(block_size, disk_size, base_id.to_string())
            .ok_or_else(|| Error::unsupported(what, too_big(disk_size, block_size)))
    }

    /// The header block, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE as usize];
        b[..8].copy_from_slice(&MAGIC);
        put(&mut b, OFF_VERSION, &VERSION.to_le_bytes());
        put(&mut b, OFF_BLOCK_SIZE, &self.block_size.to_le_bytes());
        put(&mut b, OFF_DISK_SIZE, &self.disk_size.to_le_bytes());
        put(&mut b, OFF_MAP_OFFSET, &self.map_offset.to_le_bytes());
        put(&mut b, OFF_MAP_LEN, &self.map_len.to_le_bytes());
        put(&mut b, OFF_DATA_OFFSET, &self.data_offset.to_le_bytes());
        let id = self.base_id.as_bytes();
        // `new` bounds the identity to BASE_ID_MAX, which fits in a u16.
        put(&mut b, OFF_BASE_ID_LEN, &(id.len() as u16).to_le_bytes());
        put(&mut b, OFF_BASE_ID, id);
        let crc = crc32c::crc32c(&b[..OFF_CHECKSUM]);
        put(&mut b, OFF_CHECKSUM, &crc.to_le_bytes());
        b
    }

    /// Parses and checks a header block read from the file `what`.
    pub fn decode(what: &str, b: &[u8]) -> Result<Self> {
        let corrupt = |detail: String| Error::corrupt(what, detail);
        if b.len() < HEADER_SIZE as usize {
            return Err(corrupt(format!(
                "truncated: the header needs {HEADER_SIZE} bytes, the file has {}",
                b.len()
            )));
        }
        if b[..8] != MAGIC {
            return Err(corrupt(format!(
                "bad magic {:02x?}, not an overlay file",
                &b[..8]
            )));
        }
        let stored = u32::from_le_bytes(arr(b, OFF_CHECKSUM));
        let computed = crc32c::crc32c(&b[..OFF_CHECKSUM]);
        if stored != computed {
            return Err(corrupt(format!(
                "header checksum {stored:#010x} does not match its content ({computed:#010x})"
            )));
        }
        let version = u32::from_le_bytes(arr(b, OFF_VERSION));
        if version != VERSION {
            return Err(Error::unsupported(
                what,
                format!("overlay version {version} (this build reads {VERSION})"),
            ));
        }
        let block_size = u32::from_le_bytes(arr(b, OFF_BLOCK_SIZE));
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(corrupt(format!("block size {block_size} is out of range")));
        }
        let disk_size = u64::from_le_bytes(arr(b, OFF_DISK_SIZE));
        let id_len = usize::from(u16::from_le_bytes(arr(b, OFF_BASE_ID_LEN)));
        if id_len > BASE_ID_MAX {
            return Err(corrupt(format!(
                "base identity length {id_len} > {BASE_ID_MAX}"
            )));
        }
        let base_id = std::str::from_utf8(&b[OFF_BASE_ID..OFF_BASE_ID + id_len])
            .map_err(|_| corrupt("base identity is not UTF-8".to_string()))?
            .to_string();
        let h = layout(block_size, disk_size, base_id)
            .ok_or_else(|| corrupt(too_big(disk_size, block_size)))?;
        let stored_layout = (
            u64::from_le_bytes(arr(b, OFF_MAP_OFFSET)),
            u64::from_le_bytes(arr(b, OFF_MAP_LEN)),
            u64::from_le_bytes(arr(b, OFF_DATA_OFFSET)),
        );
        if stored_layout != (h.map_offset, h.map_len, h.data_offset) {
            return Err(corrupt(format!(
                "map offset/length/data offset {stored_layout:?} disagree with block size \
                 {block_size} and disk size {disk_size} (expected {:?})",
                (h.map_offset, h.map_len, h.data_offset)
            )));
        }
        Ok(h)
    }
}

/// Derives the layout, or `None` when the numbers overflow or the bitmap
/// would exceed [`MAX_MAP_LEN`].
fn layout(block_size: u32, disk_size: u64, base_id: String) -> Option<Header> {
    let bs = u64::from(block_size);
    let blocks = disk_size.div_ceil(bs);
    let map_len = blocks.div_ceil(8);
    if map_len > MAX_MAP_LEN {
        return None;
    }
    let map_offset = HEADER_SIZE;
    let data_offset = map_offset
        .checked_add(map_len)?
        .checked_next_multiple_of(bs)?;
    let data_end = data_offset.checked_add(blocks.checked_mul(bs)?)?;
    // Files are limited to i64::MAX bytes.
    if data_end > i64::MAX as u64 {
        return None;
    }
    Some(Header {
        block_size,
        disk_size,
        base_id,
        map_offset,
        map_len,
        data_offset,
        blocks,
        data_end,
    })
}

fn too_big(disk_size: u64, block_size: u32) -> String {
    format!("a disk of {disk_size} bytes in blocks of {block_size} needs a bitmap larger than {MAX_MAP_LEN} bytes or a file too large")
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_lays_out_the_map_and_data() {
        let h = Header::new("t", 65536, 10 * 65536 + 1, "rp-42").unwrap();
        assert_eq!(h.blocks, 11);
        assert_eq!(h.map_len, 2);
        assert_eq!(h.map_offset, HEADER_SIZE);
        assert_eq!(h.data_offset, 65536);
        assert_eq!(h.data_end, 65536 * 12);
        assert_eq!(Header::decode("t", &h.encode()).unwrap(), h);
    }

    #[test]
    fn header_rejects_bad_arguments_and_damage() {
        assert!(matches!(
            Header::new("t", 3000, 1, ""),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            Header::new("t", 8 << 20, 1, ""),
            Err(Error::Invalid { .. })
        ));
        let long = "x".repeat(BASE_ID_MAX + 1);
        assert!(matches!(
            Header::new("t", 4096, 1, &long),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            Header::new("t", 4096, u64::MAX, ""),
            Err(Error::Unsupported { .. })
        ));
        let good = Header::new("t", 4096, 1 << 30, "id").unwrap().encode();
        for pos in [0usize, 9, 13, 20, 30, 50, 70, 4093] {
            let mut b = good.clone();
            b[pos] ^= 0x40;
            assert!(
                matches!(Header::decode("t", &b), Err(Error::Corrupt { .. })),
                "flip at {pos} not detected"
            );
        }
        assert!(matches!(
            Header::decode("t", &good[..100]),
            Err(Error::Corrupt { .. })
        ));
    }
}
