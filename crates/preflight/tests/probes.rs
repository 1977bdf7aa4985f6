//! The probes against the real things: `openssl s_server` (TLS 1.3 with
//! the right CA, no CA, another CA, a TLS 1.1-only server, and a plain
//! TCP service), chronyd on a loopback port (and under faketime, ten
//! minutes ahead), QEMU's QMP socket, and TCP reachability.

use lifeboat_preflight::check::Outcome;
use lifeboat_preflight::ports::PortConfig;
use lifeboat_preflight::sntp::check_ntp;
use lifeboat_preflight::tcp::{reach, Reach};
use lifeboat_preflight::tls::check_tls;
use lifeboat_preflight::{qmp_probe, run_preflight, Check, PreflightOptions};
use lifeboat_testsupport::pki::Pki;
use lifeboat_testsupport::tools::{free_port, require_tool, tool};
use lifeboat_testvm::PausedQemu;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A child process started in its own process group (`spawn_group`),
/// the whole group killed on drop: `faketime` runs chronyd as its child.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` as the leader of a new process group.
fn spawn_group(cmd: &mut std::process::Command, what: &str) -> Killed {
    Killed(
        cmd.process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}")),
    )
}

/// `openssl s_server` on 127.0.0.1 with the test PKI's server certificate
/// and `extra` arguments, once it accepts connections.
fn s_server(pki: &Pki, extra: &[&str]) -> (Killed, String) {
    let port = free_port();
    let mut child = tool("openssl", "openssl");
    child
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&pki.server_cert)
        .arg("-key")
        .arg(&pki.server_key)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = spawn_group(&mut child, "openssl s_server");
    let target = format!("127.0.0.1:{port}");
    wait_for_tcp(&target);
    (server, target)
}

fn wait_for_tcp(target: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(target).is_err() {
        assert!(Instant::now() < deadline, "{target} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn expect(check: &Check, outcome: Outcome, words: &[&str]) {
    assert_eq!(check.outcome, outcome, "{check:?}");
    let text = format!("{} {}", check.detail, check.fix.clone().unwrap_or_default());
    for w in words {
        assert!(text.contains(w), "no {w:?} in {check:?}");
    }
}

#[test]
fn tls_passes_only_what_it_proved_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let (_server, target) = s_server(&pki, &[]);
    let ca = Some(pki.ca.as_path());
    expect(
        &check_tls("server", &target, ca, TIMEOUT),
        Outcome::Pass,
        &["TLS 1.3", "verified against"],
    );
    expect(
        &check_tls("server", &target, None, TIMEOUT),
        Outcome::Warn,
        &["not checked", "--ca"],
    );
    let rogue = dir.path().join("rogue-ca.pem");
    expect(
        &check_tls("server", &target, Some(rogue.as_path()), TIMEOUT),
        Outcome::Fail,
        &["not trusted"],
    );

    // A server that speaks only TLS 1.0/1.1 is refused.
    let (_old, old) = s_server(
        &pki,
        &["-no_tls1_3", "-no_tls1_2", "-cipher", "DEFAULT@SECLEVEL=0"],
    );
    expect(
        &check_tls("server", &old, ca, TIMEOUT),
        Outcome::Fail,
        &["TLS 1.2 or 1.3"],
    );

    // Plain HTTP on the port.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_target = plain.local_addr().unwrap().to_string();
    let http = std::thread::spawn(move || {
        let (mut s, _) = plain.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    expect(
        &check_tls("server", &plain_target, ca, TIMEOUT),
        Outcome::Fail,
        &["does not speak TLS"],
    );
    http.join().unwrap();

    // Nothing listening.
    let closed = format!("127.0.0.1:{}", free_port());
    expect(
        &check_tls("server", &closed, ca, TIMEOUT),
        Outcome::Fail,
        &["open TCP"],
    );
}

/// chronyd serving its own clock (`local stratum 8`, `-x`: it never sets
/// the system clock) on 127.0.0.1:`port`, under `faketime` when `offset`
/// is given.
fn chronyd(dir: &Path, port: u16, offset: Option<&str>) -> Killed {
    let conf = dir.join(format!("chrony-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\n\
             pidfile {}\n",
            dir.join(format!("chronyd-{port}.pid")).display()
        ),
    )
    .unwrap();
    let chronyd = require_tool("chronyd", "chrony");
    let mut cmd = match offset {
        Some(o) => {
            let mut c = tool("faketime", "faketime");
            c.args(["-f", o]).arg(chronyd);
            c
        }
        None => std::process::Command::new(chronyd),
    };
    cmd.args(["-d", "-x", "-u", "root", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_group(&mut cmd, "chronyd")
}

/// The check, asked again until chronyd answers (it starts in a moment).
fn ntp_check_when_up(target: &str, max_skew: f64) -> Check {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = check_ntp(target, max_skew, Duration::from_millis(500));
        let waiting = c.outcome == Outcome::Fail && !c.detail.contains("more than");
        if !waiting || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ntp_skew_is_measured_against_a_real_chronyd() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _ntp = chronyd(dir.path(), port, None);
    let target = format!("127.0.0.1:{port}");
    expect(
        &ntp_check_when_up(&target, 2.0),
        Outcome::Pass,
        &["stratum 8", "within 2 s"],
    );

    // Ten minutes ahead: this host's clock is 600 s behind.
    let ahead_port = free_port();
    let _ahead = chronyd(dir.path(), ahead_port, Some("+600s"));
    let ahead = ntp_check_when_up(&format!("127.0.0.1:{ahead_port}"), 2.0);
    expect(&ahead, Outcome::Fail, &["more than 2 s", "synchronize"]);
    assert!(
        ahead.detail.contains("-600.") || ahead.detail.contains("-599."),
        "{ahead:?}"
    );

    // Nobody there.
    let silent = format!("127.0.0.1:{}", free_port());
    expect(
        &check_ntp(&silent, 2.0, Duration::from_millis(500)),
        Outcome::Fail,
        &["UDP 123"],
    );
}

#[test]
fn qmp_names_the_qemu_version_and_a_wrong_socket() {
    let q = PausedQemu::start();
    expect(
        &qmp_probe::check_qmp(&q.qmp, TIMEOUT),
        Outcome::Pass,
        &["QEMU ", "answers QMP"],
    );
    expect(
        &qmp_probe::check_qmp(&q.dir.path().join("no-such.qmp"), TIMEOUT),
        Outcome::Fail,
        &["-qmp unix:"],
    );
}

#[test]
fn reach_tells_open_from_refused_from_unreachable() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = l.local_addr().unwrap().to_string();
    assert_eq!(reach(&open, TIMEOUT), Reach::Open);
    assert_eq!(
        reach(&format!("127.0.0.1:{}", free_port()), TIMEOUT),
        Reach::Refused
    );
    assert!(matches!(
        reach("no-such-host.invalid:22", TIMEOUT),
        Reach::Unreachable(_)
    ));
}

#[test]
fn the_guest_helper_port_passes_when_reachable_and_only_the_asked_probes_run() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let helper = l.local_addr().unwrap().port();
    let opts = PreflightOptions {
        guest: Some("127.0.0.1".into()),
        ports: PortConfig {
            guest_helper: helper,
            ..PortConfig::default()
        },
        timeout: TIMEOUT,
        ..PreflightOptions::default()
    };
    let checks = run_preflight(&opts);
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["guest SSH", "guest RDP", "guest helper"]);
    assert_eq!(checks[2].outcome, Outcome::Pass, "{:?}", checks[2]);
    assert!(run_preflight(&PreflightOptions::default()).is_empty());
}
