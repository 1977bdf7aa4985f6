//! Test repositories (feature `repo`): created with cheap Argon2
//! parameters, filled by real backups through the engine, and looked at
//! from the outside (chunk files, a byte-for-byte snapshot of every file).

use lifeboat_engine::{backup_vm, DiskSource, NoProgress};
use lifeboat_repo::{Digest, InitOptions, KdfParams, Manifest, Repository};
use lifeboat_vdisk::{FileDisk, ReadDisk};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The chunk size of the repositories [`backed_up`] makes: 256 KiB, so a
/// few MiB of test disk make many chunks.
pub const BACKUP_CHUNK: u32 = 256 << 10;

/// Creates a repository at `path` with `chunk_size` chunks, encrypted
/// with `passphrase` when given (cheap test Argon2 parameters).
pub fn init_repo(path: &Path, passphrase: Option<&str>, chunk_size: u32) -> Repository {
    let mut opts = InitOptions::new(passphrase.map(str::to_string));
    opts.chunk_size = chunk_size;
    Repository::init_with_kdf(path, opts, KdfParams::insecure_for_tests())
        .unwrap_or_else(|e| panic!("init of {}: {e}", path.display()))
}

/// A new unencrypted repository at `repo` ([`BACKUP_CHUNK`] chunks) holding
/// one backup, made by the engine, of VM `vm` whose disks are the raw
/// images `disks` (name, path); returns it and the restore point.
pub fn backed_up(repo: &Path, vm: &str, disks: &[(&str, &Path)]) -> (Repository, Manifest) {
    let repository = init_repo(repo, None, BACKUP_CHUNK);
    let sources: Vec<DiskSource> = disks
        .iter()
        .map(|(name, path)| {
            DiskSource::from_disk(
                *name,
                Arc::new(FileDisk::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                    as Arc<dyn ReadDisk>,
            )
        })
        .collect();
    let summary = backup_vm(&repository, vm, &sources, &NoProgress)
        .unwrap_or_else(|e| panic!("backup of {vm}: {e}"));
    (repository, summary.manifest)
}

/// The file of chunk `digest` in the repository at `repo`:
/// `chunks/<first 2 hex>/<64 hex>`.
pub fn chunk_path(repo: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.to_string();
    repo.join("chunks").join(&hex[..2]).join(hex)
}

/// Every chunk file of the repository at `repo`, sorted.
pub fn chunk_files(repo: &Path) -> Vec<PathBuf> {
    let chunks = repo.join("chunks");
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(&chunks).unwrap_or_else(|e| panic!("{}: {e}", chunks.display()))
    {
        let prefix = prefix.expect("dir entry").path();
        if !prefix.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&prefix).unwrap_or_else(|e| panic!("{}: {e}", prefix.display()))
        {
            let p = f.expect("dir entry").path();
            if p.file_name().is_some_and(|n| n.len() == 64) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file of the repository at `repo` but its lock files and `state/`
/// (what verify remembers about chunks, not restore point data), with its
/// bytes (small test repositories), keyed by the path inside `repo`.
pub fn repo_snapshot(repo: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p != repo.join("state") {
                    stack.push(p);
                }
            } else if !p.to_string_lossy().contains("lock") {
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.insert(
                    p.strip_prefix(repo)
                        .expect("below the repository")
                        .to_path_buf(),
                    bytes,
                );
            }
        }
    }
    out
}
