//! The proxy's side of an upload: [`RemoteTarget`], the
//! [`BackupTarget`] a proxy's session backs up into (image files and
//! `qmp:` sources alike), and [`RemoteSink`], the [`ChunkSink`] the
//! backup pipeline writes to. The proxy reads, hashes, compresses and
//! encrypts ([`ChunkEncoder`], with the chunk keys the server sent for
//! this upload, kept in memory only); the server only stores blobs and
//! writes the restore point.
//!
//! ```text
//!  open:   POST sessions/{id}/upload -> keys, chunk size, the VM's previous point
//!          its digests asked in batches (POST uploads/{id}/known): the present
//!          ones are remembered, so an unchanged chunk costs no request
//!  chunk:  known? -> (encode) -> PUT uploads/{id}/chunks/{digest}
//!  commit: POST uploads/{id}/commit {disks: indexes + stats} -> manifest
//! ```
//!
//! Every request goes over the client's pool of keep-alive TLS
//! connections; at most [`MAX_IDLE_CONNECTIONS`] run at once, so each
//! finds an idle connection and no chunk pays a handshake.

use crate::api::upload_wire::{CommitUpload, Committed, OpenUpload, UploadOpened};
use crate::client::{Client, ClientError, MAX_IDLE_CONNECTIONS};
use lifeboat_engine::{BackupTarget, ChunkSink, Error, Result};
use lifeboat_repo::{
    ChunkEncoder, ChunkKeys, Consistency, Digest, DiskIndex, Manifest, NewDisk, Stored,
};
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

thread_local! {
    /// Each worker thread's blob buffer, reused for every chunk it encodes.
    static BLOB_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn upload_error(e: ClientError) -> Error {
    Error::Upload(Box::new(e))
}

/// What the target and its sink share.
struct Upload {
    client: Arc<Client>,
    opened: UploadOpened,
    keys: Option<ChunkKeys>,
    /// Chunks the repository has (the server said so, or this upload
    /// stored them).
    present: RwLock<HashSet<Digest>>,
    /// Requests running now, at most [`MAX_IDLE_CONNECTIONS`].
    in_flight: (Mutex<usize>, Condvar),
    committed: Mutex<Option<Committed>>,
}

impl Upload {
    /// Runs one request while holding one of the connection slots.
    fn call<T>(&self, f: impl FnOnce(&Client) -> std::result::Result<T, ClientError>) -> Result<T> {
        let (count, freed) = &self.in_flight;
        {
            let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
            while *n >= MAX_IDLE_CONNECTIONS {
                n = freed.wait(n).unwrap_or_else(|e| e.into_inner());
            }
            *n += 1;
        }
        let result = f(&self.client);
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
        result.map_err(upload_error)
    }

    fn id(&self) -> &str {
        &self.opened.upload
    }

    fn is_present(&self, digest: &Digest) -> bool {
        self.present
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(digest)
    }

    fn mark_present(&self, digests: impl IntoIterator<Item = Digest>) {
        self.present
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(digests);
    }

    /// Asks the server which of `digests` it has (marking them live),
    /// in batches; remembers the present ones.
    fn ask(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(digests.len());
        for batch in digests.chunks(self.opened.max_known_batch.max(1)) {
            let present = self.call(|c| c.upload_known(self.id(), batch))?;
            self.mark_present(
                batch
                    .iter()
                    .zip(&present)
                    .filter(|(_, &p)| p)
                    .map(|(d, _)| *d),
            );
            out.extend(present);
        }
        Ok(out)
    }
}

/// An upload a proxy opened for its session.
pub struct RemoteTarget {
    upload: Arc<Upload>,
    begun: AtomicBool,
}

impl RemoteTarget {
    /// Opens an upload for `session` (which this proxy runs) and asks for
    /// the chunks of the VM's previous restore point.
    pub fn open(client: Arc<Client>, session: i64) -> Result<RemoteTarget> {
        let mut opened = client
            .upload_open(session, &OpenUpload { previous: true })
            .map_err(upload_error)?;
        let keys = match opened.chunk_keys.take() {
            Some(hex) => Some(ChunkKeys::from_hex(&hex.0)?),
            None => None,
        };
        tracing::info!(
            upload = opened.upload,
            session,
            vm = opened.vm,
            "upload opened"
        );
        let upload = Arc::new(Upload {
            client,
            opened,
            keys,
            present: RwLock::new(HashSet::new()),
            in_flight: (Mutex::new(0), Condvar::new()),
            committed: Mutex::new(None),
        });
        let target = RemoteTarget {
            upload,
            begun: AtomicBool::new(false),
        };
        if let Some(previous) = &target.upload.opened.previous {
            let mut seen = HashSet::new();
            let digests: Vec<Digest> = previous
                .indexes
                .iter()
                .flat_map(|(_, i)| i.digests.iter().flatten())
                .filter(|d| seen.insert(**d))
                .copied()
                .collect();
            target.upload.ask(&digests)?;
        }
        Ok(target)
    }

    /// The retention line of the committed upload (`None`: not committed,
    /// or the job keeps everything).
    pub fn retention(&self) -> Option<String> {
        self.upload
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|c| c.retention.clone())
    }

    /// Drops the upload on the server (its staged chunks go); best effort.
    pub fn abort(&self) {
        if let Err(e) = self.upload.client.upload_abort(self.upload.id()) {
            tracing::warn!(upload = self.upload.id(), error = %e, "aborting the upload");
        }
    }
}

impl BackupTarget for RemoteTarget {
    type Sink = RemoteSink;

    fn latest(&self, vm: &str) -> Result<Option<Manifest>> {
        Ok(self
            .upload
            .opened
            .previous
            .as_ref()
            .filter(|_| vm == self.upload.opened.vm)
            .map(|p| p.manifest.clone()))
    }

    fn load_index(&self, manifest: &Manifest, disk: &str) -> Result<DiskIndex> {
        self.upload
            .opened
            .previous
            .as_ref()
            .filter(|p| p.manifest.name() == manifest.name())
            .and_then(|p| p.indexes.iter().find(|(name, _)| name == disk))
            .map(|(_, index)| index.clone())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "the server sent no index of disk {disk} of {}",
                    manifest.name()
                ))
            })
    }

    /// Two per core, at most one per connection.
    fn workers(&self) -> Option<usize> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some((cores * 2).min(MAX_IDLE_CONNECTIONS))
    }

    fn begin(&self, zstd_level: Option<i32>) -> Result<RemoteSink> {
        if self.begun.swap(true, Ordering::SeqCst) {
            return Err(Error::Invalid(
                "an upload holds one backup: it was begun already".into(),
            ));
        }
        let o = &self.upload.opened;
        let encoder = ChunkEncoder::new(
            self.upload.keys.clone(),
            o.chunk_size,
            zstd_level.unwrap_or(o.zstd_level),
        )?;
        Ok(RemoteSink {
            upload: self.upload.clone(),
            encoder,
        })
    }
}

/// The chunk sink of an upload.
pub struct RemoteSink {
    upload: Arc<Upload>,
    encoder: ChunkEncoder,
}

impl ChunkSink for RemoteSink {
    fn chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    fn digest(&self, plain: &[u8]) -> Digest {
        self.encoder.digest(plain)
    }

    fn store_chunk(&self, digest: &Digest, plain: &[u8]) -> Result<Stored> {
        if self.reuse_chunk(digest)? {
            return Ok(Stored::Existing);
        }
        let reply = BLOB_BUF.with(|cell| -> Result<_> {
            let mut buf = cell
                .try_borrow_mut()
                .map_err(|_| Error::Invalid("blob buffer of this thread in use".into()))?;
            buf.clear();
            self.encoder.encode_into(digest, plain, &mut buf)?;
            let blob: &[u8] = &buf;
            self.upload
                .call(|c| c.upload_put(self.upload.id(), digest, blob))
        })?;
        self.upload.mark_present([*digest]);
        Ok(match reply.new {
            true => Stored::New {
                stored_bytes: reply.stored_bytes,
            },
            false => Stored::Existing,
        })
    }

    fn reuse_chunk(&self, digest: &Digest) -> Result<bool> {
        if self.upload.is_present(digest) {
            return Ok(true);
        }
        Ok(self.upload.ask(&[*digest])?.first() == Some(&true))
    }

    fn commit(
        self,
        vm: &str,
        disks: Vec<NewDisk>,
        consistency: Option<Consistency>,
    ) -> Result<Manifest> {
        if vm != self.upload.opened.vm {
            return Err(Error::Invalid(format!(
                "this upload makes a restore point of {}, not of {vm}",
                self.upload.opened.vm
            )));
        }
        let request = CommitUpload { disks, consistency };
        let committed = self
            .upload
            .call(|c| c.upload_commit(self.upload.id(), &request))?;
        let manifest = committed.manifest.clone();
        *self
            .upload
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(committed);
        Ok(manifest)
    }
}
