//! Damaged repositories: flipped bytes, deleted and swapped chunk files,
//! damaged indexes; read_chunk, RestorePointDisk and verify must name them.

mod common;
use common::*;
use lifeboat_repo::*;
use lifeboat_vdisk::ReadDisk;

fn setup(encrypted: bool) -> (tempfile::TempDir, Repository, Manifest, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), encrypted);
    let data = noise(4 * CHUNK as usize, 11);
    let m = backup(&repo, "web01", &data);
    (dir, repo, m, data)
}

#[test]
fn flipped_byte_gives_corrupt_chunk_and_verify_names_the_user() {
    for encrypted in [true, false] {
        let (_dir, repo, m, _) = setup(encrypted);
        let index = repo.load_index(&m, "disk0").unwrap();
        let d = index.digests[2].unwrap();
        let path = chunk_file(&repo, &d);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        match repo.read_chunk(&d) {
            Err(Error::CorruptChunk { digest, .. }) => assert_eq!(digest, d),
            other => panic!("expected CorruptChunk, got {other:?}"),
        }
        let report = repo.verify(None).unwrap();
        assert_eq!(report.restore_points_checked, 1);
        assert_eq!(report.chunks_checked, 4);
        assert_eq!(report.bytes_checked, 3 * CHUNK as u64);
        assert_eq!(report.damage.len(), 1);
        let bad = &report.damage[0];
        assert_eq!(bad.kind, FileKind::Chunk);
        assert_eq!(bad.path, chunk_file(&repo, &d));
        assert_eq!(bad.used_by, vec![(m.name(), "disk0".to_string())]);
        assert_eq!(bad.restore_points, vec![m.name()]);
        assert!(bad.detail.contains("corrupt"), "{}", bad.detail);
        // Verify of the one restore point gives the same; JSON works.
        let only = repo.verify(Some(&m)).unwrap();
        assert_eq!(only.damage.len(), 1);
        assert!(serde_json::to_string(&only)
            .unwrap()
            .contains(&d.to_string()));
    }
}

#[test]
fn deleted_chunk_is_missing_everywhere() {
    let (_dir, repo, m, _) = setup(true);
    let index = repo.load_index(&m, "disk0").unwrap();
    let d = index.digests[1].unwrap();
    std::fs::remove_file(chunk_file(&repo, &d)).unwrap();
    assert!(matches!(repo.read_chunk(&d), Err(Error::MissingChunk { digest }) if digest == d));
    assert!(matches!(
        repo.chunk_stored_size(&d),
        Err(Error::MissingChunk { .. })
    ));
    // Through the disk: a vdisk Source error wrapping the repo error.
    let disk = repo.open_disk(&m, "disk0").unwrap();
    let mut buf = vec![0u8; 100];
    let err = disk.read_at(&mut buf, CHUNK as u64 + 5).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&m.name()) && msg.contains("missing"), "{msg}");
    let lifeboat_vdisk::Error::Source { source, .. } = err else {
        panic!("expected Source, got {err:?}")
    };
    assert!(matches!(
        source.downcast_ref::<Error>(),
        Some(Error::MissingChunk { .. })
    ));
    // Other chunks still read.
    disk.read_at(&mut buf, 0).unwrap();
    let report = repo.verify(None).unwrap();
    assert_eq!(report.damage.len(), 1);
    assert_eq!(report.damage[0].state, DamageState::Missing);
    assert!(report.damage[0].detail.contains("missing"));
}

#[test]
fn swapped_chunk_files_fail_authentication() {
    for encrypted in [true, false] {
        let (_dir, repo, m, _) = setup(encrypted);
        let index = repo.load_index(&m, "disk0").unwrap();
        let (a, b) = (index.digests[0].unwrap(), index.digests[3].unwrap());
        let (pa, pb) = (chunk_file(&repo, &a), chunk_file(&repo, &b));
        let (ba, bb) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        std::fs::write(&pa, &bb).unwrap();
        std::fs::write(&pb, &ba).unwrap();
        for d in [a, b] {
            assert!(
                matches!(repo.read_chunk(&d), Err(Error::CorruptChunk { digest, .. }) if digest == d),
                "encrypted={encrypted}"
            );
        }
        assert_eq!(repo.verify(None).unwrap().damage.len(), 2);
    }
}

#[test]
fn damaged_index_and_manifest_are_corrupt_files() {
    let (_dir, repo, m, _) = setup(true);
    let idx = repo
        .path()
        .join("indexes/web01")
        .join(&m.id)
        .join("disk0.idx");
    let mut bytes = std::fs::read(&idx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&idx, &bytes).unwrap();
    assert!(matches!(
        repo.load_index(&m, "disk0"),
        Err(Error::CorruptFile { .. })
    ));
    let report = repo.verify(None).unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(report.damage[0].kind, FileKind::Index);
    assert_eq!(report.damage[0].path, idx);
    assert!(!report.is_ok());
    // gc refuses to sweep on incomplete marks, naming the index.
    match repo.gc() {
        Err(Error::Damaged { files, .. }) => assert_eq!(files[0].path, idx),
        other => panic!("expected Damaged, got {other:?}"),
    }

    let man = repo
        .path()
        .join("snapshots/web01")
        .join(format!("{}.manifest", m.id));
    let mut bytes = std::fs::read(&man).unwrap();
    bytes[60] ^= 0x01;
    std::fs::write(&man, &bytes).unwrap();
    assert!(repo.list(None).unwrap().is_empty());
    let listing = repo.list_all(None).unwrap();
    assert_eq!(listing.damaged.len(), 1);
    assert_eq!(listing.damaged[0].path, man);
}

#[test]
fn a_manifest_copied_to_another_name_is_refused() {
    let (_dir, repo, m, _) = setup(false);
    let dir = repo.path().join("snapshots/web01");
    let fake = "20990101-000000-abcd";
    std::fs::copy(
        dir.join(format!("{}.manifest", m.id)),
        dir.join(format!("{fake}.manifest")),
    )
    .unwrap();
    // The copy is listed as damaged; the original still lists.
    let listing = repo.list_all(None).unwrap();
    assert_eq!(listing.points.len(), 1);
    assert_eq!(listing.damaged.len(), 1);
    assert_eq!(
        listing.damaged[0].restore_points,
        vec![format!("web01@{fake}")]
    );
    assert!(matches!(
        repo.resolve(&format!("web01@{fake}")),
        Err(Error::CorruptFile { .. })
    ));
}

#[test]
fn an_oversized_chunk_file_is_corrupt_without_being_read() {
    let (_dir, repo, m, _) = setup(true);
    let d = repo.load_index(&m, "disk0").unwrap().digests[0].unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(chunk_file(&repo, &d))
        .unwrap();
    f.set_len(1 << 30).unwrap(); // sparse: costs no space
    match repo.read_chunk(&d) {
        Err(Error::CorruptChunk { detail, .. }) => assert!(detail.contains("exceeds"), "{detail}"),
        other => panic!("expected CorruptChunk, got {other:?}"),
    }
}
