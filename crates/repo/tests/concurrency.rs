//! Many writers at once, and gc beside running backups.

mod common;
use common::*;
use lifeboat_repo::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::Duration;

#[test]
fn two_writers_committing_from_two_threads_both_produce_valid_restore_points() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let shared = noise(6 * CHUNK as usize, 1);
    let mut a = shared.clone();
    a.extend(noise(3 * CHUNK as usize, 2));
    let mut b = shared;
    b.extend(noise(3 * CHUNK as usize, 3));
    let barrier = Barrier::new(2);
    let run = |vm: &'static str, data: &Vec<u8>| {
        let w = repo.begin_backup().unwrap();
        let disk = store_disk(&repo, &w, "disk0", data);
        barrier.wait();
        w.commit(vm, vec![disk]).unwrap()
    };
    let (ma, mb) = std::thread::scope(|s| {
        let ha = s.spawn(|| run("vm-a", &a));
        let hb = s.spawn(|| run("vm-b", &b));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(repo.list(None).unwrap().len(), 2);
    assert_eq!(read_back(&repo, &ma, "disk0"), a);
    assert_eq!(read_back(&repo, &mb, "disk0"), b);
    let report = repo.verify(None).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chunks_checked, 12);
    assert_eq!(count_chunks(&repo), 12);
}

#[test]
fn one_writer_is_shared_by_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), false);
    let data = noise(16 * CHUNK as usize, 9);
    let w = repo.begin_backup().unwrap();
    // Every thread stores every chunk: each ends up stored once, read back fine.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| store_disk(&repo, &w, "disk0", &data));
        }
    });
    let disk = store_disk(&repo, &w, "disk0", &data);
    assert_eq!(disk.stats.new_chunks, 0);
    let m = w.commit("vm", vec![disk]).unwrap();
    assert_eq!(read_back(&repo, &m, "disk0"), data);
    assert_eq!(count_chunks(&repo), 16);
}

#[test]
fn gc_after_forget_removes_only_unreferenced_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let x = noise(CHUNK as usize, 1);
    let y = noise(CHUNK as usize, 2);
    let z = noise(CHUNK as usize, 3);
    let old = backup(&repo, "vm", &[x.clone(), y.clone()].concat());
    let keep = backup(&repo, "vm", &[y.clone(), z.clone()].concat());
    repo.forget(&old).unwrap();
    assert!(!repo.path().join("indexes/vm").join(&old.id).exists());
    // Fresh garbage is younger than the cutoff: kept.
    let r = repo.gc().unwrap();
    assert_eq!((r.chunks_removed, r.chunks_kept), (0, 3));
    age_all_chunks(&repo, Duration::from_secs(3600));
    let r = repo.gc().unwrap();
    assert_eq!((r.chunks_removed, r.chunks_kept), (1, 2), "{r:?}");
    assert!(r.bytes_removed > CHUNK as u64);
    assert!(matches!(
        repo.read_chunk(&repo.digest(&x)),
        Err(Error::MissingChunk { .. })
    ));
    assert_eq!(read_back(&repo, &keep, "disk0"), [y, z].concat());
    assert!(repo.verify(None).unwrap().is_ok());
    // Idempotent.
    assert_eq!(repo.gc().unwrap().chunks_removed, 0);
}

#[test]
fn gc_running_beside_a_backup_of_the_same_garbage_keeps_the_new_restore_point_intact() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let data = noise(48 * CHUNK as usize, 42);
    for round in 0..3 {
        // Make every chunk of `data` old, unreferenced garbage.
        let old = backup(&repo, "vm", &data);
        for m in repo.list(None).unwrap() {
            repo.forget(&m).unwrap();
        }
        let _ = old;
        age_all_chunks(&repo, Duration::from_secs(3600));
        let stop = AtomicBool::new(false);
        let m = std::thread::scope(|s| {
            let gc = s.spawn(|| {
                let mut runs = 0;
                while !stop.load(Ordering::Relaxed) || runs == 0 {
                    repo.gc().unwrap();
                    runs += 1;
                }
                runs
            });
            // Stops the gc loop also when this thread panics (else the
            // scope would wait for it forever).
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let stop_guard = StopOnDrop(&stop);
            let w = repo.begin_backup().unwrap();
            let disk = store_disk(&repo, &w, "disk0", &data);
            let rewritten = disk.stats.new_chunks;
            let m = w.commit("vm", vec![disk]).unwrap();
            drop(stop_guard);
            let runs = gc.join().unwrap();
            assert!(runs >= 1);
            eprintln!(
                "round {round}: {runs} gc runs, {rewritten} chunks rewritten after gc took them"
            );
            m
        });
        // Another gc after the fact, then everything must read back.
        repo.gc().unwrap();
        let report = repo.verify(None).unwrap();
        assert!(report.is_ok(), "round {round}: {report:?}");
        assert_eq!(read_back(&repo, &m, "disk0"), data, "round {round}");
    }
}

#[test]
fn a_live_registration_holds_the_cutoff_and_stale_ones_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), false);
    let old = backup(&repo, "vm", &noise(2 * CHUNK as usize, 5));
    repo.forget(&old).unwrap();
    // A backup of another process, started 1 hour ago and still running.
    let reg = repo.path().join("writers/feedfacefeedfacefeedfacefeedface");
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    std::fs::write(&reg, serde_json::json!({ "started": started }).to_string()).unwrap();
    let file = std::fs::File::open(&reg).unwrap();
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
    // The garbage was touched 30 minutes ago: after that writer's start.
    age_all_chunks(&repo, Duration::from_secs(1800));
    let tmp = repo.path().join("chunks/00/.tmp-leftover");
    std::fs::write(&tmp, b"partial").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(1800))
        .unwrap();
    let r = repo.gc().unwrap();
    assert_eq!(
        (r.chunks_removed, r.chunks_kept, r.temp_files_removed),
        (0, 2, 0),
        "{r:?}"
    );
    assert!(reg.exists());
    // The writer dies: its registration is stale, the cutoff moves to now.
    drop(file);
    let r = repo.gc().unwrap();
    assert_eq!((r.chunks_removed, r.temp_files_removed), (2, 1), "{r:?}");
    assert!(!reg.exists());
    assert!(!tmp.exists());
}

#[test]
fn gc_removes_old_index_dirs_without_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), false);
    let m = backup(&repo, "vm", &noise(1000, 1));
    let orphan = repo.path().join("indexes/vm/20200101-000000-abcd");
    std::fs::create_dir(&orphan).unwrap();
    std::fs::write(orphan.join("disk0.idx"), b"half").unwrap();
    let young = repo.path().join("indexes/vm/20200101-000000-bcde");
    std::fs::create_dir(&young).unwrap();
    std::fs::File::open(&orphan)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(600))
        .unwrap();
    repo.gc().unwrap();
    assert!(!orphan.exists());
    assert!(
        young.exists(),
        "a fresh index dir may belong to a running commit"
    );
    assert!(repo.path().join("indexes/vm").join(&m.id).exists());
    assert_eq!(read_back(&repo, &m, "disk0"), noise(1000, 1));
}

/// `.tmp-*` files in the repository's chunk directories.
fn staged_files(repo: &Repository) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for prefix in std::fs::read_dir(repo.path().join("chunks")).unwrap() {
        let prefix = prefix.unwrap().path();
        if !prefix.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&prefix).unwrap() {
            let f = f.unwrap();
            if f.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(f.path());
            }
        }
    }
    found
}

#[test]
fn a_backup_never_reuses_chunks_that_another_has_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let data = noise(4 * CHUNK as usize, 21);
    let w1 = repo.begin_backup().unwrap();
    let d1 = store_disk(&repo, &w1, "disk0", &data);
    assert_eq!(d1.stats.new_chunks, 4);
    assert_eq!(count_chunks(&repo), 0, "staged chunks are not chunks yet");
    assert_eq!(staged_files(&repo).len(), 4);
    // A second backup meanwhile stores its own copies: had it reused w1's
    // unsynced files, a power loss before w1's commit could tear them under
    // w2's committed restore point.
    let w2 = repo.begin_backup().unwrap();
    let d2 = store_disk(&repo, &w2, "disk0", &data);
    assert_eq!(d2.stats.new_chunks, 4);
    // A killed writer's staged files stay staged: never taken for chunks.
    std::mem::forget(w1);
    let m2 = w2.commit("vm", vec![d2]).unwrap();
    assert_eq!(read_back(&repo, &m2, "disk0"), data);
    assert_eq!(count_chunks(&repo), 4);
    assert_eq!(staged_files(&repo).len(), 4, "only the killed writer's");
    // Committed chunks are reused.
    let w3 = repo.begin_backup().unwrap();
    assert_eq!(store_disk(&repo, &w3, "disk0", &data).stats.new_chunks, 0);
    // A backup that ends without committing removes what it staged.
    let other = noise(2 * CHUNK as usize, 22);
    let w4 = repo.begin_backup().unwrap();
    assert_eq!(store_disk(&repo, &w4, "disk0", &other).stats.new_chunks, 2);
    assert_eq!(staged_files(&repo).len(), 6);
    drop(w4);
    assert_eq!(staged_files(&repo).len(), 4);
    drop(w3);
    assert!(repo.verify(None).unwrap().is_ok());
}
