//! Where a backup goes: [`ChunkSink`], what the chunk pipeline writes to
//! (store a chunk by digest and plaintext, reuse one by digest, commit the
//! restore point), and [`BackupTarget`], what a backup that starts from
//! the previous restore point needs besides (a live backup's incremental
//! read). A local repository is both ([`BackupWriter`], [`Repository`]);
//! a proxy's upload to the server's repository is the other
//! implementation (`lifeboat_server::proxies::remote`).
//!
//! The pipeline is generic over the sink, so the local path calls the
//! writer directly: no copy, allocation or dynamic call per chunk.

use crate::{Error, Result};
use lifeboat_repo::{
    BackupWriter, Consistency, Digest, DiskIndex, Manifest, NewDisk, Repository, Stored,
};

/// What the backup pipeline writes chunks and the restore point to.
/// `Sync`: workers store chunks from many threads.
pub trait ChunkSink: Sync {
    /// The size of every chunk but a disk's last.
    fn chunk_size(&self) -> u32;
    /// A chunk's digest (keyed BLAKE3 of an encrypted repository).
    fn digest(&self, plain: &[u8]) -> Digest;
    /// Stores chunk `digest` of plaintext `plain` unless the repository
    /// has it (then it is marked live for gc).
    fn store_chunk(&self, digest: &Digest, plain: &[u8]) -> Result<Stored>;
    /// Marks chunk `digest` live without its data; false when the
    /// repository lacks it (the caller reads and stores it).
    fn reuse_chunk(&self, digest: &Digest) -> Result<bool>;
    /// Writes the indexes and the manifest of `vm`'s new restore point.
    fn commit(
        self,
        vm: &str,
        disks: Vec<NewDisk>,
        consistency: Option<Consistency>,
    ) -> Result<Manifest>
    where
        Self: Sized;
}

/// A repository a backup can start from: its previous restore point of a
/// VM, that point's indexes, and a sink for the new one.
pub trait BackupTarget: Sync {
    type Sink: ChunkSink;
    /// The latest restore point of `vm`, if any.
    fn latest(&self, vm: &str) -> Result<Option<Manifest>>;
    /// The index of `disk` in restore point `manifest`.
    fn load_index(&self, manifest: &Manifest, disk: &str) -> Result<DiskIndex>;
    /// Starts the backup; new chunks compressed at `zstd_level` (`None`:
    /// the repository's level).
    fn begin(&self, zstd_level: Option<i32>) -> Result<Self::Sink>;
    /// Workers per disk for a source that sets none (`None`: one per
    /// core). A remote target wants more: each worker waits on the network
    /// for its chunk while the others compute.
    fn workers(&self) -> Option<usize> {
        None
    }
}

impl ChunkSink for BackupWriter {
    fn chunk_size(&self) -> u32 {
        self.repository().chunk_size()
    }

    fn digest(&self, plain: &[u8]) -> Digest {
        self.repository().digest(plain)
    }

    fn store_chunk(&self, digest: &Digest, plain: &[u8]) -> Result<Stored> {
        Ok(BackupWriter::store_chunk(self, digest, plain)?)
    }

    fn reuse_chunk(&self, digest: &Digest) -> Result<bool> {
        Ok(BackupWriter::reuse_chunk(self, digest)?)
    }

    fn commit(
        self,
        vm: &str,
        disks: Vec<NewDisk>,
        consistency: Option<Consistency>,
    ) -> Result<Manifest> {
        Ok(match consistency {
            Some(c) => self.commit_consistent(vm, disks, c)?,
            None => BackupWriter::commit(self, vm, disks)?,
        })
    }
}

impl BackupTarget for Repository {
    type Sink = BackupWriter;

    fn latest(&self, vm: &str) -> Result<Option<Manifest>> {
        match self.resolve(&format!("{vm}@latest")) {
            Ok(m) => Ok(Some(m)),
            Err(lifeboat_repo::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::Repo(e)),
        }
    }

    fn load_index(&self, manifest: &Manifest, disk: &str) -> Result<DiskIndex> {
        Ok(Repository::load_index(self, manifest, disk)?)
    }

    fn begin(&self, zstd_level: Option<i32>) -> Result<BackupWriter> {
        Ok(match zstd_level {
            Some(level) => self.clone().with_compression_level(level)?.begin_backup()?,
            None => self.begin_backup()?,
        })
    }
}
