//! Replays the committed corpora of fuzz targets `nbd_proto` and
//! `nbd_handshake` through the functions the targets call (no nightly
//! toolchain needed).

use lifeboat_testsupport::fuzz::replay_corpus;

#[test]
fn nbd_proto_corpus_replays_without_panic() {
    replay_corpus("nbd_proto", lifeboat_nbd::fuzzing::nbd_proto);
}

#[test]
fn nbd_handshake_corpus_replays_without_panic() {
    replay_corpus("nbd_handshake", lifeboat_nbd::fuzzing::nbd_handshake);
}
