//! The socket layer: an accept loop, one std thread per connection, and a
//! handle for tests and the service. Everything protocol-related is decided
//! by [`crate::proto`]; the per-connection byte shuffling is in
//! [`crate::conn`].

use crate::conn::Connection;
use crate::export::{AccessPolicy, ExportTable};
use crate::proto::ProtoError;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Why a connection ended early. The server logs it in [`ServerStats`] and
/// goes on serving the other connections.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket failed (the peer reset, a write to a closed connection).
    #[error("connection with {peer}: {source}")]
    Io {
        peer: String,
        #[source]
        source: io::Error,
    },
    /// The peer closed the connection in the middle of a message.
    #[error("connection with {peer}: closed in the middle of {during}")]
    Truncated { peer: String, during: &'static str },
    /// The peer sent bytes that break the protocol.
    #[error("connection with {peer}: protocol error: {source}")]
    Protocol {
        peer: String,
        #[source]
        source: ProtoError,
    },
}

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct ServerStats {
    accepted: AtomicU64,
    active: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ServerStats {
    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Connections being served now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
    /// Connections that ended with a [`ServeError`].
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// The message of the last [`ServeError`].
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An NBD server over a table of exports, optionally with an
/// [`AccessPolicy`] deciding which client may use which export.
#[derive(Clone)]
pub struct NbdServer {
    exports: Arc<ExportTable>,
    policy: Option<Arc<dyn AccessPolicy>>,
    stats: Arc<ServerStats>,
    /// How long a client may take between bytes before transmission starts.
    handshake_timeout: Duration,
}

impl NbdServer {
    pub fn new(exports: Arc<ExportTable>) -> Self {
        NbdServer {
            exports,
            policy: None,
            stats: Arc::default(),
            handshake_timeout: Duration::from_secs(30),
        }
    }

    /// Lets `policy` decide, for every connection, which exports its
    /// client may use (see [`AccessPolicy`]).
    pub fn with_policy(mut self, policy: Arc<dyn AccessPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The counters of this server.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// Serves one connection to its end, in the calling thread.
    pub fn serve_connection(&self, stream: TcpStream) -> Result<(), ServeError> {
        Connection::new(stream, self.handshake_timeout)?.run(&self.exports, self.policy.as_deref())
    }

    /// Accepts connections forever (until `stop` is set), one thread each.
    pub fn serve(&self, listener: TcpListener) -> io::Result<()> {
        self.serve_until(listener, &AtomicBool::new(false))
    }

    fn serve_until(&self, listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
        loop {
            let accepted = listener.accept();
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let stream = match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, an aborted handshake: not fatal.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            self.stats.active.fetch_add(1, Ordering::Relaxed);
            let server = self.clone();
            let spawned = std::thread::Builder::new()
                .name("nbd-conn".into())
                .spawn(move || {
                    if let Err(e) = server.serve_connection(stream) {
                        server.stats.failed.fetch_add(1, Ordering::Relaxed);
                        *server
                            .stats
                            .last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    }
                    server.stats.active.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                // The stream was dropped with the closure: the client sees a close.
                self.stats.active.fetch_sub(1, Ordering::Relaxed);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Binds `addr` (use `127.0.0.1:0` for an ephemeral port) and serves in
    /// a background thread.
    pub fn spawn(self, addr: impl ToSocketAddrs) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = self.stats.clone();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nbd-accept".into())
            .spawn(move || self.serve_until(listener, &thread_stop))?;
        Ok(ServerHandle {
            local_addr,
            stop,
            stats,
            thread: Some(thread),
        })
    }
}

/// Serves `exports` on `listener` forever, one thread per connection.
pub fn serve(listener: TcpListener, exports: Arc<ExportTable>) -> io::Result<()> {
    NbdServer::new(exports).serve(listener)
}

/// Binds `addr` and serves `exports` in a background thread.
pub fn spawn(addr: impl ToSocketAddrs, exports: Arc<ExportTable>) -> io::Result<ServerHandle> {
    NbdServer::new(exports).spawn(addr)
}

/// A server running in a background thread. Dropping it stops accepting;
/// connections already open run until their clients leave.
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<ServerStats>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Stops accepting connections and waits for the accept thread.
    pub fn shutdown(mut self) {
        self.stop_accepting();
    }

    fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept() with a connection of our own.
        let _ = TcpStream::connect(self.local_addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}
