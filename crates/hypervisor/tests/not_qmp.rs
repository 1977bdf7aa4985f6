//! A QMP socket that is missing or not QEMU fails with a clear error.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use lifeboat_hypervisor::{HypervisorError, QmpClient};

#[test]
fn a_missing_socket_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web01.qmp");
    let err = QmpClient::connect(&path).unwrap_err();
    assert!(matches!(err, HypervisorError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("web01.qmp") && msg.contains("No such file"),
        "{msg}"
    );
}

#[test]
fn a_socket_that_is_not_qmp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A server that greets with something else.
    let path = dir.path().join("chatty.sock");
    let l = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let err = QmpClient::connect(&path).unwrap_err();
    t.join().unwrap();
    assert!(matches!(err, HypervisorError::NotQmp { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not a QEMU QMP socket") && err.to_string().contains("SSH-2.0"),
        "{err}"
    );

    // A server that says nothing: bounded by the timeout.
    let path = dir.path().join("silent.sock");
    let l = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (_s, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    });
    let t0 = Instant::now();
    let err = QmpClient::connect_with_timeout(&path, Duration::from_millis(500)).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("no QMP greeting within"), "{err}");
    t.join().unwrap();

    // A server that closes at once.
    let path = dir.path().join("closing.sock");
    let l = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || drop(l.accept().unwrap()));
    let err = QmpClient::connect(&path).unwrap_err();
    t.join().unwrap();
    assert!(err.to_string().contains("without a QMP greeting"), "{err}");
}
