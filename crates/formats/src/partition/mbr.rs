//! MBR reader: the four primary entries of sector 0 and the logical
//! partitions of an extended partition, found by walking the chain of
//! extended boot records (EBRs).
//!
//! Layout (512-byte sectors): sector 0 bytes 446..510 hold four 16-byte
//! entries (status, CHS start, type, CHS end, LBA start u32 LE, sector count
//! u32 LE), bytes 510..512 are 0x55 0xAA. Type 0xEE marks a protective MBR
//! (the disk is GPT). Types 0x05, 0x0F and 0x85 are extended partitions.
//! Each EBR is an MBR-like sector: entry 1 is the logical partition, with its
//! start relative to this EBR; entry 2 points at the next EBR, relative to
//! the start of the outermost extended partition. The chain is followed at
//! most [`MAX_LOGICAL`] steps and a sector seen twice stops it (a loop), both
//! reported as table problems.

use super::{Partition, PartitionTable, Scheme, MBR_SECTOR};
use crate::problem::VolumeProblem;
use lifeboat_vdisk::{ReadDisk, Result};
use std::collections::HashSet;

/// The longest EBR chain followed.
pub const MAX_LOGICAL: usize = 128;
/// Offset of the first partition entry in an MBR or EBR.
const ENTRY_OFFSET: usize = 446;
/// Size of one entry.
const ENTRY_SIZE: usize = 16;

/// One raw 16-byte entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrEntry {
    pub status: u8,
    pub kind: u8,
    pub lba_start: u32,
    pub sectors: u32,
}

impl MbrEntry {
    fn is_empty(&self) -> bool {
        self.kind == 0 || self.sectors == 0
    }
    fn is_extended(&self) -> bool {
        matches!(self.kind, 0x05 | 0x0F | 0x85)
    }
}

/// Sector 0 decoded as an MBR.
#[derive(Debug, Clone)]
pub struct Sector0 {
    pub entries: [MbrEntry; 4],
    /// One entry is of type 0xEE: a GPT follows.
    pub protective: bool,
}

fn entries(sector: &[u8; 512]) -> [MbrEntry; 4] {
    let mut out = [MbrEntry {
        status: 0,
        kind: 0,
        lba_start: 0,
        sectors: 0,
    }; 4];
    for (i, e) in out.iter_mut().enumerate() {
        let at = ENTRY_OFFSET + i * ENTRY_SIZE;
        let raw = &sector[at..at + ENTRY_SIZE];
        e.status = raw[0];
        e.kind = raw[4];
        e.lba_start = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
        e.sectors = u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]]);
    }
    out
}

/// Decodes sector 0 as an MBR: `None` when the boot signature is missing,
/// an entry has a status byte other than 0x00/0x80, or the sector looks like
/// a FAT boot sector (a whole-disk filesystem, not a partition table).
pub fn parse_sector0(sector: &[u8; 512]) -> Option<Sector0> {
    if sector[510] != 0x55 || sector[511] != 0xAA {
        return None;
    }
    if &sector[54..59] == b"FAT12" || &sector[54..59] == b"FAT16" || &sector[82..87] == b"FAT32" {
        return None;
    }
    if &sector[3..11] == b"NTFS    " || &sector[3..11] == b"EXFAT   " {
        return None;
    }
    let entries = entries(sector);
    if entries.iter().any(|e| e.status & 0x7F != 0) {
        return None;
    }
    let protective = entries.iter().any(|e| e.kind == 0xEE);
    Some(Sector0 {
        entries,
        protective,
    })
}

/// A short name for an MBR type byte.
pub fn type_hint(kind: u8) -> String {
    match kind {
        0x01 => "fat12",
        0x04 | 0x06 | 0x0E => "fat16",
        0x0B | 0x0C => "fat32",
        0x07 => "ntfs",
        0x82 => "linux-swap",
        0x83 => "linux",
        0x8E => "linux-lvm",
        0xEF => "efi-system",
        0xFD => "linux-raid",
        _ => return format!("mbr-0x{kind:02x}"),
    }
    .to_string()
}

fn partition(number: u32, base_lba: u64, e: &MbrEntry) -> Partition {
    let start_lba = base_lba + u64::from(e.lba_start);
    Partition {
        number,
        start: start_lba * MBR_SECTOR,
        length: u64::from(e.sectors) * MBR_SECTOR,
        type_hint: type_hint(e.kind),
        label: None,
        type_guid: None,
        mbr_type: Some(e.kind),
        problems: Vec::new(),
    }
}

/// Reads the primary partitions of `sector0` and the logical partitions of
/// its extended partition (if any) from `disk`.
pub fn read_mbr(disk: &dyn ReadDisk, sector0: &Sector0) -> Result<PartitionTable> {
    let mut table = PartitionTable {
        scheme: Scheme::Mbr,
        partitions: Vec::new(),
        problems: Vec::new(),
    };
    let mut extended = None;
    for (i, e) in sector0.entries.iter().enumerate() {
        if e.is_empty() {
            continue;
        }
        let number = i as u32 + 1;
        if e.is_extended() {
            if extended.is_some() {
                table.problems.push(VolumeProblem::unserved(format!(
                    "a second extended partition (entry {number}) is ignored"
                )));
            } else {
                extended = Some(*e);
            }
            continue;
        }
        table.partitions.push(partition(number, 0, e));
    }
    if let Some(ext) = extended {
        read_logical(disk, &ext, &mut table)?;
    }
    Ok(table)
}

/// Walks the EBR chain of the extended partition `ext`.
fn read_logical(disk: &dyn ReadDisk, ext: &MbrEntry, table: &mut PartitionTable) -> Result<()> {
    let ext_start = u64::from(ext.lba_start);
    let ext_end = ext_start + u64::from(ext.sectors);
    let disk_sectors = disk.size() / MBR_SECTOR;
    let mut seen = HashSet::new();
    let mut ebr_lba = ext_start;
    let mut number = 5u32;
    for step in 0.. {
        if step >= MAX_LOGICAL {
            table.problems.push(VolumeProblem::unserved(format!(
                "EBR chain longer than {MAX_LOGICAL} entries: stopped at sector {ebr_lba}"
            )));
            break;
        }
        if !seen.insert(ebr_lba) {
            table.problems.push(VolumeProblem::unserved(format!(
                "EBR chain loops back to sector {ebr_lba}: stopped after {} logical partitions",
                number - 5
            )));
            break;
        }
        if ebr_lba >= disk_sectors || ebr_lba < ext_start || ebr_lba >= ext_end {
            table.problems.push(VolumeProblem::unserved(format!(
                "EBR at sector {ebr_lba} lies outside the extended partition \
                 (sectors {ext_start}..{ext_end}) or the disk ({disk_sectors} sectors)"
            )));
            break;
        }
        let mut sector = [0u8; 512];
        disk.read_at(&mut sector, ebr_lba * MBR_SECTOR)?;
        if sector[510] != 0x55 || sector[511] != 0xAA {
            table.problems.push(VolumeProblem::unserved(format!(
                "EBR at sector {ebr_lba} has no boot signature: chain stopped"
            )));
            break;
        }
        let [logical, next, ..] = entries(&sector);
        if !logical.is_empty() {
            let mut p = partition(number, ebr_lba, &logical);
            let end_lba = ebr_lba + u64::from(logical.lba_start) + u64::from(logical.sectors);
            if end_lba > ext_end {
                p.problems.push(VolumeProblem::unserved(format!(
                    "logical partition {number} (sectors ..{end_lba}) reaches past its \
                     extended partition (sectors {ext_start}..{ext_end})"
                )));
            }
            table.partitions.push(p);
            number += 1;
        }
        if next.is_empty() {
            break;
        }
        ebr_lba = ext_start + u64::from(next.lba_start);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::MemDisk;

    fn put(sector: &mut [u8], i: usize, kind: u8, start: u32, len: u32) {
        let at = ENTRY_OFFSET + i * ENTRY_SIZE;
        sector[at + 4] = kind;
        sector[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        sector[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xAA;
    }

    #[test]
    fn looping_ebr_chain_is_reported_and_stops() {
        let mut bytes = vec![0u8; 4 << 20];
        put(&mut bytes[..512], 0, 0x05, 2048, 6000);
        // EBR at 2048: logical at +64, next EBR at ext+1000.
        let e1 = 2048 * 512;
        put(&mut bytes[e1..e1 + 512], 0, 0x83, 64, 100);
        put(&mut bytes[e1..e1 + 512], 1, 0x05, 1000, 200);
        // EBR at 3048: logical, next points back to the first EBR.
        let e2 = 3048 * 512;
        put(&mut bytes[e2..e2 + 512], 0, 0x83, 64, 100);
        put(&mut bytes[e2..e2 + 512], 1, 0x05, 0, 200);
        let disk = MemDisk::new("loop", bytes);
        let mut s0 = [0u8; 512];
        disk.read_at(&mut s0, 0).unwrap();
        let table = read_mbr(&disk, &parse_sector0(&s0).unwrap()).unwrap();
        assert_eq!(table.partitions.len(), 2);
        assert_eq!(table.partitions[1].number, 6);
        assert_eq!(table.partitions[1].start, (3048 + 64) * 512);
        assert!(
            table.problems[0].message.contains("loops back"),
            "{:?}",
            table.problems
        );
    }

    #[test]
    fn fat_boot_sector_is_not_an_mbr() {
        let mut s = [0u8; 512];
        s[510] = 0x55;
        s[511] = 0xAA;
        s[82..87].copy_from_slice(b"FAT32");
        assert!(parse_sector0(&s).is_none());
    }
}
