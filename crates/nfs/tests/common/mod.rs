//! Shared fixtures of the integration tests: a session tree over the vdisk
//! test pattern and a service on ephemeral ports; the libnfs tools and the
//! raw RPC client for the bad-input tests come from lifeboat-testsupport.
#![allow(dead_code)]

use lifeboat_nfs::{AllowList, HandleKey, NfsConfig, NfsService, NfsServiceHandle, SessionTree};
use lifeboat_vdisk::testsuite::pattern_with_holes;
use lifeboat_vdisk::{
    Error, FileDisk, MemDisk, OverlayDisk, ReadDisk, Result as DiskResult, WriteDisk,
};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

pub use lifeboat_testsupport::nfs::*;
use lifeboat_testsupport::write_sparse;
use std::sync::Arc;

pub const SIZE: usize = 4 << 20;
pub const BLOCK: usize = 64 << 10;
pub const SESSION: &str = "s1";
pub const VM: &str = "web01";
pub const FLAT: &str = "web01-disk0-flat.vmdk";
pub const DESC: &str = "web01-disk0.vmdk";

/// A sparse raw file holding `pattern_with_holes(SIZE, BLOCK)`.
pub fn sparse_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let bytes = pattern_with_holes(SIZE, BLOCK);
    let path = dir.join("base.raw");
    write_sparse(&path, &bytes, BLOCK);
    (path, bytes)
}

/// A disk whose reads in its second MiB fail like a corrupt chunk and whose
/// writes fail like a full cache folder.
pub struct Faulty(pub MemDisk);

impl ReadDisk for Faulty {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> DiskResult<()> {
        let end = offset + buf.len() as u64;
        if offset < 2 << 20 && end > 1 << 20 {
            return Err(Error::corrupt("chunk 0123abcd", "digest mismatch"));
        }
        self.0.read_at(buf, offset)
    }
    fn describe(&self) -> String {
        "faulty test disk".into()
    }
}

impl WriteDisk for Faulty {
    fn write_at(&self, _buf: &[u8], offset: u64) -> DiskResult<()> {
        Err(Error::io(
            "overlay in cache",
            offset,
            std::io::Error::from_raw_os_error(28),
        ))
    }
    fn flush(&self) -> DiskResult<()> {
        Ok(())
    }
}

/// A service over one session "s1" of VM "web01": disk0 is an overlay over
/// the sparse pattern file, disk1 a MemDisk of the pattern, bad a [`Faulty`].
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub tree: Arc<SessionTree>,
    pub service: NfsServiceHandle,
    pub bytes: Vec<u8>,
    pub base: PathBuf,
    pub overlay: Arc<OverlayDisk>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_allow(&["127.0.0.0/8"])
    }

    pub fn with_allow(allow: &[&str]) -> Fixture {
        Self::build(allow, "127.0.0.1", 0)
    }

    /// A service on `ip` whose portmapper listens on `portmap_port`.
    pub fn build(allow: &[&str], ip: &str, portmap_port: u16) -> Fixture {
        Self::build_with(allow, ip, portmap_port, |_| {})
    }

    /// [`Fixture::new`] with the service's configuration changed by `tweak`.
    pub fn with_config(tweak: impl FnOnce(&mut NfsConfig)) -> Fixture {
        Self::build_with(&["127.0.0.0/8"], "127.0.0.1", 0, tweak)
    }

    /// [`Fixture::build`] with the configuration changed by `tweak`.
    pub fn build_with(
        allow: &[&str],
        ip: &str,
        portmap_port: u16,
        tweak: impl FnOnce(&mut NfsConfig),
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (base, bytes) = sparse_file(dir.path());
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(cache.join(SESSION)).unwrap();
        let key = HandleKey::load_or_create(&cache.join("handle.key")).unwrap();
        let tree = Arc::new(SessionTree::new(key));
        let base_disk: Arc<dyn ReadDisk> = Arc::new(FileDisk::open(&base).unwrap());
        let overlay = Arc::new(
            OverlayDisk::create(
                base_disk,
                "rp-1",
                &cache.join(SESSION).join("disk0.overlay"),
                65536,
            )
            .unwrap(),
        );
        let disks: Vec<(String, Arc<dyn WriteDisk>)> = vec![
            ("disk0".into(), overlay.clone()),
            (
                "disk1".into(),
                Arc::new(MemDisk::new("disk1", bytes.clone())),
            ),
            (
                "bad".into(),
                Arc::new(Faulty(MemDisk::new("bad", bytes.clone()))),
            ),
        ];
        tree.add_session(SESSION, VM, disks, &cache.join(SESSION))
            .unwrap();
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let mut config = NfsConfig::ephemeral(ip, AllowList::parse(allow).unwrap());
        config.portmap = Some(SocketAddr::new(ip, portmap_port));
        tweak(&mut config);
        let service = NfsService::start(config, tree.clone()).unwrap();
        Fixture {
            dir,
            tree,
            service,
            bytes,
            base,
            overlay,
        }
    }

    pub fn files_dir(&self) -> PathBuf {
        self.dir.path().join("cache").join(SESSION).join("files")
    }

    /// An nfs:// URL of `path` below the export, with our ports.
    pub fn url(&self, path: &str) -> String {
        format!(
            "nfs://127.0.0.1/lifeboat/{path}?version=3&mountport={}&nfsport={}",
            self.service.mount_addr().port(),
            self.service.nfs_addr().port()
        )
    }
}

/// The handle of `name` in the session folder, via MNT of the export.
pub fn session_file(s: &mut TcpStream, name: &str) -> Vec<u8> {
    let (st, root) = mnt(s, "/lifeboat");
    assert_eq!(st, 0);
    let (st, dir) = lookup(s, &root, SESSION);
    assert_eq!(st, 0);
    let (st, fh) = lookup(s, &dir, name);
    assert_eq!(st, 0, "lookup {name}");
    fh
}

/// A TCP connection to `addr` from local address `local` (another loopback
/// address, to play a client off the allow list), reads timing out after
/// 10 s.
pub fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    let from = SocketAddr::new(local.parse().expect("an address"), 0);
    bind(&fd, &from).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    connect(&fd, &addr).unwrap_or_else(|e| panic!("connect {addr} from {local}: {e}"));
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s
}

/// What a peer gets back before the server closes: every byte until EOF
/// (a reset counts as the end).
pub fn drain(s: &mut TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "waiting for the server to close: {e} (after {} bytes)",
                got.len()
            ),
        }
    }
}
