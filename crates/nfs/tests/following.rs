//! A worker that answered a connection's only call follows the connection
//! and reads the client's next call itself; pauses, half-sent records and
//! bursts of calls hand the connection back to the reactor. Every reply
//! must be right whichever thread read its call.
mod common;
use common::*;
use lifeboat_nfs::rpc::msg::{decode_reply, ReplyHeader};
use lifeboat_nfs::xdr::{XdrReader, XdrWrite};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const LEN: usize = 64 << 10;

fn read_call(xid: u32, fh: &[u8], at: usize) -> Vec<u8> {
    let mut a = Vec::new();
    a.put_opaque(fh);
    a.put_u64(at as u64);
    a.put_u32(LEN as u32);
    call_record(xid, NFS, 3, 6, sys_cred(), &a)
}

/// Reads one reply and checks it is READ `xid`'s data at its offset.
fn check_reply(s: &mut TcpStream, f: &Fixture, xid_of: impl Fn(u32) -> usize) -> u32 {
    let rec = read_record(s).expect("a reply");
    let (h, body) = decode_reply(&rec).unwrap();
    let ReplyHeader::Accepted { xid, stat: 0, .. } = h else {
        panic!("{h:?}");
    };
    let mut r = XdrReader::new(body);
    assert_eq!(r.u32("status").unwrap(), 0, "READ {xid}");
    assert!(r.bool("post_op_attr").unwrap());
    r.opaque_fixed(84, "fattr3").unwrap();
    r.u32("count").unwrap();
    r.bool("eof").unwrap();
    let data = r.opaque(LEN as u32, "data").unwrap();
    let at = xid_of(xid);
    assert!(data == &f.bytes[at..at + LEN], "data of READ {xid}");
    xid
}

fn offset(xid: u32) -> usize {
    (xid as usize * LEN) % (SIZE - LEN)
}

#[test]
fn calls_read_by_a_following_worker_or_the_reactor_get_the_same_replies() {
    let f = Fixture::new();
    let mut s = connect(f.service.nfs_addr());
    let fh = session_file(&mut s, FLAT);

    // One call at a time: after the first, a worker follows the connection.
    for xid in 1..=200u32 {
        s.write_all(&read_call(xid, &fh, offset(xid))).unwrap();
        assert_eq!(check_reply(&mut s, &f, offset), xid);
    }
    let followed = f.service.log().followed();
    assert!(
        followed > 0,
        "no call of a client sending one at a time was read by a following worker"
    );

    // A pause longer than a worker follows: the reactor reads the next call.
    for xid in 201..=205u32 {
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(&read_call(xid, &fh, offset(xid))).unwrap();
        assert_eq!(check_reply(&mut s, &f, offset), xid);
    }

    // Half a record, a pause, the rest: whoever reads the rest continues
    // the record the other began.
    for xid in 206..=210u32 {
        let call = read_call(xid, &fh, offset(xid));
        let (a, b) = call.split_at(call.len() / 2);
        s.write_all(a).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(b).unwrap();
        assert_eq!(check_reply(&mut s, &f, offset), xid);
    }

    // A burst of calls in one write, right after a followed call.
    s.write_all(&read_call(211, &fh, offset(211))).unwrap();
    assert_eq!(check_reply(&mut s, &f, offset), 211);
    let burst: Vec<u8> = (212..=241u32)
        .flat_map(|xid| read_call(xid, &fh, offset(xid)))
        .collect();
    s.write_all(&burst).unwrap();
    let mut seen: Vec<u32> = (0..30).map(|_| check_reply(&mut s, &f, offset)).collect();
    seen.sort();
    assert_eq!(seen, (212..=241).collect::<Vec<_>>());

    // And one at a time again on the same connection.
    for xid in 242..=260u32 {
        s.write_all(&read_call(xid, &fh, offset(xid))).unwrap();
        assert_eq!(check_reply(&mut s, &f, offset), xid);
    }
}

#[test]
fn a_client_leaving_while_followed_is_forgotten() {
    let f = Fixture::new();
    for round in 0..20u32 {
        let mut s = connect(f.service.nfs_addr());
        let fh = session_file(&mut s, FLAT);
        s.write_all(&read_call(round, &fh, offset(round))).unwrap();
        check_reply(&mut s, &f, offset);
        // Leaves while a worker may be following it, half of them in the
        // middle of a record.
        if round % 2 == 1 {
            let call = read_call(round + 100, &fh, 0);
            s.write_all(&call[..call.len() / 2]).unwrap();
        }
        drop(s);
    }
    let log = f.service.log();
    for _ in 0..100 {
        if log.active() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(log.active(), 0, "connections still open: {:?}", log.lines());
    // The service still answers.
    let mut s = connect(f.service.nfs_addr());
    let fh = session_file(&mut s, FLAT);
    s.write_all(&read_call(7, &fh, offset(7))).unwrap();
    assert_eq!(check_reply(&mut s, &f, offset), 7);
}
