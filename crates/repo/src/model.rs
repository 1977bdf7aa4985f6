//! The data model of a restore point: [`Manifest`] (what the restore point
//! is), [`DiskEntry`] and [`DiskStats`] (per disk), [`ScanRecord`] (the last
//! malware scan), [`DiskIndex`] (offset -> digest), plus name rules and
//! restore point ids.
//!
//! `Manifest::scan` and `DiskEntry::format` were added within format v1:
//! each is left out of the JSON when absent (so such manifests are
//! byte-for-byte what older versions wrote) and read as absent when missing
//! (so older manifests still read). The same holds for the fields of
//! [`ScanEngine`] that name an engine's version and signature database
//! (added later): absent in older records, which still read.
//! [`ScanStatus::Unproven`] was added with them.
//!
//! Index payload (inside an index blob), little endian:
//!
//! ```text
//! off len field
//!   0   4 chunk_size
//!   4   4 reserved (0)
//!   8   8 disk_size
//!  16   8 count = ceil(disk_size / chunk_size)
//!  24  32*count digests; all-zero = zero chunk (never stored)
//! ```

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::{DIGEST_LEN, ID_RANDOM_HEX, INDEX_HEADER_LEN, MAX_NAME_LEN, ZERO_DIGEST};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Per-disk statistics of one backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStats {
    pub bytes_read: u64,
    pub data_chunks: u64,
    pub zero_chunks: u64,
    pub new_chunks: u64,
    pub new_stored_bytes: u64,
}

/// One disk of a restore point, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskEntry {
    pub name: String,
    pub size: u64,
    pub chunk_size: u32,
    /// Where it came from, e.g. `qcow2 /vms/a.qcow2`.
    pub source: String,
    pub stats: DiskStats,
    /// How an image file was read (`None`: not an image file, or a
    /// restore point written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SourceFormat>,
    /// How a running VM's disk was read (`None`: not a live backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveRead>,
}

/// How a disk of a running VM was read: the whole disk or only what its
/// dirty bitmap marked, and the bitmap that tracks the writes since this
/// restore point (the next backup is incremental only if the disk still
/// has that bitmap, recording).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRead {
    /// `full` or `incremental`.
    pub read: String,
    /// Why the whole disk was read (a full read only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_full: Option<String>,
    /// Bytes the bitmap marked changed since the previous restore point
    /// (incremental only).
    pub changed_bytes: u64,
    /// The QEMU dirty bitmap (on `node`) recording writes since this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitmap: Option<String>,
    /// Whether that bitmap survives a VM restart (qcow2) or not (raw).
    pub persistent: bool,
}

/// How the format of a backed-up image file was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatChosenBy {
    /// The user named it.
    Given,
    /// The path is a block device, read as raw.
    BlockDevice,
    /// The file name's extension.
    FileName,
    /// The first bytes of the file.
    Content,
}

impl FormatChosenBy {
    /// `given`, `block device`, `file name` or `content`.
    pub fn as_str(self) -> &'static str {
        match self {
            FormatChosenBy::Given => "given",
            FormatChosenBy::BlockDevice => "block device",
            FormatChosenBy::FileName => "file name",
            FormatChosenBy::Content => "content",
        }
    }
}

/// The format an image file was read as, how it was chosen, and the other
/// files it made the backup read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFormat {
    /// `raw`, `qcow2`, `vmdk` or `vhdx`.
    pub format: String,
    pub chosen_by: FormatChosenBy,
    /// What the file's first bytes look like, when that is another format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_looks_like: Option<String>,
    /// Backing files and extent files read (canonical paths), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followed: Vec<String>,
}

/// A restore point: the manifest is written last, so it exists only when
/// every index and chunk it refers to does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub vm: String,
    pub id: String,
    pub time: DateTime<Utc>,
    pub disks: Vec<DiskEntry>,
    pub locked_until: Option<DateTime<Utc>>,
    /// The last malware scan (`None`: never scanned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanRecord>,
    /// Set on a restore point `repo repair --salvage` wrote from a damaged
    /// one: where from, and which ranges of each disk read as zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salvage: Option<crate::salvage::Salvage>,
    /// How consistent the disks' point in time is (live backups; `None`:
    /// not recorded, e.g. an image file nothing was writing to, or a
    /// restore point written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
}

/// What the guest had done when its disks' point in time was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyLevel {
    /// The guest's applications flushed their state (pre-freeze scripts)
    /// and its filesystems were frozen.
    Application,
    /// The guest's filesystems were frozen (guest agent fsfreeze): clean
    /// filesystems, applications as after a power loss.
    Filesystem,
    /// Nothing was frozen: the disks as after a power loss (journals replay).
    Crash,
}

impl ConsistencyLevel {
    /// `application-consistent`, `filesystem-consistent` or `crash-consistent`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsistencyLevel::Application => "application-consistent",
            ConsistencyLevel::Filesystem => "filesystem-consistent",
            ConsistencyLevel::Crash => "crash-consistent",
        }
    }
}

/// The consistency of a restore point, and why it is not better.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consistency {
    pub level: ConsistencyLevel,
    /// Why the level is what it is (always set below `application`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Filesystems the guest agent froze for the point in time.
    #[serde(default)]
    pub frozen_filesystems: u32,
    /// How long they stayed frozen, milliseconds.
    #[serde(default)]
    pub frozen_ms: u64,
}

impl Consistency {
    /// One line: the level, then why (`filesystem-consistent: 1 filesystem
    /// frozen for 40 ms`).
    pub fn describe(&self) -> String {
        match &self.why {
            Some(why) => format!("{}: {why}", self.level.as_str()),
            None => self.level.as_str().to_string(),
        }
    }
}

/// Outcome of a malware scan of a restore point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    /// Every file was read and nothing matched.
    Clean,
    /// At least one detection.
    Infected,
    /// Nothing matched but some files or volumes could not be read.
    Incomplete,
    /// Nothing matched, but ClamAV did not scan with a usable signature
    /// database (none, too old, not installed, not asked for): the engines
    /// that ran say what was checked. Not a proof of cleanliness.
    Unproven,
}

impl ScanStatus {
    /// `clean`, `infected`, `incomplete` or `unproven`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Clean => "clean",
            ScanStatus::Infected => "infected",
            ScanStatus::Incomplete => "incomplete",
            ScanStatus::Unproven => "unproven",
        }
    }
}

/// One engine of a scan: what it matched with, or why it did not scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanEngine {
    /// `clamav` or `yara`.
    pub name: String,
    /// Hash of the signature database or rule set in use (empty when the
    /// engine did not scan).
    pub fingerprint: String,
    /// The engine and its version, e.g. `ClamAV 1.4.6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The signature database or rule files, e.g. `/var/lib/clamav: daily
    /// 27425 (2024-10-14 08:19 UTC), ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<String>,
    /// ClamAV: the database version (`daily`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_version: Option<u64>,
    /// ClamAV: the database's date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_time: Option<DateTime<Utc>>,
    /// Why the engine did not scan (`None`: it scanned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_scanned: Option<String>,
}

/// The last malware scan of a restore point, kept in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRecord {
    pub state: ScanStatus,
    /// When the scan ended.
    pub time: DateTime<Utc>,
    pub engines: Vec<ScanEngine>,
    /// Number of (file, engine, signature) detections.
    pub detections: u64,
    /// Number of files (or volumes) that could not be read.
    pub unreadable: u64,
}

impl Manifest {
    /// `vm@id`.
    pub fn name(&self) -> String {
        format!("{}@{}", self.vm, self.id)
    }

    /// The scan state as `list --json` and the API give it: `clean`,
    /// `infected`, `incomplete`, `unproven` or `not_scanned`.
    pub fn scan_state(&self) -> &'static str {
        self.scan
            .as_ref()
            .map_or("not_scanned", |s| s.state.as_str())
    }

    /// True when a retention lock is in force at `now`.
    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|u| u > now)
    }

    /// The entry of disk `name`.
    pub fn disk(&self, name: &str) -> Option<&DiskEntry> {
        self.disks.iter().find(|d| d.name == name)
    }
}

/// Offset -> digest map of one disk. `None` is an all-zero chunk; the last
/// chunk may be short. (Serde gives the JSON a proxy's upload sends:
/// digests as hex, `null` for zeros; the repository stores
/// [`DiskIndex::encode`].)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskIndex {
    pub chunk_size: u32,
    pub disk_size: u64,
    pub digests: Vec<Option<Digest>>,
}

impl DiskIndex {
    /// The digest bytes of every chunk, `None` for an all-zero chunk (for
    /// crates that key things by chunk content).
    pub fn digest_bytes(&self) -> Vec<Option<[u8; 32]>> {
        self.digests.iter().map(|d| d.map(|d| d.0)).collect()
    }

    /// Number of chunks a disk of `disk_size` has at `chunk_size` (0 when chunk_size is 0).
    pub fn chunk_count(disk_size: u64, chunk_size: u32) -> u64 {
        if chunk_size == 0 {
            return 0;
        }
        disk_size.div_ceil(u64::from(chunk_size))
    }

    /// Byte length of chunk `i` (the last one may be short).
    pub fn chunk_len(&self, i: u64) -> u64 {
        let cs = u64::from(self.chunk_size);
        let start = i.saturating_mul(cs);
        self.disk_size.saturating_sub(start).min(cs)
    }

    /// Checks that the digest count matches the size.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.chunk_size == 0 {
            return Err("chunk size 0".into());
        }
        let want = Self::chunk_count(self.disk_size, self.chunk_size);
        if self.digests.len() as u64 != want {
            return Err(format!(
                "{} digests for a disk of {} bytes in chunks of {} (expected {want})",
                self.digests.len(),
                self.disk_size,
                self.chunk_size
            ));
        }
        Ok(())
    }

    /// Serialises the index payload.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INDEX_HEADER_LEN + self.digests.len() * DIGEST_LEN);
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.disk_size.to_le_bytes());
        out.extend_from_slice(&(self.digests.len() as u64).to_le_bytes());
        for d in &self.digests {
            out.extend_from_slice(&d.map_or(ZERO_DIGEST, |d| d.0));
        }
        out
    }

    /// Parses an index payload.
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<DiskIndex, String> {
        let (header, body) = bytes
            .split_at_checked(INDEX_HEADER_LEN)
            .ok_or("index shorter than its header")?;
        let u32_at =
            |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let chunk_size = u32_at(0);
        let disk_size = u64_at(8);
        let count = u64_at(16);
        if body.len() as u64 != count.saturating_mul(DIGEST_LEN as u64) {
            return Err(format!(
                "index says {count} digests but holds {} bytes of them",
                body.len()
            ));
        }
        let digests = body
            .chunks_exact(DIGEST_LEN)
            .map(|c| {
                let mut d = [0u8; DIGEST_LEN];
                d.copy_from_slice(c);
                (d != ZERO_DIGEST).then_some(Digest(d))
            })
            .collect();
        let index = DiskIndex {
            chunk_size,
            disk_size,
            digests,
        };
        index.check()?;
        Ok(index)
    }
}

/// Checks a VM or disk name: `[A-Za-z0-9._-]{1,64}`, not starting with '.'.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("must be 1 to 64 characters");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("may only hold A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

/// A new restore point id for `time`: `YYYYMMDD-HHMMSS-xxxx` (UTC), sortable.
pub(crate) fn new_id(time: DateTime<Utc>) -> Result<String> {
    Ok(format!(
        "{}-{}",
        time.format("%Y%m%d-%H%M%S"),
        crate::fsutil::random_hex(ID_RANDOM_HEX)?
    ))
}

/// True when `id` has the shape of a restore point id (also a valid file name).
pub(crate) fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 16 + ID_RANDOM_HEX
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 15 => c == b'-',
            0..=14 => c.is_ascii_digit(),
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest with none of the optional fields, and it read.
    fn old_manifest() -> (&'static str, Manifest) {
        let old = r#"{"format_version":1,"vm":"web01","id":"20260101-000000-abcd","time":"2026-01-01T00:00:00Z","disks":[],"locked_until":null}"#;
        (old, serde_json::from_str(old).unwrap())
    }

    #[test]
    fn manifest_consistency_is_optional_and_round_trips() {
        let (old, mut m) = old_manifest();
        assert_eq!(m.consistency, None);
        assert_eq!(serde_json::to_string(&m).unwrap(), old);
        m.consistency = Some(Consistency {
            level: ConsistencyLevel::Filesystem,
            why: Some("1 filesystem frozen by the guest agent for 40 ms".into()),
            frozen_filesystems: 1,
            frozen_ms: 40,
        });
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            json.contains(r#""consistency":{"level":"filesystem","why":"1 filesystem"#),
            "{json}"
        );
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        // Only the level is required.
        let minimal = old.replace(
            r#""locked_until":null"#,
            r#""locked_until":null,"consistency":{"level":"crash"}"#,
        );
        let c = serde_json::from_str::<Manifest>(&minimal)
            .unwrap()
            .consistency
            .unwrap();
        assert_eq!(c.level, ConsistencyLevel::Crash);
        assert_eq!(c.describe(), "crash-consistent");
        assert_eq!(
            m.consistency.unwrap().describe(),
            "filesystem-consistent: 1 filesystem frozen by the guest agent for 40 ms"
        );
    }

    #[test]
    fn manifest_scan_field_is_optional_and_omitted_when_absent() {
        let (old, mut m) = old_manifest();
        assert_eq!(m.scan, None);
        assert_eq!(serde_json::to_string(&m).unwrap(), old);
        m.scan = Some(ScanRecord {
            state: ScanStatus::Infected,
            time: m.time,
            engines: vec![ScanEngine {
                name: "yara".into(),
                fingerprint: "yara-x:00".into(),
                version: None,
                signatures: None,
                db_version: None,
                db_time: None,
                not_scanned: None,
            }],
            detections: 2,
            unreadable: 0,
        });
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""state":"infected""#), "{json}");
        // A record written before engines named their databases.
        assert!(json.contains(r#""engines":[{"name":"yara","fingerprint":"yara-x:00"}]"#));
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        // One naming them, with a ClamAV that did not scan.
        let scan = m.scan.as_mut().unwrap();
        scan.state = ScanStatus::Unproven;
        scan.engines.push(ScanEngine {
            name: "clamav".into(),
            fingerprint: String::new(),
            version: Some("ClamAV 1.4.6".into()),
            signatures: None,
            db_version: Some(27425),
            db_time: Some(m.time),
            not_scanned: Some("no signature database".into()),
        });
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""state":"unproven""#), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn disk_format_field_is_optional_and_omitted_when_absent() {
        let old = r#"{"format_version":1,"vm":"web01","id":"20260101-000000-abcd","time":"2026-01-01T00:00:00Z","disks":[{"name":"disk0","size":1048576,"chunk_size":262144,"source":"raw file /vms/a.raw","stats":{"bytes_read":0,"data_chunks":0,"zero_chunks":4,"new_chunks":0,"new_stored_bytes":0}}],"locked_until":null}"#;
        let mut m: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!(m.disks[0].format, None);
        assert_eq!(serde_json::to_string(&m).unwrap(), old);
        m.disks[0].format = Some(SourceFormat {
            format: "raw".into(),
            chosen_by: FormatChosenBy::FileName,
            content_looks_like: Some("qcow2".into()),
            followed: Vec::new(),
        });
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            json.contains(
                r#""format":{"format":"raw","chosen_by":"file_name","content_looks_like":"qcow2"}"#
            ),
            "{json}"
        );
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn index_roundtrip_and_damage() {
        let idx = DiskIndex {
            chunk_size: 4096,
            disk_size: 10_000,
            digests: vec![Some(Digest([3; 32])), None, Some(Digest([4; 32]))],
        };
        let bytes = idx.encode();
        assert_eq!(DiskIndex::decode(&bytes).unwrap(), idx);
        assert!(DiskIndex::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(DiskIndex::decode(&bytes[..10]).is_err());
        let mut wrong_size = bytes.clone();
        wrong_size[9] = 0xff; // disk_size 65296: 16 chunks, not 3
        assert!(DiskIndex::decode(&wrong_size).is_err());
        assert_eq!(idx.chunk_len(2), 10_000 - 8192);
    }

    #[test]
    fn names_and_ids() {
        for ok in ["web01", "a", "db-1.prod_x", &"x".repeat(64)] {
            check_name(ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(65), ".."] {
            assert!(
                matches!(check_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        let id = new_id(Utc::now()).unwrap();
        assert!(is_valid_id(&id), "{id}");
        assert!(!is_valid_id("20261122-110930"));
        assert!(!is_valid_id("../../etc/passwd-aa"));
    }
}
