//! `lifeboat nfs serve` and signals, with the real binary: SIGTERM and
//! SIGINT stop it cleanly (exit 0) even after its `control.sock` was
//! deleted or replaced, and a second service on the same cache folder is
//! refused (exit 1, naming the running one) while the first runs.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `nfs serve`, its stderr lines arriving on `lines`; killed on
/// drop (a failed test leaves no service behind).
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serve {
    /// Starts the service and waits for its "ready" line.
    fn start(repo: &Path, cache: &Path) -> Serve {
        let mut child = lifeboat()
            .args(nfs_serve_args(repo, cache))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting lifeboat nfs serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut serve = Serve {
            child,
            lines,
            seen: Vec::new(),
        };
        serve.wait_for("ready: control socket");
        serve
    }

    fn wait_for(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.iter().any(|l| l.contains(what)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no {what:?} from nfs serve; stderr: {:#?}", self.seen);
                }
            }
        }
    }

    /// Sends `signal` (a `kill` name) and returns the exit code; fails the
    /// test if the service is still running 20 s later.
    fn stop_with(mut self, signal: &str) -> (Option<i32>, Vec<String>) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("running kill (procps)");
        assert!(sent.success(), "kill -{signal} {pid}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.seen.extend(self.lines.try_iter());
                panic!(
                    "nfs serve did not stop within 20 s of SIG{signal}; stderr: {:#?}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends with the pipe; collect what is left.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_stops_the_service_after_its_socket_was_replaced_and_a_second_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let cache = dir.path().join("cache");
    let sock = cache.join("control.sock");
    let first = Serve::start(&repo, &cache);

    // A second service while the first runs: refused, even once the
    // socket is gone (the first still owns the folder).
    for socket_there in [true, false] {
        if !socket_there {
            std::fs::remove_file(&sock).unwrap();
        }
        let err = fails_with(1, &nfs_serve_args(&repo, &cache));
        assert!(
            err.contains(&format!(
                "another service (pid {}) is running on it",
                first.child.id()
            )),
            "socket there: {socket_there}: {err}"
        );
    }

    // Something else now owns the socket path: the stop must not wait for
    // it, nor remove it.
    let foreign = UnixListener::bind(&sock).unwrap();
    let (code, stderr) = first.stop_with("TERM");
    assert_eq!(code, Some(0), "{stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.ends_with("lifeboat-nfs: stopped")),
        "{stderr:#?}"
    );
    assert!(
        sock.exists(),
        "the service removed a socket it did not bind"
    );
    drop(foreign);
    std::fs::remove_file(&sock).unwrap();

    // The folder is free again; SIGINT stops it too, socket deleted or not.
    let again = Serve::start(&repo, &cache);
    std::fs::remove_file(&sock).unwrap();
    let (code, stderr) = again.stop_with("INT");
    assert_eq!(code, Some(0), "{stderr:#?}");
}
