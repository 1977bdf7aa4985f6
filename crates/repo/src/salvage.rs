//! Salvage: a NEW restore point written from a damaged one, in which what
//! cannot be read reads as zeros, and says so.
//!
//! `repo repair --salvage` writes it beside the damaged restore point
//! (same VM, same time, a fresh id), never in place. Its manifest carries
//! a [`Salvage`] record from the moment it exists: the restore point it
//! came from and, per disk, every unreadable range (offset, length) in
//! bytes. A range is a whole chunk whose file is damaged or missing (`[k *
//! chunk_size, (k + 1) * chunk_size)`, the last one cut at the disk's
//! end), or the whole disk when its index is lost. The chunks it keeps are
//! the damaged restore point's own (touched, so gc keeps them), nothing is
//! copied. Which files of a recognised filesystem the ranges hit is worked
//! out by the caller, who can read filesystems (the CLI, with
//! lifeboat-browse), and added by [`Repository::record_salvaged_files`].

use crate::digest::Digest;
use crate::error::Result;
use crate::model::{DiskIndex, DiskStats, Manifest};
use crate::repository::Repository;
use crate::writer::NewDisk;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The salvage record of a salvaged restore point's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Salvage {
    /// `vm@id` of the damaged restore point it was written from.
    pub salvaged_from: String,
    /// When `repo repair --salvage` wrote it.
    pub time: DateTime<Utc>,
    /// What was damaged in the restore point it came from.
    pub reason: String,
    /// Every disk, with the ranges that read as zeros (empty: intact).
    pub disks: Vec<SalvagedDisk>,
    /// Disks of the damaged restore point that are not in this one: its
    /// manifest was lost and their index files do not read, so not even
    /// their size is known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_disks: Vec<String>,
}

/// One disk of a salvaged restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalvagedDisk {
    pub disk: String,
    /// Ranges that could not be read and read as zeros, in disk order.
    pub unreadable: Vec<ByteRange>,
    /// Their total length.
    pub unreadable_bytes: u64,
    /// Files of a recognised filesystem on the disk that do not read whole
    /// from the damaged restore point (`volume:/path`; a directory that
    /// does not list ends in `/`), when they were worked out (`repo repair
    /// --salvage` does, see [`Repository::record_salvaged_files`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
}

/// `length` bytes from `offset` of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

/// A disk of the damaged restore point: its index, or `None` when the
/// index is lost (the whole disk is unreadable).
pub(crate) struct SourceDisk {
    pub name: String,
    pub size: u64,
    pub chunk_size: u32,
    pub index: Option<DiskIndex>,
}

/// The damaged restore point to salvage.
pub(crate) struct SalvageSource {
    pub vm: String,
    pub id: String,
    pub time: DateTime<Utc>,
    pub reason: String,
    pub disks: Vec<SourceDisk>,
    /// Disks known only by an index file that does not read.
    pub lost: Vec<String>,
}

/// Appends `[offset, offset + length)` to `ranges`, merging it with the
/// last range when they touch.
fn push_range(ranges: &mut Vec<ByteRange>, offset: u64, length: u64) {
    if let Some(last) = ranges.last_mut() {
        if last.offset + last.length == offset {
            last.length += length;
            return;
        }
    }
    ranges.push(ByteRange { offset, length });
}

impl Repository {
    /// Writes the salvaged restore point of `src`: every chunk in `bad`,
    /// or not present any more, reads as zeros and is listed.
    pub(crate) fn write_salvaged(
        &self,
        src: &SalvageSource,
        bad: &HashSet<Digest>,
    ) -> Result<Manifest> {
        let writer = self.begin_backup()?;
        let mut disks = Vec::with_capacity(src.disks.len());
        let mut record = Vec::with_capacity(src.disks.len());
        for d in &src.disks {
            let cs = u64::from(d.chunk_size);
            let count = DiskIndex::chunk_count(d.size, d.chunk_size) as usize;
            let mut digests: Vec<Option<Digest>> = vec![None; count];
            let mut ranges = Vec::new();
            let mut stats = DiskStats::default();
            match &d.index {
                None => {
                    if d.size > 0 {
                        push_range(&mut ranges, 0, d.size);
                    }
                }
                Some(index) => {
                    for (k, digest) in index.digests.iter().enumerate() {
                        let Some(digest) = digest else {
                            stats.zero_chunks += 1;
                            continue;
                        };
                        if !bad.contains(digest) && writer.reuse_chunk(digest)? {
                            stats.data_chunks += 1;
                            if let Some(slot) = digests.get_mut(k) {
                                *slot = Some(*digest);
                            }
                            continue;
                        }
                        let offset = k as u64 * cs;
                        push_range(&mut ranges, offset, cs.min(d.size - offset));
                    }
                }
            }
            let unreadable_bytes = ranges.iter().map(|r| r.length).sum();
            record.push(SalvagedDisk {
                disk: d.name.clone(),
                unreadable: ranges,
                unreadable_bytes,
                files: None,
            });
            disks.push(NewDisk {
                name: d.name.clone(),
                source: format!("salvaged from {}@{} disk {}", src.vm, src.id, d.name),
                index: DiskIndex {
                    chunk_size: d.chunk_size,
                    disk_size: d.size,
                    digests,
                },
                stats,
                format: None,
                live: None,
            });
        }
        let salvage = Salvage {
            salvaged_from: format!("{}@{}", src.vm, src.id),
            time: Utc::now(),
            reason: src.reason.clone(),
            disks: record,
            lost_disks: src.lost.clone(),
        };
        writer.commit_with(&src.vm, disks, src.time, Some(salvage), None)
    }
}

impl Repository {
    /// Records in salvaged restore point `m`'s manifest, per disk, the
    /// files the unreadable ranges hit (found by the caller, who can read
    /// filesystems). Rewrites the manifest atomically under the snapshots
    /// lock, like a scan record.
    pub fn record_salvaged_files(
        &self,
        m: &Manifest,
        files: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<Manifest> {
        let _guard = self.snapshots_lock("salvage record")?;
        let mut current = self.read_manifest(&m.vm, &m.id)?;
        let Some(salvage) = current.salvage.as_mut() else {
            return Err(crate::error::Error::invalid(
                current.name(),
                "is not a salvaged restore point",
            ));
        };
        for d in &mut salvage.disks {
            if let Some(list) = files.get(&d.disk) {
                d.files = Some(list.clone());
            }
        }
        self.write_manifest(&current)?;
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_ranges_merge() {
        let mut r = Vec::new();
        push_range(&mut r, 0, 10);
        push_range(&mut r, 10, 5);
        push_range(&mut r, 20, 5);
        assert_eq!(
            r,
            vec![
                ByteRange {
                    offset: 0,
                    length: 15
                },
                ByteRange {
                    offset: 20,
                    length: 5
                }
            ]
        );
    }
}
