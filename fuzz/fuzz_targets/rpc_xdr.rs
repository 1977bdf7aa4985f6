//! Fuzz target `rpc_xdr`. The body is `lifeboat_nfs::fuzzing::rpc_xdr` (input layout and
//! checks in its module doc), which the crate's `tests/fuzz_corpus.rs`
//! replays over the committed corpus in a plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lifeboat_nfs::fuzzing::rpc_xdr(data));
