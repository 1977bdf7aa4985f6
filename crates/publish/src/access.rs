//! Who may read a published restore point: root, and the one group the
//! operator names (`publish --group scanners`), nobody else.
//!
//! | what | owner | with a group | without |
//! |---|---|---|---|
//! | `<session>/`, `<session>/<vm>/`, mount point directories | root:group | 0750 | 0700 |
//! | FUSE directory `.disks/` | root:group | 0550 | 0500 |
//! | FUSE disk files `.disks/*.raw` | root:group | 0440 | 0400 |
//! | the FUSE mount | | `allow_other` | (owner only: root) |
//! | ntfs-3g / fusefat mounts | uid 0, gid group, `umask=0227` | `allow_other` | (root only) |
//! | kernel vfat mounts | `uid=0,gid=group,fmask=0337,dmask=0227` | | |
//!
//! Every FUSE mount carries `default_permissions`, so the kernel enforces
//! those modes. The session directory is the gate: a user who may not
//! enter it reaches neither the disk files nor any mounted filesystem,
//! whatever modes the guest gave its own files. Directories are created
//! anew (never an existing one, never through a symlink), then chowned and
//! chmodded explicitly so the umask plays no part.

use crate::error::{Error, Result};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Who may read what a publisher creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    /// The group allowed to read (a gid), besides root.
    pub group: Option<u32>,
}

impl Access {
    pub fn new(group: Option<u32>) -> Self {
        Access { group }
    }

    /// The group owning what is published (0 without a group).
    pub fn gid(self) -> u32 {
        self.group.unwrap_or(0)
    }

    /// Mode of the directories of a session.
    pub fn dir_mode(self) -> u32 {
        if self.group.is_some() {
            0o750
        } else {
            0o700
        }
    }

    /// Mode of the FUSE directory (read-only: no write bits).
    pub fn fuse_dir_mode(self) -> u32 {
        self.dir_mode() & 0o555
    }

    /// Mode of the FUSE disk files.
    pub fn file_mode(self) -> u32 {
        if self.group.is_some() {
            0o440
        } else {
            0o400
        }
    }

    /// Who the kernel lets into the publisher's FUSE mount: everyone (then
    /// `default_permissions` checks the modes) only when a group may read.
    pub fn fuse_acl(self) -> fuser::SessionACL {
        if self.group.is_some() {
            fuser::SessionACL::All
        } else {
            fuser::SessionACL::Owner
        }
    }

    /// The ownership and permission options of a filesystem served by a
    /// FUSE program (ntfs-3g, fusefat): root and the group read, the kernel
    /// checks.
    pub fn fuse_program_options(self) -> String {
        let mut o = format!("default_permissions,uid=0,gid={},umask=0227", self.gid());
        if self.group.is_some() {
            o.push_str(",allow_other");
        }
        o
    }

    /// The ownership options of a kernel vfat mount.
    pub fn vfat_options(self) -> String {
        format!("uid=0,gid={},fmask=0337,dmask=0227", self.gid())
    }

    /// Creates directory `path` (which must not exist: an existing one, or
    /// a symlink, is an error) owned by root and the group, with
    /// [`Access::dir_mode`].
    pub fn create_dir(self, path: &Path) -> Result<()> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| Error::io(path, e))?;
        self.restrict(path, self.dir_mode())
    }

    /// Sets owner root:group and `mode` on `path` (not following a symlink
    /// for the owner; `path` was just created by us).
    fn restrict(self, path: &Path, mode: u32) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(0), Some(self.gid()))
            .map_err(|e| Error::io(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(path, e))
    }
}

/// The gid of `group`: a number as it is, a name looked up with `getent
/// group` (so NSS groups work too).
pub fn resolve_group(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let out = crate::system::run(std::process::Command::new("getent").args(["group", group]))
        .map_err(|e| Error::Invalid(format!("group {group:?}: not found ({e})")))?;
    out.split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .ok_or_else(|| Error::Invalid(format!("group {group:?}: getent printed {out:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn modes_follow_the_group() {
        let none = Access::new(None);
        assert_eq!(
            (none.dir_mode(), none.fuse_dir_mode(), none.file_mode()),
            (0o700, 0o500, 0o400)
        );
        assert!(!none.fuse_program_options().contains("allow_other"));
        let g = Access::new(Some(4242));
        assert_eq!(
            (g.dir_mode(), g.fuse_dir_mode(), g.file_mode()),
            (0o750, 0o550, 0o440)
        );
        assert_eq!(
            g.fuse_program_options(),
            "default_permissions,uid=0,gid=4242,umask=0227,allow_other"
        );
    }

    #[test]
    fn directories_are_new_and_get_exact_modes() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("s");
        Access::new(None).create_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        assert!(Access::new(None).create_dir(&d).is_err(), "exists");
        let link = t.path().join("l");
        std::os::unix::fs::symlink(t.path(), &link).unwrap();
        assert!(Access::new(None).create_dir(&link).is_err(), "a symlink");
    }

    #[test]
    fn groups_resolve_by_number_and_name() {
        assert_eq!(resolve_group("4242").unwrap(), 4242);
        assert_eq!(resolve_group("root").unwrap(), 0);
        let e = resolve_group("no-such-group-lifeboat").unwrap_err();
        assert!(e.to_string().contains("no-such-group-lifeboat"), "{e}");
    }
}
