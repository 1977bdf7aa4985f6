//! Lifeboat's repository (format v1, documented in `docs/repository-format.md`):
//! a content-addressed, compressed, encrypted chunk store on a local
//! directory, with per-disk indexes and per-restore-point manifests,
//! retention locks, prune, mark-and-sweep gc safe beside running backups,
//! and verify.
//!
//! ```text
//! Repository ── begin_backup ──> BackupWriter ── store_chunk* ── commit ──> Manifest
//!     │                                                                  │
//!     ├─ list / resolve ─────────────────────────────────────────────────┘
//!     ├─ load_index(manifest, disk) ──> DiskIndex (offset -> digest)
//!     ├─ read_chunk(digest)                         (ChunkReader: digest -> bytes)
//!     └─ open_disk(manifest, disk) ──> RestorePointDisk: ReadDisk = index + ChunkReader
//! ```
//!
//! Modules: `layout` (every on-disk constant), `config` (the config file and
//! key unwrapping), `crypto` (keys, AEAD), `blob` (the container of every
//! file), `model` (manifest, index, names), `repository` (open, read, lock,
//! forget), `writer` (backups), `disk` (restore point disks), `prune`,
//! `gc`, `verify`.

mod blob;
mod config;
mod crypto;
mod digest;
mod disk;
mod error;
mod fsutil;
mod gc;
pub mod layout;
mod model;
mod prune;
mod repository;
mod verify;
mod writer;

pub use crypto::{KdfParams, LocalKey};
pub use digest::{Digest, ParseDigestError};
pub use disk::{ChunkReader, RestorePointDisk};
pub use error::{Error, Result};
pub use gc::GcReport;
pub use layout::{DEFAULT_CHUNK_SIZE, DEFAULT_ZSTD_LEVEL};
pub use model::{
    check_name, DiskEntry, DiskIndex, DiskStats, FormatChosenBy, Manifest, ScanEngine, ScanRecord,
    ScanStatus, SourceFormat,
};
pub use prune::{KeepPolicy, PruneReport};
pub use repository::{InitOptions, Repository};
pub use verify::{BadChunk, VerifyReport};
pub use writer::{BackupWriter, NewDisk, Stored};

/// The crate's private decoders, exposed for the fuzz targets in `fuzz/`
/// (target `repo_blob`) and for nothing else: not a stable API, hidden from
/// the docs. `kind` is 0 chunk, 1 index, anything else manifest; `master`
/// is the master key of an encrypted repository (`None`: unencrypted).
#[doc(hidden)]
pub mod fuzzing {
    use crate::blob::BlobKind;
    use crate::crypto::Keys;

    fn kind(k: u8) -> BlobKind {
        [BlobKind::Chunk, BlobKind::Index]
            .get(usize::from(k))
            .copied()
            .unwrap_or(BlobKind::Manifest)
    }

    /// `blob::decode`, for fuzzing only.
    pub fn decode_blob(
        k: u8,
        master: Option<&[u8; 32]>,
        context: &[u8],
        data: Vec<u8>,
        max_plain: u64,
    ) -> Result<Vec<u8>, String> {
        crate::blob::decode(
            kind(k),
            master.map(Keys::derive).as_ref(),
            context,
            data,
            max_plain,
        )
    }

    /// `blob::encode`, for fuzzing only (round trips).
    pub fn encode_blob(
        k: u8,
        master: Option<&[u8; 32]>,
        context: &[u8],
        payload: &[u8],
    ) -> Result<Vec<u8>, String> {
        crate::blob::encode(
            kind(k),
            master.map(Keys::derive).as_ref(),
            1,
            context,
            payload,
        )
    }

    /// `DiskIndex::decode` (an index payload), for fuzzing only.
    pub fn decode_index(payload: &[u8]) -> Result<crate::DiskIndex, String> {
        crate::DiskIndex::decode(payload)
    }
}
