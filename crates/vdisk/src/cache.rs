//! [`CachedDisk`]: read cache in front of a slow disk (being written by a helper).
pub struct CachedDisk;
