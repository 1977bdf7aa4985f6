//! The socket layer: an accept loop, one std thread per connection, and a
//! handle for tests and the service. Everything protocol-related is decided
//! by [`crate::proto`]; the per-connection byte shuffling is in
//! [`crate::conn`], the connection limit in [`crate::slots`], TLS in
//! [`crate::tls`] and [`crate::transport`].
//!
//! ```text
//! accept ── policy.admits(peer)? ── no ──> close (no byte sent), log
//!    │
//!    └─ slots.admit ── full, all busy ──> close, log "limit reached"
//!          │  (at the limit the longest-idle connection is closed, logged)
//!          └─> thread: Connection::run (greeting, [STARTTLS], options,
//!              transmission), slot given back when it ends
//! ```
//!
//! A listener on an address that is not loopback refuses to start without
//! TLS ([`ListenError::TlsRequired`]).

use crate::conn::{Connection, Timeouts};
use crate::export::{AccessPolicy, ExportTable};
use crate::proto::ProtoError;
use crate::slots::{Activity, Admission, Slots};
use crate::tls::TlsConfig;
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
    /// The peer did not finish the handshake in time, or sent nothing for
    /// the idle timeout.
    #[error("connection with {peer}: closed after {what}")]
    TimedOut { peer: String, what: String },
    /// The TLS handshake after NBD_OPT_STARTTLS failed (no or a wrong
    /// client certificate, a peer that speaks no TLS).
    #[error("connection with {peer}: TLS handshake failed: {source}")]
    Tls {
        peer: String,
        #[source]
        source: io::Error,
    },
}

/// Why a listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("binding the NBD listener to {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// A listener reachable from other machines needs TLS.
    #[error(
        "refusing to serve NBD on {addr} without TLS: a listener on an address \
         other than loopback must have a TLS certificate and key (--tls-cert FILE \
         --tls-key FILE), or listen on 127.0.0.1"
    )]
    TlsRequired { addr: SocketAddr },
    #[error("starting the NBD accept thread: {0}")]
    Thread(#[source] io::Error),
}

/// How many connections a server keeps and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once (one thread each). At the limit a new
    /// client takes the place of the longest-idle connection
    /// (see the `slots` module); when every connection is running a command it
    /// is turned away.
    pub max_connections: usize,
    /// The whole negotiation (options and the TLS handshake) must end
    /// within this; it also bounds every write (a client that stops
    /// reading its replies).
    pub handshake_timeout: Duration,
    /// A connection in transmission that sends nothing for this long is
    /// closed; `None` (the default): never. QEMU fails the guest's next
    /// request on a connection closed this way unless its drive has
    /// `reconnect-delay`, so an idle guest would see I/O errors; idle
    /// connections cannot lock clients out anyway (eviction at the limit).
    pub idle_timeout: Option<Duration>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 64,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: None,
        }
    }
}

/// Receives the server's log lines (refused peers, the limit, closed
/// connections).
pub type LogHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct ServerStats {
    accepted: AtomicU64,
    active: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    turned_away: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ServerStats {
    /// Connections accepted since the start (refused ones included).
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
    /// Connections closed at accept because the policy does not admit the
    /// peer ([`AccessPolicy::admits`]).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Idle connections closed to make room at the connection limit.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
    /// New connections closed at the limit because every connection was
    /// running a command.
    pub fn turned_away(&self) -> u64 {
        self.turned_away.load(Ordering::Relaxed)
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
/// [`AccessPolicy`] deciding which client may connect and use which export,
/// TLS, and [`ServerLimits`].
#[derive(Clone)]
pub struct NbdServer {
    exports: Arc<ExportTable>,
    policy: Option<Arc<dyn AccessPolicy>>,
    stats: Arc<ServerStats>,
    limits: ServerLimits,
    tls: Option<TlsConfig>,
    log: Option<LogHook>,
}

impl NbdServer {
    pub fn new(exports: Arc<ExportTable>) -> Self {
        NbdServer {
            exports,
            policy: None,
            stats: Arc::default(),
            limits: ServerLimits::default(),
            tls: None,
            log: None,
        }
    }

    /// Lets `policy` decide, for every connection, whether its client may
    /// connect at all and which exports it may use (see [`AccessPolicy`]).
    pub fn with_policy(mut self, policy: Arc<dyn AccessPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Replaces the default [`ServerLimits`].
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves TLS only: every client must upgrade with NBD_OPT_STARTTLS
    /// before anything else is answered (NBD_REP_ERR_TLS_REQD).
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sends the server's log lines to `hook`.
    pub fn with_log(mut self, hook: LogHook) -> Self {
        self.log = Some(hook);
        self
    }

    /// The counters of this server.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if let Some(hook) = &self.log {
            hook(&line());
        }
    }

    /// Serves one connection to its end, in the calling thread (no
    /// admission check, no connection limit).
    pub fn serve_connection(&self, stream: TcpStream) -> Result<(), ServeError> {
        self.serve_with(stream, &Activity::standalone())
    }

    fn serve_with(&self, stream: TcpStream, activity: &Arc<Activity>) -> Result<(), ServeError> {
        let timeouts = Timeouts {
            handshake: self.limits.handshake_timeout,
            idle: self.limits.idle_timeout,
        };
        Connection::new(stream, timeouts, activity.clone(), self.tls.as_ref())?
            .run(&self.exports, self.policy.as_deref())
    }

    /// Accepts connections forever, one thread each.
    pub fn serve(&self, listener: TcpListener) -> Result<(), ListenError> {
        let addr = listener.local_addr().map_err(|source| ListenError::Bind {
            addr: "the listener".into(),
            source,
        })?;
        self.check_tls(addr)?;
        self.serve_until(listener, &AtomicBool::new(false));
        Ok(())
    }

    fn check_tls(&self, addr: SocketAddr) -> Result<(), ListenError> {
        if self.tls.is_none() && !addr.ip().is_loopback() {
            return Err(ListenError::TlsRequired { addr });
        }
        Ok(())
    }

    fn serve_until(&self, listener: TcpListener, stop: &AtomicBool) {
        let slots = Slots::new(self.limits.max_connections);
        loop {
            let accepted = listener.accept();
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let (stream, peer) = match accepted {
                Ok(a) => a,
                // Out of descriptors, an aborted handshake: not fatal.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            if self.policy.as_ref().is_some_and(|p| !p.admits(peer.ip())) {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.log(|| format!("nbd: refused connection from {peer}: not on the allow list"));
                continue;
            }
            let slot = match slots.admit(peer, &stream) {
                Admission::Full => {
                    self.stats.turned_away.fetch_add(1, Ordering::Relaxed);
                    self.log(|| {
                        format!(
                            "nbd: connection limit reached ({} connections, all running commands): \
                             refused {peer}",
                            slots.max()
                        )
                    });
                    continue;
                }
                Admission::Admitted { slot, evicted } => {
                    if let Some(v) = evicted {
                        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                        self.log(|| {
                            format!(
                                "nbd: connection limit reached ({} connections): closed the \
                                 longest-idle connection, from {} ({}, idle {} s), to admit {peer}",
                                slots.max(),
                                v.peer,
                                if v.serving { "serving" } else { "negotiating" },
                                v.idle.as_secs()
                            )
                        });
                    }
                    slot
                }
            };
            self.stats.active.fetch_add(1, Ordering::Relaxed);
            let server = self.clone();
            let spawned = std::thread::Builder::new()
                .name("nbd-conn".into())
                .spawn(move || {
                    if let Err(e) = server.serve_with(stream, slot.activity()) {
                        server.stats.failed.fetch_add(1, Ordering::Relaxed);
                        server.log(|| format!("nbd: {e}"));
                        *server
                            .stats
                            .last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    }
                    server.stats.active.fetch_sub(1, Ordering::Relaxed);
                    drop(slot);
                });
            if spawned.is_err() {
                // The stream and the slot were dropped with the closure:
                // the client sees a close.
                self.stats.active.fetch_sub(1, Ordering::Relaxed);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Binds `addr` (use `127.0.0.1:0` for an ephemeral port) and serves in
    /// a background thread.
    pub fn spawn(self, addr: impl ToSocketAddrs) -> Result<ServerHandle, ListenError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|source| ListenError::Bind {
                addr: "the address given".into(),
                source,
            })?
            .collect();
        for a in &addrs {
            self.check_tls(*a)?;
        }
        let bind = |source| ListenError::Bind {
            addr: addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            source,
        };
        let listener = TcpListener::bind(&addrs[..]).map_err(bind)?;
        let local_addr = listener.local_addr().map_err(bind)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = self.stats.clone();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nbd-accept".into())
            .spawn(move || self.serve_until(listener, &thread_stop))
            .map_err(ListenError::Thread)?;
        Ok(ServerHandle {
            local_addr,
            stop,
            stats,
            thread: Some(thread),
        })
    }
}

/// Serves `exports` on `listener` forever, one thread per connection.
pub fn serve(listener: TcpListener, exports: Arc<ExportTable>) -> Result<(), ListenError> {
    NbdServer::new(exports).serve(listener)
}

/// Binds `addr` and serves `exports` in a background thread.
pub fn spawn(
    addr: impl ToSocketAddrs,
    exports: Arc<ExportTable>,
) -> Result<ServerHandle, ListenError> {
    NbdServer::new(exports).spawn(addr)
}

/// A server running in a background thread. Dropping it stops accepting;
/// connections already open run until their clients leave.
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<ServerStats>,
    thread: Option<JoinHandle<()>>,
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
