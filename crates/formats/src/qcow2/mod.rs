//! qcow2: the reader ([`Qcow2Disk`], v2 and v3, backing chains, deflate and
//! zstd compressed clusters) and the writer ([`Qcow2Writer`], v3, used by
//! restore).
//!
//! | file | owns |
//! |---|---|
//! | `layout.rs` | on-disk constants, each with its place in QEMU's `docs/interop/qcow2.txt` |
//! | `header.rs` | header parsing/validation and encoding, header extensions |
//! | `reader.rs` | [`Qcow2Disk`]: L1/L2 mapping, backing file, extents |
//! | `l2cache.rs` | bounded LRU of L2 tables shared by reader threads |
//! | `compress.rs` | inflating compressed clusters (raw deflate, zstd) |
//! | `writer.rs` | [`Qcow2Writer`]: parallel out-of-order writes, metadata at finish |
//!
//! Not supported (refused with [`lifeboat_vdisk::Error::Unsupported`] naming
//! the feature): encryption, external data files, extended L2 entries
//! (subclusters). Internal snapshots are ignored: the active L1 table is read.
//! Images marked corrupt are refused; images marked dirty are read (their
//! mappings are valid, only refcounts may be stale).

mod compress;
mod header;
mod l2cache;
pub mod layout;
mod reader;
mod writer;

pub use reader::Qcow2Disk;
pub use writer::Qcow2Writer;

use crate::follow::Chain;
use lifeboat_vdisk::{ReadDisk, Result};
use std::path::Path;
use std::sync::Arc;

/// The factory's entry point: opens `path` as one link of `chain` (which
/// already holds `path`'s canonical form), the backing files it allows
/// included.
pub(crate) fn open(path: &Path, chain: &mut Chain<'_>) -> Result<Arc<dyn ReadDisk>> {
    Ok(Arc::new(Qcow2Disk::open_in(path, chain)?))
}
