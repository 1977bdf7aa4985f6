//! Replays the committed corpus of fuzz target `rpc_xdr` through the
//! function the target calls (no nightly toolchain needed).

#[test]
fn rpc_xdr_corpus_replays_without_panic() {
    lifeboat_testsupport::fuzz::replay_corpus("rpc_xdr", lifeboat_nfs::fuzzing::rpc_xdr);
}
