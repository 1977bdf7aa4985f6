//! [`NfsBackend`]: the exported tree as the NFS and MOUNT programs see it.
//!
//! The protocol layer (`nfs/`, `mount`) decodes arguments, checks the
//! client's address and credentials, and calls one method per procedure
//! with raw file-handle bytes; the backend resolves handles, does the I/O,
//! and answers with attributes or an [`NfsError`] carrying the NFSv3 status
//! to return. Handles are opaque to the protocol layer (at most
//! [`MAX_FH`] bytes); a backend must make them stable across restarts and
//! tell forged (BADHANDLE) from vanished (STALE) objects.
//!
//! Access: the socket layer closes connections from peers that are not on
//! the service-wide allow list or that [`NfsBackend::admits`] refuses; the
//! protocol layer checks the allow list again per call, then asks
//! [`NfsBackend::permits`] about every handle a call names (and
//! every handle it would hand out: LOOKUP results, listing entries, MNT),
//! so a backend can narrow access per object (the session tree does it
//! per session).
//!
//! Directory listings are returned whole ("." and ".." included) with a
//! verifier that changes when the directory changes; the NFS layer pages
//! them for READDIR/READDIRPLUS with index cookies.

use lifeboat_vdisk::SharedBytes;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest NFSv3 file handle.
pub const MAX_FH: usize = 64;
/// Longest file name accepted.
pub const MAX_NAME: u32 = 255;

/// NFSv3 status codes (nfsstat3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Perm = 1,
    NoEnt = 2,
    Io = 5,
    Acces = 13,
    Exist = 17,
    XDev = 18,
    NotDir = 20,
    IsDir = 21,
    Inval = 22,
    FBig = 27,
    NoSpc = 28,
    Rofs = 30,
    NameTooLong = 63,
    NotEmpty = 66,
    Stale = 70,
    BadHandle = 10001,
    NotSync = 10002,
    BadCookie = 10003,
    NotSupp = 10004,
    TooSmall = 10005,
    ServerFault = 10006,
}

/// A failed operation: the status for the client, a detail for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status:?}: {detail}")]
pub struct NfsError {
    pub status: Status,
    pub detail: String,
}

impl NfsError {
    pub fn new(status: Status, detail: impl Into<String>) -> Self {
        NfsError {
            status,
            detail: detail.into(),
        }
    }

    /// Maps an OS error: ENOSPC → NOSPC, ENOENT → NOENT, EEXIST → EXIST, ...
    pub fn from_io(what: impl std::fmt::Display, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let status = match (e.kind(), e.raw_os_error()) {
            (_, Some(28)) | (K::StorageFull, _) => Status::NoSpc,
            (_, Some(122)) => Status::NoSpc, // EDQUOT
            (K::NotFound, _) => Status::NoEnt,
            (K::AlreadyExists, _) => Status::Exist,
            (K::PermissionDenied, _) => Status::Acces,
            (K::DirectoryNotEmpty, _) => Status::NotEmpty,
            (K::NotADirectory, _) => Status::NotDir,
            (K::IsADirectory, _) => Status::IsDir,
            (K::InvalidFilename, _) | (_, Some(36)) => Status::NameTooLong,
            (K::InvalidInput, _) => Status::Inval,
            _ => Status::Io,
        };
        NfsError::new(status, format!("{what}: {e}"))
    }

    /// Maps a virtual-disk error: an I/O error keeps its OS mapping
    /// (ENOSPC → NOSPC), out-of-range → INVAL, anything else (a corrupt or
    /// missing chunk) → IO.
    pub fn from_disk(e: &lifeboat_vdisk::Error) -> Self {
        match e {
            lifeboat_vdisk::Error::Io { source, .. } => {
                let mut n = NfsError::from_io("disk", source);
                if !matches!(n.status, Status::NoSpc) {
                    n.status = Status::Io;
                }
                n.detail = e.to_string();
                n
            }
            lifeboat_vdisk::Error::OutOfRange { .. } => NfsError::new(Status::Inval, e.to_string()),
            lifeboat_vdisk::Error::ReadOnly { .. } => NfsError::new(Status::Rofs, e.to_string()),
            _ => NfsError::new(Status::Io, e.to_string()),
        }
    }
}

/// Result alias of the backend.
pub type NfsResult<T> = Result<T, NfsError>;

/// A time as NFSv3 sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    pub secs: u32,
    pub nsecs: u32,
}

impl Time {
    pub fn from_system(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Time {
            secs: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
            nsecs: d.subsec_nanos(),
        }
    }
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }
    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::new(self.secs as u64, self.nsecs.min(999_999_999))
    }
    /// Nanoseconds since the epoch (used as a directory verifier).
    pub fn as_nanos(self) -> u64 {
        (self.secs as u64) * 1_000_000_000 + self.nsecs as u64
    }
}

/// The two file types this service exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular = 1,
    Directory = 2,
}

/// File attributes (fattr3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ftype: FileType,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub used: u64,
    pub fileid: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
}

/// How SETATTR sets a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetTime {
    #[default]
    DontChange,
    ServerTime,
    Client(Time),
}

/// Attributes to set (sattr3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: SetTime,
    pub mtime: SetTime,
}

/// How CREATE creates (createhow3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateHow {
    /// Create or truncate-and-reuse an existing file.
    Unchecked(SetAttr),
    /// Fail with EXIST if the name exists.
    Guarded(SetAttr),
    /// Exactly-once create: a retry with the same verifier succeeds.
    Exclusive([u8; 8]),
}

/// How durable a WRITE must be (stable_how).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stable {
    Unstable = 0,
    DataSync = 1,
    FileSync = 2,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub handle: Vec<u8>,
    pub attr: Attr,
}

/// A whole directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Changes whenever the directory's content changes.
    pub verifier: u64,
    pub entries: Vec<DirEntry>,
}

/// File system statistics (FSSTAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStat {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub total_files: u64,
    pub free_files: u64,
    pub avail_files: u64,
}

/// [`NfsBackend::read_shared`] by copying: one buffer filled by
/// [`NfsBackend::read`].
pub fn read_copied<B: NfsBackend + ?Sized>(
    backend: &B,
    fh: &[u8],
    offset: u64,
    count: usize,
) -> NfsResult<(Vec<SharedBytes>, bool)> {
    let mut buf = vec![0u8; count];
    let (n, eof) = backend.read(fh, offset, &mut buf)?;
    buf.truncate(n.min(count));
    Ok((vec![SharedBytes::owned(buf)], eof))
}

/// The exported tree.
pub trait NfsBackend: Send + Sync {
    /// The handle of `path` (relative to the export, "" for its root) for
    /// MOUNT's MNT; only directories can be mounted.
    fn mount(&self, path: &str) -> NfsResult<Vec<u8>>;
    fn getattr(&self, fh: &[u8]) -> NfsResult<Attr>;
    fn setattr(&self, fh: &[u8], set: &SetAttr) -> NfsResult<Attr>;
    fn lookup(&self, dir: &[u8], name: &str) -> NfsResult<(Vec<u8>, Attr)>;
    /// Fills `buf` from `offset` (short at the end of the file); returns the
    /// bytes read and whether the end of the file was reached.
    fn read(&self, fh: &[u8], offset: u64, buf: &mut [u8]) -> NfsResult<(usize, bool)>;
    /// At most `count` bytes from `offset` as views that, end to end, are
    /// the data (short at the end of the file), and whether the end of the
    /// file was reached. The default copies through [`NfsBackend::read`];
    /// a backend whose data sits in a cache hands out views of its blocks.
    fn read_shared(
        &self,
        fh: &[u8],
        offset: u64,
        count: usize,
    ) -> NfsResult<(Vec<SharedBytes>, bool)> {
        read_copied(self, fh, offset, count)
    }
    /// Writes `data` at `offset` at least as durably as `stable`; returns
    /// how durable it is and the attributes after.
    fn write(
        &self,
        fh: &[u8],
        offset: u64,
        data: &[u8],
        stable: Stable,
    ) -> NfsResult<(Stable, Attr)>;
    /// Makes earlier UNSTABLE writes to `fh` durable.
    fn commit(&self, fh: &[u8]) -> NfsResult<Attr>;
    fn create(&self, dir: &[u8], name: &str, how: &CreateHow) -> NfsResult<(Vec<u8>, Attr)>;
    fn mkdir(&self, dir: &[u8], name: &str, set: &SetAttr) -> NfsResult<(Vec<u8>, Attr)>;
    fn remove(&self, dir: &[u8], name: &str) -> NfsResult<()>;
    fn rmdir(&self, dir: &[u8], name: &str) -> NfsResult<()>;
    fn rename(&self, from_dir: &[u8], from: &str, to_dir: &[u8], to: &str) -> NfsResult<()>;
    /// The whole listing of `dir`, "." and ".." first.
    fn readdir(&self, dir: &[u8]) -> NfsResult<Listing>;
    fn fsstat(&self, fh: &[u8]) -> NfsResult<FsStat>;
    /// Whether client `peer` (already on the service's allow list) may use
    /// the object `fh` names. Must be cheap (it runs on every call) and
    /// answer true for handles it cannot decode or resolve: the procedure
    /// then reports BADHANDLE or STALE itself. Default: every object.
    fn permits(&self, peer: IpAddr, fh: &[u8]) -> bool {
        let _ = (peer, fh);
        true
    }
    /// Whether client `peer` (already on the service's allow list) may
    /// use anything at all: asked when a connection is accepted (a refused
    /// peer is closed before a byte is read) and for every UDP datagram.
    /// Must be cheap. Default: yes.
    fn admits(&self, peer: IpAddr) -> bool {
        let _ = peer;
        true
    }
}
