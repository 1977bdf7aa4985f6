//! `lifeboat serve` as a separate process on a loopback port, and the CLI
//! commands that talk to it (`login`, `token`, `restore-point list`), with
//! openssl s_client and curl as independent peers: TLS versions and the
//! certificate, plain HTTP, tokens and roles, the audit log, malformed and
//! oversized requests, metrics, the OpenAPI document, restore points
//! against the local `list`, restarts and a catalog from a newer program.
mod common;
use common::server::Server;
use common::*;
use lifeboat_testsupport::{free_port, tool};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

/// An error body with `kind`.
fn assert_error(status: u16, body: &str, want_status: u16, kind: &str) {
    assert_eq!(status, want_status, "{body}");
    let v = json(body);
    assert_eq!(v["kind"], kind, "{body}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
}

/// `openssl s_client` with `flags` against the server: (connected and
/// verified, output).
fn s_client(server: &Server, flags: &[&str]) -> (bool, String) {
    let out = tool("openssl", "openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.port),
        ])
        .args(["-CAfile", s(&server.ca()), "-verify_return_error"])
        .args(["-verify_hostname", "localhost", "-servername", "localhost"])
        .args(flags)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = out.status.success() && text.contains("Verify return code: 0 (ok)");
    (verified, text)
}

#[test]
fn tls_1_2_and_1_3_only_with_the_servers_own_ca_and_no_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for (flags, protocol) in [(["-tls1_2"], "TLSv1.2"), (["-tls1_3"], "TLSv1.3")] {
        let (ok, text) = s_client(&server, &flags);
        assert!(ok, "{flags:?} should succeed and verify:\n{text}");
        assert!(
            text.contains(&format!("Protocol  : {protocol}"))
                || text.contains(&format!("New, {protocol}")),
            "{text}"
        );
    }
    // The client allows the old versions (security level 0), so a refusal
    // is the server's.
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(&server, &[flag, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(!ok, "{flag} must be refused:\n{text}");
        assert!(
            (text.contains("alert protocol version") || text.contains("alert handshake failure"))
                && text.contains("no peer certificate available"),
            "{flag}: expected the server's alert before any certificate:\n{text}"
        );
    }
    // Another name than the certificate's is refused by the verifier.
    let out = tool("openssl", "openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.port),
        ])
        .args([
            "-CAfile",
            s(&server.ca()),
            "-verify_return_error",
            "-verify_hostname",
            "elsewhere.example",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong host name must not verify");

    // Plain HTTP gets no HTTP answer.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        !answer.windows(5).any(|w| w == b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // The server still serves TLS afterwards.
    let (status, body) = server.curl("GET", "/api/v1/health", None, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["status"], "ok");

    // Keys are private; the log is JSON lines naming the token file, not
    // the secret.
    for key in ["tls/ca.key", "tls/server.key", "admin.token"] {
        let mode = std::fs::metadata(server.data.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let log = server.log();
    let admin = server.admin_token();
    assert!(!log.contains(&admin), "the log shows the admin token");
    assert!(log.contains("admin.token"), "{log}");
    for line in log.lines() {
        json(line);
    }
}

#[test]
fn tokens_roles_deletion_and_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = server.admin_token();
    let me = json(&server.cli_ok(&admin, &["login", "--json"]));
    assert_eq!(me["role"], "admin");
    let admin_id = me["id"].as_i64().unwrap();

    let make = |role: &str, name: &str| {
        let v = json(&server.cli_ok(
            &admin,
            &["token", "create", "--role", role, "--name", name, "--json"],
        ));
        assert_eq!(v["token"]["role"], role);
        assert_eq!(v["token"]["created_by"], admin_id);
        (
            v["token"]["id"].as_i64().unwrap(),
            v["secret"].as_str().unwrap().to_string(),
        )
    };
    let (viewer_id, viewer) = make("viewer", "dashboards");
    let (operator_id, operator) = make("operator", "ci");
    // The text form shows the secret once too.
    let text = server.cli_ok(&admin, &["token", "create", "--role", "viewer"]);
    assert!(text.contains("secret (shown once"), "{text}");

    // Viewer and operator can neither make nor delete tokens (403 -> 11).
    for (who, secret) in [("viewer", &viewer), ("operator", &operator)] {
        let e = server.cli_fails(11, secret, &["token", "create", "--role", "viewer"]);
        assert!(e.contains("403") && e.contains("admin"), "{who}: {e}");
        server.cli_fails(11, secret, &["token", "delete", &viewer_id.to_string()]);
        server.cli_fails(11, secret, &["token", "list"]);
        let (status, body) = server.curl(
            "DELETE",
            &format!("/api/v1/tokens/{operator_id}"),
            Some(secret),
            None,
        );
        assert_error(status, &body, 403, "forbidden");
        let who_am_i = json(&server.cli_ok(secret, &["login", "--json"]));
        assert_eq!(who_am_i["role"], who);
    }

    // The list shows every token, never a secret.
    let list = server.cli_ok(&admin, &["token", "list", "--json"]);
    assert!(!list.contains(&viewer) && !list.contains("lbt_"), "{list}");
    assert_eq!(json(&list).as_array().unwrap().len(), 4);
    let table = server.cli_ok(&admin, &["token", "list"]);
    assert!(
        table.contains("dashboards") && table.contains("operator"),
        "{table}"
    );

    // A deleted token is refused at once.
    server.cli_ok(&admin, &["token", "delete", &viewer_id.to_string()]);
    let e = server.cli_fails(11, &viewer, &["login"]);
    assert!(e.contains("401"), "{e}");
    let (status, body) = server.curl("GET", "/api/v1/repositories", Some(&viewer), None);
    assert_error(status, &body, 401, "unauthorized");
    // Deleting it again: not found (5). The last admin token stays.
    server.cli_fails(5, &admin, &["token", "delete", &viewer_id.to_string()]);
    let (status, body) = server.curl(
        "DELETE",
        &format!("/api/v1/tokens/{admin_id}"),
        Some(&admin),
        None,
    );
    assert_error(status, &body, 409, "conflict");
    // A made-up token and no token.
    server.cli_fails(11, "lbt_0000", &["login"]);
    server.cli_fails(11, "", &["login"]);

    // The audit log has the changes, the logins and the refusals.
    let (status, body) = server.curl("GET", "/api/v1/audit", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    let audit = json(&body);
    let rows = audit.as_array().unwrap();
    let count = |action: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r["action"] == action && r["outcome"] == outcome)
            .count()
    };
    assert_eq!(count("token.create", "ok"), 4, "{body}"); // bootstrap + 3
    assert_eq!(count("token.delete", "ok"), 1, "{body}");
    assert!(count("login", "ok") >= 3, "{body}");
    assert!(count("login", "refused") >= 2, "{body}"); // deleted, made-up
    assert!(count("auth.forbidden", "refused") >= 6, "{body}");
    assert!(count("auth.failed", "refused") >= 1, "{body}");
    let deletion = rows.iter().find(|r| r["action"] == "token.delete").unwrap();
    assert_eq!(deletion["actor"], admin_id);
    assert_eq!(deletion["target"], format!("token {viewer_id}"));
    assert!(deletion["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Only admins read it.
    let (status, body) = server.curl("GET", "/api/v1/audit", Some(&operator), None);
    assert_error(status, &body, 403, "forbidden");
}

#[test]
fn bad_requests_get_json_errors_and_metrics_count_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = server.admin_token();
    let (status, body) = server.curl("POST", "/api/v1/tokens", Some(&admin), Some(b"{\"role\": "));
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server.curl(
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        Some(b"{\"role\": \"root\"}"),
    );
    assert_error(status, &body, 400, "bad_request");
    assert!(body.contains("role"), "{body}");
    let (status, body) = server.curl(
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        Some(b"{\"role\": \"viewer\", \"extra\": 1}"),
    );
    assert_error(status, &body, 400, "bad_request");
    let big = format!(
        "{{\"role\": \"viewer\", \"name\": \"{}\"}}",
        "x".repeat(100 << 10)
    );
    let (status, body) = server.curl("POST", "/api/v1/tokens", Some(&admin), Some(big.as_bytes()));
    assert_error(status, &body, 413, "too_large");
    let (status, body) = server.curl("GET", "/api/v1/no-such-route", Some(&admin), None);
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server.curl("PUT", "/api/v1/tokens", Some(&admin), None);
    assert_error(status, &body, 405, "method_not_allowed");
    let (status, body) = server.curl("DELETE", "/api/v1/tokens/abc", Some(&admin), None);
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server.curl("GET", "/api/v1/tokens", None, None);
    assert_error(status, &body, 401, "unauthorized");
    // Nothing above made a token, and the server still answers.
    let tokens = json(&server.cli_ok(&admin, &["token", "list", "--json"]));
    assert_eq!(tokens.as_array().unwrap().len(), 1);

    let (status, metrics) = server.curl("GET", "/metrics", Some(&admin), None);
    assert_eq!(status, 200, "{metrics}");
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} not in:\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(
            "lifeboat_http_requests_total{route=\"/api/v1/tokens\",method=\"POST\",status=\"400\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            "lifeboat_http_requests_total{route=\"/api/v1/tokens\",method=\"POST\",status=\"413\"}"
        ),
        1.0
    );
    assert_eq!(
        value("lifeboat_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        value(
            "lifeboat_http_requests_total{route=\"/api/v1/tokens\",method=\"GET\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(value("lifeboat_auth_failures_total"), 1.0);
    assert!(value("lifeboat_uptime_seconds") >= 0.0);
    // A second scrape counts the first.
    let (_, again) = server.curl("GET", "/metrics", Some(&admin), None);
    assert!(
        again.contains(
            "lifeboat_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"} 1\n"
        ),
        "{again}"
    );

    // The served OpenAPI document is the crate's file, public.
    let (status, doc) = server.curl("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(json(&doc), json(include_str!("../../server/openapi.json")));
    assert_eq!(json(&doc)["openapi"], "3.1.0");
}

#[test]
fn restore_points_over_the_api_match_the_local_list() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let disk = dir.path().join("web01.raw");
    make_disk(&disk, 3 << 20, 5);
    let first = backup(&repo, "web01", &[("disk0", &disk)]);
    let second = backup(&repo, "db01", &[("disk0", &disk)]);
    let local = json(&ok(&["list", "--repo", s(&repo), "--json"]));
    let repo_arg = format!("main={}", s(&repo));
    let server = Server::start(&dir.path().join("data"), &["--repo", &repo_arg]);
    let admin = server.admin_token();
    let viewer = json(&server.cli_ok(&admin, &["token", "create", "--role", "viewer", "--json"]))
        ["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let remote = json(&server.cli_ok(
        &viewer,
        &["restore-point", "list", "--repo-name", "main", "--json"],
    ));
    assert_eq!(remote, local);
    assert_eq!(remote.as_array().unwrap().len(), 2);
    let table = server.cli_ok(&viewer, &["restore-point", "list", "--repo-name", "main"]);
    assert!(table.contains(&first) && table.contains(&second), "{table}");
    assert!(table.contains("not scanned"), "{table}");
    let e = server.cli_fails(
        5,
        &viewer,
        &["restore-point", "list", "--repo-name", "nope"],
    );
    assert!(e.contains("404"), "{e}");
    let (status, body) = server.curl("GET", "/api/v1/repositories", Some(&viewer), None);
    assert_eq!(status, 200);
    let repos = json(&body);
    assert_eq!(repos[0]["name"], "main");
    assert_eq!(repos[0]["encrypted"], true);
    // A wrong passphrase stops the server at start with exit 4.
    let out = lifeboat()
        .env("LIFEBOAT_PASSPHRASE", "wrong")
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--data-dir",
            s(&dir.path().join("data2")),
            "--repo",
            &repo_arg,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_config_file_sets_what_the_flags_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let config = dir.path().join("lifeboat.toml");
    // Its listen address and data dir lose to the flags Server::start
    // gives; its repository and source root are used.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/nonexistent\"\nsource_roots = [\"{}\"]\n\n[repositories]\nmain = \"{}\"\n",
            s(dir.path()),
            s(&repo)
        ),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), &["--config", s(&config)]);
    let admin = server.admin_token();
    let points = json(&server.cli_ok(
        &admin,
        &["restore-point", "list", "--repo-name", "main", "--json"],
    ));
    assert!(points.as_array().unwrap().is_empty(), "{points}");
    // A bad key stops the server at start, naming the file and the key.
    std::fs::write(&config, "max_jobs = 0\n").unwrap();
    let out = lifeboat()
        .args(["serve", "--config", s(&config)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lifeboat.toml") && stderr.contains("max_jobs = 0"),
        "{stderr}"
    );
}

#[test]
fn the_catalog_survives_a_restart_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let admin = server.admin_token();
    let made = json(&server.cli_ok(&admin, &["token", "create", "--role", "operator", "--json"]));
    let operator = made["secret"].as_str().unwrap().to_string();
    let ca_before = std::fs::read(server.ca()).unwrap();
    let status = server.stop_with("-TERM");
    assert!(status.success(), "SIGTERM: {status}");

    let server = Server::start(&data, &[]);
    assert_eq!(
        server.admin_token(),
        admin,
        "the bootstrap token is made once"
    );
    assert_eq!(
        std::fs::read(server.ca()).unwrap(),
        ca_before,
        "the CA is kept"
    );
    let me = json(&server.cli_ok(&operator, &["login", "--json"]));
    assert_eq!(me["id"], made["token"]["id"]);
    let (ok_tls, text) = s_client(&server, &["-tls1_3"]);
    assert!(
        ok_tls,
        "the re-issued certificate chains to the same CA:\n{text}"
    );
    let log = server.log();
    let status = server.stop_with("-INT");
    assert!(status.success(), "SIGINT: {status}\n{log}");

    // A catalog written by a newer program is refused, naming both versions.
    let catalog = data.join("catalog.sqlite");
    let st = tool("sqlite3", "sqlite3")
        .arg(&catalog)
        .arg("PRAGMA user_version = 99;")
        .status()
        .unwrap();
    assert!(st.success());
    let out = lifeboat()
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--data-dir", s(&data)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("schema version 99") && stderr.contains("newer than this program"),
        "{stderr}"
    );
}
