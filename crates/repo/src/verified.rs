//! When each chunk was last verified intact: `state/verified`, so a
//! scheduled verify can re-read only what was not verified within N days
//! (`verify --reverify-after`, PBS's "re-verify after").
//!
//! ```text
//! "LBVT" | version u32 = 1 | count u64 | count × (digest 32 B, unix seconds i64) | MAC 32 B
//! ```
//!
//! Records are sorted by digest. The MAC is keyed BLAKE3 with the
//! repository's [`crate::LocalKey`] of purpose `"lifeboat verify state v1"`
//! (plain BLAKE3 for an unencrypted repository), so whoever cannot read the
//! repository cannot mark a damaged chunk as recently verified. A file that
//! does not authenticate is ignored (every chunk counts as never verified)
//! and replaced at the next update. Updates re-read the file under
//! `locks/verify.lock`, merge and write atomically, so two verifies at once
//! both keep their results.

use crate::digest::Digest;
use crate::error::Result;
use crate::fsutil;
use crate::layout::{STATE_DIR, VERIFIED_FILE, VERIFY_LOCK};
use crate::lock::RepoLock;
use crate::repository::Repository;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

const MAGIC: &[u8; 4] = b"LBVT";
const VERSION: u32 = 1;
const RECORD: usize = 40;
const HEADER: usize = 16;
const MAC_LEN: usize = 32;
const MAC_PURPOSE: &str = "lifeboat verify state v1";
/// How long an update waits for another verify's update.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Unix seconds of the last successful verification, per chunk.
pub(crate) type VerifiedTimes = HashMap<Digest, i64>;

/// What a verify run learned, to merge into `state/verified`.
pub(crate) struct VerifiedUpdate<'a> {
    /// Chunks that read back intact now.
    pub ok: &'a [Digest],
    /// Chunks found damaged or missing now (their record is dropped).
    pub bad: &'a [Digest],
    /// When set (a full verify of every restore point), records of chunks
    /// outside this set (no longer referenced) are dropped.
    pub referenced: Option<&'a HashSet<Digest>>,
    pub now: i64,
}

impl Repository {
    fn verified_path(&self) -> PathBuf {
        self.path().join(STATE_DIR).join(VERIFIED_FILE)
    }

    fn verified_mac(&self, body: &[u8]) -> [u8; 32] {
        match self.local_key(MAC_PURPOSE) {
            Some(k) => k.mac(body),
            None => *blake3::hash(body).as_bytes(),
        }
    }

    /// The recorded verification times; empty when there is no record or
    /// it does not authenticate.
    pub(crate) fn load_verified(&self) -> VerifiedTimes {
        let path = self.verified_path();
        let bytes = match fsutil::read_optional(&path) {
            Ok(Some(b)) => b,
            Ok(None) => return VerifiedTimes::new(),
            Err(e) => {
                tracing::warn!(error = %e, "verification times unreadable: treating every chunk as never verified");
                return VerifiedTimes::new();
            }
        };
        match self.decode_verified(&bytes) {
            Some(t) => t,
            None => {
                tracing::warn!(path = %path.display(), "verification times damaged or forged: treating every chunk as never verified");
                VerifiedTimes::new()
            }
        }
    }

    fn decode_verified(&self, bytes: &[u8]) -> Option<VerifiedTimes> {
        let body_len = bytes.len().checked_sub(MAC_LEN)?;
        let (body, mac) = bytes.split_at(body_len);
        if !constant_time_eq::constant_time_eq(&self.verified_mac(body), mac) {
            return None;
        }
        if body.len() < HEADER || &body[..4] != MAGIC {
            return None;
        }
        if u32::from_le_bytes(body[4..8].try_into().ok()?) != VERSION {
            return None;
        }
        let count = usize::try_from(u64::from_le_bytes(body[8..16].try_into().ok()?)).ok()?;
        let records = &body[HEADER..];
        if records.len() != count.checked_mul(RECORD)? {
            return None;
        }
        let mut out = VerifiedTimes::with_capacity(count);
        for r in records.chunks_exact(RECORD) {
            let digest = Digest(r[..32].try_into().ok()?);
            out.insert(digest, i64::from_le_bytes(r[32..].try_into().ok()?));
        }
        Some(out)
    }

    fn encode_verified(&self, times: &VerifiedTimes) -> Vec<u8> {
        let mut sorted: Vec<(&Digest, &i64)> = times.iter().collect();
        sorted.sort();
        let mut out = Vec::with_capacity(HEADER + sorted.len() * RECORD + MAC_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
        for (d, t) in sorted {
            out.extend_from_slice(&d.0);
            out.extend_from_slice(&t.to_le_bytes());
        }
        let mac = self.verified_mac(&out);
        out.extend_from_slice(&mac);
        out
    }

    /// Merges a verify run's results into `state/verified`.
    pub(crate) fn update_verified(&self, update: VerifiedUpdate<'_>) -> Result<()> {
        let _lock = RepoLock::acquire(self.path(), VERIFY_LOCK, "verify", LOCK_WAIT)?;
        let mut times = self.load_verified();
        for d in update.bad {
            times.remove(d);
        }
        for d in update.ok {
            times.insert(*d, update.now);
        }
        if let Some(referenced) = update.referenced {
            times.retain(|d, _| referenced.contains(d));
        }
        let path = self.verified_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        }
        fsutil::atomic_write(&path, &self.encode_verified(&times))
    }
}
