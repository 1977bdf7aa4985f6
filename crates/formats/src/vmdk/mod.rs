//! VMDK reader (being written by a helper).
use lifeboat_vdisk::{Error, ReadDisk, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) fn open(path: &Path, _chain: &mut Vec<PathBuf>) -> Result<Arc<dyn ReadDisk>> {
    Err(Error::unsupported(path.display(), "VMDK reader not built yet"))
}
