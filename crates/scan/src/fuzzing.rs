//! The body of fuzz target `ext4list` (`fuzz/`), replayed over its corpus
//! by `tests/fuzz_corpus.rs`: the userspace ext4 lister
//! ([`crate::ext4list`]), its superblock, directory-block and inode
//! (extent tree) parsers.
//!
//! ```text
//! byte 0   mode: bit 0  the rest is one directory block for
//!                       `dirent::parse_block`, checksum seed 0x5eed when
//!                       bit 1 is set (no checksum otherwise)
//!                bit 0 clear: the rest is a raw ext4 volume, listed
//!                       with `list_ext4` through `VolumeBytes` over the
//!                       bytes in memory (read on the calling thread)
//! bytes 1..
//! ```
//!
//! Checked besides "no panic": every listed path lies under the mount
//! root, and every extent of a listed file is non-empty.

use crate::ext4list::{list_ext4, VolumeBytes};
use std::path::Path;

/// One fuzz input (see the module doc). Panics on a broken invariant.
pub fn ext4list(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 != 0 {
        let seed = (mode & 2 != 0).then_some(0x5eed);
        let mut out = Vec::new();
        if crate::ext4list::fuzz_parse_block(rest, seed, &mut out).is_ok() {
            for e in &out {
                assert!(
                    !e.contains(&b'/') && !e.contains(&0),
                    "a name with '/' or NUL passed"
                );
            }
        }
        return;
    }
    let vol = VolumeBytes::from_memory("fuzz volume", rest.to_vec());
    let root = Path::new("/mnt/fuzz");
    if let Some(listing) = list_ext4(&vol, root) {
        for f in &listing.files {
            assert!(f.path.starts_with(root), "listed outside the root: {f:?}");
            if let Some((_, extents)) = &f.map {
                assert!(extents.iter().all(|e| e.length > 0), "empty extent: {f:?}");
            }
        }
        for d in &listing.kernel_dirs {
            assert!(d.starts_with(root), "kernel dir outside the root: {d:?}");
        }
    }
}
