//! [`CacheBudget`]: a memory limit shared by several [`CachedDisk`]s
//! (every disk of every session of one instant-recovery service), so the
//! disk being read gets the memory instead of a fixed share per disk.
//!
//! A cache slot counts as one block of its cache's block size while it
//! holds data. A cache takes budget when it fills a free slot; when the
//! budget is spent it replaces one of its own blocks instead (its CLOCK or
//! scan policy, shard.rs), and a cache holding nothing yet serves the read
//! without caching it. Memory goes back to the budget when a cache is
//! dropped (the session stops), not before: an idle session keeps what it
//! cached.
//!
//! [`CachedDisk`]: super::CachedDisk

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of cached blocks allowed, and in use, across the caches sharing it.
#[derive(Debug)]
pub struct CacheBudget {
    limit: u64,
    used: AtomicU64,
}

impl CacheBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        CacheBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by the caches now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit under the limit.
    pub(crate) fn try_take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Returns `bytes` taken earlier.
    pub(crate) fn give_back(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_what_fits_and_gets_it_back() {
        let b = CacheBudget::new(10);
        assert!(b.try_take(6));
        assert!(!b.try_take(5));
        assert!(b.try_take(4));
        assert_eq!(b.used(), 10);
        b.give_back(6);
        assert_eq!(b.used(), 4);
        assert!(b.try_take(6));
        assert!(!b.try_take(u64::MAX));
    }
}
