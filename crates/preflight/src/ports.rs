//! The port table of a configuration: who connects to whom, on which port
//! and protocol, and why (docs/architecture.md "Ports"), with the ports
//! the operator configured, and whether the component behind each is
//! built yet.

use serde::Serialize;

/// The ports a configuration uses (the defaults are the brief's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The server's REST API.
    pub api: u16,
    /// The agent's port (it falls back to a free one when taken).
    pub agent: u16,
    /// The guest helper's TLS port in the guest.
    pub guest_helper: u16,
    /// The portmapper, MOUNT and NFS of the Instant VM Recovery service.
    pub portmapper: u16,
    pub mount: u16,
    pub nfs: u16,
    /// The instant-recovery NBD export.
    pub nbd: u16,
    /// NTP, for the clock-skew check.
    pub ntp: u16,
}

impl PortConfig {
    /// The brief's ports (the CLI's defaults).
    pub const DEFAULT: PortConfig = PortConfig {
        // `lifeboat serve`'s default (the brief's 443 needs root or a
        // capability; an operator who wants it passes --listen 0.0.0.0:443).
        api: 8443,
        agent: 8082,
        guest_helper: 3542,
        portmapper: 111,
        mount: 1058,
        nfs: 2049,
        nbd: 10809,
        ntp: 123,
    };
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig::DEFAULT
    }
}

/// Whether the component that uses a port exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortStatus {
    /// Built and tested.
    Built,
    /// Planned: the component is not built yet.
    NotBuilt,
    /// Used only with VMware vSphere (not supported yet).
    VmwareOnly,
}

impl PortStatus {
    pub fn describe(self) -> &'static str {
        match self {
            PortStatus::Built => "built",
            PortStatus::NotBuilt => "not built yet",
            PortStatus::VmwareOnly => "VMware only (not supported yet)",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortRow {
    pub from: &'static str,
    pub to: &'static str,
    pub port: u16,
    /// `TCP`, `UDP`, `TCP+UDP`, `unix socket`.
    pub transport: &'static str,
    /// The protocol on top, e.g. `HTTPS (TLS 1.2+)`.
    pub protocol: &'static str,
    pub why: &'static str,
    pub status: PortStatus,
}

/// The port table of `c`, in the order of docs/architecture.md.
pub fn port_table(c: &PortConfig) -> Vec<PortRow> {
    use PortStatus::*;
    let row = |from, to, port, transport, protocol, why, status| PortRow {
        from,
        to,
        port,
        transport,
        protocol,
        why,
        status,
    };
    vec![
        row(
            "CLI, browser",
            "server",
            c.api,
            "TCP",
            "HTTPS (TLS 1.2+)",
            "REST API (built: tokens, audit, restore points, jobs, sessions, proxies, agents, instant recovery; console not yet)",
            Built,
        ),
        row(
            "proxy",
            "server",
            c.api,
            "TCP",
            "HTTPS, mutual TLS (client certificate from the server's CA)",
            "enrollment, pulling sessions, progress and results, chunk upload (built)",
            Built,
        ),
        row(
            "proxy",
            "vCenter / ESXi",
            443,
            "TCP",
            "HTTPS",
            "VMware inventory and snapshots",
            VmwareOnly,
        ),
        row(
            "proxy",
            "ESXi",
            902,
            "TCP",
            "NFC / VDDK",
            "VMware disk data",
            VmwareOnly,
        ),
        row(
            "proxy",
            "guest helper",
            c.guest_helper,
            "TCP",
            "TLS 1.3, both sides pinned",
            "application-aware freeze and thaw",
            Built,
        ),
        row(
            "proxy",
            "guest DB plugin",
            3545,
            "TCP",
            "TLS",
            "database log handling",
            NotBuilt,
        ),
        row(
            "verifier",
            "recovered VM",
            22,
            "TCP",
            "SSH",
            "boot verification probe (Linux)",
            NotBuilt,
        ),
        row(
            "verifier",
            "recovered VM",
            3389,
            "TCP",
            "RDP",
            "boot verification probe (Windows)",
            NotBuilt,
        ),
        row(
            "proxy, server",
            "NTP server",
            c.ntp,
            "UDP",
            "NTP / SNTP",
            "clock-skew check",
            Built,
        ),
        row(
            "server",
            "agent",
            c.agent,
            "TCP",
            "HTTPS, mutual TLS",
            "publish, unpublish, scan on a target (a free port when taken, reported to the server)",
            Built,
        ),
        row(
            "hypervisor",
            "NFS service",
            c.portmapper,
            "TCP+UDP",
            "portmapper v2",
            "Instant VM Recovery datastore",
            Built,
        ),
        row(
            "hypervisor",
            "NFS service",
            c.mount,
            "TCP+UDP",
            "MOUNT v3",
            "Instant VM Recovery datastore",
            Built,
        ),
        row(
            "hypervisor",
            "NFS service",
            c.nfs,
            "TCP",
            "NFS v3",
            "Instant VM Recovery datastore",
            Built,
        ),
        row(
            "hypervisor",
            "NBD export",
            c.nbd,
            "TCP",
            "NBD (TLS beyond loopback)",
            "instant recovery for QEMU",
            Built,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_carries_the_configured_ports() {
        let c = PortConfig {
            api: 9443,
            agent: 9000,
            ..PortConfig::default()
        };
        let t = port_table(&c);
        let port_of = |why: &str| t.iter().find(|r| r.why.starts_with(why)).unwrap().port;
        assert_eq!(port_of("REST API"), 9443);
        assert_eq!(
            port_of("enrollment, pulling sessions"),
            9443,
            "proxy -> server"
        );
        assert_eq!(port_of("publish, unpublish, scan"), 9000);
        assert_eq!(port_of("VMware disk"), 902);
        let nfs: Vec<u16> = t
            .iter()
            .filter(|r| r.to == "NFS service")
            .map(|r| r.port)
            .collect();
        assert_eq!(nfs, vec![111, 1058, 2049]);
        assert!(t
            .iter()
            .filter(|r| r.port == 902)
            .all(|r| r.status == PortStatus::VmwareOnly));
    }
}
