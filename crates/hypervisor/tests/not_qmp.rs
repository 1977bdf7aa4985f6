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

/// A QMP peer that greets as `version` and answers every command with an
/// empty return: enough to reach the version gate of fleecing.
fn fake_qmp(path: &std::path::Path, version: (u32, u32, u32)) -> std::thread::JoinHandle<()> {
    use std::io::{BufRead, BufReader};
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        writeln!(
            w,
            r#"{{"QMP": {{"version": {{"qemu": {{"major": {}, "minor": {}, "micro": {}}}, "package": ""}}, "capabilities": []}}}}"#,
            version.0, version.1, version.2
        )
        .unwrap();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let mut reply = serde_json::json!({"return": {}});
            if let Some(id) = v.get("id") {
                reply["id"] = id.clone();
            }
            if writeln!(w, "{reply}").is_err() {
                break;
            }
        }
    })
}

#[test]
fn a_qemu_too_old_for_fleecing_is_named_with_the_version_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.qmp");
    let t = fake_qmp(&path, (5, 1, 0));
    let c = QmpClient::connect(&path).unwrap();
    assert_eq!(c.version().to_string(), "5.1.0");
    let opts = lifeboat_hypervisor::FleeceOptions {
        work_dir: dir.path().to_path_buf(),
        nbd_socket: dir.path().join("nbd.sock"),
        job_timeout: Duration::from_secs(5),
        method: None,
    };
    let err = lifeboat_hypervisor::Fleece::start(&c, &[], &opts).unwrap_err();
    assert!(matches!(err, HypervisorError::TooOld { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("QEMU 5.1.0") && msg.contains("fleecing") && msg.contains(">= 5.2"),
        "{msg}"
    );
    drop(c);
    t.join().unwrap();
}
