//! [`OverlayDisk`]: a copy-on-write overlay over a read-only base disk.
//!
//! Instant VM Recovery boots a VM from a backup (the base, never written)
//! and sends its writes to a redo file in a cache folder. The session
//! survives a restart of the service ([`OverlayDisk::open`] reloads the
//! allocation map) and `migrate` later merges base + overlay into a
//! standalone image using [`OverlayDisk::allocated_ranges`].
//!
//! # File layout
//!
//! ```text
//! 0             header (HEADER_SIZE = 4096 bytes, see header.rs): magic,
//!               version, block size, disk size, base identity, map offset,
//!               map length, data offset, CRC-32C of the header
//! HEADER_SIZE   allocation bitmap: one bit per block (map.rs), map_len bytes
//! data_offset   data area: block i at data_offset + i * block_size, where
//!               data_offset = (HEADER_SIZE + map_len) rounded up to the block
//!               size; the file is sparse, unwritten blocks take no space
//! data_end      = data_offset + blocks * block_size, the file's length
//! ```
//!
//! Disk offset `o` of an allocated block lives at file offset
//! `data_offset + o`, so a run of allocated blocks is one `pread`.
//!
//! # Writes, flush and crash safety
//!
//! - A write covering a whole block goes straight to the data area.
//! - A partial write to an unallocated block copies on write: read the base
//!   block, merge, write the whole block.
//! - Only then is the block's bit set in the in-memory map, so a reader that
//!   sees the bit finds the data.
//! - [`WriteDisk::flush`] snapshots the dirty bitmap pages, `fsync`s the data,
//!   writes the snapshot, and `fsync`s again. Data is durable before the bit
//!   that makes it visible, and bits only go 0 → 1, so after a crash a block
//!   is either wholly the overlay's (as of some completed write) or wholly
//!   the base's. Writes since the last flush may be lost, as on any disk.
//!   Dropping the disk flushes (errors are ignored there: call `flush`).
//!
//! # Locking
//!
//! | lock             | guards                                               |
//! |------------------|------------------------------------------------------|
//! | `map` (RwLock)   | the bitmap and its dirty pages; held only briefly    |
//! | `stripes[b % N]` | the first write to unallocated block b (CoW or whole) |
//! | `flush_lock`     | one flush at a time, so snapshots land in order      |
//! | file lock        | `flock` on the overlay file: one process per session |
//!
//! Writes to an allocated block take no lock beyond a map read. The first
//! write to a block takes its stripe and re-checks the bit, so two partial
//! writes racing on one unallocated block cannot lose either's bytes.

mod header;
mod map;
#[cfg(test)]
mod tests;

use crate::{
    check_depth, check_range, push_merged, Error, Extent, ReadDisk, Result, SharedBytes, WriteDisk,
};
use header::{Header, BASE_ID_MAX, HEADER_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use map::Bitmap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Stripes of the first-write lock: enough that unrelated blocks rarely
/// share one, few enough to be free.
const LOCK_STRIPES: usize = 64;

/// A copy-on-write overlay over a read-only base, stored in a sparse file.
pub struct OverlayDisk {
    base: Arc<dyn ReadDisk>,
    path: PathBuf,
    file: File,
    header: Header,
    map: RwLock<Bitmap>,
    stripes: Vec<Mutex<()>>,
    flush_lock: Mutex<()>,
}

impl OverlayDisk {
    /// The block size used when the caller has no reason to pick another:
    /// small enough that a 4 KiB guest write copies little of the base,
    /// large enough that the bitmap of a 2 TiB disk is 4 MiB.
    pub const DEFAULT_BLOCK_SIZE: u32 = 64 * 1024;
    /// Smallest block size.
    pub const MIN_BLOCK_SIZE: u32 = MIN_BLOCK_SIZE;
    /// Largest block size.
    pub const MAX_BLOCK_SIZE: u32 = MAX_BLOCK_SIZE;
    /// Longest base identity, in bytes.
    pub const BASE_ID_MAX: usize = BASE_ID_MAX;

    /// Creates a new overlay file at `overlay_path` over `base`. Fails if the
    /// file exists. `base_id` names the base (a restore point id) and is
    /// checked by [`OverlayDisk::open`]; `block_size` is a power of two in
    /// [`Self::MIN_BLOCK_SIZE`]`..=`[`Self::MAX_BLOCK_SIZE`].
    pub fn create(
        base: Arc<dyn ReadDisk>,
        base_id: &str,
        overlay_path: &Path,
        block_size: u32,
    ) -> Result<Self> {
        let what = file_what(overlay_path);
        check_depth(&what, base.as_ref())?;
        let header = Header::new(&what, block_size, base.size(), base_id)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(overlay_path)
            .map_err(|e| Error::io(&what, 0, e))?;
        lock_file(&file, &what)?;
        let init = || -> Result<()> {
            file.write_all_at(&header.encode(), 0)
                .map_err(|e| Error::io(&what, 0, e))?;
            // The bitmap and data area are holes: they read as zeros.
            file.set_len(header.data_end)
                .map_err(|e| Error::io(&what, header.data_end, e))?;
            file.sync_all().map_err(|e| Error::io(&what, 0, e))?;
            sync_parent(overlay_path)
        };
        if let Err(e) = init() {
            drop(file);
            let _ = std::fs::remove_file(overlay_path);
            return Err(e);
        }
        let map = Bitmap::new(header.blocks, usize_len(&what, header.map_len)?);
        Ok(Self::assemble(base, overlay_path, file, header, map))
    }

    /// Reopens an existing overlay over `base`. Refuses a file whose header
    /// is damaged, or that was created over a base of another size or
    /// identity.
    pub fn open(base: Arc<dyn ReadDisk>, base_id: &str, overlay_path: &Path) -> Result<Self> {
        let what = file_what(overlay_path);
        check_depth(&what, base.as_ref())?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(overlay_path)
            .map_err(|e| Error::io(&what, 0, e))?;
        lock_file(&file, &what)?;
        let len = file.metadata().map_err(|e| Error::io(&what, 0, e))?.len();
        let mut raw = vec![0u8; HEADER_SIZE.min(len) as usize];
        file.read_exact_at(&mut raw, 0)
            .map_err(|e| Error::io(&what, 0, e))?;
        let header = Header::decode(&what, &raw)?;
        if len < header.data_end {
            return Err(Error::corrupt(
                &what,
                format!(
                    "truncated: {len} bytes, the layout needs {}",
                    header.data_end
                ),
            ));
        }
        if header.disk_size != base.size() {
            return Err(Error::invalid(
                &what,
                format!(
                    "was created over a disk of {} bytes, but {} has {} bytes",
                    header.disk_size,
                    base.describe(),
                    base.size()
                ),
            ));
        }
        if header.base_id != base_id {
            return Err(Error::invalid(
                &what,
                format!(
                    "was created over base {:?}, not {base_id:?}",
                    header.base_id
                ),
            ));
        }
        let mut bits = vec![0u8; usize_len(&what, header.map_len)?];
        file.read_exact_at(&mut bits, header.map_offset)
            .map_err(|e| Error::io(&what, header.map_offset, e))?;
        let map = Bitmap::from_bytes(header.blocks, bits);
        Ok(Self::assemble(base, overlay_path, file, header, map))
    }

    fn assemble(
        base: Arc<dyn ReadDisk>,
        path: &Path,
        file: File,
        header: Header,
        map: Bitmap,
    ) -> Self {
        OverlayDisk {
            base,
            path: path.to_path_buf(),
            file,
            header,
            map: RwLock::new(map),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            flush_lock: Mutex::new(()),
        }
    }

    /// The overlay file.
    pub fn overlay_path(&self) -> &Path {
        &self.path
    }

    /// The block size of the overlay.
    pub fn block_size(&self) -> u32 {
        self.header.block_size
    }

    /// The identity of the base recorded in the overlay.
    pub fn base_id(&self) -> &str {
        &self.header.base_id
    }

    /// The byte ranges held by the overlay, as sorted, non-adjacent
    /// half-open `(start, end)` pairs (whole blocks, the last clamped to the
    /// disk size). Everything else reads from the base.
    pub fn allocated_ranges(&self) -> Vec<(u64, u64)> {
        let runs = self.map_read().runs(0, self.header.blocks);
        let bs = u64::from(self.header.block_size);
        runs.into_iter()
            .filter(|r| r.2)
            .map(|(a, b, _)| (a * bs, (b * bs).min(self.header.disk_size)))
            .collect()
    }

    fn what(&self) -> String {
        file_what(&self.path)
    }

    fn map_read(&self) -> std::sync::RwLockReadGuard<'_, Bitmap> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn map_write(&self) -> std::sync::RwLockWriteGuard<'_, Bitmap> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Byte runs of `offset..end` as `(start, end, allocated)`.
    fn byte_runs(&self, offset: u64, end: u64) -> Vec<(u64, u64, bool)> {
        let bs = u64::from(self.header.block_size);
        let runs = self.map_read().runs(offset / bs, end.div_ceil(bs));
        runs.into_iter()
            .map(|(a, b, alloc)| ((a * bs).max(offset), (b * bs).min(end), alloc))
            .collect()
    }

    fn pread(&self, buf: &mut [u8], disk_offset: u64) -> Result<()> {
        let at = self.header.data_offset + disk_offset;
        self.file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(self.what(), format!("file shrank below offset {at}"))
            } else {
                Error::io(self.what(), at, e)
            }
        })
    }

    fn pwrite(&self, buf: &[u8], disk_offset: u64) -> Result<()> {
        let at = self.header.data_offset + disk_offset;
        self.file
            .write_all_at(buf, at)
            .map_err(|e| Error::io(self.what(), at, e))
    }

    /// Writes `data` at `within` bytes into block `block`.
    fn write_block(&self, block: u64, within: usize, data: &[u8]) -> Result<()> {
        let bs = u64::from(self.header.block_size);
        let start = block * bs;
        if self.map_read().get(block) {
            return self.pwrite(data, start + within as u64);
        }
        let stripe = &self.stripes[(block % LOCK_STRIPES as u64) as usize];
        let _guard = stripe.lock().unwrap_or_else(|e| e.into_inner());
        if self.map_read().get(block) {
            return self.pwrite(data, start + within as u64);
        }
        let block_len = bs.min(self.header.disk_size - start) as usize;
        if within == 0 && data.len() == block_len {
            self.pwrite(data, start)?;
        } else {
            let mut whole = vec![0u8; block_len];
            self.base.read_at(&mut whole, start)?;
            whole[within..within + data.len()].copy_from_slice(data);
            self.pwrite(&whole, start)?;
        }
        self.map_write().set(block);
        Ok(())
    }
}

impl ReadDisk for OverlayDisk {
    fn size(&self) -> u64 {
        self.header.disk_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size())?;
        let end = offset + buf.len() as u64;
        for (a, b, allocated) in self.byte_runs(offset, end) {
            let part = &mut buf[(a - offset) as usize..(b - offset) as usize];
            if allocated {
                self.pread(part, a)?;
            } else {
                self.base.read_at(part, a)?;
            }
        }
        Ok(())
    }

    /// Blocks the overlay holds are read from its file; the rest are the
    /// base's views (a cache under it hands out its blocks uncopied).
    fn read_shared(&self, offset: u64, len: usize) -> Result<Vec<SharedBytes>> {
        check_range(&|| self.describe(), offset, len as u64, self.size())?;
        let mut parts = Vec::new();
        for (a, b, allocated) in self.byte_runs(offset, offset + len as u64) {
            let n = (b - a) as usize;
            if allocated {
                let mut buf = vec![0u8; n];
                self.pread(&mut buf, a)?;
                parts.push(SharedBytes::owned(buf));
            } else {
                parts.extend(self.base.read_shared(a, n)?);
            }
        }
        Ok(parts)
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size());
        let mut list = Vec::new();
        if end <= offset {
            return Ok(list);
        }
        for (a, b, allocated) in self.byte_runs(offset, end) {
            if allocated {
                push_merged(&mut list, Extent::data(a, b - a));
            } else {
                for e in self.base.extents(a, b - a)? {
                    push_merged(&mut list, e);
                }
            }
        }
        Ok(list)
    }

    fn describe(&self) -> String {
        format!("{} over {}", self.what(), self.base.describe())
    }

    fn depth(&self) -> u32 {
        self.base.depth().saturating_add(1)
    }
}

impl WriteDisk for OverlayDisk {
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size())?;
        let bs = u64::from(self.header.block_size);
        let mut pos = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let block = pos / bs;
            let within = pos % bs;
            let n = ((bs - within) as usize).min(rest.len());
            let (now, later) = rest.split_at(n);
            self.write_block(block, within as usize, now)?;
            pos += n as u64;
            rest = later;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let _one = self.flush_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Snapshot before syncing: every bit in it had its data written
        // before it was set, so the sync below covers that data.
        let pages = self.map_write().take_dirty();
        let result = (|| {
            self.file
                .sync_data()
                .map_err(|e| Error::io(self.what(), 0, e))?;
            for (off, bytes) in &pages {
                let at = self.header.map_offset + *off as u64;
                self.file
                    .write_all_at(bytes, at)
                    .map_err(|e| Error::io(self.what(), at, e))?;
            }
            if !pages.is_empty() {
                self.file
                    .sync_data()
                    .map_err(|e| Error::io(self.what(), 0, e))?;
            }
            Ok(())
        })();
        if result.is_err() {
            self.map_write().redirty(pages.iter().map(|p| p.0));
        }
        result
    }
}

impl Drop for OverlayDisk {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

fn file_what(path: &Path) -> String {
    format!("overlay file {}", path.display())
}

fn usize_len(what: &str, len: u64) -> Result<usize> {
    usize::try_from(len).map_err(|_| Error::unsupported(what, format!("a bitmap of {len} bytes")))
}

/// Takes an exclusive `flock` so two services cannot drive one session.
fn lock_file(file: &File, what: &str) -> Result<()> {
    use rustix::fs::{flock, FlockOperation};
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            Error::invalid(what, "is in use by another process or disk")
        } else {
            Error::io(what, 0, e.into())
        }
    })
}

/// Makes the creation of `path` durable.
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("directory {}", parent.display()), 0, e))
}
