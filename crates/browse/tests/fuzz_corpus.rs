//! Replays the committed corpora of fuzz targets `xfs` and `ntfs` through
//! the functions the targets call (no nightly toolchain needed).

use lifeboat_testsupport::fuzz::replay_corpus;

#[test]
fn xfs_corpus_replays_without_panic() {
    replay_corpus("xfs", lifeboat_browse::fuzzing::xfs);
}

#[test]
fn ntfs_corpus_replays_without_panic() {
    replay_corpus("ntfs", lifeboat_browse::fuzzing::ntfs);
}
