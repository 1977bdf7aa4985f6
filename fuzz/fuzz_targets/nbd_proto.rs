//! Fuzz target `nbd_proto`. The body is `lifeboat_nbd::fuzzing::nbd_proto` (input layout and
//! checks in its module doc), which the crate's `tests/fuzz_corpus.rs`
//! replays over the committed corpus in a plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lifeboat_nbd::fuzzing::nbd_proto(data));
