//! [`Pool`]: a fixed number of worker threads running the RPC calls the
//! reactor (or a worker following a connection) has read, so one
//! connection's calls run concurrently (and a slow disk read on one
//! connection does not hold up the others). The queue is bounded by the
//! reactor, which stops reading a connection that has
//! [`super::reactor::MAX_IN_FLIGHT`] calls unanswered.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// A unit of work.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stop: bool,
}

/// The worker threads and their queue.
pub(crate) struct Pool {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    threads: Vec<JoinHandle<()>>,
}

/// Queues jobs for a [`Pool`] from anywhere (a job may queue others).
#[derive(Clone)]
pub(crate) struct PoolHandle(Arc<(Mutex<Queue>, Condvar)>);

impl PoolHandle {
    /// Queues `job` for the next free thread.
    pub(crate) fn submit(&self, job: Job) {
        let (q, cv) = &*self.0;
        q.lock()
            .unwrap_or_else(|e| e.into_inner())
            .jobs
            .push_back(job);
        cv.notify_one();
    }

    /// Jobs waiting for a thread.
    pub(crate) fn queued(&self) -> usize {
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .jobs
            .len()
    }
}

impl Pool {
    /// Starts `n` (at least one) threads named `name`.
    pub(crate) fn start(n: usize, name: &str) -> std::io::Result<Pool> {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let mut threads = Vec::new();
        for _ in 0..n.max(1) {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || work(&s))?,
            );
        }
        Ok(Pool { shared, threads })
    }

    /// A handle that queues jobs for these threads.
    pub(crate) fn handle(&self) -> PoolHandle {
        PoolHandle(self.shared.clone())
    }

    /// Runs what is queued, then stops the threads and waits for them.
    pub(crate) fn stop(&mut self) {
        let (q, cv) = &*self.shared;
        q.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(shared: &(Mutex<Queue>, Condvar)) {
    let (q, cv) = shared;
    loop {
        let job = {
            let mut g = q.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = g.jobs.pop_front() {
                    break j;
                }
                if g.stop {
                    return;
                }
                g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        };
        // A panicking call must not take the worker with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn jobs_run_on_the_workers_and_stop_drains_the_queue() {
        let mut p = Pool::start(3, "t").unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            let n = n.clone();
            p.handle().submit(Box::new(move || {
                if i == 7 {
                    panic!("a panicking job");
                }
                n.fetch_add(1, Ordering::SeqCst);
            }));
        }
        p.stop();
        assert_eq!(n.load(Ordering::SeqCst), 99);
    }
}
