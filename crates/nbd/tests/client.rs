//! The NBD client against a real server, qemu-nbd, exporting a qcow2 image
//! with a persistent dirty bitmap (what QEMU's own export of a running VM
//! gives a live backup): the bitmap's dirty extents, base:allocation holes,
//! data reads, and the errors of a refused export and a dead server; and
//! `NbdExportDisk` through a relay that breaks connections: a connection
//! dropped mid-read is opened again and the read retried, a server that
//! stays away fails the read.

use lifeboat_nbd::proto::consts::{NBD_STATE_HOLE, NBD_STATE_ZERO};
use lifeboat_nbd::{ClientError, Extent, NbdClient, NbdExportDisk};
use lifeboat_testsupport::process::{qemu_img, qemu_io, run};
use lifeboat_testsupport::tools::tool;
use lifeboat_vdisk::ReadDisk;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// qemu-nbd serving an image on a unix socket; killed on drop.
struct QemuNbd {
    child: Child,
    socket: PathBuf,
}

impl QemuNbd {
    fn start(image: &Path, socket: &Path, extra: &[&str]) -> QemuNbd {
        let mut cmd = tool("qemu-nbd", "qemu-utils");
        cmd.args([
            "--read-only",
            "--persistent",
            "--format",
            "qcow2",
            "--export-name",
            "disk",
        ])
        .arg("--socket")
        .arg(socket)
        .args(extra)
        .arg(image);
        let child = cmd
            .spawn()
            .expect("qemu-nbd starts (apt-get install qemu-utils)");
        let start = Instant::now();
        while !socket.exists() {
            assert!(start.elapsed() < TIMEOUT, "qemu-nbd made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        QemuNbd {
            child,
            socket: socket.to_path_buf(),
        }
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An 8 MiB qcow2: 1 MiB of 0x11 written before bitmap `b0` was added,
/// then 64 KiB of 0x22 at 2 MiB and 4 KiB of 0x33 at 5 MiB after it.
fn image(dir: &Path) -> PathBuf {
    let img = dir.join("d.qcow2");
    let p = img.to_str().unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", p, "8M"]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x11 0 1M", p]);
    run(tool("qemu-img", "qemu-utils").args(["bitmap", "--add", p, "b0"]));
    qemu_io(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0x22 2M 64k",
        "-c",
        "write -P 0x33 5M 4k",
        p,
    ]);
    img
}

fn connect(server: &QemuNbd, contexts: &[&str]) -> NbdClient<std::os::unix::net::UnixStream> {
    NbdClient::connect_unix(&server.socket, "disk", contexts, TIMEOUT).unwrap()
}

/// Every extent of `context` over the whole export, merged where equal.
fn map(c: &mut NbdClient<std::os::unix::net::UnixStream>, context: &str) -> Vec<Extent> {
    let id = c
        .context_id(context)
        .unwrap_or_else(|| panic!("{context} negotiated"));
    let mut out: Vec<Extent> = Vec::new();
    let mut at = 0;
    while at < c.size() {
        let len = (c.size() - at).min(4 * MIB) as u32;
        for e in c.block_status(id, at, len).unwrap() {
            let e = Extent {
                length: e.length.min(c.size() - e.offset),
                ..e
            };
            match out.last_mut() {
                Some(last) if last.flags == e.flags && last.offset + last.length == e.offset => {
                    last.length += e.length
                }
                _ => out.push(e),
            }
            at = e.offset + e.length;
        }
    }
    out
}

#[test]
fn dirty_bitmap_and_allocation_extents_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let server = QemuNbd::start(&img, &dir.path().join("nbd.sock"), &["--bitmap", "b0"]);
    let bitmap = "qemu:dirty-bitmap:b0";
    let mut c = connect(&server, &["base:allocation", bitmap]);
    assert_eq!(c.size(), 8 * MIB);

    // The bitmap marks exactly the writes made after it was added, in its
    // 64 KiB granules: [2M, 2M+64k) and [5M, 5M+64k).
    let dirty: Vec<(u64, u64)> = map(&mut c, bitmap)
        .into_iter()
        .filter(|e| e.flags & 1 != 0)
        .map(|e| (e.offset, e.length))
        .collect();
    assert_eq!(dirty, vec![(2 * MIB, 64 << 10), (5 * MIB, 64 << 10)]);

    // base:allocation: data where something was written, holes elsewhere.
    let alloc = map(&mut c, "base:allocation");
    let data: u64 = alloc
        .iter()
        .filter(|e| e.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO) == 0)
        .map(|e| e.length)
        .sum();
    assert!(
        (MIB + (64 << 10) + 4096..=2 * MIB).contains(&data),
        "{alloc:?}"
    );
    let at_7m = alloc
        .iter()
        .find(|e| e.offset <= 7 * MIB && 7 * MIB < e.offset + e.length)
        .unwrap();
    assert!(at_7m.flags & NBD_STATE_HOLE != 0, "{alloc:?}");

    // Reads: the data, and zeros across a hole.
    assert!(c
        .read(2 * MIB, 64 << 10)
        .unwrap()
        .iter()
        .all(|&b| b == 0x22));
    let around = c.read(5 * MIB - 4096, 3 * 4096).unwrap();
    assert!(around[..4096].iter().all(|&b| b == 0));
    assert!(around[4096..8192].iter().all(|&b| b == 0x33));
    assert!(around[8192..].iter().all(|&b| b == 0));
    assert!(c.read(7 * MIB, 1 << 20).unwrap().iter().all(|&b| b == 0));
    // read_into a buffer holding other bytes: every byte is the export's,
    // the hole's zeros included (a reused chunk buffer keeps nothing).
    let mut reused = vec![0xAAu8; 3 * 4096];
    c.read_into(5 * MIB - 4096, &mut reused).unwrap();
    assert_eq!(reused, around);
    c.disconnect().unwrap();
}

#[test]
fn a_context_the_server_lacks_is_not_negotiated_and_bad_requests_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let server = QemuNbd::start(&img, &dir.path().join("nbd.sock"), &[]);
    let mut c = connect(&server, &["base:allocation", "qemu:dirty-bitmap:b0"]);
    assert!(
        c.context_id("qemu:dirty-bitmap:b0").is_none(),
        "not exported with --bitmap"
    );
    let id = c.context_id("base:allocation").unwrap();
    // A read past the end: the server's error, typed, naming the request.
    match c.read(8 * MIB - 512, 4096) {
        Err(ClientError::Command { what, errno, .. }) => {
            assert!(what.contains("READ") && errno != 0, "{what}")
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    // The connection is still usable after an error.
    assert!(!c.block_status(id, 0, 4096).unwrap().is_empty());
}

#[test]
fn a_refused_export_and_a_dead_server_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let sock = dir.path().join("nbd.sock");
    let server = QemuNbd::start(&img, &sock, &[]);
    match NbdClient::connect_unix(&sock, "nope", &[], TIMEOUT) {
        Err(ClientError::Refused { what, code, .. }) => {
            assert!(what.contains("nope") && code & (1 << 31) != 0, "{what}")
        }
        Err(e) => panic!("expected Refused, got {e}"),
        Ok(_) => panic!("expected Refused, got a connection"),
    }
    drop(server);
    let _ = std::fs::remove_file(&sock);
    match NbdClient::connect_unix(&sock, "disk", &[], TIMEOUT) {
        Err(e @ ClientError::Io { .. }) => assert!(e.to_string().contains("nbd.sock"), "{e}"),
        Err(e) => panic!("expected Io, got {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

/// A unix-socket relay in front of a server that can break connections:
/// `cut` (one shot) closes the connection that next forwards a reply byte
/// past the first MiB of its data; `dead` closes every connection at its
/// next byte and every new one at once, as a server that went away.
struct Relay {
    socket: PathBuf,
    cut: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl Relay {
    fn start(upstream: &Path, socket: &Path) -> Relay {
        let listener = UnixListener::bind(socket).unwrap();
        let relay = Relay {
            socket: socket.to_path_buf(),
            cut: Arc::new(AtomicBool::new(false)),
            dead: Arc::new(AtomicBool::new(false)),
            cuts: Arc::new(AtomicUsize::new(0)),
        };
        let (cut, dead, cuts) = (relay.cut.clone(), relay.dead.clone(), relay.cuts.clone());
        let upstream = upstream.to_path_buf();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if dead.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let server = UnixStream::connect(&upstream).unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Requests: client to server, as they come.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (c2, s2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Both);
                });
                // Replies: server to client, watched.
                let (cut, dead, cuts) = (cut.clone(), dead.clone(), cuts.clone());
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    let mut buf = vec![0u8; 64 << 10];
                    let mut sent = 0u64;
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let past = sent > MIB
                            && cut
                                .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok();
                        if past || dead.load(Ordering::SeqCst) {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                    }
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                });
            }
        });
        relay
    }
}

/// The bytes of [`image`].
fn image_bytes() -> Vec<u8> {
    let mut want = vec![0u8; (8 * MIB) as usize];
    want[..MIB as usize].fill(0x11);
    want[(2 * MIB) as usize..(2 * MIB) as usize + (64 << 10)].fill(0x22);
    want[(5 * MIB) as usize..(5 * MIB) as usize + 4096].fill(0x33);
    want
}

#[test]
fn a_connection_dropped_mid_read_is_opened_again_and_the_read_retried() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let server = QemuNbd::start(&img, &dir.path().join("nbd.sock"), &["--shared", "8"]);
    let relay = Relay::start(&server.socket, &dir.path().join("relay.sock"));
    let disk = NbdExportDisk::open(&relay.socket, "disk", 2, TIMEOUT).unwrap();
    relay.cut.store(true, Ordering::SeqCst);
    let mut got = vec![0u8; disk.size() as usize];
    disk.read_at(&mut got, 0).unwrap();
    assert_eq!(
        relay.cuts.load(Ordering::SeqCst),
        1,
        "one connection was cut"
    );
    assert!(got == image_bytes(), "the retried read is whole");
}

#[test]
fn a_server_that_stays_away_fails_the_read_naming_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let server = QemuNbd::start(&img, &dir.path().join("nbd.sock"), &["--shared", "8"]);
    let relay = Relay::start(&server.socket, &dir.path().join("relay.sock"));
    let disk = NbdExportDisk::open(&relay.socket, "disk", 1, TIMEOUT).unwrap();
    relay.dead.store(true, Ordering::SeqCst);
    let mut got = vec![0u8; disk.size() as usize];
    let err = disk
        .read_at(&mut got, 0)
        .expect_err("no server: the read fails");
    let text = err.to_string();
    assert!(
        text.contains("NBD export \"disk\"") && text.contains("relay.sock"),
        "{text}"
    );
}

#[test]
fn the_export_read_as_a_disk_gives_its_bytes_and_holes_across_status_windows() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.qcow2");
    let p = img.to_str().unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", p, "160M"]);
    // Data on both sides of the 64 MiB and 128 MiB window edges.
    qemu_io(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0x44 0 1M",
        "-c",
        "write -P 0x55 63M 2M",
        "-c",
        "write -P 0x66 127M 64k",
        "-c",
        "write -P 0x77 128M 4k",
        p,
    ]);
    let mut want = vec![0u8; (160 * MIB) as usize];
    for (at, len, byte) in [
        (0, MIB, 0x44),
        (63 * MIB, 2 * MIB, 0x55),
        (127 * MIB, 64 << 10, 0x66),
        (128 * MIB, 4096, 0x77),
    ] {
        want[at as usize..(at + len) as usize].fill(byte);
    }
    let server = QemuNbd::start(&img, &dir.path().join("nbd.sock"), &["--shared", "4"]);
    let disk = NbdExportDisk::open(&server.socket, "disk", 2, TIMEOUT).unwrap();
    lifeboat_vdisk::testsuite::check_read_disk(&disk, &want);
    // Asked chunk by chunk (as a backup asks), the map is the whole map.
    let whole = disk.extents(0, disk.size()).unwrap();
    let mut pieces: Vec<lifeboat_vdisk::Extent> = Vec::new();
    for chunk in 0..40 {
        for e in disk.extents(chunk * 4 * MIB, 4 * MIB).unwrap() {
            match pieces.last_mut() {
                Some(l) if l.kind == e.kind && l.end() == e.offset => l.length += e.length,
                _ => pieces.push(e),
            }
        }
    }
    assert_eq!(pieces, whole);
    let data: Vec<(u64, u64)> = whole
        .iter()
        .filter(|e| e.kind == lifeboat_vdisk::ExtentKind::Data)
        .map(|e| (e.offset, e.length))
        .collect();
    assert!(
        data.iter()
            .any(|&(o, l)| o <= 63 * MIB && 65 * MIB <= o + l),
        "the write across the 64 MiB edge is one data extent: {data:?}"
    );
    assert!(
        data.iter().all(|&(o, l)| o + l <= 129 * MIB),
        "nothing after 129 MiB is data: {data:?}"
    );
}
