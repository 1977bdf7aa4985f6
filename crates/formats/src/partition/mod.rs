//! Partition tables read over any [`ReadDisk`]: GPT ([`gpt_read`]), MBR with
//! extended/logical partitions ([`mbr`]), or none (the whole disk is one
//! volume). [`gpt_layout`] owns the GPT header and entry layout for both the
//! reader and the writer ([`crate::gpt`]).
//!
//! Design notes:
//! - [`read_partition_table`] never fails on bad content: a damaged table is
//!   reported in [`PartitionTable::problems`], a bad partition (out of range,
//!   overlapping another one, a logical partition outside its extended
//!   container) keeps its entry with a problem list and `usable = false`, and
//!   only the usable ones become [`Partition::slice`]s. Only I/O errors of the
//!   disk itself are returned as `Err`.
//! - Every problem carries its [`crate::problem::ProblemKind`]: an empty entry and the backup
//!   GPT standing in for a damaged primary are notes (nothing is lost),
//!   everything else leaves data unserved.
//! - Sectors are 512 bytes for MBR; GPT is probed at 512 and 4096-byte
//!   logical blocks (the header must sit at LBA 1).
//! - Overlaps: when two partitions overlap, both are skipped (there is no way
//!   to tell which one is right, and a read-only publisher should not guess).
//!   An MBR extended container is not a volume and is not checked against the
//!   logical partitions inside it.

pub mod gpt_layout;
pub mod gpt_read;
pub mod mbr;

use crate::problem::VolumeProblem;
use lifeboat_vdisk::{ReadDisk, Result, SliceDisk};
use std::sync::Arc;

/// Bytes per MBR sector.
pub const MBR_SECTOR: u64 = 512;

/// Which kind of table a disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Gpt,
    Mbr,
    /// No partition table: the whole disk is one volume.
    None,
}

/// One partition table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Linux numbering: GPT entry index + 1; MBR 1-4 primary, 5.. logical.
    pub number: u32,
    /// Byte offset on the disk.
    pub start: u64,
    /// Byte length.
    pub length: u64,
    /// A short type name (`linux-filesystem`, `linux-lvm`, `efi-system`,
    /// `mbr-0x83`...) or the type GUID when unknown.
    pub type_hint: String,
    /// The GPT partition name, if any.
    pub label: Option<String>,
    /// The GPT type GUID in its canonical text form.
    pub type_guid: Option<String>,
    /// The MBR type byte.
    pub mbr_type: Option<u8>,
    /// Why this partition is not usable (empty when it is).
    pub problems: Vec<VolumeProblem>,
}

impl Partition {
    /// True when no problem was found with this entry.
    pub fn usable(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The result of reading a disk's partition table.
#[derive(Debug, Clone)]
pub struct PartitionTable {
    pub scheme: Scheme,
    /// Every entry found, usable or not, in table order.
    pub partitions: Vec<Partition>,
    /// Problems with the table itself (bad CRC, fallback to the backup GPT,
    /// a looping EBR chain...).
    pub problems: Vec<VolumeProblem>,
}

impl PartitionTable {
    /// The partitions without problems.
    pub fn usable(&self) -> impl Iterator<Item = &Partition> {
        self.partitions.iter().filter(|p| p.usable())
    }
}

/// Reads the partition table of `disk`: GPT when a protective MBR (or a GPT
/// header without one) is found, MBR when the boot signature and sane
/// entries are there, [`Scheme::None`] otherwise.
pub fn read_partition_table(disk: &dyn ReadDisk) -> Result<PartitionTable> {
    let size = disk.size();
    let mut sector0 = [0u8; 512];
    if size < MBR_SECTOR {
        return Ok(PartitionTable {
            scheme: Scheme::None,
            partitions: Vec::new(),
            problems: Vec::new(),
        });
    }
    disk.read_at(&mut sector0, 0)?;
    let mbr = mbr::parse_sector0(&sector0);
    let wants_gpt = mbr.as_ref().map(|m| m.protective).unwrap_or(false);
    if wants_gpt || mbr.is_none() {
        if let Some(mut table) = gpt_read::read_gpt(disk)? {
            if !wants_gpt {
                table.problems.push(VolumeProblem::unserved(
                    "GPT found without a protective MBR",
                ));
            }
            validate(&mut table.partitions, size);
            return Ok(table);
        }
        if wants_gpt {
            return Ok(PartitionTable {
                scheme: Scheme::Gpt,
                partitions: Vec::new(),
                problems: vec![VolumeProblem::unserved(
                    "protective MBR found but neither the primary nor the backup GPT is valid",
                )],
            });
        }
    }
    match mbr {
        Some(primary) => {
            let mut table = mbr::read_mbr(disk, &primary)?;
            validate(&mut table.partitions, size);
            Ok(table)
        }
        None => Ok(PartitionTable {
            scheme: Scheme::None,
            partitions: Vec::new(),
            problems: Vec::new(),
        }),
    }
}

/// Marks partitions that are empty, reach past `disk_size` or overlap another.
fn validate(parts: &mut [Partition], disk_size: u64) {
    for p in parts.iter_mut() {
        if p.length == 0 {
            // Nothing to serve: only a note.
            p.problems.push(VolumeProblem::note(format!(
                "partition {} is empty",
                p.number
            )));
            continue;
        }
        match p.start.checked_add(p.length) {
            Some(end) if end <= disk_size => {}
            _ => p.problems.push(VolumeProblem::unserved(format!(
                "partition {} ({} bytes at {}) reaches past the end of the disk ({} bytes)",
                p.number, p.length, p.start, disk_size
            ))),
        }
    }
    let n = parts.len();
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&parts[i], &parts[j]);
            if a.length == 0 || b.length == 0 {
                continue;
            }
            let a_end = a.start.saturating_add(a.length);
            let b_end = b.start.saturating_add(b.length);
            if a.start < b_end && b.start < a_end {
                let (na, nb) = (a.number, b.number);
                let (sa, sb) = (a.start, b.start);
                parts[i].problems.push(VolumeProblem::unserved(format!(
                    "partition {na} (bytes {sa}..{a_end}) overlaps partition {nb} (bytes {sb}..{b_end})"
                )));
                parts[j].problems.push(VolumeProblem::unserved(format!(
                    "partition {nb} (bytes {sb}..{b_end}) overlaps partition {na} (bytes {sa}..{a_end})"
                )));
            }
        }
    }
}

/// The byte window of `part` on `disk` as a read-only disk named `name`.
pub fn slice(disk: &Arc<dyn ReadDisk>, part: &Partition, name: &str) -> Result<Arc<dyn ReadDisk>> {
    Ok(Arc::new(SliceDisk::new(
        disk.clone(),
        part.start,
        part.length,
        name,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::ProblemKind;

    fn part(number: u32, start: u64, length: u64) -> Partition {
        Partition {
            number,
            start,
            length,
            type_hint: String::new(),
            label: None,
            type_guid: None,
            mbr_type: None,
            problems: Vec::new(),
        }
    }

    #[test]
    fn validate_flags_overlaps_and_out_of_range_only() {
        let mut parts = vec![
            part(1, 0, 100),
            part(2, 100, 100),
            part(3, 150, 10),
            part(4, 900, 200),
            part(5, 300, 0),
        ];
        validate(&mut parts, 1000);
        assert!(parts[0].usable());
        let first = |i: usize| {
            (
                parts[i].problems[0].kind,
                parts[i].problems[0].message.clone(),
            )
        };
        let (kind, msg) = first(1);
        assert!(msg.contains("overlaps partition 3") && kind == ProblemKind::Unserved);
        let (kind, msg) = first(2);
        assert!(msg.contains("overlaps partition 2") && kind == ProblemKind::Unserved);
        let (kind, msg) = first(3);
        assert!(msg.contains("past the end") && kind == ProblemKind::Unserved);
        let (kind, msg) = first(4);
        assert!(msg.contains("empty") && kind == ProblemKind::Note);
    }
}
