//! The NBD listener of the service: accepts connections, refuses peers that
//! are not on the service's allow list (the socket is closed before the
//! NBD greeting), and hands the others to `lifeboat_nbd::NbdServer`, one
//! std thread per connection, over the service's [`ExportTable`].

use lifeboat_nbd::{ExportTable, NbdServer};
use lifeboat_nfs::{AllowList, ServiceLog};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running NBD listener; dropping it stops accepting (open connections
/// run until their clients leave).
pub(crate) struct NbdListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NbdListener {
    pub(crate) fn start(
        addr: SocketAddr,
        exports: Arc<ExportTable>,
        allow: Arc<AllowList>,
        log: Arc<ServiceLog>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let server = NbdServer::new(exports);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ir-nbd-accept".into())
            .spawn(move || accept_loop(listener, server, allow, log, flag))?;
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

fn accept_loop(
    listener: TcpListener,
    server: NbdServer,
    allow: Arc<AllowList>,
    log: Arc<ServiceLog>,
    stop: Arc<AtomicBool>,
) {
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
        if !allow.allows(peer.ip()) {
            log.line(format!(
                "nbd: refused connection from {peer}: not on the allow list"
            ));
            drop(stream);
            continue;
        }
        let (conn_server, conn_log) = (server.clone(), log.clone());
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
