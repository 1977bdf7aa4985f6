//! Chunks encoded away from the repository (a proxy's upload): the chunk
//! keys and a [`ChunkEncoder`] make the blobs the writer would, which
//! `store_encoded` stages like `store_chunk`; malformed blobs are refused,
//! a writer dropped without commit leaves no staged file, and
//! `missing_chunks` names what an index refers to that nobody stored.

mod common;
use common::*;
use lifeboat_repo::*;

fn encoder(repo: &Repository) -> ChunkEncoder {
    ChunkEncoder::new(repo.chunk_keys(), repo.chunk_size(), repo.zstd_level()).unwrap()
}

fn tmp_files(repo: &Repository) -> usize {
    let mut n = 0;
    for prefix in std::fs::read_dir(repo.path().join("chunks")).unwrap() {
        for f in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            n += usize::from(
                f.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tmp-"),
            );
        }
    }
    n
}

#[test]
fn encoded_chunks_restore_and_malformed_ones_are_refused() {
    for encrypted in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(&dir.path().join("r"), encrypted);
        let enc = encoder(&repo);
        assert_eq!(encrypted, repo.chunk_keys().is_some());
        let data = noise(3 * CHUNK as usize + 100, 7);
        let w = repo.begin_backup().unwrap();
        let mut digests = Vec::new();
        for chunk in data.chunks(CHUNK as usize) {
            let d = enc.digest(chunk);
            assert_eq!(d, repo.digest(chunk));
            let mut blob = Vec::new();
            enc.encode_into(&d, chunk, &mut blob).unwrap();
            assert!(blob.len() <= max_chunk_blob_len(CHUNK));
            assert!(matches!(
                w.store_encoded(&d, &blob).unwrap(),
                Stored::New { .. }
            ));
            assert_eq!(w.store_encoded(&d, &blob).unwrap(), Stored::Existing);
            digests.push(Some(d));
        }
        // Refused: a bad magic, a truncated body, a payload over the chunk
        // size, the other encryption mode.
        let d = enc.digest(b"x");
        let mut good = Vec::new();
        enc.encode_into(&d, b"x", &mut good).unwrap();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut too_big = good.clone();
        too_big[8..16].copy_from_slice(&u64::from(CHUNK + 1).to_le_bytes());
        let other = ChunkEncoder::new(
            (!encrypted).then(|| {
                let other_dir = tempfile::tempdir().unwrap();
                init(&other_dir.path().join("o"), true)
                    .chunk_keys()
                    .unwrap()
            }),
            CHUNK,
            3,
        )
        .unwrap();
        let mut other_mode = Vec::new();
        other.encode_into(&d, b"x", &mut other_mode).unwrap();
        for blob in [
            &bad_magic,
            &good[..good.len() - 1].to_vec(),
            &too_big,
            &other_mode,
        ] {
            let e = w.store_encoded(&d, blob).unwrap_err();
            assert!(e.to_string().contains("uploaded chunk"), "{e}");
        }
        let never = repo.digest(b"never stored");
        let disk = |digests: Vec<Option<Digest>>| NewDisk {
            name: "disk0".into(),
            source: "upload".into(),
            index: DiskIndex {
                chunk_size: CHUNK,
                disk_size: data.len() as u64,
                digests,
            },
            stats: DiskStats::default(),
            format: None,
            live: None,
        };
        let mut with_missing = digests.clone();
        with_missing[1] = Some(never);
        assert_eq!(
            w.missing_chunks(&[disk(with_missing)]).unwrap(),
            vec![never]
        );
        assert!(w
            .missing_chunks(&[disk(digests.clone())])
            .unwrap()
            .is_empty());
        let m = w.commit("vm", vec![disk(digests)]).unwrap();
        assert_eq!(read_back(&repo, &m, "disk0"), data);
        assert!(repo.verify(None).unwrap().is_ok());

        // A writer dropped without commit leaves nothing staged.
        let w = repo.begin_backup().unwrap();
        let chunk = noise(1000, 99);
        let d = enc.digest(&chunk);
        let mut blob = Vec::new();
        enc.encode_into(&d, &chunk, &mut blob).unwrap();
        w.store_encoded(&d, &blob).unwrap();
        assert_eq!(tmp_files(&repo), 1);
        drop(w);
        assert_eq!(tmp_files(&repo), 0);
    }
}
