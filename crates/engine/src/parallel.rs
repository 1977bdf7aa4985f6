//! The worker loop shared by backup and restore: `workers` threads take
//! chunk numbers `0..count` from one counter and run `job` on each; the first
//! error stops every worker and is returned.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The number of worker threads to use: one per core plus one, so a
/// worker waiting on a cold read or a page fault does not leave a core idle.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
        + 1
}

/// Runs `job(state, chunk_no)` for every chunk number in `0..count` on
/// `workers` threads. Each worker builds its own state with `init` once
/// (buffers are reused). Returns the first error.
pub fn for_each_chunk<S, E: Send>(
    count: u64,
    workers: usize,
    init: impl Fn() -> S + Sync,
    job: impl Fn(&mut S, u64) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                let mut state = init();
                while !failed.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    if let Err(e) = job(&mut state, n) {
                        failed.store(true, Ordering::Relaxed);
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_every_chunk_once_and_stops_on_error() {
        let seen = Mutex::new(Vec::new());
        for_each_chunk::<(), ()>(
            100,
            3,
            || (),
            |_, n| {
                seen.lock().unwrap().push(n);
                Ok(())
            },
        )
        .unwrap();
        let mut v = seen.into_inner().unwrap();
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());

        let r = for_each_chunk(1000, 2, || (), |_, n| if n == 10 { Err(n) } else { Ok(()) });
        assert_eq!(r, Err(10));
    }
}
