//! `lifeboat serve` as a separate process on a loopback port for the
//! server tests: start it, run the CLI and curl against it, stop it.

use super::{init_repo, lifeboat, s, Service};
use lifeboat_testsupport::{free_port, tool};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `lifeboat serve` on 127.0.0.1:<free port>; killed on drop.
pub struct Server {
    pub child: Service,
    pub data: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    /// The address it listens on (127.0.0.1 unless [`Server::start_at`]).
    pub host: String,
}

impl Server {
    /// Starts the server on `data` with `extra` arguments and waits until
    /// it answers TLS.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_with(lifeboat(), data, extra)
    }

    /// [`Server::start`] through `cmd` (`lifeboat`, or a wrapper such as
    /// faketime that runs it), to which `serve ...` is appended.
    pub fn start_with(cmd: Command, data: &Path, extra: &[&str]) -> Server {
        Server::start_at(cmd, "127.0.0.1", data, extra)
    }

    /// [`Server::start_with`] listening on `host` (an address of this
    /// machine's, e.g. one end of a veth pair).
    pub fn start_at(mut cmd: Command, host: &str, data: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let log = data.with_extension(format!("{port}.log"));
        let child = cmd
            .args(["serve", "--listen", &format!("{host}:{port}")])
            .args(["--data-dir", s(data)])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            // A group of its own: a wrapper (faketime forks the server)
            // is killed with everything it started.
            .process_group(0)
            .spawn()
            .expect("starting lifeboat serve");
        let mut server = Server {
            child: Service(child),
            data: data.to_path_buf(),
            log,
            port,
            host: host.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.log().contains("serving HTTPS") {
            if let Some(st) = server.child.0.try_wait().unwrap() {
                panic!("lifeboat serve exited ({st}):\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "server not ready:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self) -> String {
        let host = if self.host == "127.0.0.1" {
            "localhost"
        } else {
            &self.host
        };
        format!("https://{host}:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.data.join("tls/ca.pem")
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `lifeboat args...` against this server with `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        lifeboat()
            .env("LIFEBOAT_SERVER", self.url())
            .env("LIFEBOAT_CA", self.ca())
            .env("LIFEBOAT_TOKEN", token)
            .args(args)
            .output()
            .expect("running lifeboat")
    }

    /// Like [`Server::cli`], failing the test unless it exits 0; stdout.
    pub fn cli_ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.cli(token, args);
        assert!(
            out.status.success(),
            "lifeboat {args:?} failed ({}):\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Like [`Server::cli`], expecting exit `code`; stderr.
    pub fn cli_fails(&self, code: i32, token: &str, args: &[&str]) -> String {
        let out = self.cli(token, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "lifeboat {args:?}: {stderr}");
        stderr
    }

    /// `POST /api/v1/jobs/{job}/run` with `token`: the queued session's id
    /// (the test fails unless it answers 202).
    pub fn run_job(&self, token: &str, job: &str) -> i64 {
        let (status, body) = self.curl(
            "POST",
            &format!("/api/v1/jobs/{job}/run"),
            Some(token),
            None,
        );
        assert_eq!(status, 202, "{body}");
        super::json(&body)["id"].as_i64().unwrap()
    }

    /// One request with curl: (status, body).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, String) {
        let mut args = Vec::new();
        if let Some(t) = token {
            args.extend(["-H".to_string(), format!("Authorization: Bearer {t}")]);
        }
        let body = body.map(|b| ("application/json", b));
        self.curl_with(method, path, &args, body)
    }

    /// One request with curl and `args` (a client certificate, headers),
    /// `body` with its content type: (status, body).
    pub fn curl_with(
        &self,
        method: &str,
        path: &str,
        args: &[String],
        body: Option<(&str, &[u8])>,
    ) -> (u16, String) {
        let mut cmd = tool("curl", "curl");
        cmd.args(["-sS", "--cacert", s(&self.ca()), "-X", method])
            .args(["-o", "-", "-w", "\n%{http_code}"])
            .args(args);
        if let Some((content_type, _)) = body {
            cmd.args(["-H", &format!("Content-Type: {content_type}")])
                .args(["--data-binary", "@-"]);
        }
        let mut child = cmd
            .arg(format!("{}{path}", self.url()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(body.map(|b| b.1).unwrap_or_default())
            .unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').expect("curl printed the status");
        if status == "000" {
            panic!(
                "curl {method} {path}: no answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let status = status
            .parse()
            .unwrap_or_else(|_| panic!("curl: {}", String::from_utf8_lossy(&out.stderr)));
        (status, body.to_string())
    }

    /// Sends `signal` and returns the exit status.
    pub fn stop_with(mut self, signal: &str) -> std::process::ExitStatus {
        let log = self.log.clone();
        self.child
            .signal_and_wait(signal, || std::fs::read_to_string(&log).unwrap_or_default())
    }
}

/// One request with curl trusting `ca`, presenting `cert` (certificate,
/// key) and `token` if given, with `extra` curl arguments: `Some((status,
/// body))`, or `None` when the TLS handshake failed.
pub fn curl_tls(
    ca: &Path,
    method: &str,
    url: &str,
    cert: Option<(&Path, &Path)>,
    token: Option<&str>,
    extra: &[&str],
) -> Option<(u16, String)> {
    let mut cmd = tool("curl", "curl");
    cmd.args(["-sS", "--cacert", s(ca), "-X", method])
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(extra);
    if let Some((c, k)) = cert {
        cmd.args(["--cert", s(c), "--key", s(k)]);
    }
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n')?;
    match status {
        "000" => None,
        s => Some((s.parse().unwrap(), body.to_string())),
    }
}

/// A fresh repository in a temporary directory, served as `main` by a
/// server started with `--repo main=... --retry-base-secs 1`, the
/// temporary directory as its one `--source-root`, and `extra`.
pub struct ServedRepo {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub repo: PathBuf,
    pub server: Server,
    pub admin: String,
}

pub fn serve_new_repo(extra: &[&str]) -> ServedRepo {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let repo = init_repo(&dir);
    let repo_arg = format!("main={}", s(&repo));
    let mut args = vec![
        "--repo",
        &repo_arg,
        "--retry-base-secs",
        "1",
        "--source-root",
        s(&dir),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&dir.join("data"), &args);
    let admin = server.admin_token();
    ServedRepo {
        tmp,
        dir,
        repo,
        server,
        admin,
    }
}
