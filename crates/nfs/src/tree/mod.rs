//! [`SessionTree`]: the tree the Instant VM Recovery service exports.
//!
//! ```text
//! /                                    virtual, read-only: one folder per session
//! /<session>/                          the session folder = <cache_dir>/files/ (real)
//! /<session>/<vm>-<disk>-flat.vmdk     virtual: the disk's bytes (an Arc<dyn WriteDisk>,
//!                                      in practice an OverlayDisk over a restore point)
//! /<session>/<vm>-<disk>.vmdk          real file: the generated descriptor (vmdk.rs),
//!                                      written at add_session when missing
//! /<session>/<anything else>           real files and folders a hypervisor creates
//!                                      (lock files, logs, .vswp, .vmx), in <cache_dir>/files/
//! ```
//!
//! The flat file is a raw image: QEMU opens it with `format=raw`
//! (`-drive file=nfs://host/lifeboat/<session>/<vm>-<disk>-flat.vmdk,format=raw`).
//! No second `.raw` name is exported: two names for one disk would defeat
//! the hypervisors' lock files and double what a datastore browser shows.
//!
//! Disk files have a fixed size (SETATTR to another size → NFS3ERR_INVAL,
//! a WRITE past the end → NFS3ERR_FBIG) and cannot be removed or renamed
//! (NFS3ERR_ACCES); they start owned by root, mode 0644 (only root may
//! write them; root may give them to another uid or mode with SETATTR),
//! and mode, owner and time changes are kept in memory. Handles are
//! described in handle.rs; the procedures in ops.rs.
//!
//! A session may carry its own client list ([`SessionTree::add_session_for`]):
//! a client the service allows but the session does not gets
//! NFS3ERR_ACCES for every handle of that session (its folder, disk files,
//! cache files) and MNT3ERR_ACCES when mounting it, and the root listing
//! leaves the session out for it (LOOKUP of its name from the root answers
//! ACCES, as MNT does: session ids are not secret, the data is). The check
//! ([`NfsBackend::permits`]) decodes the handle's MAC and finds the session
//! by tag, no file system access. A client no session admits is refused
//! its connections when they are accepted ([`NfsBackend::admits`]), as long
//! as a session is open.
//!
//! Sessions are added and removed at runtime ([`SessionTree::add_session`],
//! [`SessionTree::remove_session`]); handles into a removed session become
//! STALE, and come back to life when a session with the same id and cache
//! folder is added again (after a service restart, for instance).

mod handle;
mod ops;
pub mod vmdk;

pub use handle::{Handle, HandleKey, Kind, HANDLE_LEN};

use crate::access::AllowList;
use crate::backend::{NfsError, NfsResult, Status, Time};
use lifeboat_vdisk::WriteDisk;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Most entries walked when re-discovering a cache object by inode.
const MAX_SCAN: usize = 100_000;

/// Why a session could not be added.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {id:?}: {reason}")]
    Invalid { id: String, reason: String },
    #[error("session {id:?} already exists")]
    Exists { id: String },
    #[error("session {id:?}: {path}: {source}")]
    Io {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A disk of a session, exported as `<vm>-<disk>-flat.vmdk`.
pub(crate) struct DiskFile {
    pub(crate) name: String,
    pub(crate) object: u64,
    pub(crate) disk: Arc<dyn WriteDisk>,
    pub(crate) mode: Mutex<u32>,
    /// (uid, gid): root's until SETATTR gives it away.
    pub(crate) owner: Mutex<(u32, u32)>,
    pub(crate) times: Mutex<(Time, Time)>,
}

/// One session folder.
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) tag: u64,
    pub(crate) files: PathBuf,
    pub(crate) dir_ino: u64,
    pub(crate) disks: Vec<DiskFile>,
    /// Clients that may use this session (`None`: whoever the service allows).
    clients: Option<AllowList>,
    /// inode → path relative to `files`, for cache objects.
    inodes: Mutex<HashMap<u64, PathBuf>>,
}

/// What a handle resolves to.
pub(crate) enum Node {
    Root,
    /// A real folder of a session (`rel` empty: the session folder).
    Dir(Arc<Session>, PathBuf),
    Disk(Arc<Session>, usize),
    File(Arc<Session>, PathBuf),
}

/// Whether `name` can be a single path component.
pub(crate) fn check_name(name: &str) -> NfsResult<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(NfsError::new(
            Status::Inval,
            format!("bad file name {name:?}"),
        ));
    }
    if name.len() > 255 {
        return Err(NfsError::new(
            Status::NameTooLong,
            format!("{} bytes", name.len()),
        ));
    }
    Ok(())
}

impl Session {
    /// Whether `peer` may use this session.
    pub(crate) fn admits(&self, peer: IpAddr) -> bool {
        self.clients.as_ref().is_none_or(|c| c.allows(peer))
    }

    pub(crate) fn path(&self, rel: &Path) -> PathBuf {
        self.files.join(rel)
    }

    pub(crate) fn disk_index(&self, name: &str) -> Option<usize> {
        self.disks.iter().position(|d| d.name == name)
    }

    pub(crate) fn remember(&self, ino: u64, rel: PathBuf) {
        self.inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ino, rel);
    }

    /// The path of cache object `ino`: from the map (checked), else by
    /// walking the cache folder (after a restart).
    pub(crate) fn find(&self, ino: u64) -> Option<PathBuf> {
        if ino == self.dir_ino {
            return Some(PathBuf::new());
        }
        let known = self
            .inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
            .cloned();
        if let Some(rel) = known {
            if std::fs::metadata(self.path(&rel)).is_ok_and(|m| m.ino() == ino) {
                return Some(rel);
            }
        }
        let mut stack = vec![PathBuf::new()];
        let mut seen = 0usize;
        while let Some(rel) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(self.path(&rel)) else {
                continue;
            };
            for e in rd.flatten() {
                seen += 1;
                if seen > MAX_SCAN {
                    return None;
                }
                let Ok(m) = std::fs::metadata(e.path()) else {
                    continue;
                };
                let child = rel.join(e.file_name());
                self.remember(m.ino(), child.clone());
                if m.ino() == ino {
                    return Some(child);
                }
                if m.is_dir() {
                    stack.push(child);
                }
            }
        }
        None
    }
}

/// The exported tree of sessions.
pub struct SessionTree {
    pub(crate) key: HandleKey,
    sessions: RwLock<BTreeMap<String, Arc<Session>>>,
    pub(crate) changed: Mutex<Time>,
}

impl SessionTree {
    /// A tree whose handles are keyed by `key` (keep it across restarts:
    /// [`HandleKey::load_or_create`]).
    pub fn new(key: HandleKey) -> Self {
        SessionTree {
            key,
            sessions: RwLock::default(),
            changed: Mutex::new(Time::now()),
        }
    }

    /// Adds session `id` exporting `disks` (name, disk) of VM `vm`; small
    /// files live in `cache_dir/files` (created). Each disk appears as
    /// `<vm>-<name>-flat.vmdk` with a descriptor `<vm>-<name>.vmdk`.
    /// O(1) in disk size: nothing is copied. Open to every client the
    /// service allows.
    pub fn add_session(
        &self,
        id: &str,
        vm: &str,
        disks: Vec<(String, Arc<dyn WriteDisk>)>,
        cache_dir: &Path,
    ) -> Result<(), SessionError> {
        self.add_session_for(id, vm, disks, cache_dir, None)
    }

    /// [`SessionTree::add_session`] with the clients that may use the
    /// session: `Some(list)` narrows the service's allow list to `list` for
    /// this session (an empty list shuts every client out), `None` does not.
    pub fn add_session_for(
        &self,
        id: &str,
        vm: &str,
        disks: Vec<(String, Arc<dyn WriteDisk>)>,
        cache_dir: &Path,
        clients: Option<AllowList>,
    ) -> Result<(), SessionError> {
        let invalid = |reason: String| SessionError::Invalid {
            id: id.to_owned(),
            reason,
        };
        check_name(id).map_err(|e| invalid(format!("bad session id: {}", e.detail)))?;
        check_name(vm).map_err(|e| invalid(format!("bad VM name: {}", e.detail)))?;
        let files = cache_dir.join("files");
        let io = |path: &Path, source| SessionError::Io {
            id: id.to_owned(),
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(&files).map_err(|e| io(&files, e))?;
        let dir_ino = std::fs::metadata(&files).map_err(|e| io(&files, e))?.ino();
        let now = Time::now();
        let mut list = Vec::new();
        for (name, disk) in disks {
            let flat = format!("{vm}-{name}-flat.vmdk");
            check_name(&flat)
                .map_err(|e| invalid(format!("bad disk name {name:?}: {}", e.detail)))?;
            if list.iter().any(|d: &DiskFile| d.name == flat) {
                return Err(invalid(format!("disk {name:?} given twice")));
            }
            let desc = files.join(format!("{vm}-{name}.vmdk"));
            if !desc.exists() {
                let cid = self.key.hash("cid", &[id.as_bytes(), flat.as_bytes()]) as u32;
                let text = vmdk::descriptor(&flat, disk.size(), cid);
                std::fs::write(&desc, text).map_err(|e| io(&desc, e))?;
            }
            list.push(DiskFile {
                object: self.key.disk_object(id, &flat),
                name: flat,
                disk,
                mode: Mutex::new(0o644),
                owner: Mutex::new((0, 0)),
                times: Mutex::new((now, now)),
            });
        }
        let session = Arc::new(Session {
            id: id.to_owned(),
            tag: self.key.session_tag(id),
            files,
            dir_ino,
            disks: list,
            clients,
            inodes: Mutex::default(),
        });
        let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        if sessions.contains_key(id) {
            return Err(SessionError::Exists { id: id.to_owned() });
        }
        sessions.insert(id.to_owned(), session);
        *self.changed.lock().unwrap_or_else(|e| e.into_inner()) = Time::now();
        Ok(())
    }

    /// Removes session `id` from the tree (its files stay in the cache
    /// folder); true if it existed. Its handles become STALE.
    pub fn remove_session(&self, id: &str) -> bool {
        let removed = self
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
            .is_some();
        if removed {
            *self.changed.lock().unwrap_or_else(|e| e.into_inner()) = Time::now();
        }
        removed
    }

    /// The ids of the sessions, sorted.
    pub fn session_ids(&self) -> Vec<String> {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The exported file names of session `id`'s disks.
    pub fn disk_files(&self, id: &str) -> Option<Vec<String>> {
        let s = self.session(id)?;
        Some(s.disks.iter().map(|d| d.name.clone()).collect())
    }

    pub(crate) fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub(crate) fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn by_tag(&self, tag: u64) -> Option<Arc<Session>> {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|s| s.tag == tag)
            .cloned()
    }

    /// Whether `peer` may use the object of handle `fh`: the root always,
    /// a session's objects when the session admits `peer`; a handle that
    /// does not decode or names no session is left to the procedure
    /// (BADHANDLE, STALE).
    pub(crate) fn handle_permits(&self, peer: IpAddr, fh: &[u8]) -> bool {
        let Ok(h) = self.key.decode(fh) else {
            return true;
        };
        if h.kind == Kind::Root {
            return true;
        }
        self.by_tag(h.session).is_none_or(|s| s.admits(peer))
    }

    /// Whether `peer` may connect at all: while no session is open,
    /// whoever the service allows (a hypervisor mounts the datastore before
    /// the first session starts and keeps it mounted); otherwise only a
    /// peer some session admits.
    pub(crate) fn admits_peer(&self, peer: IpAddr) -> bool {
        let sessions = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        sessions.is_empty() || sessions.values().any(|s| s.admits(peer))
    }

    /// Resolves a handle (BADHANDLE when forged, STALE when gone).
    pub(crate) fn resolve(&self, fh: &[u8]) -> NfsResult<Node> {
        let h = self.key.decode(fh)?;
        let stale = || {
            NfsError::new(
                Status::Stale,
                format!("{:?} {:#x} is gone", h.kind, h.object),
            )
        };
        if h.kind == Kind::Root {
            return Ok(Node::Root);
        }
        let s = self.by_tag(h.session).ok_or_else(stale)?;
        match h.kind {
            Kind::Root => Ok(Node::Root),
            Kind::Session if h.object == s.dir_ino => Ok(Node::Dir(s, PathBuf::new())),
            Kind::Session => Err(stale()),
            Kind::Disk => {
                let i = s
                    .disks
                    .iter()
                    .position(|d| d.object == h.object)
                    .ok_or_else(stale)?;
                Ok(Node::Disk(s, i))
            }
            Kind::Cache => {
                let rel = s.find(h.object).ok_or_else(stale)?;
                let m = std::fs::metadata(s.path(&rel)).map_err(|_| stale())?;
                Ok(if m.is_dir() {
                    Node::Dir(s, rel)
                } else {
                    Node::File(s, rel)
                })
            }
        }
    }

    pub(crate) fn root_handle(&self) -> Vec<u8> {
        self.key.encode(Handle {
            kind: Kind::Root,
            session: 0,
            object: handle::ROOT_OBJECT,
        })
    }

    pub(crate) fn session_handle(&self, s: &Session) -> Vec<u8> {
        self.key.encode(Handle {
            kind: Kind::Session,
            session: s.tag,
            object: s.dir_ino,
        })
    }

    pub(crate) fn disk_handle(&self, s: &Session, i: usize) -> Vec<u8> {
        self.key.encode(Handle {
            kind: Kind::Disk,
            session: s.tag,
            object: s.disks.get(i).map_or(0, |d| d.object),
        })
    }

    /// The handle of a cache object at `rel` (remembered for resolution).
    pub(crate) fn cache_handle(&self, s: &Session, rel: &Path, ino: u64) -> Vec<u8> {
        if rel.as_os_str().is_empty() {
            return self.session_handle(s);
        }
        s.remember(ino, rel.to_owned());
        self.key.encode(Handle {
            kind: Kind::Cache,
            session: s.tag,
            object: ino,
        })
    }
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod tests;
