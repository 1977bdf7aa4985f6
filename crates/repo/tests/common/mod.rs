//! Helpers shared by the integration tests: repositories in tempdirs with
//! cheap Argon2 parameters (made by lifeboat-testsupport), and a tiny
//! backup loop (fixed-size chunks, zero chunks skipped) standing in for
//! the engine.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use lifeboat_repo::*;
use lifeboat_testsupport::repo::{chunk_files, chunk_path, init_repo};
use std::path::Path;
use std::time::{Duration, SystemTime};

pub const PASS: &str = "correct horse battery staple";
pub const CHUNK: u32 = 64 * 1024;

/// A repository at `path` with [`CHUNK`] chunks, encrypted with [`PASS`]
/// when asked.
pub fn init(path: &Path, encrypted: bool) -> Repository {
    init_repo(path, encrypted.then_some(PASS), CHUNK)
}

/// Chunks `data` and stores it through `w`; returns the disk to commit.
pub fn store_disk(repo: &Repository, w: &BackupWriter, name: &str, data: &[u8]) -> NewDisk {
    let cs = repo.chunk_size() as usize;
    let mut digests = Vec::new();
    let mut stats = DiskStats::default();
    for chunk in data.chunks(cs) {
        stats.bytes_read += chunk.len() as u64;
        if chunk.iter().all(|&b| b == 0) {
            stats.zero_chunks += 1;
            digests.push(None);
            continue;
        }
        stats.data_chunks += 1;
        let d = repo.digest(chunk);
        if let Stored::New { stored_bytes } = w.store_chunk(&d, chunk).unwrap() {
            stats.new_chunks += 1;
            stats.new_stored_bytes += stored_bytes;
        }
        digests.push(Some(d));
    }
    NewDisk {
        name: name.to_string(),
        source: format!("test {name}"),
        format: None,
        live: None,
        index: DiskIndex {
            chunk_size: repo.chunk_size(),
            disk_size: data.len() as u64,
            digests,
        },
        stats,
    }
}

/// One backup of one disk `disk0`.
pub fn backup(repo: &Repository, vm: &str, data: &[u8]) -> Manifest {
    let w = repo.begin_backup().unwrap();
    let disk = store_disk(repo, &w, "disk0", data);
    w.commit(vm, vec![disk]).unwrap()
}

/// One backup at a synthetic time.
pub fn backup_at(repo: &Repository, vm: &str, data: &[u8], time: DateTime<Utc>) -> Manifest {
    let w = repo.begin_backup().unwrap();
    let disk = store_disk(repo, &w, "disk0", data);
    w.commit_at(vm, vec![disk], time).unwrap()
}

/// Reads a whole restore point disk.
pub fn read_back(repo: &Repository, m: &Manifest, disk: &str) -> Vec<u8> {
    use lifeboat_vdisk::ReadDisk;
    let d = repo.open_disk(m, disk).unwrap();
    let mut buf = vec![0u8; d.size() as usize];
    d.read_at(&mut buf, 0).unwrap();
    buf
}

/// Deterministic pseudo-random bytes (incompressible), different per seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Path of a chunk file (layout: chunks/<first 2 hex>/<64 hex>).
pub fn chunk_file(repo: &Repository, d: &Digest) -> std::path::PathBuf {
    chunk_path(repo.path(), d)
}

/// Sets the mtime of every chunk file to `age` ago (simulates old chunks).
pub fn age_all_chunks(repo: &Repository, age: Duration) {
    let when = SystemTime::now() - age;
    for f in chunk_files(repo.path()) {
        let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
        file.set_modified(when).unwrap();
    }
}

/// Number of chunk files in the repository.
pub fn count_chunks(repo: &Repository) -> usize {
    chunk_files(repo.path()).len()
}

/// Four restore points at fixed days: web01 oldest, middle, newest, then
/// db01. Each disk is two chunks shared by all, then `tail` bytes of its own.
pub struct FourPoints {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
    pub points: Vec<Manifest>,
    pub data: Vec<Vec<u8>>,
}

/// Makes [`FourPoints`] in a new temporary directory.
pub fn four_points(encrypted: bool, tail: usize) -> FourPoints {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), encrypted);
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
    let shared = noise(2 * CHUNK as usize, 1);
    let mut points = Vec::new();
    let mut data = Vec::new();
    for (i, vm) in ["web01", "web01", "web01", "db01"].iter().enumerate() {
        let mut d = shared.clone();
        d.extend(noise(tail, 10 + i as u64));
        points.push(backup_at(
            &repo,
            vm,
            &d,
            t0 + chrono::Duration::days(i as i64),
        ));
        data.push(d);
    }
    FourPoints {
        dir,
        repo,
        points,
        data,
    }
}
