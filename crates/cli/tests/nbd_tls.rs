//! `lifeboat nfs serve` and NBD over TLS through the real binary: NBD on an
//! address other than loopback without TLS is refused with an error naming
//! `--tls-cert`; with `--tls-cert/--tls-key/--tls-ca` on 0.0.0.0 a session's
//! NBD URL is `nbds://`, nbdinfo and nbdcopy (libnbd-bin) read the disk
//! bit-exact over TLS with a client certificate, and nothing in clear.
mod common;
use common::*;
use lifeboat_testsupport::pki::Pki;
use lifeboat_testsupport::{output, tool};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `lifeboat nfs serve ARGS` as a child; killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(repo: &Path, cache: &Path, log: &Path, extra: &[&str]) -> Serve {
    let child = lifeboat()
        .args(["nfs", "serve", "--repo", s(repo), "--cache-dir", s(cache)])
        .args(["--no-portmap", "--mount-port", "0", "--nfs-port", "0"])
        .args(["--nbd-port", "0", "--allow", "127.0.0.1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("starting lifeboat nfs serve");
    Serve(child)
}

#[test]
fn nbd_beyond_loopback_without_tls_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let log = dir.path().join("serve.log");
    let mut child = serve(
        &repo,
        &dir.path().join("ir"),
        &log,
        &["--listen", "0.0.0.0"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "nfs serve started NBD on 0.0.0.0 without TLS: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("--tls-cert FILE and --tls-key FILE") && err.contains("--no-nbd"),
        "{err}"
    );
}

#[test]
fn a_tls_service_on_every_address_serves_nbds_to_certified_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&{
        let p = dir.path().join("pki");
        std::fs::create_dir(&p).unwrap();
        p
    });
    let repo = init_repo(dir.path());
    let disk = dir.path().join("web01.raw");
    let bytes = make_disk(&disk, 4 << 20, 11);
    backup(&repo, "web01", &[("disk0", &disk)]);
    let cache = dir.path().join("ir");
    let log = dir.path().join("serve.log");
    let _srv = serve(
        &repo,
        &cache,
        &log,
        &[
            "--listen",
            "0.0.0.0",
            "--advertise",
            "127.0.0.1",
            "--tls-cert",
            s(&pki.server_cert),
            "--tls-key",
            s(&pki.server_key),
            "--tls-ca",
            s(&pki.ca),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run(&["instant-recovery", "list", "--cache-dir", s(&cache)])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "service not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = ok(&[
        "instant-recovery",
        "start",
        "web01@latest",
        "--nbd",
        "--cache-dir",
        s(&cache),
    ]);
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("nbds://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no nbds:// URL in:\n{text}"))
        .to_string();

    let tls_url = format!("{url}?tls-certificates={}", s(&pki.client_dir));
    let info = output(tool("nbdinfo", "libnbd-bin").arg("--json").arg(&tls_url));
    let json = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success(),
        "{json}{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["exports"][0]["export-size"], bytes.len() as u64, "{json}");

    let copy = dir.path().join("copy.raw");
    let r = output(tool("nbdcopy", "libnbd-bin").arg(&tls_url).arg(&copy));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        std::fs::read(&copy).unwrap() == bytes,
        "nbdcopy over TLS differs"
    );

    let plain = url.replacen("nbds://", "nbd://", 1);
    let r = output(tool("nbdinfo", "libnbd-bin").arg(&plain));
    assert!(!r.status.success(), "read in clear");
    let anon = format!("{url}?tls-certificates={}", s(&pki.anonymous_dir));
    let r = output(tool("nbdinfo", "libnbd-bin").arg(&anon));
    assert!(!r.status.success(), "read without a client certificate");
}
