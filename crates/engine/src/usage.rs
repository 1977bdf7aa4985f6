//! Space accounting of a restore point: logical size, data, unique chunks
//! and what they take on disk, and the resulting dedup-and-compression ratio.

use crate::Result;
use lifeboat_repo::{Manifest, Repository};
use std::collections::HashSet;

/// Space used by one restore point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    /// Sum of the disks' sizes.
    pub logical_bytes: u64,
    /// Bytes in chunks that are not all zero.
    pub data_bytes: u64,
    /// Distinct chunks referenced.
    pub unique_chunks: u64,
    /// Bytes those chunks take in the repository (compressed, encrypted).
    pub stored_bytes: u64,
    /// data_bytes / stored_bytes: what dedup and compression saved.
    pub reduction_ratio: f64,
}

/// Computes the [`Usage`] of `manifest` (reads its indexes and stats its chunks).
pub fn restore_point_usage(repo: &Repository, manifest: &Manifest) -> Result<Usage> {
    let mut seen = HashSet::new();
    let (mut logical, mut data, mut stored) = (0u64, 0u64, 0u64);
    for disk in &manifest.disks {
        logical += disk.size;
        let index = repo.load_index(manifest, &disk.name)?;
        let cs = u64::from(index.chunk_size);
        for (n, digest) in index.digests.iter().enumerate() {
            let Some(d) = digest else { continue };
            let start = n as u64 * cs;
            data += cs.min(index.disk_size.saturating_sub(start));
            if seen.insert(*d) {
                stored += repo.chunk_stored_size(d)?;
            }
        }
    }
    Ok(Usage {
        logical_bytes: logical,
        data_bytes: data,
        unique_chunks: seen.len() as u64,
        stored_bytes: stored,
        reduction_ratio: if stored == 0 {
            0.0
        } else {
            data as f64 / stored as f64
        },
    })
}
