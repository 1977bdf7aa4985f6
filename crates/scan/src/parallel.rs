//! Running one job per item of a list on a few threads, with the results
//! handed back in the order of the items: what mapping files
//! ([`crate::mapping`]) and reading volume ranges
//! ([`crate::ext4list::volume`]) both do. Those jobs are latency-bound
//! (each waits on a FUSE request), so the threads keep several in flight
//! rather than share out CPU work.
//!
//! ([`crate::windowed`] hands its reads on as they end, not in order, and
//! keeps its own loop.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `job(state, index, item)` for every item of `items` on up to
/// `threads` threads (one runs on the calling thread), each thread with its own `state` from `new_state`
/// (a reusable buffer, say). Slot `i` of the result holds the result of
/// item `i`, or `None` when `cancel` was set before the item was taken.
pub fn run_in_order<I, T, S>(
    items: &[I],
    threads: usize,
    cancel: Option<&AtomicBool>,
    new_state: impl Fn() -> S + Sync,
    job: impl Fn(&mut S, usize, &I) -> T + Sync,
) -> Vec<Option<T>>
where
    I: Sync,
    T: Send,
{
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(items.len()));
    let worker = || {
        let mut state = new_state();
        let mut mine = Vec::new();
        while !cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            mine.push((i, job(&mut state, i, item)));
        }
        // No worker panics while holding the lock.
        done.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
    };
    match threads.max(1).min(items.len()) {
        0 => {}
        // One worker: no thread to spawn.
        1 => worker(),
        n => std::thread::scope(|s| {
            for _ in 0..n {
                s.spawn(worker);
            }
        }),
    }
    let mut out: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
    for (i, t) in done.into_inner().unwrap_or_else(|e| e.into_inner()) {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items_and_each_thread_its_state() {
        let items: Vec<u64> = (0..1000).rev().collect();
        let got = run_in_order(&items, 4, None, Vec::new, |seen: &mut Vec<usize>, i, &x| {
            seen.push(i);
            // Each thread's state holds only the indexes it took, in order.
            assert!(seen.windows(2).all(|w| w[0] < w[1]));
            (i, x * 2)
        });
        assert_eq!(got.len(), items.len());
        for (k, g) in got.into_iter().enumerate() {
            assert_eq!(g, Some((k, items[k] * 2)));
        }
        // One thread: the calling one.
        let caller = std::thread::current().id();
        let one = run_in_order(
            &items,
            1,
            None,
            || (),
            |_, i, &x| {
                assert_eq!(std::thread::current().id(), caller);
                (i, x)
            },
        );
        assert!(one
            .iter()
            .enumerate()
            .all(|(k, g)| *g == Some((k, items[k]))));
        let none: Vec<Option<u8>> = run_in_order(&[] as &[u8], 4, None, || (), |_, _, &b| b);
        assert!(none.is_empty());
    }

    #[test]
    fn a_set_cancel_flag_leaves_the_items_not_taken_empty() {
        let cancel = AtomicBool::new(false);
        let items: Vec<u32> = (0..500).collect();
        let got = run_in_order(
            &items,
            3,
            Some(&cancel),
            || (),
            |_, i, &x| {
                if i == 10 {
                    cancel.store(true, Ordering::Relaxed);
                }
                x
            },
        );
        assert_eq!(got[10], Some(10));
        let taken = got.iter().filter(|g| g.is_some()).count();
        // Each of the 3 threads takes at most one more item after the flag.
        assert!(taken <= 14, "{taken} items taken after cancel");
        for (k, g) in got.iter().enumerate() {
            assert!(g.is_none() || *g == Some(k as u32));
        }
    }
}
