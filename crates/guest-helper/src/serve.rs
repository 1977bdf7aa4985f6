//! The helper's one session: listen, accept clients until one completes the
//! TLS handshake with the pinned certificate (others are refused and
//! logged), then answer its requests until it quits, goes away, or stays
//! silent for the idle timeout. Nobody connecting within the idle timeout
//! also ends the helper.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_guest_helper::layout::HANDSHAKE_TIMEOUT;
use lifeboat_guest_helper::wire::{self, Reply, Request, WireError};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::script;

/// Why the helper stopped other than by a proxy's `Quit`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("accepting connections: {0}")]
    Accept(#[source] std::io::Error),
    #[error("no pinned proxy connected within {0:?}")]
    NoProxy(Duration),
    #[error("the proxy sent nothing for {0:?}")]
    Idle(Duration),
    #[error("the session with the proxy failed: {0}")]
    Session(#[from] WireError),
}

type Session = StreamOwned<ServerConnection, TcpStream>;

/// Serves one pinned proxy session from `dir` on `listen`.
pub fn serve(
    dir: &Path,
    listen: &str,
    idle: Duration,
    tls: Arc<ServerConfig>,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(listen).map_err(|source| ServeError::Listen {
        addr: listen.to_string(),
        source,
    })?;
    listener.set_nonblocking(true).map_err(ServeError::Accept)?;
    eprintln!("lifeboat-guest-helper: listening on {listen}");
    let deadline = Instant::now() + idle;
    let session = loop {
        match listener.accept() {
            Ok((sock, peer)) => match handshake(sock, &tls) {
                Ok(s) => {
                    eprintln!("lifeboat-guest-helper: the pinned proxy connected from {peer}");
                    break s;
                }
                Err(e) => eprintln!("lifeboat-guest-helper: refused {peer}: {e}"),
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(ServeError::NoProxy(idle));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(ServeError::Accept(e)),
        }
    };
    drop(listener);
    answer(session, dir, idle)
}

/// The TLS handshake, within [`HANDSHAKE_TIMEOUT`].
fn handshake(mut sock: TcpStream, tls: &Arc<ServerConfig>) -> std::io::Result<Session> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut conn = ServerConnection::new(Arc::clone(tls)).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(StreamOwned::new(conn, sock))
}

fn answer(mut s: Session, dir: &Path, idle: Duration) -> Result<(), ServeError> {
    wire::write_message(&mut s, &Reply::Hello)?;
    loop {
        s.sock.set_read_timeout(Some(idle)).map_err(WireError::Io)?;
        let request = match wire::read_message::<Request>(&mut s) {
            Ok(r) => r,
            Err(WireError::Closed) => {
                eprintln!("lifeboat-guest-helper: the proxy closed the session");
                return Ok(());
            }
            Err(WireError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                return Err(ServeError::Idle(idle))
            }
            Err(e) => return Err(e.into()),
        };
        match request {
            Request::Run { phase, timeout } => {
                eprintln!("lifeboat-guest-helper: running {phase} (timeout {timeout:?})");
                let path = dir.join(phase.file_name());
                let mut send = |stream, text| {
                    wire::write_message(&mut s, &Reply::Line { stream, text }).map_err(
                        |e| match e {
                            WireError::Io(e) => e,
                            other => std::io::Error::other(other),
                        },
                    )
                };
                let end = script::run(&path, timeout, &mut send).map_err(WireError::Io)?;
                eprintln!("lifeboat-guest-helper: {phase} {end}");
                wire::write_message(&mut s, &Reply::End(end))?;
            }
            Request::Quit => {
                wire::write_message(&mut s, &Reply::Bye)?;
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
                return Ok(());
            }
        }
    }
}
