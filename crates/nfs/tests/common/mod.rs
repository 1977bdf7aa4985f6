//! Shared fixtures of the integration tests: a session tree over the vdisk
//! test pattern, a service on ephemeral ports, the libnfs tools, and a tiny
//! raw RPC client for the bad-input tests.
#![allow(dead_code)]

use lifeboat_nfs::rpc::msg::{
    decode_reply, encode_call, AuthSys, CallHeader, Credential, ReplyHeader,
};
use lifeboat_nfs::{AllowList, HandleKey, NfsConfig, NfsService, NfsServiceHandle, SessionTree};
use lifeboat_vdisk::testsuite::pattern_with_holes;
use lifeboat_vdisk::{
    Error, FileDisk, MemDisk, OverlayDisk, ReadDisk, Result as DiskResult, WriteDisk,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

pub const SIZE: usize = 4 << 20;
pub const BLOCK: usize = 64 << 10;
pub const SESSION: &str = "s1";
pub const VM: &str = "web01";
pub const FLAT: &str = "web01-disk0-flat.vmdk";
pub const DESC: &str = "web01-disk0.vmdk";

/// Finds `name` on the PATH; fails the test when it is missing, saying how
/// to install it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found: install {package} (apt-get install -y {package})")
        })
}

pub fn nfs_tool(name: &str) -> Command {
    Command::new(tool(name, "libnfs-utils"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A sparse raw file holding `pattern_with_holes(SIZE, BLOCK)`.
pub fn sparse_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let bytes = pattern_with_holes(SIZE, BLOCK);
    let path = dir.join("base.raw");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(SIZE as u64).unwrap();
    use std::os::unix::fs::FileExt;
    for (i, chunk) in bytes.chunks(BLOCK).enumerate() {
        if i % 3 != 0 {
            f.write_all_at(chunk, (i * BLOCK) as u64).unwrap();
        }
    }
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

pub fn sys_cred() -> Credential {
    Credential::Sys(AuthSys {
        stamp: 1,
        machine: "test".into(),
        uid: 0,
        gid: 0,
        gids: vec![],
    })
}

/// Encodes a call record (one fragment).
pub fn call_record(
    xid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    cred: Credential,
    args: &[u8],
) -> Vec<u8> {
    let mut msg = Vec::new();
    encode_call(
        &mut msg,
        &CallHeader {
            xid,
            prog,
            vers,
            proc_,
            cred,
        },
    );
    msg.extend_from_slice(args);
    let mut rec = (0x8000_0000u32 | msg.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&msg);
    rec
}

/// Reads one reply record.
pub fn read_record(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 4];
        s.read_exact(&mut h)?;
        let v = u32::from_be_bytes(h);
        let at = out.len();
        out.resize(at + (v & 0x7fff_ffff) as usize, 0);
        s.read_exact(&mut out[at..])?;
        if v & 0x8000_0000 != 0 {
            return Ok(out);
        }
    }
}

/// One call over a fresh or given connection; returns the reply header and body.
pub fn rpc(
    s: &mut TcpStream,
    prog: u32,
    vers: u32,
    proc_: u32,
    cred: Credential,
    args: &[u8],
) -> (ReplyHeader, Vec<u8>) {
    s.write_all(&call_record(42, prog, vers, proc_, cred, args))
        .unwrap();
    let rec = read_record(s).unwrap();
    let (h, body) = decode_reply(&rec).unwrap();
    (h, body.to_vec())
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s
}

use lifeboat_nfs::xdr::{XdrReader, XdrWrite};

pub const NFS: u32 = 100_003;
pub const MOUNT: u32 = 100_005;

/// The accept_stat of an accepted reply (panics on a denial).
pub fn accepted(h: &ReplyHeader) -> u32 {
    match h {
        ReplyHeader::Accepted { stat, .. } => *stat,
        other => panic!("denied: {other:?}"),
    }
}

/// MNT of `path`: (mountstat, handle).
pub fn mnt(s: &mut TcpStream, path: &str) -> (u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_string(path);
    let (h, body) = rpc(s, MOUNT, 3, 1, sys_cred(), &a);
    assert_eq!(accepted(&h), 0);
    let mut r = XdrReader::new(&body);
    let st = r.u32("mountstat").unwrap();
    let fh = if st == 0 {
        r.opaque(64, "fh").unwrap().to_vec()
    } else {
        vec![]
    };
    (st, fh)
}

/// LOOKUP of `name` in `dir`: (status, handle).
pub fn lookup(s: &mut TcpStream, dir: &[u8], name: &str) -> (u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_opaque(dir);
    a.put_string(name);
    let (h, body) = rpc(s, NFS, 3, 3, sys_cred(), &a);
    assert_eq!(accepted(&h), 0);
    let mut r = XdrReader::new(&body);
    let st = r.u32("status").unwrap();
    let fh = if st == 0 {
        r.opaque(64, "fh").unwrap().to_vec()
    } else {
        vec![]
    };
    (st, fh)
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

/// WRITE: (status, count, committed, verifier).
pub fn write(
    s: &mut TcpStream,
    fh: &[u8],
    offset: u64,
    data: &[u8],
    stable: u32,
) -> (u32, u32, u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_opaque(fh);
    a.put_u64(offset);
    a.put_u32(data.len() as u32);
    a.put_u32(stable);
    a.put_opaque(data);
    let (h, body) = rpc(s, NFS, 3, 7, sys_cred(), &a);
    assert_eq!(accepted(&h), 0);
    let mut r = XdrReader::new(&body);
    let st = r.u32("status").unwrap();
    if st != 0 {
        return (st, 0, 0, vec![]);
    }
    assert!(!r.bool("pre").unwrap());
    assert!(r.bool("post").unwrap());
    r.opaque_fixed(84, "fattr3").unwrap();
    let count = r.u32("count").unwrap();
    let committed = r.u32("committed").unwrap();
    (
        st,
        count,
        committed,
        r.opaque_fixed(8, "verf").unwrap().to_vec(),
    )
}

/// READ: (status, data, eof).
pub fn read(s: &mut TcpStream, fh: &[u8], offset: u64, count: u32) -> (u32, Vec<u8>, bool) {
    let mut a = Vec::new();
    a.put_opaque(fh);
    a.put_u64(offset);
    a.put_u32(count);
    let (h, body) = rpc(s, NFS, 3, 6, sys_cred(), &a);
    assert_eq!(accepted(&h), 0);
    let mut r = XdrReader::new(&body);
    let st = r.u32("status").unwrap();
    if st != 0 {
        return (st, vec![], false);
    }
    if r.bool("post").unwrap() {
        r.opaque_fixed(84, "fattr3").unwrap();
    }
    let _n = r.u32("count").unwrap();
    let eof = r.bool("eof").unwrap();
    (st, r.opaque(1 << 20, "data").unwrap().to_vec(), eof)
}
