//! `lifeboat nfs serve` as a child process for the instant recovery
//! tests: every port ephemeral, the control socket in its cache folder.

use super::{init_repo, lifeboat, make_disk, ok, run, s, Service};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `lifeboat nfs serve` on 127.0.0.1, every port ephemeral; killed on drop.
pub struct NfsService {
    child: Service,
    stderr: PathBuf,
}

impl NfsService {
    pub fn start(repo: &Path, cache: &Path, log: &Path) -> NfsService {
        let stderr = std::fs::File::create(log).unwrap();
        let child = lifeboat()
            .args(["nfs", "serve", "--repo", s(repo), "--listen", "127.0.0.1"])
            .args([
                "--portmap-port",
                "0",
                "--mount-port",
                "0",
                "--nfs-port",
                "0",
            ])
            .args([
                "--nbd-port",
                "0",
                "--allow",
                "127.0.0.1",
                "--cache-dir",
                s(cache),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting lifeboat nfs serve");
        let server = NfsService {
            child: Service(child),
            stderr: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = run(&["instant-recovery", "list", "--cache-dir", s(cache)]);
            if out.status.success() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "service not ready: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `signal` and waits for a clean exit.
    pub fn stop_with(mut self, signal: &str) -> String {
        let log = self.stderr.clone();
        let status = self
            .child
            .signal_and_wait(signal, || std::fs::read_to_string(&log).unwrap_or_default());
        assert!(
            status.success(),
            "exit after {signal}: {status}\n{}",
            self.log()
        );
        self.log()
    }
}

/// Copies the first disk of `session` (a session's JSON as `start --json`
/// prints it) out over NFS with libnfs's nfs-cp into `to` and returns its
/// bytes.
pub fn copy_first_disk(session: &serde_json::Value, to: &Path) -> Vec<u8> {
    let id = session["id"].as_str().unwrap();
    let file = session["disks"][0]["file"].as_str().unwrap();
    let url = format!(
        "nfs://127.0.0.1/lifeboat/{id}/{file}?version=3&mountport={}&nfsport={}",
        session["service"]["mount_port"], session["service"]["nfs_port"]
    );
    let out = std::process::Command::new("nfs-cp")
        .arg(&url)
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nfs-cp {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(to).unwrap()
}

/// A repository in `dir` with one restore point of VM `web01` (one 6 MiB
/// disk of `seed`'s bytes): the repository and the disk's bytes.
pub fn repo_with_web01(dir: &Path, seed: u32) -> (PathBuf, Vec<u8>) {
    let repo = init_repo(dir);
    let disk = dir.join("web01.raw");
    let bytes = make_disk(&disk, 6 << 20, seed);
    ok(&[
        "backup",
        "--repo",
        s(&repo),
        "--vm",
        "web01",
        &format!("disk0={}", s(&disk)),
    ]);
    (repo, bytes)
}
