//! Replays the committed corpora of this crate's fuzz targets through the
//! functions the targets call (no nightly toolchain needed).

use lifeboat_formats::fuzzing;
use lifeboat_testsupport::fuzz::replay_corpus;

#[test]
fn image_headers_corpus_replays_without_panic() {
    replay_corpus("image_headers", fuzzing::image_headers);
}

#[test]
fn partition_table_corpus_replays_without_panic() {
    replay_corpus("partition_table", fuzzing::partition_table);
}

#[test]
fn lvm_corpus_replays_without_panic() {
    replay_corpus("lvm", fuzzing::lvm);
}

#[test]
fn vmdk_descriptor_corpus_replays_without_panic() {
    replay_corpus("vmdk_descriptor", fuzzing::vmdk_descriptor);
}
