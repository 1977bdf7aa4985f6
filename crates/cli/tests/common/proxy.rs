//! Proxies against a real `lifeboat serve` for the proxy tests: a
//! served repository, proxies enrolled and pulling work as processes of
//! their own (without the repository's passphrase), jobs, runs and
//! sessions.

use super::server::{serve_new_repo, Server};
use super::{json, lifeboat, s, Service};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct Setup {
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub repo: PathBuf,
    pub server: Server,
    pub admin: String,
}

/// A fresh repository served with 4 s proxy leases.
pub fn setup() -> Setup {
    let served = serve_new_repo(&["--proxy-lease-secs", "4"]);
    Setup {
        _dir: served.tmp,
        dir: served.dir,
        repo: served.repo,
        server: served.server,
        admin: served.admin,
    }
}

impl Setup {
    /// Enrolls proxy `name` (its files in `dir/name`) and starts it
    /// pulling work: the process.
    pub fn proxy(&self, name: &str, max_jobs: &str) -> Service {
        let dir = self.enroll(name);
        let mut run = lifeboat();
        self.proxy_env(&mut run);
        let child = run
            .args(["proxy", "--data-dir", s(&dir), "--max-jobs", max_jobs])
            .args(["--source-root", s(&self.dir)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        Service(child)
    }

    /// Enrolls proxy `name` without starting it: its folder (certificate
    /// `proxy.pem`, key `proxy.key`).
    pub fn enroll(&self, name: &str) -> PathBuf {
        let created = json(
            &self
                .server
                .cli_ok(&self.admin, &["proxy-enrollment", "create", "--json"]),
        );
        let dir = self.dir.join(name);
        let secret = created["secret"].as_str().unwrap();
        let mut enroll = lifeboat();
        self.proxy_env(&mut enroll);
        let out = enroll
            .args(["proxy", "--check", "--data-dir", s(&dir)])
            .args(["--enroll", secret, "--name", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        dir
    }

    /// A proxy's environment: the server, its CA, and neither a token
    /// nor the repository's passphrase (a proxy needs neither it nor the
    /// repository's path).
    fn proxy_env(&self, cmd: &mut std::process::Command) {
        cmd.env("LIFEBOAT_SERVER", self.server.url())
            .env("LIFEBOAT_CA", self.server.ca())
            .env_remove("LIFEBOAT_TOKEN")
            .env_remove("LIFEBOAT_PASSPHRASE");
    }

    pub fn job(&self, name: &str, image: &Path, extra: &[&str]) {
        let source = format!("disk0=raw:{}", s(image));
        let mut args = vec!["job", "create", name, "--repo-name", "main"];
        args.extend(["--source", &source]);
        args.extend_from_slice(extra);
        self.server.cli_ok(&self.admin, &args);
    }

    pub fn run(&self, job: &str) -> i64 {
        self.server.run_job(&self.admin, job)
    }

    pub fn session(&self, id: i64) -> serde_json::Value {
        json(
            &self
                .server
                .cli_ok(&self.admin, &["session", "show", &id.to_string(), "--json"]),
        )
    }

    pub fn sessions(&self, job: &str) -> Vec<serde_json::Value> {
        let out = self
            .server
            .cli_ok(&self.admin, &["session", "list", "--job", job, "--json"]);
        json(&out).as_array().unwrap().clone()
    }

    /// Polls `what` until it gives `Some`, for up to 90 s.
    pub fn until<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}\nserver log:\n{}\nproxy logs:\n{}\n{}",
                self.server.log(),
                std::fs::read_to_string(self.dir.join("p1.log")).unwrap_or_default(),
                std::fs::read_to_string(self.dir.join("p2.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn ended(&self, id: i64) -> serde_json::Value {
        self.until(&format!("session {id} to end"), || {
            let s = self.session(id);
            (s["state"] == "succeeded" || s["state"] == "failed").then_some(s)
        })
    }

    /// The server's metric `name` (with its labels, as printed).
    pub fn metric(&self, name: &str) -> u64 {
        let (status, text) = self.server.curl("GET", "/metrics", Some(&self.admin), None);
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }
}

/// The staged (`.tmp-*`) chunk files in the repository's chunk folders.
pub fn staged_chunks(repo: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(repo.join("chunks"))
        .unwrap()
        .flat_map(|prefix| super::temp_files(&prefix.unwrap().path()))
        .collect()
}

/// Whether process `pid` has `name` in its environment.
pub fn has_env(pid: u32, name: &str) -> bool {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|&b| b == 0)
        .any(|kv| kv.starts_with(format!("{name}=").as_bytes()))
}

/// The files process `pid` has open under `dir`.
pub fn open_under(pid: u32, dir: &Path) -> Vec<PathBuf> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.starts_with(dir))
        .collect()
}
