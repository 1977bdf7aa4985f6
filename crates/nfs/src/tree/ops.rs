//! The NFS operations of [`SessionTree`]: attributes, lookups, I/O on disk
//! files and on the real files of the cache folders.
//!
//! Modes never keep the setuid and setgid bits ([`stored_mode`]): files a
//! client writes land in a cache folder on this host, and a setuid file
//! there must not become a way to run something as root. Owners and
//! groups are applied (chown) as SETATTR asks; who may ask is decided by
//! the NFS layer (nfs/perm.rs).
//!
//! EXCLUSIVE CREATE stores the client's verifier in the new file's atime
//! and mtime seconds (as Linux's knfsd does), so a retried CREATE with the
//! same verifier finds its own file and succeeds.

use super::{check_name, Node, Session, SessionTree};
use crate::backend::*;
use lifeboat_vdisk::SharedBytes;
use std::fs::{File, FileTimes, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn io_err(path: &Path, e: std::io::Error) -> NfsError {
    NfsError::from_io(path.display(), &e)
}

fn real_attr(m: &std::fs::Metadata, fileid: u64) -> Attr {
    let t = |s: i64, n: i64| Time {
        secs: u32::try_from(s).unwrap_or(0),
        nsecs: u32::try_from(n).unwrap_or(0),
    };
    Attr {
        ftype: if m.is_dir() {
            FileType::Directory
        } else {
            FileType::Regular
        },
        mode: m.mode() & 0o7777,
        nlink: u32::try_from(m.nlink()).unwrap_or(u32::MAX),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        used: m.blocks().saturating_mul(512),
        fileid,
        atime: t(m.atime(), m.atime_nsec()),
        mtime: t(m.mtime(), m.mtime_nsec()),
        ctime: t(m.ctime(), m.ctime_nsec()),
    }
}

fn perm() -> NfsError {
    NfsError::new(
        Status::Acces,
        "disk files and the root cannot be changed this way",
    )
}

/// The mode bits kept for a mode a client asks for: permissions and the
/// sticky bit, never setuid or setgid.
pub(crate) fn stored_mode(mode: u32) -> u32 {
    mode & 0o1777
}

fn set_time(t: SetTime) -> Option<std::time::SystemTime> {
    match t {
        SetTime::DontChange => None,
        SetTime::ServerTime => Some(std::time::SystemTime::now()),
        SetTime::Client(t) => Some(t.to_system()),
    }
}

impl SessionTree {
    fn attr(&self, node: &Node) -> NfsResult<Attr> {
        match node {
            Node::Root => {
                let t = *self.changed.lock().unwrap_or_else(|e| e.into_inner());
                Ok(Attr {
                    ftype: FileType::Directory,
                    mode: 0o555,
                    nlink: 2,
                    uid: 0,
                    gid: 0,
                    size: 4096,
                    used: 4096,
                    fileid: super::handle::ROOT_OBJECT,
                    atime: t,
                    mtime: t,
                    ctime: t,
                })
            }
            Node::Disk(s, i) => {
                let d = s.disks.get(*i).ok_or_else(perm)?;
                let (atime, mtime) = *d.times.lock().unwrap_or_else(|e| e.into_inner());
                let (uid, gid) = *d.owner.lock().unwrap_or_else(|e| e.into_inner());
                let size = d.disk.size();
                Ok(Attr {
                    ftype: FileType::Regular,
                    mode: *d.mode.lock().unwrap_or_else(|e| e.into_inner()),
                    nlink: 1,
                    uid,
                    gid,
                    size,
                    used: size,
                    fileid: d.object,
                    atime,
                    mtime,
                    ctime: mtime,
                })
            }
            Node::Dir(s, rel) | Node::File(s, rel) => {
                let p = s.path(rel);
                let m = std::fs::metadata(&p).map_err(|e| io_err(&p, e))?;
                Ok(real_attr(&m, m.ino()))
            }
        }
    }

    /// The (handle, attr) of `name` in `dir`.
    fn child(&self, dir: &Node, name: &str) -> NfsResult<(Vec<u8>, Attr)> {
        let noent = || NfsError::new(Status::NoEnt, format!("no entry {name:?}"));
        match (dir, name) {
            (Node::Root, "." | "..") => Ok((self.root_handle(), self.attr(&Node::Root)?)),
            (Node::Root, _) => {
                let s = self.session(name).ok_or_else(noent)?;
                let a = self.attr(&Node::Dir(s.clone(), PathBuf::new()))?;
                Ok((self.session_handle(&s), a))
            }
            (Node::Dir(s, rel), ".") => self.real_child(s, rel.clone()),
            (Node::Dir(s, rel), "..") => match rel.parent() {
                None => Ok((self.root_handle(), self.attr(&Node::Root)?)),
                Some(p) => self.real_child(s, p.to_owned()),
            },
            (Node::Dir(s, rel), _) => {
                check_name(name)?;
                if rel.as_os_str().is_empty() {
                    if let Some(i) = s.disk_index(name) {
                        let a = self.attr(&Node::Disk(s.clone(), i))?;
                        return Ok((self.disk_handle(s, i), a));
                    }
                }
                self.real_child(s, rel.join(name))
            }
            _ => Err(NfsError::new(Status::NotDir, "not a directory")),
        }
    }

    fn real_child(&self, s: &Arc<Session>, rel: PathBuf) -> NfsResult<(Vec<u8>, Attr)> {
        let p = s.path(&rel);
        let m = std::fs::metadata(&p).map_err(|e| io_err(&p, e))?;
        Ok((self.cache_handle(s, &rel, m.ino()), real_attr(&m, m.ino())))
    }

    /// The session and folder of a directory that may get new entries.
    fn writable_dir(&self, fh: &[u8], name: &str) -> NfsResult<(Arc<Session>, PathBuf)> {
        check_name(name)?;
        match self.resolve(fh)? {
            Node::Dir(s, rel) => {
                if rel.as_os_str().is_empty() && s.disk_index(name).is_some() {
                    return Err(NfsError::new(
                        Status::Acces,
                        format!("{name} is a disk file"),
                    ));
                }
                Ok((s, rel))
            }
            Node::Root => Err(perm()),
            _ => Err(NfsError::new(Status::NotDir, "not a directory")),
        }
    }

    fn apply(&self, p: &Path, set: &SetAttr) -> NfsResult<()> {
        let m = std::fs::metadata(p).map_err(|e| io_err(p, e))?;
        if let Some(size) = set.size {
            if m.is_dir() {
                return Err(NfsError::new(Status::IsDir, "size of a directory"));
            }
            let f = OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| io_err(p, e))?;
            f.set_len(size).map_err(|e| io_err(p, e))?;
        }
        if set.uid.is_some_and(|u| u != m.uid()) || set.gid.is_some_and(|g| g != m.gid()) {
            std::os::unix::fs::chown(p, set.uid, set.gid).map_err(|e| io_err(p, e))?;
        }
        if let Some(mode) = set.mode {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(stored_mode(mode)))
                .map_err(|e| io_err(p, e))?;
        }
        let (a, mt) = (set_time(set.atime), set_time(set.mtime));
        if a.is_some() || mt.is_some() {
            let f = File::open(p).map_err(|e| io_err(p, e))?;
            let mut times = FileTimes::new();
            if let Some(a) = a {
                times = times.set_accessed(a);
            }
            if let Some(mt) = mt {
                times = times.set_modified(mt);
            }
            f.set_times(times).map_err(|e| io_err(p, e))?;
        }
        Ok(())
    }
}

impl NfsBackend for SessionTree {
    fn permits(&self, peer: std::net::IpAddr, fh: &[u8]) -> bool {
        self.handle_permits(peer, fh)
    }

    fn admits(&self, peer: std::net::IpAddr) -> bool {
        self.admits_peer(peer)
    }

    fn mount(&self, path: &str) -> NfsResult<Vec<u8>> {
        let mut node = Node::Root;
        let mut fh = self.root_handle();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let (h, a) = self.child(&node, part)?;
            if a.ftype != FileType::Directory {
                return Err(NfsError::new(
                    Status::NotDir,
                    format!("{path}: not a directory"),
                ));
            }
            node = self.resolve(&h)?;
            fh = h;
        }
        Ok(fh)
    }

    fn getattr(&self, fh: &[u8]) -> NfsResult<Attr> {
        self.attr(&self.resolve(fh)?)
    }

    fn setattr(&self, fh: &[u8], set: &SetAttr) -> NfsResult<Attr> {
        let node = self.resolve(fh)?;
        match &node {
            Node::Root => return Err(perm()),
            Node::Disk(s, i) => {
                let d = s.disks.get(*i).ok_or_else(perm)?;
                if set.size.is_some_and(|n| n != d.disk.size()) {
                    return Err(NfsError::new(
                        Status::Inval,
                        format!("{} has a fixed size", d.name),
                    ));
                }
                if let Some(mode) = set.mode {
                    *d.mode.lock().unwrap_or_else(|e| e.into_inner()) = stored_mode(mode);
                }
                {
                    let mut o = d.owner.lock().unwrap_or_else(|e| e.into_inner());
                    o.0 = set.uid.unwrap_or(o.0);
                    o.1 = set.gid.unwrap_or(o.1);
                }
                let mut t = d.times.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(a) = set_time(set.atime) {
                    t.0 = Time::from_system(a);
                }
                if let Some(m) = set_time(set.mtime) {
                    t.1 = Time::from_system(m);
                }
            }
            Node::Dir(s, rel) | Node::File(s, rel) => self.apply(&s.path(rel), set)?,
        }
        self.attr(&node)
    }

    fn lookup(&self, dir: &[u8], name: &str) -> NfsResult<(Vec<u8>, Attr)> {
        let node = self.resolve(dir)?;
        self.child(&node, name)
    }

    fn read(&self, fh: &[u8], offset: u64, buf: &mut [u8]) -> NfsResult<(usize, bool)> {
        match self.resolve(fh)? {
            Node::Disk(s, i) => {
                let d = s.disks.get(i).ok_or_else(perm)?;
                let size = d.disk.size();
                let n = (size.saturating_sub(offset)).min(buf.len() as u64) as usize;
                d.disk
                    .read_at(&mut buf[..n], offset)
                    .map_err(|e| NfsError::from_disk(&e))?;
                Ok((n, offset.saturating_add(n as u64) >= size))
            }
            Node::File(s, rel) => {
                let p = s.path(&rel);
                let f = File::open(&p).map_err(|e| io_err(&p, e))?;
                let size = f.metadata().map_err(|e| io_err(&p, e))?.len();
                let mut n = 0;
                while n < buf.len() {
                    match f.read_at(&mut buf[n..], offset.saturating_add(n as u64)) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io_err(&p, e)),
                    }
                }
                Ok((n, offset.saturating_add(n as u64) >= size))
            }
            _ => Err(NfsError::new(Status::IsDir, "READ of a directory")),
        }
    }

    /// Disk files: views of the cached blocks under the overlay (no copy);
    /// other files are read into a buffer.
    fn read_shared(
        &self,
        fh: &[u8],
        offset: u64,
        count: usize,
    ) -> NfsResult<(Vec<SharedBytes>, bool)> {
        match self.resolve(fh)? {
            Node::Disk(s, i) => {
                let d = s.disks.get(i).ok_or_else(perm)?;
                let size = d.disk.size();
                let n = (size.saturating_sub(offset)).min(count as u64) as usize;
                let parts = d
                    .disk
                    .read_shared(offset, n)
                    .map_err(|e| NfsError::from_disk(&e))?;
                Ok((parts, offset.saturating_add(n as u64) >= size))
            }
            _ => read_copied(self, fh, offset, count),
        }
    }

    fn write(
        &self,
        fh: &[u8],
        offset: u64,
        data: &[u8],
        stable: Stable,
    ) -> NfsResult<(Stable, Attr)> {
        let node = self.resolve(fh)?;
        let done = match &node {
            Node::Disk(s, i) => {
                let d = s.disks.get(*i).ok_or_else(perm)?;
                let size = d.disk.size();
                if offset
                    .checked_add(data.len() as u64)
                    .is_none_or(|end| end > size)
                {
                    return Err(NfsError::new(
                        Status::FBig,
                        format!(
                            "{}: write of {} at {offset} past the end ({size})",
                            d.name,
                            data.len()
                        ),
                    ));
                }
                d.disk
                    .write_at(data, offset)
                    .map_err(|e| NfsError::from_disk(&e))?;
                if stable != Stable::Unstable {
                    d.disk.flush().map_err(|e| NfsError::from_disk(&e))?;
                }
                d.times.lock().unwrap_or_else(|e| e.into_inner()).1 = Time::now();
                if stable == Stable::Unstable {
                    Stable::Unstable
                } else {
                    Stable::FileSync
                }
            }
            Node::File(s, rel) => {
                let p = s.path(rel);
                let f = OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(|e| io_err(&p, e))?;
                f.write_all_at(data, offset).map_err(|e| io_err(&p, e))?;
                if stable != Stable::Unstable {
                    f.sync_all().map_err(|e| io_err(&p, e))?;
                    Stable::FileSync
                } else {
                    Stable::Unstable
                }
            }
            _ => return Err(NfsError::new(Status::IsDir, "WRITE to a directory")),
        };
        Ok((done, self.attr(&node)?))
    }

    fn commit(&self, fh: &[u8]) -> NfsResult<Attr> {
        let node = self.resolve(fh)?;
        match &node {
            Node::Disk(s, i) => {
                let d = s.disks.get(*i).ok_or_else(perm)?;
                d.disk.flush().map_err(|e| NfsError::from_disk(&e))?;
            }
            Node::File(s, rel) => {
                let p = s.path(rel);
                let f = File::open(&p).map_err(|e| io_err(&p, e))?;
                f.sync_all().map_err(|e| io_err(&p, e))?;
            }
            _ => {}
        }
        self.attr(&node)
    }

    fn create(&self, dir: &[u8], name: &str, how: &CreateHow) -> NfsResult<(Vec<u8>, Attr)> {
        if let Node::Dir(s, rel) = self.resolve(dir)? {
            if let (true, Some(i)) = (rel.as_os_str().is_empty(), s.disk_index(name)) {
                // An existing disk file: UNCHECKED opens it (without a size
                // change), the others fail with EXIST.
                let CreateHow::Unchecked(set) = how else {
                    return Err(NfsError::new(Status::Exist, format!("{name} exists")));
                };
                let fh = self.disk_handle(&s, i);
                let a = self.setattr(&fh, set)?;
                return Ok((fh, a));
            }
        }
        let (s, rel) = self.writable_dir(dir, name)?;
        let rel = rel.join(name);
        let p = s.path(&rel);
        match how {
            CreateHow::Unchecked(set) | CreateHow::Guarded(set) => {
                let mut o = OpenOptions::new();
                o.write(true);
                if matches!(how, CreateHow::Guarded(_)) {
                    o.create_new(true);
                } else {
                    o.create(true);
                }
                o.open(&p).map_err(|e| io_err(&p, e))?;
                self.apply(&p, set)?;
            }
            CreateHow::Exclusive(verf) => {
                let secs = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let (a, m) = (secs(&verf[..4]), secs(&verf[4..]));
                match OpenOptions::new().write(true).create_new(true).open(&p) {
                    Ok(f) => {
                        let t = |s: u32| Time { secs: s, nsecs: 0 }.to_system();
                        f.set_times(FileTimes::new().set_accessed(t(a)).set_modified(t(m)))
                            .map_err(|e| io_err(&p, e))?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let md = std::fs::metadata(&p).map_err(|e| io_err(&p, e))?;
                        if md.atime() != a as i64 || md.mtime() != m as i64 {
                            return Err(NfsError::new(Status::Exist, format!("{name} exists")));
                        }
                    }
                    Err(e) => return Err(io_err(&p, e)),
                }
            }
        }
        self.real_child(&s, rel)
    }

    fn mkdir(&self, dir: &[u8], name: &str, set: &SetAttr) -> NfsResult<(Vec<u8>, Attr)> {
        let (s, rel) = self.writable_dir(dir, name)?;
        let rel = rel.join(name);
        let p = s.path(&rel);
        std::fs::create_dir(&p).map_err(|e| io_err(&p, e))?;
        self.apply(&p, &SetAttr { size: None, ..*set })?;
        self.real_child(&s, rel)
    }

    fn remove(&self, dir: &[u8], name: &str) -> NfsResult<()> {
        let (s, rel) = self.writable_dir(dir, name)?;
        let p = s.path(&rel.join(name));
        std::fs::remove_file(&p).map_err(|e| io_err(&p, e))
    }

    fn rmdir(&self, dir: &[u8], name: &str) -> NfsResult<()> {
        let (s, rel) = self.writable_dir(dir, name)?;
        let p = s.path(&rel.join(name));
        std::fs::remove_dir(&p).map_err(|e| io_err(&p, e))
    }

    fn rename(&self, from_dir: &[u8], from: &str, to_dir: &[u8], to: &str) -> NfsResult<()> {
        let (s1, r1) = self.writable_dir(from_dir, from)?;
        let (s2, r2) = self.writable_dir(to_dir, to)?;
        if s1.id != s2.id {
            return Err(NfsError::new(Status::XDev, "rename across sessions"));
        }
        let (a, b) = (s1.path(&r1.join(from)), s2.path(&r2.join(to)));
        std::fs::rename(&a, &b).map_err(|e| io_err(&a, e))?;
        if let Ok(m) = std::fs::metadata(&b) {
            s1.remember(m.ino(), r2.join(to));
        }
        Ok(())
    }

    fn readdir(&self, dir: &[u8]) -> NfsResult<Listing> {
        let node = self.resolve(dir)?;
        let here = self.attr(&node)?;
        let mut entries = Vec::new();
        for dot in [".", ".."] {
            let (handle, attr) = self.child(&node, dot)?;
            entries.push(DirEntry {
                name: dot.into(),
                handle,
                attr,
            });
        }
        match &node {
            Node::Root => {
                for s in self.sessions() {
                    let attr = self.attr(&Node::Dir(s.clone(), PathBuf::new()))?;
                    entries.push(DirEntry {
                        name: s.id.clone(),
                        handle: self.session_handle(&s),
                        attr,
                    });
                }
            }
            Node::Dir(s, rel) => {
                if rel.as_os_str().is_empty() {
                    for i in 0..s.disks.len() {
                        let attr = self.attr(&Node::Disk(s.clone(), i))?;
                        let name = s.disks[i].name.clone();
                        entries.push(DirEntry {
                            name,
                            handle: self.disk_handle(s, i),
                            attr,
                        });
                    }
                }
                let p = s.path(rel);
                let mut names: Vec<String> = std::fs::read_dir(&p)
                    .map_err(|e| io_err(&p, e))?
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !(rel.as_os_str().is_empty() && s.disk_index(n).is_some()))
                    .collect();
                names.sort();
                for name in names {
                    if let Ok((handle, attr)) = self.real_child(s, rel.join(&name)) {
                        entries.push(DirEntry { name, handle, attr });
                    }
                }
            }
            _ => return Err(NfsError::new(Status::NotDir, "not a directory")),
        }
        let verifier = here.mtime.as_nanos() ^ (entries.len() as u64) << 48;
        Ok(Listing { verifier, entries })
    }

    fn fsstat(&self, fh: &[u8]) -> NfsResult<FsStat> {
        let node = self.resolve(fh)?;
        let disks: u64 = self
            .sessions()
            .iter()
            .flat_map(|s| s.disks.iter().map(|d| d.disk.size()))
            .sum();
        let free = match &node {
            Node::Dir(s, _) | Node::File(s, _) | Node::Disk(s, _) => free_space(&s.files),
            Node::Root => self.sessions().first().map_or(0, |s| free_space(&s.files)),
        };
        Ok(FsStat {
            total_bytes: disks.saturating_add(free),
            free_bytes: free,
            avail_bytes: free,
            total_files: 1 << 20,
            free_files: 1 << 20,
            avail_files: 1 << 20,
        })
    }
}

/// Free bytes of the file system holding `p` (0 when unknown).
fn free_space(p: &Path) -> u64 {
    rustix::fs::statvfs(p)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0)
}
