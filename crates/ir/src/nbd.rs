//! The NBD listener of the service: a `lifeboat_nbd::NbdServer` whose
//! access policy ([`SessionPolicy`]) admits only peers on the service's
//! allow list (others are closed at accept, before the NBD greeting, and
//! logged), with the service's connection limit and timeouts, and TLS-only
//! when TLS files are given ([`NbdTlsFiles`]; required when the service
//! listens on an address other than loopback).
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

use crate::error::Result;
use lifeboat_nbd::{AccessPolicy, ExportTable, NbdServer, ServerHandle, ServerLimits, TlsConfig};
use lifeboat_nfs::{AllowList, ServiceLog};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// NBD over TLS: PEM files of the server certificate (chain), its key, and
/// optionally the CA client certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

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

/// The NBD server's access policy: the service's allow list at accept, the
/// session lists per export, and a log line for each refusal.
pub(crate) struct SessionPolicy {
    allow: AllowList,
    clients: Arc<ExportClients>,
    log: Arc<ServiceLog>,
}

impl AccessPolicy for SessionPolicy {
    fn admits(&self, peer: IpAddr) -> bool {
        self.allow.allows(peer)
    }

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
    server: ServerHandle,
}

impl NbdListener {
    pub(crate) fn start(
        addr: SocketAddr,
        exports: Arc<ExportTable>,
        clients: Arc<ExportClients>,
        allow: AllowList,
        log: Arc<ServiceLog>,
        limits: ServerLimits,
        tls: Option<&NbdTlsFiles>,
    ) -> Result<Self> {
        let policy = SessionPolicy {
            allow,
            clients,
            log: log.clone(),
        };
        let mut server = NbdServer::new(exports)
            .with_policy(Arc::new(policy))
            .with_limits(limits)
            .with_log(Arc::new(move |line: &str| log.line(line)));
        if let Some(t) = tls {
            server = server.with_tls(TlsConfig::from_pem_files(
                &t.cert,
                &t.key,
                t.client_ca.as_deref(),
            )?);
        }
        Ok(NbdListener {
            server: server.spawn(addr)?,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.local_addr()
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
            allow: AllowList::parse(["10.0.0.0/8"]).unwrap(),
            clients: clients.clone(),
            log: Arc::new(ServiceLog::default()),
        };
        let (listed, local): (IpAddr, IpAddr) =
            ("10.9.9.9".parse().unwrap(), "127.0.0.1".parse().unwrap());
        assert!(policy.admits(listed));
        assert!(!policy.admits(local), "not on the service's list");
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
