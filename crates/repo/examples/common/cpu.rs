//! CPU time of the calling thread, shared by the measuring examples.

use std::fs::File;
use std::io::Read;

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`).
pub fn thread_cpu_ns() -> u64 {
    let mut s = String::new();
    File::open("/proc/thread-self/schedstat")
        .and_then(|mut f| f.read_to_string(&mut s))
        .expect("read /proc/thread-self/schedstat");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("parse schedstat")
}
