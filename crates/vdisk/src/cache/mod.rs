//! [`CachedDisk`]: a read cache of fixed-size blocks in front of a slow disk
//! (a restore point whose chunks must be fetched, decrypted and
//! decompressed).
//!
//! # Design
//!
//! - The disk is cut into blocks of `block_size` bytes (the last may be
//!   short). Cached blocks live in up to [`SHARDS`] shards, each a
//!   `Mutex<Shard>` holding a CLOCK cache (shard.rs); a block's shard is
//!   chosen by a multiplicative hash, so neighbouring blocks spread out and
//!   threads rarely contend.
//! - A miss registers a *flight* for the block before reading the lower
//!   disk; concurrent readers of that block wait for it (a `Condvar`) instead
//!   of reading the lower disk again.
//! - Errors from the lower disk go to the reader and are never cached: a
//!   failed flight makes its waiters fetch again themselves.
//! - Blocks the lower disk reports as all-zero extents (holes, zero chunks
//!   of a restore point) are served from one shared zero block and never
//!   cached: a disk that is half holes would otherwise spend half the cache
//!   on zeros and evict data to hold them.
//! - A miss asks the lower disk for the block as an owned buffer
//!   ([`ReadDisk::read_owned`]): a restore point hands over the chunk it
//!   just decoded, with no zero-fill and no copy.
//! - Scan resistance: blocks of a sequential stream (read-ahead, and reads
//!   that start where the previous one ended) fill free slots but, once a
//!   shard is full, only replace that shard's last stream block (shard.rs),
//!   so re-reading a disk larger than the cache still hits most of it.
//! - Memory: a cache made with [`CachedDisk::new`] has a budget of its
//!   own; caches made with [`CachedDisk::with_budget`] share one
//!   [`CacheBudget`] (budget.rs), so the disk being read gets the memory.
//! - Read-ahead ([`CachedDisk::with_read_ahead`]): once a sequential run
//!   (reads each starting where the previous one ended) has read a whole
//!   block's worth, each of its reads hands the next N blocks to a small
//!   pool of threads (a bounded crossbeam channel of fetch tickets). A full
//!   queue drops the request rather than slowing the reader. Readers that
//!   arrive while a prefetch is in flight wait for it.
//!
//! ```text
//! read_at ──> shard lookup ──hit──> copy
//!                  │ miss: take ticket ──> lower.read_at ──> insert + wake waiters
//!                  │ in flight: wait on the flight
//!   sequential? ──> tickets for the next N blocks ──> channel ──> prefetch threads
//! ```

mod budget;
mod shard;
#[cfg(test)]
mod tests;

pub use budget::CacheBudget;

use crate::{check_depth, check_range, Error, Extent, ExtentKind, ReadDisk, Result, SharedBytes};
use crossbeam_channel::{Sender, TrySendError};
use shard::{Block, Lookup, Shard, Ticket};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most shards a cache is split into.
pub const SHARDS: usize = 16;
/// Largest block size accepted (a block is one allocation).
pub const MAX_CACHE_BLOCK: u32 = 64 << 20;
/// Threads fetching read-ahead blocks.
const PREFETCH_THREADS: usize = 2;

/// Counters of a [`CachedDisk`], in blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks served from the cache or from a fetch already in flight.
    pub hits: u64,
    /// Blocks a reader had to read from the lower disk itself.
    pub misses: u64,
    /// Blocks read from the lower disk by read-ahead.
    pub prefetched: u64,
    /// Blocks served as zeros because the lower disk reports them as holes
    /// (not read, not cached; also counted as hits or misses).
    pub zeros: u64,
}

/// The state shared with the prefetch threads.
struct Inner {
    lower: Arc<dyn ReadDisk>,
    block_size: u64,
    size: u64,
    shards: Vec<Mutex<Shard>>,
    hits: AtomicU64,
    misses: AtomicU64,
    prefetched: AtomicU64,
    zeros: AtomicU64,
    /// One block of zeros, shared by every hole block of the disk.
    zero_block: std::sync::OnceLock<Block>,
    /// Set when the disk is dropped: queued prefetches are discarded.
    closed: AtomicBool,
}

/// A read cache of fixed-size blocks in front of a lower disk.
pub struct CachedDisk {
    inner: Arc<Inner>,
    read_ahead: u32,
    prefetch: Option<Sender<Ticket>>,
    /// Where the last read ended; a read starting here is sequential.
    last_end: AtomicU64,
    /// Bytes read by the current sequential run. Read-ahead waits for a
    /// block's worth: a short run (a directory block, a scanner reading a
    /// window of a file) must not make the cache decode blocks nobody reads.
    run: AtomicU64,
}

impl CachedDisk {
    /// A cache of about `capacity_bytes` (at least one block per shard) in
    /// blocks of `block_size` bytes over `lower`.
    pub fn new(lower: Arc<dyn ReadDisk>, block_size: u32, capacity_bytes: u64) -> Result<Self> {
        Self::with_budget(
            lower,
            block_size,
            Arc::new(CacheBudget::new(capacity_bytes)),
        )
    }

    /// A cache in blocks of `block_size` bytes over `lower` whose blocks
    /// count against `budget`, which other caches may share (budget.rs).
    pub fn with_budget(
        lower: Arc<dyn ReadDisk>,
        block_size: u32,
        budget: Arc<CacheBudget>,
    ) -> Result<Self> {
        let what = format!("cache over {}", lower.describe());
        check_depth(&what, lower.as_ref())?;
        if block_size == 0 || block_size > MAX_CACHE_BLOCK {
            return Err(Error::invalid(
                &what,
                format!("block size {block_size} is not in 1..={MAX_CACHE_BLOCK}"),
            ));
        }
        let capacity_bytes = budget.limit();
        let blocks = capacity_bytes / u64::from(block_size);
        if blocks == 0 {
            return Err(Error::invalid(
                &what,
                format!("capacity {capacity_bytes} is smaller than one block of {block_size}"),
            ));
        }
        // No more blocks than the disk has. Any shard may hold them all:
        // the budget, not the hash of the block numbers, bounds the total.
        let blocks = blocks.min(lower.size().div_ceil(u64::from(block_size)).max(1));
        let shards = (blocks as usize).clamp(1, SHARDS);
        let per_shard = usize::try_from(blocks).unwrap_or(usize::MAX);
        Ok(CachedDisk {
            inner: Arc::new(Inner {
                size: lower.size(),
                lower,
                block_size: u64::from(block_size),
                shards: (0..shards)
                    .map(|_| {
                        Mutex::new(Shard::new(per_shard, budget.clone(), u64::from(block_size)))
                    })
                    .collect(),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                prefetched: AtomicU64::new(0),
                zeros: AtomicU64::new(0),
                zero_block: std::sync::OnceLock::new(),
                closed: AtomicBool::new(false),
            }),
            read_ahead: 0,
            prefetch: None,
            last_end: AtomicU64::new(0),
            run: AtomicU64::new(0),
        })
    }

    /// Prefetches the next `blocks` blocks on each read of a sequential run
    /// (reads starting where the previous one ended) that has read a
    /// block's worth so far. If no thread can be started, read-ahead stays
    /// off (reads still work).
    pub fn with_read_ahead(mut self, blocks: u32) -> Self {
        self.read_ahead = blocks;
        if blocks == 0 || self.prefetch.is_some() {
            return self;
        }
        let (tx, rx) = crossbeam_channel::bounded::<Ticket>((blocks as usize).saturating_mul(2));
        let mut started = 0;
        for i in 0..PREFETCH_THREADS {
            let rx = rx.clone();
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vdisk-prefetch-{i}"))
                .spawn(move || {
                    for ticket in rx {
                        if inner.closed.load(Ordering::Relaxed) {
                            continue; // dropping the ticket fails its flight
                        }
                        // A panicking lower disk must not take the thread
                        // with it (the ticket's drop fails its flight).
                        let fetched = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            inner.fetch(ticket).is_ok()
                        }));
                        if fetched.unwrap_or(false) {
                            inner.prefetched.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            if spawned.is_ok() {
                started += 1;
            }
        }
        if started > 0 {
            self.prefetch = Some(tx);
        }
        self
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            prefetched: self.inner.prefetched.load(Ordering::Relaxed),
            zeros: self.inner.zeros.load(Ordering::Relaxed),
        }
    }

    /// The block size of the cache.
    pub fn block_size(&self) -> u32 {
        // Built from a u32 in `new`.
        self.inner.block_size as u32
    }

    /// Calls `piece(block, range in block, position in the read)` for each
    /// block piece of the `len` bytes at `offset`, in order, fetching
    /// blocks as needed (and queuing read-ahead for a sequential read).
    fn for_each_piece(
        &self,
        offset: u64,
        len: usize,
        mut piece: impl FnMut(&Block, std::ops::Range<usize>, usize),
    ) -> Result<()> {
        check_range(&|| self.describe(), offset, len as u64, self.inner.size)?;
        if len == 0 {
            return Ok(());
        }
        let end = offset + len as u64;
        let sequential = self.last_end.swap(end, Ordering::Relaxed) == offset;
        let run = if sequential {
            self.run
                .fetch_add(len as u64, Ordering::Relaxed)
                .saturating_add(len as u64)
        } else {
            self.run.store(len as u64, Ordering::Relaxed);
            len as u64
        };
        if sequential && run >= self.inner.block_size && self.read_ahead > 0 {
            self.read_ahead_from(end);
        }
        let bs = self.inner.block_size;
        let mut pos = offset;
        while pos < end {
            let block = pos / bs;
            let data = self.inner.block(block, sequential)?;
            let within = (pos - block * bs) as usize;
            let n = ((end - pos) as usize).min(data.len().saturating_sub(within));
            if n == 0 {
                return Err(Error::corrupt(
                    self.describe(),
                    format!(
                        "block {block} is {} bytes, short of offset {pos}",
                        data.len()
                    ),
                ));
            }
            piece(&data, within..within + n, (pos - offset) as usize);
            pos += n as u64;
        }
        Ok(())
    }

    /// Queues fetches of the blocks after the one holding byte `end - 1`.
    fn read_ahead_from(&self, end: u64) {
        let Some(tx) = &self.prefetch else { return };
        let first = end.div_ceil(self.inner.block_size);
        let blocks = self.inner.size.div_ceil(self.inner.block_size);
        let last = first.saturating_add(u64::from(self.read_ahead)).min(blocks);
        for block in first..last {
            if let Lookup::Fetch(mut ticket) = self.inner.lookup(block) {
                ticket.scan = true;
                match tx.try_send(ticket) {
                    Ok(()) => {}
                    // The ticket comes back and is dropped: its flight fails
                    // and the block is left to the reader.
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
    }
}

impl Inner {
    fn shard(&self, block: u64) -> &Mutex<Shard> {
        let h = block.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        &self.shards[(h % self.shards.len() as u64) as usize]
    }

    fn lookup(&self, block: u64) -> Lookup {
        self.shard(block)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(block)
    }

    /// Reads the block of `ticket` from the lower disk, caches it and wakes
    /// its waiters. On error nothing is cached and the waiters retry. A
    /// block the lower disk reports as all zeros is neither read nor cached.
    fn fetch(&self, ticket: Ticket) -> Result<Block> {
        let start = ticket.block * self.block_size;
        let len = self.block_size.min(self.size.saturating_sub(start)) as usize;
        let (result, keep) = match self.zero_block(start, len) {
            Some(zeros) => (Ok(zeros), false),
            None => (self.lower.read_owned(start, len).map(Arc::new), true),
        };
        if let Ok(b) = &result {
            if b.len() != len {
                // A lower disk breaking the read_owned contract must not
                // leave a short block behind.
                return Err(Error::corrupt(
                    self.lower.describe(),
                    format!("read of {len} bytes at {start} returned {}", b.len()),
                ));
            }
        }
        self.shard(ticket.block)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .complete(&ticket, result.as_ref().ok().filter(|_| keep));
        ticket.flight.finish(result.as_ref().ok().cloned());
        result
    }

    /// The shared zero block when `start..start+len` is all zero extents on
    /// the lower disk (an error asking counts as "not known to be zero":
    /// the read then reports it).
    fn zero_block(&self, start: u64, len: usize) -> Option<Block> {
        let extents = self.lower.extents(start, len as u64).ok()?;
        if extents.is_empty() || extents.iter().any(|e| e.kind != ExtentKind::Zero) {
            return None;
        }
        self.zeros.fetch_add(1, Ordering::Relaxed);
        if len as u64 != self.block_size {
            return Some(Arc::new(vec![0u8; len])); // the disk's short last block
        }
        Some(
            self.zero_block
                .get_or_init(|| Arc::new(vec![0u8; len]))
                .clone(),
        )
    }

    /// The block, from the cache, a fetch in flight, or the lower disk;
    /// `scan`: the read continues a sequential stream (shard.rs).
    fn block(&self, block: u64, scan: bool) -> Result<Block> {
        loop {
            match self.lookup(block) {
                Lookup::Hit(data) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(data);
                }
                Lookup::Wait(flight) => {
                    if let Some(data) = flight.wait() {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(data);
                    }
                    // That fetch failed: look again (and fetch it ourselves).
                }
                Lookup::Fetch(mut ticket) => {
                    ticket.scan = scan;
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    return self.fetch(ticket);
                }
            }
        }
    }
}

impl ReadDisk for CachedDisk {
    fn size(&self) -> u64 {
        self.inner.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.for_each_piece(offset, buf.len(), |data, within, at| {
            buf[at..at + within.len()].copy_from_slice(&data[within]);
        })
    }

    fn read_shared(&self, offset: u64, len: usize) -> Result<Vec<SharedBytes>> {
        let mut parts = Vec::new();
        self.for_each_piece(offset, len, |data, within, _| {
            // `for_each_piece` checked the range against the block.
            if let Some(p) = SharedBytes::new(data.clone(), within) {
                parts.push(p);
            }
        })?;
        Ok(parts)
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        self.inner.lower.extents(offset, len)
    }

    fn describe(&self) -> String {
        format!("cache over {}", self.inner.lower.describe())
    }

    fn depth(&self) -> u32 {
        self.inner.lower.depth().saturating_add(1)
    }
}

impl Drop for CachedDisk {
    fn drop(&mut self) {
        // The prefetch threads end when the channel closes; tickets still
        // queued are discarded rather than fetched.
        self.inner.closed.store(true, Ordering::Relaxed);
    }
}
