//! Lifeboat malware scanning of restore points.
//!
//! - [`clamav`]: `clamscan`/`clamdscan` over a directory tree (a published
//!   restore point), output parsed into detections and unreadable files.
//! - [`clamav_db`]: which ClamAV signature database a scan uses (version,
//!   date) and whether it can prove anything.
//! - [`yara`]: YARA rules (the `yara-x` crate, cargo feature `yara`, on by
//!   default) over file contents in memory, with built-in rules.
//! - [`cache`]: dedup-aware cache of results keyed by content digest, engine
//!   and rule-set fingerprint, persisted as JSON lines in a directory.
//! - [`fiemap`]: the extent map of a file on a mounted volume (FIEMAP).
//! - [`extent_key`]: a file's identity from its extents and the repository
//!   chunk digests under them, so unchanged files are skipped unread.
//! - [`mapping`]: opening and mapping a tree's files with a few threads.
//! - [`parallel`]: one job per item on a few threads, results in order.
//! - [`ext4list`]: listing and mapping an ext4 volume's files in userspace
//!   from its bytes, without the kernel walk.
//! - [`listing`]: which of the two lists a mapped tree scan's files.
//! - [`locality`]: whether YARA rules can be checked in windows around
//!   changed bytes, and which windows.
//! - [`walk`]: listing a tree's files with a few threads, in inode order.
//! - [`windowed`]: reading those windows with a few threads.
//! - [`scan`]: the driver tying engines and cache into a [`ScanReport`].
//! - [`report`]: JSON report types and the restore point scan state.
//!
//! This crate does not publish or browse restore points: callers hand it a
//! directory tree or (path, reader) items.

pub mod cache;
pub mod clamav;
pub mod clamav_db;
pub mod error;
pub mod ext4list;
pub mod extent_key;
pub mod fiemap;
/// Fuzz target bodies (`fuzz/`), replayed by `tests/fuzz_corpus.rs`; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod listing;
pub mod locality;
pub mod mapping;
pub mod parallel;
pub mod report;
pub mod scan;
pub mod walk;
pub mod windowed;
pub mod yara;

pub use cache::{ContentKey, LoadingCache, ScanCache};
pub use clamav::{ClamAvScanner, ClamOutcome};
pub use clamav_db::ClamSignatures;
pub use error::{Result, ScanError};
pub use ext4list::VolumeBytes;
pub use extent_key::{DiskChunks, Rebased, VolumeChunks};
pub use fiemap::{file_extents, FileExtent};
pub use report::{Detection, Engine, EngineRun, Location, ScanReport, ScanState, Unreadable};
pub use scan::Scan;
pub use yara::{YaraScanner, BUILTIN_RULES};
