//! The uploads proxies hold open, in memory only: each is one
//! `BackupWriter` of a served repository (registered, so gc keeps every
//! chunk it touches), tied to one session running on one proxy and found
//! by an unguessable id. An upload goes when it is committed or aborted,
//! and when its session ends for any reason (the proxy's finish, an
//! expired lease: [`crate::jobs::runner::conclude`]); dropping the last
//! handle to its writer removes its staged chunks and leaves no restore
//! point. A server that stops loses them all the same way (a killed
//! server's staged chunks go at the next `gc`).

use crate::catalog::jobs::Job;
use crate::error::{Error, ErrorKind, Result};
use crate::state::ServedRepository;
use lifeboat_repo::BackupWriter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most uploads open at once on a server.
pub const MAX_UPLOADS: usize = 64;
/// The most uploads open at once for one session (a session makes one
/// restore point; a second covers an open whose answer was lost).
pub const MAX_UPLOADS_PER_SESSION: usize = 2;
/// How long a commit waits for the upload's requests still in flight.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

/// One open upload.
#[derive(Debug)]
pub struct Upload {
    pub id: String,
    pub session: i64,
    pub proxy: String,
    pub job: Job,
    pub repo: Arc<ServedRepository>,
    /// `None` once a commit took it.
    writer: Mutex<Option<Arc<BackupWriter>>>,
    /// Bytes of new chunks stored so far.
    pub stored_bytes: AtomicU64,
}

impl Upload {
    /// The writer, for one request.
    pub fn writer(&self) -> Result<Arc<BackupWriter>> {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| gone(&self.id))
    }

    /// The writer alone, for its commit: waits (blocking) for requests
    /// still holding it.
    pub fn take_writer(&self) -> Result<BackupWriter> {
        let mut shared = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| gone(&self.id))?;
        let deadline = Instant::now() + IN_FLIGHT_WAIT;
        loop {
            match Arc::try_unwrap(shared) {
                Ok(w) => return Ok(w),
                Err(again) if Instant::now() < deadline => {
                    shared = again;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => {
                    return Err(Error::Request {
                        kind: ErrorKind::Conflict,
                        message: format!(
                            "upload {}: chunk requests still running after {}s",
                            self.id,
                            IN_FLIGHT_WAIT.as_secs()
                        ),
                    })
                }
            }
        }
    }

    pub fn add_stored(&self, bytes: u64) {
        self.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn gone(id: &str) -> Error {
    Error::Request {
        kind: ErrorKind::Conflict,
        message: format!("upload {id} is being committed"),
    }
}

/// Every open upload.
#[derive(Debug, Default)]
pub struct Uploads {
    open: Mutex<HashMap<String, Arc<Upload>>>,
}

impl Uploads {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Upload>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new upload of `writer` for `session` on `proxy`.
    pub fn open(
        &self,
        session: i64,
        proxy: &str,
        job: Job,
        repo: Arc<ServedRepository>,
        writer: BackupWriter,
    ) -> Result<Arc<Upload>> {
        let mut map = self.map();
        if map.values().filter(|u| u.session == session).count() >= MAX_UPLOADS_PER_SESSION {
            return Err(Error::Request {
                kind: ErrorKind::Conflict,
                message: format!(
                    "session {session} has {MAX_UPLOADS_PER_SESSION} uploads open: commit or abort one"
                ),
            });
        }
        if map.len() >= MAX_UPLOADS {
            return Err(Error::Request {
                kind: ErrorKind::Conflict,
                message: format!("{MAX_UPLOADS} uploads are open on this server: try again later"),
            });
        }
        let upload = Arc::new(Upload {
            id: crate::token::random_hex(),
            session,
            proxy: proxy.to_string(),
            job,
            repo,
            writer: Mutex::new(Some(Arc::new(writer))),
            stored_bytes: AtomicU64::new(0),
        });
        map.insert(upload.id.clone(), upload.clone());
        Ok(upload)
    }

    /// Upload `id` of `proxy` (another proxy's is not found either).
    pub fn get(&self, id: &str, proxy: &str) -> Result<Arc<Upload>> {
        self.map()
            .get(id)
            .filter(|u| u.proxy == proxy)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Removes upload `id` of `proxy` and returns it.
    pub fn take(&self, id: &str, proxy: &str) -> Result<Arc<Upload>> {
        let mut map = self.map();
        match map.get(id) {
            Some(u) if u.proxy == proxy => map.remove(id).ok_or_else(|| not_found(id)),
            _ => Err(not_found(id)),
        }
    }

    /// Drops the uploads of `session` (it ended): how many.
    pub fn drop_session(&self, session: i64) -> usize {
        let dropped: Vec<Arc<Upload>> = {
            let mut map = self.map();
            let ids: Vec<String> = map
                .values()
                .filter(|u| u.session == session)
                .map(|u| u.id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for u in &dropped {
            tracing::warn!(
                upload = u.id,
                session,
                proxy = u.proxy,
                "upload dropped: its session ended"
            );
        }
        dropped.len()
    }

    /// Uploads open now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        what: format!("upload {id:?} (never opened, committed, aborted, or its session ended)"),
    }
}
