//! Fuzz target `image_headers`. The body is `lifeboat_formats::fuzzing::image_headers` (input layout and
//! checks in its module doc), which the crate's `tests/fuzz_corpus.rs`
//! replays over the committed corpus in a plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lifeboat_formats::fuzzing::image_headers(data));
