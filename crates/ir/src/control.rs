//! The control socket: `<cache>/control.sock`, a unix stream socket (mode
//! 0600, so only the service's user — root in production — can drive it)
//! carrying the line protocol of [`crate::protocol`]. One thread per
//! connection; a connection may send several requests in turn. The client
//! side ([`request`]) is what the CLI calls.
//!
//! Only one service may own a cache folder: at start the service connects
//! to an existing socket first; an answer means another service runs there
//! (refused), no answer means a stale socket (removed).

use crate::error::{Error, Result};
use crate::protocol::{Request, Response, MAX_LINE};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What answers a request (the service).
pub(crate) type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// The control socket of the service using `cache_dir`.
pub fn socket_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("control.sock")
}

fn control_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Control {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Fails when a service already answers on `path`; removes a stale socket.
pub(crate) fn claim(path: &Path) -> Result<()> {
    if UnixStream::connect(path).is_ok() {
        return Err(control_err(
            path,
            "another service is running on this cache folder (use another --cache-dir)",
        ));
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing stale {}", path.display()), e)),
    }
}

/// The running control server; dropping it stops it and removes the socket.
pub(crate) struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    pub(crate) fn start(path: &Path, handler: Handler) -> Result<Self> {
        let listener = UnixListener::bind(path)
            .map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ir-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = conn else { continue };
                    let h = handler.clone();
                    let _ = std::thread::Builder::new()
                        .name("ir-control-conn".into())
                        .spawn(move || serve(stream, &h));
                }
            })
            .map_err(|e| Error::io("starting the control thread", e))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes; `None` at end of stream.
fn read_line(r: &mut impl BufRead) -> std::io::Result<Option<Result<String, String>>> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Ok(Some(Err(format!("line longer than {MAX_LINE} bytes"))));
    }
    Ok(Some(
        String::from_utf8(line).map_err(|_| "line is not UTF-8".to_string()),
    ))
}

fn serve(stream: UnixStream, handler: &Handler) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let (resp, last) = match read_line(&mut reader) {
            Ok(None) | Err(_) => return,
            Ok(Some(Err(message))) => (Response::Error { message }, true),
            Ok(Some(Ok(line))) => match Request::decode(&line) {
                Ok(req) => (handler(req), false),
                Err(e) => (
                    Response::Error {
                        message: e.to_string(),
                    },
                    false,
                ),
            },
        };
        if writer.write_all(resp.encode().as_bytes()).is_err() || last {
            return;
        }
    }
}

/// Sends `req` to the service running on `cache_dir` and returns its answer
/// (an error answer is returned as `Ok(Response::Error)`).
pub fn request(cache_dir: &Path, req: &Request) -> Result<Response> {
    let path = socket_path(cache_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        control_err(
            &path,
            format!(
                "no service answers ({e}); start one with `lifeboat nfs serve --repo R --cache-dir {}`",
                cache_dir.display()
            ),
        )
    })?;
    stream
        .write_all(req.encode().as_bytes())
        .map_err(|e| Error::io(format!("writing to {}", path.display()), e))?;
    let mut reader = BufReader::new(stream);
    match read_line(&mut reader) {
        Ok(Some(Ok(line))) => {
            Response::decode(&line).map_err(|e| control_err(&path, e.to_string()))
        }
        Ok(Some(Err(reason))) => Err(control_err(&path, reason)),
        Ok(None) => Err(control_err(
            &path,
            "the service closed the connection without answering",
        )),
        Err(e) => Err(Error::io(format!("reading from {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_answered_and_a_second_server_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let err = request(dir.path(), &Request::List).unwrap_err();
        assert!(err.to_string().contains("nfs serve"), "{err}");
        claim(&path).unwrap();
        let server = ControlServer::start(
            &path,
            Arc::new(|r: Request| Response::Error {
                message: format!("got {r:?}"),
            }),
        )
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        match request(dir.path(), &Request::Status).unwrap() {
            Response::Error { message } => assert_eq!(message, "got Status"),
            other => panic!("{other:?}"),
        }
        assert!(claim(&path).is_err());
        // Garbage gets an error answer, and the connection goes on.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{nope\n{\"op\":\"list\"}\n").unwrap();
        let mut r = BufReader::new(s);
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(l.contains("control message"), "{l}");
        l.clear();
        r.read_line(&mut l).unwrap();
        assert!(l.contains("got List"), "{l}");
        drop(server);
        assert!(!path.exists());
        // A stale socket file is removed.
        std::fs::write(&path, b"").unwrap();
        claim(&path).unwrap();
        assert!(!path.exists());
    }
}
