//! Hostile network peers: addresses on no allow list are closed before a
//! byte is read (TCP) or ignored (UDP), MOUNT's EXPORT and DUMP tell a
//! client only what concerns it, connections are limited in number and
//! idle time, and one connection's calls run concurrently.
mod common;
use common::*;
use lifeboat_nfs::rpc::msg::{decode_reply, Credential};
use lifeboat_nfs::xdr::{XdrReader, XdrWrite};
use lifeboat_nfs::{AllowList, HandleKey, NfsConfig, NfsService, SessionTree};
use lifeboat_testsupport::run;
use lifeboat_vdisk::{MemDisk, ReadDisk, Result as DiskResult, WriteDisk};
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const PORTMAP: u32 = 100_000;

#[test]
fn a_peer_on_no_allow_list_is_closed_before_a_byte_is_read() {
    let f = Fixture::with_allow(&["127.0.0.1"]);
    let pm = f.service.portmap_addr().unwrap();
    // A valid call on every TCP listener: NULL, MOUNT EXPORT, portmapper DUMP.
    for (addr, prog, vers, proc_) in [
        (f.service.nfs_addr(), NFS, 3, 0),
        (f.service.mount_addr(), MOUNT, 3, 5),
        (pm, PORTMAP, 2, 4),
    ] {
        let mut s = connect_from("127.0.0.9", addr);
        // The server may close before or after the call arrives.
        let _ = s.write_all(&call_record(1, prog, vers, proc_, sys_cred(), &[]));
        let got = drain(&mut s);
        assert!(
            got.is_empty(),
            "{addr} answered {} bytes to a peer off the allow list (program {prog} proc {proc_})",
            got.len()
        );
    }
    // UDP: the portmapper does not answer.
    let u = UdpSocket::bind("127.0.0.9:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut args = Vec::new();
    for v in [NFS, 3, 6, 0] {
        args.put_u32(v);
    }
    let rec = call_record(2, PORTMAP, 2, 3, Credential::None, &args);
    u.send_to(&rec[4..], pm).unwrap();
    let mut buf = [0u8; 512];
    assert!(
        u.recv(&mut buf).is_err(),
        "the portmapper answered a datagram from a peer off the allow list"
    );
    assert!(f.service.log().refused_peers() >= 4);
    assert!(
        f.service
            .log()
            .lines()
            .iter()
            .any(|l| l.contains("127.0.0.9") && l.contains("not on the allow list")),
        "{:?}",
        f.service.log().lines()
    );
    // The allowed address is served.
    let mut s = connect(f.service.nfs_addr());
    let (h, _) = rpc(&mut s, NFS, 3, 0, Credential::None, &[]);
    assert_eq!(accepted(&h), 0);
}

/// MOUNT EXPORT (proc 5) from `s`: the (path, groups) it lists.
fn export(s: &mut TcpStream) -> Vec<(String, Vec<String>)> {
    let (h, body) = rpc(s, MOUNT, 3, 5, sys_cred(), &[]);
    assert_eq!(accepted(&h), 0);
    let mut r = XdrReader::new(&body);
    let mut out = Vec::new();
    while r.bool("export entry").unwrap() {
        let dir = r.string(1024, "dir").unwrap().to_owned();
        let mut groups = Vec::new();
        while r.bool("group entry").unwrap() {
            groups.push(r.string(255, "group").unwrap().to_owned());
        }
        out.push((dir, groups));
    }
    out
}

/// MOUNT DUMP (proc 2) from `s`: the (host, path) pairs it lists.
fn dump(s: &mut TcpStream) -> Vec<(String, String)> {
    let (h, body) = rpc(s, MOUNT, 3, 2, sys_cred(), &[]);
    assert_eq!(accepted(&h), 0);
    let mut r = XdrReader::new(&body);
    let mut out = Vec::new();
    while r.bool("mount entry").unwrap() {
        let host = r.string(255, "host").unwrap().to_owned();
        let dir = r.string(1024, "dir").unwrap().to_owned();
        out.push((host, dir));
    }
    out
}

#[test]
fn export_and_dump_tell_a_client_only_what_concerns_it() {
    let f = Fixture::with_allow(&["127.0.0.1", "127.0.0.2", "10.1.2.0/24"]);
    let mut a = connect(f.service.mount_addr());
    assert_eq!(mnt(&mut a, &format!("/lifeboat/{SESSION}")).0, 0);
    let mut b = connect_from("127.0.0.2", f.service.mount_addr());
    assert_eq!(mnt(&mut b, "/lifeboat").0, 0);
    // Each client sees its own mount, never the other's address.
    assert_eq!(
        dump(&mut b),
        vec![("127.0.0.2".to_string(), "/lifeboat".to_string())]
    );
    assert_eq!(
        dump(&mut a),
        vec![("127.0.0.1".to_string(), format!("/lifeboat/{SESSION}"))]
    );
    // EXPORT names the entries the caller matched, not the whole list.
    assert_eq!(
        export(&mut b),
        vec![("/lifeboat".to_string(), vec!["127.0.0.2/32".to_string()])]
    );
}

#[test]
fn the_connection_limit_makes_room_and_idle_connections_are_closed() {
    let f = Fixture::with_config(|c| {
        c.max_connections = 4;
        c.idle_timeout = Some(Duration::from_secs(1));
    });
    let addr = f.service.nfs_addr();
    let mut first = connect(addr);
    std::thread::sleep(Duration::from_millis(100));
    let mut others: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    // Under the limit, each answers.
    for s in others.iter_mut() {
        assert_eq!(accepted(&rpc(s, NFS, 3, 0, Credential::None, &[]).0), 0);
    }
    // A fifth connection: the one quiet for longest makes room.
    let mut fifth = connect(addr);
    assert_eq!(
        accepted(&rpc(&mut fifth, NFS, 3, 0, Credential::None, &[]).0),
        0
    );
    assert!(
        drain(&mut first).is_empty(),
        "the longest-idle connection stayed open"
    );
    assert!(f.service.log().over_limit() >= 1);
    assert!(
        f.service
            .log()
            .lines()
            .iter()
            .any(|l| l.contains("connection limit reached (4 open)")),
        "{:?}",
        f.service.log().lines()
    );
    // After the idle timeout, every quiet connection is closed.
    let start = Instant::now();
    for s in others.iter_mut().chain(std::iter::once(&mut fifth)) {
        assert!(drain(s).is_empty());
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(f.service.log().idle_closed() >= 4);
    // A real client is served.
    let cat = run(nfs_tool("nfs-cat").arg(f.url(&format!("{SESSION}/{FLAT}")))).stdout;
    assert!(
        cat == f.bytes,
        "nfs-cat after the idle connections were closed"
    );
}

/// A disk whose reads wait until [`Gate::open`] (at most 20 s).
struct GatedDisk {
    inner: MemDisk,
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl ReadDisk for GatedDisk {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> DiskResult<()> {
        let (m, cv) = &*self.open;
        let g = m.lock().unwrap();
        let _g = cv
            .wait_timeout_while(g, Duration::from_secs(20), |open| !*open)
            .unwrap();
        self.inner.read_at(buf, offset)
    }
    fn describe(&self) -> String {
        "gated test disk".into()
    }
}

impl WriteDisk for GatedDisk {
    fn write_at(&self, buf: &[u8], offset: u64) -> DiskResult<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> DiskResult<()> {
        Ok(())
    }
}

#[test]
fn calls_on_one_connection_run_concurrently_and_answer_as_they_finish() {
    let dir = tempfile::tempdir().unwrap();
    let open = Arc::new((Mutex::new(false), Condvar::new()));
    let disk: Arc<dyn WriteDisk> = Arc::new(GatedDisk {
        inner: MemDisk::new("gated", vec![7u8; 1 << 20]),
        open: open.clone(),
    });
    let tree = Arc::new(SessionTree::new(HandleKey::from_bytes([3; 32])));
    tree.add_session("s", "vm", vec![("d".into(), disk)], dir.path())
        .unwrap();
    let config = NfsConfig::ephemeral(
        "127.0.0.1".parse().unwrap(),
        AllowList::parse(["127.0.0.1"]).unwrap(),
    );
    let service = NfsService::start(config, tree).unwrap();
    let fh = file_handle(
        service.mount_addr(),
        service.nfs_addr(),
        "s",
        "vm-d-flat.vmdk",
    );
    let mut s = connect(service.nfs_addr());
    // A READ that waits on the disk, then a NULL on the same connection.
    let mut args = Vec::new();
    args.put_opaque(&fh);
    args.put_u64(0);
    args.put_u32(4096);
    s.write_all(&call_record(100, NFS, 3, 6, sys_cred(), &args))
        .unwrap();
    s.write_all(&call_record(101, NFS, 3, 0, sys_cred(), &[]))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let first = read_record(&mut s).expect("no reply while the READ waits: calls ran in order");
    let (h, _) = decode_reply(&first).unwrap();
    assert!(
        matches!(
            h,
            lifeboat_nfs::rpc::msg::ReplyHeader::Accepted { xid: 101, .. }
        ),
        "the NULL should be answered first: {h:?}"
    );
    *open.0.lock().unwrap() = true;
    open.1.notify_all();
    let second = read_record(&mut s).unwrap();
    let (h, body) = decode_reply(&second).unwrap();
    assert!(matches!(
        h,
        lifeboat_nfs::rpc::msg::ReplyHeader::Accepted {
            xid: 100,
            stat: 0,
            ..
        }
    ));
    assert_eq!(XdrReader::new(body).u32("status").unwrap(), 0);
}

#[test]
fn a_client_that_does_not_read_its_replies_gets_them_all_later() {
    let f = Fixture::new();
    let mut s = connect(f.service.nfs_addr());
    let fh = session_file(&mut s, FLAT);
    // 40 READs of 1 MiB sent without reading a reply: the socket fills,
    // the workers leave the rest to the reactor, and the server stops
    // reading the connection after 16 calls in flight.
    let mut calls = Vec::new();
    for i in 0..40u32 {
        let mut a = Vec::new();
        a.put_opaque(&fh);
        a.put_u64(((i as u64) << 20) % SIZE as u64);
        a.put_u32(1 << 20);
        calls.extend(call_record(1000 + i, NFS, 3, 6, sys_cred(), &a));
    }
    let mut w = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || w.write_all(&calls).unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    let mut seen = Vec::new();
    for _ in 0..40 {
        let rec = read_record(&mut s).expect("a reply");
        let (h, body) = decode_reply(&rec).unwrap();
        let lifeboat_nfs::rpc::msg::ReplyHeader::Accepted { xid, stat: 0, .. } = h else {
            panic!("{h:?}");
        };
        let mut r = XdrReader::new(body);
        assert_eq!(r.u32("status").unwrap(), 0);
        assert!(r.bool("post_op_attr").unwrap());
        r.opaque_fixed(84, "fattr3").unwrap();
        r.u32("count").unwrap();
        r.bool("eof").unwrap();
        let data = r.opaque(1 << 20, "data").unwrap();
        let at = (((xid - 1000) as usize) << 20) % SIZE;
        assert!(data == &f.bytes[at..at + (1 << 20)], "data of xid {xid}");
        seen.push(xid);
    }
    sender.join().unwrap();
    seen.sort();
    assert_eq!(seen, (1000..1040).collect::<Vec<_>>());
}
