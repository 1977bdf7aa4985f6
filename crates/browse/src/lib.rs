//! File-level browse and restore of restore points without root and
//! without mounts: partitions and LVM volumes come from
//! `lifeboat_formats::volumes`, filesystems are read in userspace.
//!
//! ```text
//! Repository + Manifest ── open_restore_point ──> RestorePointVolumes
//!     (each disk wrapped in a CachedDisk, block = chunk size)
//!         └─ select(disk, volume) ──> Volume ── probe ──> Box<dyn Filesystem>
//!                                                       list / stat / read_file
//! ```
//!
//! Filesystems: ext2/3/4 through the `ext4-view` crate (read-only; a
//! journal that needs replay is replayed in memory by
//! `lifeboat_formats::ext4_journal`, as publish and the scan replay it);
//! XFS v5 by an in-house reader (`xfs`, no well-kept crate exists); vfat (FAT12/16/32) through the
//! `fatfs` crate, read-only; NTFS through the `ntfs` crate, read-only
//! (compressed and encrypted files refused). btrfs is recognised by its
//! superblock magic and refused with a clear "not built yet" error.
//!
//! Modules: `error`, `probe` (magic detection), `ext4`, `xfs`, `fat`,
//! `ntfs` (readers), `select` (restore point -> disk -> volume choice).

mod error;
mod ext4;
mod fat;
/// Fuzz target bodies (`fuzz/`), replayed by `tests/fuzz_corpus.rs`; not an API.
#[doc(hidden)]
pub mod fuzzing;
mod ntfs;
mod probe;
mod select;
mod xfs;

pub use error::{Error, Result};
pub use ext4::Ext4Fs;
pub use fat::{DiskIo, FatFs};
/// Problems of volume discovery, as [`RestorePointVolumes::problems`] lists them.
pub use lifeboat_formats::{ProblemKind, VolumeProblem};
pub use ntfs::NtfsFs;
pub use probe::{detect, probe, FsType};
pub use select::{open_restore_point, RestorePointVolumes, SelectedVolume, VolumeInfo};
pub use xfs::{XfsFs, XfsInodeInfo};

use serde::Serialize;
use std::io::Read;

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Device nodes, fifos, sockets.
    Other,
}

/// One file or directory as a filesystem records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The last component of the path (`/` for the root).
    pub name: String,
    /// The absolute path inside the filesystem.
    pub path: String,
    pub kind: EntryKind,
    /// Size in bytes (for a symlink, the length of its target).
    pub size: u64,
    /// Permission bits (`0o7777` mask, no file type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Access time, seconds since the epoch.
    pub atime: i64,
    /// The target of a symlink.
    pub symlink_target: Option<String>,
}

/// A read-only filesystem on one volume. Paths are absolute (`/etc/hosts`);
/// every error names the volume and the path.
pub trait Filesystem {
    /// `ext4`, `vfat`...
    fn fs_type(&self) -> FsType;
    /// The volume name used in errors.
    fn volume(&self) -> &str;
    /// The entries of directory `path`, sorted by name, without `.`/`..`.
    fn list(&self, path: &str) -> Result<Vec<Entry>>;
    /// The entry at `path` (symlinks are not followed).
    fn stat(&self, path: &str) -> Result<Entry>;
    /// A streaming reader of the regular file at `path` (a symlink to a
    /// regular file is followed). Read errors name the path.
    fn read_file<'a>(&'a self, path: &str) -> Result<Box<dyn Read + 'a>>;
}

/// Splits `path` into its parent and last component names (`/` is its
/// own name).
pub(crate) fn base_name(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("/")
        .to_string()
}

/// Normalises a user path: must be absolute, no `..` games beyond the root
/// are needed since the reader resolves them itself; trailing `/` removed.
pub(crate) fn normalize(volume: &str, path: &str) -> Result<String> {
    if !path.starts_with('/') {
        return Err(Error::BadPath {
            volume: volume.to_string(),
            path: path.to_string(),
            detail: "paths must be absolute (start with /)".to_string(),
        });
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(base_name("/etc/hosts"), "hosts");
        assert_eq!(base_name("/"), "/");
        assert_eq!(base_name("/etc/"), "etc");
        assert_eq!(normalize("v", "/etc/").unwrap(), "/etc");
        assert_eq!(normalize("v", "/").unwrap(), "/");
        let e = normalize("v", "etc").unwrap_err().to_string();
        assert!(e.contains("absolute") && e.contains("etc"), "{e}");
    }
}
