//! One connection: reads bytes until a `proto::parse_*` function has a whole
//! message, lets [`crate::proto`] decide, runs commands against the disk and
//! writes the encoded replies. Requests are served one at a time, in order.
//!
//! Time limits: the whole negotiation, TLS handshake included, must end
//! within the handshake timeout (a deadline enforced on every socket read
//! by [`crate::transport`], so a client trickling bytes cannot stretch it);
//! every write must progress within it too. In
//! transmission a connection that sends nothing for the idle timeout is
//! closed. The connection tells its [`Activity`] when it runs a command, so
//! the connection table never evicts it in the middle of one.

use crate::export::{AccessPolicy, ClientView, Export, ExportTable};
use crate::plan::{clamp, status_descriptors, Piece};
use crate::proto::consts::*;
use crate::proto::{self, Command, Parse, ProtoError, Request, TransmissionContext, Verdict};
use crate::server::ServeError;
use crate::slots::Activity;
use crate::tls::TlsConfig;
use crate::transport::Transport;
use lifeboat_vdisk::{Error as DiskError, Extent, ReadDisk};
use std::io::{self, Read};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of the pieces WRITE_ZEROES, CACHE and discarded payloads go in.
const STEP: usize = 1 << 20;

/// The time limits of one connection (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) handshake: Duration,
    pub(crate) idle: Option<Duration>,
}

pub(crate) struct Connection<'t> {
    stream: Option<Transport>,
    peer: String,
    /// The client's address, for the access policy.
    peer_ip: Option<IpAddr>,
    /// Bytes received but not parsed yet.
    inbox: Vec<u8>,
    zeros: Vec<u8>,
    timeouts: Timeouts,
    /// Negotiation is not over (the deadline applies, not the idle timeout).
    negotiating: bool,
    activity: Arc<Activity>,
    tls: Option<&'t TlsConfig>,
}

impl<'t> Connection<'t> {
    pub(crate) fn new(
        stream: TcpStream,
        timeouts: Timeouts,
        activity: Arc<Activity>,
        tls: Option<&'t TlsConfig>,
    ) -> Result<Self, ServeError> {
        let addr = stream.peer_addr().ok();
        let peer = addr.map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
        let setup = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(timeouts.handshake)));
        let conn = Connection {
            stream: Some(Transport::new(stream, Instant::now() + timeouts.handshake)),
            peer,
            peer_ip: addr.map(|a| a.ip()),
            inbox: Vec::new(),
            zeros: Vec::new(),
            timeouts,
            negotiating: true,
            activity,
            tls,
        };
        setup.map_err(|e| conn.io(e))?;
        Ok(conn)
    }

    fn io(&self, source: io::Error) -> ServeError {
        ServeError::Io {
            peer: self.peer.clone(),
            source,
        }
    }

    fn timed_out(&self) -> ServeError {
        let what = match (self.negotiating, self.timeouts.idle) {
            (true, _) | (false, None) => format!(
                "the handshake did not end within {} s",
                self.timeouts.handshake.as_secs()
            ),
            (false, Some(idle)) => format!("being idle for {} s", idle.as_secs()),
        };
        ServeError::TimedOut {
            peer: self.peer.clone(),
            what,
        }
    }

    /// A socket error, or the timeout it stands for.
    fn read_error(&self, e: io::Error) -> ServeError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timed_out(),
            _ => self.io(e),
        }
    }

    fn stream(&mut self) -> Result<&mut Transport, ServeError> {
        match self.stream.as_mut() {
            Some(s) => Ok(s),
            None => Err(ServeError::Io {
                peer: self.peer.clone(),
                source: io::Error::other("the connection is closed"),
            }),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), ServeError> {
        let r = self.stream()?.send(bytes);
        r.map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ServeError::TimedOut {
                peer: self.peer.clone(),
                what: format!(
                    "the client took nothing of its reply for {} s",
                    self.timeouts.handshake.as_secs()
                ),
            },
            _ => self.io(e),
        })
    }

    /// Reads until `parse` has a whole message; `None` when the peer closed
    /// cleanly between messages.
    fn next<T>(
        &mut self,
        during: &'static str,
        parse: fn(&[u8]) -> Result<Parse<T>, ProtoError>,
    ) -> Result<Option<T>, ServeError> {
        let mut scratch = [0u8; 64 << 10];
        loop {
            match parse(&self.inbox) {
                Err(source) => {
                    return Err(ServeError::Protocol {
                        peer: self.peer.clone(),
                        source,
                    })
                }
                Ok(Parse::Done { value, consumed }) => {
                    self.inbox.drain(..consumed.min(self.inbox.len()));
                    return Ok(Some(value));
                }
                Ok(Parse::Incomplete { need }) => {
                    // Parsers bound `need`; read at most what is missing
                    // plus what fits the scratch buffer.
                    let want = need
                        .saturating_sub(self.inbox.len())
                        .clamp(1, scratch.len());
                    let n = match self.stream()?.read(&mut scratch[..want]) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(self.read_error(e)),
                    };
                    if n == 0 {
                        if self.inbox.is_empty() {
                            return Ok(None);
                        }
                        return Err(self.truncated(during));
                    }
                    self.inbox
                        .extend_from_slice(scratch.get(..n).unwrap_or(&[]));
                }
            }
        }
    }

    fn truncated(&self, during: &'static str) -> ServeError {
        ServeError::Truncated {
            peer: self.peer.clone(),
            during,
        }
    }

    /// Fills `buf` from the inbox first, then the socket.
    fn read_payload(&mut self, buf: &mut [u8]) -> Result<(), ServeError> {
        let from_inbox = buf.len().min(self.inbox.len());
        let (head, tail) = buf.split_at_mut(from_inbox);
        head.copy_from_slice(self.inbox.get(..from_inbox).unwrap_or(&[]));
        self.inbox.drain(..from_inbox);
        let r = self.stream()?.read_exact(tail);
        r.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.truncated("a write payload")
            } else {
                self.read_error(e)
            }
        })
    }

    /// Reads and drops `len` payload bytes, in bounded pieces.
    fn discard_payload(&mut self, len: u32) -> Result<(), ServeError> {
        let mut left = len as usize;
        let mut piece = vec![0u8; left.min(64 << 10)];
        while left > 0 {
            let n = left.min(piece.len());
            self.read_payload(piece.get_mut(..n).unwrap_or(&mut []))?;
            left -= n;
        }
        Ok(())
    }

    /// Serves the connection to its end; `policy` decides which exports
    /// this client may use.
    pub(crate) fn run(
        mut self,
        exports: &ExportTable,
        policy: Option<&dyn AccessPolicy>,
    ) -> Result<(), ServeError> {
        let r = self.negotiate_and_serve(exports, policy);
        if let Some(s) = self.stream.as_mut() {
            s.close();
        }
        r
    }

    fn negotiate_and_serve(
        &mut self,
        exports: &ExportTable,
        policy: Option<&dyn AccessPolicy>,
    ) -> Result<(), ServeError> {
        let view = ClientView {
            table: exports,
            policy,
            peer: self.peer_ip,
        };
        let mut out = Vec::new();
        proto::encode_greeting(&mut out);
        self.send(&out)?;
        let Some(flags) = self.next("the client flags", proto::parse_client_flags)? else {
            return Ok(());
        };
        let mut negotiation = match self.tls {
            Some(_) => proto::Negotiation::tls_required(flags.no_zeroes),
            None => proto::Negotiation::new(flags.no_zeroes),
        };
        let (export, context) = loop {
            let Some(opt) = self.next("an option", proto::parse_option)? else {
                return Ok(());
            };
            out.clear();
            let outcome = negotiation.handle(&opt, &view, &mut out);
            if let (Some(name), Some(policy), Some(ip)) =
                (negotiation.take_refused(), policy, self.peer_ip)
            {
                policy.refused(&name, ip);
            }
            // The client may already be gone after NBD_OPT_ABORT.
            let sent = self.send(&out);
            match outcome {
                proto::OptionOutcome::Continue => sent?,
                proto::OptionOutcome::Close => return Ok(()),
                proto::OptionOutcome::StartTls => {
                    sent?;
                    self.start_tls()?;
                }
                proto::OptionOutcome::Transmission { export, context } => {
                    sent?;
                    match exports.get(&export.name) {
                        // Looked up and checked again: the export may have
                        // been removed or replaced during the handshake.
                        Some(e) if view.permits_name(e.name()) => break (e, context),
                        _ => return Ok(()),
                    }
                }
            }
        };
        self.negotiating = false;
        self.activity.serving();
        let idle = self.timeouts.idle;
        let r = self.stream()?.end_deadline(idle);
        r.map_err(|e| self.io(e))?;
        self.transmission(&export, &context)
    }

    /// After NBD_REP_ACK to NBD_OPT_STARTTLS: the TLS handshake, within
    /// the negotiation's deadline.
    fn start_tls(&mut self) -> Result<(), ServeError> {
        let Some(config) = self.tls else {
            return Err(self.io(io::Error::other("STARTTLS without TLS configured")));
        };
        // Bytes the client sent after STARTTLS in clear would otherwise be
        // read as if TLS had protected them.
        if !self.inbox.is_empty() {
            return Err(ServeError::Tls {
                peer: self.peer.clone(),
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the client sent data after NBD_OPT_STARTTLS before the TLS handshake",
                ),
            });
        }
        let plain = self
            .stream
            .take()
            .ok_or_else(|| self.io(io::Error::other("closed")))?;
        match plain.start_tls(config) {
            Ok(tls) => {
                self.stream = Some(tls);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.timed_out())
            }
            Err(source) => Err(ServeError::Tls {
                peer: self.peer.clone(),
                source,
            }),
        }
    }

    fn transmission(
        &mut self,
        export: &Export,
        ctx: &TransmissionContext,
    ) -> Result<(), ServeError> {
        let mut out = Vec::new();
        loop {
            let Some(req) = self.next("a request", proto::parse_request)? else {
                return Ok(());
            };
            self.activity.busy();
            out.clear();
            match proto::classify(&req, ctx) {
                Verdict::Reject { errno } => {
                    self.discard_payload(req.payload_len())?;
                    error_reply(&mut out, &req, ctx, errno, "request refused");
                }
                Verdict::Run(Command::Disconnect) => return Ok(()),
                Verdict::Run(cmd) => self.execute(export, ctx, &req, cmd, &mut out)?,
            }
            // Sending may wait on the client: that is idle time.
            self.activity.idle();
            self.send(&out)?;
        }
    }

    /// Runs `cmd` and appends its whole reply to `out`.
    fn execute(
        &mut self,
        export: &Export,
        ctx: &TransmissionContext,
        req: &Request,
        cmd: Command,
        out: &mut Vec<u8>,
    ) -> Result<(), ServeError> {
        let disk = export.reader().as_ref();
        let cookie = req.cookie;
        // READ and BLOCK_STATUS put their whole reply in `out`; the other
        // commands answer with an empty simple reply on success.
        let (result, replied) = match cmd {
            Command::Read { offset, length, df } => {
                let r = if ctx.structured {
                    structured_read(disk, cookie, offset, length, df, out)
                } else {
                    simple_read(disk, cookie, offset, length, out)
                };
                (r, true)
            }
            Command::BlockStatus {
                offset,
                length,
                req_one,
            } => {
                let r = disk.extents(offset, u64::from(length)).map(|list| {
                    let pieces = clamp(&list, offset, offset + u64::from(length));
                    let descriptors = status_descriptors(&pieces, req_one);
                    proto::encode_block_status(out, cookie, true, BASE_ALLOCATION_ID, &descriptors);
                });
                (r, true)
            }
            Command::Write { length, .. } => {
                let mut payload = vec![0u8; length as usize];
                self.read_payload(&mut payload)?;
                (self.write(export, cmd, &payload), false)
            }
            _ => (self.write(export, cmd, &[]), false),
        };
        match result {
            Ok(()) if !replied => proto::encode_simple_reply(out, cookie, 0),
            Ok(()) => {}
            Err(e) => {
                out.clear();
                error_reply(out, req, ctx, errno_of(&e), &e.to_string());
            }
        }
        Ok(())
    }

    /// WRITE, FLUSH, TRIM, WRITE_ZEROES and CACHE.
    fn write(&mut self, export: &Export, cmd: Command, payload: &[u8]) -> Result<(), DiskError> {
        let writer = export.writer();
        let read_only = || DiskError::ReadOnly {
            what: export.reader().describe(),
        };
        let flush_if = |fua: bool| match (fua, writer) {
            (true, Some(w)) => w.flush(),
            _ => Ok(()),
        };
        match cmd {
            Command::Write { offset, fua, .. } => {
                writer.ok_or_else(read_only)?.write_at(payload, offset)?;
                flush_if(fua)
            }
            Command::Flush => writer.map_or(Ok(()), |w| w.flush()),
            // TRIM is advisory ("the server MAY ignore it"): the data stays,
            // which every client must accept.
            Command::Trim { fua, .. } => {
                writer.ok_or_else(read_only)?;
                flush_if(fua)
            }
            Command::WriteZeroes {
                offset,
                length,
                fua,
            } => {
                let w = writer.ok_or_else(read_only)?;
                let end = offset + u64::from(length);
                // Ranges the disk already reports as zero are left alone.
                let pieces = clamp(&w.extents(offset, u64::from(length))?, offset, end);
                if self.zeros.is_empty() {
                    self.zeros = vec![0u8; STEP];
                }
                for p in pieces.iter().filter(|p| !p.zero) {
                    for_steps(p, |o, n| w.write_at(self.zeros.get(..n).unwrap_or(&[]), o))?;
                }
                flush_if(fua)
            }
            Command::Cache { offset, length } => {
                let disk = export.reader();
                let end = offset + u64::from(length);
                let pieces = clamp(&disk.extents(offset, u64::from(length))?, offset, end);
                let mut scratch = vec![0u8; (length as usize).min(STEP)];
                for p in pieces.iter().filter(|p| !p.zero) {
                    for_steps(p, |o, n| {
                        disk.read_at(scratch.get_mut(..n).unwrap_or(&mut []), o)
                    })?;
                }
                Ok(())
            }
            // READ, BLOCK_STATUS and DISC are handled by the caller.
            Command::Read { .. } | Command::BlockStatus { .. } | Command::Disconnect => Ok(()),
        }
    }
}

/// Calls `f(offset, len)` over `piece` in steps of at most [`STEP`] bytes.
fn for_steps(
    piece: &Piece,
    mut f: impl FnMut(u64, usize) -> Result<(), DiskError>,
) -> Result<(), DiskError> {
    let end = piece.offset + piece.length;
    let mut pos = piece.offset;
    while pos < end {
        let n = (end - pos).min(STEP as u64) as usize;
        f(pos, n)?;
        pos += n as u64;
    }
    Ok(())
}

fn error_reply(out: &mut Vec<u8>, req: &Request, ctx: &TransmissionContext, errno: u32, msg: &str) {
    if req.structured_reply(ctx) {
        proto::encode_error_chunk(out, req.cookie, errno, msg);
    } else {
        proto::encode_simple_reply(out, req.cookie, errno);
    }
}

/// The NBD error for a failed disk operation.
fn errno_of(e: &DiskError) -> u32 {
    match e {
        DiskError::ReadOnly { .. } => NBD_EPERM,
        DiskError::OutOfRange { .. } => NBD_ENOSPC,
        DiskError::Invalid { .. } => NBD_EINVAL,
        _ => NBD_EIO,
    }
}

/// Appends `len` bytes read at `offset` to `out`; on failure `out` is
/// left as it was.
fn append_read(
    disk: &dyn ReadDisk,
    out: &mut Vec<u8>,
    offset: u64,
    len: usize,
) -> Result<(), DiskError> {
    let start = out.len();
    out.resize(start + len, 0);
    let r = disk.read_at(out.get_mut(start..).unwrap_or(&mut []), offset);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn simple_read(
    disk: &dyn ReadDisk,
    cookie: u64,
    offset: u64,
    length: u32,
    out: &mut Vec<u8>,
) -> Result<(), DiskError> {
    out.reserve(SIMPLE_REPLY_LEN + length as usize);
    proto::encode_simple_reply(out, cookie, 0);
    append_read(disk, out, offset, length as usize)
}

/// Holes as OFFSET_HOLE chunks, data as OFFSET_DATA chunks (one chunk for
/// the whole range with `df`), then NONE with DONE. Everything is read
/// before anything is sent, so a failing read yields only an ERROR chunk.
fn structured_read(
    disk: &dyn ReadDisk,
    cookie: u64,
    offset: u64,
    length: u32,
    df: bool,
    out: &mut Vec<u8>,
) -> Result<(), DiskError> {
    let end = offset + u64::from(length);
    let pieces = if df || length == 0 {
        clamp(&[], offset, end)
    } else {
        // A disk that cannot say where its holes are is read whole.
        let list = disk
            .extents(offset, u64::from(length))
            .unwrap_or_else(|_| vec![Extent::data(offset, u64::from(length))]);
        clamp(&list, offset, end)
    };
    out.reserve(length as usize + 64);
    for p in &pieces {
        // Pieces lie inside the request, whose length is a u32.
        let len = u32::try_from(p.length).unwrap_or(u32::MAX);
        if p.zero {
            proto::encode_offset_hole(out, cookie, false, p.offset, len);
        } else {
            proto::encode_offset_data_header(out, cookie, false, p.offset, len);
            append_read(disk, out, p.offset, len as usize)?;
        }
    }
    proto::encode_none_chunk(out, cookie);
    Ok(())
}
