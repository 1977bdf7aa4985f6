//! GUID Partition Table writer: a protective MBR, the primary header and
//! entry array at LBA 1-33, and the backup copies at the end of the disk.
//! Used to build demo and test disks; the reader (with MBR and extended
//! partitions) is [`crate::partition`].
//!
//! Layout (UEFI 2.10, section 5.3), for 512-byte sectors:
//! LBA 0 protective MBR (one partition of type 0xEE over the disk),
//! LBA 1 header, LBA 2-33 128 entries of 128 bytes, last 33 LBAs the backup
//! entries and header. The header and entry fields and their CRCs are
//! encoded by [`crate::partition::gpt_layout`], shared with the reader.

use crate::partition::gpt_layout::{self as layout, Entry, Header};
use lifeboat_vdisk::{Error, Result, WriteDisk};

/// Bytes per logical block.
pub const SECTOR: u64 = 512;
/// Number of entries in the array (the usual 128 × 128 bytes = 16 KiB).
const ENTRIES: u64 = 128;
/// Size of one entry.
const ENTRY_SIZE: u64 = layout::ENTRY_SIZE as u64;
/// Sectors taken by the entry array.
const ARRAY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
/// Linux filesystem data, 0FC63DAF-8483-4772-8E79-3D69D8477DE4, in its on-disk (mixed-endian) form.
pub const LINUX_FILESYSTEM: [u8; 16] = [
    0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
];

/// One partition to write.
#[derive(Debug, Clone)]
pub struct GptPartition {
    pub type_guid: [u8; 16],
    pub unique_guid: [u8; 16],
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
}

/// The first usable LBA of a GPT disk (after the header and the entries).
pub fn first_usable_lba() -> u64 {
    2 + ARRAY_SECTORS
}

/// The last usable LBA of a GPT disk of `disk_size` bytes.
pub fn last_usable_lba(disk_size: u64) -> u64 {
    disk_size / SECTOR - 2 - ARRAY_SECTORS
}

/// Writes a protective MBR and both GPT copies describing `parts` to `disk`.
pub fn write_gpt(disk: &dyn WriteDisk, disk_guid: [u8; 16], parts: &[GptPartition]) -> Result<()> {
    let what = format!("GPT on {}", disk.describe());
    let sectors = disk.size() / SECTOR;
    if sectors < 2 * (2 + ARRAY_SECTORS) + 1 {
        return Err(Error::invalid(what, "disk too small for a GPT"));
    }
    if parts.len() as u64 > ENTRIES {
        return Err(Error::invalid(what, "more than 128 partitions"));
    }
    let (first, last) = (first_usable_lba(), last_usable_lba(disk.size()));
    let mut array = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        if p.first_lba < first || p.last_lba > last || p.first_lba > p.last_lba {
            return Err(Error::invalid(
                &what,
                format!(
                    "partition {} ({}..{}) outside {first}..{last}",
                    i + 1,
                    p.first_lba,
                    p.last_lba
                ),
            ));
        }
        let entry = Entry {
            type_guid: p.type_guid,
            unique_guid: p.unique_guid,
            first_lba: p.first_lba,
            last_lba: p.last_lba,
            attributes: 0,
            name: p.name.clone(),
        };
        array[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize]
            .copy_from_slice(&entry.encode());
    }
    let array_crc = layout::array_crc(&array);

    let mut mbr = vec![0u8; SECTOR as usize];
    let entry = &mut mbr[446..462];
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    entry[4] = 0xEE;
    entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    let mbr_sectors = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&mbr_sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    disk.write_at(&mbr, 0)?;

    let backup_lba = sectors - 1;
    let backup_array_lba = backup_lba - ARRAY_SECTORS;
    let header = |my_lba: u64, alt_lba: u64, array_lba: u64| {
        Header {
            first_usable: first,
            last_usable: last,
            disk_guid,
            entry_count: ENTRIES as u32,
            array_crc,
            ..Header::new(my_lba, alt_lba, array_lba)
        }
        .encode(SECTOR as usize)
    };
    disk.write_at(&array, 2 * SECTOR)?;
    disk.write_at(&header(1, backup_lba, 2), SECTOR)?;
    disk.write_at(&array, backup_array_lba * SECTOR)?;
    disk.write_at(
        &header(backup_lba, 1, backup_array_lba),
        backup_lba * SECTOR,
    )?;
    Ok(())
}

/// An 8 MiB disk with one partition "root" (LBA 2048 to the last usable
/// one) written by [`write_gpt`], for the tests of the writer and reader.
#[cfg(test)]
pub(crate) fn one_partition_disk() -> lifeboat_vdisk::MemDisk {
    let disk = lifeboat_vdisk::MemDisk::new("gpt", vec![0; 8 << 20]);
    let part = GptPartition {
        type_guid: LINUX_FILESYSTEM,
        unique_guid: [7; 16],
        first_lba: 2048,
        last_lba: last_usable_lba(8 << 20),
        name: "root".into(),
    };
    write_gpt(&disk, [9; 16], &[part]).expect("8 MiB hold a GPT");
    disk
}

#[cfg(test)]
mod tests {
    use super::*;
    use layout::{array_crc, header_crc, HEADER_SIZE};
    use lifeboat_vdisk::ReadDisk;

    #[test]
    fn gpt_header_and_entries_have_valid_crcs() {
        let disk = one_partition_disk();
        let last_lba = (8 << 20) / SECTOR - 1;
        for (lba, alternate, array_lba) in [(1, last_lba, 2), (last_lba, 1, last_lba - 32)] {
            let mut h = vec![0u8; 512];
            disk.read_at(&mut h, lba * SECTOR).unwrap();
            let header = Header::decode(&h).unwrap();
            assert_eq!(Some(header.header_crc), header_crc(&h, HEADER_SIZE));
            assert_eq!(
                (header.my_lba, header.alternate_lba, header.array_lba),
                (lba, alternate, array_lba)
            );
            assert_eq!(
                (header.first_usable, header.last_usable),
                (34, last_lba - 33)
            );
            assert_eq!((header.entry_count, header.entry_size), (128, 128));
            let mut array = vec![0u8; 16384];
            disk.read_at(&mut array, array_lba * SECTOR).unwrap();
            assert_eq!(header.array_crc, array_crc(&array));
            let entry = Entry::decode(&array).unwrap();
            assert_eq!((entry.first_lba, entry.name.as_str()), (2048, "root"));
        }
        let mut mbr = [0u8; 512];
        disk.read_at(&mut mbr, 0).unwrap();
        assert_eq!((mbr[450], mbr[510], mbr[511]), (0xEE, 0x55, 0xAA));
    }
}
