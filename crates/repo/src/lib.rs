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
//! key unwrapping), `keyslot` (key slot files), `unlock` (open from the
//! config or any intact slot), `keys` (verify, repair and manage the
//! config and slots), `crypto` (keys, AEAD), `encoder` (chunks encoded by a proxy
//! with the chunk keys), `blob` (the container of every
//! file), `model` (manifest, index, names), `repository` (open, read, lock,
//! forget), `writer` (backups), `disk` (restore point disks), `prune`,
//! `gc`, `verify`, `quarantine` (damaged files moved aside), `repair`
//! and `salvage` (`repo repair`).

mod blob;
mod config;
mod crypto;
mod damage;
mod digest;
mod disk;
mod encoder;
mod error;
mod fsutil;
mod gc;
mod keys;
mod keyslot;
pub mod layout;
mod listing;
mod lock;
mod model;
mod prune;
mod quarantine;
mod rebuild;
mod repair;
mod repository;
mod salvage;
mod unlock;
mod verified;
mod verify;
mod writer;

pub use config::{check_zstd_level, ZSTD_LEVELS};
pub use crypto::{ChunkKeys, KdfParams, LocalKey};
pub use damage::{DamageState, FileDamage, FileKind};
pub use digest::{Digest, ParseDigestError};
pub use disk::{ChunkReader, RestorePointDisk};
pub use encoder::{max_chunk_blob_len, ChunkEncoder};
pub use error::{Error, Result};
pub use gc::GcReport;
pub use keys::KeySlotInfo;
pub use layout::{DEFAULT_CHUNK_SIZE, DEFAULT_ZSTD_LEVEL};
pub use listing::{ListedPoint, Listing, Resolved};
pub use lock::{Acquired, HolderLock};
pub use model::{
    check_name, Consistency, ConsistencyLevel, DiskEntry, DiskIndex, DiskStats, FormatChosenBy,
    LiveRead, Manifest, ScanEngine, ScanRecord, ScanStatus, SourceFormat,
};
pub use prune::{KeepPolicy, PruneReport};
pub use quarantine::{ChunkQuarantine, QuarantineNote};
pub use rebuild::REBUILT_SOURCE;
pub use repair::{RepairAction, RepairOptions, RepairReport, RepairStep};
pub use repository::{InitOptions, LockGuard, Repository, RepositoryLock, DEFAULT_LOCK_WAIT};
pub use salvage::{ByteRange, Salvage, SalvagedDisk};
pub use verify::{verify_threads, Subset, VerifyOptions, VerifyReport};
pub use writer::{BackupWriter, NewDisk, Stored};

/// The body of the fuzz target `repo_blob` (see `fuzz/`), also replayed
/// over the committed corpus by `tests/fuzz_corpus.rs`: not a stable API,
/// hidden from the docs.
#[doc(hidden)]
pub mod fuzzing;
