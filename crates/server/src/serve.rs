//! `lifeboat serve`: startup (data dir, catalog, bootstrap token,
//! repositories, certificates), the TLS accept loop and the clean stop.
//!
//! Every connection is TLS: the handshake comes first (10 s at most) and a
//! client that does not speak TLS gets no HTTP answer, only the TLS alert
//! rustls sends, then the socket closes. HTTP/1.1 runs inside; at most
//! [`MAX_CONNECTIONS`] connections are served at once. On the stop
//! signal the listener closes, open connections finish their request (10 s
//! at most) and `run` returns.

use crate::api::{self, PeerAddr};
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::{Catalog, CATALOG_FILE};
use crate::error::{Error, Result};
use crate::fsutil::write_file;
use crate::jobs::{runner, JobsConfig};
use crate::proxies::auth::ClientCertificate;
use crate::proxies::certificate::fingerprint;
use crate::state::{AppState, ServedRepository};
use crate::tls::{self, CertSource, TlsFiles};
use crate::token::Role;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// The default data dir.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/lifeboat";
/// The bootstrap admin token's file in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; at the limit the accept loop waits, so
/// new clients queue in the kernel's backlog instead of exhausting
/// memory or file descriptors.
pub const MAX_CONNECTIONS: usize = 1024;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The operator's certificate and key; `None`: the server's own CA.
    pub tls: Option<TlsFiles>,
    /// Repositories served, by name.
    pub repositories: Vec<(String, PathBuf)>,
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
fn stop_signal() -> Result<impl Future<Output = ()>> {
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
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    tokio::spawn(runner::run(state.clone()));
    let metrics_state = state.clone();
    let router = api::router(state);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // closed: never happens, the loop owns it
            },
            () = &mut stop => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let counted = metrics_state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(peer = %peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert = ClientCertificate(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| fingerprint(leaf.as_ref())),
            );
            counted.metrics().handshake(cert.0.is_some());
            let service = router.map_request(move |mut req: axum::extract::Request<_>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req.extensions_mut().insert(cert.clone());
                req
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("stopped: all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("stopped: connections still open after the drain timeout were cut"),
    }
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
