//! Shared helpers of the LVM tests that drive the real lvm2 tools (run
//! through lifeboat-testsupport's loop devices, `lvm.conf` and `lvm`):
//! the root check and the per-sector pattern the tests fill PV extents
//! with.

#![allow(dead_code)] // each test binary uses its own subset

pub fn require_root() {
    lifeboat_testsupport::require_root("losetup, pvcreate");
}

/// The pattern of 512-byte sector `s` of extent `e` of PV `pv`.
pub fn sector_pattern(pv: u64, e: u64, s: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    let tag = format!("pv{pv} extent {e:03} sector {s:05} ");
    for (i, x) in b.iter_mut().enumerate() {
        *x = tag.as_bytes()[i % tag.len()];
    }
    b
}
