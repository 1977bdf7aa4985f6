//! Fuzz target `xfs`. The body is `lifeboat_browse::fuzzing::xfs` (input layout and
//! checks in its doc), which the crate's `tests/fuzz_corpus.rs` replays
//! over the committed corpus in a plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "alloc_limit.rs"]
mod alloc_limit;

#[global_allocator]
static ALLOC: alloc_limit::Limited = alloc_limit::Limited;

fuzz_target!(|data: &[u8]| lifeboat_browse::fuzzing::xfs(data));
