//! One restore point scanned end to end, as `lifeboat scan` and an agent
//! both do it: published and scanned with the chosen engines (or read in
//! userspace with YARA when publishing is impossible or not wanted), the
//! scan cache saved (results of the files scanned so far stay valid after
//! an error), the session unpublished, and the outcome recorded in the
//! manifest (a repository the caller may not write only loses the record:
//! [`PointScan::not_recorded`] says why).

use crate::point::{scan_point, Engines, PointScan, PublishPlace};
use crate::record::record_of;
use crate::userspace::scan_point_userspace;
use lifeboat_repo::{Manifest, Repository};
use lifeboat_scan::LoadingCache;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// How restore points are scanned.
pub struct ScanSetup {
    pub engines: Engines,
    pub place: PublishPlace,
    /// Read files in userspace instead of publishing (YARA only).
    pub userspace: bool,
}

/// Scans `m` (see the module doc); `cancel` stops it (the error is then
/// [`lifeboat_scan::ScanError::Cancelled`] or the engine's, and nothing
/// is recorded).
pub fn scan_and_record(
    repo: &Repository,
    m: &Manifest,
    setup: &ScanSetup,
    cache: &mut LoadingCache,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<PointScan> {
    let result = match (&setup.engines.yara, setup.userspace) {
        (Some(yara), true) => cache
            .get()
            .map_err(anyhow::Error::from)
            .and_then(|c| scan_point_userspace(repo, m, yara, &setup.engines, c, cancel)),
        _ => scan_point(repo, &setup.place, m, &setup.engines, cache, cancel),
    };
    let saved = cache.save();
    let mut p = result?;
    let unpublished = p.unpublishing.take().map_or(Ok(()), |u| u.wait());
    saved?;
    unpublished?;
    if let Err(e) = repo.record_scan(m, record_of(&p)) {
        p.not_recorded = Some(e.to_string());
    }
    Ok(p)
}
