//! Shared helpers of the LVM tests that drive the real lvm2 tools: running
//! a tool with install advice, the root check, loop devices detached on
//! drop, an `lvm.conf` that lets lvm2 see only the test's loop devices
//! (no udev, no device-mapper), and the per-sector pattern the tests fill
//! PV extents with.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `cmd` with `env` and `stdin`, panicking with its stderr when it
/// fails (and with `hint` when it cannot run); returns its trimmed stdout.
pub fn run(
    cmd: &str,
    args: &[&str],
    env: &[(&str, &Path)],
    stdin: Option<&str>,
    hint: &str,
) -> String {
    let mut c = Command::new(cmd);
    c.args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd} not runnable ({e}): {hint}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn require_root() {
    let uid = run("id", &["-u"], &[], None, "coreutils");
    assert_eq!(
        uid, "0",
        "this test needs root (losetup, pvcreate): run it as root"
    );
}

/// Loop devices detached when dropped, also when the test fails.
pub struct Loops(pub Vec<String>);

impl Drop for Loops {
    fn drop(&mut self) {
        for dev in &self.0 {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}

/// Writes `<dir>/lvm/lvm.conf` accepting only `devices`; returns the
/// directory to pass as `LVM_SYSTEM_DIR`.
pub fn lvm_conf(dir: &Path, devices: &[&str]) -> PathBuf {
    let conf = dir.join("lvm");
    std::fs::create_dir_all(&conf).unwrap();
    let accept: Vec<String> = devices.iter().map(|d| format!("\"a|^{d}$|\", ")).collect();
    let filter = format!("[ {}\"r|.*|\" ]", accept.concat());
    std::fs::write(
        conf.join("lvm.conf"),
        format!(
            "devices {{ obtain_device_list_from_udev = 0 filter = {filter} global_filter = {filter} }}\n\
             activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 }}\n\
             global {{ locking_dir = \"{}\" }}\n",
            conf.join("lock").display()
        ),
    )
    .unwrap();
    conf
}

/// The pattern of 512-byte sector `s` of extent `e` of PV `pv`.
pub fn sector_pattern(pv: u64, e: u64, s: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    let tag = format!("pv{pv} extent {e:03} sector {s:05} ");
    for (i, x) in b.iter_mut().enumerate() {
        *x = tag.as_bytes()[i % tag.len()];
    }
    b
}
