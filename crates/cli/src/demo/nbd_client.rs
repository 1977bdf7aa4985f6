//! A minimal NBD client for the demo's Instant Recovery step: it writes to
//! and reads from a session's disk over a real TCP connection to the
//! in-process service, the way a hypervisor would, without any outside tool.
//!
//! ```text
//! handshake (fixed newstyle, no zeroes):
//!   server: NBDMAGIC u64, IHAVEOPT u64, handshake flags u16
//!   client: flags u32, then IHAVEOPT u64, NBD_OPT_EXPORT_NAME u32, len u32, name
//!   server: export size u64, transmission flags u16 (closes if refused)
//! transmission (simple replies only: structured replies are not asked for):
//!   request: NBD_REQUEST_MAGIC u32, flags u16, type u16, cookie u64,
//!            offset u64, length u32, [payload of a WRITE]
//!   reply:   NBD_SIMPLE_REPLY_MAGIC u32, error u32, cookie u64, [READ data]
//! ```

use anyhow::{bail, Context};
use lifeboat_nbd::proto::consts::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One connection to one export, in transmission phase.
pub struct NbdClient {
    stream: TcpStream,
    export: String,
    size: u64,
    cookie: u64,
}

impl NbdClient {
    /// Connects to `addr` and opens `export` with NBD_OPT_EXPORT_NAME.
    pub fn connect(addr: SocketAddr, export: &str) -> anyhow::Result<NbdClient> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to the NBD server at {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let what = format!("NBD handshake with {addr}");
        let magic = read_u64(&mut stream).context(what.clone())?;
        let opt = read_u64(&mut stream).context(what.clone())?;
        if magic != NBDMAGIC || opt != IHAVEOPT {
            bail!("{what}: not a newstyle NBD server (magic {magic:#x}, {opt:#x})");
        }
        let flags = read_u16(&mut stream).context(what.clone())?;
        if flags & NBD_FLAG_FIXED_NEWSTYLE == 0 || flags & NBD_FLAG_NO_ZEROES == 0 {
            bail!("{what}: server flags {flags:#x} lack FIXED_NEWSTYLE or NO_ZEROES");
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES).to_be_bytes());
        msg.extend_from_slice(&IHAVEOPT.to_be_bytes());
        msg.extend_from_slice(&NBD_OPT_EXPORT_NAME.to_be_bytes());
        let len = u32::try_from(export.len()).context("export name too long")?;
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(export.as_bytes());
        stream.write_all(&msg).context(what.clone())?;
        let size = read_u64(&mut stream)
            .with_context(|| format!("{what}: export {export:?} refused (connection closed)"))?;
        let _transmission_flags = read_u16(&mut stream).context(what)?;
        Ok(NbdClient {
            stream,
            export: export.to_owned(),
            size,
            cookie: 0,
        })
    }

    /// Size of the export, as the server announced it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes `data` at `offset` and waits for the server's answer.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> anyhow::Result<()> {
        self.request(NBD_CMD_WRITE, offset, data.len(), data)?;
        Ok(())
    }

    /// Reads `len` bytes at `offset`.
    pub fn read(&mut self, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
        self.request(NBD_CMD_READ, offset, len, &[])?;
        let mut buf = vec![0u8; len];
        self.stream
            .read_exact(&mut buf)
            .with_context(|| format!("NBD read of {len} bytes at {offset} from {}", self.export))?;
        Ok(buf)
    }

    /// Asks the server to make every write durable.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.request(NBD_CMD_FLUSH, 0, 0, &[])
    }

    /// Ends the session politely (NBD_CMD_DISC has no reply).
    pub fn disconnect(mut self) -> anyhow::Result<()> {
        let header = self.header(NBD_CMD_DISC, 0, 0)?;
        self.stream
            .write_all(&header)
            .with_context(|| format!("disconnecting from {}", self.export))
    }

    fn header(&mut self, cmd: u16, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
        self.cookie += 1;
        let len = u32::try_from(len).context("NBD request longer than 4 GiB")?;
        let mut h = Vec::with_capacity(REQUEST_HEADER_LEN);
        h.extend_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes());
        h.extend_from_slice(&cmd.to_be_bytes());
        h.extend_from_slice(&self.cookie.to_be_bytes());
        h.extend_from_slice(&offset.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        Ok(h)
    }

    /// Sends one request (with `payload` for a WRITE) and checks the
    /// simple reply's magic, cookie and error.
    fn request(&mut self, cmd: u16, offset: u64, len: usize, payload: &[u8]) -> anyhow::Result<()> {
        let what = format!(
            "NBD command {cmd} at {offset} ({len} bytes) on {}",
            self.export
        );
        let mut msg = self.header(cmd, offset, len)?;
        msg.extend_from_slice(payload);
        self.stream.write_all(&msg).context(what.clone())?;
        let magic = read_u32(&mut self.stream).context(what.clone())?;
        let error = read_u32(&mut self.stream).context(what.clone())?;
        let cookie = read_u64(&mut self.stream).context(what.clone())?;
        if magic != NBD_SIMPLE_REPLY_MAGIC || cookie != self.cookie {
            bail!("{what}: unexpected reply (magic {magic:#x}, cookie {cookie})");
        }
        if error != 0 {
            bail!("{what}: the server answered error {error}");
        }
        Ok(())
    }
}

fn read_u16(r: &mut impl Read) -> std::io::Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}
