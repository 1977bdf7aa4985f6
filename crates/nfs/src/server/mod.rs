//! The socket layer: [`NfsService::start`] binds the portmapper (TCP and
//! UDP), MOUNT and NFS listeners and serves them.
//!
//! ```text
//! portmap TCP ──┐                                       ┌─ Portmap      (100000 v2)
//! mount TCP  ───┼─ reactor (epoll) ── Pool ── Dispatcher ┼─ MountProgram (100005 v3)
//! nfs TCP    ───┘                                       └─ NfsProgram   (100003 v3) ── NfsBackend
//! portmap UDP ── udp thread ───────────────── Dispatcher
//! ```
//!
//! Every listener dispatches to all three programs (as rpcbind-less
//! servers usually do); the portmapper advertises MOUNT v3 and NFS v3 on
//! their own ports. Threads: one reactor for every TCP listener and
//! connection (reactor.rs), [`NfsConfig::workers`] workers running calls
//! (pool.rs, calls.rs; a worker may follow a connection that sends one
//! call at a time) and one for UDP (udp.rs), whatever the number of
//! clients.
//!
//! Hostile peers: a peer on no allow list is closed when accepted, before
//! a byte is read (over UDP its datagrams are dropped unanswered); at most
//! [`NfsConfig::max_connections`] connections are open (at the limit the
//! longest-idle one makes room, with a log line); a connection idle for
//! [`NfsConfig::idle_timeout`] is closed; a connection holds only the
//! record bytes that have arrived (at most [`NfsConfig::max_record`]) and
//! at most 16 unanswered calls.

mod calls;
mod conn;
mod pool;
mod reactor;
mod udp;

use crate::access::AllowList;
use crate::backend::NfsBackend;
use crate::log::ServiceLog;
use crate::mount::MountProgram;
use crate::nfs::NfsProgram;
use crate::portmap::{Mapping, Portmap, IPPROTO_TCP, IPPROTO_UDP};
use crate::rpc::record::DEFAULT_MAX_RECORD;
use crate::rpc::Dispatcher;
use reactor::{Gate, Limits, Reactor, Waker};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Default [`NfsConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`NfsConfig::idle_timeout`]: 6 minutes, as Linux's knfsd.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(360);
/// Default [`NfsConfig::workers`].
pub const DEFAULT_WORKERS: usize = 8;

/// Where and how the service listens.
#[derive(Debug, Clone)]
pub struct NfsConfig {
    /// Portmapper address (TCP and UDP, same port); `None`: no portmapper.
    pub portmap: Option<SocketAddr>,
    /// MOUNT v3 address (TCP).
    pub mount: SocketAddr,
    /// NFS v3 address (TCP); may equal `mount` (one listener serves both).
    pub nfs: SocketAddr,
    /// The path clients mount, e.g. `/lifeboat`.
    pub export_path: String,
    /// Clients that may connect, mount and use handles.
    pub allow: AllowList,
    /// Largest RPC record accepted.
    pub max_record: usize,
    /// TCP connections open at once, over every listener. At the limit
    /// the connection quiet for longest (no call in flight) is closed to
    /// admit the new one; if every connection is busy, the new one is
    /// closed. Either is logged.
    pub max_connections: usize,
    /// A connection with no bytes in or out for this long is closed
    /// (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Threads running calls (every connection's calls share them).
    pub workers: usize,
}

impl NfsConfig {
    /// Production defaults on `ip`: portmapper 111, MOUNT 1058, NFS 2049.
    pub fn standard(ip: IpAddr, allow: AllowList) -> Self {
        NfsConfig {
            portmap: Some(SocketAddr::new(ip, 111)),
            mount: SocketAddr::new(ip, 1058),
            nfs: SocketAddr::new(ip, 2049),
            export_path: "/lifeboat".into(),
            allow,
            max_record: DEFAULT_MAX_RECORD,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            workers: DEFAULT_WORKERS,
        }
    }

    /// Every port ephemeral (tests).
    pub fn ephemeral(ip: IpAddr, allow: AllowList) -> Self {
        NfsConfig {
            portmap: Some(SocketAddr::new(ip, 0)),
            mount: SocketAddr::new(ip, 0),
            nfs: SocketAddr::new(ip, 0),
            ..Self::standard(ip, allow)
        }
    }
}

/// Raises the soft limit of open files to `want` (at most the hard limit):
/// each connection is a file descriptor.
fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    let hard = l.maximum.unwrap_or(u64::MAX);
    if l.current.is_some_and(|c| c < want.min(hard)) {
        l.current = Some(want.min(hard));
        let _ = setrlimit(Resource::Nofile, l);
    }
}

/// The NFS service.
pub struct NfsService;

impl NfsService {
    /// Binds every listener and serves in background threads.
    pub fn start(config: NfsConfig, backend: Arc<dyn NfsBackend>) -> io::Result<NfsServiceHandle> {
        let log = Arc::new(ServiceLog::default());
        let allow = Arc::new(config.allow.clone());
        let portmap = Arc::new(Portmap::new());
        let nfs = Arc::new(NfsProgram::new(backend.clone(), allow.clone(), log.clone()));
        let verifier = nfs.write_verifier();
        let mount = Arc::new(MountProgram::new(
            backend.clone(),
            allow.clone(),
            &config.export_path,
        ));
        let dispatcher = Arc::new(Dispatcher::new(vec![portmap.clone(), mount, nfs]));
        let gate = Arc::new(Gate { allow, backend });

        let mut tcp = Vec::new();
        let mut udp = None;
        let mut portmap_addr = None;
        if let Some(addr) = config.portmap {
            let (t, u) = bind_pair(addr)?;
            portmap_addr = Some(t.local_addr()?);
            tcp.push(t);
            udp = Some(u);
        }
        let mount_l = TcpListener::bind(config.mount)?;
        let mount_addr = mount_l.local_addr()?;
        tcp.push(mount_l);
        let nfs_addr = if config.nfs == config.mount && config.nfs.port() != 0 {
            mount_addr
        } else {
            let l = TcpListener::bind(config.nfs)?;
            let a = l.local_addr()?;
            tcp.push(l);
            a
        };
        for (prog, vers, port) in [
            (
                crate::mount::PROGRAM,
                crate::mount::VERSION,
                mount_addr.port(),
            ),
            (crate::nfs::PROGRAM, crate::nfs::VERSION, nfs_addr.port()),
        ] {
            portmap.set(Mapping {
                prog,
                vers,
                prot: IPPROTO_TCP,
                port: port as u32,
            });
        }
        if let Some(a) = portmap_addr {
            for prot in [IPPROTO_TCP, IPPROTO_UDP] {
                portmap.set(Mapping {
                    prog: crate::portmap::PROGRAM,
                    vers: crate::portmap::VERSION,
                    prot,
                    port: a.port() as u32,
                });
            }
        }

        raise_fd_limit(config.max_connections as u64 + 256);
        let stop = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Waker::new()?);
        let pool = pool::Pool::start(config.workers, "nfs-worker")?;
        let limits = Limits {
            max_connections: config.max_connections.max(1),
            idle_timeout: config.idle_timeout,
            max_record: config.max_record,
        };
        let reactor = Reactor::new(
            tcp,
            waker.clone(),
            pool,
            config.workers,
            dispatcher.clone(),
            log.clone(),
            gate.clone(),
            limits,
            stop.clone(),
        )?;
        let mut threads = vec![std::thread::Builder::new()
            .name("nfs-reactor".into())
            .spawn(move || reactor.run())?];
        if let Some(u) = udp {
            u.set_read_timeout(Some(Duration::from_millis(200)))?;
            let (d, stop, log) = (dispatcher.clone(), stop.clone(), log.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("nfs-udp".into())
                    .spawn(move || udp::udp_loop(u, d, gate, log, stop))?,
            );
        }
        Ok(NfsServiceHandle {
            portmap_addr,
            mount_addr,
            nfs_addr,
            log,
            portmap,
            verifier,
            stop,
            waker,
            threads,
        })
    }
}

/// A TCP listener and a UDP socket on the same port.
fn bind_pair(addr: SocketAddr) -> io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let t = TcpListener::bind(addr)?;
        match UdpSocket::bind(t.local_addr()?) {
            Ok(u) => return Ok((t, u)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no common TCP/UDP port")))
}

/// A running service. Dropping it stops the listeners and closes every
/// connection.
pub struct NfsServiceHandle {
    portmap_addr: Option<SocketAddr>,
    mount_addr: SocketAddr,
    nfs_addr: SocketAddr,
    log: Arc<ServiceLog>,
    portmap: Arc<Portmap>,
    verifier: [u8; 8],
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    threads: Vec<JoinHandle<()>>,
}

impl NfsServiceHandle {
    /// The portmapper's address (TCP and UDP).
    pub fn portmap_addr(&self) -> Option<SocketAddr> {
        self.portmap_addr
    }
    pub fn mount_addr(&self) -> SocketAddr {
        self.mount_addr
    }
    pub fn nfs_addr(&self) -> SocketAddr {
        self.nfs_addr
    }
    /// Counters and log lines.
    pub fn log(&self) -> &Arc<ServiceLog> {
        &self.log
    }
    /// The portmapper registry (to register more programs).
    pub fn portmap(&self) -> &Arc<Portmap> {
        &self.portmap
    }
    /// The WRITE/COMMIT verifier of this instance.
    pub fn write_verifier(&self) -> [u8; 8] {
        self.verifier
    }
    /// Stops the listeners, closes the connections and waits for the
    /// threads.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake(0);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for NfsServiceHandle {
    fn drop(&mut self) {
        self.stop_all();
    }
}
