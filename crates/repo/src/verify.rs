//! Verify: prove that every file a restore point depends on reads back.
//!
//! It checks the config and every key slot (`keys.rs`), then for the
//! selected restore points (all, or one) reads and authenticates every
//! manifest and every index, then every unique chunk
//! they reference once: authenticated, decompressed and checked against its
//! digest, by [`verify_threads`] threads pulling from a shared counter in
//! digest order (directory order: friendlier to the disk), the kernel
//! reading [`READ_AHEAD`] chunk files ahead of them (`posix_fadvise`), so
//! the disk works while the CPUs decode. Every damaged or
//! missing file is reported as a [`FileDamage`] naming the restore points
//! that depend on it; a damaged manifest or index stays with its own
//! restore point and the others are still checked.
//!
//! Sampling ([`Subset`], restic's `--read-data-subset`): chunks outside the
//! subset are not read, only checked to exist. `K/N` takes a fixed slice of
//! the digest space (N runs with K = 1..N read everything once); `P%`
//! exactly that share (rounded, at least one chunk), a fresh random sample
//! each run, as restic picks packs. Chunks verified intact within
//! [`VerifyOptions::reverify_after`] are not read again either (see
//! `verified.rs`, which remembers when each chunk was last verified).

use crate::damage::{DamageState, FileDamage, FileKind};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::model::Manifest;
use crate::quarantine::ChunkQuarantine;
use crate::repository::{dir_names, prefix_dir, Repository};
use crate::verified::VerifiedUpdate;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Which chunks a verify reads (the others are only checked to exist).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// `K/N`: the chunks whose digest falls in slice K (1-based) of N.
    Slice { k: u64, n: u64 },
    /// `P%`: P percent of the chunks (rounded, at least one), chosen at
    /// random each run, as restic chooses packs.
    Percent(f64),
}

impl std::str::FromStr for Subset {
    type Err = String;

    /// `10%`, `2.5%` or `1/5`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?}: expected a percentage (10%) or a slice K/N (1/5)");
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "{s:?}: the percentage must be above 0 and at most 100"
                ));
            }
            return Ok(Subset::Percent(p));
        }
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u64, u64) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || k == 0 || k > n {
            return Err(format!("{s:?}: K/N needs 1 <= K <= N"));
        }
        Ok(Subset::Slice { k, n })
    }
}

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// One restore point's files only (all restore points when `None`).
    pub only: Option<Manifest>,
    /// Read only a subset of the chunks.
    pub subset: Option<Subset>,
    /// Do not read again chunks verified intact less than this long ago.
    pub reverify_after: Option<chrono::Duration>,
    /// Move damaged chunks into `quarantine/` (and remember missing ones)
    /// so the next backup of the same data stores them again.
    pub heal: bool,
}

/// What verify found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Restore points whose files were checked (intact manifests).
    pub restore_points_checked: usize,
    /// `vm@id` of every restore point that depends on a damaged file.
    pub restore_points_damaged: Vec<String>,
    pub indexes_checked: u64,
    /// Unique chunks the checked indexes reference.
    pub chunks_referenced: u64,
    /// Chunks read and checked.
    pub chunks_checked: u64,
    /// Plaintext bytes of the chunks read that verified.
    pub bytes_checked: u64,
    /// Chunks outside the subset: checked to exist, not read.
    pub chunks_not_read: u64,
    /// Chunks verified within `reverify_after`: not read again.
    pub chunks_recently_verified: u64,
    /// Every damaged or missing file, with the restore points it affects.
    /// A chunk in quarantine that a restore point still uses is here with
    /// state `quarantined`.
    pub damage: Vec<FileDamage>,
    /// Everything in `quarantine/` (a full verify only): explained damage
    /// that no longer counts unless a restore point above still uses it.
    pub quarantined: Vec<crate::QuarantineNote>,
}

impl VerifyReport {
    /// True when nothing damaged was found.
    pub fn is_ok(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Threads that read chunks: twice the cores (reads of one overlap the
/// decoding of another), at least 2, at most 8.
pub fn verify_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 8)
}

/// Chunk files the kernel is asked to read ahead of the threads that
/// decode: about 32 MiB of 4 MiB chunks in the page cache. Cold, on the
/// 2-core bench machine, four threads decoding took 3.61 s without it
/// and 2.98 s with it, against a floor of 2.84 s (docs/performance.md).
pub const READ_AHEAD: usize = 8;

/// How a chunk is treated by one run.
enum Plan {
    Read,
    Exists,
    Recent,
}

/// Chooses chunks for a [`Subset`].
struct Selector {
    subset: Option<Subset>,
    /// Key of the random sample of a `P%` subset (fresh each run).
    sample_key: [u8; 32],
}

impl Selector {
    fn new(subset: Option<Subset>) -> Result<Selector> {
        let mut sample_key = [0u8; 32];
        if matches!(subset, Some(Subset::Percent(_))) {
            crate::crypto::random_bytes(&mut sample_key)
                .map_err(|e| Error::invalid("random", e))?;
        }
        Ok(Selector { subset, sample_key })
    }

    /// The plan of each of `digests`: the `recent` ones are not read;
    /// of the others, the subset's are read and the rest checked to exist.
    fn plans(&self, digests: &[Digest], recent: impl Fn(&Digest) -> bool) -> Vec<Plan> {
        let word = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
        let mut plans: Vec<Plan> = digests
            .iter()
            .map(|d| {
                if recent(d) {
                    Plan::Recent
                } else {
                    Plan::Exists
                }
            })
            .collect();
        let candidates = (0..digests.len()).filter(|&i| !matches!(plans[i], Plan::Recent));
        let chosen: Vec<usize> = match self.subset {
            None => candidates.collect(),
            Some(Subset::Slice { k, n }) => candidates
                .filter(|&i| word(&digests[i].0) % n == k - 1)
                .collect(),
            Some(Subset::Percent(p)) => {
                // The smallest keyed hashes under a fresh key: a uniform
                // sample of exactly the share asked for.
                let mut ranked: Vec<(u64, usize)> = candidates
                    .map(|i| {
                        let h = blake3::keyed_hash(&self.sample_key, &digests[i].0);
                        (word(h.as_bytes()), i)
                    })
                    .collect();
                let want = ((ranked.len() as f64 * p / 100.0).round() as usize)
                    .max(1)
                    .min(ranked.len());
                ranked.sort_unstable();
                ranked.truncate(want);
                ranked.into_iter().map(|(_, i)| i).collect()
            }
        };
        for i in chosen {
            plans[i] = Plan::Read;
        }
        plans
    }
}

impl Repository {
    /// Verifies the restore points `opts` selects; see the module doc.
    /// Fails only when verify cannot run (the repository's directories
    /// cannot be listed); damage is in the report.
    pub fn verify_with(&self, opts: &VerifyOptions) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        // The config and key slots: every restore point depends on them.
        report.damage.extend(self.verify_keys()?);
        let manifests = match &opts.only {
            Some(m) => match self.read_manifest(&m.vm, &m.id) {
                Ok(m) => vec![m],
                Err(e) => {
                    let path = self.manifest_path(&m.vm, &m.id);
                    report
                        .damage
                        .push(self.point_damage(FileKind::Manifest, path, m.name(), &e));
                    Vec::new()
                }
            },
            None => {
                let listing = self.list_all(None)?;
                report.damage.extend(listing.damaged);
                listing.points
            }
        };
        report.restore_points_checked = manifests.len();

        // users[k] = (restore point, disk); refs[digest] = indexes into users.
        let mut users: Vec<(String, String)> = Vec::new();
        let mut refs: HashMap<Digest, Vec<u32>> = HashMap::new();
        for m in &manifests {
            for d in &m.disks {
                report.indexes_checked += 1;
                let index = match self.load_index(m, &d.name) {
                    Ok(i) => i,
                    Err(e) => {
                        let path = self.index_path(&m.vm, &m.id, &d.name);
                        report
                            .damage
                            .push(self.point_damage(FileKind::Index, path, m.name(), &e));
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
        report.chunks_referenced = refs.len() as u64;

        let now = chrono::Utc::now();
        let verified = match opts.reverify_after {
            Some(_) => self.load_verified(),
            None => Default::default(),
        };
        let recent_since = opts.reverify_after.map(|age| (now - age).timestamp());
        let selector = Selector::new(opts.subset)?;
        let mut digests: Vec<Digest> = refs.keys().copied().collect();
        digests.sort();
        let plans = selector.plans(
            &digests,
            |d| matches!((recent_since, verified.get(d)), (Some(since), Some(&t)) if t >= since),
        );

        let outcome = self.check_chunks(&digests, &plans);
        report.chunks_checked = outcome.read;
        report.bytes_checked = outcome.bytes;
        report.chunks_not_read = outcome.exists_only;
        report.chunks_recently_verified = outcome.recent;
        let bad: Vec<Digest> = outcome.bad.iter().map(|(d, _)| *d).collect();
        let noted = self.quarantined_chunks().unwrap_or_default();
        for (digest, err) in outcome.bad {
            let used_by: Vec<(String, String)> = refs
                .get(&digest)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|&u| users.get(u as usize).cloned())
                .collect();
            let points: Vec<String> = used_by
                .iter()
                .map(|(p, _)| p.clone())
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect();
            let (state, detail) =
                self.chunk_damage_state(&digest, &err, &points, opts.heal, &noted);
            report.damage.push(FileDamage {
                kind: FileKind::Chunk,
                path: self.chunk_path(&digest),
                state,
                detail,
                all_restore_points: false,
                restore_points: points,
                used_by,
            });
        }
        if opts.only.is_none() {
            report.quarantined = self.quarantine().unwrap_or_default();
        }
        let full = opts.only.is_none() && opts.subset.is_none() && opts.reverify_after.is_none();
        let referenced: HashSet<Digest> = if full {
            digests.iter().copied().collect()
        } else {
            HashSet::new()
        };
        if let Err(e) = self.update_verified(VerifiedUpdate {
            ok: &outcome.ok,
            bad: &bad,
            referenced: full.then_some(&referenced),
            now: now.timestamp(),
        }) {
            // Verification times are a convenience: a read-only repository
            // still verifies.
            tracing::warn!(error = %e, "could not record verification times");
        }

        let damaged: BTreeSet<String> = report
            .damage
            .iter()
            .flat_map(|d| d.restore_points.iter().cloned())
            .collect();
        report.restore_points_damaged = damaged.into_iter().collect();
        Ok(report)
    }

    /// Verifies `only` one restore point, or all of them, reading every chunk.
    pub fn verify(&self, only: Option<&Manifest>) -> Result<VerifyReport> {
        self.verify_with(&VerifyOptions {
            only: only.cloned(),
            ..Default::default()
        })
    }

    /// Reads the chunks planned [`Plan::Read`] on [`verify_threads`]
    /// threads while one more thread checks that the [`Plan::Exists`] ones
    /// exist (see [`Repository::check_exist`]).
    fn check_chunks(&self, digests: &[Digest], plans: &[Plan]) -> ChunkOutcome {
        let next = AtomicUsize::new(0);
        let total: Mutex<ChunkOutcome> = Mutex::new(ChunkOutcome::default());
        // The chunks read, in order: the one READ_AHEAD places after a
        // chunk is asked for when that chunk's turn comes (the first
        // READ_AHEAD now), so each is asked for once.
        let reads: Vec<usize> = (0..plans.len())
            .filter(|&i| matches!(plans[i], Plan::Read))
            .collect();
        let exists: Vec<Digest> = (0..plans.len())
            .filter(|&i| matches!(plans[i], Plan::Exists))
            .map(|i| digests[i])
            .collect();
        for &i in reads.iter().take(READ_AHEAD) {
            self.prefetch_chunk(&digests[i]);
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                let found = self.check_exist(&exists);
                total.lock().unwrap_or_else(|e| e.into_inner()).merge(found);
            });
            for _ in 0..verify_threads() {
                s.spawn(|| {
                    let mut mine = ChunkOutcome::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let (Some(d), Some(plan)) = (digests.get(i), plans.get(i)) else {
                            break;
                        };
                        match plan {
                            Plan::Recent => mine.recent += 1,
                            Plan::Exists => {}
                            Plan::Read => {
                                mine.read += 1;
                                let later = reads
                                    .binary_search(&i)
                                    .ok()
                                    .and_then(|rank| reads.get(rank + READ_AHEAD));
                                if let Some(&j) = later {
                                    self.prefetch_chunk(&digests[j]);
                                }
                                match self.read_chunk_only(d) {
                                    Ok(plain) => {
                                        mine.bytes += plain.len() as u64;
                                        mine.ok.push(*d);
                                    }
                                    Err(e) => mine.bad.push((*d, e)),
                                }
                            }
                        }
                    }
                    total.lock().unwrap_or_else(|e| e.into_inner()).merge(mine);
                });
            }
        });
        let mut out = total.into_inner().unwrap_or_else(|e| e.into_inner());
        out.bad.sort_by_key(|(d, _)| *d);
        out
    }

    /// Checks that the chunks `sorted` (in digest order) exist, without
    /// reading them. A prefix directory holding at least as many of them
    /// as it has blocks is listed once (names only: no inode is read, as
    /// restic lists its packs); the chunks of the others are looked up one
    /// by one, which is cheaper there (a few chunks of a large repository).
    fn check_exist(&self, sorted: &[Digest]) -> ChunkOutcome {
        let mut out = ChunkOutcome::default();
        for group in sorted.chunk_by(|a, b| a.prefix() == b.prefix()) {
            out.exists_only += group.len() as u64;
            let dir = prefix_dir(self.path(), group[0].prefix());
            let blocks = std::fs::metadata(&dir).map_or(0, |m| m.len().div_ceil(4096));
            if (group.len() as u64) < blocks {
                for d in group {
                    if let Err(e) = self.chunk_stored_size(d) {
                        out.bad.push((*d, e));
                    }
                }
                continue;
            }
            match dir_names(&dir) {
                Ok(names) => {
                    let names: HashSet<String> = names.into_iter().collect();
                    for d in group.iter().filter(|d| !names.contains(&d.to_hex())) {
                        out.bad.push((*d, Error::MissingChunk { digest: *d }));
                    }
                }
                Err(e) => {
                    let detail = e.to_string();
                    for d in group {
                        out.bad.push((*d, Error::invalid(dir.display(), &detail)));
                    }
                }
            }
        }
        out
    }
}

impl Repository {
    /// The state and detail of a damaged chunk: quarantined now (`heal`),
    /// or earlier (a note remembers it), else missing or corrupt.
    fn chunk_damage_state(
        &self,
        digest: &Digest,
        err: &Error,
        points: &[String],
        heal: bool,
        noted: &HashMap<Digest, crate::QuarantineNote>,
    ) -> (DamageState, String) {
        let found = match err {
            Error::MissingChunk { .. } => DamageState::Missing,
            _ => DamageState::Corrupt,
        };
        let known = found == DamageState::Missing && noted.contains_key(digest);
        let healable = matches!(err, Error::CorruptChunk { .. } | Error::MissingChunk { .. });
        if heal && healable && !known {
            match self.quarantine_chunk(digest, &err.to_string(), points, "verify") {
                Ok(ChunkQuarantine::Done(to)) => {
                    return (
                        DamageState::Quarantined,
                        format!("{err}; quarantined as {}", self.relative(&to)),
                    )
                }
                Ok(ChunkQuarantine::Intact) => {
                    return (found, format!("{err} (reads intact now: left in place)"))
                }
                Ok(ChunkQuarantine::AlreadyNoted) => {}
                Err(e) => {
                    tracing::warn!(chunk = %digest, error = %e, "could not quarantine");
                    return (found, format!("{err} (could not quarantine: {e})"));
                }
            }
        }
        match noted.get(digest) {
            Some(n) if found == DamageState::Missing => (
                DamageState::Quarantined,
                format!(
                    "quarantined by {} at {}: {}",
                    n.by,
                    n.time.format("%Y-%m-%d %H:%M:%S UTC"),
                    n.reason
                ),
            ),
            _ => (found, err.to_string()),
        }
    }
}

/// What the chunk threads found.
#[derive(Default)]
struct ChunkOutcome {
    read: u64,
    bytes: u64,
    exists_only: u64,
    recent: u64,
    ok: Vec<Digest>,
    bad: Vec<(Digest, Error)>,
}

impl ChunkOutcome {
    fn merge(&mut self, other: ChunkOutcome) {
        self.read += other.read;
        self.bytes += other.bytes;
        self.exists_only += other.exists_only;
        self.recent += other.recent;
        self.ok.extend(other.ok);
        self.bad.extend(other.bad);
    }
}
