//! Agents against a real `lifeboat serve` on loopback (separate
//! processes, real TLS): an agent enrolls with a one-time secret of kind
//! agent, falls back to a free port when its port is taken and reports
//! it; only the server's own client certificate opens its API (none, a
//! proxy's or the agent's own is refused); a restore point of a GPT disk
//! with an ext4 partition is published on the agent through the API,
//! read at its mount path read-only, listed and unpublished (mounts and
//! loop devices gone); a viewer may list but not publish or unpublish;
//! an unknown agent is 404; a stopped agent is a clear error naming it
//! and its address; a scan through the API finds EICAR with ClamAV.
//! Publishing needs root, /dev/fuse and loop devices.

mod common;
#[path = "../../browse/tests/fixture/mod.rs"]
mod fixture;
#[path = "../../scan/tests/common/mod.rs"]
mod samples;

use common::server::{curl_tls, serve_new_repo, Server};
use common::*;
use lifeboat_testsupport::{free_port, tool};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A running `lifeboat agent`; killed on drop, after its publications
/// and scan sessions are cleaned up (publishers outlive the agent).
struct Agent {
    child: Option<Service>,
    data: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn cert(&self) -> (PathBuf, PathBuf) {
        (self.data.join("agent.pem"), self.data.join("agent.key"))
    }

    /// Kills the agent (its publishers run on).
    fn kill(&mut self) {
        self.child.take();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.child.take();
        for state in ["publications", "scans/state"] {
            let _ = lifeboat()
                .args(["unpublish", "--all", "--state-dir"])
                .arg(self.data.join(state))
                .output();
        }
    }
}

/// A one-time secret of `kind` from `server`.
fn secret(server: &Server, admin: &str, kind: &str) -> String {
    let created = json(&server.cli_ok(
        admin,
        &["proxy-enrollment", "create", "--kind", kind, "--json"],
    ));
    assert_eq!(created["enrollment"]["kind"], kind, "{created}");
    created["secret"].as_str().unwrap().to_string()
}

/// Starts `lifeboat agent` on `data` (enrolling as `name` with `secret`
/// if given) with `--port port` and `extra`, and waits until it serves.
fn start_agent(
    server: &Server,
    data: &Path,
    enroll: Option<(&str, &str)>,
    port: u16,
    extra: &[&str],
) -> Agent {
    let log = data.with_extension("log");
    let mut cmd = lifeboat();
    cmd.env("LIFEBOAT_SERVER", server.url())
        .env("LIFEBOAT_CA", server.ca())
        .env_remove("LIFEBOAT_TOKEN")
        .args(["agent", "--data-dir", s(data), "--port", &port.to_string()])
        .args(["--mount-root", s(&data.with_extension("mnt"))])
        .args(extra);
    if let Some((secret, name)) = enroll {
        cmd.args(["--enroll", secret, "--name", name]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .expect("starting lifeboat agent");
    let mut agent = Agent {
        child: Some(Service(child)),
        data: data.to_path_buf(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.log().contains("serving the server over mutual TLS") {
        let child = &mut agent.child.as_mut().unwrap().0;
        if let Some(st) = child.try_wait().unwrap() {
            panic!("lifeboat agent exited ({st}):\n{}", agent.log());
        }
        assert!(
            Instant::now() < deadline,
            "agent not ready:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent
}

/// The server's view of agent `name`.
fn listed(server: &Server, token: &str, name: &str) -> serde_json::Value {
    let list = json(&server.cli_ok(token, &["agent", "list", "--json"]));
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("agent {name} not listed: {list}"))
        .clone()
}

/// GET of the agent's publications with curl presenting `cert` (or
/// none): `Some((status, body))`, or `None` when TLS failed.
fn curl_agent(
    server: &Server,
    name: &str,
    port: u16,
    cert: Option<(&Path, &Path)>,
) -> Option<(u16, String)> {
    let url = format!("https://{name}:{port}/agent/v1/publications");
    let resolve = format!("{name}:{port}:127.0.0.1");
    curl_tls(
        &server.ca(),
        "GET",
        &url,
        cert,
        None,
        &["--resolve", &resolve],
    )
}

#[test]
fn an_agent_takes_a_free_port_when_its_own_is_taken_and_answers_the_server_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]);
    let admin = server.admin_token();

    // Its port taken: it listens on another, logs it, reports it.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let wanted = taken.local_addr().unwrap().port();
    let a1 = start_agent(
        &server,
        &dir.path().join("a1"),
        Some((&secret(&server, &admin, "agent"), "a1")),
        wanted,
        &[],
    );
    assert!(
        a1.log().contains(&format!("port {wanted} is taken")),
        "{}",
        a1.log()
    );
    let row = listed(&server, &admin, "a1");
    let port = row["port"].as_u64().unwrap() as u16;
    assert_ne!(port, wanted, "{row}");
    assert_eq!(row["host"], "127.0.0.1", "{row}");
    assert!(row["last_seen"].is_string(), "{row}");
    assert!(
        a1.log().contains(&format!("\"port\":{port}")),
        "{}",
        a1.log()
    );
    let mode = std::fs::metadata(a1.data.join("agent.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A free port given: that one.
    let free = free_port();
    let a2 = start_agent(
        &server,
        &dir.path().join("a2"),
        Some((&secret(&server, &admin, "agent"), "a2")),
        free,
        &[],
    );
    assert_eq!(listed(&server, &admin, "a2")["port"], free);

    // Only the server's own client certificate opens the agent's API.
    let tls = server.data.join("tls");
    let (cert, key) = (tls.join("client.pem"), tls.join("client.key"));
    assert_eq!(
        curl_agent(&server, "a1", port, Some((&cert, &key))),
        Some((200, "[]".to_string()))
    );
    assert_eq!(
        curl_agent(&server, "a1", port, None),
        None,
        "no certificate"
    );
    let (own_cert, own_key) = a2.cert();
    let (status, body) = curl_agent(&server, "a1", port, Some((&own_cert, &own_key))).unwrap();
    assert_eq!(status, 401, "another agent's certificate: {body}");
    let proxy_dir = dir.path().join("p1");
    let out = lifeboat()
        .env("LIFEBOAT_SERVER", server.url())
        .env("LIFEBOAT_CA", server.ca())
        .args(["proxy", "--check", "--data-dir", s(&proxy_dir)])
        .args([
            "--enroll",
            &secret(&server, &admin, "proxy"),
            "--name",
            "p1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (pc, pk) = (proxy_dir.join("proxy.pem"), proxy_dir.join("proxy.key"));
    let (status, body) = curl_agent(&server, "a1", port, Some((&pc, &pk))).unwrap();
    assert_eq!(status, 401, "a proxy's certificate: {body}");
    assert!(
        a1.log().contains("not the server's certificate"),
        "{}",
        a1.log()
    );
    // Nor does an agent secret enroll a proxy, or an agent certificate
    // open the proxy routes.
    let out = lifeboat()
        .env("LIFEBOAT_SERVER", server.url())
        .env("LIFEBOAT_CA", server.ca())
        .args(["proxy", "--check", "--data-dir", s(&dir.path().join("p2"))])
        .args([
            "--enroll",
            &secret(&server, &admin, "agent"),
            "--name",
            "p2",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(11),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A restarted agent needs no secret and reports again.
    drop(a1);
    let a1 = start_agent(&server, &dir.path().join("a1"), None, wanted, &[]);
    assert!(
        a1.log().contains("checked in with the server"),
        "{}",
        a1.log()
    );
    let (_, audit) = server.curl("GET", "/api/v1/audit", Some(&admin), None);
    assert!(audit.contains("agent.enroll"), "{audit}");
}

/// A GPT disk with one ext4 partition holding EICAR and a known
/// `/etc/hostname`, backed up as `web01` into `repo`: the restore point.
fn backed_up_disk(dir: &Path, repo: &Path) -> String {
    let tree = dir.join("tree");
    samples::make_infected_tree(&tree);
    let img = dir.join("part.ext4");
    fixture::mkfs_ext4(&tree, &img, 16);
    let disk = dir.join("web01.raw");
    fixture::gpt_disk(&disk, &[&img]);
    backup(repo, "web01", &[("disk0", &disk)])
}

/// Whether anything is mounted under `dir` (from /proc/mounts).
fn mounted_under(dir: &Path) -> Vec<String> {
    let dir = s(dir).to_string();
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

/// Loop devices whose backing file is under `dir`.
fn loops_under(dir: &Path) -> Vec<String> {
    let out = tool("losetup", "util-linux")
        .args(["-l", "-n", "-O", "NAME,BACK-FILE"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(s(dir)))
        .map(str::to_string)
        .collect()
}

/// No mount and no loop device left under `mount_root`, and nothing
/// listed by the server.
fn assert_nothing_published(server: &Server, admin: &str, mount_root: &Path) {
    let mounts = mounted_under(mount_root);
    assert!(mounts.is_empty(), "{mounts:?}");
    let loops = loops_under(mount_root);
    assert!(loops.is_empty(), "{loops:?}");
    let list = json(&server.cli_ok(admin, &["publication", "list", "--json"]));
    assert_eq!(list["publications"], serde_json::json!([]), "{list}");
}

fn require_root() {
    assert!(
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false),
        "publishing on an agent mounts filesystems: run the agent tests as root"
    );
}

#[test]
fn publish_read_unpublish_and_scan_on_an_agent_through_the_api() {
    require_root();
    samples::require_clamscan();
    let served = serve_new_repo(&[]);
    let (server, admin) = (&served.server, served.admin.as_str());
    let rp = backed_up_disk(&served.dir, &served.repo);
    let db = samples::make_clamav_db(&served.dir.join("db"));
    let port = free_port();
    let data = served.dir.join("a1");
    let mut agent = start_agent(
        server,
        &data,
        Some((&secret(server, admin, "agent"), "a1")),
        port,
        &["--clamav-db", s(&db)],
    );
    let mount_root = data.with_extension("mnt");
    let viewer = json(&server.cli_ok(admin, &["token", "create", "--role", "viewer", "--json"]))
        ["secret"]
        .as_str()
        .unwrap()
        .to_string();

    // A viewer may not publish; nobody may on an unknown agent.
    let e = server.cli_fails(11, &viewer, &["publish", "web01@latest", "--target", "a1"]);
    assert!(e.contains("operator"), "{e}");
    let e = server.cli_fails(5, admin, &["publish", "web01@latest", "--target", "nope"]);
    assert!(e.contains("agent \"nope\" not found"), "{e}");

    // Published on the agent's host: the files read back, read-only.
    let p = json(&server.cli_ok(
        admin,
        &["publish", "web01@latest", "--target", "a1", "--json"],
    ));
    assert_eq!(p["restore_point"], rp.as_str(), "{p}");
    assert_eq!(p["agent"], "a1");
    let id = p["id"].as_str().unwrap().to_string();
    let mount = p["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mounted"] == true && m["fstype"] == "ext4")
        .unwrap_or_else(|| panic!("no ext4 mount: {p}"));
    let at = PathBuf::from(mount["mount_point"].as_str().unwrap());
    assert!(at.starts_with(&mount_root), "{}", at.display());
    assert_eq!(std::fs::read(at.join("etc/hostname")).unwrap(), b"web01\n");
    assert_eq!(
        std::fs::read(at.join("tmp/eicar.com")).unwrap(),
        samples::EICAR
    );
    let e = std::fs::write(at.join("etc/new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(30), "EROFS: {e}");
    let line = mounted_under(&at).join("\n");
    assert!(line.contains(" ro,") || line.contains(" ro "), "{line}");
    assert!(!loops_under(&mount_root).is_empty());

    // Listed, for a viewer too; a viewer may not unpublish.
    let list = json(&server.cli_ok(&viewer, &["publication", "list", "--json"]));
    assert_eq!(list["publications"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["publications"][0]["alive"], true, "{list}");
    server.cli_fails(11, &viewer, &["publication", "delete", &id]);

    // Unpublished: mounts and loop devices gone.
    let out = server.cli_ok(admin, &["publication", "delete", &id]);
    assert!(out.contains(&format!("unpublished {id}")), "{out}");
    assert_nothing_published(server, admin, &mount_root);
    server.cli_fails(5, admin, &["publication", "delete", &id]);

    // A restarted agent keeps a publication whose publisher still runs,
    // and cleans up one whose publisher died with it.
    let p = json(&server.cli_ok(
        admin,
        &["publish", "web01@latest", "--target", "a1", "--json"],
    ));
    let session = p["session"].as_str().unwrap().to_string();
    agent.kill();
    let mut agent = start_agent(server, &data, None, port, &["--clamav-db", s(&db)]);
    let list = json(&server.cli_ok(admin, &["publication", "list", "--json"]));
    assert_eq!(
        list["publications"][0]["session"],
        session.as_str(),
        "{list}"
    );
    assert_eq!(list["publications"][0]["alive"], true, "{list}");
    agent.kill();
    let state =
        json(&std::fs::read_to_string(data.join(format!("publications/{session}.json"))).unwrap());
    let publisher = state["daemon_pid"].as_u64().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &publisher])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{publisher}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !mounted_under(&mount_root).is_empty(),
        "left mounted by the dead publisher"
    );
    let agent = start_agent(server, &data, None, port, &["--clamav-db", s(&db)]);
    assert!(
        agent
            .log()
            .contains("cleaned up what the previous run left"),
        "{}",
        agent.log()
    );
    assert_nothing_published(server, admin, &mount_root);

    // Scanned on the agent: EICAR found by ClamAV, exit 7.
    let out = server.cli(admin, &["scan", "web01@latest", "--target", "a1", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{stdout}\n{}\nagent log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    let report = json(&stdout);
    assert_eq!(report["state"], "infected", "{report}");
    let found = report["detections"].as_array().unwrap();
    assert!(
        found
            .iter()
            .any(|d| d["path"] == "/tmp/eicar.com" && d["engine"] == "clamav"),
        "{report}"
    );
    assert!(mounted_under(&data.join("scans")).is_empty());
    let (_, audit) = server.curl("GET", "/api/v1/audit", Some(admin), None);
    for action in ["publication.create", "publication.delete", "scan.run"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }

    // The agent stopped: a clear error naming it and its address.
    let mut agent = agent;
    agent.kill();
    let e = server.cli_fails(1, admin, &["publish", "web01@latest", "--target", "a1"]);
    assert!(
        e.contains(&format!("agent a1 at 127.0.0.1:{port}")) && e.contains("not reachable"),
        "{e}"
    );
    let list = json(&server.cli_ok(admin, &["publication", "list", "--json"]));
    assert_eq!(list["unreachable"][0]["agent"], "a1", "{list}");
}
