//! An NBD client: connects to one export (fixed newstyle, NBD_OPT_GO),
//! asks for structured replies and the metadata contexts it is given
//! (`base:allocation`, `qemu:dirty-bitmap:NAME`), and then reads data and
//! block status. It is how Lifeboat reads a running VM's disk from QEMU's
//! own NBD export (live backup: only the extents a dirty bitmap marks,
//! skipping holes) and how the demo talks to Lifeboat's server.
//!
//! ```text
//! server: NBDMAGIC u64, IHAVEOPT u64, flags u16 (FIXED_NEWSTYLE | NO_ZEROES)
//! client: flags u32
//! client: IHAVEOPT, STRUCTURED_REPLY            server: ACK
//! client: IHAVEOPT, SET_META_CONTEXT(export, q*) server: META_CONTEXT(id, name)* ACK
//! client: IHAVEOPT, GO(export, [])              server: INFO(EXPORT: size, flags)* ACK
//! request:  NBD_REQUEST_MAGIC u32, flags u16, type u16, cookie u64, offset u64, length u32
//! replies:  simple (magic, error, cookie [, data]) or structured chunks
//!           (magic, flags, type, cookie, length, payload) until one has DONE
//! ```
//!
//! Writes and flushes are there for a writable export (the demo writes to
//! an instant recovery session through Lifeboat's own server). Requests are
//! sent one at a time per connection; a caller that wants
//! several in flight opens several connections (QEMU's exports allow it).
//! Every read and write on the socket has a timeout (set by the caller on
//! the stream); every length the server sends is bounded before anything is
//! allocated, so a hostile or broken server gets an error, never a panic or
//! a huge allocation.

use crate::proto::consts::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// What went wrong talking to an NBD server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed or broke.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The server said something the protocol does not allow.
    #[error("{what}: protocol error: {detail}")]
    Protocol { what: String, detail: String },
    /// The server refused an option (NBD_REP_ERR_*).
    #[error("{what}: the server refused option {option} with error {code:#x}{}", if message.is_empty() { String::new() } else { format!(" ({message})") })]
    Refused {
        what: String,
        option: u32,
        code: u32,
        message: String,
    },
    /// A command failed on the server (an errno of the protocol).
    #[error("{what}: the server answered error {errno}{}", if message.is_empty() { String::new() } else { format!(" ({message})") })]
    Command {
        what: String,
        errno: u32,
        message: String,
    },
}

/// One extent of a block status reply: its length and the context's flags
/// (`base:allocation`: NBD_STATE_HOLE / NBD_STATE_ZERO; a dirty bitmap:
/// 1 = dirty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
    pub flags: u32,
}

/// A connection in transmission phase.
pub struct NbdClient<S: Read + Write> {
    stream: S,
    peer: String,
    export: String,
    size: u64,
    transmission_flags: u16,
    contexts: Vec<(u32, String)>,
    cookie: u64,
}

/// Largest option reply payload accepted.
const MAX_OPTION_REPLY: u32 = 64 << 10;

impl NbdClient<TcpStream> {
    /// Connects to `addr` over TCP and opens `export` (see
    /// [`NbdClient::connect_unix`]).
    pub fn connect_tcp(
        addr: SocketAddr,
        export: &str,
        contexts: &[&str],
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let peer = format!("NBD server {addr}");
        let io = |source| ClientError::Io {
            what: format!("connecting to {peer}"),
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        Self::handshake(stream, peer, export, contexts)
    }
}

impl NbdClient<UnixStream> {
    /// Connects to the unix socket at `path` and opens `export`, with the
    /// metadata `contexts` (may be empty); `timeout` bounds every read and
    /// write on the socket.
    pub fn connect_unix(
        path: &Path,
        export: &str,
        contexts: &[&str],
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let peer = format!("NBD server {}", path.display());
        let io = |source| ClientError::Io {
            what: format!("connecting to {peer}"),
            source,
        };
        let stream = UnixStream::connect(path).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        Self::handshake(stream, peer, export, contexts)
    }
}

impl<S: Read + Write> NbdClient<S> {
    /// Negotiates `export` with structured replies and `contexts` over an
    /// already connected `stream`; `peer` names the server in errors.
    pub fn handshake(
        stream: S,
        peer: String,
        export: &str,
        contexts: &[&str],
    ) -> Result<Self, ClientError> {
        let mut c = NbdClient {
            stream,
            peer,
            export: export.to_string(),
            size: 0,
            transmission_flags: 0,
            contexts: Vec::new(),
            cookie: 0,
        };
        let magic = c.read_u64("greeting")?;
        let opt = c.read_u64("greeting")?;
        if magic != NBDMAGIC || opt != IHAVEOPT {
            return Err(c.protocol(
                "greeting",
                format!("not a newstyle NBD server (magic {magic:#x}, {opt:#x})"),
            ));
        }
        let flags = c.read_u16("greeting")?;
        if flags & NBD_FLAG_FIXED_NEWSTYLE == 0 {
            return Err(c.protocol("greeting", format!("flags {flags:#x} lack FIXED_NEWSTYLE")));
        }
        let mut client_flags = NBD_FLAG_C_FIXED_NEWSTYLE;
        if flags & NBD_FLAG_NO_ZEROES != 0 {
            client_flags |= NBD_FLAG_C_NO_ZEROES;
        }
        c.send("client flags", &client_flags.to_be_bytes())?;

        c.send_option(NBD_OPT_STRUCTURED_REPLY, &[])?;
        let (kind, _) = c.option_reply(NBD_OPT_STRUCTURED_REPLY)?;
        if kind != NBD_REP_ACK {
            return Err(c.protocol("STRUCTURED_REPLY", format!("reply type {kind:#x}")));
        }
        if !contexts.is_empty() {
            c.set_meta_contexts(contexts)?;
        }
        c.go()?;
        Ok(c)
    }

    /// Size of the export in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Transmission flags the server announced (NBD_FLAG_*).
    pub fn transmission_flags(&self) -> u16 {
        self.transmission_flags
    }

    /// The id the server gave metadata context `name`, if it accepted it.
    pub fn context_id(&self, name: &str) -> Option<u32> {
        self.contexts
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| *id)
    }

    /// Reads `len` bytes at `offset` (holes the server reports read as zeros).
    pub fn read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, ClientError> {
        let mut out = vec![0u8; len as usize];
        self.read_into(offset, &mut out)?;
        Ok(out)
    }

    /// Reads `buf.len()` bytes at `offset` straight into `buf`: each data
    /// chunk of the reply is received into its place (no copy, no zeroing
    /// first) and each hole chunk zeroes its range. The chunks must cover
    /// the request exactly, as the protocol requires: a gap or an overlap is
    /// a protocol error, so no byte of `buf` is left as it was.
    pub fn read_into(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        let len = u32::try_from(buf.len())
            .ok()
            .filter(|&n| n <= MAX_PAYLOAD)
            .ok_or_else(|| {
                self.protocol("READ", format!("{} bytes is over {MAX_PAYLOAD}", buf.len()))
            })?;
        let what = format!("READ {len} bytes at {offset}");
        let cookie = self.request(NBD_CMD_READ, 0, offset, len, &[])?;
        let mut covered: Vec<(usize, usize)> = Vec::new();
        self.replies_streamed(&what, cookie, false, |c, kind, size| match kind {
            NBD_REPLY_TYPE_OFFSET_DATA if size >= 8 => {
                let at = c.read_u64(&what)?;
                let n = (size - 8) as usize;
                let start = range_start(at, offset, len, n)
                    .ok_or_else(|| c.protocol(&what, "data chunk outside the request"))?;
                c.read_exact_into(&what, &mut buf[start..start + n])?;
                covered.push((start, start + n));
                Ok(())
            }
            NBD_REPLY_TYPE_OFFSET_HOLE if size == 12 => {
                let at = c.read_u64(&what)?;
                let n = c.read_u32(&what)? as usize;
                let start = range_start(at, offset, len, n)
                    .ok_or_else(|| c.protocol(&what, "hole chunk outside the request"))?;
                buf[start..start + n].fill(0);
                covered.push((start, start + n));
                Ok(())
            }
            _ => {
                c.read_exact(&what, size as usize)?;
                Err(c.protocol(&what, format!("unexpected reply chunk type {kind}")))
            }
        })?;
        if !covers_exactly(covered, buf.len()) {
            return Err(self.protocol(
                &what,
                "the reply's chunks leave a gap in the request or overlap",
            ));
        }
        Ok(())
    }

    /// Block status of `len` bytes at `offset` in context `context` (its
    /// id from [`NbdClient::context_id`]): extents that cover the range from
    /// `offset` on (the server may answer for less than asked).
    pub fn block_status(
        &mut self,
        context: u32,
        offset: u64,
        len: u32,
    ) -> Result<Vec<Extent>, ClientError> {
        let what = format!("BLOCK_STATUS of {len} bytes at {offset}");
        let cookie = self.request(NBD_CMD_BLOCK_STATUS, 0, offset, len, &[])?;
        let mut out = Vec::new();
        self.replies(&what, cookie, false, |c, kind, payload| {
            if kind != NBD_REPLY_TYPE_BLOCK_STATUS
                || payload.len() < 4
                || (payload.len() - 4) % 8 != 0
            {
                return Err(c.protocol(&what, format!("unexpected reply chunk type {kind}")));
            }
            let id = u32::from_be_bytes(payload[..4].try_into().unwrap_or_default());
            if id != context {
                return Ok(()); // another context the server reports too
            }
            let mut at = offset;
            for d in payload[4..].chunks_exact(8) {
                let length = u32::from_be_bytes(d[..4].try_into().unwrap_or_default());
                let flags = u32::from_be_bytes(d[4..].try_into().unwrap_or_default());
                if length == 0 || out.len() >= MAX_STATUS_DESCRIPTORS {
                    return Err(c.protocol(&what, "empty extent or too many extents"));
                }
                out.push(Extent {
                    offset: at,
                    length: u64::from(length),
                    flags,
                });
                at += u64::from(length);
            }
            Ok(())
        })?;
        if out.is_empty() {
            return Err(self.protocol(&what, "no extent for the context asked"));
        }
        Ok(out)
    }

    /// Writes `data` at `offset` (a writable export) and waits for the answer.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&n| n <= MAX_PAYLOAD)
            .ok_or_else(|| {
                self.protocol(
                    "WRITE",
                    format!("{} bytes is over {MAX_PAYLOAD}", data.len()),
                )
            })?;
        let what = format!("WRITE {len} bytes at {offset}");
        let cookie = self.request(NBD_CMD_WRITE, 0, offset, len, data)?;
        self.replies(&what, cookie, true, |c, kind, _| {
            Err(c.protocol(&what, format!("unexpected reply chunk type {kind}")))
        })
    }

    /// Asks the server to make every write durable.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let cookie = self.request(NBD_CMD_FLUSH, 0, 0, 0, &[])?;
        self.replies("FLUSH", cookie, true, |c, kind, _| {
            Err(c.protocol("FLUSH", format!("unexpected reply chunk type {kind}")))
        })
    }

    /// Ends the session (NBD_CMD_DISC has no reply).
    pub fn disconnect(mut self) -> Result<(), ClientError> {
        self.request(NBD_CMD_DISC, 0, 0, 0, &[]).map(|_| ())
    }

    fn set_meta_contexts(&mut self, contexts: &[&str]) -> Result<(), ClientError> {
        let mut data = Vec::new();
        put_string32(&mut data, &self.export);
        data.extend_from_slice(&(contexts.len() as u32).to_be_bytes());
        for q in contexts {
            put_string32(&mut data, q);
        }
        self.send_option(NBD_OPT_SET_META_CONTEXT, &data)?;
        loop {
            let (kind, payload) = self.option_reply(NBD_OPT_SET_META_CONTEXT)?;
            match kind {
                NBD_REP_ACK => return Ok(()),
                NBD_REP_META_CONTEXT if payload.len() >= 4 => {
                    let id = u32::from_be_bytes(payload[..4].try_into().unwrap_or_default());
                    let name = String::from_utf8_lossy(&payload[4..]).into_owned();
                    self.contexts.push((id, name));
                }
                _ => {
                    return Err(self.protocol(
                        "SET_META_CONTEXT",
                        format!("reply type {kind:#x} of {} bytes", payload.len()),
                    ))
                }
            }
        }
    }

    fn go(&mut self) -> Result<(), ClientError> {
        let mut data = Vec::new();
        put_string32(&mut data, &self.export);
        data.extend_from_slice(&0u16.to_be_bytes()); // no extra info requests
        self.send_option(NBD_OPT_GO, &data)?;
        let mut got_export = false;
        loop {
            let (kind, payload) = self.option_reply(NBD_OPT_GO)?;
            match kind {
                NBD_REP_ACK if got_export => return Ok(()),
                NBD_REP_INFO if payload.len() >= 2 => {
                    let info = u16::from_be_bytes([payload[0], payload[1]]);
                    if info == NBD_INFO_EXPORT && payload.len() == 12 {
                        self.size =
                            u64::from_be_bytes(payload[2..10].try_into().unwrap_or_default());
                        self.transmission_flags = u16::from_be_bytes([payload[10], payload[11]]);
                        got_export = true;
                    }
                }
                _ => return Err(self.protocol("GO", format!("reply type {kind:#x}"))),
            }
        }
    }

    fn send_option(&mut self, option: u32, data: &[u8]) -> Result<(), ClientError> {
        let mut msg = Vec::with_capacity(16 + data.len());
        msg.extend_from_slice(&IHAVEOPT.to_be_bytes());
        msg.extend_from_slice(&option.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(data);
        self.send(&format!("option {option}"), &msg)
    }

    /// One option reply: (type, payload); an error reply becomes `Refused`.
    fn option_reply(&mut self, option: u32) -> Result<(u32, Vec<u8>), ClientError> {
        let what = format!("reply to option {option}");
        let magic = self.read_u64(&what)?;
        let echoed = self.read_u32(&what)?;
        let kind = self.read_u32(&what)?;
        let len = self.read_u32(&what)?;
        if magic != REPLY_MAGIC || echoed != option || len > MAX_OPTION_REPLY {
            return Err(self.protocol(
                &what,
                format!("magic {magic:#x}, option {echoed}, length {len}"),
            ));
        }
        let payload = self.read_exact(&what, len as usize)?;
        if kind & NBD_REP_FLAG_ERROR != 0 {
            return Err(ClientError::Refused {
                what: format!("{} export {:?}", self.peer, self.export),
                option,
                code: kind,
                message: String::from_utf8_lossy(&payload).into_owned(),
            });
        }
        Ok((kind, payload))
    }

    fn request(
        &mut self,
        cmd: u16,
        flags: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> Result<u64, ClientError> {
        self.cookie += 1;
        let mut h = Vec::with_capacity(REQUEST_HEADER_LEN);
        h.extend_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        h.extend_from_slice(&flags.to_be_bytes());
        h.extend_from_slice(&cmd.to_be_bytes());
        h.extend_from_slice(&self.cookie.to_be_bytes());
        h.extend_from_slice(&offset.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(payload);
        self.send(&format!("command {cmd} at {offset}"), &h)?;
        Ok(self.cookie)
    }

    /// Reads the replies to `cookie` until the last one, handing each
    /// structured chunk to `chunk`. A simple reply without an error is
    /// success only for a command without data (`simple_ok`): READ and
    /// BLOCK_STATUS must answer in chunks once structured replies are on.
    fn replies(
        &mut self,
        what: &str,
        cookie: u64,
        simple_ok: bool,
        mut chunk: impl FnMut(&Self, u16, &[u8]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        self.replies_streamed(what, cookie, simple_ok, |c, kind, size| {
            let payload = c.read_exact(what, size as usize)?;
            chunk(c, kind, &payload)
        })
    }

    /// Reads the replies to request `cookie` until one says DONE. Error
    /// chunks end it with the server's errno and message; every other
    /// chunk is handed to `chunk` with its type and payload size, and
    /// `chunk` reads exactly that many bytes from the connection.
    fn replies_streamed(
        &mut self,
        what: &str,
        cookie: u64,
        simple_ok: bool,
        mut chunk: impl FnMut(&mut Self, u16, u32) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        loop {
            let magic = self.read_u32(what)?;
            if magic == NBD_SIMPLE_REPLY_MAGIC {
                let error = self.read_u32(what)?;
                let got = self.read_u64(what)?;
                if got != cookie {
                    return Err(self.protocol(what, format!("reply for cookie {got}")));
                }
                if error != 0 {
                    return Err(self.command_error(what, error, String::new()));
                }
                if simple_ok {
                    return Ok(());
                }
                return Err(self.protocol(
                    what,
                    "a simple reply to a command whose data comes in chunks",
                ));
            }
            if magic != NBD_STRUCTURED_REPLY_MAGIC {
                return Err(self.protocol(what, format!("reply magic {magic:#x}")));
            }
            let flags = self.read_u16(what)?;
            let kind = self.read_u16(what)?;
            let got = self.read_u64(what)?;
            let len = self.read_u32(what)?;
            if got != cookie || len > MAX_PAYLOAD + 64 {
                return Err(self.protocol(what, format!("chunk for cookie {got} of {len} bytes")));
            }
            if kind & (1 << 15) != 0 {
                // NBD_REPLY_TYPE_ERROR(_OFFSET): errno u32, message length u16, message.
                let payload = self.read_exact(what, len as usize)?;
                if payload.len() < 6 {
                    return Err(self.protocol(what, "short error chunk"));
                }
                let errno = u32::from_be_bytes(payload[..4].try_into().unwrap_or_default());
                let n = usize::from(u16::from_be_bytes([payload[4], payload[5]]));
                let message = String::from_utf8_lossy(payload.get(6..6 + n).unwrap_or_default());
                return Err(self.command_error(what, errno, message.into_owned()));
            }
            if kind == NBD_REPLY_TYPE_NONE {
                self.read_exact(what, len as usize)?;
            } else {
                chunk(self, kind, len)?;
            }
            if flags & NBD_REPLY_FLAG_DONE != 0 {
                return Ok(());
            }
        }
    }

    fn command_error(&self, what: &str, errno: u32, message: String) -> ClientError {
        ClientError::Command {
            what: format!("{} export {:?}: {what}", self.peer, self.export),
            errno,
            message,
        }
    }

    fn protocol(&self, what: &str, detail: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            what: format!("{} export {:?}: {what}", self.peer, self.export),
            detail: detail.into(),
        }
    }

    fn send(&mut self, what: &str, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream
            .write_all(bytes)
            .map_err(|source| ClientError::Io {
                what: format!("{} export {:?}: {what}", self.peer, self.export),
                source,
            })
    }

    fn read_exact(&mut self, what: &str, n: usize) -> Result<Vec<u8>, ClientError> {
        let mut buf = vec![0u8; n];
        self.read_exact_into(what, &mut buf)?;
        Ok(buf)
    }

    fn read_exact_into(&mut self, what: &str, buf: &mut [u8]) -> Result<(), ClientError> {
        self.stream
            .read_exact(buf)
            .map_err(|source| ClientError::Io {
                what: format!("{} export {:?}: {what}", self.peer, self.export),
                source,
            })
    }

    fn read_u16(&mut self, what: &str) -> Result<u16, ClientError> {
        let b = self.read_exact(what, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn read_u32(&mut self, what: &str) -> Result<u32, ClientError> {
        let b = self.read_exact(what, 4)?;
        Ok(u32::from_be_bytes(b[..4].try_into().unwrap_or_default()))
    }

    fn read_u64(&mut self, what: &str) -> Result<u64, ClientError> {
        let b = self.read_exact(what, 8)?;
        Ok(u64::from_be_bytes(b[..8].try_into().unwrap_or_default()))
    }
}

/// Where a chunk starting at the u64 in `payload[..8]` and `n` bytes long
/// falls in a request of `len` bytes at `offset`: its index into the
/// request's buffer, or `None` when it is outside.
/// Where a reply chunk of `n` bytes at disk offset `at` starts inside the
/// request of `len` bytes at `offset` (`None`: it does not fit inside).
fn range_start(at: u64, offset: u64, len: u32, n: usize) -> Option<usize> {
    let start = at.checked_sub(offset)?;
    let end = start.checked_add(n as u64)?;
    (end <= u64::from(len)).then_some(start as usize)
}

/// Whether the `(start, end)` ranges cover `0..len` exactly once.
fn covers_exactly(mut ranges: Vec<(usize, usize)>, len: usize) -> bool {
    ranges.sort_unstable();
    let mut pos = 0;
    for (start, end) in ranges {
        if start != pos {
            return false;
        }
        pos = end;
    }
    pos == len
}

/// A u32 length then the bytes of `s`.
fn put_string32(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_chunks_must_cover_the_request_exactly_once() {
        assert!(covers_exactly(vec![(4, 10), (0, 4)], 10));
        assert!(covers_exactly(vec![], 0));
        assert!(!covers_exactly(vec![(0, 4)], 10), "a gap at the end");
        assert!(!covers_exactly(vec![(0, 4), (5, 10)], 10), "a gap inside");
        assert!(!covers_exactly(vec![(0, 6), (4, 10)], 10), "an overlap");
        assert!(!covers_exactly(vec![(0, 10), (0, 10)], 10), "twice");
        assert_eq!(range_start(4096, 0, 8192, 4096), Some(4096));
        assert_eq!(range_start(4096, 0, 8192, 4097), None);
        assert_eq!(range_start(0, 4096, 8192, 1), None);
    }
}
