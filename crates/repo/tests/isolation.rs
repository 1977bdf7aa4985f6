//! Damage stays where it is: each of the five kinds of damage (flip, half,
//! zero, delete, swap) applied to a manifest or an index of one restore
//! point affects that restore point only. The others list, resolve, verify
//! clean and read back bit-exact; `@latest` skips the damaged one and says
//! so; prune leaves it alone; gc keeps what any index may reference and
//! refuses to sweep past an index it cannot read, naming it.

mod common;
use common::*;
use lifeboat_repo::*;
use lifeboat_testsupport::damage::Damage;
use std::path::PathBuf;

/// Bytes of each point's own data after the shared chunks.
const TAIL: usize = 2 * CHUNK as usize;

/// Which file of which restore point of web01 is damaged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// The newest point's manifest (swap: the middle point's manifest).
    NewestManifest,
    /// The middle point's manifest (swap: the oldest point's manifest).
    MiddleManifest,
    /// The newest point's index (swap: the middle point's index).
    NewestIndex,
}

fn manifest_path(repo: &Repository, m: &Manifest) -> PathBuf {
    repo.path()
        .join("snapshots")
        .join(&m.vm)
        .join(format!("{}.manifest", m.id))
}

fn index_path(repo: &Repository, m: &Manifest) -> PathBuf {
    repo.path()
        .join("indexes")
        .join(&m.vm)
        .join(&m.id)
        .join("disk0.idx")
}

/// Damages `target`; returns (the damaged point's position, its file).
fn damage(f: &FourPoints, target: Target, how: Damage) -> (usize, PathBuf) {
    let (victim, donor, path_of): (usize, usize, fn(&Repository, &Manifest) -> PathBuf) =
        match target {
            Target::NewestManifest => (2, 1, manifest_path),
            Target::MiddleManifest => (1, 0, manifest_path),
            Target::NewestIndex => (2, 1, index_path),
        };
    let path = path_of(&f.repo, &f.points[victim]);
    how.apply(&path, &path_of(&f.repo, &f.points[donor]));
    (victim, path)
}

fn check_isolation(encrypted: bool, target: Target, how: Damage) {
    let case = format!("{target:?} {how:?} encrypted={encrypted}");
    let f = four_points(encrypted, TAIL);
    let (victim, file) = damage(&f, target, how);
    let victim_name = f.points[victim].name();
    let is_manifest = target != Target::NewestIndex;

    // list_all names the damaged manifest; list keeps the rest.
    let listing = f.repo.list_all(None).unwrap();
    let listed: Vec<String> = f
        .repo
        .list(None)
        .unwrap()
        .iter()
        .map(Manifest::name)
        .collect();
    for (i, m) in f.points.iter().enumerate() {
        let expect_listed = !(is_manifest && i == victim);
        assert_eq!(
            listed.contains(&m.name()),
            expect_listed,
            "{case}: list {listed:?}"
        );
    }
    if is_manifest {
        assert_eq!(listing.damaged.len(), 1, "{case}");
        assert_eq!(listing.damaged[0].path, file, "{case}");
        assert_eq!(
            listing.damaged[0].restore_points,
            vec![victim_name.clone()],
            "{case}"
        );
    } else {
        assert!(listing.damaged.is_empty(), "{case}");
        let broken = f.repo.index_damage(&f.points[victim]);
        assert_eq!(broken.len(), 1, "{case}");
        assert_eq!(broken[0].path, file, "{case}");
    }

    // verify names the file, its kind and the one point it takes along.
    let report = f.repo.verify(None).unwrap();
    assert!(!report.is_ok(), "{case}");
    assert_eq!(report.damage.len(), 1, "{case}: {:?}", report.damage);
    let d = &report.damage[0];
    assert_eq!(d.path, file, "{case}");
    let kind = if is_manifest {
        FileKind::Manifest
    } else {
        FileKind::Index
    };
    assert_eq!(d.kind, kind, "{case}");
    let state = if how == Damage::Delete {
        DamageState::Missing
    } else {
        DamageState::Corrupt
    };
    assert_eq!(d.state, state, "{case}: {d}");
    assert_eq!(
        report.restore_points_damaged,
        vec![victim_name.clone()],
        "{case}"
    );

    // @latest of web01 skips a damaged newest point and names it.
    let r = f.repo.resolve_noting("web01@latest").unwrap();
    if victim == 2 {
        assert_eq!(r.manifest.name(), f.points[1].name(), "{case}");
        assert_eq!(r.skipped.len(), 1, "{case}");
        assert_eq!(r.skipped[0].path, file, "{case}");
    } else {
        assert_eq!(r.manifest.name(), f.points[2].name(), "{case}");
        assert!(r.skipped.is_empty(), "{case}");
    }
    // Named by its id, the damaged point is refused with its file's error.
    let err = f.repo.resolve(&victim_name);
    if is_manifest {
        assert!(
            matches!(err, Err(Error::CorruptFile { ref path, .. }) if *path == file),
            "{case}: {err:?}"
        );
    }

    // Every other point reads back bit-exact.
    let others: Vec<usize> = (0..f.points.len()).filter(|&i| i != victim).collect();
    for &i in &others {
        assert_eq!(
            read_back(&f.repo, &f.points[i], "disk0"),
            f.data[i],
            "{case}: point {i}"
        );
        assert!(
            f.repo.verify(Some(&f.points[i])).unwrap().is_ok(),
            "{case}: verify point {i}"
        );
    }

    // gc with every chunk old: it keeps what the intact points need, and
    // either marks the damaged point's readable index or refuses to sweep.
    age_all_chunks(&f.repo, std::time::Duration::from_secs(3600));
    match f.repo.gc() {
        Ok(report) => {
            assert!(is_manifest, "{case}: gc swept past an unreadable index");
            assert_eq!(report.damaged_manifests, 1, "{case}");
            assert_eq!(
                report.chunks_removed, 0,
                "{case}: the damaged manifest's index was marked"
            );
        }
        Err(Error::Damaged { files, .. }) => {
            assert!(!is_manifest, "{case}: gc refused: {files:?}");
            assert_eq!(files[0].path, file, "{case}");
        }
        Err(e) => panic!("{case}: gc: {e}"),
    }
    for &i in &others {
        assert_eq!(
            read_back(&f.repo, &f.points[i], "disk0"),
            f.data[i],
            "{case}: after gc {i}"
        );
    }

    // prune: the damaged point counts for no rule and is not removed.
    let policy = KeepPolicy {
        last: 1,
        ..Default::default()
    };
    let report = f.repo.prune(&policy, true).unwrap();
    assert!(report.damaged.contains(&victim_name), "{case}: {report:?}");
    assert!(!report.removed.contains(&victim_name), "{case}");
    let newest_intact = if victim == 2 { 1 } else { 2 };
    assert!(
        report
            .kept
            .iter()
            .any(|(n, _)| *n == f.points[newest_intact].name()),
        "{case}: the newest intact point is kept: {report:?}"
    );
}

#[test]
fn damaged_newest_manifest_stays_with_its_restore_point() {
    for how in Damage::ALL {
        check_isolation(true, Target::NewestManifest, how);
    }
    check_isolation(false, Target::NewestManifest, Damage::Half);
}

#[test]
fn damaged_middle_manifest_stays_with_its_restore_point() {
    for how in Damage::ALL {
        check_isolation(true, Target::MiddleManifest, how);
    }
}

#[test]
fn damaged_index_stays_with_its_restore_point() {
    for how in Damage::ALL {
        check_isolation(true, Target::NewestIndex, how);
    }
    check_isolation(false, Target::NewestIndex, Damage::Flip);
}

#[test]
fn forgotten_point_is_not_a_lost_manifest() {
    let f = four_points(true, TAIL);
    f.repo.forget(&f.points[2]).unwrap();
    // Even when forget is interrupted before its index dir goes: the state
    // it leaves is the index dir without its marker and no manifest.
    let dir = f.repo.path().join("indexes/web01").join(&f.points[1].id);
    let index = std::fs::read(dir.join("disk0.idx")).unwrap();
    assert!(dir.join(".committed").exists(), "commit writes the marker");
    f.repo.forget(&f.points[1]).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("disk0.idx"), index).unwrap();
    let listing = f.repo.list_all(None).unwrap();
    assert_eq!(listing.points.len(), 2);
    assert!(listing.damaged.is_empty(), "{:?}", listing.damaged);
    assert!(f.repo.verify(None).unwrap().is_ok());
}

#[test]
fn a_damaged_manifest_is_rebuilt_from_its_indexes() {
    for how in Damage::ALL {
        let f = four_points(true, TAIL);
        let (victim, file) = damage(&f, Target::MiddleManifest, how);
        let m = &f.points[victim];
        let rebuilt = f.repo.manifest_from_indexes(&m.vm, &m.id).unwrap();
        assert_eq!(rebuilt.disks.len(), 1);
        assert_eq!(rebuilt.disks[0].size, m.disks[0].size);
        assert_eq!(rebuilt.disks[0].source, REBUILT_SOURCE);
        assert_eq!(rebuilt.time.timestamp(), m.time.timestamp());
        if file.exists() {
            std::fs::rename(&file, f.dir.path().join("aside")).unwrap();
        }
        f.repo.write_rebuilt_manifest(&rebuilt).unwrap();
        let back = f.repo.resolve(&m.name()).unwrap();
        assert_eq!(
            read_back(&f.repo, &back, "disk0"),
            f.data[victim],
            "{how:?}"
        );
        let report = f.repo.verify(None).unwrap();
        assert!(report.is_ok(), "{how:?}: {:?}", report.damage);
        assert_eq!(report.restore_points_checked, 4);
    }
    // With its index damaged too, there is nothing to rebuild from.
    let f = four_points(true, TAIL);
    let m = &f.points[1];
    Damage::Half.apply(&index_path(&f.repo, m), &index_path(&f.repo, m));
    assert!(matches!(
        f.repo.manifest_from_indexes(&m.vm, &m.id),
        Err(Error::CorruptFile { .. })
    ));
}
