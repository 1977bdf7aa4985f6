//! One QEMU virtual machine running the test guest under TCG.
//!
//! QEMU is started as
//! `-accel tcg -m <MiB> -nographic -monitor none -no-reboot -serial file:<log>
//!  -netdev user,id=n0,hostfwd=tcp:127.0.0.1:<p22>-:22,hostfwd=tcp:127.0.0.1:<p23>-:23
//!  -device virtio-net-pci,netdev=n0,romfile= -drive file=<drive>,format=raw,if=virtio,cache=<mode>`
//! (and a `hostfwd` more per [`BootOptions::forward_ports`]) with free
//! loopback ports picked per VM (a boot whose port was taken in the
//! meantime is retried with new ports). KVM is not used: guests do not boot
//! under it on the test machine (ARCHITECTURE.md section 7).
//!
//! Readiness (`wait_for_port22`) needs both the serial marker
//! `LIFEBOAT-GUEST-READY` and a real answer on port 22: QEMU's user-mode
//! network accepts a forwarded connection even when nothing listens in the
//! guest, so a bare `connect` proves nothing. Commands go to the guest's
//! one-line command server on port 23, which replies with the output and a
//! final `LIFEBOAT-RC=<status>` line. Dropping a `Vm` kills QEMU.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Result, TestVmError};
use crate::fixture::{try_guest_fixture, FAILED_MARKER, READY_MARKER};

/// The disk the guest boots from (attached as a virtio disk, format raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveSpec {
    /// A local raw image file.
    File(PathBuf),
    /// An `nfs://host/export/path` URL (QEMU's libnfs driver, qemu-block-extra).
    Nfs(String),
    /// An `nbd://host:port/export` URL.
    Nbd(String),
}

impl DriveSpec {
    /// A local raw file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        DriveSpec::File(path.into())
    }

    /// Parses an `nfs://` or `nbd://` URL.
    pub fn url(url: &str) -> Result<Self> {
        if url.starts_with("nfs://") {
            Ok(DriveSpec::Nfs(url.to_string()))
        } else if url.starts_with("nbd://") {
            Ok(DriveSpec::Nbd(url.to_string()))
        } else {
            Err(TestVmError::BadDrive {
                spec: url.to_string(),
                reason: "expected an nfs:// or nbd:// URL".into(),
            })
        }
    }

    /// The `file=` value for `-drive`, with commas doubled as QEMU requires.
    fn qemu_file(&self) -> Result<String> {
        let raw = match self {
            DriveSpec::File(p) => {
                if !p.is_file() {
                    return Err(TestVmError::BadDrive {
                        spec: p.display().to_string(),
                        reason: "no such file".into(),
                    });
                }
                p.to_str()
                    .ok_or_else(|| TestVmError::BadDrive {
                        spec: p.display().to_string(),
                        reason: "path is not UTF-8".into(),
                    })?
                    .to_string()
            }
            DriveSpec::Nfs(u) | DriveSpec::Nbd(u) => u.clone(),
        };
        Ok(raw.replace(',', ",,"))
    }
}

/// QEMU `cache=` mode of the drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// `cache=writeback` (QEMU's default).
    #[default]
    Writeback,
    /// `cache=none` (O_DIRECT on local files).
    None,
    /// `cache=writethrough`.
    Writethrough,
    /// `cache=directsync`.
    Directsync,
    /// `cache=unsafe` (flushes ignored).
    Unsafe,
}

impl CacheMode {
    fn as_str(self) -> &'static str {
        match self {
            CacheMode::Writeback => "writeback",
            CacheMode::None => "none",
            CacheMode::Writethrough => "writethrough",
            CacheMode::Directsync => "directsync",
            CacheMode::Unsafe => "unsafe",
        }
    }
}

/// Knobs of a boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Guest memory, MiB (default 256).
    pub memory_mib: u32,
    /// Drive cache mode (default writeback).
    pub cache: CacheMode,
    /// QEMU binary; default: the fixture's launcher (`try_guest_fixture().qemu`),
    /// or `$LIFEBOAT_QEMU` when set.
    pub qemu: Option<PathBuf>,
    /// Extra arguments appended to the QEMU command line.
    pub extra_args: Vec<String>,
    /// Timeout for one `run` command (default 60 s).
    pub command_timeout: Duration,
    /// More guest TCP ports to forward from free loopback ports
    /// ([`Vm::forwarded_port`] says which).
    pub forward_ports: Vec<u16>,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            memory_mib: 256,
            cache: CacheMode::Writeback,
            qemu: None,
            extra_args: Vec::new(),
            command_timeout: Duration::from_secs(60),
            forward_ports: Vec::new(),
        }
    }
}

/// Output of a command run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOutput {
    /// stdout and stderr of the command, merged.
    pub output: String,
    /// The command's exit status.
    pub status: i32,
}

/// A running guest. Dropping it kills QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    boot_started: Instant,
    log_dir: tempfile::TempDir,
    serial_log: PathBuf,
    stderr_log: PathBuf,
    ssh_port: u16,
    cmd_port: u16,
    /// (guest port, loopback port) of [`BootOptions::forward_ports`].
    forwarded: Vec<(u16, u16)>,
    command_timeout: Duration,
}

const BOOT_ATTEMPTS: usize = 3;

impl Vm {
    /// Starts QEMU on `drive` (boot timing starts here). Returns once QEMU has
    /// started; call [`Vm::wait_for_port22`] to wait for the guest.
    pub fn boot(drive: DriveSpec, opts: &BootOptions) -> Result<Vm> {
        let qemu = resolve_qemu(opts)?;
        let file = drive.qemu_file()?;
        let mut last_err = None;
        for _ in 0..BOOT_ATTEMPTS {
            match Self::boot_once(&qemu, &file, opts) {
                Ok(vm) => return Ok(vm),
                // Another process took one of our ports between probe and bind.
                Err(e @ TestVmError::QemuExited { .. })
                    if e.to_string().contains("host forwarding rule") =>
                {
                    last_err = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| TestVmError::GuestCommand {
            command: "boot".into(),
            reason: "no boot attempt was made".into(),
        }))
    }

    fn boot_once(qemu: &Path, file: &str, opts: &BootOptions) -> Result<Vm> {
        let log_dir = tempfile::Builder::new()
            .prefix("lifeboat-testvm.")
            .tempdir()
            .map_err(|e| TestVmError::io("creating a temporary log directory", e))?;
        let serial_log = log_dir.path().join("serial.log");
        let stderr_log = log_dir.path().join("qemu.stderr");
        let ssh_port = free_port()?;
        let cmd_port = free_port()?;
        let mut forwarded = Vec::with_capacity(opts.forward_ports.len());
        let mut netdev = format!(
            "user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22,hostfwd=tcp:127.0.0.1:{cmd_port}-:23"
        );
        for &guest in &opts.forward_ports {
            let host = free_port()?;
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            forwarded.push((guest, host));
        }
        let serial_arg = serial_log
            .to_str()
            .ok_or_else(|| TestVmError::BadDrive {
                spec: serial_log.display().to_string(),
                reason: "temporary directory path is not UTF-8".into(),
            })?
            .replace(',', ",,");
        let stderr_file = File::create(&stderr_log)
            .map_err(|e| TestVmError::io(format!("creating {}", stderr_log.display()), e))?;
        let mut cmd = Command::new(qemu);
        cmd.args(["-accel", "tcg", "-m"])
            .arg(opts.memory_mib.to_string())
            .args(["-nographic", "-monitor", "none", "-no-reboot", "-serial"])
            .arg(format!("file:{serial_arg}"))
            .arg("-netdev")
            .arg(netdev)
            .args(["-device", "virtio-net-pci,netdev=n0,romfile="])
            .arg("-drive")
            .arg(format!(
                "file={file},format=raw,if=virtio,cache={}",
                opts.cache.as_str()
            ))
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file);
        let boot_started = Instant::now();
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing_qemu(qemu),
            _ => TestVmError::io(format!("starting {}", qemu.display()), e),
        })?;
        let mut vm = Vm {
            child,
            boot_started,
            log_dir,
            serial_log,
            stderr_log,
            ssh_port,
            cmd_port,
            forwarded,
            command_timeout: opts.command_timeout,
        };
        // A bad argument or a taken port makes QEMU exit at once: report it here.
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_millis(300) {
            vm.check_running()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(vm)
    }

    /// Waits until the guest printed its ready marker and answers on port 22
    /// with its `SSH-` banner; returns the time since QEMU was started.
    pub fn wait_for_port22(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = self.boot_started + timeout;
        loop {
            self.check_running()?;
            let serial = self.serial_log();
            if serial.contains(FAILED_MARKER) {
                return Err(TestVmError::GuestFailed {
                    serial_tail: tail(&serial),
                });
            }
            if serial.contains(READY_MARKER) && self.port22_answers() {
                return Ok(self.boot_started.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(TestVmError::Timeout {
                    what: format!(
                        "the guest's port 22 (forwarded to 127.0.0.1:{})",
                        self.ssh_port
                    ),
                    waited: timeout,
                    serial_tail: tail(&serial),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn port22_answers(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.ssh_port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        if s.set_read_timeout(Some(Duration::from_secs(2))).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 4 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
        }
        got.starts_with(b"SSH-")
    }

    /// Runs one line of shell in the guest (via the port-23 command server)
    /// and returns its merged output and exit status.
    pub fn run(&mut self, command: &str) -> Result<GuestOutput> {
        let fail = |reason: String| TestVmError::GuestCommand {
            command: command.to_string(),
            reason,
        };
        if command.contains('\n') {
            return Err(fail(
                "the command server takes one line: no newlines".into(),
            ));
        }
        self.check_running()?;
        let raw = self
            .send_command(command)
            .map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let trimmed = text.trim_end_matches('\n');
        let (output, last) = match trimmed.rsplit_once('\n') {
            Some((out, last)) => (format!("{out}\n"), last),
            None => (String::new(), trimmed),
        };
        let status = last
            .strip_prefix("LIFEBOAT-RC=")
            .and_then(|s| s.trim().parse::<i32>().ok())
            .ok_or_else(|| {
                self.check_running().err().map_or_else(
                    || fail(format!("no exit status in the reply {text:?}")),
                    |e| fail(format!("no exit status in the reply {text:?}; {e}")),
                )
            })?;
        Ok(GuestOutput { output, status })
    }

    /// Like [`Vm::run`], but a non-zero exit status is an error; returns the output.
    pub fn run_ok(&mut self, command: &str) -> Result<String> {
        let out = self.run(command)?;
        if out.status != 0 {
            return Err(TestVmError::GuestCommand {
                command: command.to_string(),
                reason: format!("exit status {}; output: {}", out.status, out.output),
            });
        }
        Ok(out.output)
    }

    fn send_command(&self, command: &str) -> std::io::Result<Vec<u8>> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.cmd_port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(self.command_timeout))?;
        s.write_all(command.as_bytes())?;
        s.write_all(b"\n")?;
        s.shutdown(Shutdown::Write)?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        Ok(reply)
    }

    /// Cleanly stops the guest: `sync`, remount `/` read-only (checkpoints the
    /// ext4 journal, so the disk can be read with debugfs afterwards), `sync`,
    /// `poweroff -f`; then waits up to `timeout` for QEMU to exit. If it does
    /// not, QEMU is killed and [`TestVmError::ShutdownTimeout`] returned.
    pub fn shutdown(mut self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        // The reply never comes (the guest powers off mid-command): ignore it.
        let _ = self.send_command("sync; mount -o remount,ro /; sync; poweroff -f");
        while started.elapsed() < timeout {
            match self.child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(TestVmError::io("waiting for QEMU", e)),
            }
        }
        self.kill();
        Err(TestVmError::ShutdownTimeout { waited: timeout })
    }

    /// The serial console output so far.
    pub fn serial_log(&self) -> String {
        std::fs::read(&self.serial_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Directory holding `serial.log` and `qemu.stderr` (deleted with the Vm).
    pub fn log_dir(&self) -> &Path {
        self.log_dir.path()
    }

    /// Host port forwarded to the guest's port 22.
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// Host port forwarded to the guest's command server (port 23).
    pub fn command_port(&self) -> u16 {
        self.cmd_port
    }

    /// Sets the timeout of each later [`Vm::run`].
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.command_timeout = timeout;
    }

    /// The loopback port forwarded to `guest_port` (one of
    /// [`BootOptions::forward_ports`]).
    pub fn forwarded_port(&self, guest_port: u16) -> Option<u16> {
        self.forwarded
            .iter()
            .find(|(g, _)| *g == guest_port)
            .map(|(_, h)| *h)
    }

    /// When QEMU was started.
    pub fn boot_started(&self) -> Instant {
        self.boot_started
    }

    /// Errors with QEMU's stderr and the serial tail if QEMU has exited.
    fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(TestVmError::QemuExited {
                status: status.to_string(),
                stderr: std::fs::read_to_string(&self.stderr_log).unwrap_or_default(),
                serial_tail: tail(&self.serial_log()),
            }),
            Err(e) => Err(TestVmError::io("checking on QEMU", e)),
        }
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn resolve_qemu(opts: &BootOptions) -> Result<PathBuf> {
    if let Some(q) = &opts.qemu {
        return Ok(q.clone());
    }
    if let Some(q) = std::env::var_os("LIFEBOAT_QEMU").filter(|q| !q.is_empty()) {
        return Ok(PathBuf::from(q));
    }
    let fixture = try_guest_fixture()?;
    if fixture.qemu.exists() {
        Ok(fixture.qemu)
    } else {
        Err(missing_qemu(&fixture.qemu))
    }
}

fn missing_qemu(path: &Path) -> TestVmError {
    TestVmError::MissingTool {
        program: format!("qemu-system-x86_64 ({})", path.display()),
        hint: "install qemu-system-x86 qemu-utils (in one apt-get install), or let \
               scripts/build-test-guest.sh extract it"
            .into(),
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| TestVmError::io("binding 127.0.0.1:0 to find a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| TestVmError::io("reading a bound port", e))
}

/// The last 40 lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.len().saturating_sub(40);
    lines.get(start..).unwrap_or_default().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_urls_are_checked() {
        assert_eq!(
            DriveSpec::url("nbd://127.0.0.1:10809/guest").unwrap(),
            DriveSpec::Nbd("nbd://127.0.0.1:10809/guest".into())
        );
        assert!(matches!(
            DriveSpec::url("nfs://127.0.0.7/export/disk-flat.vmdk").unwrap(),
            DriveSpec::Nfs(_)
        ));
        let err = DriveSpec::url("http://x/y").unwrap_err();
        assert!(err.to_string().contains("nfs:// or nbd://"), "{err}");
    }

    #[test]
    fn commas_are_doubled_for_qemu() {
        let d = DriveSpec::Nbd("nbd://h:1/a,b".into());
        assert_eq!(d.qemu_file().unwrap(), "nbd://h:1/a,,b");
        let err = DriveSpec::file("/nonexistent/disk.raw")
            .qemu_file()
            .unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    fn tail_keeps_last_lines() {
        let log: String = (0..100).map(|i| format!("line{i}\n")).collect();
        let t = tail(&log);
        assert!(t.starts_with("line60"), "{t}");
        assert!(t.ends_with("line99"), "{t}");
        assert_eq!(tail(""), "");
    }

    #[test]
    fn missing_qemu_binary_says_how_to_install() {
        let opts = BootOptions {
            qemu: Some(PathBuf::from("/nonexistent/qemu-system-x86_64")),
            ..BootOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d.raw");
        std::fs::write(&disk, [0u8; 512]).unwrap();
        let err = Vm::boot(DriveSpec::file(&disk), &opts).unwrap_err();
        assert!(
            err.to_string()
                .contains("install qemu-system-x86 qemu-utils"),
            "{err}"
        );
    }
}
