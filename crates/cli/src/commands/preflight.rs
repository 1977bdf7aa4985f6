//! `lifeboat ports` (the port table of this configuration) and `lifeboat
//! preflight` (each port tried: TCP, TLS and the certificate, NFS NULL
//! through the portmapper, QMP, SNTP clock skew), for people and as JSON.
//! The work is lifeboat_preflight's; this prints it.

use crate::exit;
use crate::output::print_json;
use clap::Args;
use lifeboat_preflight::{port_table, run_preflight, Outcome, PortConfig, PreflightOptions};
use std::path::PathBuf;
use std::time::Duration;

/// The ports of the configuration (defaults: the brief's).
#[derive(Args, Clone)]
pub struct PortFlags {
    /// The server's REST API port
    #[arg(long, default_value_t = PortConfig::DEFAULT.api, value_name = "PORT")]
    pub api_port: u16,
    /// The agent's port (it falls back to a free one when taken)
    #[arg(long, default_value_t = PortConfig::DEFAULT.agent, value_name = "PORT")]
    pub agent_port: u16,
    /// The guest helper's port in the guest
    #[arg(long, default_value_t = PortConfig::DEFAULT.guest_helper, value_name = "PORT")]
    pub guest_helper_port: u16,
    /// The NFS service's portmapper port
    #[arg(long, default_value_t = PortConfig::DEFAULT.portmapper, value_name = "PORT")]
    pub portmapper_port: u16,
    /// The NFS service's MOUNT port
    #[arg(long, default_value_t = PortConfig::DEFAULT.mount, value_name = "PORT")]
    pub mount_port: u16,
    /// The NFS service's NFS port
    #[arg(long, default_value_t = PortConfig::DEFAULT.nfs, value_name = "PORT")]
    pub nfs_port: u16,
    /// The instant-recovery NBD port
    #[arg(long, default_value_t = PortConfig::DEFAULT.nbd, value_name = "PORT")]
    pub nbd_port: u16,
    /// The NTP port
    #[arg(long, default_value_t = PortConfig::DEFAULT.ntp, value_name = "PORT")]
    pub ntp_port: u16,
}

impl PortFlags {
    fn config(&self) -> PortConfig {
        PortConfig {
            api: self.api_port,
            agent: self.agent_port,
            guest_helper: self.guest_helper_port,
            portmapper: self.portmapper_port,
            mount: self.mount_port,
            nfs: self.nfs_port,
            nbd: self.nbd_port,
            ntp: self.ntp_port,
        }
    }
}

#[derive(Args)]
pub struct PortsArgs {
    #[command(flatten)]
    pub ports: PortFlags,
    #[command(flatten)]
    pub output: crate::args::OutputArgs,
}

#[derive(Args)]
pub struct PreflightArgs {
    /// A VM's QMP socket: qmp:SOCKET or SOCKET
    #[arg(long, value_name = "qmp:SOCKET")]
    pub hypervisor: Option<String>,
    /// A guest (host name or address): SSH 22, RDP 3389 and the guest helper's port
    #[arg(long, value_name = "HOST")]
    pub guest: Option<String>,
    /// A host running the NFS service (probed through its portmapper)
    #[arg(long, value_name = "HOST")]
    pub nfs: Option<String>,
    /// An NTP server for the clock-skew check
    #[arg(long, value_name = "HOST[:PORT]")]
    pub ntp: Option<String>,
    /// Largest clock offset that passes, seconds
    #[arg(long, default_value_t = lifeboat_preflight::preflight::DEFAULT_MAX_SKEW, value_name = "SECONDS")]
    pub max_skew: f64,
    /// Timeout of each connect, handshake and query, seconds
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub timeout: f64,
    #[command(flatten)]
    pub ports: PortFlags,
    #[command(flatten)]
    pub output: crate::args::OutputArgs,
}

pub fn ports(a: PortsArgs) -> anyhow::Result<i32> {
    let table = port_table(&a.ports.config());
    if a.output.json {
        print_json(&table)?;
        return Ok(exit::OK);
    }
    println!(
        "{:<20} {:<18} {:>6}  {:<8} {:<28} {:<38} status",
        "from", "to", "port", "over", "protocol", "why"
    );
    for r in table {
        println!(
            "{:<20} {:<18} {:>6}  {:<8} {:<28} {:<38} {}",
            r.from,
            r.to,
            r.port,
            r.transport,
            r.protocol,
            r.why,
            r.status.describe()
        );
    }
    Ok(exit::OK)
}

/// `remote`'s `--server` (port: --api-port when the URL has none) and
/// `--ca` are the server to try.
pub fn preflight(a: PreflightArgs, remote: &crate::args::RemoteArgs) -> anyhow::Result<i32> {
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        anyhow::bail!(
            "--timeout {}: must be a positive number of seconds",
            a.timeout
        );
    }
    if !(a.max_skew >= 0.0 && a.max_skew.is_finite()) {
        anyhow::bail!("--max-skew {}: must be zero or more seconds", a.max_skew);
    }
    let opts = PreflightOptions {
        server: remote.server.clone(),
        ca: remote.ca.clone(),
        hypervisor: a
            .hypervisor
            .map(|h| PathBuf::from(h.strip_prefix("qmp:").unwrap_or(&h))),
        guest: a.guest,
        nfs: a.nfs,
        ntp: a.ntp,
        max_skew: a.max_skew,
        timeout: Duration::from_secs_f64(a.timeout),
        ports: a.ports.config(),
    };
    let no_probe = opts.server.is_none()
        && opts.hypervisor.is_none()
        && opts.guest.is_none()
        && opts.nfs.is_none()
        && opts.ntp.is_none();
    if no_probe {
        anyhow::bail!("nothing to try: give --server, --hypervisor, --guest, --nfs or --ntp");
    }
    let checks = run_preflight(&opts);
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if a.output.json {
        print_json(&serde_json::json!({ "checks": checks, "failed": failed }))?;
    } else {
        for c in &checks {
            let word = match c.outcome {
                Outcome::Pass => "pass",
                Outcome::Warn => "WARN",
                Outcome::Fail => "FAIL",
            };
            println!("{word}  {:<22} {:<28} {}", c.name, c.target, c.detail);
            if let Some(fix) = &c.fix {
                println!("      fix: {fix}");
            }
        }
        println!(
            "{} checks: {} passed, {} warnings, {failed} failed",
            checks.len(),
            checks.iter().filter(|c| c.outcome == Outcome::Pass).count(),
            checks.iter().filter(|c| c.outcome == Outcome::Warn).count()
        );
    }
    Ok(if failed > 0 {
        exit::PREFLIGHT_FAILED
    } else {
        exit::OK
    })
}
