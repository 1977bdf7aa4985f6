//! GUID Partition Table reader (the writer is [`crate::gpt`]).
//!
//! The on-disk layout of the header and the entries, and their CRCs, are
//! [`super::gpt_layout`]'s. Checks, in order: the signature, the header
//! size, the header CRC, "my LBA", the entry size, the array size and
//! place, the array CRC. The backup header sits at the last LBA of the disk
//! and is used when the primary header or its entries fail these checks.
//! Logical blocks of 512 and 4096 bytes are probed.

use super::gpt_layout::{array_crc, header_crc, Entry, Header, ENTRY_SIZE};
use super::{Partition, PartitionTable, Scheme};
use crate::problem::VolumeProblem;
use lifeboat_vdisk::{ReadDisk, Result};

/// The largest entry array read (the usual one is 16 KiB).
const MAX_ARRAY: u64 = 4 << 20;

/// Formats a GPT GUID (mixed-endian on disk) in its canonical text form.
pub fn guid_text(g: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    )
}

/// A short name for a well-known partition type GUID.
pub fn type_hint(guid: &str) -> Option<&'static str> {
    Some(match guid {
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "linux-filesystem",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "linux-lvm",
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "efi-system",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "linux-swap",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "microsoft-basic-data",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "microsoft-reserved",
        "21686148-6449-6E6F-744E-656564454649" => "bios-boot",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "linux-raid",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "linux-root-x86-64",
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => "linux-home",
        _ => return None,
    })
}

/// A header that passed its checks, with its entry array.
struct Checked {
    first_usable: u64,
    last_usable: u64,
    array: Vec<u8>,
    entry_size: usize,
}

/// Why the header at an LBA is not valid.
struct BadHeader {
    /// No header at all (no signature, or the LBA lies outside the disk),
    /// as opposed to a damaged one.
    absent: bool,
    why: String,
}

impl BadHeader {
    fn absent(why: String) -> Self {
        BadHeader { absent: true, why }
    }

    fn damaged(why: String) -> Self {
        BadHeader { absent: false, why }
    }
}

impl std::fmt::Display for BadHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// Reads and checks the header at `lba`; `Ok(Err(why))` when it is not valid.
fn read_header(
    disk: &dyn ReadDisk,
    ss: u64,
    lba: u64,
) -> Result<std::result::Result<Checked, BadHeader>> {
    let size = disk.size();
    let Some(at) = lba.checked_mul(ss).filter(|a| a.saturating_add(ss) <= size) else {
        return Ok(Err(BadHeader::absent(format!(
            "header LBA {lba} is outside the disk"
        ))));
    };
    let mut h = vec![0u8; ss as usize];
    disk.read_at(&mut h, at)?;
    let Some(header) = Header::decode(&h) else {
        return Ok(Err(BadHeader::absent(format!(
            "no \"EFI PART\" signature at LBA {lba}"
        ))));
    };
    let header_size = header.header_size as usize;
    // None for a size below the header proper or beyond the block.
    let Some(computed) = header_crc(&h, header_size) else {
        return Ok(Err(BadHeader::damaged(format!(
            "header size {header_size} is invalid"
        ))));
    };
    let stored = header.header_crc;
    if stored != computed {
        return Ok(Err(BadHeader::damaged(format!(
            "header CRC mismatch at LBA {lba} (stored {stored:#010x}, computed {computed:#010x})"
        ))));
    }
    if header.my_lba != lba {
        return Ok(Err(BadHeader::damaged(format!(
            "header at LBA {lba} says it is at LBA {}",
            header.my_lba
        ))));
    }
    let array_lba = header.array_lba;
    let count = u64::from(header.entry_count);
    let entry_size = u64::from(header.entry_size);
    if entry_size < ENTRY_SIZE as u64 || !entry_size.is_multiple_of(8) || entry_size > 4096 {
        return Ok(Err(BadHeader::damaged(format!(
            "entry size {entry_size} is invalid"
        ))));
    }
    let array_len = count.saturating_mul(entry_size);
    if array_len > MAX_ARRAY {
        return Ok(Err(BadHeader::damaged(format!(
            "entry array of {count} x {entry_size} bytes is larger than {MAX_ARRAY}"
        ))));
    }
    let Some(array_at) = array_lba
        .checked_mul(ss)
        .filter(|a| a.saturating_add(array_len) <= size)
    else {
        return Ok(Err(BadHeader::damaged(format!(
            "entry array at LBA {array_lba} is outside the disk"
        ))));
    };
    let mut array = vec![0u8; array_len as usize];
    disk.read_at(&mut array, array_at)?;
    let stored = header.array_crc;
    let computed = array_crc(&array);
    if stored != computed {
        return Ok(Err(BadHeader::damaged(format!(
            "entry array CRC mismatch for the header at LBA {lba} \
             (stored {stored:#010x}, computed {computed:#010x})"
        ))));
    }
    Ok(Ok(Checked {
        first_usable: header.first_usable,
        last_usable: header.last_usable,
        array,
        entry_size: entry_size as usize,
    }))
}

/// Reads the GPT of `disk`: `None` when neither a primary nor a backup
/// header is valid for any probed block size.
pub fn read_gpt(disk: &dyn ReadDisk) -> Result<Option<PartitionTable>> {
    let mut problems = Vec::new();
    for ss in [512u64, 4096] {
        let sectors = disk.size() / ss;
        if sectors < 3 {
            continue;
        }
        let header = match read_header(disk, ss, 1)? {
            Ok(h) => h,
            Err(primary) => match read_header(disk, ss, sectors - 1)? {
                Ok(h) => {
                    // Every partition is still there: only a note.
                    problems.push(VolumeProblem::note(format!(
                        "primary GPT invalid ({primary}): using the backup"
                    )));
                    h
                }
                Err(backup) => {
                    // Kept only when a larger block size then finds a valid
                    // GPT. No GPT at all at 512-byte blocks is what a disk of
                    // 4096-byte blocks looks like (a note); a damaged one is not.
                    if ss == 512 || !primary.absent {
                        let message = format!(
                            "{ss}-byte blocks: primary GPT: {primary}; backup GPT: {backup}"
                        );
                        problems.push(if primary.absent && backup.absent {
                            VolumeProblem::note(message)
                        } else {
                            VolumeProblem::unserved(message)
                        });
                    }
                    continue;
                }
            },
        };
        let partitions = entries(&header, ss);
        return Ok(Some(PartitionTable {
            scheme: Scheme::Gpt,
            partitions,
            problems,
        }));
    }
    Ok(None)
}

fn entries(h: &Checked, ss: u64) -> Vec<Partition> {
    let mut out = Vec::new();
    for (i, slot) in h.array.chunks_exact(h.entry_size).enumerate() {
        let Some(e) = Entry::decode(slot).filter(|e| !e.is_unused()) else {
            continue;
        };
        let number = i as u32 + 1;
        let guid = guid_text(&e.type_guid);
        let (first, last, name) = (e.first_lba, e.last_lba, e.name);
        let mut problems = Vec::new();
        let (start, length) = match (
            first.checked_mul(ss),
            last.checked_sub(first)
                .and_then(|d| d.checked_add(1))
                .and_then(|n| n.checked_mul(ss)),
        ) {
            (Some(s), Some(l)) => (s, l),
            _ => {
                problems.push(VolumeProblem::unserved(format!(
                    "partition {number} has an invalid range (LBA {first}..={last})"
                )));
                (first.saturating_mul(ss), 0)
            }
        };
        if problems.is_empty() && (first < h.first_usable || last > h.last_usable) {
            problems.push(VolumeProblem::unserved(format!(
                "partition {number} (LBA {first}..={last}) lies outside the usable LBAs {}..={}",
                h.first_usable, h.last_usable
            )));
        }
        out.push(Partition {
            number,
            start,
            length,
            type_hint: type_hint(&guid).map(str::to_string).unwrap_or(guid.clone()),
            label: (!name.is_empty()).then_some(name),
            type_guid: Some(guid),
            mbr_type: None,
            problems,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::{one_partition_disk, LINUX_FILESYSTEM};
    use lifeboat_vdisk::WriteDisk;

    #[test]
    fn reads_what_the_writer_wrote_and_falls_back_to_the_backup() {
        let disk = one_partition_disk();
        let t = read_gpt(&disk).unwrap().unwrap();
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(t.partitions.len(), 1);
        assert_eq!(t.partitions[0].start, 2048 * 512);
        assert_eq!(t.partitions[0].label.as_deref(), Some("root"));
        assert_eq!(t.partitions[0].type_hint, "linux-filesystem");

        // Corrupt one byte of the primary entry array: the backup is used.
        disk.write_at(&[0xFF], 1024 + 60).unwrap();
        let t = read_gpt(&disk).unwrap().unwrap();
        assert!(
            t.problems[0].message.contains("entry array CRC mismatch")
                && t.problems[0].kind == crate::problem::ProblemKind::Note,
            "{:?}",
            t.problems
        );
        assert_eq!(t.partitions[0].label.as_deref(), Some("root"));

        // Corrupt the backup header too: no GPT.
        disk.write_at(&[0xFF], (8 << 20) - 512 + 30).unwrap();
        assert!(read_gpt(&disk).unwrap().is_none());
    }

    #[test]
    fn guid_text_is_canonical() {
        assert_eq!(
            guid_text(&LINUX_FILESYSTEM),
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        );
    }
}
