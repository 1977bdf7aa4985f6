//! vfat (FAT12/16/32) through the `fatfs` crate, over [`DiskIo`], a
//! `Read + Seek` cursor on a `ReadDisk` whose `Write` always fails, so
//! nothing can ever be written to the volume. FAT has no owners or
//! permission bits: entries report uid/gid 0, mode 0755 for directories,
//! 0644 for files (0444 when the read-only attribute is set). FAT times are
//! local time without a zone; they are reported as if they were UTC.

use crate::error::repo_damage;
use crate::{base_name, normalize, Entry, EntryKind, Error, Filesystem, FsType, Result};
use fatfs::{FileAttributes, FsOptions};
use lifeboat_vdisk::ReadDisk;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// A read-only cursor over a volume.
pub struct DiskIo {
    disk: Arc<dyn ReadDisk>,
    pos: u64,
}

impl Read for DiskIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.disk.size().saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        self.disk.read_at(dst, self.pos).map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DiskIo {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.disk.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::other("seek before the start of the volume"))?;
        Ok(self.pos)
    }
}

impl Write for DiskIo {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("the volume is read-only"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A FAT filesystem on one volume.
pub struct FatFs {
    volume: String,
    fs: fatfs::FileSystem<DiskIo>,
}

fn io_err(volume: &str, path: &str, e: io::Error) -> Error {
    let (volume, path) = (volume.to_string(), path.to_string());
    match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound { volume, path },
        _ => {
            let damaged = e.get_ref().is_some_and(|inner| repo_damage(inner));
            let detail = e
                .get_ref()
                .map(|i| i.to_string())
                .unwrap_or_else(|| e.to_string());
            Error::Io {
                volume,
                path,
                detail,
                damaged,
            }
        }
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn unix(dt: fatfs::DateTime) -> i64 {
    let days = days_from_civil(
        i64::from(dt.date.year),
        i64::from(dt.date.month),
        i64::from(dt.date.day),
    );
    days * 86400
        + i64::from(dt.time.hour) * 3600
        + i64::from(dt.time.min) * 60
        + i64::from(dt.time.sec)
}

impl FatFs {
    /// Mounts (reads the boot sector of) `disk`.
    pub fn open(volume: &str, disk: Arc<dyn ReadDisk>) -> Result<FatFs> {
        let fs =
            fatfs::FileSystem::new(DiskIo { disk, pos: 0 }, FsOptions::new()).map_err(|e| {
                Error::Corrupt {
                    volume: volume.to_string(),
                    path: "/".to_string(),
                    fs: "vfat",
                    detail: e.to_string(),
                }
            })?;
        Ok(FatFs {
            volume: volume.to_string(),
            fs,
        })
    }

    fn dir(&self, path: &str) -> Result<fatfs::Dir<'_, DiskIo>> {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return Ok(self.fs.root_dir());
        }
        self.fs
            .root_dir()
            .open_dir(rel)
            .map_err(|e| io_err(&self.volume, path, e))
    }

    fn entry(path: &str, e: &fatfs::DirEntry<'_, DiskIo>) -> Entry {
        let kind = if e.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        let mode = match kind {
            EntryKind::Dir => 0o755,
            _ if e.attributes().contains(FileAttributes::READ_ONLY) => 0o444,
            _ => 0o644,
        };
        let accessed = fatfs::DateTime {
            date: e.accessed(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        };
        Entry {
            name: base_name(path),
            path: path.to_string(),
            kind,
            size: if kind == EntryKind::Dir { 0 } else { e.len() },
            mode,
            uid: 0,
            gid: 0,
            mtime: unix(e.modified()),
            atime: unix(accessed),
            symlink_target: None,
        }
    }

    fn join(dir: &str, name: &str) -> String {
        if dir == "/" {
            format!("/{name}")
        } else {
            format!("{dir}/{name}")
        }
    }
}

impl Filesystem for FatFs {
    fn fs_type(&self) -> FsType {
        FsType::Vfat
    }

    fn volume(&self) -> &str {
        &self.volume
    }

    fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let path = normalize(&self.volume, path)?;
        if path != "/" && self.stat(&path)?.kind != EntryKind::Dir {
            return Err(Error::NotADirectory {
                volume: self.volume.clone(),
                path,
            });
        }
        let mut out = Vec::new();
        for item in self.dir(&path)?.iter() {
            let e = item.map_err(|e| io_err(&self.volume, &path, e))?;
            let name = e.file_name();
            if name == "." || name == ".." || e.attributes().contains(FileAttributes::VOLUME_ID) {
                continue;
            }
            out.push(Self::entry(&Self::join(&path, &name), &e));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn stat(&self, path: &str) -> Result<Entry> {
        let path = normalize(&self.volume, path)?;
        if path == "/" {
            return Ok(Entry {
                name: "/".to_string(),
                path,
                kind: EntryKind::Dir,
                size: 0,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
                atime: 0,
                symlink_target: None,
            });
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let parent = if parent.is_empty() { "/" } else { parent };
        for item in self.dir(parent)?.iter() {
            let e = item.map_err(|e| io_err(&self.volume, &path, e))?;
            if e.file_name().eq_ignore_ascii_case(name) {
                return Ok(Self::entry(&Self::join(parent, &e.file_name()), &e));
            }
        }
        Err(Error::NotFound {
            volume: self.volume.clone(),
            path,
        })
    }

    fn read_file<'a>(&'a self, path: &str) -> Result<Box<dyn Read + 'a>> {
        let path = normalize(&self.volume, path)?;
        if self.stat(&path)?.kind == EntryKind::Dir {
            return Err(Error::IsADirectory {
                volume: self.volume.clone(),
                path,
            });
        }
        let file = self
            .fs
            .root_dir()
            .open_file(path.trim_start_matches('/'))
            .map_err(|e| io_err(&self.volume, &path, e))?;
        Ok(Box::new(FatReader {
            file,
            volume: self.volume.clone(),
            path,
        }))
    }
}

/// Streams one file; errors name the volume and path.
struct FatReader<'a> {
    file: fatfs::File<'a, DiskIo>,
    volume: String,
    path: String,
}

impl Read for FatReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file
            .read(buf)
            .map_err(|e| io::Error::other(io_err(&self.volume, &self.path, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(days_from_civil(2020, 9, 13), 18518);
    }
}
