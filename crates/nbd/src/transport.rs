//! The byte stream of one connection: the TCP socket, or rustls on top of
//! it once NBD_OPT_STARTTLS succeeded. Both read through [`Sock`], which
//! enforces the negotiation's deadline on every socket read (TLS handshake
//! included), so a peer trickling bytes cannot stretch it; in transmission
//! the deadline is lifted and the socket's own read timeout (the idle
//! timeout) applies.

use crate::tls::TlsConfig;
use rustls::{ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// The TCP socket with an optional deadline for reads.
pub(crate) struct Sock {
    tcp: TcpStream,
    deadline: Option<Instant>,
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.tcp.set_read_timeout(Some(left))?;
        }
        self.tcp.read(buf)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

pub(crate) enum Transport {
    Plain(Sock),
    Tls(Box<StreamOwned<ServerConnection, Sock>>),
}

impl Transport {
    /// `tcp` in clear, reads bounded by `deadline`.
    pub(crate) fn new(tcp: TcpStream, deadline: Instant) -> Transport {
        Transport::Plain(Sock {
            tcp,
            deadline: Some(deadline),
        })
    }

    fn sock(&mut self) -> &mut Sock {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &mut t.sock,
        }
    }

    /// The negotiation is over: reads wait for the socket's read timeout
    /// (`idle`, `None`: for ever) instead of the deadline.
    pub(crate) fn end_deadline(&mut self, idle: Option<std::time::Duration>) -> io::Result<()> {
        let sock = self.sock();
        sock.deadline = None;
        sock.tcp.set_read_timeout(idle)
    }

    /// Runs the server side of a TLS handshake on the plain socket and
    /// returns the encrypted stream. A client that fails to authenticate
    /// (no certificate, one from another CA) or speaks no TLS gets an
    /// error here.
    pub(crate) fn start_tls(self, config: &TlsConfig) -> io::Result<Transport> {
        let Transport::Plain(mut sock) = self else {
            return Err(io::Error::other("TLS is already active"));
        };
        let mut conn = ServerConnection::new(config.server_config()).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            let (read, written) = conn.complete_io(&mut sock)?;
            if read == 0 && written == 0 && conn.is_handshaking() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(Transport::Tls(Box::new(StreamOwned::new(conn, sock))))
    }

    /// Sends `bytes` whole (through TLS when it is active).
    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.tcp.write_all(bytes),
            Transport::Tls(t) => {
                t.write_all(bytes)?;
                t.flush()
            }
        }
    }

    /// Ends TLS politely (close_notify); the socket closes on drop.
    pub(crate) fn close(&mut self) {
        if let Transport::Tls(t) = self {
            t.conn.send_close_notify();
            let _ = t.flush();
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            // A client that closes without close_notify has still
            // closed: NBD framing tells a clean end from a truncated one.
            Transport::Tls(t) => match t.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}
