//! `lifeboat serve`: startup (data dir, catalog, bootstrap token,
//! repositories, certificates), then the TLS accept loop
//! ([`crate::listener`]) until the stop signal.

use crate::api;
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::{Catalog, CATALOG_FILE};
use crate::error::{Error, Result};
use crate::fsutil::write_file;
use crate::jobs::{runner, JobsConfig};
use crate::state::{AppState, ServedRepository};
use crate::tls::{self, CertSource, TlsFiles};
use crate::token::Role;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// The default data dir.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/lifeboat";
/// The bootstrap admin token's file in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

pub use crate::listener::MAX_CONNECTIONS;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The operator's certificate and key; `None`: the server's own CA.
    pub tls: Option<TlsFiles>,
    /// Repositories served, by name.
    pub repositories: Vec<(String, PathBuf)>,
    /// The cache folder of the NFS service of a repository, by name.
    pub nfs: Vec<(String, PathBuf)>,
    /// The passphrase of the encrypted ones.
    pub passphrase: Option<String>,
    /// How jobs run: the limit, retries, webhooks.
    pub jobs: JobsConfig,
}

/// Runs the server until SIGTERM or SIGINT, on a runtime of its own.
pub fn run_until_signal(config: ServerConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lifeboat-server")
        .build()
        .map_err(|e| Error::Internal(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let stop = stop_signal()?;
        run(config, stop).await
    })
}

/// A future that completes on the first SIGTERM or SIGINT (the handlers
/// are installed before it is returned, so a signal is never missed).
pub fn stop_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let err = |e| Error::Internal(format!("installing signal handlers: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(err)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "stopping"),
        }
    })
}

/// Starts the server and serves until `stop` completes.
pub async fn run(config: ServerConfig, stop: impl Future<Output = ()>) -> Result<()> {
    prepare_dir(&config.data_dir)?;
    let (tls_config, source) =
        tls::server_config(&config.data_dir, config.listen.ip(), config.tls.as_ref())?;
    let own_ca = matches!(source, CertSource::OwnCa { .. }).then(|| config.data_dir.clone());
    let state = prepare(&config, own_ca)?;
    match &source {
        CertSource::Operator(f) => {
            tracing::info!(cert = %f.cert.display(), "using the operator's certificate")
        }
        CertSource::OwnCa { ca, names } => {
            tracing::info!(ca = %ca.display(), names = ?names, "server certificate issued by the server's CA (clients: --ca this file)")
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("listener address", e))?;
    tracing::info!(listen = %local, "serving HTTPS");
    tokio::spawn(runner::run(state.clone()));
    let counted = state.clone();
    let handshake = move |client_certificate: bool| counted.metrics().handshake(client_certificate);
    crate::listener::serve(listener, tls_config, api::router(state), handshake, stop).await;
    Ok(())
}

/// The data dir, made private.
fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))
}

/// The catalog, the bootstrap token and the repositories.
fn prepare(config: &ServerConfig, own_ca: Option<PathBuf>) -> Result<AppState> {
    let dir = &config.data_dir;
    let catalog = Catalog::open(&dir.join(CATALOG_FILE))?;
    tracing::info!(path = %catalog.path().display(), version = catalog.schema_version()?, "catalog open");
    bootstrap_admin(&catalog, dir)?;
    if let Some((name, _)) = config
        .nfs
        .iter()
        .find(|(n, _)| !config.repositories.iter().any(|(r, _)| r == n))
    {
        return Err(Error::bad_request(format!(
            "--nfs {name}=...: no repository {name:?} is served (--repo {name}=PATH)"
        )));
    }
    let mut repositories = Vec::new();
    for (name, path) in &config.repositories {
        let repo = lifeboat_repo::Repository::open(path, config.passphrase.as_deref()).map_err(
            |source| Error::Repository {
                name: name.clone(),
                source,
            },
        )?;
        tracing::info!(name, path = %path.display(), "repository open");
        repositories.push(ServedRepository {
            name: name.clone(),
            path: path.clone(),
            repo,
            nfs_cache: config
                .nfs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, cache)| cache.clone()),
        });
    }
    let state = AppState::new(catalog, repositories, config.jobs.clone(), own_ca)?;
    runner::recover(&state.inner)?;
    Ok(state)
}

/// With no token at all (first start), makes an admin token and writes its
/// secret to `<data-dir>/admin.token` (0600); logs the path, never the
/// secret.
fn bootstrap_admin(catalog: &Catalog, dir: &Path) -> Result<()> {
    if catalog.token_count()? > 0 {
        return Ok(());
    }
    let (token, secret) = catalog.create_token("bootstrap-admin", Role::Admin, None)?;
    let path = dir.join(ADMIN_TOKEN_FILE);
    write_file(&path, format!("{secret}\n").as_bytes(), 0o600)?;
    catalog.audit(&NewAudit {
        actor: None,
        action: Action::TokenCreate,
        target: Some(format!("token {}", token.id)),
        success: true,
        remote: None,
        detail: Some("bootstrap admin token (no token existed)".into()),
    })?;
    tracing::info!(path = %path.display(), id = token.id, "bootstrap admin token written");
    Ok(())
}
