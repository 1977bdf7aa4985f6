//! The control socket: `<cache>/control.sock`, a unix stream socket (mode
//! 0600, so only the service's user — root in production — can drive it)
//! carrying the line protocol of [`crate::protocol`]. One thread per
//! connection; a connection may send several requests in turn. The client
//! side ([`request`]) is what the CLI calls.
//!
//! Only one service may own a cache folder ([`lock_cache`]): it holds an
//! exclusive lock on `<cache>/service.lock` (flock, released by the kernel
//! when the process ends, however it ends) for its whole life; the file
//! holds its pid for the refusal message. The socket alone cannot decide
//! ownership: it can be deleted or replaced under a running service. With
//! the lock held, the service still connects to an existing socket first
//! ([`claim`]); an answer means a service that does not take the lock runs
//! there (refused), no answer means a stale socket (removed).
//!
//! Stopping does not depend on the socket path either: the accept loop
//! polls a non-blocking listener and its stop flag, so it ends even when
//! `control.sock` was deleted or replaced (a wake-up connection to the path
//! would then reach nobody, or another service, and the stop would hang).
//! On drop the socket file is removed only if it is still the one this
//! server bound (same inode).

use crate::error::{Error, Result};
use crate::protocol::{Request, Response, MAX_LINE};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the accept loop looks at its stop flag when idle.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

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

/// The lock file of the service using `cache_dir`.
pub(crate) fn lock_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("service.lock")
}

/// Takes the exclusive lock of `cache_dir` (see the module doc) and writes
/// this process's pid into it; fails when another service holds it. The
/// lock lasts as long as the returned file is open.
pub(crate) fn lock_cache(cache_dir: &Path) -> Result<File> {
    let path = lock_path(cache_dir);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let who = match pid.trim() {
                "" => "another service".to_string(),
                pid => format!("another service (pid {pid})"),
            };
            return Err(Error::Invalid(format!(
                "cache folder {}: {who} is running on it (it holds {}); stop it, or use another --cache-dir",
                cache_dir.display(),
                path.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::io(format!("locking {}", path.display()), e))
        }
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    written.map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(file)
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

/// The running control server; dropping it stops it and removes the socket
/// (if it is still this server's).
pub(crate) struct ControlServer {
    path: PathBuf,
    /// (device, inode) of the socket file this server bound.
    bound: (u64, u64),
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The (device, inode) of `path` itself (not following a symlink).
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
}

impl ControlServer {
    pub(crate) fn start(path: &Path, handler: Handler) -> Result<Self> {
        let listener = UnixListener::bind(path)
            .map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
        let setup = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| listener.set_nonblocking(true))
            .and_then(|()| file_id(path));
        let bound = match setup {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(Error::io(format!("setting up {}", path.display()), e));
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ir-control".into())
            .spawn(move || accept_loop(&listener, &handler, &flag))
            .map_err(|e| Error::io("starting the control thread", e))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            bound,
            stop,
            thread: Some(thread),
        })
    }
}

/// Accepts until `stop` is set, one thread per connection.
fn accept_loop(listener: &UnixListener, handler: &Handler, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Nobody waiting (WouldBlock), out of descriptors, an aborted
            // connection: look at the stop flag again a little later.
            Err(_) => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        // Connections are served with blocking I/O.
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let h = handler.clone();
        let _ = std::thread::Builder::new()
            .name("ir-control-conn".into())
            .spawn(move || serve(stream, &h));
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // A socket bound there by someone else since is left alone.
        if file_id(&self.path).is_ok_and(|id| id == self.bound) {
            let _ = std::fs::remove_file(&self.path);
        }
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

    #[test]
    fn the_lock_refuses_a_second_owner_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_cache(dir.path()).unwrap();
        let pid = std::fs::read_to_string(lock_path(dir.path())).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        let err = lock_cache(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "another service (pid {}) is running",
                std::process::id()
            )),
            "{err}"
        );
        drop(first);
        lock_cache(dir.path()).unwrap();
    }

    #[test]
    fn stopping_does_not_depend_on_the_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let handler: Handler = Arc::new(|_| Response::Error {
            message: String::new(),
        });
        // Deleted under the server: it still stops.
        let server = ControlServer::start(&path, handler.clone()).unwrap();
        std::fs::remove_file(&path).unwrap();
        drop(server);
        // Replaced by another socket: it stops and leaves that one alone.
        let server = ControlServer::start(&path, handler.clone()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let other = ControlServer::start(&path, handler).unwrap();
        drop(server);
        assert!(path.exists(), "the other server's socket was removed");
        assert!(matches!(
            request(dir.path(), &Request::List),
            Ok(Response::Error { .. })
        ));
        drop(other);
        assert!(!path.exists());
    }
}
