//! End-to-end tests of the harness: the test guest boots under TCG from its
//! local raw file and from an `nbd://` URL served by qemu-nbd, answers on port
//! 22, writes a file on request, and the file is on its disk after shutdown.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lifeboat_testsupport::{serial, tool};
use lifeboat_testvm::{read_guest_file, try_guest_fixture, BootOptions, DriveSpec, Vm};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A private copy of the pristine guest image (the guest writes to it).
fn guest_copy(dir: &Path) -> (PathBuf, u64) {
    let fixture = try_guest_fixture().unwrap_or_else(|e| panic!("test guest: {e}"));
    let copy = dir.join("guest.raw");
    std::fs::copy(&fixture.image, &copy).expect("copy guest image");
    (copy, fixture.partition_offset)
}

/// Writes `content` to `/lifeboat-marker` in the guest and checks it reads back.
fn write_marker(vm: &mut Vm, content: &str) {
    let out = vm
        .run_ok(&format!(
            "echo {content} > /lifeboat-marker && sync && cat /lifeboat-marker"
        ))
        .expect("guest command");
    assert_eq!(out, format!("{content}\n"));
}

#[test]
fn boots_from_local_file_and_writes_to_its_disk() {
    // TCG is CPU-bound and the machine has 2 cores: one guest at a time.
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let (disk, offset) = guest_copy(dir.path());

    let mut vm = Vm::boot(DriveSpec::file(&disk), &BootOptions::default()).expect("boot");
    let boot_time = vm.wait_for_port22(BOOT_TIMEOUT).expect("port 22");
    println!("boot time (local raw file, TCG): {boot_time:?}");
    assert!(vm.serial_log().contains("LIFEBOAT-GUEST-READY"));

    let uname = vm.run("uname -r; false").expect("guest command");
    assert!(uname.output.contains("cloud-amd64"), "{uname:?}");
    assert_eq!(uname.status, 1, "{uname:?}");
    assert!(vm.run("a\nb").is_err(), "multi-line commands are refused");

    write_marker(&mut vm, "lifeboat-local-42");
    vm.shutdown(SHUTDOWN_TIMEOUT).expect("clean shutdown");

    let on_disk = read_guest_file(&disk, offset, "/lifeboat-marker").expect("debugfs");
    assert_eq!(on_disk, b"lifeboat-local-42\n");
    let missing = read_guest_file(&disk, offset, "/no-such-file");
    assert!(missing.is_err(), "{missing:?}");
}

/// qemu-nbd serving a raw file read-write on a loopback port; killed on drop.
struct QemuNbd {
    child: Child,
    port: u16,
}

impl QemuNbd {
    fn start(image: &Path) -> QemuNbd {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tool("qemu-nbd", "qemu-utils")
            .args(["-f", "raw", "-x", "guest", "-b", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("--persistent")
            .arg("--cache=writeback")
            .arg(image)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("qemu-nbd: {e} (apt-get install qemu-utils)");
            });
        let mut server = QemuNbd { child, port };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("qemu-nbd exited early: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "qemu-nbd did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn boots_from_nbd_url_served_by_qemu_nbd() {
    // TCG is CPU-bound and the machine has 2 cores: one guest at a time.
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let (disk, offset) = guest_copy(dir.path());
    let server = QemuNbd::start(&disk);

    let url = format!("nbd://127.0.0.1:{}/guest", server.port);
    let drive = DriveSpec::url(&url).unwrap();
    assert!(matches!(drive, DriveSpec::Nbd(_)));
    let mut vm = Vm::boot(drive, &BootOptions::default()).expect("boot");
    let boot_time = vm.wait_for_port22(BOOT_TIMEOUT).expect("port 22");
    println!("boot time ({url}, qemu-nbd, TCG): {boot_time:?}");

    write_marker(&mut vm, "lifeboat-nbd-7");
    vm.shutdown(SHUTDOWN_TIMEOUT).expect("clean shutdown");
    server.stop();

    let on_disk = read_guest_file(&disk, offset, "/lifeboat-marker").expect("debugfs");
    assert_eq!(on_disk, b"lifeboat-nbd-7\n");
}

#[test]
fn wait_for_port22_reports_a_guest_that_never_boots() {
    // TCG is CPU-bound and the machine has 2 cores: one guest at a time.
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.raw");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    let mut vm = Vm::boot(DriveSpec::file(&blank), &BootOptions::default()).expect("boot");
    let err = vm.wait_for_port22(Duration::from_secs(3)).unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
}
