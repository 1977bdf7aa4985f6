//! Shared helpers of the CLI tests: run the real `lifeboat` binary, make
//! disks, find chunk files.
#![allow(dead_code)]

pub mod nfs_service;
pub mod proxy;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSPHRASE: &str = "test passphrase";

/// A `lifeboat` command with the test passphrase in its environment.
pub fn lifeboat() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    cmd.env("LIFEBOAT_PASSPHRASE", PASSPHRASE)
        .env_remove("LIFEBOAT_REPO");
    cmd
}

/// Runs `lifeboat args...` and returns its output.
pub fn run(args: &[&str]) -> Output {
    lifeboat().args(args).output().expect("running lifeboat")
}

/// Runs `lifeboat args...`, fails the test unless it exits 0, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "lifeboat {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `lifeboat args...` expecting exit code `code`; returns stderr.
pub fn fails_with(code: i32, args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "lifeboat {args:?}: expected exit {code}\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Creates an encrypted repository with 256 KiB chunks at `dir/repo`.
pub fn init_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    ok(&[
        "repo",
        "init",
        "--repo",
        s(&repo),
        "--chunk-size-kib",
        "256",
    ]);
    repo
}

/// A path as &str (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 test path")
}

/// Writes a raw disk of `size` bytes: pseudo-random data (seeded) in two
/// blocks out of three, holes in the rest.
pub fn make_disk(path: &Path, size: usize, seed: u32) -> Vec<u8> {
    let mut v = lifeboat_vdisk::testsuite::pattern_with_holes(size, 300 * 1024);
    let mut x = seed | 1;
    for b in v.iter_mut().step_by(4093) {
        if *b != 0 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = (x as u8) | 1;
        }
    }
    std::fs::write(path, &v).expect("writing test disk");
    v
}

/// Every chunk file of a repository.
pub fn chunk_files(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(repo.join("chunks")).expect("chunks dir") {
        let prefix = prefix.expect("dir entry").path();
        if !prefix.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&prefix).expect("prefix dir") {
            let p = f.expect("dir entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.len() == 64 {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The restore point names `list --json` prints, oldest first.
pub fn list_names(repo: &Path) -> Vec<String> {
    let out = ok(&["list", "--repo", s(repo), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("list --json is JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|m| {
            format!(
                "{}@{}",
                m["vm"].as_str().unwrap_or(""),
                m["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Fails with install advice when `tool` is missing.
#[allow(unused_imports)] // not every test binary that includes this module needs it
pub use lifeboat_testsupport::require_tool;

/// `len` incompressible pseudo-random bytes (BLAKE3 output keyed by `seed`),
/// so every chunk is new and stores at full size.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"lifeboat test data");
    hasher.update(&seed.to_le_bytes());
    hasher.finalize_xof().fill(&mut out);
    out
}

/// Backs up `disks` (NAME, PATH) as one restore point of `vm`; returns its
/// name (`vm@id`).
pub fn backup(repo: &Path, vm: &str, disks: &[(&str, &Path)]) -> String {
    let specs: Vec<String> = disks
        .iter()
        .map(|(name, path)| format!("{name}={}", s(path)))
        .collect();
    let mut args = vec!["backup", "--repo", s(repo), "--vm", vm, "--json"];
    args.extend(specs.iter().map(String::as_str));
    let out = ok(&args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("backup --json is JSON");
    v["restore_point"]
        .as_str()
        .expect("backup --json names the restore point")
        .to_string()
}

/// Restores `disk` of `restore_point` to a raw file `to` and returns its bytes.
pub fn restore_raw(repo: &Path, restore_point: &str, disk: &str, to: &Path) -> Vec<u8> {
    ok(&[
        "restore",
        "--repo",
        s(repo),
        restore_point,
        "--disk",
        disk,
        "--to",
        s(to),
        "--format",
        "raw",
    ]);
    std::fs::read(to).expect("reading the restored disk")
}

/// Every `.tmp-*` file under `dir`, at any depth.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let is_tmp = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp-"));
        if is_tmp {
            out.push(p);
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(temp_files(&p));
        }
    }
    out
}

/// Runs `qemu-img args...` and fails the test (with install advice when it
/// is missing) unless it succeeds.
pub fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("qemu-img not runnable ({e}): install qemu-utils (apt-get install qemu-utils)")
        });
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Converts the raw image `raw` into the qcow2 image `qcow2`.
pub fn raw_to_qcow2(raw: &Path, qcow2: &Path) {
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        qcow2.to_str().unwrap(),
    ]);
}

/// Opens the repository through the library (to read indexes the CLI does
/// not print).
pub fn open_repo_lib(repo: &Path) -> lifeboat_repo::Repository {
    lifeboat_repo::Repository::open(repo, Some(PASSPHRASE)).expect("opening the repository")
}

/// The digests of the data chunks of `disk` in `restore_point` (`vm@id`).
pub fn disk_digests(repo: &Path, restore_point: &str, disk: &str) -> Vec<lifeboat_repo::Digest> {
    let r = open_repo_lib(repo);
    let m = r
        .resolve(restore_point)
        .expect("resolving the restore point");
    let index = r.load_index(&m, disk).expect("loading the index");
    index.digests.iter().flatten().copied().collect()
}

/// The file of chunk `digest`: `chunks/<xx>/<64 hex>`.
pub fn chunk_path(repo: &Path, digest: &lifeboat_repo::Digest) -> PathBuf {
    let hex = digest.to_string();
    repo.join("chunks").join(&hex[..2]).join(hex)
}

/// Arguments of `lifeboat nfs serve` on 127.0.0.1 with every port
/// ephemeral and no portmapper.
pub fn nfs_serve_args<'a>(repo: &'a Path, cache: &'a Path) -> Vec<&'a str> {
    vec![
        "nfs",
        "serve",
        "--repo",
        s(repo),
        "--cache-dir",
        s(cache),
        "--listen",
        "127.0.0.1",
        "--mount-port",
        "0",
        "--nfs-port",
        "0",
        "--nbd-port",
        "0",
        "--no-portmap",
    ]
}

/// Parses `text` as JSON, failing the test with the text.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A service process started by a test: killed and reaped on drop.
pub struct Service(pub std::process::Child);

impl Service {
    /// Sends `signal` (`-TERM`, `-INT`) with kill(1) and waits up to 20 s
    /// for the exit; `log` is what the process printed, for the failure.
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        log: impl Fn() -> String,
    ) -> std::process::ExitStatus {
        let st = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("running kill");
        assert!(st.success(), "kill {signal} failed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().expect("waiting for the service") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after {signal}: {}",
                log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    /// Kills the process and, when it leads a process group of its own,
    /// the whole group (what a wrapper such as faketime forked).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
