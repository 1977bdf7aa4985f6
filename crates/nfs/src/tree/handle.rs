//! File handles of the [`super::SessionTree`]: stable across restarts,
//! unforgeable, never derived from memory addresses.
//!
//! ```text
//! byte 0       version (1)
//! byte 1       kind: 0 root, 1 session folder, 2 disk file, 3 cache-folder object
//! bytes 2..4   zero
//! bytes 4..12  session tag  = keyed-hash("session", session id)[..8] (0 for the root)
//! bytes 12..20 object id:
//!                root            1 << 63
//!                session folder  inode of the session's cache folder
//!                disk file       keyed-hash("disk", session id, file name)[..8] | 1 << 63
//!                cache object    inode of the real file or folder
//! bytes 20..28 MAC = keyed-hash("mac", bytes 0..20)[..8]
//! ```
//!
//! The key is 32 random bytes kept in a file beside the cache folders
//! ([`HandleKey::load_or_create`]), so a restarted service hands out and
//! accepts the same handles. A handle with a wrong length, version, kind or
//! MAC is forged or corrupt (NFS3ERR_BADHANDLE; the MAC is compared in
//! constant time); a well-formed handle whose
//! session or object no longer exists is NFS3ERR_STALE. The object id is
//! also the NFS fileid. Cache objects are named by inode so that RENAME
//! keeps their handles valid; an inode reused after a delete could revive
//! an old handle for the new file (no generation number is available).

use crate::backend::{NfsError, Status};
use std::io::{Read, Write};
use std::path::Path;

/// Length of every handle.
pub const HANDLE_LEN: usize = 28;
/// Object id of the root.
pub const ROOT_OBJECT: u64 = 1 << 63;

/// What a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Root = 0,
    Session = 1,
    Disk = 2,
    Cache = 3,
}

/// A decoded handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    pub kind: Kind,
    pub session: u64,
    pub object: u64,
}

/// The secret that keys handles.
#[derive(Clone)]
pub struct HandleKey([u8; 32]);

impl std::fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandleKey(..)")
    }
}

impl HandleKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        HandleKey(key)
    }

    /// Reads the key at `path`, creating it (32 bytes from /dev/urandom,
    /// mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(b) => {
                let key: [u8; 32] = b.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: handle key must be 32 bytes, found {}",
                            path.display(),
                            b.len()
                        ),
                    )
                })?;
                Ok(HandleKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
                use std::os::unix::fs::OpenOptionsExt;
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&key)?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(HandleKey(key))
            }
            Err(e) => Err(e),
        }
    }

    /// A keyed 64-bit hash of `parts` under `domain`.
    pub fn hash(&self, domain: &str, parts: &[&[u8]]) -> u64 {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(domain.as_bytes());
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let out = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&out.as_bytes()[..8]);
        u64::from_be_bytes(b)
    }

    /// The tag of session `id`.
    pub fn session_tag(&self, id: &str) -> u64 {
        self.hash("session", &[id.as_bytes()]) | 1
    }

    /// The object id of disk file `name` of session `id`.
    pub fn disk_object(&self, id: &str, name: &str) -> u64 {
        self.hash("disk", &[id.as_bytes(), name.as_bytes()]) | ROOT_OBJECT
    }

    pub fn encode(&self, h: Handle) -> Vec<u8> {
        let mut b = Vec::with_capacity(HANDLE_LEN);
        b.extend_from_slice(&[1, h.kind as u8, 0, 0]);
        b.extend_from_slice(&h.session.to_be_bytes());
        b.extend_from_slice(&h.object.to_be_bytes());
        let mac = self.hash("mac", &[&b]);
        b.extend_from_slice(&mac.to_be_bytes());
        b
    }

    /// Decodes and authenticates a handle (BADHANDLE when forged).
    pub fn decode(&self, fh: &[u8]) -> Result<Handle, NfsError> {
        let bad = |why: &str| NfsError::new(Status::BadHandle, format!("file handle: {why}"));
        if fh.len() != HANDLE_LEN {
            return Err(bad("wrong length"));
        }
        let (body, mac) = fh.split_at(20);
        // Constant time: how long the comparison takes must not tell a
        // client how many leading MAC bytes it guessed right.
        let want = self.hash("mac", &[body]).to_be_bytes();
        if !constant_time_eq::constant_time_eq(mac, &want) {
            return Err(bad("authentication failed"));
        }
        let kind = match (body[0], body[1]) {
            (1, 0) => Kind::Root,
            (1, 1) => Kind::Session,
            (1, 2) => Kind::Disk,
            (1, 3) => Kind::Cache,
            _ => return Err(bad("unknown version or kind")),
        };
        let u = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[r]);
            u64::from_be_bytes(b)
        };
        Ok(Handle {
            kind,
            session: u(4..12),
            object: u(12..20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_forgeries_are_refused() {
        let k = HandleKey::from_bytes([7; 32]);
        let h = Handle {
            kind: Kind::Disk,
            session: k.session_tag("s1"),
            object: k.disk_object("s1", "vm-disk0-flat.vmdk"),
        };
        let fh = k.encode(h);
        assert_eq!(fh.len(), HANDLE_LEN);
        assert_eq!(k.decode(&fh), Ok(h));
        for i in 0..fh.len() {
            let mut f = fh.clone();
            f[i] ^= 1;
            assert_eq!(k.decode(&f).unwrap_err().status, Status::BadHandle);
        }
        let other = HandleKey::from_bytes([8; 32]);
        assert_eq!(other.decode(&fh).unwrap_err().status, Status::BadHandle);
        assert!(k.decode(&fh[..10]).is_err());
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let a = HandleKey::load_or_create(&p).unwrap();
        let b = HandleKey::load_or_create(&p).unwrap();
        assert_eq!(a.session_tag("x"), b.session_tag("x"));
        std::fs::write(&p, b"short").unwrap();
        assert!(HandleKey::load_or_create(&p).is_err());
    }
}
