//! A restore point's manifest rebuilt from its indexes, for `repo repair`
//! when the manifest is damaged or lost but every index of the restore
//! point still reads (each index is authenticated on its own, bound to
//! `vm@id/disk`, so it proves which restore point and disk it belongs to).
//!
//! What the indexes hold comes back exactly: the disks, their sizes and
//! chunk sizes, every chunk. What only the manifest held is lost and said
//! so: the start time comes from the id (whole seconds), each disk's
//! source reads `rebuilt from its index by repo repair`, the statistics
//! count the index's data and zero chunks only, and a retention lock or a
//! scan record the manifest carried is gone (a rebuilt restore point is
//! unlocked and unscanned).

use crate::error::{Error, Result};
use crate::layout::{FORMAT_VERSION, INDEX_SUFFIX};
use crate::model::{is_valid_id, DiskEntry, DiskStats, Manifest};
use crate::repository::{dir_names, Repository};

/// The `source` of a disk whose manifest was rebuilt.
pub const REBUILT_SOURCE: &str = "rebuilt from its index by repo repair";

impl Repository {
    /// The manifest of `vm@id` as its index files describe it; fails,
    /// naming the file, when there is none or one does not read.
    pub fn manifest_from_indexes(&self, vm: &str, id: &str) -> Result<Manifest> {
        crate::model::check_name(vm)?;
        if !is_valid_id(id) {
            return Err(Error::invalid(
                format!("restore point id {id:?}"),
                "not an id",
            ));
        }
        let time = chrono::NaiveDateTime::parse_from_str(&id[..15], "%Y%m%d-%H%M%S")
            .map_err(|e| Error::invalid(format!("restore point id {id:?}"), e))?
            .and_utc();
        let mut names: Vec<String> = dir_names(&self.index_dir(vm, id))?
            .into_iter()
            .filter_map(|n| n.strip_suffix(INDEX_SUFFIX).map(str::to_string))
            .filter(|n| crate::model::check_name(n).is_ok())
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(Error::NotFound {
                what: format!("index files of restore point {vm}@{id}"),
            });
        }
        let mut disks = Vec::with_capacity(names.len());
        for name in names {
            let index = self.load_index_file(vm, id, &name)?;
            let data = index.digests.iter().flatten().count() as u64;
            disks.push(DiskEntry {
                size: index.disk_size,
                chunk_size: index.chunk_size,
                source: REBUILT_SOURCE.to_string(),
                stats: DiskStats {
                    bytes_read: index.disk_size,
                    data_chunks: data,
                    zero_chunks: index.digests.len() as u64 - data,
                    ..Default::default()
                },
                format: None,
                live: None,
                name,
            });
        }
        Ok(Manifest {
            format_version: FORMAT_VERSION,
            vm: vm.to_string(),
            id: id.to_string(),
            time,
            disks,
            locked_until: None,
            scan: None,
            salvage: None,
            consistency: None,
        })
    }

    /// Writes a manifest [`Repository::manifest_from_indexes`] made, in
    /// place of the damaged or lost one (which the caller has moved aside),
    /// under the repository lock of manifest changes.
    pub fn write_rebuilt_manifest(&self, m: &Manifest) -> Result<()> {
        let _guard = self.snapshots_lock("repair")?;
        let dir = self.snapshots_dir().join(&m.vm);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        self.write_manifest(m)?;
        self.mark_committed(&m.vm, &m.id)
    }
}
