//! Shared helpers of the CLI tests: run the real `lifeboat` binary, make
//! disks, find chunk files.
#![allow(dead_code)]

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

/// Fails the test with install advice when `tool` is not on PATH.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found: install it with `apt-get install {package}` (scripts/test.sh does)"
    );
}
