//! Helpers shared by the qcow2 tests: finding and running QEMU's tools (the
//! oracles), and building raw source images from the trait suite's pattern.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The path of a QEMU tool (`qemu-img`, `qemu-io`); panics with how to
/// install it when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} not found in PATH: install qemu-utils (apt-get install qemu-utils)");
}

/// Runs a QEMU tool and returns its output, whatever the exit status.
pub fn run_status(name: &str, args: &[&str]) -> Output {
    Command::new(tool(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Runs a QEMU tool and panics (with its stderr) unless it succeeds.
pub fn run(name: &str, args: &[&str]) -> Output {
    let out = run_status(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `data` to `dir/name` and returns the path as a string.
pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_string()
}

/// The pattern used as source disk: 5 MiB + 4096 bytes (not a multiple of
/// the cluster size), 192 KiB blocks so zero blocks span whole clusters and
/// data blocks do not start on a cluster boundary.
/// Every other 40 KiB stretch is masked to 3 bits per byte so that it
/// compresses (qemu-img stores incompressible clusters uncompressed even
/// with `-c`, so compressed images hold both kinds).
pub fn source_pattern() -> Vec<u8> {
    let mut v = lifeboat_vdisk::testsuite::pattern_with_holes((5 << 20) + 4096, 3 * 65536 + 4096);
    for (i, stretch) in v.chunks_mut(40 << 10).enumerate() {
        if i % 2 == 1 {
            stretch.iter_mut().for_each(|b| *b &= 0x07);
        }
    }
    v
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}
