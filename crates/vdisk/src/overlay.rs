//! [`OverlayDisk`]: copy-on-write overlay (being written by a helper).
pub struct OverlayDisk;
