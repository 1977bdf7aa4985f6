//! The files a mapped tree scan visits and their mappings onto the
//! restore-point disk: from the volume's bytes in userspace when the lister
//! takes the filesystem (see [`crate::ext4list`]), else by walking the
//! mounted tree ([`crate::walk`]) and opening and mapping every file
//! through the kernel ([`crate::mapping`]). What the lister leaves to the
//! kernel (directories, files without a map) is walked or mapped there, so
//! both ways give the same files, keys and errors for a sound filesystem.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::ext4list::{list_ext4, Ext4Listing, VolumeBytes};
use crate::extent_key::VolumeChunks;
use crate::mapping::{map_files, MappedFile, Mapping};
use crate::walk::{list_files, Listing};

/// The regular files under a root, in inode order (ties by path).
pub struct TreeFiles {
    pub paths: Vec<PathBuf>,
    /// One per path when the volume's place on a disk is known.
    pub mappings: Option<Vec<Mapping>>,
    /// (directory or entry, error) the kernel walk met.
    pub errors: Vec<(PathBuf, String)>,
    /// Files the userspace lister listed and mapped itself.
    pub userspace_files: u64,
}

/// Lists (and with `chunks`, maps) the files under `root`; `device` is the
/// volume's bytes, for the userspace lister.
pub fn list_tree(
    root: &Path,
    chunks: Option<&VolumeChunks<'_>>,
    device: Option<&VolumeBytes>,
    cancel: Option<&AtomicBool>,
) -> TreeFiles {
    if let (Some(c), Some(dev)) = (chunks, device) {
        if let Some(listing) = list_ext4(dev, root) {
            return from_userspace(listing, c, cancel);
        }
    }
    let Listing { files, errors } = list_files(root);
    let paths: Vec<PathBuf> = files.into_iter().map(|(_, p)| p).collect();
    let mappings = chunks.map(|c| map_files(&paths, c, cancel));
    TreeFiles {
        paths,
        mappings,
        errors,
        userspace_files: 0,
    }
}

/// The lister's files, with what it left to the kernel walked and mapped
/// there.
fn from_userspace(
    listing: Ext4Listing,
    chunks: &VolumeChunks<'_>,
    cancel: Option<&AtomicBool>,
) -> TreeFiles {
    let userspace_files = listing.files.iter().filter(|f| f.map.is_some()).count() as u64;
    let mut files: Vec<(u64, PathBuf, Option<Mapping>)> = listing
        .files
        .into_iter()
        .map(|f| {
            let mapping = f
                .map
                .map(|(size, extents)| match chunks.key(size, &extents) {
                    Some(key) => Mapping::Mapped(MappedFile { key, size, extents }),
                    None => Mapping::Unmapped,
                });
            (f.ino, f.path, mapping)
        })
        .collect();
    let mut errors = Vec::new();
    for dir in &listing.kernel_dirs {
        let sub = list_files(dir);
        errors.extend(sub.errors);
        files.extend(sub.files.into_iter().map(|(ino, p)| (ino, p, None)));
    }
    files.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    errors.sort();
    let unmapped: Vec<usize> = (0..files.len()).filter(|&i| files[i].2.is_none()).collect();
    let to_map: Vec<PathBuf> = unmapped.iter().map(|&i| files[i].1.clone()).collect();
    let mapped = map_files(&to_map, chunks, cancel);
    for (i, m) in unmapped.into_iter().zip(mapped) {
        files[i].2 = Some(m);
    }
    let (paths, mappings) = files
        .into_iter()
        .map(|(_, p, m)| (p, m.unwrap_or(Mapping::Unmapped)))
        .unzip();
    TreeFiles {
        paths,
        mappings: Some(mappings),
        errors,
        userspace_files,
    }
}
