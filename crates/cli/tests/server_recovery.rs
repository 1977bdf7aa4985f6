//! Instant recovery through the server's API: `lifeboat serve --nfs
//! main=CACHE` passes start / list / stop to the repository's NFS service
//! (`lifeboat nfs serve`, a separate process); libnfs reads the session's
//! disk bit-exact; roles, unknown sessions, a repository without a
//! service and a service that stopped get their documented answers.
mod common;
use common::nfs_service::{copy_first_disk, repo_with_web01, NfsService};
use common::server::Server;
use common::*;

#[test]
fn instant_recovery_started_listed_and_stopped_through_the_api() {
    require_tool("nfs-cp", "libnfs-utils");
    require_tool("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let (repo, bytes) = repo_with_web01(dir.path(), 11);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other = init_repo(&other);
    let cache = dir.path().join("ir");
    let nfs = NfsService::start(&repo, &cache, &dir.path().join("nfs.log"));
    let main = format!("main={}", s(&repo));
    let second = format!("second={}", s(&other));
    let nfs_arg = format!("main={}", s(&cache));
    // `second` names main's service: refused as bound to another repository.
    let wrong = format!("second={}", s(&cache));
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--repo", &main, "--repo", &second, "--nfs", &nfs_arg, "--nfs", &wrong,
        ],
    );
    let admin = server.admin_token();
    let operator =
        json(&server.cli_ok(&admin, &["token", "create", "--role", "operator", "--json"]))
            ["secret"]
            .as_str()
            .unwrap()
            .to_string();
    let viewer = json(&server.cli_ok(&admin, &["token", "create", "--role", "viewer", "--json"]))
        ["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let ir = |token: &str, args: &[&str]| {
        let mut all = vec!["instant-recovery"];
        all.extend_from_slice(args);
        server.cli_ok(token, &all)
    };

    // A viewer neither starts nor stops.
    let e = server.cli_fails(
        11,
        &viewer,
        &[
            "instant-recovery",
            "start",
            "web01@latest",
            "--repo-name",
            "main",
        ],
    );
    assert!(e.contains("operator"), "{e}");

    let started = json(&ir(
        &operator,
        &["start", "web01@latest", "--repo-name", "main", "--json"],
    ));
    let session = &started["session"];
    let id = session["id"].as_str().unwrap().to_string();
    let copy = copy_first_disk(session, &dir.path().join("copy.raw"));
    assert!(copy == bytes, "the NFS copy differs");

    // The API's list and the host's list are one list.
    let listed = json(&ir(&viewer, &["list", "--repo-name", "main", "--json"]));
    let ids: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "{listed}");
    let local = ok(&["instant-recovery", "list", "--cache-dir", s(&cache)]);
    assert!(local.contains(&id), "{local}");
    let text = ir(&viewer, &["list", "--repo-name", "main"]);
    assert!(text.contains(&id) && text.contains("web01@"), "{text}");

    // Refusals: unknown session 404 (exit 5), unknown restore point 404,
    // a repository bound to another service 409 (exit 9), no --repo-name
    // with two repositories.
    server.cli_fails(
        5,
        &operator,
        &["instant-recovery", "stop", "nope", "--repo-name", "main"],
    );
    server.cli_fails(
        5,
        &operator,
        &[
            "instant-recovery",
            "start",
            "db01@latest",
            "--repo-name",
            "main",
        ],
    );
    let e = server.cli_fails(
        9,
        &viewer,
        &["instant-recovery", "list", "--repo-name", "second"],
    );
    assert!(e.contains("not repository \"second\""), "{e}");
    let e = server.cli_fails(1, &viewer, &["instant-recovery", "list"]);
    assert!(e.contains("--repo-name"), "{e}");
    let (status, body) = server.curl(
        "POST",
        "/api/v1/repositories/main/instant-recoveries",
        Some(&operator),
        Some(br#"{"restore_point":"web01@latest","bogus":1}"#),
    );
    assert_eq!(status, 400, "{body}");

    // Stop through the API: gone from the service, and audited.
    let stopped = json(&ir(
        &operator,
        &["stop", &id, "--repo-name", "main", "--json"],
    ));
    assert_eq!(
        (&stopped["result"], &stopped["session"]),
        (&"stopped".into(), &id.as_str().into()),
        "{stopped}"
    );
    let listed = json(&ir(&viewer, &["list", "--repo-name", "main", "--json"]));
    assert!(
        listed["sessions"].as_array().unwrap().is_empty(),
        "{listed}"
    );
    let (_, audit) = server.curl("GET", "/api/v1/audit", Some(&admin), None);
    assert!(
        audit.contains("recovery.start") && audit.contains("recovery.stop"),
        "{audit}"
    );

    // The service stopped: 503, named.
    nfs.stop_with("-TERM");
    let (status, body) = server.curl(
        "GET",
        "/api/v1/repositories/main/instant-recoveries",
        Some(&viewer),
        None,
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(s(&cache)), "{body}");
}

#[test]
fn a_repository_without_an_nfs_service_says_how_to_add_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let main = format!("main={}", s(&repo));
    let server = Server::start(&dir.path().join("data"), &["--repo", &main]);
    let admin = server.admin_token();
    let e = server.cli_fails(9, &admin, &["instant-recovery", "list"]);
    assert!(e.contains("--nfs main=DIR"), "{e}");

    // --nfs for a repository the server does not serve: refused at start.
    let out = lifeboat()
        .args(["serve", "--listen", "127.0.0.1:1", "--data-dir"])
        .arg(dir.path().join("data2"))
        .args(["--repo", &main, "--nfs", "nope=/tmp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no repository \"nope\""), "{stderr}");
}
