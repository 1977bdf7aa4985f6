//! [`RestorePointDisk`]: a restore point's disk as a
//! [`lifeboat_vdisk::ReadDisk`] = index (offset -> digest) + a
//! [`ChunkReader`] (digest -> bytes). No cache inside: callers stack a
//! `lifeboat_vdisk::CachedDisk` on top. Zero chunks read as zeros without
//! touching the reader and are reported as `Zero` extents. Errors of the
//! reader travel as `lifeboat_vdisk::Error::Source` wrapping the repository
//! [`Error`], so callers can `downcast_ref::<lifeboat_repo::Error>()` to
//! tell a missing chunk from a corrupt one.

use crate::digest::Digest;
use crate::error::Result;
use crate::model::DiskIndex;
use lifeboat_vdisk::{check_range, push_merged, CacheBudget, CachedDisk, Extent, ReadDisk};
use std::sync::Arc;

/// digest -> plaintext bytes. The repository implements it; remote and
/// cached readers can too.
pub trait ChunkReader: Send + Sync {
    /// Reads, authenticates and checks one chunk.
    fn read_chunk(&self, digest: &Digest) -> Result<Vec<u8>>;
    /// Names the source in errors, e.g. `repository /backups/repo`.
    fn describe(&self) -> String;
}

/// A disk of a restore point.
pub struct RestorePointDisk {
    name: String,
    index: DiskIndex,
    reader: Arc<dyn ChunkReader>,
}

impl RestorePointDisk {
    /// `name` labels the disk in errors: `web01@<id> disk disk0` makes
    /// [`ReadDisk::describe`] say `restore point web01@<id> disk disk0`.
    pub fn new(name: String, index: DiskIndex, reader: Arc<dyn ChunkReader>) -> Self {
        RestorePointDisk {
            name,
            index,
            reader,
        }
    }

    pub fn index(&self) -> &DiskIndex {
        &self.index
    }

    /// This disk behind a read cache whose block is one repository chunk (a
    /// miss authenticates and decompresses a whole chunk, so a smaller block
    /// would throw most of that work away), holding at least `bytes` and at
    /// least `min_chunks` chunks.
    pub fn into_chunk_cache(
        self,
        bytes: u64,
        min_chunks: u64,
    ) -> lifeboat_vdisk::Result<CachedDisk> {
        let block = self.index.chunk_size.max(4096);
        let capacity = bytes.max(u64::from(block).saturating_mul(min_chunks));
        CachedDisk::new(Arc::new(self), block, capacity)
    }

    /// This disk behind a read cache of one chunk per block, as
    /// [`RestorePointDisk::into_chunk_cache`], whose memory counts against
    /// `budget`, shared with other disks.
    pub fn into_shared_chunk_cache(
        self,
        budget: Arc<CacheBudget>,
    ) -> lifeboat_vdisk::Result<CachedDisk> {
        let block = self.index.chunk_size.max(4096);
        CachedDisk::with_budget(Arc::new(self), block, budget)
    }

    /// Chunk `i` (digest `d`) decoded, checked to be as long as the index
    /// says that chunk is.
    fn chunk(&self, i: u64, d: &Digest) -> lifeboat_vdisk::Result<Vec<u8>> {
        let data = self
            .reader
            .read_chunk(d)
            .map_err(|e| lifeboat_vdisk::Error::source(self.describe(), e))?;
        let chunk_len = self.index.chunk_len(i);
        if data.len() as u64 != chunk_len {
            return Err(lifeboat_vdisk::Error::corrupt(
                self.describe(),
                format!(
                    "chunk {d} at offset {} holds {} bytes, expected {chunk_len}",
                    i * u64::from(self.index.chunk_size),
                    data.len()
                ),
            ));
        }
        Ok(data)
    }

    /// Digest slot `i` of the index, or a corruption error when the index
    /// is shorter than the disk (an index built by hand without `check`).
    fn slot(&self, i: u64) -> lifeboat_vdisk::Result<Option<Digest>> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.index.digests.get(i).copied())
            .ok_or_else(|| {
                lifeboat_vdisk::Error::corrupt(self.describe(), format!("index has no chunk {i}"))
            })
    }
}

impl ReadDisk for RestorePointDisk {
    fn size(&self) -> u64 {
        self.index.disk_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> lifeboat_vdisk::Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size())?;
        let cs = u64::from(self.index.chunk_size);
        if cs == 0 {
            return Err(lifeboat_vdisk::Error::corrupt(
                self.describe(),
                "chunk size 0",
            ));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let i = pos / cs;
            let within = (pos % cs) as usize;
            let chunk_len = self.index.chunk_len(i) as usize;
            let n = (chunk_len - within).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.slot(i)? {
                None => out.fill(0),
                Some(d) => {
                    let data = self.chunk(i, &d)?;
                    out.copy_from_slice(&data[within..within + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// A read of exactly one whole data chunk returns the decoded chunk
    /// itself (the cache's block is one chunk: no zero-fill, no copy).
    fn read_owned(&self, offset: u64, len: usize) -> lifeboat_vdisk::Result<Vec<u8>> {
        let cs = u64::from(self.index.chunk_size);
        if cs > 0 && offset.is_multiple_of(cs) && offset < self.size() {
            let i = offset / cs;
            if len as u64 == self.index.chunk_len(i) {
                if let Some(d) = self.slot(i)? {
                    return self.chunk(i, &d);
                }
            }
        }
        let mut buf = vec![0u8; len];
        self.read_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn extents(&self, offset: u64, len: u64) -> lifeboat_vdisk::Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size());
        let mut list = Vec::new();
        let cs = u64::from(self.index.chunk_size);
        if end <= offset || cs == 0 {
            return Ok(list);
        }
        let mut pos = offset;
        while pos < end {
            let i = pos / cs;
            let stop = (i.saturating_add(1)).saturating_mul(cs).min(end);
            let e = match self.slot(i)? {
                None => Extent::zero(pos, stop - pos),
                Some(_) => Extent::data(pos, stop - pos),
            };
            push_merged(&mut list, e);
            pos = stop;
        }
        Ok(list)
    }

    fn describe(&self) -> String {
        format!("restore point {}", self.name)
    }
}
