//! NTFS through the `ntfs` crate (Colin Finck's, read-only, no unsafe),
//! over [`io::VolumeIo`], a `Read + Seek` cursor on the volume; nothing is
//! ever written.
//!
//! What maps to an [`Entry`]:
//! - names: the Win32, POSIX and Win32+DOS names of the directory index;
//!   DOS 8.3 aliases are not listed (they still resolve, as on Windows).
//!   Names that are not valid UTF-16 are shown lossily; an entry named
//!   `""`, `.`, `..` or holding `/` or NUL makes listing its directory a
//!   corrupt-filesystem error.
//! - lookups are case-insensitive through the volume's `$UpCase` table,
//!   as the crate offers; when a directory holds names differing only in
//!   case (POSIX namespace, ntfs-3g), the exact spelling wins.
//! - the NTFS metadata files (MFT records below 16: `$MFT`, `$Bitmap`,
//!   `$Extend`... and the root's `.`) are neither listed nor resolvable.
//! - size: the length of the unnamed `$DATA` stream (0 for directories);
//!   named streams (ADS) are not shown.
//! - times: `$STANDARD_INFORMATION` modification and access times,
//!   FILETIME (100 ns since 1601) to Unix seconds, rounded down.
//! - mode: synthesized, NTFS keeps Windows ACLs and no Unix bits:
//!   directories 0755, files 0644, or 0555/0444 with the read-only
//!   attribute. Owner: uid/gid 0 (SIDs do not map to Unix ids without a
//!   user mapping, which the image does not carry).
//! - kind: Interix symlinks (what ntfs-3g writes: a SYSTEM file whose data
//!   is `IntxLNK\1` + UTF-16 target) are symlinks, followed by `read_file`
//!   when they are the last path component; other reparse points
//!   (Windows symlinks, junctions, dedup, cloud placeholders) are `Other`
//!   and not read.
//!
//! Data: resident and non-resident, sparse runs (holes read as zeros),
//! fragmented and attribute-list files, bytes past the initialized size
//! read as zeros (see `data` and `io`: the crate's own value reader is
//! bypassed for file data). Compressed and encrypted files are refused
//! with an error naming the file: the crate does not decompress LZNT1.
//!
//! The crate returns errors for most malformed records and indexes, and
//! panics on some failed or short reads: every entry point runs behind
//! the panic boundary of `guard`, which turns a panic into an error naming
//! the volume. Directory indexes are walked by `index`, not by the crate's
//! iterator and finder, which loop on a B-tree that points back into
//! itself.

mod data;
mod guard;
mod index;
mod io;

use crate::error::repo_damage;
use crate::{base_name, normalize, Entry, EntryKind, Error, Filesystem, FsType, Result};
use data::{data_size, DataReader};
use guard::guarded;
use io::VolumeIo;
use lifeboat_vdisk::ReadDisk;
use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileNamespace};
use ntfs::{Ntfs, NtfsError, NtfsFile, NtfsReadSeek};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// MFT records below this one are the filesystem's own metadata files.
const FIRST_USER_RECORD: u64 = 16;
/// Interix symlink data: this magic, then the UTF-16LE target.
const INTERIX_LINK: &[u8] = b"IntxLNK\x01";
/// Largest Interix symlink read (magic + 4096 UTF-16 units).
const INTERIX_MAX: u64 = 8 + 2 * 4096;
/// Symlinks followed by one `read_file` before giving up.
const MAX_FOLLOW: usize = 40;
/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const EPOCH_DIFF: i128 = 116_444_736_000_000_000;

/// An NTFS filesystem on one volume.
pub struct NtfsFs {
    volume: String,
    disk: Arc<dyn ReadDisk>,
    ntfs: Ntfs,
    /// Directories already resolved: the path as asked (components joined
    /// by `/`) to its stored spelling and record. A restore point never
    /// changes, so an entry stays true; bounded by [`DIR_CACHE_ENTRIES`].
    dirs: Mutex<HashMap<String, (Vec<String>, u64)>>,
}

/// Most directories [`NtfsFs`] remembers (a hostile volume may have
/// millions; past this, paths are resolved from the root again).
const DIR_CACHE_ENTRIES: usize = 4096;

/// NtfsError -> Error naming the volume and path; a disk read error keeps
/// its cause (a damaged chunk stays recognisable).
pub(crate) fn ntfs_err(volume: &str, path: &str, e: NtfsError) -> Error {
    let (volume, path) = (volume.to_string(), path.to_string());
    match e {
        NtfsError::Io(io) => {
            let damaged = io.get_ref().is_some_and(|inner| repo_damage(inner));
            let detail = io
                .get_ref()
                .map_or_else(|| io.to_string(), |i| i.to_string());
            Error::Io {
                volume,
                path,
                detail,
                damaged,
            }
        }
        NtfsError::NotADirectory { .. } => Error::NotADirectory { volume, path },
        other => Error::Corrupt {
            volume,
            path,
            fs: "ntfs",
            detail: other.to_string(),
        },
    }
}

/// FILETIME (100 ns since 1601) -> Unix seconds.
fn unix_seconds(filetime: u64) -> i64 {
    let secs = (i128::from(filetime) - EPOCH_DIFF).div_euclid(10_000_000);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// `dir` + `/` + `name`.
fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// What a record is, beyond file/directory.
enum Special {
    None,
    Symlink(String),
    Reparse,
}

impl NtfsFs {
    /// Reads the boot sector and the `$UpCase` table of `disk`.
    pub fn open(volume: &str, disk: Arc<dyn ReadDisk>) -> Result<NtfsFs> {
        let err = |e| ntfs_err(volume, "/", e);
        // A clearer error than the parser's for a volume too small to
        // hold a boot sector.
        if disk.size() < 512 {
            return Err(Error::Corrupt {
                volume: volume.to_string(),
                path: "/".to_string(),
                fs: "ntfs",
                detail: format!(
                    "a {}-byte volume cannot hold the 512-byte boot sector",
                    disk.size()
                ),
            });
        }
        // The crate parses the boot sector a field (and the boot code a
        // byte) per read: hand it the sector read once.
        let mut boot = vec![0u8; 512];
        disk.read_at(&mut boot, 0).map_err(|e| Error::Io {
            volume: volume.to_string(),
            path: "/".to_string(),
            detail: e.to_string(),
            damaged: repo_damage(&e),
        })?;
        let ntfs = guarded(volume, "/", disk.as_ref(), |io| {
            let mut ntfs = Ntfs::new(&mut std::io::Cursor::new(boot)).map_err(err)?;
            if ntfs.size() > disk.size() {
                return Err(Error::Corrupt {
                    volume: volume.to_string(),
                    path: "/".to_string(),
                    fs: "ntfs",
                    detail: format!(
                        "the boot sector says {} bytes but the volume holds {} (cut short?)",
                        ntfs.size(),
                        disk.size()
                    ),
                });
            }
            ntfs.read_upcase_table(io).map_err(err)?;
            Ok(ntfs)
        })?;
        Ok(NtfsFs {
            volume: volume.to_string(),
            disk,
            ntfs,
            dirs: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `f` (the body of an entry point) behind the panic boundary.
    fn guarded<'s, T>(
        &'s self,
        path: &str,
        f: impl FnOnce(&mut VolumeIo<'s>) -> Result<T>,
    ) -> Result<T> {
        guarded(&self.volume, path, self.disk.as_ref(), f)
    }

    fn err(&self, path: &str) -> impl Fn(NtfsError) -> Error + '_ {
        let path = path.to_string();
        move |e| ntfs_err(&self.volume, &path, e)
    }

    fn not_found(&self, path: &str) -> Error {
        Error::NotFound {
            volume: self.volume.clone(),
            path: path.to_string(),
        }
    }

    /// Resolves `path` (normalized) to its canonical spelling and record.
    /// Symlinks are not followed; `.` and `..` are. A walk resolves every
    /// entry's path, so the directories on the way are remembered: the
    /// deepest one already resolved is the starting point.
    fn resolve(&self, io: &mut VolumeIo<'_>, path: &str) -> Result<(String, NtfsFile<'_>)> {
        let err = self.err(path);
        let comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if comps.contains(&"..") {
            return self.resolve_from_root(io, path);
        }
        let cached = (1..comps.len()).rev().find_map(|k| {
            let dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            dirs.get(&comps[..k].join("/")).map(|hit| (k, hit.clone()))
        });
        let (start, mut names, mut cur) = match cached {
            Some((k, (names, record))) => (k, names, self.ntfs.file(io, record).map_err(&err)?),
            None => (0, Vec::new(), self.ntfs.root_directory(io).map_err(&err)?),
        };
        for (k, comp) in comps.iter().enumerate().skip(start) {
            let (name, record, next) = self.descend(io, &cur, comp, path)?;
            cur = next;
            names.push(name);
            if cur.is_directory() {
                let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
                if dirs.len() < DIR_CACHE_ENTRIES {
                    dirs.insert(comps[..=k].join("/"), (names.clone(), record));
                }
            }
        }
        Ok((format!("/{}", names.join("/")), cur))
    }

    /// [`NtfsFs::resolve`] without the remembered directories, for paths
    /// with `..`.
    fn resolve_from_root(
        &self,
        io: &mut VolumeIo<'_>,
        path: &str,
    ) -> Result<(String, NtfsFile<'_>)> {
        let err = self.err(path);
        let mut cur = self.ntfs.root_directory(io).map_err(&err)?;
        let mut parents: Vec<NtfsFile<'_>> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp == ".." {
                if let Some(p) = parents.pop() {
                    cur = p;
                    names.pop();
                }
                continue;
            }
            let (name, _, next) = self.descend(io, &cur, comp, path)?;
            parents.push(std::mem::replace(&mut cur, next));
            names.push(name);
        }
        Ok((format!("/{}", names.join("/")), cur))
    }

    /// One step down from directory `dir` to its entry `comp`: the entry's
    /// stored spelling, record and file.
    fn descend<'n>(
        &'n self,
        io: &mut VolumeIo<'_>,
        dir: &NtfsFile<'n>,
        comp: &str,
        path: &str,
    ) -> Result<(String, u64, NtfsFile<'n>)> {
        if !dir.is_directory() {
            return Err(Error::NotADirectory {
                volume: self.volume.clone(),
                path: path.to_string(),
            });
        }
        let (name, record) = self.lookup(io, dir, comp, path)?;
        let file = self.ntfs.file(io, record).map_err(self.err(path))?;
        Ok((name, record, file))
    }

    /// Finds `name` in directory `dir`: its stored spelling and record.
    fn lookup(
        &self,
        io: &mut VolumeIo<'_>,
        dir: &NtfsFile<'_>,
        name: &str,
        path: &str,
    ) -> Result<(String, u64)> {
        let hit = self
            .find_index_entry(io, dir, path, name)?
            .ok_or_else(|| self.not_found(path))?;
        let found = if hit.0 == name {
            hit
        } else {
            // Another entry may match exactly (names differing in case).
            self.entries(io, dir, path)?
                .into_iter()
                .find(|(n, _)| n == name)
                .unwrap_or(hit)
        };
        if found.1 < FIRST_USER_RECORD {
            return Err(self.not_found(path));
        }
        Ok(found)
    }

    /// The listed entries of directory `dir`: (name, record), without DOS
    /// aliases and metadata files, in index order.
    fn entries(
        &self,
        io: &mut VolumeIo<'_>,
        dir: &NtfsFile<'_>,
        path: &str,
    ) -> Result<Vec<(String, u64)>> {
        let err = self.err(path);
        let mut out = Vec::new();
        self.each_index_entry(io, dir, path, |entry| {
            let Some(key) = entry.key() else {
                return Ok(());
            };
            let key = key.map_err(&err)?;
            let record = entry.file_reference().file_record_number();
            if key.namespace() == NtfsFileNamespace::Dos || record < FIRST_USER_RECORD {
                return Ok(());
            }
            let name = key.name().to_string_lossy();
            // Not a name a path can hold: it would stand for the directory
            // itself, its parent or a deeper path.
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                return Err(Error::Corrupt {
                    volume: self.volume.clone(),
                    path: path.to_string(),
                    fs: "ntfs",
                    detail: format!("a directory entry (record {record}) is named {name:?}"),
                });
            }
            out.push((name, record));
            Ok(())
        })?;
        Ok(out)
    }

    /// Symlink or reparse point? Reads the data of SYSTEM files that may
    /// be Interix symlinks.
    fn special(
        &self,
        io: &mut VolumeIo<'_>,
        file: &NtfsFile<'_>,
        attrs: NtfsFileAttributeFlags,
        path: &str,
    ) -> Result<Special> {
        if attrs.contains(NtfsFileAttributeFlags::REPARSE_POINT) {
            return Ok(Special::Reparse);
        }
        if !attrs.contains(NtfsFileAttributeFlags::SYSTEM) || file.is_directory() {
            return Ok(Special::None);
        }
        let err = self.err(path);
        let Some(item) = file.data(io, "") else {
            return Ok(Special::None);
        };
        let item = item.map_err(&err)?;
        let attr = item.to_attribute().map_err(&err)?;
        let len = attr.value_length();
        if !(INTERIX_LINK.len() as u64..=INTERIX_MAX).contains(&len) || len % 2 != 0 {
            return Ok(Special::None);
        }
        let mut data = vec![0u8; len as usize];
        let mut value = attr.value(io).map_err(&err)?;
        value.read_exact(io, &mut data).map_err(&err)?;
        let Some(target) = data.strip_prefix(INTERIX_LINK) else {
            return Ok(Special::None);
        };
        let units: Vec<u16> = target
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(Special::Symlink(String::from_utf16_lossy(&units)))
    }

    /// The entry of `file`, found at `path`.
    fn entry(&self, io: &mut VolumeIo<'_>, path: &str, file: &NtfsFile<'_>) -> Result<Entry> {
        let err = self.err(path);
        let info = file.info().map_err(&err)?;
        let attrs = info.file_attributes();
        let read_only = attrs.contains(NtfsFileAttributeFlags::READ_ONLY);
        let (kind, size, symlink_target) = if file.is_directory() {
            (EntryKind::Dir, 0, None)
        } else {
            let size = data_size(io, file).map_err(&err)?;
            match self.special(io, file, attrs, path)? {
                Special::None => (EntryKind::File, size, None),
                Special::Reparse => (EntryKind::Other, size, None),
                Special::Symlink(t) => (EntryKind::Symlink, t.len() as u64, Some(t)),
            }
        };
        let mode = match (kind, read_only) {
            (EntryKind::Dir, false) => 0o755,
            (EntryKind::Dir, true) => 0o555,
            (EntryKind::Symlink, _) => 0o777,
            (_, false) => 0o644,
            (_, true) => 0o444,
        };
        Ok(Entry {
            name: base_name(path),
            path: path.to_string(),
            kind,
            size,
            mode,
            uid: 0,
            gid: 0,
            mtime: unix_seconds(info.modification_time().nt_timestamp()),
            atime: unix_seconds(info.access_time().nt_timestamp()),
            symlink_target,
        })
    }
}

impl Filesystem for NtfsFs {
    fn fs_type(&self) -> FsType {
        FsType::Ntfs
    }

    fn volume(&self) -> &str {
        &self.volume
    }

    fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let path = normalize(&self.volume, path)?;
        self.guarded(&path, |io| self.list_in(io, path.clone()))
    }

    fn stat(&self, path: &str) -> Result<Entry> {
        let path = normalize(&self.volume, path)?;
        self.guarded(&path, |io| {
            let (canon, file) = self.resolve(io, &path)?;
            self.entry(io, &canon, &file)
        })
    }

    fn read_file<'a>(&'a self, path: &str) -> Result<Box<dyn Read + 'a>> {
        let path = normalize(&self.volume, path)?;
        self.guarded(&path, |io| self.read_file_in(io, path.clone()))
    }
}

/// The bodies of the entry points, run behind the panic boundary.
impl NtfsFs {
    fn list_in(&self, io: &mut VolumeIo<'_>, path: String) -> Result<Vec<Entry>> {
        let (canon, dir) = self.resolve(io, &path)?;
        if !dir.is_directory() {
            return Err(Error::NotADirectory {
                volume: self.volume.clone(),
                path,
            });
        }
        let mut out = Vec::new();
        for (name, record) in self.entries(io, &dir, &path)? {
            let child = join(&canon, &name);
            let file = self
                .ntfs
                .file(io, record)
                .map_err(|e| ntfs_err(&self.volume, &child, e))?;
            out.push(self.entry(io, &child, &file)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read_file_in<'a>(
        &'a self,
        io: &mut VolumeIo<'_>,
        mut path: String,
    ) -> Result<Box<dyn Read + 'a>> {
        for _ in 0..MAX_FOLLOW {
            let (canon, file) = self.resolve(io, &path)?;
            if file.is_directory() {
                return Err(Error::IsADirectory {
                    volume: self.volume.clone(),
                    path,
                });
            }
            let attrs = file.info().map_err(self.err(&path))?.file_attributes();
            match self.special(io, &file, attrs, &path)? {
                Special::None => {
                    let encrypted = attrs.contains(NtfsFileAttributeFlags::ENCRYPTED);
                    let r = DataReader::open(self, io, path, &file, encrypted)?;
                    return Ok(Box::new(r));
                }
                Special::Reparse => {
                    return Err(Error::NotAFile {
                        volume: self.volume.clone(),
                        path,
                    })
                }
                Special::Symlink(target) if target.starts_with('/') => path = target,
                Special::Symlink(target) => {
                    let parent = canon.rsplit_once('/').map_or("", |(p, _)| p);
                    path = format!("{parent}/{target}");
                }
            }
        }
        Err(Error::BadPath {
            volume: self.volume.clone(),
            path,
            detail: format!("more than {MAX_FOLLOW} symlinks followed"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetime_to_unix() {
        assert_eq!(unix_seconds(116_444_736_000_000_000), 0);
        assert_eq!(unix_seconds(116_444_736_000_000_000 + 15_999_999), 1);
        assert_eq!(unix_seconds(116_444_736_000_000_000 - 1), -1);
        assert_eq!(unix_seconds(0), -11_644_473_600);
        assert_eq!(unix_seconds(u64::MAX), 1_833_029_933_770);
    }
}
