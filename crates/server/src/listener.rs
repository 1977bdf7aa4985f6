//! The TLS accept loop the server and the agent share: every connection
//! is TLS, the handshake first (10 s at most); a client that does not
//! speak TLS gets no HTTP answer, only the TLS alert rustls sends, then
//! the socket closes. HTTP/1.1 runs inside, each request carrying the
//! peer's address ([`PeerAddr`]) and the fingerprint of its client
//! certificate ([`ClientCertificate`]); at most [`MAX_CONNECTIONS`]
//! connections are served at once. When `stop` completes the listener
//! closes and open connections finish their request (10 s at most).

use crate::api::PeerAddr;
use crate::proxies::auth::ClientCertificate;
use crate::proxies::certificate::fingerprint;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; at the limit the accept loop waits, so
/// new clients queue in the kernel's backlog instead of exhausting
/// memory or file descriptors.
pub const MAX_CONNECTIONS: usize = 1024;

/// Serves `router` over TLS (`tls`) on `listener` until `stop`; each
/// completed handshake is told to `handshake` (true: with a client
/// certificate).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    handshake: impl Fn(bool) + Clone + Send + 'static,
    stop: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
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
        let handshake = handshake.clone();
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
            handshake(cert.0.is_some());
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
}
