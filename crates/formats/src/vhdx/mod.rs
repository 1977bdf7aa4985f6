//! VHDX reader (being written by a helper).
use lifeboat_vdisk::{Error, ReadDisk, Result};
use std::path::Path;
use std::sync::Arc;

pub(crate) fn open(path: &Path) -> Result<Arc<dyn ReadDisk>> {
    Err(Error::unsupported(path.display(), "VHDX reader not built yet"))
}
