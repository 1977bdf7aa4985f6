//! The helper binary on this host (no guest): a pinned proxy runs scripts
//! (output streamed, exit status, a hanging script killed with its process
//! group at the timeout), quits, and the helper removes its directory; a
//! server certificate that is not the pinned one, a client certificate that
//! is not the pinned one, and a client without one (`openssl s_client`) are
//! refused by real TLS handshakes; nobody connecting ends the helper at its
//! idle timeout.

use lifeboat_testsupport::free_port;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_guest_helper::layout::{
    HELPER_CERT, HELPER_KEY, POST_THAW, PRE_FREEZE, PROXY_CERT, TLS_NAME,
};
use lifeboat_guest_helper::pin::{client_config, is_pin_failure, tls_error, Identity};
use lifeboat_guest_helper::wire::{
    read_message, write_message, Phase, Reply, Request, ScriptEnd, Stream, WireError,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

fn identity() -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![TLS_NAME.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Identity {
        cert: cert.der().to_vec(),
        key: key.serialize_der(),
    }
}

struct Helper {
    child: Child,
    _parent: tempfile::TempDir,
    dir: PathBuf,
    port: u16,
    helper: Identity,
    proxy: Identity,
}

/// The helper in a fresh `lifeboat-helper-*` directory with `scripts`.
fn start(scripts: &[(&str, &str)], idle_secs: u64) -> Helper {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("lifeboat-helper-test");
    std::fs::create_dir(&dir).unwrap();
    let (helper, proxy) = (identity(), identity());
    std::fs::write(dir.join(HELPER_CERT), &helper.cert).unwrap();
    std::fs::write(dir.join(HELPER_KEY), &helper.key).unwrap();
    std::fs::write(dir.join(PROXY_CERT), &proxy.cert).unwrap();
    for (name, body) in scripts {
        std::fs::write(dir.join(name), body).unwrap();
    }
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_lifeboat-guest-helper"))
        .arg("--dir")
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--idle-timeout", &idle_secs.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the helper never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    Helper {
        child,
        _parent: parent,
        dir,
        port,
        helper,
        proxy,
    }
}

impl Helper {
    /// Waits for the helper to exit; its stderr.
    fn wait(mut self, within: Duration) -> (std::process::ExitStatus, String, PathBuf) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the helper did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err, self.dir.clone())
    }
}

type Session = StreamOwned<ClientConnection, TcpStream>;

/// Handshake and the helper's Hello.
fn connect(port: u16, tls: Arc<ClientConfig>) -> Result<Session, WireError> {
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let conn = ClientConnection::new(tls, ServerName::try_from(TLS_NAME).unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    match read_message::<Reply>(&mut s)? {
        Reply::Hello => Ok(s),
        other => panic!("expected Hello, got {other:?}"),
    }
}

fn run(s: &mut Session, phase: Phase, timeout: Duration) -> (Vec<(Stream, String)>, ScriptEnd) {
    write_message(s, &Request::Run { phase, timeout }).unwrap();
    let mut lines = Vec::new();
    loop {
        match read_message::<Reply>(s).unwrap() {
            Reply::Line { stream, text } => lines.push((stream, text)),
            Reply::End(end) => return (lines, end),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn pin_failure(e: &WireError) -> bool {
    matches!(e, WireError::Io(io) if tls_error(io).is_some_and(is_pin_failure))
}

#[test]
fn a_pinned_proxy_runs_the_scripts_and_the_helper_removes_itself() {
    let pidfile = tempfile::NamedTempFile::new().unwrap();
    let hang = format!(
        "#!/bin/sh\necho going to hang\nsleep 300 &\necho $! > {}\nwait\n",
        pidfile.path().display()
    );
    let h = start(
        &[
            (
                PRE_FREEZE,
                "#!/bin/sh\necho one\necho two >&2\nprintf 'no newline'\nexit 3\n",
            ),
            (POST_THAW, &hang),
        ],
        30,
    );
    let tls = client_config(&h.proxy, &h.helper.cert).unwrap();
    let mut s = connect(h.port, tls).unwrap();

    let (lines, end) = run(&mut s, Phase::PreFreeze, Duration::from_secs(20));
    assert_eq!(end, ScriptEnd::Exited(3));
    assert!(lines.contains(&(Stream::Stdout, "one".into())), "{lines:?}");
    assert!(lines.contains(&(Stream::Stderr, "two".into())), "{lines:?}");
    assert!(
        lines.contains(&(Stream::Stdout, "no newline".into())),
        "{lines:?}"
    );

    let t0 = Instant::now();
    let (lines, end) = run(&mut s, Phase::PostThaw, Duration::from_secs(1));
    let took = t0.elapsed();
    assert_eq!(
        end,
        ScriptEnd::TimedOut(Duration::from_secs(1)),
        "{lines:?}"
    );
    assert_eq!(lines, vec![(Stream::Stdout, "going to hang".to_string())]);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The background sleep was in the script's process group: killed too.
    let pid = std::fs::read_to_string(pidfile.path()).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(
            Instant::now() < deadline,
            "sleep {pid} survived the timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    write_message(&mut s, &Request::Quit).unwrap();
    assert_eq!(read_message::<Reply>(&mut s).unwrap(), Reply::Bye);
    let (status, log, dir) = h.wait(Duration::from_secs(10));
    assert!(status.success(), "{status}: {log}");
    assert!(!dir.exists(), "the helper left {}: {log}", dir.display());
}

#[test]
fn a_helper_certificate_that_is_not_the_pinned_one_is_refused() {
    let h = start(&[], 30);
    let other = identity();
    let tls = client_config(&h.proxy, &other.cert).unwrap();
    let err = connect(h.port, tls).expect_err("a handshake with the wrong pin");
    assert!(pin_failure(&err), "{err:?}");
    // The helper is still there for the real proxy.
    let tls = client_config(&h.proxy, &h.helper.cert).unwrap();
    let mut s = connect(h.port, tls).unwrap();
    write_message(&mut s, &Request::Quit).unwrap();
    assert_eq!(read_message::<Reply>(&mut s).unwrap(), Reply::Bye);
    let (status, log, _) = h.wait(Duration::from_secs(10));
    assert!(status.success(), "{log}");
}

#[test]
fn a_client_without_the_pinned_certificate_is_refused() {
    let h = start(&[(PRE_FREEZE, "#!/bin/sh\necho ran\n")], 30);
    // A client certificate that is not the pinned one.
    let stranger = identity();
    let tls = client_config(&stranger, &h.helper.cert).unwrap();
    let err = connect(h.port, tls).expect_err("refused");
    assert!(pin_failure(&err), "{err:?}");

    // openssl s_client without a client certificate.
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", h.port)])
        .args(["-servername", TLS_NAME, "-ign_eof"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e} (apt-get install openssl)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("alert certificate required") || text.contains("handshake failure"),
        "{text}"
    );

    // Neither ran anything; the pinned proxy still can.
    let tls = client_config(&h.proxy, &h.helper.cert).unwrap();
    let mut s = connect(h.port, tls).unwrap();
    let (lines, end) = run(&mut s, Phase::PreFreeze, Duration::from_secs(10));
    assert_eq!((lines.len(), end), (1, ScriptEnd::Exited(0)));
    drop(s);
    let (_, log, dir) = h.wait(Duration::from_secs(10));
    assert!(
        log.contains("invalid peer certificate") && log.contains("peer sent no certificates"),
        "{log}"
    );
    assert!(!dir.exists(), "{log}");
}

#[test]
fn nobody_connecting_ends_the_helper_at_its_idle_timeout() {
    let h = start(&[], 1);
    let t0 = Instant::now();
    let (status, log, dir) = h.wait(Duration::from_secs(10));
    assert!(!status.success(), "{log}");
    assert!(log.contains("no pinned proxy connected"), "{log}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(!dir.exists(), "{log}");
}

#[test]
fn a_directory_not_named_lifeboat_helper_is_refused_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat-guest-helper"))
        .arg("--dir")
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lifeboat-helper-*"));
    assert!(Path::new(d.path()).exists());
}
