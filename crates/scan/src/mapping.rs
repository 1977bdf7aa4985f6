//! Mapping the files of a listed tree onto a restore-point disk, with a few
//! threads: each file is opened, its size and extents (FIEMAP) read, and
//! its extent key computed (see [`crate::extent_key`]).
//!
//! On a published restore point opening a file reads its inode, and every
//! inode-table block the kernel has not cached is a FUSE request: like the
//! walk (see [`crate::walk`]), mapping is bound by that latency, so
//! [`MAP_THREADS`] threads keep several requests in flight. The files are
//! closed again; the scan opens the few it reads a second time.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::cache::ContentKey;
use crate::extent_key::VolumeChunks;
use crate::fiemap::{file_extents, FileExtent};
use crate::parallel::run_in_order;

/// Files opened and mapped at once.
pub const MAP_THREADS: usize = 8;

/// A file with its extent map on a restore-point disk.
pub struct MappedFile {
    pub key: ContentKey,
    pub size: u64,
    pub extents: Vec<FileExtent>,
}

/// What mapping found for one file.
pub enum Mapping {
    /// The file did not open: the error.
    Unopenable(String),
    /// Opened, but without an extent key (its filesystem does not map it
    /// plainly, or an extent lies outside the volume): read it.
    Unmapped,
    Mapped(MappedFile),
}

/// The extent key, size and extents of an open file, when its filesystem
/// maps it plainly and every extent lies inside the volume.
pub fn mapped_file(chunks: &VolumeChunks<'_>, file: &File) -> Option<MappedFile> {
    let size = file.metadata().ok()?.len();
    let extents = file_extents(file)?;
    let key = chunks.key(size, &extents)?;
    Some(MappedFile { key, size, extents })
}

/// Maps `files` (in their order) with [`MAP_THREADS`] threads. Stops early
/// once `cancel` is set: the files not reached are then [`Mapping::Unmapped`]
/// (the caller checks the flag before using them).
pub fn map_files(
    files: &[PathBuf],
    chunks: &VolumeChunks<'_>,
    cancel: Option<&AtomicBool>,
) -> Vec<Mapping> {
    let mapped = run_in_order(
        files,
        MAP_THREADS,
        cancel,
        || (),
        |_, _, path| match File::open(path) {
            Ok(f) => mapped_file(chunks, &f).map_or(Mapping::Unmapped, Mapping::Mapped),
            Err(e) => Mapping::Unopenable(e.to_string()),
        },
    );
    mapped
        .into_iter()
        .map(|m| m.unwrap_or(Mapping::Unmapped))
        .collect()
}
