//! [`Qcow2Disk`]: the read-only qcow2 image (v2 and v3).
//!
//! A guest offset is mapped in two levels: the L1 table (read whole at open)
//! gives the host offset of an L2 table, the L2 entry gives the cluster:
//! unallocated (read the backing file, or zeros), a v3 zero cluster, a
//! standard cluster at a cluster-aligned host offset, or a compressed cluster
//! (byte offset + sector count, see [`super::layout::compressed_offset_bits`]).
//! Reads and extents walk the range in *runs* of clusters that map the same
//! way (contiguous host clusters become one `pread`, unallocated clusters one
//! backing read). L2 tables are cached in a small LRU behind a mutex; all I/O
//! is positioned, so one disk is shared by many threads.

use super::compress::decompress;
use super::header::{check_inside, read_exact, Header};
use super::l2cache::L2Cache;
use super::layout::*;
use crate::detect::{detect_format, open_in_chain};
use crate::follow::{AllowedPaths, Chain, LinkKind};
use crate::ImageFormat;
use lifeboat_vdisk::{check_range, push_merged, Error, Extent, ReadDisk, Result};
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A read-only qcow2 image, with its backing chain opened.
pub struct Qcow2Disk {
    what: String,
    file: File,
    file_len: u64,
    header: Header,
    l1: Vec<u64>,
    backing: Option<Arc<dyn ReadDisk>>,
    cache: Mutex<L2Cache>,
}

/// How a run of guest bytes is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Not allocated here: the backing file, or zeros.
    Unallocated,
    /// A v3 zero cluster.
    Zero,
    /// Standard clusters; the host offset of the run's first byte.
    Data(u64),
    /// One compressed cluster: the compressed bytes and where they lie.
    Compressed { offset: u64, len: u64 },
}

impl Qcow2Disk {
    /// Opens the qcow2 image at `path`; an image with a backing file is
    /// refused (see [`Qcow2Disk::open_with`]).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &AllowedPaths::none())
    }

    /// Opens the qcow2 image at `path` and its backing chain, following
    /// only backing files that `allowed` allows (see [`crate::follow`]).
    pub fn open_with(path: &Path, allowed: &AllowedPaths) -> Result<Self> {
        let what = format!("qcow2 {}", path.display());
        let mut chain = Chain::new(allowed);
        chain.enter(&what, path)?;
        Self::open_in(path, &mut chain)
    }

    /// Opens `path` as one link of a backing chain; `chain` already holds
    /// this image's canonical path and those of the images above it.
    pub(crate) fn open_in(path: &Path, chain: &mut Chain<'_>) -> Result<Self> {
        let what = format!("qcow2 {}", path.display());
        let file = File::open(path).map_err(|e| Error::io(&what, 0, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(&what, 0, e))?.len();
        let header = Header::parse(&file, file_len, &what)?;
        let mut raw = vec![0u8; header.l1_size as usize * 8];
        read_exact(&file, &mut raw, header.l1_table_offset, &what, "L1 table")?;
        let l1 = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let backing = match &header.backing_file {
            Some(name) => Some(open_backing(
                path,
                name,
                header.backing_format.as_deref(),
                chain,
                &what,
            )?),
            None => None,
        };
        let cache = Mutex::new(L2Cache::new(1usize << header.cluster_bits));
        Ok(Qcow2Disk {
            what,
            file,
            file_len,
            header,
            l1,
            backing,
            cache,
        })
    }

    /// The qcow2 version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    /// The backing disk, if the image has one.
    pub fn backing(&self) -> Option<&Arc<dyn ReadDisk>> {
        self.backing.as_ref()
    }

    fn l2_bits(&self) -> u32 {
        self.header.cluster_bits - 3
    }

    /// The L2 table of L1 entry `index`, or `None` when it is unallocated.
    fn l2_table(&self, index: u64) -> Result<Option<Arc<[u64]>>> {
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.l1.get(i))
            .copied()
            .ok_or_else(|| {
                Error::corrupt(&self.what, format!("L1 index {index} is past the L1 table"))
            })?;
        let offset = entry & L1E_OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        if let Some(table) = self.lock_cache().get(offset) {
            return Ok(Some(table));
        }
        let cs = self.cluster_size();
        if !offset.is_multiple_of(cs) {
            return Err(Error::corrupt(
                &self.what,
                format!("L1 entry {index} points to unaligned L2 table offset {offset}"),
            ));
        }
        check_inside(
            &self.what,
            &format!("L2 table of L1 entry {index}"),
            offset,
            cs,
            self.file_len,
        )?;
        let mut raw = vec![0u8; cs as usize];
        read_exact(&self.file, &mut raw, offset, &self.what, "L2 table")?;
        let table: Arc<[u64]> = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        self.lock_cache().insert(offset, table.clone());
        Ok(Some(table))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, L2Cache> {
        // A panic while holding the lock cannot leave the cache inconsistent.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Classifies the L2 entry of the cluster at guest offset `guest`.
    fn classify(&self, entry: u64, guest: u64) -> Result<Mapping> {
        let cb = self.header.cluster_bits;
        if entry & OFLAG_COMPRESSED != 0 {
            let x = compressed_offset_bits(cb);
            let offset = entry & ((1u64 << x) - 1);
            let sectors = (entry >> x) & ((1u64 << (62 - x)) - 1);
            let end = (offset & !(COMPRESSED_SECTOR - 1)) + (sectors + 1) * COMPRESSED_SECTOR;
            if offset >= self.file_len {
                return Err(Error::corrupt(
                    &self.what,
                    format!(
                        "L2 entry of guest offset {guest} points to compressed data at {offset}, past the end of the file ({} bytes)",
                        self.file_len
                    ),
                ));
            }
            let len = end.min(self.file_len) - offset;
            return Ok(Mapping::Compressed { offset, len });
        }
        if self.header.version >= 3 && entry & OFLAG_ZERO != 0 {
            return Ok(Mapping::Zero);
        }
        let host = entry & L2E_OFFSET_MASK;
        if host == 0 {
            return Ok(Mapping::Unallocated);
        }
        if !host.is_multiple_of(self.cluster_size()) {
            return Err(Error::corrupt(
                &self.what,
                format!("L2 entry of guest offset {guest} points to unaligned host offset {host}"),
            ));
        }
        if host >= self.file_len {
            return Err(Error::corrupt(
                &self.what,
                format!(
                    "L2 entry of guest offset {guest} points to host offset {host}, past the end of the file ({} bytes)",
                    self.file_len
                ),
            ));
        }
        Ok(Mapping::Data(host))
    }

    /// The longest run starting at `pos` (before `end`) whose clusters map the
    /// same way; a compressed cluster is a run of its own.
    fn next_run(&self, pos: u64, end: u64) -> Result<(Mapping, u64)> {
        let cb = self.header.cluster_bits;
        let cs = self.cluster_size();
        let l2_bits = self.l2_bits();
        let base = pos & !(cs - 1);
        let mut first: Option<Mapping> = None;
        let mut cur = pos;
        while cur < end {
            let cluster = cur >> cb;
            let l1_index = cluster >> l2_bits;
            let table_end = ((l1_index + 1) << l2_bits) << cb;
            let (mapping, step_end) = match self.l2_table(l1_index)? {
                None => (Mapping::Unallocated, table_end.min(end)),
                Some(table) => {
                    let idx = (cluster & ((1u64 << l2_bits) - 1)) as usize;
                    let entry = table.get(idx).copied().unwrap_or(0);
                    let cluster_start = cluster << cb;
                    (
                        self.classify(entry, cluster_start)?,
                        (cluster_start + cs).min(end),
                    )
                }
            };
            match first {
                None => first = Some(mapping),
                Some(Mapping::Data(h0)) if mapping == Mapping::Data(h0 + (cur - base)) => {}
                Some(f) if f == mapping && matches!(f, Mapping::Unallocated | Mapping::Zero) => {}
                Some(_) => break,
            }
            cur = step_end;
            if matches!(first, Some(Mapping::Compressed { .. })) {
                break;
            }
        }
        let mapping = match first {
            Some(Mapping::Data(h0)) => Mapping::Data(h0 + (pos - base)),
            Some(m) => m,
            None => Mapping::Zero, // pos >= end: an empty run
        };
        Ok((mapping, cur - pos))
    }

    /// Reads host bytes; the part past the end of the file reads as zeros.
    fn read_host(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let avail = self.file_len.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(avail);
        read_exact(&self.file, head, offset, &self.what, "data cluster")?;
        tail.fill(0);
        Ok(())
    }

    /// Reads from the backing file (zeros without one, or past its end).
    fn read_backing(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let Some(backing) = &self.backing else {
            buf.fill(0);
            return Ok(());
        };
        let avail = backing.size().saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(avail);
        if !head.is_empty() {
            backing.read_at(head, offset)?;
        }
        tail.fill(0);
        Ok(())
    }

    fn read_compressed(&self, buf: &mut [u8], guest: u64, offset: u64, len: u64) -> Result<()> {
        let cs = self.cluster_size();
        let mut input = vec![0u8; len as usize];
        read_exact(
            &self.file,
            &mut input,
            offset,
            &self.what,
            "compressed cluster",
        )?;
        let mut cluster = vec![0u8; cs as usize];
        decompress(self.header.compression_type, &input, &mut cluster).map_err(|detail| {
            Error::corrupt(
                &self.what,
                format!(
                    "compressed cluster of guest offset {} ({len} bytes at host offset {offset}) fails to inflate: {detail}",
                    guest & !(cs - 1)
                ),
            )
        })?;
        let start = (guest & (cs - 1)) as usize;
        let part = cluster
            .get(start..start + buf.len())
            .ok_or_else(|| Error::corrupt(&self.what, "compressed read crosses a cluster"))?;
        buf.copy_from_slice(part);
        Ok(())
    }
}

/// Opens the backing file `name` of the image at `path` (relative names are
/// relative to the image's directory) when the chain allows it, as the
/// format the header declares; the content decides nothing. Without a
/// declared format the backing file is read as raw, and refused when its
/// content looks like another format: probing it could turn a raw disk a
/// guest wrote into a qcow2 image naming files of its own.
fn open_backing(
    path: &Path,
    name: &[u8],
    format: Option<&str>,
    chain: &mut Chain<'_>,
    what: &str,
) -> Result<Arc<dyn ReadDisk>> {
    let resolved = chain.follow(what, path, LinkKind::BackingFile, name)?;
    let format = match format {
        Some(format) => ImageFormat::from_name(format).ok_or_else(|| {
            Error::unsupported(
                what,
                format!("backing file {} has format {format:?}", resolved.display()),
            )
        })?,
        None => match detect_format(&resolved)? {
            ImageFormat::Raw => ImageFormat::Raw,
            looks_like => {
                return Err(Error::invalid(
                    what,
                    format!(
                        "backing file {} has no recorded format and looks like {looks_like}; \
                         refusing to guess (a raw disk can look like anything). \
                         Record the format with: qemu-img rebase -u -b {} -F {looks_like} {}",
                        resolved.display(),
                        String::from_utf8_lossy(name),
                        path.display()
                    ),
                ))
            }
        },
    };
    open_in_chain(&resolved, format, chain)
}

impl ReadDisk for Qcow2Disk {
    fn size(&self) -> u64 {
        self.header.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size())?;
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let (mapping, len) = self.next_run(pos, end)?;
            let start = (pos - offset) as usize;
            let chunk = buf
                .get_mut(start..start + len as usize)
                .ok_or_else(|| Error::corrupt(&self.what, "run outside the read buffer"))?;
            match mapping {
                Mapping::Unallocated => self.read_backing(chunk, pos)?,
                Mapping::Zero => chunk.fill(0),
                Mapping::Data(host) => self.read_host(chunk, host)?,
                Mapping::Compressed { offset, len } => {
                    self.read_compressed(chunk, pos, offset, len)?
                }
            }
            pos += len;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size());
        let mut list = Vec::new();
        let mut pos = offset;
        while pos < end {
            let (mapping, len) = self.next_run(pos, end)?;
            let run_end = pos + len;
            match (mapping, &self.backing) {
                (Mapping::Data(_) | Mapping::Compressed { .. }, _) => {
                    push_merged(&mut list, Extent::data(pos, len))
                }
                (Mapping::Zero, _) | (Mapping::Unallocated, None) => {
                    push_merged(&mut list, Extent::zero(pos, len))
                }
                (Mapping::Unallocated, Some(backing)) => {
                    let covered = run_end.min(backing.size()).max(pos);
                    // Clamp the backing's extents; a gap it leaves is data.
                    let mut p = pos;
                    if covered > pos {
                        for e in backing.extents(pos, covered - pos)? {
                            let s = e.offset.max(p);
                            let t = e.end().min(covered);
                            if t > s {
                                push_merged(&mut list, Extent::data(p, s - p));
                                push_merged(
                                    &mut list,
                                    Extent {
                                        offset: s,
                                        length: t - s,
                                        kind: e.kind,
                                    },
                                );
                                p = t;
                            }
                        }
                    }
                    push_merged(&mut list, Extent::data(p, covered.saturating_sub(p)));
                    push_merged(&mut list, Extent::zero(covered, run_end - covered));
                }
            }
            pos = run_end;
        }
        Ok(list)
    }

    fn describe(&self) -> String {
        self.what.clone()
    }

    fn depth(&self) -> u32 {
        1 + self.backing.as_ref().map_or(0, |b| b.depth())
    }
}
