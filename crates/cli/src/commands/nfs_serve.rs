//! `lifeboat nfs serve`: the Instant VM Recovery service in the foreground.
//! Binds the portmapper, MOUNT, NFS and NBD listeners, re-opens the
//! sessions found in the cache folder, answers `lifeboat instant-recovery`
//! on `<cache-dir>/control.sock`, logs to stderr, and stops cleanly on
//! SIGTERM or SIGINT (signal-hook sets a flag the main thread polls: the
//! service's own threads never see the signal). Stopping does not depend
//! on `control.sock` still being there (lifeboat-ir's control module); if
//! a clean stop still hung, a second SIGTERM/SIGINT exits at once (code
//! 130, [`exit::INTERRUPTED`]). A second service on the same cache folder
//! is refused while this one runs (`<cache-dir>/service.lock`).

use crate::args::RepoArgs;
use crate::exit;
use crate::passphrase::passphrase;
use anyhow::Context;
use clap::{Args, Subcommand};
use lifeboat_ir::{NbdTlsFiles, Service, ServiceConfig};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the service keeps overlays, session records and its control socket.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/lifeboat/ir";

#[derive(Subcommand)]
pub enum NfsCommand {
    /// Run the NFS (and NBD) service for Instant VM Recovery in the foreground
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Address every listener binds
    #[arg(long, default_value = "0.0.0.0")]
    pub listen: IpAddr,
    /// Portmapper port (TCP and UDP); QEMU's nfs:// driver needs 111
    #[arg(long, default_value_t = 111)]
    pub portmap_port: u16,
    /// Run without a portmapper (clients must be given the ports)
    #[arg(long)]
    pub no_portmap: bool,
    /// MOUNT v3 port
    #[arg(long, default_value_t = 1058)]
    pub mount_port: u16,
    /// NFS v3 port
    #[arg(long, default_value_t = 2049)]
    pub nfs_port: u16,
    /// NBD port
    #[arg(long, default_value_t = 10809)]
    pub nbd_port: u16,
    /// Run without the NBD server
    #[arg(long)]
    pub no_nbd: bool,
    /// Most NFS, MOUNT and portmapper TCP connections open at once; at the
    /// limit the longest-idle connection is closed to admit a new client
    #[arg(long, value_name = "N", default_value_t = lifeboat_ir::NFS_DEFAULT_MAX_CONNECTIONS)]
    pub nfs_max_connections: usize,
    /// Close an NFS, MOUNT or portmapper connection that sends and
    /// receives nothing for this many seconds (0: never)
    #[arg(long, value_name = "SECS", default_value_t = lifeboat_ir::NFS_DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub nfs_idle_timeout: u64,
    /// NBD over TLS, TLS-only (clients use NBD_OPT_STARTTLS, nbds://):
    /// the server certificate chain, PEM. Required when --listen is not a
    /// loopback address
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require NBD clients to present a certificate issued by this CA (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Most NBD connections served at once; at the limit the longest-idle
    /// connection is closed to admit a new client
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub nbd_max_connections: usize,
    /// Close an NBD connection that sends nothing for this many seconds
    /// (default 0: never; QEMU clients then need `reconnect-delay` on the
    /// drive, or the guest's next I/O fails)
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub nbd_idle_timeout: u64,
    /// Cache folder: overlays, session records, control socket
    #[arg(long, env = "LIFEBOAT_IR_CACHE", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Client address or CIDR network allowed to mount and use NBD
    /// (repeatable; default: this machine only, 127.0.0.1 and ::1)
    #[arg(long, value_name = "ADDR|CIDR")]
    pub allow: Vec<String>,
    /// Host name or address printed in URLs (default: the listen address,
    /// or this machine's host name when listening on every address)
    #[arg(long)]
    pub advertise: Option<String>,
    /// Decoded-chunk cache of the service, shared by all sessions, e.g.
    /// 512M or 4G (default: a quarter of this machine's memory, at most
    /// 16 GiB; taken as chunks are read); a re-read of what fits is served
    /// from memory instead of being decompressed again
    #[arg(long, value_name = "SIZE", value_parser = parse_cache_mem)]
    pub cache_mem: Option<u64>,
    /// Same as --cache-mem, in MiB (older spelling)
    #[arg(long, hide = true, conflicts_with = "cache_mem")]
    pub cache_mib: Option<u64>,
}

fn parse_cache_mem(text: &str) -> Result<u64, String> {
    lifeboat_ir::parse_mem_size(text).map_err(|e| e.to_string())
}

fn log_line(line: &str) {
    eprintln!(
        "{} lifeboat-nfs: {line}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
}

pub fn run(command: NfsCommand) -> anyhow::Result<i32> {
    let NfsCommand::Serve(a) = command;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Registered first, so it sees the flag before this signal sets it:
        // only a second signal exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, exit::INTERRUPTED, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .with_context(|| format!("installing the handler of signal {sig}"))?;
    }
    let allow = if a.allow.is_empty() {
        log_line("no --allow given: only this machine (127.0.0.1, ::1) may connect");
        vec!["127.0.0.1".to_string(), "::1".to_string()]
    } else {
        a.allow.clone()
    };
    if !a.no_nbd && a.tls_cert.is_none() && !a.listen.is_loopback() {
        anyhow::bail!(
            "NBD on {} would be reachable from other machines without TLS: give \
             --tls-cert FILE and --tls-key FILE (and --tls-ca FILE to require client \
             certificates), or --listen 127.0.0.1, or --no-nbd",
            a.listen
        );
    }
    let mut config = ServiceConfig::new(&a.repo.repo, &a.cache_dir);
    config.passphrase = passphrase(a.repo.passphrase_file.as_deref())?;
    config.listen = a.listen;
    config.portmap_port = (!a.no_portmap).then_some(a.portmap_port);
    config.mount_port = a.mount_port;
    config.nfs_port = a.nfs_port;
    config.nbd_port = (!a.no_nbd).then_some(a.nbd_port);
    config.nfs_max_connections = a.nfs_max_connections.max(1);
    config.nfs_idle_timeout =
        (a.nfs_idle_timeout > 0).then(|| Duration::from_secs(a.nfs_idle_timeout));
    config.nbd_tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(NbdTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: a.tls_ca.clone(),
        }),
        _ => None,
    };
    config.nbd_limits.max_connections = a.nbd_max_connections.max(1);
    config.nbd_limits.idle_timeout =
        (a.nbd_idle_timeout > 0).then(|| Duration::from_secs(a.nbd_idle_timeout));
    config.allow = allow;
    config.advertise = a.advertise.clone();
    if let Some(bytes) = a
        .cache_mem
        .or(a.cache_mib.map(|m| m.saturating_mul(1 << 20)))
    {
        config.cache_bytes = bytes.max(1 << 20);
    }
    log_line(&format!(
        "decoded-chunk cache: {} MiB for all sessions",
        config.cache_bytes >> 20
    ));
    config.log_hook = Some(Arc::new(log_line));
    let service = Service::start(config).with_context(|| {
        format!(
            "starting the Instant VM Recovery service on {} (cache {})",
            a.listen,
            a.cache_dir.display()
        )
    })?;
    log_line(&format!(
        "ready: control socket {}",
        lifeboat_ir::socket_path(service.cache_dir()).display()
    ));
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    log_line("signal received, stopping (a second signal exits at once)");
    drop(service);
    log_line("stopped");
    Ok(exit::OK)
}
