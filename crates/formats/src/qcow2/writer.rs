//! [`Qcow2Writer`]: creates a qcow2 v3 image (64 KiB clusters, no backing,
//! 16-bit refcounts), written from many threads in any order, as restore
//! does.
//!
//! File layout while writing and after [`Qcow2Writer::finish`]:
//!
//! ```text
//!  cluster 0        header (provisional until finish: "corrupt" bit set, so
//!                   neither QEMU nor our reader trusts an unfinished file)
//!  clusters 1..N    guest data clusters, appended in allocation order
//!  --- written by finish ---
//!  L2 tables        one cluster per L1 entry that maps any data
//!  L1 table         l1_size entries, rounded up to whole clusters
//!  refcount table   then the refcount blocks; every cluster has refcount 1
//! ```
//!
//! The guest-to-host map is kept in memory as the L2 tables themselves
//! (`l1 index -> [host offset; 8192]`, 64 KiB per 512 MiB of guest data
//! touched), under one mutex that also owns the allocation cursor.
//!
//! Write rules (each write is split at cluster boundaries):
//! - cluster already allocated: `pwrite` the bytes in place (outside the lock);
//! - unallocated, all zeros: nothing (an unallocated cluster reads as zero);
//! - unallocated, a full cluster: allocate under the lock (consecutive
//!   clusters of one write get consecutive host clusters, so a 4 MiB piece is
//!   one `pwrite`), then write outside the lock;
//! - unallocated, part of a cluster: the read-modify-write of a fresh cluster
//!   (zeros + the new bytes) is written *before* the mapping is published,
//!   under the lock, so a concurrent write to the same cluster either sees
//!   no mapping and waits, or sees the complete cluster.
//!
//! [`WriteDisk::flush`] syncs the data written so far; the mapping only
//! reaches the file in [`Qcow2Writer::finish`], so a crash before finish
//! leaves a file both QEMU and [`super::Qcow2Disk`] refuse (never a
//! half-mapped image that looks valid).

use super::header::Header;
use super::layout::*;
use lifeboat_vdisk::{check_range, push_merged, Error, Extent, ReadDisk, Result, WriteDisk};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Cluster size of images the writer creates (QEMU's default).
const CLUSTER_BITS: u32 = 16;
const CS: u64 = 1 << CLUSTER_BITS;
/// L2 entries per table.
const L2_ENTRIES: u64 = CS / 8;
/// Refcount entries (16 bits each) per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CS * 8 / 16;

/// A qcow2 image being written. Call [`Qcow2Writer::finish`] to write the
/// metadata; until then the file is marked unusable.
pub struct Qcow2Writer {
    what: String,
    file: File,
    size: u64,
    state: Mutex<State>,
}

struct State {
    /// Host offset of the next free cluster (data is appended).
    next_free: u64,
    /// L1 index -> host offset per guest cluster of that L2 range (0 = none).
    tables: HashMap<u64, Box<[u64]>>,
}

impl State {
    fn lookup(&self, cluster: u64) -> u64 {
        self.tables
            .get(&(cluster / L2_ENTRIES))
            .and_then(|t| t.get((cluster % L2_ENTRIES) as usize))
            .copied()
            .unwrap_or(0)
    }

    fn reserve(&mut self, what: &str) -> Result<u64> {
        let host = self.next_free;
        self.next_free = host
            .checked_add(CS)
            .ok_or_else(|| Error::invalid(what, "image file offset overflows"))?;
        Ok(host)
    }

    fn publish(&mut self, cluster: u64, host: u64) {
        let table = self
            .tables
            .entry(cluster / L2_ENTRIES)
            .or_insert_with(|| vec![0u64; L2_ENTRIES as usize].into_boxed_slice());
        if let Some(slot) = table.get_mut((cluster % L2_ENTRIES) as usize) {
            *slot = host;
        }
    }
}

impl Qcow2Writer {
    /// Creates (or truncates) `path` as an empty qcow2 v3 image of
    /// `virtual_size` bytes (a multiple of 512, as QEMU requires).
    pub fn create(path: &Path, virtual_size: u64) -> Result<Self> {
        let what = format!("qcow2 {}", path.display());
        if !virtual_size.is_multiple_of(512) {
            return Err(Error::invalid(
                &what,
                format!(
                    "virtual size {virtual_size} is not a multiple of 512 (QEMU would truncate it)"
                ),
            ));
        }
        if l1_entries(virtual_size) * 8 > MAX_L1_BYTES {
            return Err(Error::invalid(
                &what,
                format!("virtual size {virtual_size} is too large for qcow2"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(&what, 0, e))?;
        let provisional = Header {
            incompatible: INCOMPAT_CORRUPT,
            l1_size: 0,
            ..header_for(virtual_size)
        };
        file.write_all_at(&provisional.encode_v3(), 0)
            .map_err(|e| Error::io(&what, 0, e))?;
        file.set_len(CS).map_err(|e| Error::io(&what, 0, e))?;
        Ok(Qcow2Writer {
            what,
            file,
            size: virtual_size,
            state: Mutex::new(State {
                next_free: CS,
                tables: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pwrite(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| Error::io(&self.what, offset, e))
    }

    /// Writes a part of an unallocated cluster: under the lock, re-checks,
    /// then writes the whole fresh cluster before publishing it.
    fn write_partial_new(&self, part: &[u8], cluster: u64, in_off: usize) -> Result<()> {
        let mut st = self.lock();
        let host = st.lookup(cluster);
        if host != 0 {
            drop(st);
            return self.pwrite(part, host + in_off as u64);
        }
        let host = st.reserve(&self.what)?;
        let mut whole = vec![0u8; CS as usize];
        whole
            .get_mut(in_off..in_off + part.len())
            .ok_or_else(|| Error::invalid(&self.what, "partial write crosses a cluster"))?
            .copy_from_slice(part);
        self.pwrite(&whole, host)?;
        st.publish(cluster, host);
        Ok(())
    }

    /// Writes the L2 tables, the L1 table, the refcount structures and the
    /// final header, then syncs the file. The image is usable afterwards.
    pub fn finish(self) -> Result<()> {
        let state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        let what = self.what;
        let file = self.file;
        let write = |buf: &[u8], offset: u64| {
            file.write_all_at(buf, offset)
                .map_err(|e| Error::io(&what, offset, e))
        };

        let mut l1_indices: Vec<u64> = state.tables.keys().copied().collect();
        l1_indices.sort_unstable();
        let mut pos = state.next_free;
        let l1_size = l1_entries(self.size);
        let mut l1 = vec![0u8; (l1_size * 8).div_ceil(CS).max(1) as usize * CS as usize];
        for index in &l1_indices {
            let Some(table) = state.tables.get(index) else {
                continue;
            };
            let mut raw = Vec::with_capacity(CS as usize);
            for &host in table.iter() {
                let entry = if host == 0 { 0 } else { host | OFLAG_COPIED };
                raw.extend_from_slice(&entry.to_be_bytes());
            }
            write(&raw, pos)?;
            let slot = (*index * 8) as usize;
            l1.get_mut(slot..slot + 8)
                .ok_or_else(|| {
                    Error::invalid(&what, format!("L1 index {index} outside the table"))
                })?
                .copy_from_slice(&(pos | OFLAG_COPIED).to_be_bytes());
            pos += CS;
        }
        let l1_offset = pos;
        write(&l1, l1_offset)?;
        pos += l1.len() as u64;

        // Refcount structures cover every cluster, themselves included.
        let base = pos / CS;
        let (mut blocks, mut table_clusters) = (0u64, 0u64);
        loop {
            let total = base + table_clusters + blocks;
            let need_blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let need_table = (need_blocks * 8).div_ceil(CS);
            if need_blocks == blocks && need_table == table_clusters {
                break;
            }
            (blocks, table_clusters) = (need_blocks, need_table);
        }
        let total = base + table_clusters + blocks;
        let table_offset = pos;
        let first_block = table_offset + table_clusters * CS;
        let mut table = vec![0u8; (table_clusters * CS) as usize];
        for (b, slot) in table.chunks_exact_mut(8).take(blocks as usize).enumerate() {
            slot.copy_from_slice(&(first_block + b as u64 * CS).to_be_bytes());
        }
        write(&table, table_offset)?;
        for b in 0..blocks {
            let mut block = vec![0u8; CS as usize];
            let first = b * REFCOUNTS_PER_BLOCK;
            let count = total.saturating_sub(first).min(REFCOUNTS_PER_BLOCK) as usize;
            for entry in block.chunks_exact_mut(2).take(count) {
                entry.copy_from_slice(&1u16.to_be_bytes());
            }
            write(&block, first_block + b * CS)?;
        }

        let header = Header {
            l1_size: l1_size as u32,
            l1_table_offset: l1_offset,
            refcount_table_offset: table_offset,
            refcount_table_clusters: table_clusters as u32,
            ..header_for(self.size)
        };
        file.sync_all().map_err(|e| Error::io(&what, 0, e))?;
        write(&header.encode_v3(), 0)?;
        file.sync_all().map_err(|e| Error::io(&what, 0, e))
    }
}

fn l1_entries(size: u64) -> u64 {
    size.div_ceil(CS * L2_ENTRIES)
}

fn header_for(size: u64) -> Header {
    Header {
        version: 3,
        cluster_bits: CLUSTER_BITS,
        size,
        l1_size: 0,
        l1_table_offset: 0,
        refcount_table_offset: 0,
        refcount_table_clusters: 0,
        incompatible: 0,
        refcount_order: DEFAULT_REFCOUNT_ORDER,
        header_length: V3_HEADER_LEN as u32,
        compression_type: COMPRESSION_DEFLATE,
        backing_file: None,
        backing_format: None,
    }
}

impl ReadDisk for Qcow2Writer {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let in_off = pos % CS;
            let n = (CS - in_off).min((buf.len() - done) as u64) as usize;
            let host = self.lock().lookup(pos / CS);
            let chunk = &mut buf[done..done + n];
            if host == 0 {
                chunk.fill(0);
            } else {
                read_or_zero(&self.file, chunk, host + in_off)
                    .map_err(|e| Error::io(&self.what, host, e))?;
            }
            done += n;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size);
        let mut list = Vec::new();
        let st = self.lock();
        let mut pos = offset;
        while pos < end {
            let cluster = pos / CS;
            let next = if st.tables.contains_key(&(cluster / L2_ENTRIES)) {
                (cluster + 1) * CS
            } else {
                (cluster / L2_ENTRIES + 1) * L2_ENTRIES * CS
            }
            .min(end);
            let extent = if st.lookup(cluster) != 0 {
                Extent::data(pos, next - pos)
            } else {
                Extent::zero(pos, next - pos)
            };
            push_merged(&mut list, extent);
            pos = next;
        }
        Ok(list)
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// Reads at `offset`; bytes past the end of the file (a cluster published
/// but not yet written by a concurrent writer) read as zeros.
fn read_or_zero(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[got..].fill(0);
    Ok(())
}

impl WriteDisk for Qcow2Writer {
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size)?;
        // (host offset, start in buf, length) to write after the lock.
        let mut ops: Vec<(u64, usize, usize)> = Vec::new();
        // (cluster, offset in cluster, start in buf, length) of partial
        // writes to unallocated clusters.
        let mut partial: Vec<(u64, usize, usize, usize)> = Vec::new();
        {
            let mut st = self.lock();
            let mut done = 0usize;
            while done < buf.len() {
                let pos = offset + done as u64;
                let cluster = pos / CS;
                let in_off = (pos % CS) as usize;
                let n = (CS as usize - in_off).min(buf.len() - done);
                let piece = &buf[done..done + n];
                let host = st.lookup(cluster);
                if host != 0 {
                    ops.push((host + in_off as u64, done, n));
                } else if piece.iter().any(|&b| b != 0) {
                    if n == CS as usize {
                        let host = st.reserve(&self.what)?;
                        st.publish(cluster, host);
                        ops.push((host, done, n));
                    } else {
                        partial.push((cluster, in_off, done, n));
                    }
                }
                done += n;
            }
        }
        // Coalesce pieces that are contiguous both in the file and in buf.
        let mut merged: Vec<(u64, usize, usize)> = Vec::with_capacity(ops.len());
        for (host, start, n) in ops {
            match merged.last_mut() {
                Some((h, s, l)) if *h + *l as u64 == host && *s + *l == start => *l += n,
                _ => merged.push((host, start, n)),
            }
        }
        for (host, start, n) in merged {
            self.pwrite(&buf[start..start + n], host)?;
        }
        for (cluster, in_off, start, n) in partial {
            self.write_partial_new(&buf[start..start + n], cluster, in_off)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.what, 0, e))
    }
}
