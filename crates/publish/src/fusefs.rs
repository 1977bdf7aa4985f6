//! The FUSE filesystem of a session: one flat, read-only directory whose
//! regular files are virtual disks (`<vm>-<disk>.raw`, and
//! `<vm>-<lv>.raw` for LVs that a loop offset cannot serve).
//!
//! Inode 1 is the directory, file `i` of the list is inode `i + 2`. Reads
//! go straight to [`ReadDisk::read_at`] (callers put a `CachedDisk` in
//! front of the repository); any read error is answered with `EIO`, so a
//! corrupt chunk is never served as data. Every write-like operation is
//! refused by the kernel already (the mount is `ro`); the handlers left at
//! fuser's defaults answer `ENOSYS`. Files are opened with `KEEP_CACHE`:
//! the bytes of a restore point never change.
//!
//! Owner and modes come from [`Access`]: root and the configured group
//! (directory 0550, files 0440), or root alone (0500, 0400); the mount
//! carries `default_permissions`, so the kernel enforces them.

use crate::access::Access;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEntry, ReplyOpen, Request,
};
use lifeboat_vdisk::ReadDisk;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Largest read answered at once (the kernel asks for at most 1 MiB).
const MAX_READ: u32 = 4 << 20;
const TTL: Duration = Duration::from_secs(3600);

/// One file of the directory.
pub struct DiskFile {
    /// File name, e.g. `web01-disk0.raw`.
    pub name: String,
    pub disk: Arc<dyn ReadDisk>,
}

/// The filesystem served over FUSE.
pub struct DiskFs {
    files: Vec<DiskFile>,
    created: SystemTime,
    access: Access,
}

impl DiskFs {
    pub fn new(files: Vec<DiskFile>, access: Access) -> Self {
        DiskFs {
            files,
            created: SystemTime::now(),
            access,
        }
    }

    fn file(&self, ino: INodeNo) -> Option<&DiskFile> {
        let i = ino.0.checked_sub(2)?;
        self.files.get(usize::try_from(i).ok()?)
    }

    fn attr(&self, ino: u64, kind: FileType, size: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.created,
            mtime: self.created,
            ctime: self.created,
            crtime: self.created,
            kind,
            perm: if kind == FileType::Directory {
                self.access.fuse_dir_mode()
            } else {
                self.access.file_mode()
            } as u16,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: self.access.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn file_attr(&self, i: usize, f: &DiskFile) -> FileAttr {
        self.attr(i as u64 + 2, FileType::RegularFile, f.disk.size())
    }
}

impl Filesystem for DiskFs {
    /// Asks for asynchronous direct I/O: the loop devices over these files
    /// use direct I/O, and without it the kernel turns each of their
    /// requests into a synchronous one, so a loop device has one request
    /// in flight at a time and the reader threads here wait in turn.
    /// A kernel without it still works, one request at a time.
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 != 1 {
            reply.error(Errno::ENOENT);
            return;
        }
        match self
            .files
            .iter()
            .enumerate()
            .find(|(_, f)| OsStr::new(&f.name) == name)
        {
            Some((i, f)) => reply.entry(&TTL, &self.file_attr(i, f), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino.0 == 1 {
            reply.attr(&TTL, &self.attr(1, FileType::Directory, 0));
            return;
        }
        match self.file(ino) {
            Some(f) => reply.attr(
                &TTL,
                &self.attr(ino.0, FileType::RegularFile, f.disk.size()),
            ),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.file(ino).is_none() {
            reply.error(Errno::ENOENT);
        } else if flags.acc_mode() != OpenAccMode::O_RDONLY {
            reply.error(Errno::EROFS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(f) = self.file(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let end = offset
            .saturating_add(u64::from(size.min(MAX_READ)))
            .min(f.disk.size());
        if end <= offset {
            reply.data(&[]);
            return;
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        match f.disk.read_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != 1 {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let mut entries: Vec<(u64, FileType, &str)> = vec![
            (1, FileType::Directory, "."),
            (1, FileType::Directory, ".."),
        ];
        for (i, f) in self.files.iter().enumerate() {
            entries.push((i as u64 + 2, FileType::RegularFile, &f.name));
        }
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
