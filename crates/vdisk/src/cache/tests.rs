//! Tests of [`CachedDisk`] with lower disks that count, fail and stall.

use super::*;
use crate::testsuite::{check_read_disk, pattern_with_holes};
use crate::MemDisk;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A lower disk that counts reads per block of `block`, can fail reads that
/// touch `fail_block`, and can stall every read.
struct Probe {
    inner: MemDisk,
    block: u64,
    reads: Mutex<HashMap<u64, u32>>,
    fail_block: AtomicU64,
    delay: Duration,
    /// Report all-zero blocks as `Zero` extents (a sparse lower disk).
    report_holes: AtomicBool,
}

const NO_FAIL: u64 = u64::MAX;

impl Probe {
    fn new(bytes: Vec<u8>, block: u64, delay: Duration) -> Arc<Self> {
        Arc::new(Probe {
            inner: MemDisk::new("probe", bytes),
            block,
            reads: Mutex::new(HashMap::new()),
            fail_block: AtomicU64::new(NO_FAIL),
            delay,
            report_holes: AtomicBool::new(false),
        })
    }

    fn reads_of(&self, block: u64) -> u32 {
        self.reads.lock().unwrap().get(&block).copied().unwrap_or(0)
    }

    fn total_reads(&self) -> u32 {
        self.reads.lock().unwrap().values().sum()
    }
}

impl ReadDisk for Probe {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        std::thread::sleep(self.delay);
        let first = offset / self.block;
        let last = (offset + buf.len() as u64).div_ceil(self.block);
        let fail = self.fail_block.load(Ordering::SeqCst);
        if (first..last).contains(&fail) {
            return Err(Error::io(
                self.describe(),
                offset,
                std::io::Error::other("injected failure"),
            ));
        }
        let mut reads = self.reads.lock().unwrap();
        for b in first..last {
            *reads.entry(b).or_default() += 1;
        }
        drop(reads);
        self.inner.read_at(buf, offset)
    }
    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        if !self.report_holes.load(Ordering::SeqCst) {
            return self.inner.extents(offset, len);
        }
        let bytes = self.inner.to_vec();
        let end = (offset + len).min(bytes.len() as u64);
        let mut list = Vec::new();
        let mut pos = offset;
        while pos < end {
            let stop = ((pos / self.block + 1) * self.block).min(end);
            let piece = &bytes[pos as usize..stop as usize];
            crate::push_merged(
                &mut list,
                if piece.iter().all(|&b| b == 0) {
                    Extent::zero(pos, stop - pos)
                } else {
                    Extent::data(pos, stop - pos)
                },
            );
            pos = stop;
        }
        Ok(list)
    }
    fn describe(&self) -> String {
        "probe disk".into()
    }
}

#[test]
fn hole_blocks_are_served_as_zeros_without_reading_or_caching_them() {
    // Every third 64 KiB block is a hole; the cache holds exactly the data
    // blocks, so holes taking slots would make the second pass miss.
    let block = 65536usize;
    let blocks = 48usize;
    let content = pattern_with_holes(blocks * block + 1000, block);
    let probe = Probe::new(content.clone(), block as u64, Duration::ZERO);
    probe.report_holes.store(true, Ordering::SeqCst);
    let data_blocks = (0..=blocks).filter(|i| i % 3 != 0).count() as u64;
    let cache = CachedDisk::new(probe.clone(), block as u32, data_blocks * block as u64).unwrap();
    check_read_disk(&cache, &content);
    let mut whole = vec![0xEEu8; content.len()];
    cache.read_at(&mut whole, 0).unwrap();
    assert!(whole == content);
    for b in (0..=blocks as u64).filter(|b| b % 3 == 0) {
        assert_eq!(probe.reads_of(b), 0, "hole block {b} was read");
    }
    let reads = probe.total_reads();
    cache.read_at(&mut whole, 0).unwrap();
    assert!(whole == content);
    assert!(cache.stats().zeros > 0, "{:?}", cache.stats());
    assert!(
        probe.total_reads() - reads <= 16,
        "a second pass re-read {} blocks: holes took cache slots",
        probe.total_reads() - reads
    );
}

#[test]
fn cache_smaller_than_the_disk_passes_the_read_suite() {
    let expected = pattern_with_holes((5 << 20) + 333, 1 << 20);
    let lower: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("m", expected.clone()));
    let cache = CachedDisk::new(lower.clone(), 65536, 1 << 20).unwrap();
    check_read_disk(&cache, &expected);
    let s = cache.stats();
    assert!(
        s.misses > 16,
        "a 1 MiB cache over 5 MiB must miss again: {s:?}"
    );
    assert!(s.hits > 0, "{s:?}");
    assert_eq!(cache.depth(), 2);

    let cache = CachedDisk::new(lower, 4096, 100_000)
        .unwrap()
        .with_read_ahead(8);
    check_read_disk(&cache, &expected);
}

#[test]
fn bad_arguments_are_refused() {
    let lower: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("m", vec![0; 1000]));
    assert!(matches!(
        CachedDisk::new(lower.clone(), 0, 1 << 20),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        CachedDisk::new(lower, 4096, 4095),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn lower_errors_reach_the_reader_and_are_not_cached() {
    let content = pattern_with_holes(1 << 20, 4096);
    let probe = Probe::new(content.clone(), 4096, Duration::ZERO);
    let cache = CachedDisk::new(probe.clone(), 4096, 1 << 20).unwrap();
    probe.fail_block.store(5, Ordering::SeqCst);
    let mut buf = vec![0u8; 3 * 4096];
    let err = cache.read_at(&mut buf, 4 * 4096).unwrap_err();
    assert!(
        matches!(&err, Error::Io { what, .. } if what == "probe disk")
            && err.to_string().contains("injected"),
        "{err}"
    );
    // The same block fails again while the lower disk fails...
    assert!(cache.read_at(&mut buf[..10], 5 * 4096 + 7).is_err());
    // ...and reads right once it recovers.
    probe.fail_block.store(NO_FAIL, Ordering::SeqCst);
    cache.read_at(&mut buf, 4 * 4096).unwrap();
    assert!(buf == content[4 * 4096..7 * 4096]);
    assert_eq!(probe.reads_of(5), 1);
}

#[test]
fn repeated_reads_hit_the_cache() {
    let content = pattern_with_holes(1 << 20, 4096);
    let probe = Probe::new(content.clone(), 65536, Duration::ZERO);
    let cache = CachedDisk::new(probe.clone(), 65536, 1 << 20).unwrap();
    let mut buf = vec![0u8; 1000];
    for _ in 0..5 {
        cache.read_at(&mut buf, 3 * 65536 + 10).unwrap();
        assert!(buf == content[3 * 65536 + 10..3 * 65536 + 1010]);
    }
    assert_eq!(probe.total_reads(), 1);
    assert_eq!(
        cache.stats(),
        CacheStats {
            hits: 4,
            misses: 1,
            prefetched: 0,
            zeros: 0
        }
    );
}

#[test]
fn concurrent_misses_of_one_block_read_the_lower_disk_once() {
    let content = pattern_with_holes(1 << 20, 4096);
    let probe = Probe::new(content.clone(), 65536, Duration::from_millis(100));
    let cache = Arc::new(CachedDisk::new(probe.clone(), 65536, 1 << 20).unwrap());
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 100];
                cache.read_at(&mut buf, 2 * 65536 + t * 100).unwrap();
                buf
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let at = 2 * 65536 + t * 100;
        assert!(h.join().unwrap() == content[at..at + 100]);
    }
    assert_eq!(probe.reads_of(2), 1);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (7, 1), "{s:?}");
}

#[test]
fn sequential_reads_prefetch_the_next_blocks() {
    let bs = 65536u64;
    let content = pattern_with_holes(4 << 20, 4096);
    let probe = Probe::new(content.clone(), bs, Duration::from_millis(5));
    let cache = CachedDisk::new(probe.clone(), bs as u32, 4 << 20)
        .unwrap()
        .with_read_ahead(4);
    let mut buf = vec![0u8; bs as usize];
    // The first read at 0 counts as sequential (a booting VM).
    cache.read_at(&mut buf, 0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().prefetched < 4 {
        assert!(
            Instant::now() < deadline,
            "read-ahead never ran: {:?}",
            cache.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for b in 1..=4 {
        assert!(probe.reads_of(b) == 1, "block {b} was not prefetched");
    }
    // Reading on finds them cached, and keeps prefetching ahead.
    for b in 1..16u64 {
        cache.read_at(&mut buf, b * bs).unwrap();
        assert!(buf == content[(b * bs) as usize..((b + 1) * bs) as usize]);
    }
    let s = cache.stats();
    assert!(s.hits >= 4, "{s:?}");
    for b in 0..16 {
        assert_eq!(probe.reads_of(b), 1, "block {b} read twice: {s:?}");
    }

    // Random reads prefetch nothing.
    let probe = Probe::new(content, bs, Duration::ZERO);
    let cache = CachedDisk::new(probe, bs as u32, 4 << 20)
        .unwrap()
        .with_read_ahead(4);
    for b in [7u64, 3, 30, 12] {
        cache.read_at(&mut buf[..10], b * bs + 1).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(cache.stats().prefetched, 0);
}

#[test]
fn a_second_sequential_pass_over_a_disk_twice_the_cache_hits_most_of_the_cache() {
    let block = 4096usize;
    let blocks = 256usize;
    let content: Vec<u8> = (0..blocks * block)
        .map(|i| (i / block % 251 + 1) as u8)
        .collect();
    let probe = Probe::new(content.clone(), block as u64, Duration::ZERO);
    let capacity = (blocks / 2 * block) as u64;
    let cache = CachedDisk::new(probe.clone(), block as u32, capacity)
        .unwrap()
        .with_read_ahead(4);
    let mut buf = vec![0u8; 1024];
    let mut pass = || {
        for offset in (0..content.len()).step_by(buf.len()) {
            cache.read_at(&mut buf, offset as u64).unwrap();
            assert!(buf[..] == content[offset..offset + buf.len()]);
        }
    };
    pass();
    let first = probe.total_reads();
    pass();
    let second = probe.total_reads() - first;
    // Plain CLOCK would read all 256 blocks again; the cache holds 128 and
    // loses at most one per shard (plus a few to read-ahead races).
    assert!(
        second <= (blocks - blocks / 2 + 2 * SHARDS) as u32,
        "the second pass read {second} of {blocks} blocks again"
    );
}

#[test]
fn caches_sharing_a_budget_hold_at_most_the_budget_and_give_it_back_when_dropped() {
    let block = 65536u64;
    let content = vec![7u8; 16 * block as usize];
    let budget = Arc::new(CacheBudget::new(12 * block));
    let a_lower = Probe::new(content.clone(), block, Duration::ZERO);
    let b_lower = Probe::new(content.clone(), block, Duration::ZERO);
    let a = CachedDisk::with_budget(a_lower.clone(), block as u32, budget.clone()).unwrap();
    let b = CachedDisk::with_budget(b_lower.clone(), block as u32, budget.clone()).unwrap();
    let mut buf = vec![0u8; block as usize];
    // `a` alone may take the whole budget (more than a fixed half).
    for i in 0..10 {
        a.read_at(&mut buf, i * block).unwrap();
    }
    assert_eq!(budget.used(), 10 * block);
    for i in 0..16 {
        b.read_at(&mut buf, i * block).unwrap();
        assert_eq!(buf, content[..block as usize]);
    }
    assert!(budget.used() <= 12 * block, "{}", budget.used());
    // `a` kept what it had: a re-read does not touch its lower disk.
    for i in 0..10 {
        a.read_at(&mut buf, i * block).unwrap();
    }
    assert_eq!(a_lower.total_reads(), 10);
    drop(a);
    assert!(budget.used() <= 2 * block, "{}", budget.used());
    drop(b);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_sequential_run_shorter_than_a_block_prefetches_nothing() {
    let bs = 65536u64;
    let content = pattern_with_holes(4 << 20, 4096);
    let probe = Probe::new(content.clone(), bs, Duration::ZERO);
    let cache = CachedDisk::new(probe.clone(), bs as u32, 4 << 20)
        .unwrap()
        .with_read_ahead(4);
    let mut buf = vec![0u8; 16384];
    // A run of three 16 KiB reads in block 10 (a scanner's window).
    for i in 0..3u64 {
        let at = 10 * bs + 1000 + i * 16384;
        cache.read_at(&mut buf, at).unwrap();
        assert!(buf == content[at as usize..at as usize + 16384]);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(cache.stats().prefetched, 0);
    assert_eq!(probe.total_reads(), 1);
    // The fourth read completes a block's worth: read-ahead starts.
    cache.read_at(&mut buf, 10 * bs + 1000 + 3 * 16384).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().prefetched < 4 {
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(probe.reads_of(12), 1);
}
