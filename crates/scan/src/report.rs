//! Scan results as JSON: one [`Detection`] per (file, engine, signature) and a
//! [`ScanReport`] per restore point with its [`ScanState`].
//!
//! A file that could not be read is listed in `unreadable` and makes the state
//! [`ScanState::Incomplete`] (unless something was found): it is never
//! counted as clean.
//!
//! The report names every engine ([`EngineRun`]): its version, the
//! signatures or rules it matched with (ClamAV: database version and date;
//! YARA: the rule files and their digest), or why it did not scan. A scan
//! that found nothing is [`ScanState::Clean`] only when ClamAV scanned with
//! a usable signature database; nothing found by YARA alone (the built-in
//! rules know EICAR and a test marker, nothing else) is
//! [`ScanState::Unproven`].

use serde::{Deserialize, Serialize};

/// The engine that produced a detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Clamav,
    Yara,
}

impl Engine {
    /// Stable name used in reports and cache keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Clamav => "clamav",
            Engine::Yara => "yara",
        }
    }
}

/// One engine of a scan: what it matched with, or why it did not scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineRun {
    pub name: Engine,
    /// The engine and its version, e.g. `ClamAV 1.4.6`, `yara-x 1.22.1`.
    pub version: String,
    /// What it matched with: the ClamAV database (parts with versions and
    /// dates, or other signature files with their digest and date), the
    /// YARA rule files.
    pub signatures: String,
    /// ClamAV: the database version (`daily`'s; none for a database of
    /// unversioned signature files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_version: Option<u64>,
    /// ClamAV: the database's date (build time, or the newest modification
    /// time of unversioned signature files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Digest of the signatures or rules (the scan cache's fingerprint);
    /// empty when the engine did not scan.
    pub fingerprint: String,
    /// Why the engine did not scan; `None` when it scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_scanned: Option<String>,
}

impl EngineRun {
    /// An engine that did not scan, with the reason.
    pub fn skipped(name: Engine, version: &str, reason: &str) -> Self {
        EngineRun {
            name,
            version: version.to_string(),
            signatures: String::new(),
            db_version: None,
            db_time: None,
            fingerprint: String::new(),
            not_scanned: Some(reason.to_string()),
        }
    }

    /// True when the engine scanned.
    pub fn scanned(&self) -> bool {
        self.not_scanned.is_none()
    }
}

/// Where scanned files come from: restore point, disk and volume names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub restore_point: String,
    pub disk: String,
    pub volume: String,
}

/// One signature or rule that matched one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    pub restore_point: String,
    pub disk: String,
    pub volume: String,
    /// Path inside the volume, starting with `/`.
    pub path: String,
    pub engine: Engine,
    /// ClamAV signature name or YARA rule identifier.
    pub signature: String,
}

impl Detection {
    /// A detection at `path` within `loc`.
    pub fn new(loc: &Location, path: &str, engine: Engine, signature: &str) -> Self {
        Detection {
            restore_point: loc.restore_point.clone(),
            disk: loc.disk.clone(),
            volume: loc.volume.clone(),
            path: path.to_string(),
            engine,
            signature: signature.to_string(),
        }
    }
}

/// Scan state of a restore point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanState {
    /// Never scanned.
    NotScanned,
    /// Every file was read and nothing matched.
    Clean,
    /// At least one detection.
    Infected,
    /// Nothing matched but some files could not be read.
    Incomplete,
    /// Every file was read and nothing matched, but ClamAV did not scan
    /// with a usable signature database (see [`ScanReport::engines`]): not
    /// a proof of cleanliness.
    Unproven,
}

impl ScanState {
    /// `clean`, `infected`, `incomplete`, `unproven`, `not scanned`.
    pub fn as_words(self) -> &'static str {
        match self {
            ScanState::Clean => "clean",
            ScanState::Infected => "infected",
            ScanState::Incomplete => "incomplete",
            ScanState::Unproven => "unproven",
            ScanState::NotScanned => "not scanned",
        }
    }
}

/// A file that could not be read, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    pub disk: String,
    pub volume: String,
    pub path: String,
    pub reason: String,
}

/// The result of scanning a restore point (or part of one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    pub restore_point: String,
    pub state: ScanState,
    /// The engines, those that did not scan included.
    #[serde(default)]
    pub engines: Vec<EngineRun>,
    pub detections: Vec<Detection>,
    pub unreadable: Vec<Unreadable>,
    /// Files whose content was scanned by at least one engine.
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    /// Files whose content had already been scanned with the same engines
    /// and rules (found in the scan cache), so were not scanned again.
    pub skipped_unchanged_files: u64,
    pub skipped_unchanged_bytes: u64,
    /// Of the skipped files, those recognised by their extent key (extents
    /// and repository chunk digests) without being read at all.
    #[serde(default)]
    pub skipped_unread_files: u64,
    #[serde(default)]
    pub skipped_unread_bytes: u64,
    /// Of the scanned files, those changed since an older restore point
    /// whose copy there was clean, scanned (local YARA rules) in windows
    /// around the changed chunks only; their `bytes_scanned` share and
    /// these bytes are the bytes actually read.
    #[serde(default)]
    pub window_scanned_files: u64,
    #[serde(default)]
    pub window_scanned_bytes: u64,
    /// Files listed and mapped from their volume's bytes in userspace (an
    /// ext4 volume of a restore-point disk) rather than walked, opened and
    /// mapped through the kernel.
    #[serde(default)]
    pub files_listed_in_userspace: u64,
}

impl ScanReport {
    /// An empty report (state [`ScanState::NotScanned`]).
    pub fn new(restore_point: &str) -> Self {
        ScanReport {
            restore_point: restore_point.to_string(),
            state: ScanState::NotScanned,
            engines: Vec::new(),
            detections: Vec::new(),
            unreadable: Vec::new(),
            files_scanned: 0,
            bytes_scanned: 0,
            skipped_unchanged_files: 0,
            skipped_unchanged_bytes: 0,
            skipped_unread_files: 0,
            skipped_unread_bytes: 0,
            window_scanned_files: 0,
            window_scanned_bytes: 0,
            files_listed_in_userspace: 0,
        }
    }

    /// Sets `state` from detections and unreadable files, sorts the lists.
    pub fn finish(&mut self) {
        self.detections.sort_by(|a, b| {
            (&a.disk, &a.volume, &a.path, a.engine.as_str(), &a.signature).cmp(&(
                &b.disk,
                &b.volume,
                &b.path,
                b.engine.as_str(),
                &b.signature,
            ))
        });
        self.detections.dedup();
        self.unreadable
            .sort_by(|a, b| (&a.disk, &a.volume, &a.path).cmp(&(&b.disk, &b.volume, &b.path)));
        self.unreadable.dedup();
        self.state = if !self.detections.is_empty() {
            ScanState::Infected
        } else if !self.unreadable.is_empty() {
            ScanState::Incomplete
        } else if self.proven_by().is_some() {
            ScanState::Clean
        } else {
            ScanState::Unproven
        };
    }

    /// The ClamAV run that makes "nothing found" a proof: ClamAV scanned
    /// (the caller only lets it scan with a usable database).
    pub fn proven_by(&self) -> Option<&EngineRun> {
        self.engines
            .iter()
            .find(|e| e.name == Engine::Clamav && e.scanned())
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_detections_and_unreadable() {
        let loc = Location {
            restore_point: "web01@1".into(),
            disk: "disk0".into(),
            volume: "p1".into(),
        };
        let mut r = ScanReport::new("web01@1");
        assert_eq!(r.state, ScanState::NotScanned);
        r.engines.push(EngineRun {
            name: Engine::Yara,
            version: "yara-x 1".into(),
            signatures: "builtin.yar".into(),
            db_version: None,
            db_time: None,
            fingerprint: "yara-x:00".into(),
            not_scanned: None,
        });
        r.finish();
        assert_eq!(r.state, ScanState::Unproven, "YARA alone proves nothing");
        r.engines.push(EngineRun::skipped(
            Engine::Clamav,
            "ClamAV 1.4.6",
            "no signature database",
        ));
        r.finish();
        assert_eq!(r.state, ScanState::Unproven);
        r.engines[1].not_scanned = None;
        r.finish();
        assert_eq!(r.state, ScanState::Clean);
        r.unreadable.push(Unreadable {
            disk: "disk0".into(),
            volume: "p1".into(),
            path: "/x".into(),
            reason: "Can't read file".into(),
        });
        r.finish();
        assert_eq!(r.state, ScanState::Incomplete);
        r.detections
            .push(Detection::new(&loc, "/eicar", Engine::Clamav, "Eicar"));
        r.finish();
        assert_eq!(r.state, ScanState::Infected);
        let json = r.to_json();
        assert!(json.contains("\"engine\": \"clamav\""), "{json}");
        assert!(json.contains("\"state\": \"infected\""), "{json}");
        let back: ScanReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
