//! Fuzz target `repo_blob`: the decoders of repository files. The body is
//! `lifeboat_repo::fuzzing::repo_blob` (input layout in its module doc),
//! which `crates/repo/tests/fuzz_corpus.rs` replays over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lifeboat_repo::fuzzing::repo_blob(data));
