//! GUID Partition Table writer: a protective MBR, the primary header and
//! entry array at LBA 1-33, and the backup copies at the end of the disk.
//! Used to build demo and test disks; the reader (with MBR and extended
//! partitions) is [`crate::partition`].
//!
//! Layout (UEFI 2.10, section 5.3), for 512-byte sectors:
//! LBA 0 protective MBR (one partition of type 0xEE over the disk),
//! LBA 1 header, LBA 2-33 128 entries of 128 bytes, last 33 LBAs the backup
//! entries and header.

use lifeboat_vdisk::{Error, Result, WriteDisk};

/// Bytes per logical block.
pub const SECTOR: u64 = 512;
/// Number of entries in the array (the usual 128 × 128 bytes = 16 KiB).
const ENTRIES: u64 = 128;
/// Size of one entry.
const ENTRY_SIZE: u64 = 128;
/// Sectors taken by the entry array.
const ARRAY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
/// "EFI PART", the header signature.
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Header revision 1.0.
const REVISION: u32 = 0x0001_0000;
/// Size of the header proper.
const HEADER_SIZE: u32 = 92;
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
        let e = &mut array[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid);
        e[16..32].copy_from_slice(&p.unique_guid);
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let array_crc = crc32fast::hash(&array);

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
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alt_lba.to_le_bytes());
        h[40..48].copy_from_slice(&first.to_le_bytes());
        h[48..56].copy_from_slice(&last.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&array_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
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

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::{MemDisk, ReadDisk};

    #[test]
    fn gpt_header_and_entries_have_valid_crcs() {
        let disk = MemDisk::new("gpt", vec![0; 8 << 20]);
        let part = GptPartition {
            type_guid: LINUX_FILESYSTEM,
            unique_guid: [7; 16],
            first_lba: 2048,
            last_lba: last_usable_lba(8 << 20),
            name: "root".into(),
        };
        write_gpt(&disk, [9; 16], &[part]).unwrap();
        let mut h = vec![0u8; 512];
        disk.read_at(&mut h, 512).unwrap();
        assert_eq!(&h[0..8], SIGNATURE);
        let stored = u32::from_le_bytes(h[16..20].try_into().unwrap());
        h[16..20].fill(0);
        assert_eq!(stored, crc32fast::hash(&h[..92]));
        let mut array = vec![0u8; 16384];
        disk.read_at(&mut array, 1024).unwrap();
        assert_eq!(
            u32::from_le_bytes(h[88..92].try_into().unwrap()),
            crc32fast::hash(&array)
        );
        assert_eq!(u64::from_le_bytes(array[32..40].try_into().unwrap()), 2048);
    }
}
