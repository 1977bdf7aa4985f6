//! [`XfsFs`]: path resolution (symlinks in the middle of a path are
//! followed, at most 40 per lookup; `..` never climbs above the root) and
//! the [`Filesystem`] implementation over the XFS structures.

use super::bmap::{data_extents, Mapping};
use super::dir::read_dir;
use super::inode::{Format, Inode, S_IFDIR, S_IFLNK, S_IFREG};
use super::superblock::{Superblock, MIN_SB_BYTES};
use super::{be16, read_disk, symlink, unsupported, Dev, XfsError};
use crate::error::repo_damage;
use crate::{base_name, normalize, Entry, EntryKind, Error, Filesystem, FsType, Result};
use lifeboat_vdisk::ReadDisk;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;

/// Most symlinks followed while resolving one path.
const MAX_SYMLINKS: u32 = 40;

/// An XFS v5 filesystem on one volume.
pub struct XfsFs {
    volume: String,
    dev: Dev,
}

/// Inode details beyond [`Entry`], for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfsInodeInfo {
    pub ino: u64,
    pub nlink: u32,
    /// Inode change time, seconds since the epoch.
    pub ctime: i64,
    /// Data fork format: `dev`, `local`, `extents` or `btree`.
    pub format: &'static str,
    /// Extents of the data fork, as the inode records it.
    pub nextents: u64,
}

impl XfsFs {
    /// Reads the superblock and the root directory inode of `disk`.
    pub fn open(volume: &str, disk: Arc<dyn ReadDisk>) -> Result<XfsFs> {
        let fail = |e: XfsError| map_err(volume, "/", e);
        let mut head = vec![0u8; MIN_SB_BYTES];
        read_disk(disk.as_ref(), &mut head, 0).map_err(fail)?;
        let sect = usize::from(be16(&head, 102).map_err(fail)?).clamp(MIN_SB_BYTES, 32768);
        let mut sector = vec![0u8; sect];
        read_disk(disk.as_ref(), &mut sector, 0).map_err(fail)?;
        let sb = Superblock::parse(&sector).map_err(fail)?;
        let fs = XfsFs {
            volume: volume.to_string(),
            dev: Dev { disk, sb },
        };
        let root = Inode::read(&fs.dev, fs.dev.sb.root_ino).map_err(fail)?;
        if !root.is_dir() {
            return Err(fs.err("/", super::corrupt("the root inode is not a directory")));
        }
        Ok(fs)
    }

    /// Inode number, link count, ctime and fork layout of `path` (not
    /// following a final symlink).
    pub fn inode_info(&self, path: &str) -> Result<XfsInodeInfo> {
        let path = normalize(&self.volume, path)?;
        let inode = self.resolve(&path, false)?;
        Ok(XfsInodeInfo {
            ino: inode.ino,
            nlink: inode.nlink,
            ctime: inode.ctime,
            format: match inode.format {
                Format::Dev => "dev",
                Format::Local => "local",
                Format::Extents => "extents",
                Format::Btree => "btree",
            },
            nextents: inode.nextents,
        })
    }

    fn err(&self, path: &str, e: XfsError) -> Error {
        map_err(&self.volume, path, e)
    }

    fn inode(&self, path: &str, ino: u64) -> Result<Inode> {
        Inode::read(&self.dev, ino).map_err(|e| self.err(path, e))
    }

    /// The inode at `path`; a final symlink is followed when `follow`.
    fn resolve(&self, path: &str, follow: bool) -> Result<Inode> {
        let root = self.dev.sb.root_ino;
        let mut stack = vec![root];
        let mut cur = self.inode(path, root)?;
        let mut todo: VecDeque<Vec<u8>> = split(path.as_bytes()).collect();
        let mut links = 0u32;
        while let Some(name) = todo.pop_front() {
            match name.as_slice() {
                b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    let up = stack.last().copied().unwrap_or(root);
                    cur = self.inode(path, up)?;
                    continue;
                }
                _ => {}
            }
            if !cur.is_dir() {
                return Err(Error::NotADirectory {
                    volume: self.volume.clone(),
                    path: path.to_string(),
                });
            }
            let entries = read_dir(&self.dev, &cur).map_err(|e| self.err(path, e))?;
            let Some(found) = entries.iter().find(|e| e.name == name) else {
                return Err(Error::NotFound {
                    volume: self.volume.clone(),
                    path: path.to_string(),
                });
            };
            let child = self.inode(path, found.ino)?;
            if child.file_type() == S_IFLNK && (follow || !todo.is_empty()) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::BadPath {
                        volume: self.volume.clone(),
                        path: path.to_string(),
                        detail: format!("more than {MAX_SYMLINKS} symlinks"),
                    });
                }
                let target = symlink::target(&self.dev, &child).map_err(|e| self.err(path, e))?;
                if target.starts_with(b"/") {
                    stack.truncate(1);
                    cur = self.inode(path, root)?;
                }
                for part in split(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(part);
                }
                continue;
            }
            stack.push(child.ino);
            cur = child;
        }
        Ok(cur)
    }

    fn entry(&self, path: &str, inode: &Inode) -> Result<Entry> {
        let kind = match inode.file_type() {
            S_IFREG => EntryKind::File,
            S_IFDIR => EntryKind::Dir,
            S_IFLNK => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        let symlink_target = if kind == EntryKind::Symlink {
            let t = symlink::target(&self.dev, inode).map_err(|e| self.err(path, e))?;
            Some(String::from_utf8_lossy(&t).into_owned())
        } else {
            None
        };
        Ok(Entry {
            name: base_name(path),
            path: path.to_string(),
            kind,
            size: inode.size,
            mode: u32::from(inode.mode & 0o7777),
            uid: inode.uid,
            gid: inode.gid,
            mtime: inode.mtime,
            atime: inode.atime,
            symlink_target,
        })
    }
}

/// The non-empty components of a path.
fn split(path: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
}

/// XfsError -> Error naming the volume and path.
fn map_err(volume: &str, path: &str, e: XfsError) -> Error {
    let (volume, path) = (volume.to_string(), path.to_string());
    let damaged = matches!(&e, XfsError::Disk { source, .. } if repo_damage(source));
    match e {
        XfsError::Corrupt(detail) => Error::Corrupt {
            volume,
            path,
            fs: "xfs",
            detail,
        },
        XfsError::Unsupported(detail) => Error::Unsupported {
            volume,
            detail: format!("{path}: {detail}"),
        },
        disk @ XfsError::Disk { .. } => Error::Io {
            volume,
            path,
            detail: disk.to_string(),
            damaged,
        },
    }
}

impl Filesystem for XfsFs {
    fn fs_type(&self) -> FsType {
        FsType::Xfs
    }

    fn volume(&self) -> &str {
        &self.volume
    }

    fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let path = normalize(&self.volume, path)?;
        let dir = self.resolve(&path, false)?;
        if !dir.is_dir() {
            return Err(Error::NotADirectory {
                volume: self.volume.clone(),
                path,
            });
        }
        let entries = read_dir(&self.dev, &dir).map_err(|e| self.err(&path, e))?;
        let mut out = Vec::with_capacity(entries.len());
        for de in entries {
            let name = String::from_utf8_lossy(&de.name);
            let child = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            let inode = self.inode(&child, de.ino)?;
            out.push(self.entry(&child, &inode)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn stat(&self, path: &str) -> Result<Entry> {
        let path = normalize(&self.volume, path)?;
        let inode = self.resolve(&path, false)?;
        self.entry(&path, &inode)
    }

    fn read_file<'a>(&'a self, path: &str) -> Result<Box<dyn Read + 'a>> {
        let path = normalize(&self.volume, path)?;
        let inode = self.resolve(&path, true)?;
        let fail = |make: fn(String, String) -> Error| Err(make(self.volume.clone(), path.clone()));
        match inode.file_type() {
            S_IFREG => {}
            S_IFDIR => return fail(|volume, path| Error::IsADirectory { volume, path }),
            _ => return fail(|volume, path| Error::NotAFile { volume, path }),
        }
        if inode.realtime {
            return Err(self.err(
                &path,
                unsupported("files on the XFS realtime device are not read"),
            ));
        }
        let extents = match inode.format {
            Format::Extents | Format::Btree => {
                data_extents(&self.dev, &inode).map_err(|e| self.err(&path, e))?
            }
            Format::Local | Format::Dev => {
                return Err(self.err(
                    &path,
                    super::corrupt(format!(
                        "regular file inode {} has no extent map (format {:?})",
                        inode.ino, inode.format
                    )),
                ))
            }
        };
        Ok(Box::new(XfsReader {
            fs: self,
            map: Mapping {
                extents,
                size: inode.size,
            },
            pos: 0,
            path,
        }))
    }
}

/// Streams one file; errors become `io::Error`s whose message names the
/// volume, the path and the cause.
struct XfsReader<'a> {
    fs: &'a XfsFs,
    map: Mapping,
    pos: u64,
    path: String,
}

impl Read for XfsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .map
            .read_at(&self.fs.dev, buf, self.pos)
            .map_err(|e| io::Error::other(self.fs.err(&self.path, e)))?;
        self.pos += n as u64;
        Ok(n)
    }
}
