//! Shared fixtures of the integration tests: exports built from the vdisk
//! test pattern, a server on an ephemeral port, and a tiny raw-TCP NBD
//! client for the bad-input tests (the real client tools run through
//! lifeboat-testsupport).
#![allow(dead_code)]

use lifeboat_nbd::proto::consts::*;
use lifeboat_nbd::{Export, ExportTable, NbdServer, ServerHandle};
use lifeboat_testsupport::write_sparse;
use lifeboat_vdisk::testsuite::pattern_with_holes;
use lifeboat_vdisk::{Error, FileDisk, MemDisk, ReadDisk, Result as DiskResult};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const SIZE: usize = 4 << 20;
pub const BLOCK: usize = 64 << 10;

/// A sparse raw file holding `pattern_with_holes(SIZE, BLOCK)`: the zero
/// blocks (every third) are real holes, so `FileDisk::extents` reports them.
pub fn sparse_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let bytes = pattern_with_holes(SIZE, BLOCK);
    let path = dir.join("disk.raw");
    write_sparse(&path, &bytes, BLOCK);
    (path, bytes)
}

/// A server with: "sparse" (read-only FileDisk over the sparse file),
/// "mem" (read-only MemDisk), "rw" (writable MemDisk, returned), and
/// "broken" (reads fail in its second MiB).
pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub server: ServerHandle,
    /// The server's exports (tests may add more).
    pub table: Arc<ExportTable>,
    pub bytes: Vec<u8>,
    pub rw: Arc<MemDisk>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with(|s| s)
    }

    /// The same exports on a server `setup` configured (TLS, limits,
    /// policy), on 127.0.0.1.
    pub fn with(setup: impl FnOnce(NbdServer) -> NbdServer) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = sparse_file(dir.path());
        let table = Arc::new(ExportTable::new());
        table.insert(
            Export::read_only("sparse", Arc::new(FileDisk::open(&path).unwrap()))
                .with_description("sparse test pattern"),
        );
        table.insert(Export::read_only(
            "mem",
            Arc::new(MemDisk::new("mem", bytes.clone())),
        ));
        let rw = Arc::new(MemDisk::new("rw", bytes.clone()));
        table.insert(Export::writable("rw", rw.clone()));
        table.insert(Export::read_only(
            "broken",
            Arc::new(Broken(MemDisk::new("broken", bytes.clone()))),
        ));
        let server = setup(NbdServer::new(table.clone()))
            .spawn("127.0.0.1:0")
            .unwrap();
        Fixture {
            _dir: dir,
            server,
            table,
            bytes,
            rw,
        }
    }

    pub fn url(&self, export: &str) -> String {
        format!("nbd://{}/{export}", self.server.local_addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// A disk whose reads touching its second MiB fail like a corrupt chunk.
pub struct Broken(pub MemDisk);

pub const BROKEN_START: u64 = 1 << 20;
pub const BROKEN_END: u64 = 2 << 20;

impl ReadDisk for Broken {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> DiskResult<()> {
        let end = offset + buf.len() as u64;
        if offset < BROKEN_END && end > BROKEN_START {
            return Err(Error::corrupt(self.describe(), "chunk digest mismatch"));
        }
        self.0.read_at(buf, offset)
    }
    fn describe(&self) -> String {
        "broken test disk".into()
    }
}

/// A raw NBD client that speaks just enough to send bad input.
pub struct Raw {
    pub s: TcpStream,
}

pub struct Chunk {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub payload: Vec<u8>,
}

impl Raw {
    /// Connects and reads the greeting (flags not sent yet).
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = Raw { s };
        let g = r.read_n(18);
        assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
        r
    }

    /// Connects and sends the client flags (fixed newstyle, no zeroes).
    pub fn handshake(addr: SocketAddr) -> Raw {
        let mut r = Raw::connect(addr);
        r.send(&3u32.to_be_bytes());
        r
    }

    /// Connects and enters transmission on `export`.
    pub fn open(addr: SocketAddr, export: &str, structured: bool) -> Raw {
        let mut r = Raw::handshake(addr);
        if structured {
            r.option(NBD_OPT_STRUCTURED_REPLY, &[]);
            assert_eq!(r.option_reply().1, NBD_REP_ACK);
        }
        let mut d = (export.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(export.as_bytes());
        d.extend_from_slice(&0u16.to_be_bytes());
        r.option(NBD_OPT_GO, &d);
        loop {
            let (_, ty, _) = r.option_reply();
            if ty == NBD_REP_ACK {
                return r;
            }
            assert_eq!(ty, NBD_REP_INFO, "GO {export} failed");
        }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).unwrap();
        b
    }

    /// True when the server closed the connection (EOF or reset).
    pub fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }

    pub fn option(&mut self, option: u32, data: &[u8]) {
        let mut b = b"IHAVEOPT".to_vec();
        b.extend_from_slice(&option.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.send(&b);
    }

    /// (option, reply type, data).
    pub fn option_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let h = self.read_n(20);
        assert_eq!(h[..8], REPLY_MAGIC.to_be_bytes());
        let opt = u32::from_be_bytes(h[8..12].try_into().unwrap());
        let ty = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        (opt, ty, self.read_n(len))
    }

    pub fn request(&mut self, flags: u16, kind: u16, cookie: u64, offset: u64, len: u32) {
        let mut b = NBD_REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        self.send(&b);
    }

    /// A simple reply: (error, cookie).
    pub fn simple_reply(&mut self) -> (u32, u64) {
        let h = self.read_n(16);
        assert_eq!(
            h[..4],
            NBD_SIMPLE_REPLY_MAGIC.to_be_bytes(),
            "not a simple reply"
        );
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u64::from_be_bytes(h[8..16].try_into().unwrap()),
        )
    }

    pub fn chunk(&mut self) -> Chunk {
        let h = self.read_n(20);
        assert_eq!(
            h[..4],
            NBD_STRUCTURED_REPLY_MAGIC.to_be_bytes(),
            "not a chunk"
        );
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        Chunk {
            flags: u16::from_be_bytes([h[4], h[5]]),
            kind: u16::from_be_bytes([h[6], h[7]]),
            cookie: u64::from_be_bytes(h[8..16].try_into().unwrap()),
            payload: self.read_n(len),
        }
    }

    /// Reads a structured READ reply into bytes, or its error number.
    pub fn structured_read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, u32> {
        let mut out = vec![0xEEu8; len];
        loop {
            let c = self.chunk();
            let at = |p: &[u8]| u64::from_be_bytes(p[..8].try_into().unwrap()) - offset;
            match c.kind {
                NBD_REPLY_TYPE_OFFSET_DATA => {
                    let o = at(&c.payload) as usize;
                    out[o..o + c.payload.len() - 8].copy_from_slice(&c.payload[8..]);
                }
                NBD_REPLY_TYPE_OFFSET_HOLE => {
                    let o = at(&c.payload) as usize;
                    let n = u32::from_be_bytes(c.payload[8..12].try_into().unwrap()) as usize;
                    out[o..o + n].fill(0);
                }
                NBD_REPLY_TYPE_ERROR => {
                    assert_ne!(c.flags & NBD_REPLY_FLAG_DONE, 0, "error chunk without DONE");
                    return Err(u32::from_be_bytes(c.payload[..4].try_into().unwrap()));
                }
                NBD_REPLY_TYPE_NONE => {}
                other => panic!("unexpected chunk type {other}"),
            }
            if c.flags & NBD_REPLY_FLAG_DONE != 0 {
                return Ok(out);
            }
        }
    }
}

/// Waits up to 15 s for `cond` (a server thread records what it saw after
/// the client has already seen the result); fails naming `what`.
pub fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
