//! The proxy on another host that no one can dial: a network namespace
//! joined to this one by a veth pair, whose firewall (nftables) drops every
//! inbound connection and keeps only the replies to connections it opened.
//! The proxy enrolls, pulls work, reports and finishes a job from there,
//! so every connection between proxy and server is the proxy's own (the
//! seed's "unidirectional" proxy); the server never dials it.
mod common;
use common::server::Server;
use common::*;
use lifeboat_testsupport::{require_root, tool};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A network namespace and its veth pair; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn exec(&self) -> Command {
        let mut cmd = tool("ip", "iproute2");
        cmd.args(["netns", "exec", &self.name]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes namespace `lbpx<n>` with `ns_ip/30` inside and `host_ip/30` on
/// this side, inbound connections into it dropped.
fn firewalled_netns(n: u32, host_ip: &str, ns_ip: &str) -> Netns {
    require_root("ip netns, veth pairs, nftables");
    tool("nft", "nftables");
    let ns = Netns {
        name: format!("lbpx{n}"),
    };
    let (host_if, ns_if) = (format!("lbh{n}"), format!("lbn{n}"));
    let ip = |args: &[&str]| run_ok(tool("ip", "iproute2").args(args), &args.join(" "));
    // A namespace left by a killed run of this test (usually none).
    let _ = Command::new("ip")
        .args(["netns", "del", &ns.name])
        .stderr(Stdio::null())
        .status();
    ip(&["netns", "add", &ns.name]);
    ip(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
    ]);
    ip(&["link", "set", &ns_if, "netns", &ns.name]);
    ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
    ip(&["link", "set", &host_if, "up"]);
    for args in [
        vec!["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if],
        vec!["ip", "link", "set", &ns_if, "up"],
        vec!["ip", "link", "set", "lo", "up"],
        vec![
            "nft",
            "add table inet lifeboat_test; \
             add chain inet lifeboat_test input { type filter hook input priority 0; policy drop; }; \
             add rule inet lifeboat_test input iif lo accept; \
             add rule inet lifeboat_test input ct state established,related accept",
        ],
    ] {
        run_ok(ns.exec().args(&args), &args.join(" "));
    }
    ns
}

#[test]
fn a_proxy_nobody_can_dial_runs_a_job_over_its_own_connections() {
    let n = std::process::id() % 200 + 20;
    let (host_ip, ns_ip) = (format!("10.213.{n}.1"), format!("10.213.{n}.2"));
    let ns = firewalled_netns(n, &host_ip, &ns_ip);

    // Nothing reaches the proxy's host: a connection attempt times out
    // (dropped), it is not even refused.
    let target: SocketAddr = format!("{ns_ip}:8082").parse().unwrap();
    let e = TcpStream::connect_timeout(&target, Duration::from_secs(1)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = init_repo(dir);
    let repo_arg = format!("main={}", s(&repo));
    let server = Server::start_at(
        lifeboat(),
        &host_ip,
        &dir.join("data"),
        &["--repo", &repo_arg],
    );
    let admin = server.admin_token();
    let secret = json(&server.cli_ok(&admin, &["proxy-enrollment", "create", "--json"]))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let in_ns = |args: &[&str]| {
        let mut cmd = ns.exec();
        cmd.arg(env!("CARGO_BIN_EXE_lifeboat"))
            .args(args)
            .env("LIFEBOAT_SERVER", server.url())
            .env("LIFEBOAT_CA", server.ca())
            .env("LIFEBOAT_PASSPHRASE", PASSPHRASE)
            .env_remove("LIFEBOAT_TOKEN")
            .env_remove("LIFEBOAT_REPO");
        cmd
    };
    let proxy_dir = dir.join("p1");
    let out = in_ns(&[
        "proxy",
        "--check",
        "--data-dir",
        s(&proxy_dir),
        "--enroll",
        &secret,
        "--name",
        "p1",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "enrolling from the namespace: {out:?}"
    );
    let _proxy = Service(
        in_ns(&[
            "proxy",
            "--data-dir",
            s(&proxy_dir),
            "--source-root",
            s(dir),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("p1.log")).unwrap())
        .process_group(0)
        .spawn()
        .unwrap(),
    );

    let image = dir.join("web01.raw");
    let bytes = make_disk(&image, 4 << 20, 13);
    server.cli_ok(
        &admin,
        &[
            "job",
            "create",
            "web01",
            "--repo-name",
            "main",
            "--source",
            &format!("disk0=raw:{}", s(&image)),
            "--proxy",
            "p1",
        ],
    );
    let done = json(&server.cli_ok(&admin, &["job", "run", "web01", "--wait", "--json"]));
    assert_eq!(
        (&done["state"], &done["proxy"]),
        (&"succeeded".into(), &"p1".into()),
        "{done:#}\nproxy log:\n{}",
        std::fs::read_to_string(dir.join("p1.log")).unwrap_or_default()
    );
    let point = done["restore_point"].as_str().unwrap();
    let restored = restore_raw(&repo, point, "disk0", &dir.join("out.raw"));
    assert!(
        restored == bytes,
        "the proxy's restore point restores bit-exact"
    );
}
