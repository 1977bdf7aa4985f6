//! The bodies of the upload routes, shared by the server's handlers
//! (`api/uploads.rs`) and the proxy's client (`client_upload.rs`).
//!
//! ```text
//!  POST   /api/v1/proxy/sessions/{id}/upload  OpenUpload  -> UploadOpened (keys, chunk size, previous point)
//!  POST   /api/v1/proxy/uploads/{id}/known    KnownChunks -> KnownReply   (present ones marked live for gc)
//!  PUT    /api/v1/proxy/uploads/{id}/chunks/{digest}  blob (octet-stream) -> PutReply
//!  POST   /api/v1/proxy/uploads/{id}/commit   CommitUpload -> Committed   (indexes, manifest, retention)
//!  DELETE /api/v1/proxy/uploads/{id}          -> Aborted                  (staged chunks removed)
//! ```

use lifeboat_repo::{Consistency, Digest, DiskIndex, Manifest, NewDisk};
use serde::{Deserialize, Serialize};

/// The most digests in one `known` call.
pub const MAX_KNOWN_BATCH: usize = 4096;

/// `POST .../sessions/{id}/upload` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenUpload {
    /// Send the VM's latest restore point and its indexes (an incremental
    /// read starts from them; the proxy asks for their chunks in batches).
    #[serde(default)]
    pub previous: bool,
}

/// The repository's chunk keys as hex (see `lifeboat_repo::ChunkKeys`):
/// never shown by `Debug`, zeroed when dropped.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WireKeys(pub String);

impl std::fmt::Debug for WireKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WireKeys(<redacted>)")
    }
}

impl Drop for WireKeys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The VM's latest restore point and the index of each of its disks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Previous {
    pub manifest: Manifest,
    /// `(disk name, index)`, in the manifest's order.
    pub indexes: Vec<(String, DiskIndex)>,
}

/// `POST .../sessions/{id}/upload` answer: what the proxy needs to encode
/// chunks as the repository does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadOpened {
    /// The upload's id (random, 256 bits): the other routes' `{id}`.
    pub upload: String,
    /// The VM (the job's name) the restore point is made for.
    pub vm: String,
    pub chunk_size: u32,
    /// The repository's zstd level (a live backup may choose its own).
    pub zstd_level: i32,
    /// `None`: the repository is not encrypted.
    pub chunk_keys: Option<WireKeys>,
    pub max_known_batch: usize,
    /// The largest blob body a chunk put takes.
    pub max_blob: u64,
    pub previous: Option<Previous>,
}

/// `POST .../uploads/{id}/known` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownChunks {
    pub digests: Vec<Digest>,
}

/// `POST .../uploads/{id}/known` answer: one flag per digest asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnownReply {
    pub present: Vec<bool>,
}

/// `PUT .../uploads/{id}/chunks/{digest}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutReply {
    /// False: the repository had the chunk already (nothing written).
    pub new: bool,
    /// Bytes written to the repository for it.
    pub stored_bytes: u64,
}

/// `POST .../uploads/{id}/commit` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitUpload {
    pub disks: Vec<NewDisk>,
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

/// `POST .../uploads/{id}/commit` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Committed {
    pub manifest: Manifest,
    /// Bytes of new chunks this upload stored (the server's count).
    pub bytes_stored: u64,
    /// What the job's retention did, for the session's log (`None`: the
    /// job keeps everything).
    pub retention: Option<String>,
}

/// `DELETE .../uploads/{id}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Aborted {
    pub aborted: String,
}
