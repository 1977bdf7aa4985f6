//! Lifeboat's core abstraction: everything that holds blocks is a virtual disk.
//!
//! ```text
//!                 ReadDisk  (size, read_at, read_shared, extents, describe)
//!                    ^
//!                    |
//!                 WriteDisk (write_at, flush)
//!
//!  FileDisk ......... a raw file or block device (holes found with SEEK_DATA/SEEK_HOLE)
//!  MemDisk .......... bytes in memory (tests, small fixtures)
//!  SliceDisk ........ a window of another disk (a partition, an LVM extent)
//!  OverlayDisk ...... copy-on-write over a read-only base; writes land in a
//!                     sparse overlay file with a persisted allocation map
//!  CachedDisk ....... a read cache of fixed-size blocks in front of a slow disk
//! ```
//!
//! Image formats (crate `lifeboat-formats`), the restore point of a
//! repository (crate `lifeboat-repo`), and later the NBD client all implement
//! [`ReadDisk`]; consumers (backup, restore, the NFS and NBD exports, FUSE,
//! the scanners) only ever see the trait. Layers are stacked as
//! `Arc<dyn ReadDisk>`; [`ReadDisk::depth`] lets a constructor refuse a stack
//! deeper than [`MAX_DEPTH`].
//!
//! All methods take `&self`: a disk is shared between threads (a backup reads
//! chunks in parallel, an NFS server serves many clients), so implementations
//! use positioned I/O and interior locking.

mod cache;
mod error;
mod extent;
mod file;
mod mem;
mod overlay;
mod shared;
mod slice;
mod sparse_input;
pub mod testsuite;

pub use cache::{CacheBudget, CacheStats, CachedDisk};
pub use error::{Error, Result};
pub use extent::{push_merged, Extent, ExtentKind};
pub use file::{FileDisk, DIRECT_ALIGN};
pub use mem::MemDisk;
pub use overlay::OverlayDisk;
pub use shared::{concat_shared, SharedBytes};
pub use slice::{SliceDisk, SliceDiskMut};
pub use sparse_input::{SparseInputDisk, MAX_SPARSE_SIZE};

use std::sync::Arc;

/// The deepest stack of layered disks a constructor accepts.
pub const MAX_DEPTH: u32 = 32;

/// A disk that can be read.
pub trait ReadDisk: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` with the bytes at `offset`. A read that reaches past
    /// [`ReadDisk::size`] fails with [`Error::OutOfRange`].
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// The `len` bytes at `offset` in a buffer of their own. The default
    /// allocates and calls [`ReadDisk::read_at`]; a disk that produces
    /// whole blocks anyway (a restore point decoding a chunk) hands its
    /// buffer over instead, sparing a cache the zero-fill and the copy.
    fn read_owned(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// The `len` bytes at `offset` as views that, put end to end, are
    /// exactly those bytes. The default reads them into one buffer
    /// ([`ReadDisk::read_owned`]); a disk holding blocks in memory (a
    /// cache) hands out views of them instead of copying.
    fn read_shared(&self, offset: u64, len: usize) -> Result<Vec<SharedBytes>> {
        Ok(vec![SharedBytes::owned(self.read_owned(offset, len)?)])
    }

    /// What the range `offset..offset+len` holds, as sorted, adjacent,
    /// non-overlapping extents covering exactly that range (clamped to the
    /// disk's size). The default says "all data"; disks that know better
    /// (sparse files, images with allocation tables) report zeros so that
    /// readers can skip them.
    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size());
        let mut list = Vec::new();
        if end > offset {
            list.push(Extent::data(offset, end - offset));
        }
        Ok(list)
    }

    /// A short human description that names the disk, used in errors:
    /// `qcow2 /vms/web01.qcow2`.
    fn describe(&self) -> String;

    /// How many disks are stacked under this one, itself included.
    fn depth(&self) -> u32 {
        1
    }
}

/// A disk that can also be written.
pub trait WriteDisk: ReadDisk {
    /// Writes `buf` at `offset`. Writes past [`ReadDisk::size`] fail with
    /// [`Error::OutOfRange`].
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;

    /// Makes every completed write durable.
    fn flush(&self) -> Result<()>;
}

impl<T: ReadDisk + ?Sized> ReadDisk for Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_at(buf, offset)
    }
    fn read_owned(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        (**self).read_owned(offset, len)
    }
    fn read_shared(&self, offset: u64, len: usize) -> Result<Vec<SharedBytes>> {
        (**self).read_shared(offset, len)
    }
    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        (**self).extents(offset, len)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn depth(&self) -> u32 {
        (**self).depth()
    }
}

impl<T: ReadDisk + ?Sized> ReadDisk for Box<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_at(buf, offset)
    }
    fn read_owned(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        (**self).read_owned(offset, len)
    }
    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        (**self).extents(offset, len)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn depth(&self) -> u32 {
        (**self).depth()
    }
}

/// Fails with [`Error::OutOfRange`] unless `offset..offset+len` lies inside
/// a disk of `size` bytes. Every implementation calls this first.
pub fn check_range(what: &dyn Fn() -> String, offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange {
            what: what(),
            offset,
            len,
            size,
        }),
    }
}

/// Fails with [`Error::Invalid`] when stacking on `lower` would exceed
/// [`MAX_DEPTH`].
pub fn check_depth(what: &str, lower: &dyn ReadDisk) -> Result<()> {
    if lower.depth() >= MAX_DEPTH {
        return Err(Error::invalid(
            what,
            format!(
                "stacking on {} would exceed {MAX_DEPTH} layers",
                lower.describe()
            ),
        ));
    }
    Ok(())
}
