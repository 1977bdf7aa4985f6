//! [`Service`]: the long-running Instant VM Recovery service, bound to one
//! repository and one cache folder.
//!
//! ```text
//! Service::start
//!   lock <cache>/service.lock (refuse if another service holds it; held
//!     until the service is dropped or the process ends)
//!   claim <cache>/control.sock (refuse if another service answers)
//!   open the repository; HandleKey <cache>/handle.key; SessionTree
//!   NfsService (portmapper, MOUNT, NFS)      NbdListener (service allow list at
//!                                              accept, session lists by policy,
//!                                              limits, TLS-only with nbd_tls)
//!   re-open every <cache>/sessions/*/session.json (sessions.rs)
//!   ControlServer: requests → Inner::handle
//! ```
//!
//! Sessions live in `Inner::sessions`; the map's lock is held only to
//! insert, look up and remove, never during I/O, so a long migrate does not
//! block `list` or `start`. Dropping the service stops the control socket,
//! removes every session from the NFS tree and the NBD table (their overlays
//! are flushed and closed once no connection holds them), stops the
//! listeners and releases the lock. None of this depends on
//! `control.sock` still being in place (see [`crate::control`]).

use crate::control::{self, ControlServer};
use crate::error::{Error, Result};
use crate::nbd::{ExportClients, NbdListener, NbdTlsFiles};
use crate::protocol::{Request, Response, ServiceInfo};
use crate::record::{sessions_dir, SessionRecord};
use crate::sessions::Live;
use lifeboat_nbd::{ExportTable, ServerLimits};
use lifeboat_nfs::{
    AllowList, HandleKey, LogHook, NfsConfig, NfsService, NfsServiceHandle, ServiceLog, SessionTree,
};
use lifeboat_repo::Repository;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cache_size::default_cache_bytes;
pub use crate::sessions::parse_format;
use lifeboat_vdisk::CacheBudget;

/// How the service is set up.
#[derive(Clone)]
pub struct ServiceConfig {
    pub repo: PathBuf,
    pub passphrase: Option<String>,
    pub cache_dir: PathBuf,
    /// Address every listener binds.
    pub listen: IpAddr,
    /// `None`: no portmapper (QEMU's nfs driver then cannot find the service).
    pub portmap_port: Option<u16>,
    pub mount_port: u16,
    pub nfs_port: u16,
    /// `None`: no NBD server.
    pub nbd_port: Option<u16>,
    /// NBD over TLS (TLS-only); required when `listen` is not loopback
    /// and the NBD server runs.
    pub nbd_tls: Option<NbdTlsFiles>,
    /// Connection limit and timeouts of the NBD server.
    pub nbd_limits: ServerLimits,
    /// Client addresses / CIDR networks allowed to use NFS and NBD.
    pub allow: Vec<String>,
    /// Host name printed in URLs (default: the listen address, or the
    /// machine's host name when listening on every address).
    pub advertise: Option<String>,
    /// Decoded-chunk cache of the service, bytes, shared by every disk of
    /// every session (the disk being read gets the memory); default
    /// [`default_cache_bytes`]. A re-read of what fits is served from
    /// memory instead of being decompressed again.
    pub cache_bytes: u64,
    /// Receives every log line (the CLI prints them to stderr).
    pub log_hook: Option<LogHook>,
    /// NFS, MOUNT and portmapper TCP connections open at once.
    pub nfs_max_connections: usize,
    /// Close an NFS/MOUNT/portmapper connection quiet this long (`None`:
    /// never).
    pub nfs_idle_timeout: Option<std::time::Duration>,
}

impl ServiceConfig {
    /// Production defaults: every address, ports 111 / 1058 / 2049 / 10809.
    pub fn new(repo: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        ServiceConfig {
            repo: repo.into(),
            passphrase: None,
            cache_dir: cache_dir.into(),
            listen: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            portmap_port: Some(111),
            mount_port: 1058,
            nfs_port: 2049,
            nbd_port: Some(10809),
            nbd_tls: None,
            nbd_limits: ServerLimits::default(),
            allow: Vec::new(),
            advertise: None,
            cache_bytes: default_cache_bytes(),
            log_hook: None,
            nfs_max_connections: lifeboat_nfs::DEFAULT_MAX_CONNECTIONS,
            nfs_idle_timeout: Some(lifeboat_nfs::DEFAULT_IDLE_TIMEOUT),
        }
    }

    /// Every port ephemeral on `ip`, `ip` allowed (tests).
    pub fn ephemeral(repo: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>, ip: IpAddr) -> Self {
        ServiceConfig {
            listen: ip,
            portmap_port: Some(0),
            mount_port: 0,
            nfs_port: 0,
            nbd_port: Some(0),
            allow: vec![ip.to_string()],
            ..Self::new(repo, cache_dir)
        }
    }
}

/// State shared by the control socket and the service object.
pub(crate) struct Inner {
    pub(crate) repo: Repository,
    pub(crate) cache_dir: PathBuf,
    pub(crate) cache_budget: Arc<CacheBudget>,
    pub(crate) info: ServiceInfo,
    pub(crate) tree: Arc<SessionTree>,
    pub(crate) exports: Arc<ExportTable>,
    /// Per-session client lists of the NBD exports.
    pub(crate) export_clients: Arc<ExportClients>,
    pub(crate) sessions: Mutex<BTreeMap<String, Arc<Live>>>,
    pub(crate) log: Arc<ServiceLog>,
}

/// The running service. Dropping it stops it.
pub struct Service {
    inner: Arc<Inner>,
    control: Option<ControlServer>,
    nbd: Option<NbdListener>,
    nfs: Option<NfsServiceHandle>,
    /// The open `<cache>/service.lock`: the lock is released when this
    /// field is dropped, after everything else has stopped.
    _lock: File,
}

fn host_name() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_owned())
}

impl Service {
    /// Opens the repository, starts the listeners, re-opens the sessions
    /// found in the cache folder and opens the control socket.
    pub fn start(config: ServiceConfig) -> Result<Service> {
        let cache = config.cache_dir.clone();
        std::fs::create_dir_all(sessions_dir(&cache))
            .map_err(|e| Error::io(format!("creating {}", sessions_dir(&cache).display()), e))?;
        let lock = control::lock_cache(&cache)?;
        let sock = control::socket_path(&cache);
        control::claim(&sock)?;
        // A chunk that fails authentication while a VM runs from it is
        // quarantined (best effort), so the next backup heals it.
        let repo = Repository::open(&config.repo, config.passphrase.as_deref())
            .map(|r| r.with_heal_on_read(true))
            .map_err(|source| Error::Repo {
                path: config.repo.clone(),
                source,
            })?;
        let allow = AllowList::parse(&config.allow)?;
        let key_path = cache.join("handle.key");
        let key = HandleKey::load_or_create(&key_path)
            .map_err(|e| Error::io(format!("handle key {}", key_path.display()), e))?;
        let tree = Arc::new(SessionTree::new(key));

        let ip = config.listen;
        let mut nfs_config = NfsConfig::standard(ip, allow.clone());
        nfs_config.portmap = config.portmap_port.map(|p| SocketAddr::new(ip, p));
        nfs_config.mount = SocketAddr::new(ip, config.mount_port);
        nfs_config.nfs = SocketAddr::new(ip, config.nfs_port);
        nfs_config.max_connections = config.nfs_max_connections;
        nfs_config.idle_timeout = config.nfs_idle_timeout;
        let export_path = nfs_config.export_path.clone();
        let nfs = NfsService::start(nfs_config, tree.clone())
            .map_err(|e| Error::io(format!("starting the NFS service on {ip}"), e))?;
        let log = nfs.log().clone();
        if let Some(hook) = &config.log_hook {
            log.set_hook(hook.clone());
        }
        let exports = Arc::new(ExportTable::new());
        let export_clients = Arc::new(ExportClients::default());
        let nbd = match config.nbd_port {
            Some(port) => Some(NbdListener::start(
                SocketAddr::new(ip, port),
                exports.clone(),
                export_clients.clone(),
                allow,
                log.clone(),
                config.nbd_limits,
                config.nbd_tls.as_ref(),
            )?),
            None => None,
        };
        let host = config.advertise.clone().unwrap_or_else(|| {
            if ip.is_unspecified() {
                host_name().unwrap_or_else(|| ip.to_string())
            } else {
                ip.to_string()
            }
        });
        let info = ServiceInfo {
            repo: config.repo.clone(),
            repo_id: repo.id().to_owned(),
            cache_dir: cache.clone(),
            host,
            export_path,
            portmap_port: nfs.portmap_addr().map(|a| a.port()),
            mount_port: nfs.mount_addr().port(),
            nfs_port: nfs.nfs_addr().port(),
            nbd_port: nbd.as_ref().map(|n| n.addr().port()),
            nbd_tls: nbd.is_some() && config.nbd_tls.is_some(),
            allow: config.allow.clone(),
        };
        let inner = Arc::new(Inner {
            repo,
            cache_dir: cache,
            cache_budget: Arc::new(CacheBudget::new(config.cache_bytes)),
            info,
            tree,
            exports,
            export_clients,
            sessions: Mutex::default(),
            log,
        });
        inner.reopen_all();
        let handler_inner = inner.clone();
        let control = ControlServer::start(&sock, Arc::new(move |r| handler_inner.handle(r)))?;
        let i = &inner.info;
        inner.log.line(format!(
            "service: repository {} ({}), cache {}, portmapper {:?}, mount {}, nfs {}, nbd {:?}{}, allow [{}]",
            i.repo.display(),
            i.repo_id,
            i.cache_dir.display(),
            i.portmap_port,
            i.mount_port,
            i.nfs_port,
            i.nbd_port,
            if i.nbd_tls { " (TLS only)" } else { "" },
            i.allow.join(", ")
        ));
        Ok(Service {
            inner,
            control: Some(control),
            nbd,
            nfs: Some(nfs),
            _lock: lock,
        })
    }

    /// Where the service listens.
    pub fn info(&self) -> &ServiceInfo {
        &self.inner.info
    }

    /// The service's counters and recent log lines.
    pub fn log(&self) -> &Arc<ServiceLog> {
        &self.inner.log
    }

    /// The portmapper's address, if one runs.
    pub fn portmap_addr(&self) -> Option<SocketAddr> {
        self.nfs.as_ref().and_then(|n| n.portmap_addr())
    }

    /// Answers one control request (what the control socket calls).
    pub fn handle(&self, req: Request) -> Response {
        self.inner.handle(req)
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.inner.cache_dir
    }

    /// Stops the service (same as dropping it).
    pub fn shutdown(self) {}
}

impl Drop for Service {
    fn drop(&mut self) {
        self.control.take();
        self.inner.detach_all();
        self.nbd.take();
        if let Some(n) = self.nfs.take() {
            n.shutdown();
        }
        let summary = self.inner.log.summary();
        self.inner.log.line(format!("service: stopped ({summary})"));
    }
}

pub(crate) use lifeboat_engine::error_chain as chain;

impl Inner {
    pub(crate) fn handle(&self, req: Request) -> Response {
        let started = Instant::now();
        let result = match req {
            Request::Start(s) => self.start_session(&s).map(|session| Response::Started {
                session,
                start_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }),
            Request::List => Ok(Response::Sessions {
                service: self.info.clone(),
                sessions: self.list(),
            }),
            Request::Stop {
                session,
                keep_overlay,
            } => self
                .stop_session(&session, keep_overlay)
                .map(|()| Response::Stopped {
                    session,
                    overlay_kept: keep_overlay,
                }),
            Request::Migrate {
                session,
                to,
                format,
            } => self
                .migrate(&session, &to, format.as_deref())
                .map(|migrated| Response::Migrated { migrated }),
            Request::Status => Ok(Response::Status(self.info.clone())),
        };
        result.unwrap_or_else(|e| {
            let message = chain(&e);
            self.log.line(format!("request failed: {message}"));
            Response::Error { message }
        })
    }

    /// Re-opens every recorded session; failures are logged and skipped.
    fn reopen_all(&self) {
        let dirs = match SessionRecord::scan(&self.cache_dir) {
            Ok(d) => d,
            Err(e) => {
                self.log
                    .line(format!("service: cannot list sessions: {}", chain(&e)));
                return;
            }
        };
        for dir in dirs {
            match self.reopen(&dir) {
                Ok(id) => self.log.line(format!("session {id}: re-opened")),
                Err(e) => self.log.line(format!(
                    "session in {}: not re-opened: {}",
                    dir.display(),
                    chain(&e)
                )),
            }
        }
    }
}
