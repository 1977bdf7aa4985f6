//! [`Export`] (a named disk offered over NBD), [`ExportTable`] (the set a
//! server offers, changeable while it runs: instant-recovery sessions come
//! and go) and [`AccessPolicy`] (which client may use which export), with
//! the per-connection view of the table that applies it.

use crate::proto::{ExportCatalog, ExportInfo};
use lifeboat_vdisk::{ReadDisk, WriteDisk};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Which client may connect, and which export it may use. [`admits`] is
/// asked when a connection is accepted: a peer it refuses is closed before
/// the server sends a byte. [`permits`] is asked during negotiation of every
/// connection of a server that has a policy (`NbdServer::with_policy`). A
/// refused export is left out of NBD_OPT_LIST, NBD_OPT_INFO / NBD_OPT_GO /
/// the meta-context options naming it are answered NBD_REP_ERR_POLICY, and
/// NBD_OPT_EXPORT_NAME naming it closes the connection (it has no error
/// reply). A client whose address is unknown is refused every export.
///
/// Any `Fn(&str, IpAddr) -> bool` (export name, client address) is a policy
/// that admits every peer.
///
/// [`admits`]: AccessPolicy::admits
/// [`permits`]: AccessPolicy::permits
pub trait AccessPolicy: Send + Sync {
    /// Whether the client at `peer` may connect at all (the service's
    /// allow list). Every peer is admitted unless overridden.
    fn admits(&self, peer: IpAddr) -> bool {
        let _ = peer;
        true
    }

    /// Whether the client at `peer` may use the export named `export`.
    fn permits(&self, export: &str, peer: IpAddr) -> bool;

    /// Told once for every option refused under this policy (not for the
    /// exports left out of a listing), e.g. to log it. Does nothing unless
    /// overridden.
    fn refused(&self, export: &str, peer: IpAddr) {
        let _ = (export, peer);
    }
}

impl<F: Fn(&str, IpAddr) -> bool + Send + Sync> AccessPolicy for F {
    fn permits(&self, export: &str, peer: IpAddr) -> bool {
        self(export, peer)
    }
}

/// One export: a name, a disk, optionally a writable view of the same disk,
/// and a description shown by `nbdinfo`.
pub struct Export {
    name: String,
    description: String,
    reader: Arc<dyn ReadDisk>,
    writer: Option<Arc<dyn WriteDisk>>,
}

impl Export {
    /// A read-only export of `disk`: writes, trims and write-zeroes get EPERM.
    pub fn read_only(name: impl Into<String>, disk: Arc<dyn ReadDisk>) -> Self {
        Export {
            name: name.into(),
            description: String::new(),
            reader: disk,
            writer: None,
        }
    }

    /// A writable export of `disk`.
    pub fn writable<D: WriteDisk + 'static>(name: impl Into<String>, disk: Arc<D>) -> Self {
        let reader: Arc<dyn ReadDisk> = disk.clone();
        let writer: Arc<dyn WriteDisk> = disk;
        Export {
            name: name.into(),
            description: String::new(),
            reader,
            writer: Some(writer),
        }
    }

    /// An export from separate read and write handles; `writer` must be a
    /// view of the same disk as `reader` (same size, same bytes).
    pub fn new(
        name: impl Into<String>,
        reader: Arc<dyn ReadDisk>,
        writer: Option<Arc<dyn WriteDisk>>,
    ) -> Self {
        Export {
            name: name.into(),
            description: String::new(),
            reader,
            writer,
        }
    }

    /// Sets the description sent with NBD_INFO_DESCRIPTION and NBD_OPT_LIST.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// The disk that serves reads.
    pub fn reader(&self) -> &Arc<dyn ReadDisk> {
        &self.reader
    }

    /// The disk that takes writes, when the export is writable.
    pub fn writer(&self) -> Option<&Arc<dyn WriteDisk>> {
        self.writer.as_ref()
    }

    /// What the negotiation needs to know.
    pub fn info(&self) -> ExportInfo {
        ExportInfo {
            name: self.name.clone(),
            description: self.description.clone(),
            size: self.reader.size(),
            writable: self.writer.is_some(),
        }
    }
}

#[derive(Default)]
struct Inner {
    exports: BTreeMap<String, Arc<Export>>,
    default: Option<String>,
}

/// The exports a server offers, shared by every connection.
#[derive(Default)]
pub struct ExportTable {
    inner: RwLock<Inner>,
}

impl ExportTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an export; returns the one it replaced. New
    /// connections see it at once; connections already serving the old one
    /// keep it until they close.
    pub fn insert(&self, export: Export) -> Option<Arc<Export>> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.exports.insert(export.name.clone(), Arc::new(export))
    }

    /// Removes the export `name` (for new connections).
    pub fn remove(&self, name: &str) -> Option<Arc<Export>> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.exports.remove(name)
    }

    /// Makes `name` the export a client gets when it asks for the empty
    /// name (`nbd://host:port` without a path).
    pub fn set_default(&self, name: Option<&str>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.default = name.map(str::to_owned);
    }

    /// The export named `name`; the empty name means the default export.
    pub fn get(&self, name: &str) -> Option<Arc<Export>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let key = match (name, &inner.default) {
            ("", Some(default)) => default.as_str(),
            _ => name,
        };
        inner.exports.get(key).cloned()
    }

    /// Every export, sorted by name.
    pub fn exports(&self) -> Vec<Arc<Export>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.exports.values().cloned().collect()
    }
}

impl ExportCatalog for ExportTable {
    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        self.get(name).map(|e| e.info())
    }

    fn list(&self) -> Vec<ExportInfo> {
        self.exports().iter().map(|e| e.info()).collect()
    }
}

/// The table as one client sees it: every export, but [`AccessPolicy`]
/// decides which it may use.
pub(crate) struct ClientView<'a> {
    pub(crate) table: &'a ExportTable,
    pub(crate) policy: Option<&'a dyn AccessPolicy>,
    /// The client's address; `None` when the socket could not say.
    pub(crate) peer: Option<IpAddr>,
}

impl ClientView<'_> {
    /// Whether the client may use the export named `name`.
    pub(crate) fn permits_name(&self, name: &str) -> bool {
        match (self.policy, self.peer) {
            (None, _) => true,
            (Some(policy), Some(peer)) => policy.permits(name, peer),
            (Some(_), None) => false,
        }
    }
}

impl ExportCatalog for ClientView<'_> {
    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        self.table.lookup(name)
    }

    fn list(&self) -> Vec<ExportInfo> {
        self.table.list()
    }

    fn permits(&self, export: &ExportInfo) -> bool {
        self.permits_name(&export.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::MemDisk;

    #[test]
    fn table_finds_exports_and_the_default() {
        let table = ExportTable::new();
        table.insert(Export::read_only(
            "a",
            Arc::new(MemDisk::new("a", vec![0; 512])),
        ));
        table.insert(
            Export::writable("b", Arc::new(MemDisk::new("b", vec![0; 1024])))
                .with_description("bee"),
        );
        assert!(table.lookup("").is_none());
        table.set_default(Some("b"));
        let b = table.lookup("").unwrap();
        assert_eq!(
            (b.name.as_str(), b.size, b.writable, b.description.as_str()),
            ("b", 1024, true, "bee")
        );
        assert!(!table.lookup("a").unwrap().writable);
        assert_eq!(table.list().len(), 2);
        assert!(table.remove("a").is_some());
        assert!(table.lookup("a").is_none());
    }

    #[test]
    fn a_client_view_applies_the_policy_to_known_peers_only() {
        let table = ExportTable::new();
        table.insert(Export::read_only(
            "a",
            Arc::new(MemDisk::new("a", vec![0; 512])),
        ));
        let only_local = |name: &str, peer: IpAddr| name == "a" && peer.is_loopback();
        let policy: &dyn AccessPolicy = &only_local;
        let view = |policy, peer: Option<&str>| ClientView {
            table: &table,
            policy,
            peer: peer.map(|p| p.parse().unwrap()),
        };
        let a = table.lookup("a").unwrap();
        assert!(view(None, None).permits(&a));
        assert!(view(Some(policy), Some("127.0.0.1")).permits(&a));
        assert!(!view(Some(policy), Some("10.1.2.3")).permits(&a));
        assert!(
            !view(Some(policy), None).permits(&a),
            "unknown peer refused"
        );
        // The view still finds and lists the export: refusing is the
        // negotiation's job (NBD_REP_ERR_POLICY, not ERR_UNKNOWN).
        assert!(view(Some(policy), Some("10.1.2.3")).lookup("a").is_some());
        assert_eq!(view(Some(policy), Some("10.1.2.3")).list().len(), 1);
    }
}
