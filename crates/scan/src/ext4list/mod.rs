//! Listing the regular files of an ext2/3/4 volume with their sizes and
//! extent maps in userspace, from the volume's bytes (the publisher's FUSE
//! file of the disk), instead of walking the mounted tree and opening and
//! mapping (FIEMAP) every file through the kernel.
//!
//! On a published restore point each directory block and inode the kernel
//! reads is a request through the loop device and FUSE, and every file the
//! walk opens becomes an inode the kernel builds, maps and later evicts at
//! unmount. The lister reads the same metadata itself, a tree level at a
//! time: the level's directory blocks (adjacent ones in one read), then the
//! inodes its entries name (their inode-table blocks, adjacent ones in one
//! read), several reads in flight at once (see [`volume`]).
//!
//! It gives the kernel's view of the volume as the publisher mounts it
//! (read-only, `noload`): a volume whose journal needs replay is published
//! from a file of its own holding its replayed view
//! (`lifeboat_formats::ext4_journal`, the one replay the file browser uses
//! too), the kernel mounts that file and the lister reads it, so no reader
//! replays a journal of its own; the lister refuses a volume that still
//! says it needs recovery. Directory entries by their file type, as
//! `readdir` gives them (see [`crate::walk`]); extents as FIEMAP gives them,
//! merged where adjacent (see [`crate::fiemap::merge_adjacent`]). Whatever
//! it does not read exactly as the kernel does is left to the kernel:
//!
//! - a filesystem it does not take ([`superblock`]) lists nothing here
//!   (`None`): the caller walks the tree through the kernel;
//! - a directory that is damaged (an entry that does not fit, a failed
//!   checksum, an inode that fails its checksum or is not a directory, data
//!   not in plain extents) or seen twice is returned in
//!   [`Ext4Listing::kernel_dirs`]: the caller lists it through the kernel,
//!   which reports what is wrong;
//! - a file whose inode fails its checksum, is not a regular file, or keeps
//!   its data other than in plain extents has no map: the caller opens and
//!   maps it through the kernel.
//!
//! The lister never writes, and reads only metadata.

mod csum;
mod dirent;
mod inode;
mod superblock;
pub mod volume;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::fiemap::{merge_adjacent, FileExtent};
use dirent::{parse_block, DirEntry, FT_DIR, FT_REG_FILE};
use inode::Inode;
use superblock::Superblock;
pub use volume::VolumeBytes;

/// `dirent::parse_block` for the fuzz target (`crate::fuzzing`): the
/// names of the entries it appends, or `Err` for a damaged block.
pub(crate) fn fuzz_parse_block(
    block: &[u8],
    seed: Option<u32>,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), ()> {
    let mut entries = Vec::new();
    parse_block(block, seed, &mut entries)?;
    out.extend(entries.into_iter().map(|e| e.name));
    Ok(())
}

/// The root directory's inode.
const ROOT_INO: u32 = 2;
/// Blocks read per batch of a level (bounds the memory of a wide level).
const BATCH_BLOCKS: usize = 16 << 10;
/// Inodes read per batch of a level.
const BATCH_INODES: usize = 64 << 10;

/// The files of a volume as the lister found them.
#[derive(Debug, Default)]
pub struct Ext4Listing {
    /// Regular files, in inode order (ties by path).
    pub files: Vec<ListedFile>,
    /// Directories (with all below them) to list through the kernel.
    pub kernel_dirs: Vec<PathBuf>,
}

/// One regular file (one name of it: a file with several links is listed
/// once per name, as a walk lists it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub ino: u64,
    pub path: PathBuf,
    /// Size and extents; `None`: map it through the kernel.
    pub map: Option<(u64, Vec<FileExtent>)>,
}

/// A directory of the level being listed.
struct Dir {
    path: PathBuf,
    inode: Inode,
    extents: Vec<FileExtent>,
}

/// Lists the ext4 volume `vol` mounted at `root` (paths are under it);
/// `None` when the lister does not take this filesystem (see the module
/// doc).
pub fn list_ext4(vol: &VolumeBytes, root: &Path) -> Option<Ext4Listing> {
    let sb = Superblock::read(vol)?;
    let root_inode = read_inodes(&sb, vol, &[ROOT_INO]).remove(&ROOT_INO)?;
    if !root_inode.is_dir() {
        return None;
    }
    let extents = root_inode.extents(&sb, vol)?;
    let mut out = Ext4Listing::default();
    let mut seen: HashSet<u32> = HashSet::from([ROOT_INO]);
    let mut level = vec![Dir {
        path: root.to_path_buf(),
        inode: root_inode,
        extents,
    }];
    while !level.is_empty() {
        let mut entries = read_dirs(&sb, vol, &level);
        let mut wanted: Vec<u32> = entries
            .iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type == FT_REG_FILE || e.file_type == FT_DIR)
            .map(|e| e.ino)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let inodes = read_inodes(&sb, vol, &wanted);
        let mut next = Vec::new();
        for (dir, found) in level.iter().zip(entries.iter_mut()) {
            let Some(found) = found.take() else {
                out.kernel_dirs.push(dir.path.clone());
                continue;
            };
            for e in found {
                let path = dir.path.join(OsStr::from_bytes(&e.name));
                let inode = inodes.get(&e.ino);
                if e.file_type == FT_REG_FILE {
                    let map = inode
                        .filter(|i| i.is_file())
                        .and_then(|i| i.extents(&sb, vol).map(|x| (i.size, merge_adjacent(x))));
                    out.files.push(ListedFile {
                        ino: u64::from(e.ino),
                        path,
                        map,
                    });
                } else if e.file_type == FT_DIR {
                    let sub = inode
                        .filter(|i| i.is_dir() && seen.insert(e.ino))
                        .and_then(|i| Some((i.clone(), i.extents(&sb, vol)?)));
                    match sub {
                        Some((inode, extents)) => next.push(Dir {
                            path,
                            inode,
                            extents,
                        }),
                        None => out.kernel_dirs.push(path),
                    }
                }
            }
        }
        level = next;
    }
    out.files
        .sort_by(|a, b| (a.ino, &a.path).cmp(&(b.ino, &b.path)));
    out.kernel_dirs.sort();
    Some(out)
}

/// The entries of each directory of `level` (in its order); `None` for a
/// directory that could not be read as the kernel would (see the module
/// doc). Each block is parsed by the thread that read it, straight from
/// the read buffer.
fn read_dirs(sb: &Superblock, vol: &VolumeBytes, level: &[Dir]) -> Vec<Option<Vec<DirEntry>>> {
    let bs = sb.block_size;
    // (volume position, directory, logical block) of every block to read.
    let mut blocks: Vec<(u64, usize, u64)> = Vec::new();
    let mut bad = vec![false; level.len()];
    let mut expected = vec![0usize; level.len()];
    for (d, dir) in level.iter().enumerate() {
        let count = dir.inode.size.div_ceil(bs);
        for e in &dir.extents {
            if e.unwritten {
                bad[d] = true;
            }
            let first = e.logical / bs;
            for b in 0..e.length / bs {
                if first + b >= count {
                    break;
                }
                blocks.push((e.physical + b * bs, d, first + b));
                expected[d] += 1;
            }
        }
    }
    blocks.sort_unstable();
    let seeds: Vec<Option<u32>> = level.iter().map(|d| d.inode.seed(sb)).collect();
    // (logical block, its entries) of each directory.
    let mut parsed: Vec<Vec<(u64, Vec<DirEntry>)>> = vec![Vec::new(); level.len()];
    for batch in blocks.chunks(BATCH_BLOCKS) {
        let read = vol.read_items(
            batch,
            bs,
            |b| b.0,
            |&(_, d, _), bytes| {
                let mut entries = Vec::new();
                let ok = bytes
                    .get(..bs as usize)
                    .is_some_and(|b| parse_block(b, seeds[d], &mut entries).is_ok());
                ok.then_some(entries)
            },
        );
        for (group, got) in read {
            match got {
                Ok(list) => {
                    for (&(_, d, logical), entries) in group.iter().zip(list) {
                        match entries {
                            Some(e) => parsed[d].push((logical, e)),
                            None => bad[d] = true,
                        }
                    }
                }
                Err(_) => group.iter().for_each(|&(_, d, _)| bad[d] = true),
            }
        }
    }
    parsed
        .into_iter()
        .enumerate()
        .map(|(d, mut blocks)| {
            // A block in no read range (none should be) leaves it short.
            if bad[d] || blocks.len() != expected[d] {
                return None;
            }
            blocks.sort_by_key(|(l, _)| *l);
            Some(blocks.into_iter().flat_map(|(_, e)| e).collect())
        })
        .collect()
}

/// The inodes `inos` (sorted, distinct) that lie in use in their tables
/// and pass their checksums; the others are missing from the map.
fn read_inodes(sb: &Superblock, vol: &VolumeBytes, inos: &[u32]) -> HashMap<u32, Inode> {
    let bs = sb.block_size;
    let isz = sb.inode_size as usize;
    let mut at: Vec<(u64, u32)> = inos
        .iter()
        .filter_map(|&i| Some((sb.inode_pos(i)?, i)))
        .collect();
    at.sort_unstable();
    let mut out = HashMap::with_capacity(at.len());
    for batch in at.chunks(BATCH_INODES) {
        let read = vol.read_items(
            batch,
            bs,
            |i| i.0,
            |&(_, ino), bytes| Inode::parse(bytes.get(..isz)?, ino, sb),
        );
        for inode in read
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .flatten()
            .flatten()
        {
            out.insert(inode.ino, inode);
        }
    }
    out
}

/// Little-endian u16 at `at` (0 past the end; callers check lengths).
fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

/// Little-endian u32 at `at` (0 past the end; callers check lengths).
fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
