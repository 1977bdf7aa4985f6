//! What every request handler and job worker shares: the catalog, the
//! repositories the server was configured with, the metrics, and how jobs
//! run (the limit, the running count, the scheduler's wake-up, webhooks).

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::jobs::webhook::Webhooks;
use crate::jobs::JobsConfig;
use crate::metrics::Metrics;
use crate::tls::{server_client_identity, ClientIdentity};
use crate::uploads::Uploads;
use lifeboat_repo::Repository;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

/// One repository the server serves, opened at start.
#[derive(Debug)]
pub struct ServedRepository {
    pub name: String,
    pub path: PathBuf,
    pub repo: Repository,
    /// The cache folder of the NFS service (`lifeboat nfs serve`) that
    /// runs this repository's instant recovery sessions (`serve --nfs`).
    pub nfs_cache: Option<PathBuf>,
}

/// The shared state (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    pub inner: Arc<Shared>,
}

#[derive(Debug)]
pub struct Shared {
    pub catalog: Catalog,
    pub repositories: BTreeMap<String, Arc<ServedRepository>>,
    pub metrics: Metrics,
    pub jobs: JobsConfig,
    /// Sessions running now.
    pub running: AtomicUsize,
    /// The cancel flag of each session the server runs itself.
    pub cancels: Mutex<HashMap<i64, Arc<AtomicBool>>>,
    /// Wakes the scheduler (a session was queued or ended).
    pub wake: tokio::sync::Notify,
    pub webhooks: Webhooks,
    /// The data dir when the server runs on its own CA (it can enroll
    /// proxies); `None` with the operator's certificate.
    pub own_ca: Option<PathBuf>,
    /// The server's own client certificate (from its CA), which it calls
    /// agents with; `None` with the operator's certificate.
    pub client_identity: Option<ClientIdentity>,
    /// The proxies' open uploads (in memory only).
    pub uploads: Uploads,
}

impl AppState {
    pub fn new(
        catalog: Catalog,
        repositories: Vec<ServedRepository>,
        jobs: JobsConfig,
        own_ca: Option<PathBuf>,
    ) -> Result<AppState> {
        let webhooks = Webhooks::new(jobs.webhooks.clone()).map_err(Error::bad_request)?;
        let client_identity = match &own_ca {
            Some(dir) => server_client_identity(dir)?,
            None => None,
        };
        Ok(AppState {
            inner: Arc::new(Shared {
                catalog,
                repositories: repositories
                    .into_iter()
                    .map(|r| (r.name.clone(), Arc::new(r)))
                    .collect(),
                metrics: Metrics::new(),
                jobs,
                running: AtomicUsize::new(0),
                cancels: Mutex::default(),
                wake: tokio::sync::Notify::new(),
                webhooks,
                own_ca,
                client_identity,
                uploads: Uploads::default(),
            }),
        })
    }

    /// The largest chunk blob an upload to any served repository takes.
    pub fn blob_limit(&self) -> usize {
        let chunk = self
            .inner
            .repositories
            .values()
            .map(|r| r.repo.chunk_size())
            .max()
            .unwrap_or(lifeboat_repo::DEFAULT_CHUNK_SIZE);
        lifeboat_repo::max_chunk_blob_len(chunk)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Runs `f` with the shared state on a blocking thread (SQLite and
    /// repository reads never run on the async workers).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Internal(format!("a blocking task failed: {e}")))?
    }
}
