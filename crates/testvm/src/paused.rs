//! A real QEMU for tests that talk QMP to it: the fixture's
//! `qemu-system-x86_64` (QEMU 7.2 from Debian, extracted by
//! scripts/build-test-guest.sh) or `$LIFEBOAT_QEMU`, started paused (`-S`,
//! no guest boot) with a qcow2 disk on a virtio-scsi `scsi-hd` (id `sda`,
//! node `disk0`) and a raw disk (id `sdb`, node `disk1`) attached with
//! -blockdev, and a QMP socket. `scsi-hd` because HMP `qemu-io -d <id>`
//! writes through the device's own BlockBackend (the path guest writes
//! take, so through a copy-before-write filter); a virtio-blk device keeps
//! it on an inner child HMP cannot name. `cont` makes the VM run (the
//! firmware finds no boot disk and waits).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Size of each disk of [`PausedQemu::start`].
pub const DISK_SIZE: u64 = 16 << 20;

/// QEMU started paused with two small disks and a QMP socket; killed on drop.
pub struct PausedQemu {
    child: Child,
    pub dir: tempfile::TempDir,
    pub qmp: PathBuf,
    /// The extra arguments, `{dir}` replaced (kept for a restart).
    extra: Vec<String>,
}

/// The QEMU binary, or a panic that says how to get it.
pub fn qemu_binary() -> PathBuf {
    if let Some(q) = std::env::var_os("LIFEBOAT_QEMU").filter(|q| !q.is_empty()) {
        return PathBuf::from(q);
    }
    match crate::try_guest_fixture() {
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

impl PausedQemu {
    /// [`PausedQemu::start_sized`] with 16 MiB disks and nothing extra.
    pub fn start() -> PausedQemu {
        Self::start_with(&[])
    }

    /// [`PausedQemu::start_sized`] with 16 MiB disks.
    pub fn start_with(extra: &[&str]) -> PausedQemu {
        Self::start_sized(DISK_SIZE, extra)
    }

    /// Starts QEMU with disks of `size` bytes and `extra` arguments
    /// appended (`{dir}` is replaced by the test directory, which also
    /// holds a spare qcow2 `disk2.qcow2`).
    pub fn start_sized(size: u64, extra: &[&str]) -> PausedQemu {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-qmp-test.")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Fleece::start wants private directories for overlays and the NBD socket.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        for (name, format) in [
            ("disk0.qcow2", "qcow2"),
            ("disk1.raw", "raw"),
            ("disk2.qcow2", "qcow2"),
        ] {
            run(Command::new("qemu-img")
                .args(["create", "-q", "-f", format])
                .arg(d.join(name))
                .arg(size.to_string()));
        }
        let extra: Vec<String> = extra
            .iter()
            .map(|a| a.replace("{dir}", d.to_str().unwrap()))
            .collect();
        let qmp = d.join("qmp.sock");
        let child = spawn(d, &qmp, &extra);
        let mut q = PausedQemu {
            child,
            dir,
            qmp,
            extra,
        };
        q.wait_listening();
        q
    }

    /// Kills QEMU (SIGKILL, as a host crash or an OOM kill would) and
    /// waits for it; the disk files stay.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new QEMU, paused, on the same disk files and socket (after
    /// [`PausedQemu::kill`] or `quit`): the same VM, restarted.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.qmp);
        self.child = spawn(self.dir.path(), &self.qmp, &self.extra);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        // The socket file exists from bind(); connects succeed from listen().
        while std::os::unix::net::UnixStream::connect(&self.qmp).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "QEMU exited ({status}): {}",
                    std::fs::read_to_string(self.dir.path().join("qemu.stderr"))
                        .unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "QEMU did not listen on its QMP socket within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

impl Drop for PausedQemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// QEMU, paused, on the disks in `d`, with its QMP socket at `qmp`.
fn spawn(d: &Path, qmp: &Path, extra: &[String]) -> Child {
    let qemu = qemu_binary();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    Command::new(&qemu)
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
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(d.join("qemu.stderr")).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", qemu.display()))
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
