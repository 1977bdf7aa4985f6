//! Scanning restore points for malware, end to end: the library behind
//! `lifeboat scan` and an agent's remote scans (one code path).
//!
//! ```text
//!  engines   EngineChoice -> Engines (ClamAV with a usable database, YARA rules)
//!  cache     the scan cache's folder and key per repository
//!  job       scan_and_record: scan one restore point, save the cache,
//!            unpublish, record the verdict in its manifest
//!  point     publish (all disks) under a private mount root, scan every
//!            mounted volume (dedup-aware: unchanged extents skipped), unpublish
//!  userspace the same without publishing: files read through lifeboat-browse, YARA only
//!  record    the manifest's record of a scan
//! ```

pub mod cache;
pub mod engines;
pub mod job;
pub mod point;
pub mod record;
pub mod userspace;

pub use cache::{cache_root, open_cache_dir, rejected_warning, CACHE_KEY_PURPOSE};
pub use engines::{choose_engines, EngineChoice};
pub use job::{scan_and_record, ScanSetup};
pub use point::{Engines, PointOut, PointScan, PublishPlace, Unpublishing};
