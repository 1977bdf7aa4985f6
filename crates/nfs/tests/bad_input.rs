//! Bad input and faults over raw TCP/UDP: broken framing, wrong program and
//! version numbers, truncated calls, forged and stale handles, clients
//! leaving mid-request, failing disks and a full cache folder.
mod common;
use common::*;
use lifeboat_nfs::rpc::msg::{decode_reply, Credential, ReplyHeader};
use lifeboat_nfs::xdr::{XdrReader, XdrWrite};
use lifeboat_nfs::{AllowList, HandleKey, NfsConfig, NfsService, SessionTree};
use lifeboat_testsupport::{run_stdout, tool};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn null_works(f: &Fixture) {
    let mut s = connect(f.service.nfs_addr());
    let (h, body) = rpc(&mut s, NFS, 3, 0, Credential::None, &[]);
    assert_eq!((accepted(&h), body.len()), (0, 0));
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn broken_framing_closes_only_that_connection() {
    let f = Fixture::new();
    // Oversized record: 2 GiB announced.
    let mut s = connect(f.service.nfs_addr());
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    assert!(closed(&mut s));
    // Fragments adding up past the maximum.
    let mut s = connect(f.service.nfs_addr());
    s.write_all(&0x0010_0000u32.to_be_bytes()).unwrap();
    s.write_all(&vec![0u8; 1 << 20]).unwrap();
    s.write_all(&0x8001_0000u32.to_be_bytes()).unwrap();
    assert!(closed(&mut s));
    // A record that is not a call.
    let mut s = connect(f.service.nfs_addr());
    s.write_all(&[0x80, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1])
        .unwrap();
    assert!(closed(&mut s));
    assert!(f.service.log().closed_bad_input() >= 3);
    null_works(&f);
}

#[test]
fn wrong_numbers_get_the_rpc_answers() {
    let f = Fixture::new();
    let mut s = connect(f.service.nfs_addr());
    assert_eq!(
        accepted(&rpc(&mut s, 123_456, 1, 0, sys_cred(), &[]).0),
        1,
        "PROG_UNAVAIL"
    );
    match rpc(&mut s, NFS, 4, 0, sys_cred(), &[]).0 {
        ReplyHeader::Accepted {
            stat: 2,
            mismatch: Some((3, 3)),
            ..
        } => {}
        other => panic!("expected PROG_MISMATCH(3, 3): {other:?}"),
    }
    match rpc(&mut s, 100_000, 4, 3, sys_cred(), &[]).0 {
        ReplyHeader::Accepted {
            stat: 2,
            mismatch: Some((2, 2)),
            ..
        } => {}
        other => panic!("expected PROG_MISMATCH(2, 2): {other:?}"),
    }
    assert_eq!(
        accepted(&rpc(&mut s, NFS, 3, 22, sys_cred(), &[]).0),
        3,
        "PROC_UNAVAIL"
    );
    assert_eq!(
        accepted(&rpc(&mut s, NFS, 3, 1, sys_cred(), &[0, 0]).0),
        4,
        "GARBAGE_ARGS"
    );
    assert_eq!(
        rpc(&mut s, NFS, 3, 1, Credential::None, &[0, 0, 0, 0]).0,
        ReplyHeader::AuthError { xid: 42, stat: 5 },
        "AUTH_NONE is too weak"
    );
    assert_eq!(
        rpc(&mut s, NFS, 3, 0, Credential::Other { flavor: 6 }, &[]).0,
        ReplyHeader::AuthError { xid: 42, stat: 1 },
        "RPCSEC_GSS is not served"
    );
    // RPC version 3, then a call truncated inside its credential.
    let mut rec = call_record(7, NFS, 3, 0, sys_cred(), &[]);
    rec[12..16].copy_from_slice(&3u32.to_be_bytes());
    s.write_all(&rec).unwrap();
    let reply = read_record(&mut s).unwrap();
    assert_eq!(
        decode_reply(&reply).unwrap().0,
        ReplyHeader::RpcMismatch {
            xid: 7,
            low: 2,
            high: 2
        }
    );
    let rec = call_record(8, NFS, 3, 0, sys_cred(), &[]);
    let mut cut = rec[4..40].to_vec();
    let mut framed = (0x8000_0000u32 | cut.len() as u32).to_be_bytes().to_vec();
    framed.append(&mut cut);
    s.write_all(&framed).unwrap();
    let reply = read_record(&mut s).unwrap();
    assert_eq!(
        decode_reply(&reply).unwrap().0,
        ReplyHeader::AuthError { xid: 8, stat: 1 }
    );
    // The connection is still usable.
    assert_eq!(accepted(&rpc(&mut s, NFS, 3, 0, sys_cred(), &[]).0), 0);
}

fn getattr(s: &mut TcpStream, fh: &[u8]) -> u32 {
    let mut a = Vec::new();
    a.put_opaque(fh);
    let (h, body) = rpc(s, NFS, 3, 1, sys_cred(), &a);
    assert_eq!(accepted(&h), 0);
    XdrReader::new(&body).u32("status").unwrap()
}

#[test]
fn forged_and_stale_handles_are_refused_and_handles_survive_a_restart() {
    let f = Fixture::new();
    let mut s = connect(f.service.nfs_addr());
    let fh = session_file(&mut s, FLAT);
    assert_eq!(getattr(&mut s, &fh), 0);
    let mut forged = fh.clone();
    forged[14] ^= 0x40;
    assert_eq!(getattr(&mut s, &forged), 10001, "BADHANDLE");
    assert_eq!(getattr(&mut s, &[1, 2, 3]), 10001, "BADHANDLE");
    assert_eq!(getattr(&mut s, &[0; 64]), 10001, "BADHANDLE");

    // A restarted service (same key file, same cache folder) accepts it.
    let cache = f.dir.path().join("cache");
    let tree = Arc::new(SessionTree::new(
        HandleKey::load_or_create(&cache.join("handle.key")).unwrap(),
    ));
    let mem: Arc<dyn lifeboat_vdisk::WriteDisk> =
        Arc::new(lifeboat_vdisk::MemDisk::new("d", f.bytes.clone()));
    tree.add_session(
        SESSION,
        VM,
        vec![("disk0".into(), mem)],
        &cache.join(SESSION),
    )
    .unwrap();
    let config = NfsConfig::ephemeral(
        "127.0.0.1".parse().unwrap(),
        AllowList::parse(["127.0.0.1"]).unwrap(),
    );
    let again = NfsService::start(config, tree.clone()).unwrap();
    let mut s2 = connect(again.nfs_addr());
    assert_eq!(getattr(&mut s2, &fh), 0, "handle after a restart");
    assert_ne!(
        again.write_verifier(),
        f.service.write_verifier(),
        "new verifier after a restart"
    );
    assert!(tree.remove_session(SESSION));
    assert_eq!(
        getattr(&mut s2, &fh),
        70,
        "STALE after the session is removed"
    );
}

#[test]
fn a_client_leaving_mid_request_ends_only_its_connection() {
    let f = Fixture::new();
    {
        let mut s = connect(f.service.nfs_addr());
        s.write_all(&0x8000_1000u32.to_be_bytes()).unwrap();
        s.write_all(&[0u8; 100]).unwrap();
    }
    {
        let mut s = connect(f.service.nfs_addr());
        s.write_all(&[0x80, 0]).unwrap();
    }
    // Generous: under a full parallel test run the threads may take a
    // while to be scheduled; the loop ends as soon as they have.
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.service.log().active() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(f.service.log().active(), 0, "connection threads ended");
    null_works(&f);
}

#[test]
fn disk_faults_become_io_and_nospc() {
    let f = Fixture::new();
    let mut s = connect(f.service.nfs_addr());
    let bad = session_file(&mut s, "web01-bad-flat.vmdk");
    let (st, data, _) = read(&mut s, &bad, 0, 65536);
    assert_eq!((st, data.len()), (0, 65536));
    assert!(data == f.bytes[..65536]);
    assert_eq!(
        read(&mut s, &bad, (1 << 20) - 10, 4096).0,
        5,
        "corrupt chunk → NFS3ERR_IO"
    );
    assert_eq!(
        write(&mut s, &bad, 0, b"x", 2).0,
        28,
        "overlay full → NFS3ERR_NOSPC"
    );
    // A cache-folder file on a full file system (/dev/full answers ENOSPC).
    std::os::unix::fs::symlink("/dev/full", f.files_dir().join("vmware.log")).unwrap();
    let log = session_file(&mut s, "vmware.log");
    assert_eq!(write(&mut s, &log, 0, b"line\n", 2).0, 28);
    assert!(f.service.log().nospc_errors() >= 2);
    let lines = f.service.log().lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("no space left") && l.contains("vmware.log")),
        "{lines:?}"
    );
    // Writes past the end of a disk file.
    let flat = session_file(&mut s, FLAT);
    assert_eq!(
        write(&mut s, &flat, SIZE as u64 - 1, b"ab", 0).0,
        27,
        "FBIG"
    );
    null_works(&f);
}

#[test]
fn portmapper_answers_getport_over_udp_and_tcp() {
    let f = Fixture::new();
    let pm = f.service.portmap_addr().unwrap();
    let mut args = Vec::new();
    for v in [NFS, 3, 6, 0] {
        args.put_u32(v);
    }
    let rec = call_record(9, 100_000, 2, 3, Credential::None, &args);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.send_to(&rec[4..], pm).unwrap();
    let mut buf = [0u8; 1024];
    let n = u.recv(&mut buf).unwrap();
    let (h, body) = decode_reply(&buf[..n]).unwrap();
    assert_eq!(accepted(&h), 0);
    assert_eq!(body, (f.service.nfs_addr().port() as u32).to_be_bytes());
    let mut s = connect(pm);
    let mut m = Vec::new();
    for v in [MOUNT, 3, 6, 0] {
        m.put_u32(v);
    }
    let (_, body) = rpc(&mut s, 100_000, 2, 3, Credential::None, &m);
    assert_eq!(body, (f.service.mount_addr().port() as u32).to_be_bytes());
}

#[test]
fn rpcinfo_lists_the_registered_programs() {
    let mut rpcinfo = tool("rpcinfo", "rpcbind");
    // rpcinfo only talks to port 111: this test gets its own loopback address.
    let f = Fixture::build(&["127.0.0.0/8"], "127.0.0.10", 111);
    let out = run_stdout(rpcinfo.args(["-p", "127.0.0.10"]));
    for (prog, port) in [
        (NFS, f.service.nfs_addr().port()),
        (MOUNT, f.service.mount_addr().port()),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&prog.to_string()) && l.contains(&port.to_string())),
            "{prog} on {port} missing from\n{out}"
        );
    }
}
