//! The socket layer: [`NfsService::start`] binds the portmapper (TCP and
//! UDP), MOUNT and NFS listeners and serves them from std threads.
//!
//! ```text
//! portmap TCP ──┐
//! portmap UDP ──┤                       ┌─ Portmap   (100000 v2)
//! mount TCP  ───┼── Dispatcher (rpc) ───┼─ MountProgram (100005 v3)
//! nfs TCP    ───┘                       └─ NfsProgram (100003 v3) ── NfsBackend
//! ```
//!
//! Every listener dispatches to all three programs (as rpcbind-less
//! servers usually do); the portmapper advertises MOUNT v3 and NFS v3 on
//! their own ports. One thread per TCP connection; requests on a connection
//! are served in order. A record that breaks the framing (too long, not a
//! call) closes only its connection and is logged; a client leaving in the
//! middle of a record ends only its connection. UDP is served for the
//! portmapper only, one datagram at a time.

use crate::access::AllowList;
use crate::backend::NfsBackend;
use crate::log::ServiceLog;
use crate::mount::MountProgram;
use crate::nfs::NfsProgram;
use crate::portmap::{Mapping, Portmap, IPPROTO_TCP, IPPROTO_UDP};
use crate::rpc::msg::CallError;
use crate::rpc::record::{begin_record, finish_record, FragmentHeader, DEFAULT_MAX_RECORD};
use crate::rpc::{Dispatcher, Reply};
use std::io::{self, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Clients that may mount and use handles.
    pub allow: AllowList,
    /// Largest RPC record accepted.
    pub max_record: usize,
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
        let mount = Arc::new(MountProgram::new(backend, allow, &config.export_path));
        let dispatcher = Arc::new(Dispatcher::new(vec![portmap.clone(), mount, nfs]));

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

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut wake = Vec::new();
        for l in tcp {
            wake.push(l.local_addr()?);
            let (d, log, stop, max) = (
                dispatcher.clone(),
                log.clone(),
                stop.clone(),
                config.max_record,
            );
            threads.push(
                std::thread::Builder::new()
                    .name("nfs-accept".into())
                    .spawn(move || accept_loop(l, d, log, stop, max))?,
            );
        }
        if let Some(u) = udp {
            u.set_read_timeout(Some(Duration::from_millis(200)))?;
            let (d, stop) = (dispatcher.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("nfs-udp".into())
                    .spawn(move || udp_loop(u, d, stop))?,
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
            wake,
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

fn accept_loop(
    l: TcpListener,
    d: Arc<Dispatcher>,
    log: Arc<ServiceLog>,
    stop: Arc<AtomicBool>,
    max: usize,
) {
    loop {
        let accepted = l.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, peer)) = accepted else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        ServiceLog::bump(&log.accepted);
        ServiceLog::bump(&log.active);
        let (d, log2) = (d.clone(), log.clone());
        let spawned = std::thread::Builder::new()
            .name("nfs-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, peer, &d, &log2, max) {
                    log2.line(format!("rpc: connection from {peer} closed: {e}"));
                }
                log2.active.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            log.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Serves one TCP connection until the client leaves or breaks framing.
fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    d: &Dispatcher,
    log: &ServiceLog,
    max: usize,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(256 << 10, stream);
    let mut msg = Vec::new();
    let mut out = Reply::new();
    loop {
        msg.clear();
        loop {
            let mut raw = [0u8; 4];
            if let Err(e) = reader.read_exact(&mut raw) {
                // EOF between records is a normal close.
                return if msg.is_empty() && e.kind() == io::ErrorKind::UnexpectedEof {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            let h = match FragmentHeader::decode(raw, msg.len(), max) {
                Ok(h) => h,
                Err(e) => {
                    ServiceLog::bump(&log.closed_bad_input);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            };
            let at = msg.len();
            msg.resize(at + h.len, 0);
            reader.read_exact(&mut msg[at..])?;
            if h.last {
                break;
            }
        }
        out.clear();
        let start = begin_record(&mut out);
        if let Err(e @ CallError::NotACall(_)) = d.handle(&msg, peer.ip(), &mut out) {
            ServiceLog::bump(&log.closed_bad_input);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        finish_record(&mut out, start);
        out.write_to(&mut writer)?;
    }
}

fn udp_loop(u: UdpSocket, d: Arc<Dispatcher>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    let mut out = Reply::new();
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = u.recv_from(&mut buf) else {
            continue;
        };
        out.clear();
        let _ = d.handle(&buf[..n], peer.ip(), &mut out);
        if out.total_len() > 0 {
            let _ = u.send_to(&out.to_vec_from(0), peer);
        }
    }
}

/// A running service. Dropping it stops the listeners; open connections
/// run until their clients leave.
pub struct NfsServiceHandle {
    portmap_addr: Option<SocketAddr>,
    mount_addr: SocketAddr,
    nfs_addr: SocketAddr,
    log: Arc<ServiceLog>,
    portmap: Arc<Portmap>,
    verifier: [u8; 8],
    stop: Arc<AtomicBool>,
    wake: Vec<SocketAddr>,
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
    /// Stops the listeners and waits for their threads.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for a in &self.wake {
            let _ = TcpStream::connect_timeout(a, Duration::from_secs(1));
        }
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
