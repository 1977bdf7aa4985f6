//! Bad input and faults, from a raw TCP client: every case checks both the
//! answer on the offending connection and that the server keeps serving.

mod common;

use common::*;
use lifeboat_nbd::proto::consts::*;

/// A fresh connection can still read the export correctly.
fn still_serving(f: &Fixture) {
    let mut c = Raw::open(f.addr(), "mem", false);
    c.request(0, NBD_CMD_READ, 99, 4096, 8192);
    assert_eq!(c.simple_reply(), (0, 99));
    assert!(c.read_n(8192) == f.bytes[4096..4096 + 8192]);
}

#[test]
fn garbage_magic_closes_only_that_connection() {
    let f = Fixture::new();
    // Garbage instead of an option.
    let mut c = Raw::handshake(f.addr());
    c.send(b"GARBAGE!\0\0\0\x07\0\0\0\0");
    assert!(c.closed_by_server());
    // Bad client flags.
    let mut c = Raw::connect(f.addr());
    c.send(&0xdead_beefu32.to_be_bytes());
    assert!(c.closed_by_server());
    // Garbage instead of a request.
    let mut c = Raw::open(f.addr(), "mem", false);
    c.send(&[0x42; 28]);
    assert!(c.closed_by_server());
    wait_for("three failures", || f.server.stats().failed() >= 3);
    assert!(f.server.stats().last_error().unwrap().contains("magic"));
    still_serving(&f);
}

#[test]
fn truncated_option_ends_the_connection_cleanly() {
    let f = Fixture::new();
    let mut c = Raw::handshake(f.addr());
    let mut b = b"IHAVEOPT".to_vec();
    b.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
    b.extend_from_slice(&100u32.to_be_bytes());
    b.extend_from_slice(&[0; 10]);
    c.send(&b);
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.closed_by_server());
    wait_for("the truncation to be noticed", || {
        f.server
            .stats()
            .last_error()
            .is_some_and(|e| e.contains("closed in the middle of an option"))
    });
    // An option that claims more than the server accepts is refused at once.
    let mut c = Raw::handshake(f.addr());
    let mut b = b"IHAVEOPT".to_vec();
    b.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    c.send(&b);
    assert!(c.closed_by_server());
    still_serving(&f);
}

#[test]
fn unknown_and_malformed_options_get_errors_and_negotiation_continues() {
    let f = Fixture::new();
    let mut c = Raw::handshake(f.addr());
    c.option(0x1234, b"whatever");
    assert_eq!(c.option_reply().1, NBD_REP_ERR_UNSUP);
    c.option(NBD_OPT_STARTTLS, &[]);
    assert_eq!(c.option_reply().1, NBD_REP_ERR_UNSUP);
    c.option(NBD_OPT_GO, &[0, 0, 0, 200, b'x']);
    assert_eq!(c.option_reply().1, NBD_REP_ERR_INVALID);
    c.option(NBD_OPT_GO, &[0, 0, 0, 4, b'n', b'o', b'n', b'e', 0, 0]);
    assert_eq!(c.option_reply().1, NBD_REP_ERR_UNKNOWN);
    // Then a normal GO works on the same connection.
    c.option(NBD_OPT_GO, &[0, 0, 0, 3, b'm', b'e', b'm', 0, 0]);
    let (_, ty, info) = c.option_reply();
    assert_eq!(ty, NBD_REP_INFO);
    assert_eq!(info[2..10], (SIZE as u64).to_be_bytes());
    assert_eq!(c.option_reply().1, NBD_REP_ACK);
    c.request(0, NBD_CMD_READ, 1, 0, 512);
    assert_eq!(c.simple_reply(), (0, 1));
    assert!(c.read_n(512) == f.bytes[..512]);

    // NBD_OPT_ABORT is acknowledged, then the server closes.
    let mut c = Raw::handshake(f.addr());
    c.option(NBD_OPT_ABORT, &[]);
    assert_eq!(c.option_reply().1, NBD_REP_ACK);
    assert!(c.closed_by_server());
}

#[test]
fn reads_beyond_the_end_and_oversized_requests_get_errors() {
    let f = Fixture::new();
    for structured in [false, true] {
        let mut c = Raw::open(f.addr(), "mem", structured);
        let expect = |c: &mut Raw, cookie, errno| {
            if structured {
                let ch = c.chunk();
                assert_eq!((ch.kind, ch.cookie), (NBD_REPLY_TYPE_ERROR, cookie));
                assert_ne!(ch.flags & NBD_REPLY_FLAG_DONE, 0);
                assert_eq!(ch.payload[..4], errno_bytes(errno));
            } else {
                assert_eq!(c.simple_reply(), (errno, cookie));
            }
        };
        c.request(0, NBD_CMD_READ, 1, SIZE as u64 - 100, 200);
        expect(&mut c, 1, NBD_EINVAL);
        c.request(0, NBD_CMD_READ, 2, u64::MAX - 10, 100);
        expect(&mut c, 2, NBD_EINVAL);
        c.request(0, NBD_CMD_READ, 3, 0, u32::MAX);
        expect(
            &mut c,
            3,
            if structured {
                NBD_EOVERFLOW
            } else {
                NBD_EINVAL
            },
        );
        c.request(0, NBD_CMD_READ, 4, 0, MAX_PAYLOAD + 1);
        expect(
            &mut c,
            4,
            if structured {
                NBD_EOVERFLOW
            } else {
                NBD_EINVAL
            },
        );
        // The connection still works, with the largest read allowed.
        c.request(0, NBD_CMD_READ, 5, 0, SIZE as u32);
        let got = if structured {
            c.structured_read(0, SIZE).unwrap()
        } else {
            assert_eq!(c.simple_reply(), (0, 5));
            c.read_n(SIZE)
        };
        assert!(got == f.bytes);
    }

    // An oversized write is drained and refused; the connection stays in step.
    let mut c = Raw::open(f.addr(), "rw", false);
    let len = MAX_PAYLOAD + 4096;
    c.request(0, NBD_CMD_WRITE, 6, 0, len);
    c.send(&vec![0x77u8; len as usize]);
    assert_eq!(c.simple_reply(), (NBD_EINVAL, 6));
    c.request(0, NBD_CMD_WRITE, 7, SIZE as u64 - 1, 2);
    c.send(&[1, 2]);
    assert_eq!(c.simple_reply(), (NBD_ENOSPC, 7));
    c.request(0, NBD_CMD_READ, 8, 0, 16);
    assert_eq!(c.simple_reply(), (0, 8));
    assert!(
        c.read_n(16) == f.bytes[..16],
        "refused writes changed the disk"
    );
    assert!(f.rw.to_vec() == f.bytes);
}

fn errno_bytes(e: u32) -> [u8; 4] {
    e.to_be_bytes()
}

#[test]
fn read_only_exports_refuse_every_write() {
    let f = Fixture::new();
    let mut c = Raw::open(f.addr(), "mem", false);
    c.request(0, NBD_CMD_WRITE, 1, 0, 512);
    c.send(&[0x55; 512]);
    assert_eq!(c.simple_reply(), (NBD_EPERM, 1));
    c.request(0, NBD_CMD_TRIM, 2, 0, 512);
    assert_eq!(c.simple_reply(), (NBD_EPERM, 2));
    c.request(0, NBD_CMD_WRITE_ZEROES, 3, 0, 512);
    assert_eq!(c.simple_reply(), (NBD_EPERM, 3));
    c.request(0, NBD_CMD_FLUSH, 4, 0, 0);
    assert_eq!(c.simple_reply(), (0, 4));
    c.request(0, NBD_CMD_READ, 5, 0, 512);
    assert_eq!(c.simple_reply(), (0, 5));
    assert!(c.read_n(512) == f.bytes[..512]);
    // Writable export: TRIM, CACHE and FUA writes are accepted.
    let mut c = Raw::open(f.addr(), "rw", false);
    c.request(NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 6, 512, 4);
    c.send(&[9, 8, 7, 6]);
    assert_eq!(c.simple_reply(), (0, 6));
    c.request(0, NBD_CMD_TRIM, 7, 0, 4096);
    assert_eq!(c.simple_reply(), (0, 7));
    c.request(0, NBD_CMD_CACHE, 8, 0, SIZE as u32);
    assert_eq!(c.simple_reply(), (0, 8));
    assert_eq!(f.rw.to_vec()[512..516], [9, 8, 7, 6]);
}

#[test]
fn block_status_needs_a_selected_context() {
    let f = Fixture::new();
    let mut c = Raw::open(f.addr(), "sparse", true);
    c.request(0, NBD_CMD_BLOCK_STATUS, 1, 0, 4096);
    let ch = c.chunk();
    assert_eq!(
        (ch.kind, ch.payload[..4].to_vec()),
        (NBD_REPLY_TYPE_ERROR, errno_bytes(NBD_EINVAL).to_vec())
    );
    // Structured read of the sparse export: holes come as OFFSET_HOLE.
    c.request(0, NBD_CMD_READ, 2, 0, 3 * BLOCK as u32);
    let first = c.chunk();
    assert_eq!(first.kind, NBD_REPLY_TYPE_OFFSET_HOLE);
    assert_eq!(
        first.payload,
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
        "hole at 0 of 64 KiB"
    );
    let second = c.chunk();
    assert_eq!(second.kind, NBD_REPLY_TYPE_OFFSET_DATA);
    assert!(second.payload[8..] == f.bytes[BLOCK..3 * BLOCK]);
    let last = c.chunk();
    assert_eq!(
        (last.kind, last.flags),
        (NBD_REPLY_TYPE_NONE, NBD_REPLY_FLAG_DONE)
    );
}

#[test]
fn client_disconnect_mid_request_ends_only_that_connection() {
    let f = Fixture::new();
    let mut other = Raw::open(f.addr(), "rw", true);
    // A write whose payload never arrives.
    let mut c = Raw::open(f.addr(), "rw", false);
    c.request(0, NBD_CMD_WRITE, 1, 0, 1 << 20);
    c.send(&[0xAB; 1000]);
    drop(c);
    // A large read whose reply nobody reads.
    let mut c = Raw::open(f.addr(), "mem", true);
    for cookie in 0..8 {
        c.request(0, NBD_CMD_READ, cookie, 0, SIZE as u32);
    }
    drop(c);
    // A request header cut in half.
    let mut c = Raw::open(f.addr(), "mem", false);
    c.send(&NBD_REQUEST_MAGIC.to_be_bytes());
    drop(c);
    wait_for("the dropped connections to end", || {
        f.server.stats().active() == 1
    });
    assert!(
        f.server.stats().failed() >= 2,
        "{:?}",
        f.server.stats().last_error()
    );
    assert!(
        f.rw.to_vec() == f.bytes,
        "a half-received write reached the disk"
    );
    // The connection opened before is still served.
    other.request(0, NBD_CMD_READ, 9, 0, 256 << 10);
    assert!(other.structured_read(0, 256 << 10).unwrap() == f.bytes[..256 << 10]);
    still_serving(&f);
}

#[test]
fn a_disk_read_error_is_an_eio_reply_never_wrong_bytes() {
    let f = Fixture::new();
    for structured in [false, true] {
        let mut c = Raw::open(f.addr(), "broken", structured);
        // Straddles the failing MiB.
        c.request(0, NBD_CMD_READ, 1, BROKEN_START - 4096, 8192);
        if structured {
            assert_eq!(c.structured_read(BROKEN_START - 4096, 8192), Err(NBD_EIO));
        } else {
            assert_eq!(c.simple_reply(), (NBD_EIO, 1));
        }
        // The connection stays up and healthy ranges read correctly.
        c.request(0, NBD_CMD_READ, 2, 0, 4096);
        let got = if structured {
            c.structured_read(0, 4096).unwrap()
        } else {
            assert_eq!(c.simple_reply(), (0, 2));
            c.read_n(4096)
        };
        assert!(got == f.bytes[..4096]);
    }
}

#[test]
fn export_name_option_enters_transmission_or_closes() {
    let f = Fixture::new();
    // Client flags without NO_ZEROES: size, flags, then 124 zero bytes.
    let mut c = Raw::connect(f.addr());
    c.send(&1u32.to_be_bytes());
    c.option(NBD_OPT_EXPORT_NAME, b"rw");
    let reply = c.read_n(8 + 2 + 124);
    assert_eq!(reply[..8], (SIZE as u64).to_be_bytes());
    let flags = u16::from_be_bytes([reply[8], reply[9]]);
    assert_eq!(flags & NBD_FLAG_READ_ONLY, 0);
    assert_ne!(flags & NBD_FLAG_SEND_WRITE_ZEROES, 0);
    assert!(reply[10..].iter().all(|&b| b == 0));
    c.request(0, NBD_CMD_READ, 1, 7, 9);
    assert_eq!(c.simple_reply(), (0, 1));
    assert!(c.read_n(9) == f.bytes[7..16]);
    c.request(0, NBD_CMD_DISC, 2, 0, 0);
    assert!(c.closed_by_server());
    // An unknown name cannot be answered: the server closes.
    let mut c = Raw::handshake(f.addr());
    c.option(NBD_OPT_EXPORT_NAME, b"nope");
    assert!(c.closed_by_server());
}
