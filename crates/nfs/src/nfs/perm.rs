//! Who is calling (AUTH_SYS) and what that caller may do with an object.
//!
//! AUTH_SYS carries the client's claim of uid, gid and supplementary gids;
//! nothing proves it. The address allow list decides which hosts may talk
//! to the service at all; within an allowed host the uid decides, as on a
//! local file system:
//!
//! - uid 0 is root (no root squash, as Veeam's vPower NFS and nfs-ganesha's
//!   `No_Root_Squash` for an ESXi datastore: ESXi mounts as root and must
//!   create, write and remove its files). Root may read and write every
//!   object, search every folder, and run files that have an execute bit.
//! - any other uid is checked against the object's owner, group and mode
//!   bits (owner class if it owns the object, else group class if the
//!   object's group is its gid or one of its gids, else other).
//! - AUTH_NONE is refused before this (AUTH_TOOWEAK), stricter than the
//!   usual mapping to `nobody`: the service has nothing to offer anonymous
//!   callers.
//!
//! | call                         | needs (non-root)                       |
//! |------------------------------|----------------------------------------|
//! | READ                         | read on the file                       |
//! | WRITE, COMMIT                | write on the file                      |
//! | LOOKUP                       | search (x) on the folder               |
//! | READDIR, READDIRPLUS         | read on the folder                     |
//! | CREATE, MKDIR, REMOVE, RMDIR, RENAME | write and search on the folder(s) |
//! | SETATTR size                 | write on the file                      |
//! | SETATTR mode, times given by the client | owning the object           |
//! | SETATTR times set to "now"   | owning it or write on it               |
//! | SETATTR uid                  | root (an owner may only keep its uid)  |
//! | SETATTR gid                  | owning it, and a gid the caller has    |
//!
//! What a non-root caller creates is given to it (owner uid, group gid).
//! ACCESS answers from the same rules. Setuid and setgid bits are never
//! stored (tree ops), so no rule has to clear them.

use crate::backend::{Attr, FileType, NfsError, SetAttr, SetTime, Status};
use crate::rpc::msg::AuthSys;

/// Mode bit classes.
pub(crate) const R: u32 = 4;
pub(crate) const W: u32 = 2;
pub(crate) const X: u32 = 1;

/// The identity a call acts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

impl Caller {
    pub fn from_auth_sys(a: &AuthSys) -> Self {
        Caller {
            uid: a.uid,
            gid: a.gid,
            gids: a.gids.clone(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    fn has_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }

    fn owns(&self, a: &Attr) -> bool {
        self.is_root() || self.uid == a.uid
    }

    /// Whether the caller has every bit of `want` (R, W, X) on `a`.
    pub fn may(&self, a: &Attr, want: u32) -> bool {
        if self.is_root() {
            let exec_ok = a.ftype == FileType::Directory || a.mode & 0o111 != 0;
            return want & X == 0 || exec_ok;
        }
        let class = if self.uid == a.uid {
            (a.mode >> 6) & 7
        } else if self.has_group(a.gid) {
            (a.mode >> 3) & 7
        } else {
            a.mode & 7
        };
        class & want == want
    }

    /// NFS3ERR_ACCES unless the caller has `want` on `a`.
    pub(crate) fn need(&self, a: &Attr, want: u32, what: &str) -> Result<(), NfsError> {
        if self.may(a, want) {
            return Ok(());
        }
        Err(NfsError::new(
            Status::Acces,
            format!("uid {} may not {what}", self.uid),
        ))
    }

    /// Whether the caller may apply `set` to an object with attributes
    /// `a`: NFS3ERR_PERM for ownership rules, NFS3ERR_ACCES for the mode.
    pub(crate) fn check_setattr(&self, a: &Attr, set: &SetAttr) -> Result<(), NfsError> {
        if self.is_root() {
            return Ok(());
        }
        let perm = |what: &str| {
            NfsError::new(
                Status::Perm,
                format!("uid {} may not {what} (owner uid {})", self.uid, a.uid),
            )
        };
        if set.size.is_some_and(|s| s != a.size) {
            self.need(a, W, "change the size")?;
        }
        if set.mode.is_some() && !self.owns(a) {
            return Err(perm("change the mode"));
        }
        if set.uid.is_some_and(|u| u != a.uid || !self.owns(a)) {
            return Err(perm("change the owner"));
        }
        if let Some(g) = set.gid {
            if g != a.gid && !(self.owns(a) && self.has_group(g)) {
                return Err(perm("change the group"));
            }
        }
        for t in [set.atime, set.mtime] {
            match t {
                SetTime::DontChange => {}
                SetTime::ServerTime if self.owns(a) || self.may(a, W) => {}
                SetTime::ServerTime | SetTime::Client(_) if self.owns(a) => {}
                _ => return Err(perm("set the times")),
            }
        }
        Ok(())
    }

    /// The owner a new object of this caller gets (non-root callers), as
    /// the attributes to set right after creating it: its uid and, unless
    /// the call names one of its groups, its gid.
    pub(crate) fn ownership(&self, asked: &SetAttr) -> Result<Option<SetAttr>, NfsError> {
        if self.is_root() {
            return Ok(None);
        }
        if asked.uid.is_some_and(|u| u != self.uid) {
            return Err(NfsError::new(
                Status::Perm,
                format!("uid {} may not create files for another owner", self.uid),
            ));
        }
        let gid = match asked.gid {
            Some(g) if self.has_group(g) => g,
            Some(g) => {
                return Err(NfsError::new(
                    Status::Perm,
                    format!("uid {} is not in group {g}", self.uid),
                ))
            }
            None => self.gid,
        };
        Ok(Some(SetAttr {
            uid: Some(self.uid),
            gid: Some(gid),
            ..SetAttr::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Time;

    fn attr(ftype: FileType, mode: u32, uid: u32, gid: u32) -> Attr {
        Attr {
            ftype,
            mode,
            nlink: 1,
            uid,
            gid,
            size: 10,
            used: 10,
            fileid: 1,
            atime: Time::default(),
            mtime: Time::default(),
            ctime: Time::default(),
        }
    }

    fn who(uid: u32, gid: u32, gids: &[u32]) -> Caller {
        Caller {
            uid,
            gid,
            gids: gids.to_vec(),
        }
    }

    #[test]
    fn mode_bits_decide_for_everyone_but_root() {
        let f = attr(FileType::Regular, 0o640, 0, 10);
        let root = who(0, 0, &[]);
        assert!(root.may(&f, R | W));
        assert!(!root.may(&f, X), "root runs only what has an x bit");
        assert!(who(7, 10, &[]).may(&f, R), "group class");
        assert!(!who(7, 10, &[]).may(&f, W));
        assert!(who(7, 5, &[3, 10]).may(&f, R), "supplementary gid");
        assert!(!who(7, 5, &[]).may(&f, R), "other class");
        let mine = attr(FileType::Regular, 0o604, 7, 10);
        assert!(who(7, 10, &[]).may(&mine, R | W));
        let d = attr(FileType::Directory, 0o755, 0, 0);
        assert!(root.may(&d, R | W | X));
        assert!(who(7, 7, &[]).may(&d, R | X));
        assert!(!who(7, 7, &[]).may(&d, W | X));
    }

    #[test]
    fn setattr_follows_ownership() {
        let f = attr(FileType::Regular, 0o644, 0, 0);
        let user = who(1000, 1000, &[20]);
        let mode = SetAttr {
            mode: Some(0o666),
            ..SetAttr::default()
        };
        assert_eq!(
            user.check_setattr(&f, &mode).unwrap_err().status,
            Status::Perm
        );
        let size = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        assert_eq!(
            user.check_setattr(&f, &size).unwrap_err().status,
            Status::Acces
        );
        assert!(who(0, 0, &[]).check_setattr(&f, &mode).is_ok());
        let own = attr(FileType::Regular, 0o600, 1000, 1000);
        assert!(user.check_setattr(&own, &mode).is_ok());
        let to_group = |g| SetAttr {
            gid: Some(g),
            ..SetAttr::default()
        };
        assert!(user.check_setattr(&own, &to_group(20)).is_ok());
        assert!(user.check_setattr(&own, &to_group(0)).is_err());
        let give = SetAttr {
            uid: Some(0),
            ..SetAttr::default()
        };
        assert!(user.check_setattr(&own, &give).is_err());
        let now = SetAttr {
            mtime: SetTime::ServerTime,
            ..SetAttr::default()
        };
        let shared = attr(FileType::Regular, 0o666, 0, 0);
        assert!(user.check_setattr(&shared, &now).is_ok());
        let then = SetAttr {
            mtime: SetTime::Client(Time { secs: 1, nsecs: 0 }),
            ..SetAttr::default()
        };
        assert!(user.check_setattr(&shared, &then).is_err());
        assert_eq!(
            user.ownership(&SetAttr::default()).unwrap(),
            Some(SetAttr {
                uid: Some(1000),
                gid: Some(1000),
                ..SetAttr::default()
            })
        );
        assert!(user.ownership(&give).is_err());
        assert_eq!(who(0, 0, &[]).ownership(&give).unwrap(), None);
    }
}
