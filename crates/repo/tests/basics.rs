//! Init/open, keys, versions, the store -> commit -> read path, names,
//! resolve, and the restore point disk against the vdisk trait suite.

mod common;
use common::*;
use lifeboat_repo::*;
use lifeboat_vdisk::{testsuite, ExtentKind, ReadDisk};
use std::sync::Arc;

#[test]
fn init_open_roundtrip_encrypted_and_not() {
    for encrypted in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        let repo = init(&path, encrypted);
        assert_eq!(repo.encrypted(), encrypted);
        assert_eq!(repo.chunk_size(), CHUNK);
        assert_eq!(std::fs::read_dir(path.join("chunks")).unwrap().count(), 256);
        let data = noise(200_000, 1);
        let m = backup(&repo, "web01", &data);
        drop(repo);
        let pass = encrypted.then_some(PASS);
        let repo = Repository::open(&path, pass).unwrap();
        assert_eq!(repo.encrypted(), encrypted);
        assert_eq!(repo.chunk_size(), CHUNK);
        let list = repo.list(None).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0], m);
        assert_eq!(read_back(&repo, &m, "disk0"), data);
    }
}

#[test]
fn a_helper_process_opens_with_the_unlock_secret_and_a_wrong_one_is_refused() {
    for encrypted in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        let repo = init(&path, encrypted);
        let data = noise(100_000, 3);
        let m = backup(&repo, "web01", &data);
        // The repository that created the key can hand it on as well.
        let from_init = repo.unlock_secret_hex();
        drop(repo);
        let repo = Repository::open(&path, encrypted.then_some(PASS)).unwrap();
        let secret = repo.unlock_secret_hex();
        assert_eq!(secret.is_some(), encrypted);
        assert_eq!(from_init, secret);
        let helper = Repository::open_unlocked(&path, secret.as_deref()).unwrap();
        assert_eq!(helper.encrypted(), encrypted);
        assert_eq!(read_back(&helper, &m, "disk0"), data);
        // The helper can hand it on in turn.
        assert_eq!(helper.unlock_secret_hex(), secret);
        if encrypted {
            let mut wrong = secret.unwrap().into_bytes();
            wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
            let wrong = String::from_utf8(wrong).unwrap();
            for bad in [Some(wrong.as_str()), Some("abc"), Some("zz")] {
                assert!(
                    matches!(
                        Repository::open_unlocked(&path, bad),
                        Err(Error::WrongKey { .. })
                    ),
                    "{bad:?}"
                );
            }
            assert!(matches!(
                Repository::open_unlocked(&path, None),
                Err(Error::PassphraseRequired { .. })
            ));
        }
    }
}

#[test]
fn wrong_or_missing_passphrase_and_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    init(&path, true);
    match Repository::open(&path, Some("nope")) {
        Err(e @ Error::WrongKey { .. }) => {
            assert!(e.to_string().contains(&path.display().to_string()), "{e}")
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert!(matches!(
        Repository::open(&path, None),
        Err(Error::PassphraseRequired { .. })
    ));
    assert!(matches!(
        Repository::open(dir.path(), None),
        Err(Error::NotARepository { .. })
    ));
    // init refuses a non-empty directory, accepts an empty one.
    let opts = InitOptions::new(None);
    assert!(matches!(
        Repository::init(&path, opts.clone()),
        Err(Error::AlreadyExists { .. })
    ));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let opts = InitOptions {
        chunk_size: CHUNK,
        ..opts
    };
    Repository::init(&empty, opts.clone()).unwrap();
    let bad = InitOptions {
        chunk_size: 1000,
        ..opts
    };
    assert!(matches!(
        Repository::init(&dir.path().join("bad"), bad),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn default_kdf_is_strong_and_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    Repository::init(&path, InitOptions::new(Some("pw".into()))).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join("config")).unwrap()).unwrap();
    assert_eq!(config["encryption"]["m_cost_kib"], 65536);
    assert_eq!(config["encryption"]["t_cost"], 3);
    assert_eq!(config["chunk_size"], DEFAULT_CHUNK_SIZE);
    assert!(Repository::open(&path, Some("pw")).unwrap().encrypted());
}

#[test]
fn unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    init(&path, false);
    let cfg_path = path.join("config");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    config["format_version"] = 2.into();
    std::fs::write(&cfg_path, serde_json::to_vec(&config).unwrap()).unwrap();
    match Repository::open(&path, None) {
        Err(Error::UnknownVersion {
            found: 2,
            supported: 1,
            ..
        }) => {}
        other => panic!("expected UnknownVersion, got {other:?}"),
    }
    std::fs::write(&cfg_path, b"{ not json").unwrap();
    // An unreadable config is taken from the key slot (tests/key_slots.rs);
    // with no slot left, it is refused naming the config.
    let repo = Repository::open(&path, None).unwrap();
    assert_eq!(repo.verify_keys().unwrap()[0].path, cfg_path);
    std::fs::remove_dir_all(path.join("keys")).unwrap();
    assert!(matches!(
        Repository::open(&path, None),
        Err(Error::CorruptFile { .. })
    ));
}

#[test]
fn store_commit_load_index_read_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let mut data = noise(5 * CHUNK as usize + 1000, 7);
    data[CHUNK as usize..2 * CHUNK as usize].fill(0); // chunk 1 is zero
    let w = repo.begin_backup().unwrap();
    let disk = store_disk(&repo, &w, "disk0", &data);
    assert_eq!(disk.stats.new_chunks, 5);
    assert_eq!(disk.stats.zero_chunks, 1);
    // Storing a chunk again says Existing.
    let first = &data[..CHUNK as usize];
    assert_eq!(
        w.store_chunk(&repo.digest(first), first).unwrap(),
        Stored::Existing
    );
    let m = w.commit("web01", vec![disk.clone()]).unwrap();
    assert_eq!(m.vm, "web01");
    assert_eq!(m.disks[0].size, data.len() as u64);
    assert_eq!(m.disks[0].stats, disk.stats);
    let index = repo.load_index(&m, "disk0").unwrap();
    assert_eq!(index, disk.index);
    assert_eq!(index.digests[1], None);
    let d0 = index.digests[0].unwrap();
    assert_eq!(repo.read_chunk(&d0).unwrap(), first);
    assert!(repo.chunk_stored_size(&d0).unwrap() > CHUNK as u64);
    assert_eq!(index.digests.len(), 6);
    assert!(matches!(
        repo.load_index(&m, "nope"),
        Err(Error::NotFound { .. })
    ));
    // Writers unregister on commit.
    assert_eq!(
        std::fs::read_dir(repo.path().join("writers"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn digests_are_keyed_when_encrypted_and_plain_blake3_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let a = init(&dir.path().join("a"), true);
    let b = init(&dir.path().join("b"), true);
    let p = init(&dir.path().join("p"), false);
    let data = b"the same chunk everywhere";
    assert_ne!(a.digest(data), b.digest(data));
    assert_ne!(a.digest(data).0, *blake3::hash(data).as_bytes());
    assert_eq!(p.digest(data).0, *blake3::hash(data).as_bytes());
    // Reopening gives the same keyed digest.
    let a2 = Repository::open(a.path(), Some(PASS)).unwrap();
    assert_eq!(a.digest(data), a2.digest(data));
}

#[test]
fn restore_point_disk_passes_the_trait_suite() {
    for encrypted in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(&dir.path().join("repo"), encrypted);
        let data = testsuite::pattern_with_holes((3 << 20) + 12345, 64 * 1024);
        let m = backup(&repo, "web01", &data);
        let disk = repo.open_disk(&m, "disk0").unwrap();
        assert_eq!(
            disk.describe(),
            format!("restore point web01@{} disk disk0", m.id)
        );
        testsuite::check_read_disk(&disk, &data);
        let extents = disk.extents(0, disk.size()).unwrap();
        assert_eq!(extents[0].kind, ExtentKind::Zero, "{extents:?}");
        assert!(extents.iter().any(|e| e.kind == ExtentKind::Data));
        // Also through RestorePointDisk::new with the repository as reader.
        let index = repo.load_index(&m, "disk0").unwrap();
        let again = RestorePointDisk::new("x disk y".into(), index, Arc::new(repo.clone()));
        testsuite::check_read_disk(&again, &data);
    }
}

#[test]
fn names_are_checked_and_resolve_finds_restore_points() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), false);
    let w = repo.begin_backup().unwrap();
    let disk = store_disk(&repo, &w, "disk0", &noise(1000, 1));
    assert!(matches!(
        w.commit("../etc", vec![disk.clone()]),
        Err(Error::InvalidName { .. })
    ));
    let w = repo.begin_backup().unwrap();
    let mut bad = disk.clone();
    bad.name = ".hidden".into();
    assert!(matches!(
        w.commit("vm", vec![bad]),
        Err(Error::InvalidName { .. })
    ));
    let w = repo.begin_backup().unwrap();
    assert!(matches!(
        w.commit("vm", vec![disk.clone(), disk.clone()]),
        Err(Error::InvalidName { .. })
    ));
    // Failed commits leave no restore point.
    assert!(repo.list(None).unwrap().is_empty());

    let t = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let a = backup_at(&repo, "web01", &noise(1000, 1), t("2026-01-01T10:00:00Z"));
    let b = backup_at(&repo, "web01", &noise(1000, 2), t("2026-01-02T10:00:00Z"));
    let c = backup_at(&repo, "db01", &noise(1000, 3), t("2026-01-03T10:00:00Z"));
    assert!(a.id.starts_with("20260101-100000-"), "{}", a.id);
    assert_eq!(repo.resolve("web01@latest").unwrap(), b);
    assert_eq!(repo.resolve(&format!("web01@{}", a.id)).unwrap(), a);
    assert_eq!(repo.resolve("20260103").unwrap(), c);
    assert_eq!(repo.resolve("db01@2026").unwrap(), c);
    assert!(matches!(repo.resolve("2026"), Err(Error::Invalid { .. })));
    assert!(matches!(
        repo.resolve("web01@1999"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        repo.resolve("nope@latest"),
        Err(Error::NotFound { .. })
    ));
    let names: Vec<String> = repo.list(None).unwrap().iter().map(|m| m.name()).collect();
    assert_eq!(names, [a.name(), b.name(), c.name()]);
    assert_eq!(repo.list(Some("web01")).unwrap().len(), 2);
    // Two backups of one VM in the same second get distinct ids.
    let d = backup_at(&repo, "web01", &noise(10, 4), t("2026-01-02T10:00:00Z"));
    assert_ne!(d.id, b.id);
    // Temp files in snapshots/ are ignored by list.
    std::fs::write(repo.path().join("snapshots/web01/.tmp-junk"), b"x").unwrap();
    assert_eq!(repo.list(Some("web01")).unwrap().len(), 3);
}

#[test]
fn abandoned_backup_leaves_no_restore_point() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    {
        let w = repo.begin_backup().unwrap();
        assert_eq!(
            std::fs::read_dir(repo.path().join("writers"))
                .unwrap()
                .count(),
            1
        );
        store_disk(&repo, &w, "disk0", &noise(300_000, 5));
    }
    assert_eq!(
        std::fs::read_dir(repo.path().join("writers"))
            .unwrap()
            .count(),
        0
    );
    assert!(repo.list(None).unwrap().is_empty());
}

#[test]
fn a_handle_compresses_at_its_own_level_and_reads_back() {
    let text: Vec<u8> = (0..CHUNK as usize / 24)
        .flat_map(|i| format!("record {i:>7} value {:>5}\n", i * 7919 % 10007).into_bytes())
        .chain(std::iter::repeat(b'.'))
        .take(CHUNK as usize)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for level in [1, 19] {
        let repo = init(&dir.path().join(format!("repo{level}")), true);
        let configured = repo.zstd_level();
        let handle = repo.clone().with_compression_level(level).unwrap();
        assert_eq!(handle.zstd_level(), level);
        assert_eq!(
            repo.zstd_level(),
            configured,
            "the original handle keeps its level"
        );
        let w = handle.begin_backup().unwrap();
        let disk = store_disk(&handle, &w, "disk0", &text);
        w.commit("web01", vec![disk]).unwrap();
        let digest = handle.digest(&text);
        assert_eq!(repo.read_chunk(&digest).unwrap(), text);
        sizes.push(repo.chunk_stored_size(&digest).unwrap());
    }
    assert!(
        sizes[1] < sizes[0],
        "level 19 should store less than level 1: {sizes:?}"
    );
    let repo = init(&dir.path().join("repo-bad"), true);
    for bad in [0, 20, -1] {
        let err = repo.clone().with_compression_level(bad).unwrap_err();
        assert!(
            err.to_string().contains("compression level")
                && err.to_string().contains(&bad.to_string()),
            "{err}"
        );
    }
}
