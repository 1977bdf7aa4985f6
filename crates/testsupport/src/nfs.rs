//! A raw MOUNT v3 / NFS v3 client over TCP (feature `nfs`), built on
//! lifeboat-nfs's own RPC and XDR codecs: for tests that send calls
//! byte by byte (bad input, handles across restarts) instead of through a
//! real client. Each call is one record; replies are read whole. Also the
//! libnfs command-line tools, the real clients.

use lifeboat_nfs::rpc::msg::{decode_reply, AuthSys, Credential, ReplyHeader};
use lifeboat_nfs::xdr::{XdrReader, XdrWrite};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::tools::tool;

/// The NFS program number.
pub const NFS: u32 = 100_003;
/// The MOUNT program number.
pub const MOUNT: u32 = 100_005;

/// A [`Command`] for the libnfs tool `name` (`nfs-ls`, `nfs-cat`,
/// `nfs-cp`), with install advice when it is missing.
pub fn nfs_tool(name: &str) -> Command {
    tool(name, "libnfs-utils")
}

/// An AUTH_SYS credential for root on machine "test".
pub fn sys_cred() -> Credential {
    Credential::Sys(AuthSys {
        stamp: 1,
        machine: "test".into(),
        uid: 0,
        gid: 0,
        gids: vec![],
    })
}

/// A TCP connection to `addr` whose reads time out after 30 s (a hung
/// server fails the test instead of hanging it).
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set_read_timeout");
    s
}

/// `host:port` as a socket address.
pub fn addr(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().expect("an IP address"), port)
}

pub use lifeboat_nfs::rpc::client::call_record;

/// Reads one record (all its fragments), of any size.
pub fn read_record(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    lifeboat_nfs::rpc::client::read_record(s, usize::MAX)
}

/// One call over `s`; returns the reply header and body.
pub fn rpc(
    s: &mut TcpStream,
    prog: u32,
    vers: u32,
    proc_: u32,
    cred: Credential,
    args: &[u8],
) -> (ReplyHeader, Vec<u8>) {
    s.write_all(&call_record(42, prog, vers, proc_, cred, args))
        .expect("sending the call");
    let rec = read_record(s).expect("reading the reply");
    let (h, body) = decode_reply(&rec).expect("a well-formed reply");
    (h, body.to_vec())
}

/// The accept_stat of an accepted reply (panics on a denial).
pub fn accepted(h: &ReplyHeader) -> u32 {
    match h {
        ReplyHeader::Accepted { stat, .. } => *stat,
        other => panic!("denied: {other:?}"),
    }
}

/// A version-3 call as root that must be accepted with SUCCESS; returns
/// the body.
fn call3(s: &mut TcpStream, prog: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let (h, body) = rpc(s, prog, 3, proc_, sys_cred(), args);
    assert_eq!(accepted(&h), 0, "{h:?}");
    body
}

/// A status followed, on success, by a file handle.
fn status_and_handle(body: &[u8], what: &'static str) -> (u32, Vec<u8>) {
    let mut r = XdrReader::new(body);
    let st = r.u32(what).expect("a status");
    let fh = if st == 0 {
        r.opaque(64, "fh").expect("a handle").to_vec()
    } else {
        vec![]
    };
    (st, fh)
}

/// MNT of `path`: (mountstat, handle).
pub fn mnt(s: &mut TcpStream, path: &str) -> (u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_string(path);
    status_and_handle(&call3(s, MOUNT, 1, &a), "mountstat")
}

/// LOOKUP of `name` in `dir`: (status, handle).
pub fn lookup(s: &mut TcpStream, dir: &[u8], name: &str) -> (u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_opaque(dir);
    a.put_string(name);
    status_and_handle(&call3(s, NFS, 3, &a), "status")
}

/// The handle of `<export>/<dir>/<file>` (export `/lifeboat`), with MNT
/// over a connection to `mount` and the LOOKUPs over one to `nfs`.
pub fn file_handle(mount: SocketAddr, nfs: SocketAddr, dir: &str, file: &str) -> Vec<u8> {
    let (st, root) = mnt(&mut connect(mount), "/lifeboat");
    assert_eq!(st, 0, "MNT");
    let mut n = connect(nfs);
    let (st, dir_fh) = lookup(&mut n, &root, dir);
    assert_eq!(st, 0, "LOOKUP {dir}");
    let (st, fh) = lookup(&mut n, &dir_fh, file);
    assert_eq!(st, 0, "LOOKUP {file}");
    fh
}

/// The arguments READ and WRITE start with: handle, offset, count.
fn io_args(fh: &[u8], offset: u64, count: u32) -> Vec<u8> {
    let mut a = Vec::new();
    a.put_opaque(fh);
    a.put_u64(offset);
    a.put_u32(count);
    a
}

/// WRITE with `stable` (0 UNSTABLE, 1 DATA_SYNC, 2 FILE_SYNC): (status,
/// count, committed, verifier). On success the reply must carry no
/// pre-op and a post-op attribute.
pub fn write(
    s: &mut TcpStream,
    fh: &[u8],
    offset: u64,
    data: &[u8],
    stable: u32,
) -> (u32, u32, u32, Vec<u8>) {
    let mut a = io_args(fh, offset, data.len() as u32);
    a.put_u32(stable);
    a.put_opaque(data);
    let body = call3(s, NFS, 7, &a);
    let mut r = XdrReader::new(&body);
    let st = r.u32("status").expect("a status");
    if st != 0 {
        return (st, 0, 0, vec![]);
    }
    assert!(!r.bool("pre").expect("pre_op_attr"));
    assert!(r.bool("post").expect("post_op_attr"));
    r.opaque_fixed(84, "fattr3").expect("fattr3");
    let count = r.u32("count").expect("count");
    let committed = r.u32("committed").expect("committed");
    let verf = r.opaque_fixed(8, "verf").expect("verifier").to_vec();
    (st, count, committed, verf)
}

/// READ: (status, data, eof).
pub fn read(s: &mut TcpStream, fh: &[u8], offset: u64, count: u32) -> (u32, Vec<u8>, bool) {
    let body = call3(s, NFS, 6, &io_args(fh, offset, count));
    let mut r = XdrReader::new(&body);
    let st = r.u32("status").expect("a status");
    if st != 0 {
        return (st, vec![], false);
    }
    if r.bool("post").expect("post_op_attr") {
        r.opaque_fixed(84, "fattr3").expect("fattr3");
    }
    let _n = r.u32("count").expect("count");
    let eof = r.bool("eof").expect("eof");
    (st, r.opaque(1 << 20, "data").expect("data").to_vec(), eof)
}
