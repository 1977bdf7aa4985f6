//! What a restore point's manifest records of its scan
//! ([`lifeboat_repo::ScanRecord`]): the state, the time, every engine
//! with its version and signatures, the counts.

use crate::point::PointScan;
use lifeboat_repo::{ScanEngine, ScanRecord, ScanStatus};
use lifeboat_scan::ScanState;

/// The record of `p`.
pub fn record_of(p: &PointScan) -> ScanRecord {
    ScanRecord {
        state: match p.report.state {
            ScanState::Clean => ScanStatus::Clean,
            ScanState::Infected => ScanStatus::Infected,
            ScanState::Unproven => ScanStatus::Unproven,
            ScanState::Incomplete | ScanState::NotScanned => ScanStatus::Incomplete,
        },
        time: chrono::Utc::now(),
        engines: p
            .report
            .engines
            .iter()
            .map(|e| ScanEngine {
                name: e.name.as_str().to_string(),
                fingerprint: e.fingerprint.clone(),
                version: Some(e.version.clone()),
                signatures: (!e.signatures.is_empty()).then(|| e.signatures.clone()),
                db_version: e.db_version,
                db_time: e.db_time,
                not_scanned: e.not_scanned.clone(),
            })
            .collect(),
        detections: p.report.detections.len() as u64,
        unreadable: p.report.unreadable.len() as u64,
    }
}
