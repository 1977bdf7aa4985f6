//! A real QEMU for the tests: the fixture's `qemu-system-x86_64` (QEMU 7.2
//! from Debian, extracted by scripts/build-test-guest.sh) or `$LIFEBOAT_QEMU`,
//! started paused (`-S`, no guest boot) with a small qcow2 disk on a
//! virtio-scsi `scsi-hd` (id `sda`, node `disk0`) and a raw disk (id `sdb`,
//! node `disk1`) attached with -blockdev, and a QMP socket. `scsi-hd` because
//! HMP `qemu-io -d <id>` writes through the device's own BlockBackend (the
//! path guest writes take, so through our copy-before-write filter); a
//! virtio-blk device keeps it on an inner child HMP cannot name.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_hypervisor::QmpClient;
use serde_json::{json, Value};

pub const DISK_SIZE: u64 = 16 << 20;

pub struct Qemu {
    child: Child,
    pub dir: tempfile::TempDir,
    pub qmp: PathBuf,
}

/// The QEMU binary, or a panic that says how to get it.
pub fn qemu_binary() -> PathBuf {
    if let Some(q) = std::env::var_os("LIFEBOAT_QEMU").filter(|q| !q.is_empty()) {
        return PathBuf::from(q);
    }
    match lifeboat_testvm::try_guest_fixture() {
        Ok(f) if f.qemu.exists() => f.qemu,
        Ok(f) => panic!(
            "the QEMU fixture {} is missing: run scripts/build-test-guest.sh \
             <target dir>/fixtures/guest (it extracts Debian's QEMU 7.2), or set LIFEBOAT_QEMU",
            f.qemu.display()
        ),
        Err(e) => panic!(
            "cannot provide the QEMU fixture: {e}\nrun scripts/build-test-guest.sh \
             <target dir>/fixtures/guest (it extracts Debian's QEMU 7.2), or set LIFEBOAT_QEMU"
        ),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Qemu {
    pub fn start() -> Qemu {
        Self::start_with(&[])
    }

    /// Starts QEMU with `extra` arguments appended (`{dir}` is replaced by
    /// the test directory, which also holds a spare qcow2 `disk2.qcow2`).
    pub fn start_with(extra: &[&str]) -> Qemu {
        let qemu = qemu_binary();
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-qmp-test.")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Fleece::start wants private directories for overlays and the NBD socket.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(d.join("disk0.qcow2"))
            .arg(DISK_SIZE.to_string()));
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "raw"])
            .arg(d.join("disk1.raw"))
            .arg(DISK_SIZE.to_string()));
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(d.join("disk2.qcow2"))
            .arg(DISK_SIZE.to_string()));
        let qmp = d.join("qmp.sock");
        let p = |n: &str| d.join(n).to_str().unwrap().to_string();
        let child = Command::new(&qemu)
            .args([
                "-machine",
                "q35",
                "-nodefaults",
                "-display",
                "none",
                "-accel",
                "tcg",
                "-S",
            ])
            .args([
                "-blockdev",
                &format!("driver=file,filename={},node-name=file0", p("disk0.qcow2")),
            ])
            .args(["-blockdev", "driver=qcow2,file=file0,node-name=disk0"])
            .args([
                "-blockdev",
                &format!("driver=file,filename={},node-name=file1", p("disk1.raw")),
            ])
            .args(["-blockdev", "driver=raw,file=file1,node-name=disk1"])
            .args(["-device", "virtio-scsi-pci,id=scsi0"])
            .args(["-device", "scsi-hd,drive=disk0,id=sda"])
            .args(["-device", "scsi-hd,drive=disk1,id=sdb"])
            .args([
                "-qmp",
                &format!("unix:{},server=on,wait=off", qmp.display()),
            ])
            .args(
                extra
                    .iter()
                    .map(|a| a.replace("{dir}", d.to_str().unwrap())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(d.join("qemu.stderr")).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", qemu.display()));
        let mut q = Qemu { child, dir, qmp };
        let deadline = Instant::now() + Duration::from_secs(20);
        // The socket file exists from bind(); connects succeed from listen().
        while std::os::unix::net::UnixStream::connect(&q.qmp).is_err() {
            if let Ok(Some(status)) = q.child.try_wait() {
                panic!(
                    "QEMU exited ({status}): {}",
                    std::fs::read_to_string(q.dir.path().join("qemu.stderr")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "QEMU did not listen on its QMP socket within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        q
    }

    pub fn client(&self) -> QmpClient {
        QmpClient::connect(&self.qmp).expect("connect to QEMU's QMP socket")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn work_dir(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let w = self.dir.path().join("work");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o700)).unwrap();
        w
    }

    pub fn nbd_socket(&self) -> PathBuf {
        self.dir.path().join("nbd.sock")
    }

    /// Waits for QEMU to exit (after `quit`).
    pub fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "QEMU did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `qemu-io` command through HMP on device `qdev` (as the guest writes).
pub fn qemu_io(client: &QmpClient, qdev: &str, cmd: &str) -> String {
    hmp_qemu_io(client, &format!("-d {qdev}"), cmd)
}

/// One `qemu-io` command through HMP on the named BlockBackend `drive`
/// (`-drive id=`), the one its device writes through.
pub fn qemu_io_drive(client: &QmpClient, drive: &str, cmd: &str) -> String {
    hmp_qemu_io(client, drive, cmd)
}

fn hmp_qemu_io(client: &QmpClient, target: &str, cmd: &str) -> String {
    let out = client
        .execute(
            "human-monitor-command",
            json!({"command-line": format!("qemu-io {target} \"{cmd}\"")}),
        )
        .unwrap();
    let out = out.as_str().unwrap_or("").to_string();
    assert!(
        !out.contains("Error") && !out.contains("failed"),
        "qemu-io {target} {cmd}: {out}"
    );
    out
}

/// Names of the block nodes with the lifeboat- prefix.
pub fn lifeboat_nodes(client: &QmpClient) -> Vec<String> {
    client
        .execute("query-named-block-nodes", json!({"flat": true}))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.get("node-name").and_then(Value::as_str))
        .filter(|n| n.starts_with("lifeboat-"))
        .map(str::to_string)
        .collect()
}

/// Ids of the block exports.
pub fn exports(client: &QmpClient) -> Vec<String> {
    client
        .execute("query-block-exports", Value::Null)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The extents `nbdinfo --map=<context>` reports for an export: (offset, length, description).
pub fn nbd_map(uri: &str, context: &str) -> Vec<(u64, u64, String)> {
    let out = run(Command::new("nbdinfo")
        .arg(format!("--map={context}"))
        .arg(uri));
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3..].join(" "),
            )
        })
        .collect()
}

/// The dirty extents (offset, length) of a bitmap context.
pub fn dirty_extents(uri: &str, bitmap: &str) -> Vec<(u64, u64)> {
    nbd_map(uri, &format!("qemu:dirty-bitmap:{bitmap}"))
        .into_iter()
        .filter(|(_, _, d)| d == "dirty")
        .map(|(o, l, _)| (o, l))
        .collect()
}

/// Reads a whole export into a file with nbdcopy and returns the bytes.
pub fn read_export(uri: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join("export.img");
    run(Command::new("nbdcopy").arg(uri).arg(&out));
    let data = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    data
}
