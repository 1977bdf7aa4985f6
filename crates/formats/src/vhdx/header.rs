//! Parsing of the VHDX structures read once at open: the file identifier,
//! the two headers, the region tables and the metadata items. The result is
//! a [`Geometry`]: everything the reader needs to map a virtual offset to a
//! file offset through the BAT. See [`super::layout`] for the byte layout.

use super::layout as l;
use lifeboat_vdisk::{Error, Result};
use std::fs::File;

/// What the headers and metadata say about the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub disk_size: u64,
    pub block_size: u64,
    pub logical_sector_size: u32,
    pub leave_blocks_allocated: bool,
    /// Payload blocks per sector-bitmap block.
    pub chunk_ratio: u64,
    /// Payload blocks covering the disk.
    pub data_blocks: u64,
    pub bat_offset: u64,
    /// BAT entries the disk needs (payload and interleaved bitmap entries).
    pub bat_entries: u64,
}

pub(crate) use crate::fileio::read_exact;

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .unwrap_or(0)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn guid_at(b: &[u8], at: usize) -> [u8; 16] {
    let mut g = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        g.copy_from_slice(s);
    }
    g
}

/// CRC-32C of `buf` with its checksum field taken as zero, as [MS-VHDX] 2.2.2.1 defines.
pub(crate) fn checksum(buf: &[u8]) -> u32 {
    let at = l::CHECKSUM_AT;
    let crc = crc32c::crc32c(&buf[..at]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, buf.get(at + 4..).unwrap_or(&[]))
}

fn checksum_ok(buf: &[u8]) -> bool {
    checksum(buf) == u32_at(buf, l::CHECKSUM_AT)
}

/// One valid header.
#[derive(Debug)]
struct Header {
    sequence: u64,
    log_guid: [u8; 16],
    version: u16,
}

fn read_header(
    what: &str,
    file: &File,
    file_size: u64,
    index: usize,
) -> Result<std::result::Result<Header, String>> {
    let offset = l::HEADER_OFFSETS[index];
    let mut buf = vec![0u8; l::HEADER_SIZE];
    read_exact(what, file, file_size, &mut buf, offset, &|| {
        format!("header {}", index + 1)
    })?;
    if &buf[0..4] != l::HEADER_SIGNATURE {
        return Ok(Err(format!(
            "header {} at offset {offset}: bad signature {:02x?}",
            index + 1,
            &buf[0..4]
        )));
    }
    if !checksum_ok(&buf) {
        return Ok(Err(format!(
            "header {} at offset {offset}: CRC-32C mismatch (stored {:#010x}, computed {:#010x})",
            index + 1,
            u32_at(&buf, l::CHECKSUM_AT),
            checksum(&buf)
        )));
    }
    Ok(Ok(Header {
        sequence: u64_at(&buf, 8),
        log_guid: guid_at(&buf, 48),
        version: u16_at(&buf, 66),
    }))
}

/// The current header: the valid one with the higher sequence number.
fn current_header(what: &str, file: &File, file_size: u64) -> Result<Header> {
    let first = read_header(what, file, file_size, 0)?;
    let second = read_header(what, file, file_size, 1)?;
    let header = match (first, second) {
        (Ok(a), Ok(b)) => {
            if b.sequence > a.sequence {
                b
            } else {
                a
            }
        }
        (Ok(a), Err(_)) => a,
        (Err(_), Ok(b)) => b,
        (Err(a), Err(b)) => {
            return Err(Error::corrupt(
                what,
                format!("both headers are damaged: {a}; {b}"),
            ));
        }
    };
    if header.version != l::HEADER_VERSION {
        return Err(Error::unsupported(
            what,
            format!("VHDX header version {} (only 1 is defined)", header.version),
        ));
    }
    if header.log_guid != [0u8; 16] {
        return Err(Error::unsupported(
            what,
            "the log is not empty (the image was not closed cleanly) and must be replayed first; \
             Lifeboat never writes source images: open it read-write once with Hyper-V or qemu-img \
             (`qemu-img check -r all`) to replay the log",
        ));
    }
    Ok(header)
}

/// Locations of the BAT and metadata regions.
struct Regions {
    bat: (u64, u64),
    metadata: (u64, u64),
}

fn parse_region_table(
    what: &str,
    buf: &[u8],
    file_size: u64,
) -> std::result::Result<Result<Regions>, String> {
    if &buf[0..4] != l::REGION_SIGNATURE {
        return Err(format!("bad signature {:02x?}", &buf[0..4]));
    }
    if !checksum_ok(buf) {
        return Err(format!(
            "CRC-32C mismatch (stored {:#010x}, computed {:#010x})",
            u32_at(buf, l::CHECKSUM_AT),
            checksum(buf)
        ));
    }
    let count = u32_at(buf, 8);
    if count > l::MAX_REGION_ENTRIES {
        return Err(format!(
            "{count} entries (at most {} allowed)",
            l::MAX_REGION_ENTRIES
        ));
    }
    let (mut bat, mut metadata) = (None, None);
    for i in 0..count as usize {
        let at = l::REGION_HEADER_SIZE + l::REGION_ENTRY_SIZE * i;
        let guid = guid_at(buf, at);
        let offset = u64_at(buf, at + 16);
        let length = u64::from(u32_at(buf, at + 24));
        let flags = u32_at(buf, at + 28);
        let slot = if guid == l::BAT_GUID {
            &mut bat
        } else if guid == l::METADATA_GUID {
            &mut metadata
        } else if flags & l::REGION_REQUIRED != 0 {
            return Ok(Err(Error::unsupported(
                what,
                format!("a required region of unknown type {guid:02x?}"),
            )));
        } else {
            continue;
        };
        if offset < l::MIB || offset.checked_add(length).is_none_or(|end| end > file_size) {
            return Ok(Err(Error::corrupt(
                what,
                format!("region {i} ({length} bytes at offset {offset}) lies outside the file ({file_size} bytes)"),
            )));
        }
        *slot = Some((offset, length));
    }
    match (bat, metadata) {
        (Some(bat), Some(metadata)) => Ok(Ok(Regions { bat, metadata })),
        _ => Ok(Err(Error::corrupt(
            what,
            "the region table lacks the BAT or the metadata region",
        ))),
    }
}

fn regions(what: &str, file: &File, file_size: u64) -> Result<Regions> {
    let mut reasons = Vec::new();
    for (i, &offset) in l::REGION_TABLE_OFFSETS.iter().enumerate() {
        let mut buf = vec![0u8; l::REGION_TABLE_SIZE];
        read_exact(what, file, file_size, &mut buf, offset, &|| {
            format!("region table {}", i + 1)
        })?;
        match parse_region_table(what, &buf, file_size) {
            Ok(result) => return result,
            Err(why) => reasons.push(format!("region table {} at offset {offset}: {why}", i + 1)),
        }
    }
    Err(Error::corrupt(
        what,
        format!("both region tables are damaged: {}", reasons.join("; ")),
    ))
}

/// The metadata items we use.
#[derive(Default)]
struct Items {
    file_parameters: Option<(u32, u32)>,
    disk_size: Option<u64>,
    logical_sector_size: Option<u32>,
}

fn metadata(what: &str, file: &File, file_size: u64, (start, length): (u64, u64)) -> Result<Items> {
    let mut table = vec![0u8; l::METADATA_TABLE_SIZE];
    read_exact(what, file, file_size, &mut table, start, &|| {
        "metadata table".into()
    })?;
    if &table[0..8] != l::METADATA_SIGNATURE {
        return Err(Error::corrupt(
            what,
            format!("metadata table at offset {start}: bad signature"),
        ));
    }
    let count = u16_at(&table, 10);
    if count > l::MAX_METADATA_ENTRIES {
        return Err(Error::corrupt(
            what,
            format!("metadata table at offset {start}: {count} entries"),
        ));
    }
    let mut items = Items::default();
    for i in 0..count as usize {
        let at = l::METADATA_ENTRY_SIZE * (i + 1);
        let id = guid_at(&table, at);
        let offset = u64::from(u32_at(&table, at + 16));
        let len = u32_at(&table, at + 20);
        let flags = u32_at(&table, at + 24);
        let read = |want: usize| -> Result<Vec<u8>> {
            if (len as usize) < want || offset.checked_add(want as u64).is_none_or(|e| e > length) {
                return Err(Error::corrupt(
                    what,
                    format!("metadata item {i} ({len} bytes at {offset}) is too short or outside the metadata region"),
                ));
            }
            let mut v = vec![0u8; want];
            read_exact(what, file, file_size, &mut v, start + offset, &|| {
                format!("metadata item {i}")
            })?;
            Ok(v)
        };
        if id == l::FILE_PARAMETERS_GUID {
            let v = read(8)?;
            items.file_parameters = Some((u32_at(&v, 0), u32_at(&v, 4)));
        } else if id == l::VIRTUAL_DISK_SIZE_GUID {
            items.disk_size = Some(u64_at(&read(8)?, 0));
        } else if id == l::LOGICAL_SECTOR_SIZE_GUID {
            items.logical_sector_size = Some(u32_at(&read(4)?, 0));
        } else if id == l::PARENT_LOCATOR_GUID {
            return Err(Error::unsupported(
                what,
                "differencing VHDX (it has a parent locator) is not supported",
            ));
        } else if id == l::VIRTUAL_DISK_ID_GUID || id == l::PHYSICAL_SECTOR_SIZE_GUID {
            // Known, not needed to read the disk.
        } else if flags & l::METADATA_IS_REQUIRED != 0 {
            return Err(Error::unsupported(
                what,
                format!("a required metadata item of unknown type {id:02x?}"),
            ));
        }
    }
    Ok(items)
}

/// Reads and checks everything up to the BAT.
pub(crate) fn read_geometry(what: &str, file: &File, file_size: u64) -> Result<Geometry> {
    let min = l::REGION_TABLE_OFFSETS[1] + l::REGION_TABLE_SIZE as u64;
    if file_size < min {
        return Err(Error::corrupt(
            what,
            format!("truncated header: the file holds {file_size} bytes, the VHDX headers and region tables need {min}"),
        ));
    }
    let mut sig = [0u8; 8];
    read_exact(what, file, file_size, &mut sig, 0, &|| {
        "file identifier".into()
    })?;
    if &sig != l::FILE_SIGNATURE {
        return Err(Error::corrupt(
            what,
            format!("bad file identifier {sig:02x?} (expected \"vhdxfile\")"),
        ));
    }
    current_header(what, file, file_size)?;
    let regions = regions(what, file, file_size)?;
    let items = metadata(what, file, file_size, regions.metadata)?;
    let missing = |name: &str| Error::corrupt(what, format!("the metadata lacks the {name} item"));
    let (block_size, flags) = items
        .file_parameters
        .ok_or_else(|| missing("File Parameters"))?;
    let disk_size = items
        .disk_size
        .ok_or_else(|| missing("Virtual Disk Size"))?;
    let logical_sector_size = items
        .logical_sector_size
        .ok_or_else(|| missing("Logical Sector Size"))?;
    if flags & l::FP_HAS_PARENT != 0 {
        return Err(Error::unsupported(
            what,
            "differencing VHDX (File Parameters say it has a parent) is not supported",
        ));
    }
    if !block_size.is_power_of_two()
        || !(l::MIN_BLOCK_SIZE..=l::MAX_BLOCK_SIZE).contains(&block_size)
    {
        return Err(Error::corrupt(
            what,
            format!(
                "absurd block size {block_size} (expected a power of two from 1 MiB to 256 MiB)"
            ),
        ));
    }
    if logical_sector_size != 512 && logical_sector_size != 4096 {
        return Err(Error::corrupt(
            what,
            format!("absurd logical sector size {logical_sector_size} (expected 512 or 4096)"),
        ));
    }
    if disk_size > l::MAX_DISK_SIZE {
        return Err(Error::corrupt(
            what,
            format!("absurd virtual disk size {disk_size} bytes (more than 64 TiB)"),
        ));
    }
    let block_size = u64::from(block_size);
    let chunk_ratio = l::SECTORS_PER_BITMAP * u64::from(logical_sector_size) / block_size;
    let data_blocks = disk_size.div_ceil(block_size);
    let bat_entries = if data_blocks == 0 {
        0
    } else {
        data_blocks + (data_blocks - 1) / chunk_ratio
    };
    let (bat_offset, bat_length) = regions.bat;
    if bat_entries * 8 > bat_length {
        return Err(Error::corrupt(
            what,
            format!("the BAT region holds {bat_length} bytes, the disk needs {bat_entries} entries of 8 bytes"),
        ));
    }
    Ok(Geometry {
        disk_size,
        block_size,
        logical_sector_size,
        leave_blocks_allocated: flags & l::FP_LEAVE_BLOCKS_ALLOCATED != 0,
        chunk_ratio,
        data_blocks,
        bat_offset,
        bat_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_skips_the_checksum_field() {
        let mut buf = vec![7u8; 64];
        let crc = checksum(&buf);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(checksum_ok(&buf));
        assert_eq!(checksum(&buf), crc);
        buf[40] ^= 1;
        assert!(!checksum_ok(&buf));
    }
}
