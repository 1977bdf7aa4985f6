//! `repo repair`: puts damage where it can do no harm, and (asked to)
//! saves what can still be read.
//!
//! It first repairs the config and key slots ([`Repository::repair_keys`]),
//! then runs a full verify (every manifest, index and chunk read), and:
//! 1. rebuilds in place, from its indexes (`rebuild.rs`), the manifest of
//!    a restore point whose manifest is damaged or lost while all its
//!    indexes read (the damaged manifest goes to quarantine);
//! 2. with `salvage`, for every other damaged restore point of which
//!    something reads, writes a NEW salvaged restore point (see
//!    `salvage.rs`): from its manifest and the indexes that read, or, when
//!    the manifest is damaged, from the index files that read (disk names
//!    and sizes from the indexes, the time from the id). A restore point
//!    that already has a salvaged copy is not salvaged again.
//! 3. quarantines every other restore point whose manifest or an index is
//!    damaged, whole (manifest and index directory), so it no longer
//!    lists, resolves or blocks gc;
//! 4. quarantines every damaged chunk and remembers every missing one
//!    (see `quarantine.rs`): the next backup of the same data heals them.
//!
//! Restore points whose own files are intact but that use a damaged chunk
//! stay as they are (never changed in place): they are whole again once a
//! backup stores the chunk again, and until then `verify` names them with
//! the chunk as quarantined. With `dry_run` it says what it would do and
//! changes nothing (verify still records when chunks were verified).
//! Everything runs under the snapshots lock, so no prune, forget or lock
//! change interleaves.

use crate::damage::{DamageState, FileDamage, FileKind};
use crate::digest::Digest;
use crate::error::Result;
use crate::layout::INDEX_SUFFIX;
use crate::model::Manifest;
use crate::repository::{dir_names, Repository};
use crate::salvage::{SalvageSource, SourceDisk};
use crate::verify::VerifyOptions;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What `repo repair` may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairOptions {
    /// Say what would be done, change nothing.
    pub dry_run: bool,
    /// Write salvaged restore points of damaged ones.
    pub salvage: bool,
}

/// The kinds of step `repo repair` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairStep {
    /// A restore point moved whole into `quarantine/points/`.
    QuarantinePoint,
    /// A damaged or lost manifest moved into `quarantine/points/` (when
    /// there was one) and rebuilt in place from the restore point's
    /// indexes, which all read (see `rebuild.rs`).
    RebuildManifest,
    /// A damaged chunk moved into `quarantine/chunks/`.
    QuarantineChunk,
    /// A missing chunk remembered by a note in `quarantine/chunks/`.
    RememberMissingChunk,
    /// A salvaged restore point written.
    Salvage,
    /// Nothing done to a damaged restore point, and why.
    Skip,
}

/// One step, done (or, with `dry_run`, planned).
#[derive(Debug, Clone, Serialize)]
pub struct RepairAction {
    pub step: RepairStep,
    /// The restore point (`vm@id`) or file (relative path) it is about.
    pub target: String,
    /// Why.
    pub detail: String,
    /// What it produced: the quarantine path, the salvaged restore point
    /// (`None` in a dry run).
    pub result: Option<String>,
}

/// What `repo repair` found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    pub dry_run: bool,
    /// What [`Repository::repair_keys`] did to the config and key slots
    /// (first, so the rest reads with them intact), one line each.
    pub keys: Vec<String>,
    /// The damage the verify at its start found.
    pub damage: Vec<FileDamage>,
    pub actions: Vec<RepairAction>,
    /// Restore points left in place that still use a quarantined or
    /// missing chunk: whole again once a backup stores it again.
    pub still_damaged: Vec<String>,
}

/// `vm@id` split.
fn split_point(point: &str) -> Option<(&str, &str)> {
    point.split_once('@')
}

/// The time of a restore point from its id `YYYYMMDD-HHMMSS-xxxx`.
fn time_of_id(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.get(..15)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d-%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

impl Repository {
    /// Runs `repo repair` (see the module doc).
    pub fn repair(&self, opts: &RepairOptions) -> Result<RepairReport> {
        // Takes the snapshots lock itself: before ours.
        let keys = self.repair_keys(opts.dry_run)?;
        let _lock = self.snapshots_lock("repair")?;
        let found = self.verify_with(&VerifyOptions::default())?;
        let mut report = RepairReport {
            dry_run: opts.dry_run,
            keys,
            damage: found.damage.clone(),
            ..Default::default()
        };
        // Restore points whose own files are damaged, and damaged chunks.
        let mut own: BTreeMap<String, Vec<&FileDamage>> = BTreeMap::new();
        let mut chunks: Vec<(Digest, &FileDamage)> = Vec::new();
        for d in &found.damage {
            match d.kind {
                FileKind::Manifest | FileKind::Index => {
                    if let Some(p) = d.restore_points.first() {
                        own.entry(p.clone()).or_default().push(d);
                    }
                }
                FileKind::Chunk => {
                    let name = d.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if let Ok(digest) = name.parse::<Digest>() {
                        chunks.push((digest, d));
                    }
                }
                // Config and key slots: repair_keys above.
                FileKind::Config | FileKind::KeySlot => {}
            }
        }
        let bad: HashSet<Digest> = chunks.iter().map(|(d, _)| *d).collect();
        let users: BTreeSet<String> = chunks
            .iter()
            .flat_map(|(_, d)| d.restore_points.iter().cloned())
            .filter(|p| !own.contains_key(p))
            .collect();

        // A damaged or lost manifest whose indexes all read is rebuilt
        // from them: the same restore point, nothing lost but what only
        // the manifest held (see rebuild.rs).
        let rebuilt: BTreeMap<String, Manifest> = own
            .iter()
            .filter(|(_, ds)| ds.iter().all(|d| d.kind == FileKind::Manifest))
            .filter_map(|(p, _)| {
                let (vm, id) = split_point(p)?;
                Some((p.clone(), self.manifest_from_indexes(vm, id).ok()?))
            })
            .collect();

        if opts.salvage {
            let salvaged: BTreeMap<String, String> = self
                .list(None)?
                .into_iter()
                .filter_map(|m| Some((m.salvage.as_ref()?.salvaged_from.clone(), m.name())))
                .collect();
            let mut todo: Vec<(String, String)> = own
                .iter()
                .filter(|(p, _)| !rebuilt.contains_key(*p))
                .map(|(p, ds)| {
                    let why: Vec<String> = ds.iter().map(|d| d.to_string()).collect();
                    (p.clone(), why.join("; "))
                })
                .collect();
            todo.extend(users.iter().map(|p| {
                let n = chunks
                    .iter()
                    .filter(|(_, d)| d.restore_points.contains(p))
                    .count();
                let what = if n == 1 { "chunk" } else { "chunks" };
                (p.clone(), format!("uses {n} damaged or missing {what}"))
            }));
            for (point, reason) in todo {
                report.actions.push(self.salvage_one(
                    &point,
                    reason,
                    &bad,
                    &salvaged,
                    opts.dry_run,
                )?);
            }
        }

        for (point, ds) in &own {
            let Some((vm, id)) = split_point(point) else {
                continue;
            };
            let first = ds[0];
            let detail: Vec<String> = ds.iter().map(|d| d.to_string()).collect();
            let detail = detail.join("; ");
            let (step, whole) = match rebuilt.get(point) {
                Some(_) => (RepairStep::RebuildManifest, false),
                None => (RepairStep::QuarantinePoint, true),
            };
            let result = if opts.dry_run {
                None
            } else {
                let dir = self.quarantine_point(vm, id, whole, first, &detail, "repo repair")?;
                if let Some(m) = rebuilt.get(point) {
                    // Under our snapshots lock (write_rebuilt_manifest
                    // would take it again).
                    self.write_manifest(m)?;
                    self.mark_committed(vm, id)?;
                }
                Some(self.relative(&dir))
            };
            report.actions.push(RepairAction {
                step,
                target: point.clone(),
                detail,
                result,
            });
        }

        for (digest, d) in &chunks {
            let step = match d.state {
                DamageState::Corrupt => RepairStep::QuarantineChunk,
                DamageState::Missing => RepairStep::RememberMissingChunk,
                DamageState::Quarantined => continue,
            };
            let result = if opts.dry_run {
                None
            } else {
                use crate::quarantine::ChunkQuarantine;
                match self.quarantine_chunk(digest, &d.detail, &d.restore_points, "repo repair") {
                    Ok(ChunkQuarantine::Done(p)) => Some(self.relative(&p)),
                    Ok(ChunkQuarantine::Intact) => Some("reads intact now: left in place".into()),
                    Ok(ChunkQuarantine::AlreadyNoted) => Some("already remembered".into()),
                    Err(e) => Some(format!("left in place: {e}")),
                }
            };
            report.actions.push(RepairAction {
                step,
                target: self.relative(&d.path),
                detail: d.detail.clone(),
                result,
            });
        }
        report.still_damaged = users.into_iter().collect();
        Ok(report)
    }

    /// Salvages restore point `point` (or says why not).
    fn salvage_one(
        &self,
        point: &str,
        reason: String,
        bad: &HashSet<Digest>,
        salvaged: &BTreeMap<String, String>,
        dry_run: bool,
    ) -> Result<RepairAction> {
        let skip = |detail: String| RepairAction {
            step: RepairStep::Skip,
            target: point.to_string(),
            detail,
            result: None,
        };
        if let Some(copy) = salvaged.get(point) {
            return Ok(skip(format!("already salvaged as {copy}")));
        }
        let Some(src) = self.salvage_source(point, reason.clone())? else {
            return Ok(skip(format!(
                "no index of it reads: nothing to salvage; {reason}"
            )));
        };
        let result = if dry_run {
            None
        } else {
            Some(self.write_salvaged(&src, bad)?.name())
        };
        Ok(RepairAction {
            step: RepairStep::Salvage,
            target: point.to_string(),
            detail: reason,
            result,
        })
    }

    /// What of restore point `point` can be read: its manifest's disks
    /// with the indexes that read, or (manifest damaged) the index files
    /// that read. `None` when nothing does.
    fn salvage_source(&self, point: &str, reason: String) -> Result<Option<SalvageSource>> {
        let Some((vm, id)) = split_point(point) else {
            return Ok(None);
        };
        let mut lost = Vec::new();
        let (time, disks) = match self.read_manifest(vm, id) {
            Ok(m) => {
                let disks = m
                    .disks
                    .iter()
                    .map(|d| SourceDisk {
                        name: d.name.clone(),
                        size: d.size,
                        chunk_size: d.chunk_size,
                        index: self.load_index(&m, &d.name).ok(),
                    })
                    .collect();
                (m.time, disks)
            }
            Err(_) => {
                let mut disks = Vec::new();
                for name in dir_names(&self.index_dir(vm, id))? {
                    let Some(disk) = name.strip_suffix(INDEX_SUFFIX) else {
                        continue;
                    };
                    if crate::model::check_name(disk).is_err() {
                        continue;
                    }
                    match self.load_index_file(vm, id, disk) {
                        Ok(index) => disks.push(SourceDisk {
                            name: disk.to_string(),
                            size: index.disk_size,
                            chunk_size: index.chunk_size,
                            index: Some(index),
                        }),
                        Err(_) => lost.push(disk.to_string()),
                    }
                }
                disks.sort_by(|a, b| a.name.cmp(&b.name));
                lost.sort();
                (time_of_id(id).unwrap_or_else(Utc::now), disks)
            }
        };
        if disks.iter().all(|d| d.index.is_none()) {
            return Ok(None);
        }
        Ok(Some(SalvageSource {
            vm: vm.to_string(),
            id: id.to_string(),
            time,
            reason,
            disks,
            lost,
        }))
    }
}
