//! Verify: read every index of the selected restore points and every unique
//! chunk they reference once, authenticate it and check its digest. Chunks
//! are checked by 2 threads (`std::thread::scope`) pulling from a shared
//! counter. A bad chunk is reported with every (restore point, disk) that
//! uses it; a missing chunk is a bad chunk too. An unreadable index is
//! reported in `errors` (its chunks cannot be listed).

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::model::Manifest;
use crate::repository::Repository;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// (chunks checked, bytes checked, failures) gathered by the threads.
type Tally = (u64, u64, Vec<(Digest, String)>);

/// Threads that check chunks.
const VERIFY_THREADS: usize = 2;

/// A chunk that failed verification.
#[derive(Debug, Clone, Serialize)]
pub struct BadChunk {
    pub digest: Digest,
    pub error: String,
    /// (restore point `vm@id`, disk) pairs that reference it.
    pub used_by: Vec<(String, String)>,
}

/// What verify found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub chunks_checked: u64,
    /// Plaintext bytes of the chunks that verified.
    pub bytes_checked: u64,
    pub bad_chunks: Vec<BadChunk>,
    pub restore_points_checked: usize,
    /// Manifests or indexes that could not be read (their chunks were not checked).
    pub errors: Vec<String>,
}

impl VerifyReport {
    /// True when nothing bad was found.
    pub fn is_ok(&self) -> bool {
        self.bad_chunks.is_empty() && self.errors.is_empty()
    }
}

impl Repository {
    /// Verifies `only` one restore point, or all of them.
    pub fn verify(&self, only: Option<&Manifest>) -> Result<VerifyReport> {
        let manifests = match only {
            Some(m) => vec![m.clone()],
            None => self.list(None)?,
        };
        let mut report = VerifyReport {
            restore_points_checked: manifests.len(),
            ..Default::default()
        };
        // users[k] = (restore point, disk); refs[digest] = indexes into users.
        let mut users: Vec<(String, String)> = Vec::new();
        let mut refs: HashMap<Digest, Vec<u32>> = HashMap::new();
        for m in &manifests {
            for d in &m.disks {
                let index = match self.load_index(m, &d.name) {
                    Ok(i) => i,
                    Err(e) => {
                        report
                            .errors
                            .push(format!("{} disk {}: {e}", m.name(), d.name));
                        continue;
                    }
                };
                let user = u32::try_from(users.len())
                    .map_err(|_| Error::invalid("verify", "too many disks"))?;
                users.push((m.name(), d.name.clone()));
                for digest in index.digests.iter().flatten() {
                    let list = refs.entry(*digest).or_default();
                    if list.last() != Some(&user) {
                        list.push(user);
                    }
                }
            }
        }
        let mut digests: Vec<Digest> = refs.keys().copied().collect();
        digests.sort(); // directory order: friendlier to the disk
        let next = AtomicUsize::new(0);
        let results: Mutex<Tally> = Mutex::new((0, 0, Vec::new()));
        std::thread::scope(|s| {
            for _ in 0..VERIFY_THREADS {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = digests.get(i) else { break };
                    let outcome = self.read_chunk(d);
                    let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                    r.0 += 1;
                    match outcome {
                        Ok(plain) => r.1 += plain.len() as u64,
                        Err(e) => r.2.push((*d, e.to_string())),
                    }
                });
            }
        });
        let (checked, bytes, mut bad) = results.into_inner().unwrap_or_else(|e| e.into_inner());
        bad.sort_by_key(|(d, _)| *d);
        report.chunks_checked = checked;
        report.bytes_checked = bytes;
        report.bad_chunks = bad
            .into_iter()
            .map(|(digest, error)| BadChunk {
                digest,
                error,
                used_by: refs
                    .get(&digest)
                    .map(|l| {
                        l.iter()
                            .filter_map(|&u| users.get(u as usize).cloned())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Ok(report)
    }
}
