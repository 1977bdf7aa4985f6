//! The proxy's TLS session with the guest helper: connect (the proxy
//! initiates; the helper's certificate must be the pinned one), ask for a
//! script run and collect its streamed output and end, quit.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use lifeboat_guest_helper::layout::TLS_NAME;
use lifeboat_guest_helper::pin::{is_pin_failure, tls_error};
use lifeboat_guest_helper::wire::{self, Phase, Reply, Request, ScriptEnd, Stream, WireError};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// How much longer than a script's timeout the proxy waits for its end.
const SCRIPT_MARGIN: Duration = Duration::from_secs(15);

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The helper's certificate is not the pinned one (or it refused ours).
    #[error("certificate mismatch at {addr}: {detail}")]
    Mismatch { addr: String, detail: String },
    /// Anything else (nothing listening yet, a reset, a timeout).
    #[error("{addr}: {detail}")]
    Other { addr: String, detail: String },
}

/// An open session with the helper.
pub struct HelperSession {
    stream: StreamOwned<ClientConnection, TcpStream>,
    addr: SocketAddr,
}

impl std::fmt::Debug for HelperSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperSession")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HelperSession {
    /// Connects to `addr` and completes the pinned handshake within `timeout`.
    pub fn connect(
        addr: &str,
        tls: Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<HelperSession, ConnectError> {
        let other = |detail: String| ConnectError::Other {
            addr: addr.to_string(),
            detail,
        };
        let sa = addr
            .to_socket_addrs()
            .map_err(|e| other(format!("not an address: {e}")))?
            .next()
            .ok_or_else(|| other("resolves to no address".into()))?;
        let mut sock =
            TcpStream::connect_timeout(&sa, timeout).map_err(|e| other(e.to_string()))?;
        sock.set_read_timeout(Some(timeout))
            .and_then(|()| sock.set_write_timeout(Some(timeout)))
            .and_then(|()| sock.set_nodelay(true))
            .map_err(|e| other(e.to_string()))?;
        let name = ServerName::try_from(TLS_NAME).map_err(|e| other(e.to_string()))?;
        let mut conn = ClientConnection::new(tls, name).map_err(|e| other(e.to_string()))?;
        let classify = |e: WireError| match &e {
            WireError::Io(io) => match tls_error(io) {
                Some(t) if is_pin_failure(t) => ConnectError::Mismatch {
                    addr: addr.to_string(),
                    detail: t.to_string(),
                },
                _ => other(format!("TLS handshake: {e}")),
            },
            _ => other(format!("TLS handshake: {e}")),
        };
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(|e| classify(WireError::Io(e)))?;
        }
        let mut stream = StreamOwned::new(conn, sock);
        // With TLS 1.3 the helper checks our certificate after our
        // Finished: its Hello (or its alert) is the verdict.
        match wire::read_message::<Reply>(&mut stream) {
            Ok(Reply::Hello) => Ok(HelperSession { stream, addr: sa }),
            Ok(other_reply) => Err(other(format!(
                "expected the helper's Hello, got {other_reply:?}"
            ))),
            Err(e) => Err(classify(e)),
        }
    }

    /// Runs a phase's script (killed by the helper after `timeout`); each
    /// output line goes to `line` as it arrives.
    pub fn run(
        &mut self,
        phase: Phase,
        timeout: Duration,
        line: &mut dyn FnMut(Stream, String),
    ) -> Result<ScriptEnd, WireError> {
        self.stream
            .sock
            .set_read_timeout(Some(timeout + SCRIPT_MARGIN))?;
        wire::write_message(&mut self.stream, &Request::Run { phase, timeout })?;
        loop {
            match wire::read_message::<Reply>(&mut self.stream)? {
                Reply::Line { stream, text } => line(stream, text),
                Reply::End(end) => return Ok(end),
                Reply::Bye | Reply::Hello => return Err(WireError::Closed),
            }
        }
    }

    /// Ends the session (the helper answers and exits).
    pub fn quit(mut self) -> Result<(), WireError> {
        self.stream.sock.set_read_timeout(Some(SCRIPT_MARGIN))?;
        wire::write_message(&mut self.stream, &Request::Quit)?;
        match wire::read_message::<Reply>(&mut self.stream)? {
            Reply::Bye => {
                self.stream.conn.send_close_notify();
                let _ = self.stream.conn.complete_io(&mut self.stream.sock);
                Ok(())
            }
            other => Err(WireError::BadPayload {
                tag: 0,
                reason: format!("expected Bye, got {other:?}"),
            }),
        }
    }
}
