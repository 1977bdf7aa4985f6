//! The NBD listener of the service: accepts connections, refuses peers that
//! are not on the service's allow list (the socket is closed before the
//! NBD greeting), and hands the others to `lifeboat_nbd::NbdServer`, one
//! std thread per connection.
//!
//! Per-session client lists ([`ExportClients`]): a session started with
//! `--allow` records, for each of its exports, the clients that may use
//! it. The server asks them through its `AccessPolicy` hook
//! ([`SessionPolicy`]) for every connection: a peer off an export's list
//! does not see it in NBD_OPT_LIST, NBD_OPT_GO / NBD_OPT_INFO (and the
//! meta-context options) naming it are answered NBD_REP_ERR_POLICY ("not
//! permitted to this client by server policy"), NBD_OPT_EXPORT_NAME naming
//! it closes the connection, and the service logs each refusal with the
//! export and the peer. All peers share the live export table; exports of
//! sessions without a list of their own are open to every peer the service
//! admits.

use lifeboat_nbd::{AccessPolicy, ExportTable, NbdServer};
use lifeboat_nfs::{AllowList, ServiceLog};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Export name → the clients its session admits (exports of sessions
/// without a list of their own are not in the map).
#[derive(Default)]
pub(crate) struct ExportClients {
    lists: RwLock<BTreeMap<String, AllowList>>,
}

impl ExportClients {
    pub(crate) fn restrict(&self, export: &str, clients: AllowList) {
        self.lists
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(export.to_owned(), clients);
    }

    pub(crate) fn forget(&self, export: &str) {
        self.lists
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(export);
    }

    /// Whether `peer` may use `export`: it is on the export's list, or the
    /// export has none.
    pub(crate) fn permits(&self, export: &str, peer: IpAddr) -> bool {
        self.lists
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(export)
            .is_none_or(|clients| clients.allows(peer))
    }
}

/// The NBD server's access policy: the session lists, and a log line for
/// each refusal.
pub(crate) struct SessionPolicy {
    clients: Arc<ExportClients>,
    log: Arc<ServiceLog>,
}

impl AccessPolicy for SessionPolicy {
    fn permits(&self, export: &str, peer: IpAddr) -> bool {
        self.clients.permits(export, peer)
    }

    fn refused(&self, export: &str, peer: IpAddr) {
        self.log.line(format!(
            "nbd: refused export {export} to {peer}: not on the allow list of its session (NBD_REP_ERR_POLICY)"
        ));
    }
}

/// A running NBD listener; dropping it stops accepting (open connections
/// run until their clients leave).
pub(crate) struct NbdListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the accept loop serves from.
struct Shared {
    exports: Arc<ExportTable>,
    clients: Arc<ExportClients>,
    allow: AllowList,
    log: Arc<ServiceLog>,
}

impl NbdListener {
    pub(crate) fn start(
        addr: SocketAddr,
        exports: Arc<ExportTable>,
        clients: Arc<ExportClients>,
        allow: AllowList,
        log: Arc<ServiceLog>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let shared = Shared {
            exports,
            clients,
            allow,
            log,
        };
        let thread = std::thread::Builder::new()
            .name("ir-nbd-accept".into())
            .spawn(move || accept_loop(listener, shared, flag))?;
        Ok(NbdListener {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NbdListener {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

fn accept_loop(listener: TcpListener, shared: Shared, stop: Arc<AtomicBool>) {
    let log = &shared.log;
    let policy = SessionPolicy {
        clients: shared.clients.clone(),
        log: log.clone(),
    };
    let server = NbdServer::new(shared.exports.clone()).with_policy(Arc::new(policy));
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if !shared.allow.allows(peer.ip()) {
            log.line(format!(
                "nbd: refused connection from {peer}: not on the allow list"
            ));
            continue;
        }
        let conn_server = server.clone();
        let conn_log = log.clone();
        let spawned = std::thread::Builder::new()
            .name("ir-nbd-conn".into())
            .spawn(move || {
                if let Err(e) = conn_server.serve_connection(stream) {
                    conn_log.line(format!("nbd: {e}"));
                }
            });
        if let Err(e) = spawned {
            // The stream went away with the closure: the client sees a close.
            log.line(format!("nbd: cannot serve {peer}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_may_use_the_exports_their_sessions_admit() {
        let clients = Arc::new(ExportClients::default());
        clients.restrict("b-disk0", AllowList::parse(["10.9.9.9"]).unwrap());
        let policy = SessionPolicy {
            clients: clients.clone(),
            log: Arc::new(ServiceLog::default()),
        };
        let (listed, local): (IpAddr, IpAddr) =
            ("10.9.9.9".parse().unwrap(), "127.0.0.1".parse().unwrap());
        assert!(policy.permits("a-disk0", local), "a has no list: open");
        assert!(policy.permits("b-disk0", listed));
        assert!(!policy.permits("b-disk0", local));

        policy.refused("b-disk0", local);
        let lines = policy.log.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("refused export b-disk0 to 127.0.0.1")),
            "{lines:?}"
        );

        clients.forget("b-disk0");
        assert!(policy.permits("b-disk0", local), "forgotten: open again");
    }
}
