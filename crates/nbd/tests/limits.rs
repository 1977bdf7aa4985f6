//! Hostile peers against the socket layer: a peer the policy does not
//! admit is closed before a byte is sent; idle connections beyond the
//! connection limit do not lock a real client (qemu-img) out and the number
//! of connection threads stays at the limit; when every connection is busy
//! a newcomer is refused with a log line; the handshake deadline and the
//! idle timeout close stalled connections.
//!
//! The tests count this process's `nbd-conn` threads, so they run one at a
//! time.

mod common;

use common::*;
use lifeboat_nbd::proto::consts::*;
use lifeboat_nbd::{AccessPolicy, Export, LogHook, ServerLimits};
use lifeboat_testsupport::{output, serial, tool};
use lifeboat_vdisk::{MemDisk, ReadDisk, Result as DiskResult};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connection threads of the servers in this process.
fn conn_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "nbd-conn")
        .count()
}

/// A log hook and the lines it got.
fn log() -> (LogHook, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let hook: LogHook = Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_owned()));
    (hook, lines)
}

fn logged(lines: &Mutex<Vec<String>>, part: &str) -> bool {
    lines.lock().unwrap().iter().any(|l| l.contains(part))
}

/// `qemu-img convert` of `export` succeeds and copies the pattern.
fn qemu_img_copies(f: &Fixture, export: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.raw");
    let r = output(
        tool("qemu-img", "qemu-utils")
            .args(["convert", "-f", "raw", "-O", "raw"])
            .arg(f.url(export))
            .arg(&out),
    );
    assert!(
        r.status.success(),
        "qemu-img was locked out: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == f.bytes, "copy differs");
}

/// Admits only 10.0.0.0/8 (so not the tests' 127.0.0.1).
struct TenNet;

impl AccessPolicy for TenNet {
    fn admits(&self, peer: IpAddr) -> bool {
        matches!(peer, IpAddr::V4(v) if v.octets()[0] == 10)
    }
    fn permits(&self, _export: &str, _peer: IpAddr) -> bool {
        true
    }
}

#[test]
fn a_peer_outside_the_allow_list_is_closed_before_any_handshake_byte() {
    let _one = serial();
    wait_for("earlier connections to end", || conn_threads() == 0);
    let (hook, lines) = log();
    let f = Fixture::with(|s| s.with_policy(Arc::new(TenNet)).with_log(hook));
    for _ in 0..3 {
        let mut s = TcpStream::connect(f.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("a refused peer got {n} bytes: {:?}", &buf[..n]),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        }
    }
    let r = output(tool("nbdinfo", "libnbd-bin").arg(f.url("mem")));
    assert!(!r.status.success(), "nbdinfo got through");
    wait_for("the refusals", || f.server.stats().refused() >= 4);
    assert!(
        logged(&lines, "refused connection from 127.0.0.1"),
        "{:?}",
        lines.lock().unwrap()
    );
    assert_eq!(conn_threads(), 0, "a refused peer got a thread");
}

#[test]
fn idle_connections_beyond_the_limit_cannot_lock_out_a_real_client() {
    let _one = serial();
    wait_for("earlier connections to end", || conn_threads() == 0);
    let (hook, lines) = log();
    let limits = ServerLimits {
        max_connections: 4,
        ..ServerLimits::default()
    };
    let f = Fixture::with(|s| s.with_limits(limits).with_log(hook));
    // Forty idle peers: half stop after the greeting, half sit in
    // transmission.
    let mut idle = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 {
            Raw::connect(f.addr()).s
        } else {
            Raw::open(f.addr(), "mem", false).s
        };
        idle.push(s);
        assert!(
            f.server.stats().active() <= 4,
            "{} active",
            f.server.stats().active()
        );
        // An evicted thread may still be on its way out of the kernel.
        wait_for("at most 4 connection threads", || conn_threads() <= 4);
    }
    qemu_img_copies(&f, "sparse");
    qemu_img_copies(&f, "mem");
    wait_for("at most 4 connection threads", || conn_threads() <= 4);
    assert!(
        f.server.stats().evicted() >= 36,
        "{}",
        f.server.stats().evicted()
    );
    assert!(
        logged(
            &lines,
            "connection limit reached (4 connections): closed the longest-idle"
        ),
        "{:?}",
        lines.lock().unwrap()
    );
    assert_eq!(f.server.stats().turned_away(), 0);
    drop(idle);
}

/// A disk whose reads take a while: connections reading it are busy.
struct Slow(MemDisk);

impl ReadDisk for Slow {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> DiskResult<()> {
        std::thread::sleep(Duration::from_millis(1500));
        self.0.read_at(buf, offset)
    }
    fn describe(&self) -> String {
        "slow test disk".into()
    }
}

#[test]
fn at_the_limit_with_every_connection_busy_a_newcomer_is_refused_with_a_log_line() {
    let _one = serial();
    wait_for("earlier connections to end", || conn_threads() == 0);
    let (hook, lines) = log();
    let limits = ServerLimits {
        max_connections: 2,
        ..ServerLimits::default()
    };
    let f = Fixture::with(|s| s.with_limits(limits).with_log(hook));
    f.table.insert(Export::read_only(
        "slow",
        Arc::new(Slow(MemDisk::new("slow", vec![9; 1 << 20]))),
    ));
    let mut busy: Vec<Raw> = (0..2).map(|_| Raw::open(f.addr(), "slow", false)).collect();
    for (i, c) in busy.iter_mut().enumerate() {
        c.request(0, NBD_CMD_READ, i as u64, 0, 4096);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut s = TcpStream::connect(f.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 18];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "a connection beyond the limit was served"
    );
    assert_eq!(f.server.stats().turned_away(), 1);
    assert!(
        logged(
            &lines,
            "connection limit reached (2 connections, all running commands)"
        ),
        "{:?}",
        lines.lock().unwrap()
    );
    // The busy ones finish their reads.
    for (i, c) in busy.iter_mut().enumerate() {
        assert_eq!(c.simple_reply(), (0, i as u64));
        assert!(c.read_n(4096).iter().all(|&b| b == 9));
    }
}

#[test]
fn stalled_handshakes_and_idle_connections_are_closed() {
    let _one = serial();
    wait_for("earlier connections to end", || conn_threads() == 0);
    let limits = ServerLimits {
        handshake_timeout: Duration::from_secs(1),
        idle_timeout: Some(Duration::from_secs(1)),
        ..ServerLimits::default()
    };
    let f = Fixture::with(|s| s.with_limits(limits));

    // A client trickling an option a byte at a time cannot stretch the
    // handshake past its deadline.
    let start = Instant::now();
    let mut c = Raw::handshake(f.addr());
    for b in b"IHAVEOPT\0\0\0\x07\0\0\0\x09" {
        std::thread::sleep(Duration::from_millis(250));
        // Fails once the server has closed.
        let _ = c.s.write_all(&[*b]);
    }
    assert!(c.closed_by_server(), "trickled handshake still open");
    assert!(start.elapsed() < Duration::from_secs(8));
    wait_for("the handshake timeout", || {
        f.server
            .stats()
            .last_error()
            .is_some_and(|e| e.contains("the handshake did not end within 1 s"))
    });

    // In transmission: served while active, closed once idle.
    let mut c = Raw::open(f.addr(), "mem", false);
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        c.request(0, NBD_CMD_READ, i, 0, 512);
        assert_eq!(c.simple_reply(), (0, i));
        assert!(c.read_n(512) == f.bytes[..512]);
    }
    let idle_since = Instant::now();
    assert!(c.closed_by_server(), "an idle connection stayed open");
    assert!(idle_since.elapsed() < Duration::from_secs(5));
    wait_for("the idle timeout", || {
        f.server
            .stats()
            .last_error()
            .is_some_and(|e| e.contains("idle for 1 s"))
    });
    wait_for("the threads to end", || conn_threads() == 0);
}
