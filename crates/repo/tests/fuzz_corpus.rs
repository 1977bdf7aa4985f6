//! Replays the committed corpus of fuzz target `repo_blob` through the
//! same function the target calls (no nightly toolchain needed).

#[test]
fn repo_blob_corpus_replays_without_panic() {
    lifeboat_testsupport::fuzz::replay_corpus("repo_blob", lifeboat_repo::fuzzing::repo_blob);
}
