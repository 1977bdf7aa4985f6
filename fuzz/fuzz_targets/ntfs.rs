//! Fuzz target `ntfs`. The body is `lifeboat_browse::fuzzing::ntfs` (input layout and
//! checks in its doc), which the crate's `tests/fuzz_corpus.rs` replays
//! over the committed corpus in a plain `cargo test`.
//!
//! The walk goes through `NtfsFs`, so through the reader's panic boundary
//! (`crates/browse/src/ntfs/guard.rs`), which turns a panic of the `ntfs`
//! crate into an error. libFuzzer's panic hook aborts before any unwinding,
//! so the hook installed at start lets a panic raised in the `ntfs` crate's
//! own source unwind to that boundary (it is handled there, as in
//! production) and still aborts on every other panic: a panic of
//! Lifeboat's code, or one that would escape the boundary, is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "alloc_limit.rs"]
mod alloc_limit;

#[global_allocator]
static ALLOC: alloc_limit::Limited = alloc_limit::Limited;

/// Panics raised in this crate's source are handled by the boundary.
const BOUNDED_CRATE: &str = "/ntfs-0.4.";

fuzz_target!(
    init: {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let inside = info
                .location()
                .is_some_and(|l| l.file().contains(BOUNDED_CRATE));
            if !inside {
                abort(info);
            }
        }));
    },
    |data: &[u8]| lifeboat_browse::fuzzing::ntfs(data)
);
