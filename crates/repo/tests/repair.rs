//! `repo repair`, quarantine and healing on real damage: each of the five
//! kinds (flip, half, zero, delete, swap) applied to a manifest, an index
//! or a chunk. Verify names the file and the restore points; repair
//! (with salvage) quarantines it (a manifest is rebuilt from its
//! indexes), gc then runs and keeps what the intact
//! restore points need (they read back bit-exact after it), verify finds
//! no unexplained damage, a salvaged restore point reads as the damaged
//! one with the listed ranges as zeros, and the next backup of the same
//! data heals a quarantined chunk.

mod common;
use chrono::{Duration, Utc};
use common::*;
use lifeboat_repo::*;
use lifeboat_testsupport::damage::Damage;
use lifeboat_testsupport::repo::repo_snapshot;
use std::path::PathBuf;

/// Bytes of each point's own data after the shared chunks.
const TAIL: usize = 2 * CHUNK as usize;

/// Which file of web01's newest restore point is damaged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Manifest,
    Index,
    /// Chunk 3 of its disk (its own: no other restore point has it).
    Chunk,
}

/// The damaged chunk's position in the newest point's disk.
const BAD_CHUNK: usize = 3;

/// (file of `target` of point `i`, its digest for a chunk).
fn file_of(f: &FourPoints, target: Target, i: usize) -> (PathBuf, Option<Digest>) {
    let m = &f.points[i];
    let root = f.repo.path();
    match target {
        Target::Manifest => (
            root.join("snapshots")
                .join(&m.vm)
                .join(format!("{}.manifest", m.id)),
            None,
        ),
        Target::Index => (
            root.join("indexes")
                .join(&m.vm)
                .join(&m.id)
                .join("disk0.idx"),
            None,
        ),
        Target::Chunk => {
            let d = f.repo.load_index(m, "disk0").unwrap().digests[BAD_CHUNK].unwrap();
            (chunk_file(&f.repo, &d), Some(d))
        }
    }
}

/// Every file under `quarantine/`, relative to it.
fn quarantine_files(repo: &Repository) -> Vec<String> {
    repo_snapshot(&repo.path().join("quarantine"))
        .into_keys()
        .map(|p| p.display().to_string())
        .collect()
}

fn check_repair(encrypted: bool, target: Target, how: Damage) {
    let case = format!("{target:?} {how:?} encrypted={encrypted}");
    let f = four_points(encrypted, TAIL + 1000);
    let victim = 2;
    let victim_name = f.points[victim].name();
    let (path, digest) = file_of(&f, target, victim);
    let (donor, _) = file_of(&f, target, 1);
    how.apply(&path, &donor);

    // verify names the file and the restore point.
    let report = f.repo.verify(None).unwrap();
    assert_eq!(report.damage.len(), 1, "{case}: {:?}", report.damage);
    let found = &report.damage[0];
    assert_eq!(found.path, path, "{case}");
    assert_eq!(found.restore_points, vec![victim_name.clone()], "{case}");

    // Dry run: says what it would do, changes nothing.
    let before = repo_snapshot(f.repo.path());
    let plan = f
        .repo
        .repair(&RepairOptions {
            dry_run: true,
            salvage: true,
        })
        .unwrap();
    assert!(!plan.actions.is_empty(), "{case}");
    assert!(plan.actions.iter().all(|a| a.result.is_none()), "{case}");
    let after = repo_snapshot(f.repo.path());
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, b)| !p.starts_with("state") && before.get(*p) != Some(b))
        .map(|(p, _)| p.clone())
        .chain(before.keys().filter(|p| !after.contains_key(*p)).cloned())
        .collect();
    assert!(changed.is_empty(), "{case}: dry run changed {changed:?}");

    let done = f
        .repo
        .repair(&RepairOptions {
            dry_run: false,
            salvage: true,
        })
        .unwrap();
    let step = |s: RepairStep| done.actions.iter().filter(|a| a.step == s).count();
    // Its only index lost, nothing of the victim reads: not salvaged. A
    // damaged manifest is rebuilt from the indexes instead: nothing to
    // salvage.
    let salvages = target == Target::Chunk;
    assert_eq!(
        step(RepairStep::Salvage),
        usize::from(salvages),
        "{case}: {:?}",
        done.actions
    );
    assert_eq!(
        step(RepairStep::Skip),
        usize::from(target == Target::Index),
        "{case}"
    );
    let salvaged_name = done
        .actions
        .iter()
        .find(|a| a.step == RepairStep::Salvage)
        .and_then(|a| a.result.clone());
    let q = quarantine_files(&f.repo);
    match target {
        Target::Manifest => {
            assert_eq!(step(RepairStep::RebuildManifest), 1, "{case}");
            assert!(done.still_damaged.is_empty(), "{case}");
            // The damaged manifest is kept (when there was one), the
            // rebuilt one lists under the same name and reads bit-exact.
            let kept = format!("points/web01/{}.", f.points[victim].id);
            let moved = q
                .iter()
                .any(|p| p.starts_with(&kept) && p.ends_with(".manifest"));
            assert_eq!(moved, how != Damage::Delete, "{case}: {q:?}");
            let listing = f.repo.list_all(None).unwrap();
            assert!(listing.damaged.is_empty(), "{case}");
            let m = f.repo.resolve(&victim_name).unwrap();
            assert_eq!(m.disks[0].source, REBUILT_SOURCE);
        }
        Target::Index => {
            assert_eq!(step(RepairStep::QuarantinePoint), 1, "{case}");
            assert!(done.still_damaged.is_empty(), "{case}");
            let note = format!("points/web01/{}.", f.points[victim].id);
            assert!(
                q.iter()
                    .any(|p| p.starts_with(&note) && p.ends_with("note.json")),
                "{case}: {q:?}"
            );
            // Gone from the listing, nothing damaged left in it.
            let listing = f.repo.list_all(None).unwrap();
            assert!(listing.damaged.is_empty(), "{case}");
            assert!(!listing.points.iter().any(|m| m.name() == victim_name));
        }
        Target::Chunk => {
            let d = digest.unwrap();
            let expect = if how == Damage::Delete {
                RepairStep::RememberMissingChunk
            } else {
                RepairStep::QuarantineChunk
            };
            assert_eq!(step(expect), 1, "{case}: {:?}", done.actions);
            assert_eq!(done.still_damaged, vec![victim_name.clone()], "{case}");
            assert!(!chunk_file(&f.repo, &d).exists(), "{case}");
            let hex = d.to_string();
            assert!(
                q.iter()
                    .any(|p| p.starts_with(&format!("chunks/{hex}.")) && p.ends_with(".json")),
                "{case}: {q:?}"
            );
            // The chunk is absent for backups: reuse_chunk says so.
            let w = f.repo.begin_backup().unwrap();
            assert!(!w.reuse_chunk(&d).unwrap(), "{case}");
        }
    }

    // gc runs now, and keeps what every remaining restore point needs.
    age_all_chunks(&f.repo, std::time::Duration::from_secs(3600));
    f.repo
        .gc()
        .unwrap_or_else(|e| panic!("{case}: gc after repair: {e}"));
    for (i, m) in f.points.iter().enumerate() {
        if i != victim || target == Target::Manifest {
            assert!(
                read_back(&f.repo, m, "disk0") == f.data[i],
                "{case}: {}",
                m.name()
            );
        }
    }

    // The salvaged restore point: the victim's data, listed ranges zeroed.
    if let Some(name) = salvaged_name {
        let salvaged = f.repo.resolve(&name).unwrap();
        let record = salvaged.salvage.clone().expect("a salvage record");
        assert_eq!(record.salvaged_from, victim_name, "{case}");
        assert_eq!(salvaged.vm, "web01");
        assert_eq!(salvaged.time, f.points[victim].time);
        assert_ne!(salvaged.id, f.points[victim].id);
        let cs = u64::from(CHUNK);
        let expect_ranges = match target {
            Target::Chunk => vec![ByteRange {
                offset: BAD_CHUNK as u64 * cs,
                length: cs,
            }],
            _ => vec![],
        };
        assert_eq!(record.disks.len(), 1, "{case}");
        assert_eq!(record.disks[0].unreadable, expect_ranges, "{case}");
        let mut want = f.data[victim].clone();
        for r in &expect_ranges {
            want[r.offset as usize..(r.offset + r.length) as usize].fill(0);
        }
        assert!(
            read_back(&f.repo, &salvaged, "disk0") == want,
            "{case}: salvaged data"
        );
    }

    // verify: nothing unexplained. Only the chunk case leaves damage: the
    // victim still uses the quarantined chunk, and says so.
    let report = f.repo.verify(None).unwrap();
    assert!(
        report
            .damage
            .iter()
            .all(|d| d.state == DamageState::Quarantined),
        "{case}: {:?}",
        report.damage
    );
    assert_eq!(report.damage.is_empty(), target != Target::Chunk, "{case}");
    assert!(!report.quarantined.is_empty(), "{case}");

    if target == Target::Chunk {
        // Healing: the same data backed up again stores the chunk again.
        backup(&f.repo, "web01", &f.data[victim]);
        let report = f.repo.verify(None).unwrap();
        assert!(report.damage.is_empty(), "{case}: {:?}", report.damage);
        assert!(read_back(&f.repo, &f.points[victim], "disk0") == f.data[victim]);
    }
    // A second repair finds nothing new to do (no second salvage).
    let again = f
        .repo
        .repair(&RepairOptions {
            dry_run: false,
            salvage: true,
        })
        .unwrap();
    assert_eq!(
        again
            .actions
            .iter()
            .filter(|a| a.step == RepairStep::Salvage)
            .count(),
        0,
        "{case}: {:?}",
        again.actions
    );
}

#[test]
fn damaged_manifest_is_quarantined_and_rebuilt_from_its_indexes() {
    for how in Damage::ALL {
        check_repair(true, Target::Manifest, how);
    }
}

#[test]
fn damaged_index_quarantines_its_restore_point_whole() {
    for how in Damage::ALL {
        check_repair(true, Target::Index, how);
    }
}

#[test]
fn damaged_chunk_is_quarantined_salvaged_as_zeros_and_healed() {
    for how in Damage::ALL {
        check_repair(true, Target::Chunk, how);
    }
    check_repair(false, Target::Chunk, Damage::Flip);
}

#[test]
fn salvage_keeps_the_disks_whose_index_reads_and_zeroes_a_lost_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let a = noise(3 * CHUNK as usize, 1);
    let b = noise(2 * CHUNK as usize + 512, 2);
    let w = repo.begin_backup().unwrap();
    let disks = vec![
        store_disk(&repo, &w, "disk0", &a),
        store_disk(&repo, &w, "disk1", &b),
    ];
    let m = w.commit("vm1", disks).unwrap();
    // disk0 loses its last chunk, disk1 its index.
    let last = repo.load_index(&m, "disk0").unwrap().digests[2].unwrap();
    Damage::Zero.apply(&chunk_file(&repo, &last), &PathBuf::new());
    let idx = repo
        .path()
        .join("indexes/vm1")
        .join(&m.id)
        .join("disk1.idx");
    Damage::Half.apply(&idx, &idx);
    let report = repo
        .repair(&RepairOptions {
            dry_run: false,
            salvage: true,
        })
        .unwrap();
    let name = report
        .actions
        .iter()
        .find(|x| x.step == RepairStep::Salvage)
        .and_then(|x| x.result.clone())
        .expect("salvaged");
    let s = repo.resolve(&name).unwrap();
    let rec = s.salvage.clone().unwrap();
    let cs = u64::from(CHUNK);
    assert_eq!(rec.disks[0].disk, "disk0");
    assert_eq!(
        rec.disks[0].unreadable,
        vec![ByteRange {
            offset: 2 * cs,
            length: cs
        }]
    );
    assert_eq!(rec.disks[1].disk, "disk1");
    assert_eq!(
        rec.disks[1].unreadable,
        vec![ByteRange {
            offset: 0,
            length: b.len() as u64
        }]
    );
    assert_eq!(rec.disks[1].unreadable_bytes, b.len() as u64);
    let mut want = a.clone();
    want[2 * cs as usize..].fill(0);
    assert!(read_back(&repo, &s, "disk0") == want);
    assert!(read_back(&repo, &s, "disk1").iter().all(|&x| x == 0));
    // The original (index damaged) is quarantined whole; verify is clean.
    assert_eq!(repo.list(None).unwrap().len(), 1);
    let v = repo.verify(None).unwrap();
    assert!(v.damage.is_empty(), "{:?}", v.damage);
}

#[test]
fn verify_with_heal_moves_a_corrupt_chunk_aside_and_remembers_a_missing_one() {
    let f = four_points(true, TAIL + 1000);
    let (bad, d) = file_of(&f, Target::Chunk, 2);
    let d = d.unwrap();
    Damage::Flip.apply(&bad, &bad);
    let (gone, g) = file_of(&f, Target::Chunk, 3);
    let g = g.unwrap();
    Damage::Delete.apply(&gone, &gone);
    let heal = VerifyOptions {
        heal: true,
        ..Default::default()
    };
    let report = f.repo.verify_with(&heal).unwrap();
    assert_eq!(report.damage.len(), 2);
    assert!(report
        .damage
        .iter()
        .all(|x| x.state == DamageState::Quarantined));
    assert!(!bad.exists());
    let notes = f.repo.quarantined_chunks().unwrap();
    assert_eq!(notes[&d].state, DamageState::Corrupt);
    assert!(notes[&d].moved_to.is_some());
    assert_eq!(notes[&g].state, DamageState::Missing);
    assert!(notes[&g].moved_to.is_none());
    assert_eq!(notes[&g].restore_points, vec![f.points[3].name()]);
    // A second healing verify adds no note for the missing chunk.
    f.repo.verify_with(&heal).unwrap();
    assert_eq!(f.repo.quarantine().unwrap().len(), 2);
    // Without heal_on_read a read moves nothing; with it, it does.
    let (third, t) = file_of(&f, Target::Chunk, 1);
    Damage::Half.apply(&third, &third);
    assert!(f.repo.read_chunk(&t.unwrap()).is_err());
    assert!(third.exists());
    let healing = f.repo.clone().with_heal_on_read(true);
    assert!(healing.read_chunk(&t.unwrap()).is_err());
    assert!(!third.exists());
    // Purge: nothing is older than a day; everything is older than now.
    assert!(f
        .repo
        .purge_quarantine(Utc::now() - Duration::days(1), false)
        .unwrap()
        .is_empty());
    let purged = f.repo.purge_quarantine(Utc::now(), true).unwrap();
    assert_eq!(purged.len(), 3);
    assert_eq!(f.repo.quarantine().unwrap().len(), 3, "dry run keeps them");
    f.repo.purge_quarantine(Utc::now(), false).unwrap();
    assert!(quarantine_files(&f.repo).is_empty());
}

#[test]
fn a_chunk_that_fails_with_an_io_error_is_reported_and_left_in_place() {
    let f = four_points(true, TAIL + 1000);
    let (path, d) = file_of(&f, Target::Chunk, 0);
    // A directory where the chunk file should be: reading it is EISDIR,
    // an I/O error that says nothing about the chunk's bytes.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let heal = VerifyOptions {
        heal: true,
        ..Default::default()
    };
    let report = f.repo.verify_with(&heal).unwrap();
    assert_eq!(report.damage.len(), 1);
    assert_eq!(report.damage[0].state, DamageState::Corrupt);
    assert!(path.is_dir(), "left in place");
    let done = f.repo.repair(&RepairOptions::default()).unwrap();
    let a = &done.actions[0];
    assert_eq!(
        a.target,
        format!("chunks/{}/{}", &d.unwrap().to_string()[..2], d.unwrap())
    );
    assert!(
        a.result.as_deref().unwrap().starts_with("left in place"),
        "{a:?}"
    );
    assert!(path.is_dir());
    assert!(quarantine_files(&f.repo).is_empty());
}

#[test]
fn a_lost_manifest_with_an_unreadable_index_is_salvaged_from_the_indexes_that_read() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let a = noise(3 * CHUNK as usize, 5);
    let b = noise(2 * CHUNK as usize, 6);
    let w = repo.begin_backup().unwrap();
    let disks = vec![
        store_disk(&repo, &w, "disk0", &a),
        store_disk(&repo, &w, "disk1", &b),
    ];
    let m = w.commit("vm1", disks).unwrap();
    let manifest = repo
        .path()
        .join("snapshots/vm1")
        .join(format!("{}.manifest", m.id));
    Damage::Half.apply(&manifest, &manifest);
    let idx = repo
        .path()
        .join("indexes/vm1")
        .join(&m.id)
        .join("disk1.idx");
    Damage::Flip.apply(&idx, &idx);
    // Not rebuildable (an index does not read): salvaged instead.
    let report = repo
        .repair(&RepairOptions {
            dry_run: false,
            salvage: true,
        })
        .unwrap();
    let steps: Vec<RepairStep> = report.actions.iter().map(|x| x.step).collect();
    assert_eq!(
        steps,
        vec![RepairStep::Salvage, RepairStep::QuarantinePoint]
    );
    let name = report.actions[0].result.clone().unwrap();
    let s = repo.resolve(&name).unwrap();
    assert_eq!(
        s.time.timestamp(),
        m.time.timestamp(),
        "the time comes from the id (whole seconds)"
    );
    let rec = s.salvage.clone().unwrap();
    assert_eq!(rec.salvaged_from, m.name());
    assert_eq!(rec.lost_disks, vec!["disk1".to_string()]);
    assert_eq!(rec.disks.len(), 1);
    assert!(rec.disks[0].unreadable.is_empty());
    assert!(read_back(&repo, &s, "disk0") == a);
    let v = repo.verify(None).unwrap();
    assert!(v.damage.is_empty(), "{:?}", v.damage);
}
