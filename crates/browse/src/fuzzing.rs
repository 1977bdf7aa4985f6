//! The bodies of fuzz targets `xfs` and `ntfs` (`fuzz/`), replayed over
//! their corpora by `tests/fuzz_corpus.rs`.
//!
//! The input is a sparse image ([`lifeboat_vdisk::SparseInputDisk`]: a
//! 4-byte size in KiB, then `(sector u32, length u16, bytes)` pieces), so
//! a seed made by `mkfs.xfs` / `mkfs.ntfs` over hundreds of MB keeps only
//! its non-zero metadata. The reader opens it and walks the tree breadth
//! first, at most [`MAX_ENTRIES`] entries: `list` of every directory,
//! `stat` of every entry, up to [`MAX_READ`] bytes of every regular file
//! (and, on XFS, `inode_info`). Errors are expected; panics, hangs and huge
//! allocations are the bugs looked for.
//!
//! Checked besides "no panic": a listed entry's path is its directory's
//! path joined with its name, and its name holds no `/`.
//!
//! `ntfs` walks through `NtfsFs`, so through its panic boundary (`ntfs::guard`):
//! a panic of the `ntfs` crate is an error there, as in production; the fuzz
//! target lets only those unwind to it (`fuzz/fuzz_targets/ntfs.rs`).

use crate::{Filesystem, NtfsFs, XfsFs};
use lifeboat_vdisk::{ReadDisk, SparseInputDisk};
use std::io::Read;
use std::sync::Arc;

/// Most entries visited per input.
const MAX_ENTRIES: usize = 256;
/// Most bytes read from one file.
const MAX_READ: u64 = 64 << 10;

fn walk(fs: &dyn Filesystem, extra: &dyn Fn(&str)) {
    let mut queue = std::collections::VecDeque::from([String::from("/")]);
    let mut seen = 0usize;
    let _ = fs.stat("/");
    while let Some(dir) = queue.pop_front() {
        let Ok(entries) = fs.list(&dir) else {
            continue;
        };
        for e in entries {
            seen += 1;
            if seen > MAX_ENTRIES {
                return;
            }
            assert!(!e.name.contains('/'), "entry name with '/': {e:?}");
            let expected = if dir == "/" {
                format!("/{}", e.name)
            } else {
                format!("{dir}/{}", e.name)
            };
            assert_eq!(e.path, expected, "entry path is not dir + name");
            let _ = fs.stat(&e.path);
            extra(&e.path);
            match e.kind {
                crate::EntryKind::Dir => queue.push_back(e.path),
                crate::EntryKind::File => {
                    if let Ok(r) = fs.read_file(&e.path) {
                        let mut sink = Vec::new();
                        let _ = r.take(MAX_READ).read_to_end(&mut sink);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Fuzz target `xfs`: the in-house XFS v5 reader (see the module doc).
pub fn xfs(data: &[u8]) {
    let disk: Arc<dyn ReadDisk> = Arc::new(SparseInputDisk::decode(data));
    let Ok(fs) = XfsFs::open("fuzz", disk) else {
        return;
    };
    walk(&fs, &|p| {
        let _ = fs.inode_info(p);
    });
}

/// Fuzz target `ntfs`: the NTFS reader over the `ntfs` crate (see the
/// module doc).
pub fn ntfs(data: &[u8]) {
    let disk: Arc<dyn ReadDisk> = Arc::new(SparseInputDisk::decode(data));
    let Ok(fs) = NtfsFs::open("fuzz", disk) else {
        return;
    };
    walk(&fs, &|_| {});
}
