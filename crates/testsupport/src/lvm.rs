//! LVM fixtures without device-mapper: loop devices over byte ranges of
//! disk images (detached when dropped, also when the test fails), an
//! `lvm.conf` that lets lvm2 see only the test's loop devices (no udev, no
//! device-mapper, a private lock folder), and running the lvm2 tools with
//! it.

use crate::process::run_stdout;
use crate::tools::tool;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Loop devices detached when dropped, also when the test fails.
#[derive(Debug, Default)]
pub struct Loops(pub Vec<String>);

impl Loops {
    /// Attaches a loop device over `image` (from byte `offset`, `size`
    /// bytes long when given); returns `/dev/loopN`, kept to be detached.
    pub fn attach(&mut self, image: &Path, offset: u64, size: Option<u64>) -> String {
        let mut cmd = tool("losetup", "util-linux");
        cmd.args(["-f", "--show", "--offset"])
            .arg(offset.to_string());
        if let Some(size) = size {
            cmd.arg("--sizelimit").arg(size.to_string());
        }
        let dev = run_stdout(cmd.arg(image)).trim().to_string();
        self.0.push(dev.clone());
        dev
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for dev in &self.0 {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}

/// Writes `<dir>/lvm/lvm.conf` accepting only `devices`; returns the
/// directory to pass as `LVM_SYSTEM_DIR` (see [`lvm`]).
pub fn lvm_conf(dir: &Path, devices: &[&str]) -> PathBuf {
    let conf = dir.join("lvm");
    std::fs::create_dir_all(&conf).unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
    let accept: Vec<String> = devices.iter().map(|d| format!("\"a|^{d}$|\", ")).collect();
    let filter = format!("[ {}\"r|.*|\" ]", accept.concat());
    let file = conf.join("lvm.conf");
    std::fs::write(
        &file,
        format!(
            "devices {{ obtain_device_list_from_udev = 0 filter = {filter} global_filter = {filter} }}\n\
             activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 }}\n\
             global {{ locking_dir = \"{}\" }}\n",
            conf.join("lock").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    conf
}

/// Runs the lvm2 tool `name` with `args` under the configuration folder
/// `conf` (from [`lvm_conf`]); fails with install advice when lvm2 is
/// missing, with stderr when the tool fails; returns its trimmed stdout.
pub fn lvm(conf: &Path, name: &str, args: &[&str]) -> String {
    run_stdout(
        tool(name, "lvm2")
            .args(args)
            .env("LVM_SYSTEM_DIR", conf)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1"),
    )
    .trim()
    .to_string()
}

/// Writes real LVM2 metadata for VG `vg` (1 MiB extents) onto the loop
/// devices `devices` without device-mapper: `pvcreate`, `vgcreate`,
/// `vgcfgbackup`, the `logical_volumes { ... }` block `lvs` added by hand,
/// `vgcfgrestore`. Returns the metadata text as `vgcfgbackup` wrote it
/// (before the LVs were added), for the caller's checks of pe_start and
/// extent_size.
pub fn create_vg(conf: &Path, vg: &str, devices: &[&str], lvs: &str) -> String {
    let mut args = vec!["-ff", "-y"];
    args.extend_from_slice(devices);
    lvm(conf, "pvcreate", &args);
    let mut args = vec!["-s", "1M", vg];
    args.extend_from_slice(devices);
    lvm(conf, "vgcreate", &args);
    let backup = conf.join(format!("{vg}.txt"));
    let backup_s = backup.to_str().expect("utf-8 test path");
    lvm(conf, "vgcfgbackup", &["-f", backup_s, vg]);
    let text =
        std::fs::read_to_string(&backup).unwrap_or_else(|e| panic!("{}: {e}", backup.display()));
    let end = text.rfind('}').expect("vgcfgbackup wrote a VG block");
    std::fs::write(&backup, format!("{}{lvs}{}", &text[..end], &text[end..]))
        .unwrap_or_else(|e| panic!("{}: {e}", backup.display()));
    lvm(conf, "vgcfgrestore", &["-f", backup_s, vg]);
    text
}
