//! ext2/3/4 through the `ext4-view` crate, read-only. A journal that
//! needs replay is replayed by `lifeboat_formats::ext4_journal`, the one
//! replay publish and the scan use too (`select.rs` puts such volumes
//! behind their replayed view, and [`Ext4Fs::open`] does it for a volume
//! handed in directly): the view's superblock says the filesystem is
//! clean, and `ext4-view` only looks at a journal when `needs_recovery`
//! is set, so its own replay (which differs from the kernel's: no wrap
//! round the end of the journal, revokes only within a transaction, v2
//! journal superblocks with crc32c only) never runs. The volume is read
//! through [`DiskReader`], the adapter from `ReadDisk` to
//! `ext4_view::Ext4Read`. `ext4_view::Ext4` is single-threaded (`Rc`), so
//! an [`Ext4Fs`] is not `Send`: open one per thread.

use crate::error::repo_damage;
use crate::{base_name, normalize, Entry, EntryKind, Error, Filesystem, FsType, Result};
use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType, Metadata};
use lifeboat_formats::ext4_journal::replay;
use lifeboat_vdisk::ReadDisk;
use std::io::Read;
use std::sync::Arc;

/// `ReadDisk` -> `Ext4Read`; the disk's errors travel boxed, untouched.
struct DiskReader(Arc<dyn ReadDisk>);

impl Ext4Read for DiskReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.0
            .read_at(dst, start_byte)
            .map_err(|e| Box::new(e).into())
    }
}

/// An ext2/3/4 filesystem on one volume.
pub struct Ext4Fs {
    volume: String,
    fs: Ext4,
}

impl Ext4Fs {
    /// Loads the superblock and group descriptors of `disk`, with its
    /// journal replayed when it needs replay (a volume already behind its
    /// replayed view is clean: nothing more is done).
    pub fn open(volume: &str, disk: Arc<dyn ReadDisk>) -> Result<Ext4Fs> {
        let disk = replay(volume, disk.clone()).disk(&disk);
        let fs = Ext4::load(Box::new(DiskReader(disk))).map_err(|e| map_err(volume, "/", e))?;
        Ok(Ext4Fs {
            volume: volume.to_string(),
            fs,
        })
    }

    fn entry(&self, path: &str, meta: &Metadata) -> Result<Entry> {
        let ft = meta.file_type();
        let kind = if ft.is_regular_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        let symlink_target = if kind == EntryKind::Symlink {
            let t = self
                .fs
                .read_link(path)
                .map_err(|e| map_err(&self.volume, path, e))?;
            Some(t.display().to_string())
        } else {
            None
        };
        Ok(Entry {
            name: base_name(path),
            path: path.to_string(),
            kind,
            size: meta.len(),
            mode: u32::from(meta.mode()),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.modified().seconds(),
            atime: meta.accessed().seconds(),
            symlink_target,
        })
    }
}

/// Ext4Error -> Error naming the volume and path.
fn map_err(volume: &str, path: &str, e: Ext4Error) -> Error {
    let (volume, path) = (volume.to_string(), path.to_string());
    match e {
        Ext4Error::NotFound => Error::NotFound { volume, path },
        Ext4Error::NotADirectory => Error::NotADirectory { volume, path },
        Ext4Error::IsADirectory => Error::IsADirectory { volume, path },
        Ext4Error::IsASpecialFile => Error::NotAFile { volume, path },
        Ext4Error::NotAbsolute
        | Ext4Error::MalformedPath
        | Ext4Error::PathTooLong
        | Ext4Error::NotUtf8
        | Ext4Error::TooManySymlinks => Error::BadPath {
            volume,
            path,
            detail: e.to_string(),
        },
        Ext4Error::Io(inner) => Error::Io {
            volume,
            path,
            detail: inner.to_string(),
            damaged: repo_damage(inner.as_ref()),
        },
        Ext4Error::Encrypted | Ext4Error::Incompatible(_) => Error::Unsupported {
            detail: format!("{path}: {e}"),
            volume,
        },
        other => Error::Corrupt {
            volume,
            path,
            fs: "ext4",
            detail: other.to_string(),
        },
    }
}

impl Filesystem for Ext4Fs {
    fn fs_type(&self) -> FsType {
        FsType::Ext4
    }

    fn volume(&self) -> &str {
        &self.volume
    }

    fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let path = normalize(&self.volume, path)?;
        let err = |e: Ext4Error| map_err(&self.volume, &path, e);
        let meta = self.fs.symlink_metadata(path.as_str()).map_err(err)?;
        if meta.file_type() != FileType::Directory {
            return Err(Error::NotADirectory {
                volume: self.volume.clone(),
                path,
            });
        }
        let mut out = Vec::new();
        for item in self.fs.read_dir(path.as_str()).map_err(err)? {
            let de = item.map_err(err)?;
            let name = de.file_name();
            if name.as_ref() == b"." || name.as_ref() == b".." {
                continue;
            }
            let child = de.path().display().to_string();
            let meta = de
                .metadata()
                .map_err(|e| map_err(&self.volume, &child, e))?;
            out.push(self.entry(&child, &meta)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn stat(&self, path: &str) -> Result<Entry> {
        let path = normalize(&self.volume, path)?;
        let meta = self
            .fs
            .symlink_metadata(path.as_str())
            .map_err(|e| map_err(&self.volume, &path, e))?;
        self.entry(&path, &meta)
    }

    fn read_file<'a>(&'a self, path: &str) -> Result<Box<dyn Read + 'a>> {
        let path = normalize(&self.volume, path)?;
        let err = |e: Ext4Error| map_err(&self.volume, &path, e);
        let meta = self.fs.metadata(path.as_str()).map_err(err)?;
        if meta.is_dir() {
            return Err(Error::IsADirectory {
                volume: self.volume.clone(),
                path,
            });
        }
        if !meta.file_type().is_regular_file() {
            return Err(Error::NotAFile {
                volume: self.volume.clone(),
                path,
            });
        }
        let file = self.fs.open(path.as_str()).map_err(err)?;
        Ok(Box::new(Ext4Reader {
            file,
            volume: self.volume.clone(),
            path,
        }))
    }
}

/// Streams one file; errors become `io::Error`s whose message names the
/// volume, the path and the cause (a corrupt chunk names its digest).
struct Ext4Reader {
    file: ext4_view::File,
    volume: String,
    path: String,
}

impl Read for Ext4Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file
            .read_bytes(buf)
            .map_err(|e| std::io::Error::other(map_err(&self.volume, &self.path, e)))
    }
}
