//! [`run_preflight`]: the probes a set of options asks for, in a fixed
//! order (server, hypervisor, guest, NFS, NTP), each a [`Check`].

use crate::check::Check;
use crate::ports::PortConfig;
use crate::tcp::{self, Reach};
use crate::{qmp_probe, rpc_probe, sntp, tls};
use std::path::PathBuf;
use std::time::Duration;

/// What to probe. Every probe is optional; none given, nothing is probed.
#[derive(Debug, Clone)]
pub struct PreflightOptions {
    /// The server: `https://HOST[:PORT]` or `HOST[:PORT]` (port: the API's).
    pub server: Option<String>,
    /// The CA certificate (PEM) the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// The QMP socket of a VM's QEMU.
    pub hypervisor: Option<PathBuf>,
    /// A guest (host name or address): SSH, RDP and the guest helper port.
    pub guest: Option<String>,
    /// A host running the NFS service (its portmapper is probed).
    pub nfs: Option<String>,
    /// An NTP server, `HOST[:PORT]`.
    pub ntp: Option<String>,
    /// Largest clock offset that passes, seconds.
    pub max_skew: f64,
    /// Timeout of each connect, handshake and query.
    pub timeout: Duration,
    pub ports: PortConfig,
}

impl Default for PreflightOptions {
    fn default() -> Self {
        PreflightOptions {
            server: None,
            ca: None,
            hypervisor: None,
            guest: None,
            nfs: None,
            ntp: None,
            max_skew: DEFAULT_MAX_SKEW,
            timeout: Duration::from_secs(5),
            ports: PortConfig::default(),
        }
    }
}

/// The clock offset that passes by default, seconds. Restore points,
/// schedules, certificates and the audit log are stamped by different
/// hosts; Kerberos allows 5 minutes, we ask for far less.
pub const DEFAULT_MAX_SKEW: f64 = 2.0;

/// Runs the probes `o` asks for.
pub fn run_preflight(o: &PreflightOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(server) = &o.server {
        let target = tcp::with_port(strip_url(server), o.ports.api);
        checks.push(tls::check_tls(
            "server (HTTPS API)",
            &target,
            o.ca.as_deref(),
            o.timeout,
        ));
    }
    if let Some(socket) = &o.hypervisor {
        checks.push(qmp_probe::check_qmp(socket, o.timeout));
    }
    if let Some(guest) = &o.guest {
        checks.extend(guest_checks(guest, &o.ports, o.timeout));
    }
    if let Some(host) = &o.nfs {
        checks.extend(rpc_probe::check_nfs(host, o.ports.portmapper, o.timeout));
    }
    if let Some(ntp) = &o.ntp {
        let target = tcp::with_port(ntp, o.ports.ntp);
        checks.push(sntp::check_ntp(&target, o.max_skew, o.timeout));
    }
    checks
}

/// `HOST[:PORT]` of `https://HOST[:PORT][/path]` (or of `HOST[:PORT]`).
fn strip_url(server: &str) -> &str {
    let rest = server.strip_prefix("https://").unwrap_or(server);
    rest.split('/').next().unwrap_or(rest)
}

/// SSH and RDP (the boot-verification probe needs one of them to answer)
/// and the guest helper's port (it listens only during a backup, so a
/// reset proves the route is open).
fn guest_checks(guest: &str, ports: &PortConfig, timeout: Duration) -> Vec<Check> {
    let mut checks = Vec::new();
    let probes = [("SSH", 22), ("RDP", 3389)];
    let found: Vec<(&str, String, Reach)> = probes
        .iter()
        .map(|&(what, port)| {
            let target = tcp::with_port(guest, port);
            let r = tcp::reach(&target, timeout);
            (what, target, r)
        })
        .collect();
    let any_open = found.iter().any(|(_, _, r)| *r == Reach::Open);
    for (what, target, r) in found {
        let name = format!("guest {what}");
        checks.push(match r {
            Reach::Open => Check::pass(&name, &target, format!("{what} accepts connections")),
            Reach::Refused if any_open => Check::pass(
                &name,
                &target,
                format!("reachable, no {what} service (the other probe port answers)"),
            ),
            Reach::Refused => Check::fail(
                &name,
                &target,
                format!("reachable, but no {what} service listens"),
                "start SSH (Linux) or RDP (Windows) in the guest for the boot verification probe",
            ),
            Reach::Unreachable(detail) => Check::fail(
                &name,
                &target,
                detail,
                format!(
                    "open TCP {} from the verifier to the guest",
                    target.rsplit(':').next().unwrap_or("")
                ),
            ),
        });
    }
    let target = tcp::with_port(guest, ports.guest_helper);
    let name = "guest helper";
    checks.push(match tcp::reach(&target, timeout) {
        Reach::Open => Check::pass(name, &target, "a service listens (the guest helper runs only during an application-aware backup)"),
        Reach::Refused => Check::pass(
            name,
            &target,
            "reachable: the guest answered with a reset (the guest helper listens only during an application-aware backup)",
        ),
        Reach::Unreachable(detail) => Check::fail(
            name,
            &target,
            detail,
            format!("open TCP {} from the proxy to the guest for application-aware backups", ports.guest_helper),
        ),
    });
    checks
}
