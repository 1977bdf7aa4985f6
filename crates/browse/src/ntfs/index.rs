//! The walk of a directory's `$I30` index (its B-tree of file names):
//! every entry in order, or the entry of one name, with the bounds the
//! `ntfs` crate's own `NtfsIndexEntries` / `NtfsIndexFinder` lack.
//!
//! Those follow every subnode link they meet: an index record whose
//! entry points back to itself or to a record above it makes them descend
//! for ever (the iterator keeps one record per level, so its memory grows
//! until the process dies; the finder spins). This walk reads each index
//! record (VCN) at most once and goes at most [`MAX_DEPTH`] records deep;
//! a tree that breaks either bound is a corrupt-filesystem error naming
//! the directory. A sound B-tree keeps both: every record has one parent,
//! and all leaves are at one depth, so a tree of depth `d` holds at least
//! `2^(d-1)` records. It also refuses, before any record is read, an
//! index record size the crate would allocate unchecked (a u32 from the
//! volume).

use super::NtfsFs;
use crate::{Error, Result};
use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::{NtfsIndexAllocation, NtfsIndexRoot};
use ntfs::types::Vcn;
use ntfs::{
    NtfsAttributeItem, NtfsAttributeType, NtfsFile, NtfsIndexEntry, NtfsIndexEntryFlags,
    NtfsIndexNodeEntries, UpcaseOrd,
};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::io::{Read, Seek};

/// Largest index record size accepted (Windows and mkntfs use 4 KiB).
const MAX_INDEX_RECORD: u32 = 64 << 10;
/// Deepest index record below the root: 32 levels of a sound tree hold
/// at least 2^31 records (8 TiB of 4 KiB records).
pub(crate) const MAX_DEPTH: usize = 32;

/// One entry of a directory index.
pub(crate) type Entry<'s> = NtfsIndexEntry<'s, NtfsFileNameIndex>;
type Nodes<'s> = NtfsIndexNodeEntries<'s, NtfsFileNameIndex>;

/// The index of one directory, ready to walk.
struct Walk<'a, 'n, 'f, T> {
    fs: &'a NtfsFs,
    io: &'a mut T,
    path: &'a str,
    alloc: Option<NtfsIndexAllocation<'n, 'f>>,
    record_size: u32,
    /// VCNs of the index records read so far.
    seen: HashSet<i64>,
}

impl<T: Read + Seek> Walk<'_, '_, '_, T> {
    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            volume: self.fs.volume.clone(),
            path: self.path.to_string(),
            fs: "ntfs",
            detail,
        }
    }

    /// Reads the index record at `vcn`, `depth` levels below the root,
    /// and hands its entries to `f`.
    fn subnode<R>(
        &mut self,
        vcn: Vcn,
        depth: usize,
        f: impl FnOnce(&mut Self, Nodes<'_>) -> Result<R>,
    ) -> Result<R> {
        let err = self.fs.err(self.path);
        if depth > MAX_DEPTH {
            return Err(self.corrupt(format!(
                "its index is more than {MAX_DEPTH} records deep (a subnode link loops?)"
            )));
        }
        if !self.seen.insert(vcn.value()) {
            return Err(self.corrupt(format!(
                "its index reaches index record VCN {} twice (a subnode link loops)",
                vcn.value()
            )));
        }
        let Some(alloc) = &self.alloc else {
            return Err(self.corrupt(
                "an index entry points to a subnode but the index has no $INDEX_ALLOCATION"
                    .to_string(),
            ));
        };
        let record = alloc
            .record_from_vcn(self.io, self.record_size, vcn)
            .map_err(&err)?;
        let nodes = record.entries().map_err(&err)?;
        f(self, nodes)
    }

    /// In-order walk of the node `nodes`, `depth` levels below the root.
    fn each(
        &mut self,
        nodes: Nodes<'_>,
        depth: usize,
        f: &mut dyn FnMut(&Entry<'_>) -> Result<()>,
    ) -> Result<()> {
        let err = self.fs.err(self.path);
        for entry in nodes {
            let entry = entry.map_err(&err)?;
            if let Some(vcn) = entry.subnode_vcn() {
                let vcn = vcn.map_err(&err)?;
                self.subnode(vcn, depth + 1, |w, sub| w.each(sub, depth + 1, f))?;
            }
            if !entry.flags().contains(NtfsIndexEntryFlags::LAST_ENTRY) {
                f(&entry)?;
            }
        }
        Ok(())
    }

    /// B-tree search of `name` (case-insensitive through `$UpCase`) from
    /// the node `nodes`: its stored spelling and record.
    fn find(
        &mut self,
        nodes: Nodes<'_>,
        depth: usize,
        name: &str,
    ) -> Result<Option<(String, u64)>> {
        let err = self.fs.err(self.path);
        for entry in nodes {
            let entry = entry.map_err(&err)?;
            if let Some(key) = entry.key() {
                let key = key.map_err(&err)?;
                match name.upcase_cmp(&self.fs.ntfs, &key.name()) {
                    Ordering::Equal => {
                        let record = entry.file_reference().file_record_number();
                        return Ok(Some((key.name().to_string_lossy(), record)));
                    }
                    Ordering::Greater => continue,
                    Ordering::Less => {}
                }
            }
            // `name` sorts before this entry (or this is the last one): it
            // can only be in this entry's subnode.
            return match entry.subnode_vcn() {
                None => Ok(None),
                Some(vcn) => {
                    let vcn = vcn.map_err(&err)?;
                    self.subnode(vcn, depth + 1, |w, sub| w.find(sub, depth + 1, name))
                }
            };
        }
        Ok(None)
    }
}

impl NtfsFs {
    /// Runs `f` on the walk of directory `dir`'s index and the entries of
    /// its root node.
    fn with_index<T: Read + Seek, R>(
        &self,
        io: &mut T,
        dir: &NtfsFile<'_>,
        path: &str,
        f: impl FnOnce(&mut Walk<'_, '_, '_, T>, Nodes<'_>) -> Result<R>,
    ) -> Result<R> {
        let err = self.err(path);
        if !dir.is_directory() {
            return Err(Error::NotADirectory {
                volume: self.volume.clone(),
                path: path.to_string(),
            });
        }
        let corrupt = |detail: &str| Error::Corrupt {
            volume: self.volume.clone(),
            path: path.to_string(),
            fs: "ntfs",
            detail: detail.to_string(),
        };
        let root_item = find_i30(io, dir, NtfsAttributeType::IndexRoot)
            .map_err(&err)?
            .ok_or_else(|| corrupt("a directory without an $I30 $INDEX_ROOT"))?;
        let root_attr = root_item.to_attribute().map_err(&err)?;
        let root = root_attr
            .resident_structured_value::<NtfsIndexRoot>()
            .map_err(&err)?;
        let record_size = root.index_record_size();
        let alloc_item = if root.is_large_index() {
            if !(record_size.is_power_of_two() && record_size <= MAX_INDEX_RECORD) {
                return Err(corrupt(&format!(
                    "an index record size of {record_size} bytes"
                )));
            }
            let item = find_i30(io, dir, NtfsAttributeType::IndexAllocation).map_err(&err)?;
            Some(item.ok_or_else(|| corrupt("a large index without an $I30 $INDEX_ALLOCATION"))?)
        } else {
            None
        };
        let alloc_attr = match &alloc_item {
            Some(item) => Some(item.to_attribute().map_err(&err)?),
            None => None,
        };
        let alloc = match &alloc_attr {
            Some(a) => Some(
                a.structured_value::<_, NtfsIndexAllocation>(io)
                    .map_err(&err)?,
            ),
            None => None,
        };
        let nodes = root.entries().map_err(&err)?;
        let mut walk = Walk {
            fs: self,
            io,
            path,
            alloc,
            record_size,
            seen: HashSet::new(),
        };
        f(&mut walk, nodes)
    }

    /// Calls `f` on every entry of directory `dir`'s index, in index order.
    pub(super) fn each_index_entry(
        &self,
        io: &mut (impl Read + Seek),
        dir: &NtfsFile<'_>,
        path: &str,
        mut f: impl FnMut(&Entry<'_>) -> Result<()>,
    ) -> Result<()> {
        self.with_index(io, dir, path, |w, nodes| w.each(nodes, 0, &mut f))
    }

    /// The entry named `name` in directory `dir`'s index, compared
    /// case-insensitively: its stored spelling and record.
    pub(super) fn find_index_entry(
        &self,
        io: &mut (impl Read + Seek),
        dir: &NtfsFile<'_>,
        path: &str,
        name: &str,
    ) -> Result<Option<(String, u64)>> {
        self.with_index(io, dir, path, |w, nodes| w.find(nodes, 0, name))
    }
}

/// The first `$I30` attribute of type `ty` of `dir`, attribute lists
/// followed (as `NtfsFile::directory_index` finds it).
fn find_i30<'n, 'f, T: Read + Seek>(
    io: &mut T,
    dir: &'f NtfsFile<'n>,
    ty: NtfsAttributeType,
) -> ntfs::Result<Option<NtfsAttributeItem<'n, 'f>>> {
    let mut attrs = dir.attributes();
    while let Some(item) = attrs.next(io) {
        let item = item?;
        let attr = item.to_attribute()?;
        if attr.ty()? == ty && attr.name()? == "$I30" {
            return Ok(Some(item));
        }
    }
    Ok(None)
}
