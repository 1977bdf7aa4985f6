//! Shared fixtures of the service tests: a repository holding one backed-up
//! disk, a service on loopback, the libnfs tools, and a tiny MOUNT/NFS
//! client (raw RPC) to compare file handles across a restart.
#![allow(dead_code)]

use lifeboat_engine::{backup_vm, DiskSource, NoProgress};
use lifeboat_ir::{Request, Response, Service, ServiceConfig, SessionInfo, StartRequest};
use lifeboat_nfs::rpc::msg::{
    decode_reply, encode_call, AuthSys, CallHeader, Credential, ReplyHeader,
};
use lifeboat_nfs::xdr::{XdrReader, XdrWrite};
use lifeboat_repo::{InitOptions, Manifest, Repository};
use lifeboat_vdisk::FileDisk;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

/// Finds `name` on the PATH; fails the test, saying how to install it.
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

pub fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A raw disk of `size` bytes: a pseudo-random pattern with holes.
pub fn make_image(path: &Path, size: usize) -> Vec<u8> {
    let bytes = lifeboat_vdisk::testsuite::pattern_with_holes(size, 256 << 10);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// An unencrypted repository (256 KiB chunks) at `dir/repo` holding one
/// restore point of VM `vm` whose `disk0` is `image`.
pub fn backup(dir: &Path, vm: &str, image: &Path) -> (PathBuf, Manifest) {
    let path = dir.join("repo");
    let mut opts = InitOptions::new(None);
    opts.chunk_size = 256 << 10;
    let repo = Repository::init(&path, opts).unwrap();
    let disk = Arc::new(FileDisk::open(image).unwrap());
    let summary = backup_vm(
        &repo,
        vm,
        &[DiskSource {
            name: "disk0".into(),
            disk,
        }],
        &NoProgress,
    )
    .unwrap();
    (path, summary.manifest)
}

/// Every file of the repository with its bytes (small test repositories).
pub fn repo_snapshot(repo: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().contains("lock") {
                out.insert(
                    p.strip_prefix(repo).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Checks that the restore point is exactly as before and verifies clean.
pub fn assert_restore_point_untouched(
    repo_path: &Path,
    manifest: &Manifest,
    before: &BTreeMap<PathBuf, Vec<u8>>,
) {
    let after = repo_snapshot(repo_path);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in before {
        assert!(after.get(k) == Some(v), "{} changed", k.display());
    }
    let repo = Repository::open(repo_path, None).unwrap();
    let report = repo.verify(Some(manifest)).unwrap();
    assert!(report.is_ok(), "verify: {report:?}");
    assert!(report.chunks_checked > 0);
}

/// A service on `ip` (all ports ephemeral unless `portmap` is given).
pub fn service(repo: &Path, cache: &Path, ip: &str, portmap: Option<u16>) -> Service {
    let ip: IpAddr = ip.parse().unwrap();
    let mut c = ServiceConfig::ephemeral(repo, cache, ip);
    if portmap.is_some() {
        c.portmap_port = portmap;
    }
    c.log_hook = Some(Arc::new(|l: &str| eprintln!("[service] {l}")));
    Service::start(c).unwrap()
}

/// Starts a session over the control socket; returns it and the start time.
pub fn start_session(cache: &Path, spec: &str, nbd: bool) -> (SessionInfo, u64) {
    let resp = lifeboat_ir::request(
        cache,
        &Request::Start(StartRequest {
            restore_point: spec.into(),
            repo: None,
            allow: vec![],
            nbd,
        }),
    )
    .unwrap();
    match resp {
        Response::Started { session, start_ms } => (session, start_ms),
        other => panic!("start: {other:?}"),
    }
}

pub fn list(cache: &Path) -> Vec<SessionInfo> {
    match lifeboat_ir::request(cache, &Request::List).unwrap() {
        Response::Sessions { sessions, .. } => sessions,
        other => panic!("list: {other:?}"),
    }
}

/// `nfs://127.0.0.1/lifeboat/<path>?...` with the service's ports.
pub fn url(s: &SessionInfo, path: &str) -> String {
    format!(
        "nfs://{}{}/{path}?version=3&mountport={}&nfsport={}",
        s.service.host, s.service.export_path, s.service.mount_port, s.service.nfs_port
    )
}

// ---- a tiny NFS client -------------------------------------------------

pub const NFS: u32 = 100_003;
pub const MOUNT: u32 = 100_005;

fn cred() -> Credential {
    Credential::Sys(AuthSys {
        stamp: 1,
        machine: "test".into(),
        uid: 0,
        gid: 0,
        gids: vec![],
    })
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    s
}

fn rpc(s: &mut TcpStream, prog: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    encode_call(
        &mut msg,
        &CallHeader {
            xid: 7,
            prog,
            vers: 3,
            proc_,
            cred: cred(),
        },
    );
    msg.extend_from_slice(args);
    let mut rec = (0x8000_0000u32 | msg.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&msg);
    s.write_all(&rec).unwrap();
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 4];
        s.read_exact(&mut h).unwrap();
        let v = u32::from_be_bytes(h);
        let at = out.len();
        out.resize(at + (v & 0x7fff_ffff) as usize, 0);
        s.read_exact(&mut out[at..]).unwrap();
        if v & 0x8000_0000 != 0 {
            break;
        }
    }
    let (h, body) = decode_reply(&out).unwrap();
    assert!(matches!(h, ReplyHeader::Accepted { stat: 0, .. }), "{h:?}");
    body.to_vec()
}

/// MNT `path` → (status, handle).
pub fn mnt(s: &mut TcpStream, path: &str) -> (u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_string(path);
    let body = rpc(s, MOUNT, 1, &a);
    let mut r = XdrReader::new(&body);
    let st = r.u32("mountstat").unwrap();
    let fh = if st == 0 {
        r.opaque(64, "fh").unwrap().to_vec()
    } else {
        vec![]
    };
    (st, fh)
}

/// LOOKUP `name` in `dir` → (status, handle).
pub fn lookup(s: &mut TcpStream, dir: &[u8], name: &str) -> (u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_opaque(dir);
    a.put_string(name);
    let body = rpc(s, NFS, 3, &a);
    let mut r = XdrReader::new(&body);
    let st = r.u32("status").unwrap();
    let fh = if st == 0 {
        r.opaque(64, "fh").unwrap().to_vec()
    } else {
        vec![]
    };
    (st, fh)
}

/// The handle of `/lifeboat/<session>/<file>`.
pub fn file_handle(
    addr_mount: SocketAddr,
    addr_nfs: SocketAddr,
    session: &str,
    file: &str,
) -> Vec<u8> {
    let mut m = connect(addr_mount);
    let (st, root) = mnt(&mut m, "/lifeboat");
    assert_eq!(st, 0, "MNT");
    let mut n = connect(addr_nfs);
    let (st, dir) = lookup(&mut n, &root, session);
    assert_eq!(st, 0, "LOOKUP {session}");
    let (st, fh) = lookup(&mut n, &dir, file);
    assert_eq!(st, 0, "LOOKUP {file}");
    fh
}

/// READ → (status, data).
pub fn read(s: &mut TcpStream, fh: &[u8], offset: u64, count: u32) -> (u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_opaque(fh);
    a.put_u64(offset);
    a.put_u32(count);
    let body = rpc(s, NFS, 6, &a);
    let mut r = XdrReader::new(&body);
    let st = r.u32("status").unwrap();
    if st != 0 {
        return (st, vec![]);
    }
    if r.bool("post").unwrap() {
        r.opaque_fixed(84, "fattr3").unwrap();
    }
    let _n = r.u32("count").unwrap();
    let _eof = r.bool("eof").unwrap();
    (st, r.opaque(1 << 20, "data").unwrap().to_vec())
}

/// WRITE FILE_SYNC → status.
pub fn write(s: &mut TcpStream, fh: &[u8], offset: u64, data: &[u8]) -> u32 {
    let mut a = Vec::new();
    a.put_opaque(fh);
    a.put_u64(offset);
    a.put_u32(data.len() as u32);
    a.put_u32(2);
    a.put_opaque(data);
    let body = rpc(s, NFS, 7, &a);
    XdrReader::new(&body).u32("status").unwrap()
}

pub fn addr(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().unwrap(), port)
}
