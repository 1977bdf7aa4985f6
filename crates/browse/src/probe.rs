//! Filesystem detection by superblock magic, and [`probe`], which opens the
//! filesystems this build can read.
//!
//! Magics: ext2/3/4 `0xEF53` (LE u16) at 1024+56; xfs `XFSB` at 0; btrfs
//! `_BHRfS_M` at 0x10040; ntfs `NTFS    ` at 3; vfat: `0x55AA` at 510 and
//! `FAT` at 54 (FAT12/16) or `FAT32` at 82; swap `SWAPSPACE2` at 4086.

use crate::{Error, Ext4Fs, FatFs, Filesystem, NtfsFs, Result, XfsFs};
use lifeboat_vdisk::ReadDisk;
use serde::Serialize;
use std::sync::Arc;

/// A filesystem type recognised by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext4,
    Xfs,
    Btrfs,
    Ntfs,
    Vfat,
    Swap,
}

impl FsType {
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Ntfs => "ntfs",
            FsType::Vfat => "vfat",
            FsType::Swap => "swap",
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads `len` bytes at `offset`, or `None` when the volume is too small.
fn bytes_at(disk: &dyn ReadDisk, offset: u64, len: usize) -> Result<Option<Vec<u8>>> {
    let end = offset.checked_add(len as u64);
    if end.is_none_or(|e| e > disk.size()) {
        return Ok(None);
    }
    let mut buf = vec![0u8; len];
    disk.read_at(&mut buf, offset)?;
    Ok(Some(buf))
}

fn magic_at(disk: &dyn ReadDisk, offset: u64, magic: &[u8]) -> Result<bool> {
    Ok(bytes_at(disk, offset, magic.len())?.is_some_and(|b| b == magic))
}

/// The filesystem type on `disk`, by magic, or `None`.
pub fn detect(disk: &dyn ReadDisk) -> Result<Option<FsType>> {
    if magic_at(disk, 1024 + 56, &[0x53, 0xEF])? {
        return Ok(Some(FsType::Ext4));
    }
    if magic_at(disk, 0, b"XFSB")? {
        return Ok(Some(FsType::Xfs));
    }
    if magic_at(disk, 0x10040, b"_BHRfS_M")? {
        return Ok(Some(FsType::Btrfs));
    }
    if magic_at(disk, 3, b"NTFS    ")? {
        return Ok(Some(FsType::Ntfs));
    }
    if magic_at(disk, 510, &[0x55, 0xAA])?
        && (magic_at(disk, 54, b"FAT")? || magic_at(disk, 82, b"FAT32")?)
    {
        return Ok(Some(FsType::Vfat));
    }
    if magic_at(disk, 4086, b"SWAPSPACE2")? {
        return Ok(Some(FsType::Swap));
    }
    Ok(None)
}

/// Opens the filesystem on `volume` (named `name` in errors). `Ok(None)`:
/// no known filesystem; `Err(Unsupported)`: recognised but not readable by
/// this build (btrfs, swap, XFS v4).
pub fn probe(name: &str, volume: Arc<dyn ReadDisk>) -> Result<Option<Box<dyn Filesystem>>> {
    let Some(kind) = detect(volume.as_ref())? else {
        return Ok(None);
    };
    match kind {
        FsType::Ext4 => Ok(Some(Box::new(Ext4Fs::open(name, volume)?))),
        FsType::Vfat => Ok(Some(Box::new(FatFs::open(name, volume)?))),
        FsType::Xfs => Ok(Some(Box::new(XfsFs::open(name, volume)?))),
        FsType::Ntfs => Ok(Some(Box::new(NtfsFs::open(name, volume)?))),
        FsType::Swap => Err(Error::Unsupported {
            volume: name.to_string(),
            detail: "swap space holds no files".to_string(),
        }),
        other => Err(Error::Unsupported {
            volume: name.to_string(),
            detail: format!("{other} browsing is not built yet"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::MemDisk;

    fn disk_with(offset: usize, magic: &[u8]) -> Arc<dyn ReadDisk> {
        let mut b = vec![0u8; 0x20000];
        b[offset..offset + magic.len()].copy_from_slice(magic);
        Arc::new(MemDisk::new("mem", b))
    }

    #[test]
    fn detects_by_magic() {
        assert_eq!(
            detect(disk_with(0, b"XFSB").as_ref()).unwrap(),
            Some(FsType::Xfs)
        );
        assert_eq!(
            detect(disk_with(0x10040, b"_BHRfS_M").as_ref()).unwrap(),
            Some(FsType::Btrfs)
        );
        assert_eq!(detect(disk_with(0, b"").as_ref()).unwrap(), None);
        assert_eq!(detect(&MemDisk::new("mem", vec![0; 100])).unwrap(), None);
    }

    #[test]
    fn btrfs_is_refused_clearly() {
        let err = probe("disk0p1", disk_with(0x10040, b"_BHRfS_M"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("btrfs browsing is not built yet") && err.contains("disk0p1"),
            "{err}"
        );
    }

    #[test]
    fn garbage_xfs_superblock_is_a_clear_error() {
        let err = probe("disk0p1", disk_with(0, b"XFSB"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("disk0p1") && err.contains("XFS version 0") && err.contains("only v5"),
            "{err}"
        );
    }

    #[test]
    fn garbage_ntfs_boot_sector_is_a_clear_error() {
        let err = probe("disk0p1", disk_with(3, b"NTFS    "))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("disk0p1") && err.contains("corrupt ntfs filesystem"),
            "{err}"
        );
    }

    #[test]
    fn unknown_is_none() {
        assert!(probe("disk0p1", disk_with(0, b"")).unwrap().is_none());
    }
}
