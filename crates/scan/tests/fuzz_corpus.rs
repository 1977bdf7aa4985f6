//! Replays the committed corpus of fuzz target `ext4list` through the
//! function the target calls (no nightly toolchain needed).

#[test]
fn ext4list_corpus_replays_without_panic() {
    lifeboat_testsupport::fuzz::replay_corpus("ext4list", lifeboat_scan::fuzzing::ext4list);
}
