//! [`StoredDisk`]: a restore-point disk (normally its chunk cache) behind a
//! [`BlockStore`], so small reads of blocks seen before — by this or any
//! restore point sharing the chunk — decode no chunk at all.
//!
//! A read is taken one chunk at a time. A piece of at most
//! [`MAX_STORED_READ`] bytes whose 4 KiB blocks are all in the store (or in
//! all-zero chunks, which have no digest) is served from the store. Any
//! other piece of a small read reads the 4 KiB-aligned range from the inner
//! disk and records its whole blocks. Pieces of bigger reads (file data
//! under readahead) go straight to the inner disk and record only the chunk
//! edges they cover (the first and last block of a chunk): the store is for
//! filesystem metadata, and the edges are what a re-scan reads of an
//! unchanged chunk next to a changed one (a window reaching a few bytes
//! past the change, see `lifeboat_scan::locality`), which would otherwise
//! decode the whole neighbour. A block is only storable when it lies whole
//! inside one chunk, which needs a chunk size that is a multiple of 4 KiB;
//! with any other chunk size every read goes through. The store never fails
//! a read: a stored block that does not authenticate (damaged, planted)
//! falls back to the inner disk.

use crate::block_store::{BlockKey, BlockStore, BLOCK};
use lifeboat_vdisk::{check_depth, check_range, Extent, ReadDisk};
use std::sync::Arc;

/// Largest read served from or recorded into the store.
pub const MAX_STORED_READ: usize = 128 << 10;

/// How one 4 KiB block of a small read can be had.
#[derive(Clone, Copy)]
enum Plan {
    /// In an all-zero chunk.
    Zero,
    Stored(BlockKey),
    /// Not storable (past the last whole block, unknown chunk).
    Inner,
}

/// A disk whose small reads go through a [`BlockStore`].
pub struct StoredDisk {
    inner: Arc<dyn ReadDisk>,
    store: Arc<BlockStore>,
    /// Chunk size in bytes; 0 when blocks cannot be stored.
    chunk: u64,
    /// Digest of every chunk, `None` for an all-zero chunk.
    digests: Vec<Option<[u8; 32]>>,
}

impl StoredDisk {
    /// `inner` read through `store`; `chunk_size` and `digests` are the
    /// disk's index (the chunk `i` covers `i*chunk_size..`).
    pub fn new(
        inner: Arc<dyn ReadDisk>,
        store: Arc<BlockStore>,
        chunk_size: u32,
        digests: Vec<Option<[u8; 32]>>,
    ) -> lifeboat_vdisk::Result<Self> {
        check_depth("block store", inner.as_ref())?;
        let chunk = u64::from(chunk_size);
        let storable = chunk > 0 && chunk.is_multiple_of(BLOCK as u64);
        Ok(StoredDisk {
            inner,
            store,
            chunk: if storable { chunk } else { 0 },
            digests,
        })
    }

    /// The plan of the block at the 4 KiB-aligned `pos`.
    fn plan(&self, pos: u64) -> Plan {
        if self.chunk == 0 || pos.saturating_add(BLOCK as u64) > self.inner.size() {
            return Plan::Inner;
        }
        let slot = usize::try_from(pos / self.chunk)
            .ok()
            .and_then(|i| self.digests.get(i));
        let block = u32::try_from((pos % self.chunk) / BLOCK as u64);
        match (slot, block) {
            (Some(None), _) => Plan::Zero,
            (Some(Some(d)), Ok(block)) => Plan::Stored(BlockKey { digest: *d, block }),
            _ => Plan::Inner,
        }
    }

    /// True for the first and the last block of a chunk.
    fn is_edge(&self, key: &BlockKey) -> bool {
        let last = (self.chunk / BLOCK as u64).saturating_sub(1);
        key.block == 0 || u64::from(key.block) == last
    }

    /// Reads `buf` at `offset`, all inside one chunk (see the module doc);
    /// `small`: the whole read was small, so its blocks are all recorded.
    fn read_piece(&self, buf: &mut [u8], offset: u64, small: bool) -> lifeboat_vdisk::Result<()> {
        let b = BLOCK as u64;
        if buf.len() > MAX_STORED_READ {
            self.inner.read_at(buf, offset)?;
            // The whole blocks inside `buf` that are chunk edges.
            let first = offset.div_ceil(b) * b;
            let end = offset + buf.len() as u64;
            let edges: Vec<(BlockKey, &[u8])> = [first, (end / b * b).saturating_sub(b)]
                .into_iter()
                .filter(|&p| p >= first && p + b <= end)
                .filter_map(|p| match self.plan(p) {
                    Plan::Stored(key) if self.is_edge(&key) && !self.store.contains(&key) => {
                        let at = usize::try_from(p - offset).ok()?;
                        Some((key, buf.get(at..at + BLOCK)?))
                    }
                    _ => None,
                })
                .collect();
            if !edges.is_empty() {
                self.store.put_edges(&edges);
            }
            return Ok(());
        }
        let start = offset / b * b;
        // In range: offset + len <= size was checked.
        let end = (offset + buf.len() as u64).div_ceil(b).saturating_mul(b);
        let plans: Vec<Plan> = (start..end).step_by(BLOCK).map(|p| self.plan(p)).collect();
        let within = (offset - start) as usize;
        let mut aligned = vec![0u8; (end - start) as usize];
        if plans.iter().all(|p| !matches!(p, Plan::Inner))
            && self.fill_from_store(&plans, &mut aligned)
        {
            buf.copy_from_slice(&aligned[within..within + buf.len()]);
            self.store.count_read(true);
            return Ok(());
        }
        self.store.count_read(false);
        // The aligned range, clamped to the disk (a partial last block).
        let readable = (end.min(self.size()) - start) as usize;
        aligned.truncate(readable);
        self.inner.read_at(&mut aligned, start)?;
        buf.copy_from_slice(&aligned[within..within + buf.len()]);
        let (edges, others): (Vec<(BlockKey, &[u8])>, Vec<_>) = plans
            .iter()
            .zip(aligned.chunks(BLOCK))
            .filter_map(|(plan, bytes)| match plan {
                Plan::Stored(key) if !self.store.contains(key) => Some((*key, bytes)),
                _ => None,
            })
            .partition(|(key, _)| self.is_edge(key));
        if !edges.is_empty() {
            self.store.put_edges(&edges);
        }
        if small && !others.is_empty() {
            self.store.put(&others);
        }
        Ok(())
    }

    /// Fills `out` (the aligned range of `plans`) from the store;
    /// false as soon as a block is not there.
    fn fill_from_store(&self, plans: &[Plan], out: &mut [u8]) -> bool {
        let mut block = [0u8; BLOCK];
        for (plan, dst) in plans.iter().zip(out.chunks_mut(BLOCK)) {
            match plan {
                Plan::Zero => dst.fill(0),
                Plan::Stored(key) if self.store.get(key, &mut block) => {
                    dst.copy_from_slice(&block[..dst.len()])
                }
                _ => return false,
            }
        }
        true
    }
}

impl ReadDisk for StoredDisk {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> lifeboat_vdisk::Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size())?;
        if buf.is_empty() || self.chunk == 0 {
            return self.inner.read_at(buf, offset);
        }
        let small = buf.len() <= MAX_STORED_READ;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let chunk_end = (at / self.chunk + 1).saturating_mul(self.chunk);
            let n = (buf.len() - done).min(usize::try_from(chunk_end - at).unwrap_or(usize::MAX));
            self.read_piece(&mut buf[done..done + n], at, small)?;
            done += n;
        }
        Ok(())
    }

    fn read_owned(&self, offset: u64, len: usize) -> lifeboat_vdisk::Result<Vec<u8>> {
        if len > MAX_STORED_READ {
            return self.inner.read_owned(offset, len);
        }
        let mut buf = vec![0u8; len];
        self.read_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn extents(&self, offset: u64, len: u64) -> lifeboat_vdisk::Result<Vec<Extent>> {
        self.inner.extents(offset, len)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn depth(&self) -> u32 {
        self.inner.depth().saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_store::DEFAULT_CAP_BYTES;
    use lifeboat_vdisk::testsuite::{check_read_disk, pattern_with_holes};
    use lifeboat_vdisk::MemDisk;
    use std::sync::atomic::{AtomicU64, Ordering};

    const CHUNK: usize = 64 << 10;

    /// Counts the reads that reach the disk below.
    struct Counting {
        disk: MemDisk,
        reads: AtomicU64,
    }

    impl ReadDisk for Counting {
        fn size(&self) -> u64 {
            self.disk.size()
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> lifeboat_vdisk::Result<()> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.disk.read_at(buf, offset)
        }
        fn describe(&self) -> String {
            self.disk.describe()
        }
    }

    /// A content address per chunk (`None` when all zero), as an index has.
    fn digests(bytes: &[u8]) -> Vec<Option<[u8; 32]>> {
        bytes
            .chunks(CHUNK)
            .map(|c| (!c.iter().all(|&b| b == 0)).then(|| *blake3::hash(c).as_bytes()))
            .collect()
    }

    fn stored(bytes: &[u8], store: &Arc<BlockStore>) -> (StoredDisk, Arc<Counting>) {
        let counting = Arc::new(Counting {
            disk: MemDisk::new("test disk", bytes.to_vec()),
            reads: AtomicU64::new(0),
        });
        let disk = StoredDisk::new(
            counting.clone(),
            store.clone(),
            CHUNK as u32,
            digests(bytes),
        )
        .unwrap();
        (disk, counting)
    }

    fn open_store(dir: &std::path::Path) -> Arc<BlockStore> {
        Arc::new(
            BlockStore::open(dir, DEFAULT_CAP_BYTES, None)
                .unwrap()
                .unwrap(),
        )
    }

    #[test]
    fn passes_the_read_disk_suite_cold_and_warm() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        // Not a multiple of 4 KiB: a partial last block.
        let bytes = pattern_with_holes(5 * CHUNK + 3000, CHUNK / 2);
        let (disk, _) = stored(&bytes, &store);
        check_read_disk(&disk, &bytes);
        assert!(store.stats().recorded > 0);
        check_read_disk(&disk, &bytes);
        assert!(store.stats().hit_reads > 0);
        // Also with a chunk size blocks cannot be stored under.
        let odd = StoredDisk::new(
            Arc::new(MemDisk::new("odd", bytes.clone())),
            store.clone(),
            1000,
            Vec::new(),
        )
        .unwrap();
        check_read_disk(&odd, &bytes);
    }

    #[test]
    fn another_disk_sharing_chunks_is_served_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let a = pattern_with_holes(4 * CHUNK, CHUNK);
        // b: a's chunks 2 and 1 (chunk 0 is all zero), then a new one.
        let mut b = Vec::new();
        b.extend_from_slice(&a[2 * CHUNK..3 * CHUNK]);
        b.extend_from_slice(&a[CHUNK..2 * CHUNK]);
        b.extend((0..CHUNK).map(|i| (i % 251) as u8));
        {
            let store = open_store(dir.path());
            let (disk_a, _) = stored(&a, &store);
            for (off, len) in [(CHUNK + 4096, 8192), (2 * CHUNK + 100, 5000)] {
                let mut buf = vec![0u8; len];
                disk_a.read_at(&mut buf, off as u64).unwrap();
                assert_eq!(buf, a[off..off + len]);
            }
        }
        // Reopened, as by the next publisher.
        let store = open_store(dir.path());
        let (disk_b, below) = stored(&b, &store);
        for (off, len) in [(CHUNK + 4096, 8192), (10, 4000), (4096, 4096)] {
            let mut buf = vec![0u8; len];
            disk_b.read_at(&mut buf, off as u64).unwrap();
            assert_eq!(buf, b[off..off + len], "read of {len} at {off}");
        }
        assert_eq!(below.reads.load(Ordering::Relaxed), 0);
        assert_eq!(store.stats().hit_reads, 3);
        // A block never read before, and a read too big to be stored.
        let mut buf = vec![0u8; 4096];
        disk_b.read_at(&mut buf, 2 * CHUNK as u64).unwrap();
        assert_eq!(buf, b[2 * CHUNK..2 * CHUNK + 4096]);
        // Read a chunk at a time: chunks 0 and 1 from below, the block of
        // chunk 2 (recorded just above) from the store.
        let mut big = vec![0u8; MAX_STORED_READ + 4096];
        disk_b.read_at(&mut big, 0).unwrap();
        assert_eq!(big, b[..big.len()]);
        assert_eq!(below.reads.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn big_reads_record_chunk_edges_which_serve_reads_past_a_chunk_edge() {
        // Chunks bigger than MAX_STORED_READ, so a piece of a read inside
        // one chunk can be big.
        const BIG: usize = 2 * MAX_STORED_READ;
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..4 * BIG).map(|i| (i % 253) as u8 + 1).collect();
        let digests: Vec<Option<[u8; 32]>> = bytes
            .chunks(BIG)
            .map(|c| Some(*blake3::hash(c).as_bytes()))
            .collect();
        let disk_over = |store: &Arc<BlockStore>| {
            let counting = Arc::new(Counting {
                disk: MemDisk::new("test disk", bytes.clone()),
                reads: AtomicU64::new(0),
            });
            let disk =
                StoredDisk::new(counting.clone(), store.clone(), BIG as u32, digests.clone())
                    .unwrap();
            (disk, counting)
        };
        let key = |chunk: usize, block: usize| BlockKey {
            digest: digests[chunk].unwrap(),
            block: block as u32,
        };
        let last = BIG / BLOCK - 1;
        {
            let store = open_store(dir.path());
            let (disk, _) = disk_over(&store);
            // Over chunks 1 and 2, starting and ending mid-block: the whole
            // edge blocks inside are recorded, nothing else.
            let (from, to) = (BIG + 100, 3 * BIG - 100);
            let mut buf = vec![0u8; to - from];
            disk.read_at(&mut buf, from as u64).unwrap();
            assert_eq!(buf, bytes[from..to]);
            for (k, want) in [
                (key(1, 0), false),
                (key(1, 1), false),
                (key(1, last), true),
                (key(2, 0), true),
                (key(2, 5), false),
                (key(2, last), false),
            ] {
                assert_eq!(store.contains(&k), want, "block {} of a chunk", k.block);
            }
            assert_eq!(store.stats().recorded, 2);
        }
        // The next publisher.
        let store = open_store(dir.path());
        let (disk, below) = disk_over(&store);
        // A small read across the edge of chunks 1 and 2: the store alone.
        let (from, to) = (2 * BIG - 150, 2 * BIG + 150);
        let mut small = vec![0u8; to - from];
        disk.read_at(&mut small, from as u64).unwrap();
        assert_eq!(small, bytes[from..to]);
        assert_eq!(below.reads.load(Ordering::Relaxed), 0);
        // A window over chunk 1 reaching 100 bytes into chunk 2 decodes
        // chunk 1 alone.
        let (from, to) = (BIG, 2 * BIG + 100);
        let mut window = vec![0u8; to - from];
        disk.read_at(&mut window, from as u64).unwrap();
        assert_eq!(window, bytes[from..to]);
        assert_eq!(below.reads.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_corrupt_stored_block_reads_the_inner_disk() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = pattern_with_holes(2 * CHUNK, CHUNK);
        {
            let store = open_store(dir.path());
            let (disk, _) = stored(&bytes, &store);
            let mut buf = vec![0u8; 4096];
            disk.read_at(&mut buf, CHUNK as u64).unwrap();
        }
        let data = dir.path().join("blocks.dat");
        let mut stored_bytes = std::fs::read(&data).unwrap();
        stored_bytes[123] ^= 1;
        std::fs::write(&data, stored_bytes).unwrap();
        let store = open_store(dir.path());
        let (disk, below) = stored(&bytes, &store);
        let mut buf = vec![0u8; 4096];
        disk.read_at(&mut buf, CHUNK as u64).unwrap();
        assert_eq!(buf, bytes[CHUNK..CHUNK + 4096]);
        assert_eq!(below.reads.load(Ordering::Relaxed), 1);
        assert_eq!(store.stats().bad, 1);
        // Re-recorded with the right bytes: served from the store now.
        disk.read_at(&mut buf, CHUNK as u64).unwrap();
        assert_eq!(buf, bytes[CHUNK..CHUNK + 4096]);
        assert_eq!(below.reads.load(Ordering::Relaxed), 1);
    }
}
