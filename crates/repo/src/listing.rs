//! Listing and resolving restore points when some of them are damaged.
//!
//! A restore point is its manifest (`snapshots/<vm>/<id>.manifest`) plus one
//! index per disk (`indexes/<vm>/<id>/<disk>.idx`). Damage to those files
//! stays with their own restore point: [`Repository::list_all`] reports a
//! manifest that does not read as a [`FileDamage`] and keeps listing the
//! rest; [`Repository::list`] returns the intact ones only; `@latest`
//! resolves to the newest restore point whose manifest and indexes read,
//! naming the newer ones it skipped ([`Repository::resolve_noting`]). A
//! restore point named by its id is never skipped silently: a damaged one is
//! refused with the error that names its file.

use crate::damage::{DamageState, FileDamage, FileKind};
use crate::error::{Error, Result};
use crate::layout::{INDEXES_DIR, MANIFEST_SUFFIX};
use crate::model::{check_name, is_valid_id, Manifest};
use crate::repository::{dir_names, Repository};
use serde::{Deserialize, Serialize};

/// Every restore point of a listing: the ones that read, and the damaged
/// manifests (kind [`FileKind::Manifest`]) of the ones that do not.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Intact manifests, oldest first.
    pub points: Vec<Manifest>,
    /// Manifests that exist under a valid name but do not read, by name.
    pub damaged: Vec<FileDamage>,
}

/// One restore point as `lifeboat list --json` and the server's
/// `restore-points` route report it: a readable manifest with its scan
/// state and the damage of its indexes, or the damage of a manifest that
/// does not read. Both callers serialize this one type, so the CLI and the
/// API cannot drift apart (and a client reads it back with this type).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ListedPoint {
    /// The manifest reads; `damaged` lists its indexes that do not.
    Readable {
        #[serde(flatten)]
        manifest: Box<Manifest>,
        /// [`Manifest::scan_state`].
        scan_state: String,
        damaged: Vec<FileDamage>,
    },
    /// The manifest does not read (or is lost while its indexes remain).
    Unreadable {
        vm: String,
        id: String,
        damaged: Vec<FileDamage>,
    },
}

impl ListedPoint {
    /// The damage of this restore point's own files (empty when intact).
    pub fn damaged(&self) -> &[FileDamage] {
        match self {
            ListedPoint::Readable { damaged, .. } | ListedPoint::Unreadable { damaged, .. } => {
                damaged
            }
        }
    }
}

/// A resolved restore point and the newer ones `@latest` passed over.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub manifest: Manifest,
    /// Damage of the restore points newer than `manifest` that `@latest`
    /// skipped (empty for any other spec).
    pub skipped: Vec<FileDamage>,
}

/// `vm@id` of a damage entry of a manifest or index (its only restore point).
fn point_of(d: &FileDamage) -> &str {
    d.restore_points.first().map_or("", String::as_str)
}

impl Repository {
    /// The damage entry of a file that belongs to one restore point.
    pub(crate) fn point_damage(
        &self,
        kind: FileKind,
        path: std::path::PathBuf,
        point: String,
        err: &Error,
    ) -> FileDamage {
        let (state, detail) = match err {
            Error::CorruptFile { detail, .. } if detail.ends_with("is missing") => {
                (DamageState::Missing, detail.clone())
            }
            Error::CorruptFile { detail, .. } => (DamageState::Corrupt, detail.clone()),
            other => (DamageState::Corrupt, other.to_string()),
        };
        FileDamage {
            kind,
            path,
            state,
            detail,
            all_restore_points: false,
            restore_points: vec![point],
            used_by: Vec::new(),
        }
    }

    /// Restore points of `vm` (all VMs when `None`), intact and damaged.
    /// Only I/O errors on the directories themselves fail the listing.
    pub fn list_all(&self, vm: Option<&str>) -> Result<Listing> {
        let root = self.snapshots_dir();
        let vms: Vec<String> = match vm {
            Some(v) => {
                check_name(v)?;
                vec![v.to_string()]
            }
            None => dir_names(&root)?
                .into_iter()
                .filter(|n| check_name(n).is_ok())
                .collect(),
        };
        let mut out = Listing::default();
        for vm in vms {
            self.lost_manifests(&vm, &mut out.damaged)?;
            for name in dir_names(&root.join(&vm))? {
                let Some(id) = name.strip_suffix(MANIFEST_SUFFIX) else {
                    continue;
                };
                if !is_valid_id(id) {
                    continue; // .tmp-* and foreign files
                }
                match self.read_manifest(&vm, id) {
                    Ok(m) => out.points.push(m),
                    Err(Error::NotFound { .. }) => {} // forgotten meanwhile
                    Err(e) => {
                        let path = self.manifest_path(&vm, id);
                        tracing::warn!(path = %path.display(), error = %e, "damaged manifest");
                        out.damaged.push(self.point_damage(
                            FileKind::Manifest,
                            path,
                            format!("{vm}@{id}"),
                            &e,
                        ));
                    }
                }
            }
        }
        out.points
            .sort_by(|a, b| (a.time, &a.vm, &a.id).cmp(&(b.time, &b.vm, &b.id)));
        out.damaged.sort_by(|a, b| point_of(a).cmp(point_of(b)));
        Ok(out)
    }

    /// Every restore point of `vm` (all VMs when `None`) as `list` reports
    /// it: the readable ones oldest first, each with the damage of its
    /// indexes, then those whose manifest does not read.
    pub fn list_report(&self, vm: Option<&str>) -> Result<Vec<ListedPoint>> {
        let listing = self.list_all(vm)?;
        let mut out = Vec::with_capacity(listing.points.len() + listing.damaged.len());
        for manifest in listing.points {
            let damaged = self.index_damage(&manifest);
            out.push(ListedPoint::Readable {
                scan_state: manifest.scan_state().to_string(),
                manifest: Box::new(manifest),
                damaged,
            });
        }
        for d in listing.damaged {
            let (vm, id) = point_of(&d).split_once('@').unwrap_or_default();
            out.push(ListedPoint::Unreadable {
                vm: vm.to_string(),
                id: id.to_string(),
                damaged: vec![d],
            });
        }
        Ok(out)
    }

    /// Restore points of `vm` whose index dir says they were committed but
    /// whose manifest is gone (deleted, or lost with a directory).
    fn lost_manifests(&self, vm: &str, out: &mut Vec<FileDamage>) -> Result<()> {
        let dir = self.path().join(INDEXES_DIR).join(vm);
        for id in dir_names(&dir)? {
            if !is_valid_id(&id) {
                continue;
            }
            // Manifest first: forget removes the marker before the
            // manifest, so a manifest seen gone with the marker still
            // there was not being forgotten.
            let path = self.manifest_path(vm, &id);
            if path.exists() || !self.is_marked_committed(vm, &id) {
                continue;
            }
            out.push(FileDamage {
                kind: FileKind::Manifest,
                path,
                state: DamageState::Missing,
                detail: format!(
                    "manifest is missing, but the restore point was committed: its indexes remain in {}",
                    self.index_dir(vm, &id).display()
                ),
                all_restore_points: false,
                restore_points: vec![format!("{vm}@{id}")],
                used_by: Vec::new(),
            });
        }
        Ok(())
    }

    /// Intact restore points, oldest first; all VMs when `vm` is `None`.
    /// Damaged manifests are left out (see [`Repository::list_all`]).
    pub fn list(&self, vm: Option<&str>) -> Result<Vec<Manifest>> {
        Ok(self.list_all(vm)?.points)
    }

    /// The damage of `m`'s indexes: each one that is missing or does not
    /// read. Empty when the restore point's own files are intact.
    pub fn index_damage(&self, m: &Manifest) -> Vec<FileDamage> {
        m.disks
            .iter()
            .filter_map(|d| {
                let err = self.load_index(m, &d.name).err()?;
                Some(self.point_damage(
                    FileKind::Index,
                    self.index_path(&m.vm, &m.id, &d.name),
                    m.name(),
                    &err,
                ))
            })
            .collect()
    }

    /// Finds one restore point: `vm@latest`, `vm@<id or unique id prefix>`,
    /// or a unique id prefix across all VMs. `@latest` skips damaged
    /// restore points (see [`Repository::resolve_noting`]).
    pub fn resolve(&self, spec: &str) -> Result<Manifest> {
        let r = self.resolve_noting(spec)?;
        for d in &r.skipped {
            tracing::warn!(restore_point = point_of(d), damage = %d, "skipped a damaged restore point");
        }
        Ok(r.manifest)
    }

    /// [`Repository::resolve`], returning the damaged restore points that
    /// `@latest` skipped so a caller can say so. A spec that names a damaged
    /// restore point by its id (or id prefix) fails with the error of its
    /// manifest instead of matching another one.
    pub fn resolve_noting(&self, spec: &str) -> Result<Resolved> {
        let not_found = || Error::NotFound {
            what: format!("restore point {spec:?}"),
        };
        let (listing, vm, id_part) = match spec.split_once('@') {
            Some((vm, rest)) => (self.list_all(Some(vm))?, Some(vm), rest),
            None => (self.list_all(None)?, None, spec),
        };
        if id_part == "latest" && vm.is_some() {
            return self.latest_intact(listing).ok_or_else(not_found);
        }
        if id_part.is_empty() || id_part == "latest" {
            return Err(not_found());
        }
        let plain = |manifest| Resolved {
            manifest,
            skipped: Vec::new(),
        };
        let damaged_id = |d: &FileDamage| {
            point_of(d)
                .split_once('@')
                .map_or("", |(_, id)| id)
                .to_string()
        };
        if let Some(exact) = listing.points.iter().find(|m| m.id == id_part) {
            return Ok(plain(exact.clone()));
        }
        if let Some(d) = listing.damaged.iter().find(|d| damaged_id(d) == id_part) {
            return Err(Error::corrupt_file(&d.path, &d.detail));
        }
        let mut matches: Vec<String> = listing
            .points
            .iter()
            .filter(|m| m.id.starts_with(id_part))
            .map(Manifest::name)
            .collect();
        let damaged: Vec<&FileDamage> = listing
            .damaged
            .iter()
            .filter(|d| damaged_id(d).starts_with(id_part))
            .collect();
        matches.extend(damaged.iter().map(|d| point_of(d).to_string()));
        match matches.len() {
            0 => Err(not_found()),
            1 => match damaged.first() {
                Some(d) => Err(Error::corrupt_file(&d.path, &d.detail)),
                None => listing
                    .points
                    .into_iter()
                    .find(|m| m.id.starts_with(id_part))
                    .map(plain)
                    .ok_or_else(not_found),
            },
            n => Err(Error::invalid(
                format!("restore point {spec:?}"),
                format!(
                    "matches {n} restore points ({}); give more of the id",
                    matches.join(", ")
                ),
            )),
        }
    }

    /// The newest restore point of one VM's listing whose manifest and
    /// indexes read, with the damage of the newer ones.
    fn latest_intact(&self, listing: Listing) -> Option<Resolved> {
        let mut skipped: Vec<FileDamage> = Vec::new();
        let mut damaged = listing.damaged;
        for m in listing.points.into_iter().rev() {
            // Damaged manifests not older than this one. Their time is the
            // id's (whole seconds): one of the same second may be newer.
            let (newer, older): (Vec<_>, Vec<_>) = damaged
                .into_iter()
                .partition(|d| id_time(point_of(d)).is_none_or(|t| t >= m.time.timestamp()));
            skipped.extend(newer);
            damaged = older;
            let broken = self.index_damage(&m);
            if broken.is_empty() {
                return Some(Resolved {
                    manifest: m,
                    skipped,
                });
            }
            skipped.extend(broken);
        }
        None
    }
}

/// The start time (unix seconds) in a restore point id `vm@YYYYMMDD-HHMMSS-xxxx`.
fn id_time(point: &str) -> Option<i64> {
    let id = point.split_once('@')?.1;
    let t = chrono::NaiveDateTime::parse_from_str(id.get(..15)?, "%Y%m%d-%H%M%S").ok()?;
    Some(t.and_utc().timestamp())
}
