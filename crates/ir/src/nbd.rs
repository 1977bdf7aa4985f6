//! The NBD listener of the service: accepts connections, refuses peers that
//! are not on the service's allow list (the socket is closed before the
//! NBD greeting), and hands the others to `lifeboat_nbd::NbdServer`, one
//! std thread per connection.
//!
//! Per-session client lists ([`ExportClients`]): a session started with
//! `--allow` records, for each of its exports, the clients that may use
//! it. A peer that is off some of those lists is served from a table of
//! its own, a snapshot of the exports it may use: the others do not exist
//! for it (NBD_OPT_LIST leaves them out, NBD_OPT_GO/INFO answer
//! NBD_REP_ERR_UNKNOWN, since `lifeboat-nbd` has no per-client policy
//! hook to answer NBD_REP_ERR_POLICY) and the service logs which exports
//! were withheld from whom. A peer that may use none of the exports is
//! closed before the greeting, with a log line. Peers that no session
//! restricts share the live table.

use lifeboat_nbd::{Export, ExportTable, NbdServer};
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

/// What one peer may see of the export table.
pub(crate) enum View {
    /// Every export: no session restricts this peer.
    All,
    /// Only these exports; the names of the withheld ones.
    Some(Arc<ExportTable>, Vec<String>),
    /// No export at all (every one is withheld).
    Nothing(Vec<String>),
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

    /// The part of `table` that `peer` may use.
    pub(crate) fn view(&self, table: &ExportTable, peer: IpAddr) -> View {
        let lists = self.lists.read().unwrap_or_else(|e| e.into_inner());
        let exports = table.exports();
        let (allowed, withheld): (Vec<_>, Vec<_>) = exports.into_iter().partition(|e| {
            lists
                .get(e.name())
                .is_none_or(|clients| clients.allows(peer))
        });
        let withheld: Vec<String> = withheld.iter().map(|e| e.name().to_owned()).collect();
        if withheld.is_empty() {
            return View::All;
        }
        if allowed.is_empty() {
            return View::Nothing(withheld);
        }
        let own = ExportTable::new();
        for e in allowed {
            own.insert(
                Export::new(e.name(), e.reader().clone(), e.writer().cloned())
                    .with_description(e.description()),
            );
        }
        View::Some(Arc::new(own), withheld)
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
    let server = NbdServer::new(shared.exports.clone());
    let log = &shared.log;
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
        let conn_server = match shared.clients.view(&shared.exports, peer.ip()) {
            View::All => server.clone(),
            View::Some(own, withheld) => {
                log.line(format!(
                    "nbd: {peer} is not on the allow list of session export(s) {}: withheld from this connection",
                    withheld.join(", ")
                ));
                NbdServer::new(own)
            }
            View::Nothing(withheld) => {
                log.line(format!(
                    "nbd: refused connection from {peer}: not on the allow list of any export ({})",
                    withheld.join(", ")
                ));
                continue;
            }
        };
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
    use lifeboat_vdisk::MemDisk;

    #[test]
    fn peers_see_the_exports_their_sessions_admit() {
        let table = ExportTable::new();
        for name in ["a-disk0", "b-disk0"] {
            table.insert(Export::writable(
                name,
                Arc::new(MemDisk::new(name, vec![0; 512])),
            ));
        }
        let clients = ExportClients::default();
        clients.restrict("b-disk0", AllowList::parse(["10.9.9.9"]).unwrap());
        let names = |t: &ExportTable| -> Vec<String> {
            t.exports().iter().map(|e| e.name().to_owned()).collect()
        };
        assert!(matches!(
            clients.view(&table, "10.9.9.9".parse().unwrap()),
            View::All
        ));
        match clients.view(&table, "127.0.0.1".parse().unwrap()) {
            View::Some(own, withheld) => {
                assert_eq!(names(&own), ["a-disk0"]);
                assert!(own.get("a-disk0").unwrap().writer().is_some());
                assert_eq!(withheld, ["b-disk0"]);
            }
            _ => panic!("127.0.0.1 should see a-disk0 only"),
        }
        clients.restrict("a-disk0", AllowList::parse(["10.9.9.9"]).unwrap());
        assert!(matches!(
            clients.view(&table, "127.0.0.1".parse().unwrap()),
            View::Nothing(w) if w.len() == 2
        ));
        clients.forget("a-disk0");
        clients.forget("b-disk0");
        assert!(matches!(
            clients.view(&table, "127.0.0.1".parse().unwrap()),
            View::All
        ));
    }
}
