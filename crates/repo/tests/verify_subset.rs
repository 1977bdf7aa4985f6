//! Verify of a sample and of what was not verified lately: `K/N` slices
//! cover every chunk once over N runs, `P%` reads about P percent, chunks
//! outside the sample are still checked to exist, and `reverify_after`
//! skips chunks verified intact recently (remembered in `state/verified`,
//! which is authenticated: a forged one is ignored).

mod common;
use common::*;
use lifeboat_repo::*;

const CHUNKS: usize = 400;

fn setup() -> (tempfile::TempDir, Repository, Manifest) {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let m = backup(&repo, "web01", &noise(CHUNKS * CHUNK as usize, 7));
    (dir, repo, m)
}

fn subset(s: &str) -> VerifyOptions {
    VerifyOptions {
        subset: Some(s.parse().unwrap()),
        ..Default::default()
    }
}

#[test]
fn slices_cover_every_chunk_once() {
    let (_dir, repo, _m) = setup();
    let mut total = 0;
    for k in 1..=4 {
        let r = repo.verify_with(&subset(&format!("{k}/4"))).unwrap();
        assert!(r.is_ok());
        assert_eq!(r.chunks_referenced, CHUNKS as u64);
        assert_eq!(r.chunks_checked + r.chunks_not_read, CHUNKS as u64);
        assert!(
            r.chunks_checked > 0 && r.chunks_checked < CHUNKS as u64 / 2,
            "{r:?}"
        );
        total += r.chunks_checked;
    }
    assert_eq!(
        total, CHUNKS as u64,
        "the four slices read every chunk once"
    );
}

#[test]
fn a_percentage_reads_exactly_that_share() {
    let (_dir, repo, _m) = setup();
    let r = repo.verify_with(&subset("10%")).unwrap();
    assert_eq!(r.chunks_checked, CHUNKS as u64 / 10, "{r:?}");
    assert_eq!(r.chunks_checked + r.chunks_not_read, CHUNKS as u64);
    assert_eq!(
        repo.verify_with(&subset("0.01%")).unwrap().chunks_checked,
        1,
        "at least one chunk"
    );
    assert_eq!(
        repo.verify_with(&subset("100%")).unwrap().chunks_checked,
        CHUNKS as u64
    );
    for bad in ["0%", "101%", "0/3", "4/3", "x", "1/0"] {
        assert!(bad.parse::<Subset>().is_err(), "{bad} is refused");
    }
}

#[test]
fn a_missing_chunk_outside_the_sample_is_still_found() {
    let (_dir, repo, m) = setup();
    let victim = repo.load_index(&m, "disk0").unwrap().digests[3].unwrap();
    std::fs::remove_file(chunk_file(&repo, &victim)).unwrap();
    // One slice reads it, the other only checks it exists: both name it.
    for k in ["1/2", "2/2"] {
        let r = repo.verify_with(&subset(k)).unwrap();
        assert_eq!(r.damage.len(), 1, "slice {k}: {r:?}");
        assert_eq!(r.damage[0].state, DamageState::Missing);
        assert_eq!(r.damage[0].path, chunk_file(&repo, &victim));
    }
}

#[test]
fn recently_verified_chunks_are_not_read_again() {
    let (_dir, repo, m) = setup();
    let recent = VerifyOptions {
        reverify_after: Some(chrono::Duration::days(7)),
        ..Default::default()
    };
    // Nothing verified yet: everything is read.
    let r = repo.verify_with(&recent).unwrap();
    assert_eq!(r.chunks_checked, CHUNKS as u64);
    // Now everything is recent.
    let r = repo.verify_with(&recent).unwrap();
    assert_eq!(r.chunks_checked, 0);
    assert_eq!(r.chunks_recently_verified, CHUNKS as u64);

    // A chunk found damaged loses its record and is read next time.
    let d = repo.load_index(&m, "disk0").unwrap().digests[5].unwrap();
    let path = chunk_file(&repo, &d);
    lifeboat_testsupport::damage::Damage::Flip.apply(&path, &path);
    let full = repo.verify(None).unwrap();
    assert_eq!(full.damage.len(), 1);
    let r = repo.verify_with(&recent).unwrap();
    assert_eq!(r.chunks_checked, 1, "{r:?}");
    assert_eq!(r.damage.len(), 1);

    // A forged record is ignored: every chunk is read again.
    let state = repo.path().join("state/verified");
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&state, &bytes).unwrap();
    let r = repo.verify_with(&recent).unwrap();
    assert_eq!(r.chunks_checked, CHUNKS as u64, "{r:?}");
}
