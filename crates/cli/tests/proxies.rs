//! Proxies against a real `lifeboat serve` on loopback (separate
//! processes, real TLS): enrollment with a one-time secret makes a proxy
//! whose client certificate opens the proxy routes and nothing else; the
//! secret used twice or expired is refused and audited; no certificate, a
//! certificate from another CA, or a deleted proxy's certificate is
//! refused; a server on the operator's certificate refuses enrollment.

mod common;
use common::server::{curl_tls, Server};
use common::*;
use lifeboat_testsupport::{pki::Pki, tool};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A new enrollment secret from `server`.
fn secret(server: &Server, admin: &str, extra: &[&str]) -> String {
    let mut args = vec!["proxy-enrollment", "create", "--json"];
    args.extend_from_slice(extra);
    let created = json(&server.cli_ok(admin, &args));
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("lbe_"), "{created}");
    secret
}

/// `lifeboat proxy` against `server` with `extra` arguments.
fn proxy(server: &Server, dir: &Path, extra: &[&str]) -> std::process::Output {
    lifeboat()
        .env("LIFEBOAT_SERVER", server.url())
        .env("LIFEBOAT_CA", server.ca())
        .env_remove("LIFEBOAT_TOKEN")
        .args(["proxy", "--check", "--data-dir", s(dir), "--json"])
        .args(extra)
        .output()
        .unwrap()
}

/// A request with curl presenting `cert`/`key` (or none) and `token` (or
/// none): `Some((status, body))`, or `None` when the TLS handshake failed.
fn curl_as(
    server: &Server,
    path: &str,
    method: &str,
    cert: Option<(&Path, &Path)>,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let url = format!("{}{path}", server.url());
    curl_tls(&server.ca(), method, &url, cert, token, &[])
}

#[test]
fn enrollment_gives_a_certificate_that_opens_the_proxy_routes_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]);
    let admin = server.admin_token();

    // Enroll p1: key pair, certificate, CA and URL kept; the key 0600.
    let p1 = dir.path().join("p1");
    let first = secret(&server, &admin, &[]);
    let out = proxy(&server, &p1, &["--enroll", &first, "--name", "p1"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let hello = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(hello["name"], "p1");
    let mode = std::fs::metadata(p1.join("proxy.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    for f in ["proxy.pem", "ca.pem", "server"] {
        assert!(p1.join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::read(p1.join("ca.pem")).unwrap(),
        std::fs::read(server.ca()).unwrap()
    );
    // The certificate is the server CA's, for clientAuth, named p1.
    let text = tool("openssl", "openssl")
        .args(["x509", "-noout", "-text", "-in", s(&p1.join("proxy.pem"))])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("DNS:p1"), "{text}");
    let verify = tool("openssl", "openssl")
        .args([
            "verify",
            "-CAfile",
            s(&server.ca()),
            s(&p1.join("proxy.pem")),
        ])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");

    // Later starts need no secret.
    let again = proxy(&server, &p1, &[]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let listed = json(&server.cli_ok(&admin, &["proxy", "list", "--json"]));
    assert_eq!(listed[0]["name"], "p1");
    assert_eq!(listed[0]["fingerprint"], hello["fingerprint"]);
    assert!(listed[0]["last_seen"].is_string(), "{listed}");

    // The same secret twice: refused (401: exit 11), nothing kept.
    let p2 = dir.path().join("p2");
    let out = proxy(&server, &p2, &["--enroll", &first, "--name", "p2"]);
    assert_eq!(out.status.code(), Some(11), "{out:?}");
    assert!(!p2.join("proxy.pem").exists());

    // The proxy's certificate: the proxy routes, not the others.
    let (cert, key) = (p1.join("proxy.pem"), p1.join("proxy.key"));
    let id = Some((cert.as_path(), key.as_path()));
    let (status, body) = curl_as(&server, "/api/v1/proxy/hello", "POST", id, None).unwrap();
    assert_eq!((status, json(&body)["name"].clone()), (200, "p1".into()));
    for path in ["/api/v1/tokens", "/api/v1/proxies", "/api/v1/jobs"] {
        let (status, _) = curl_as(&server, path, "GET", id, None).unwrap();
        assert_eq!(status, 401, "{path} with a proxy certificate");
    }
    // A bearer token, even admin, opens no proxy route; no certificate
    // gets 401.
    let (status, _) = curl_as(&server, "/api/v1/proxy/hello", "POST", None, Some(&admin)).unwrap();
    assert_eq!(status, 401);
    for path in ["/api/v1/proxy/hello", "/api/v1/proxy/work"] {
        let (status, _) = curl_as(&server, path, "POST", None, None).unwrap();
        assert_eq!(status, 401, "{path} without a certificate");
    }

    // A client certificate from another CA: the handshake is refused.
    let pki = Pki::create(dir.path());
    let (rogue_cert, rogue_key) = (
        pki.rogue_dir.join("client-cert.pem"),
        pki.rogue_dir.join("client-key.pem"),
    );
    let forged = Some((rogue_cert.as_path(), rogue_key.as_path()));
    for path in ["/api/v1/proxy/hello", "/api/v1/proxy/work"] {
        assert_eq!(
            curl_as(&server, path, "POST", forged, None),
            None,
            "{path}: a certificate from another CA must fail the handshake"
        );
    }

    // Deleted: its certificate is refused at once.
    server.cli_ok(&admin, &["proxy", "delete", "p1"]);
    for path in ["/api/v1/proxy/hello", "/api/v1/proxy/work"] {
        let (status, _) = curl_as(&server, path, "POST", id, None).unwrap();
        assert_eq!(status, 401, "{path} with a deleted proxy's certificate");
    }
    let out = proxy(&server, &p1, &[]);
    assert_eq!(out.status.code(), Some(11), "{out:?}");
    server.cli_fails(5, &admin, &["proxy", "delete", "p1"]);

    // Only admins make secrets or list proxies.
    let created =
        json(&server.cli_ok(&admin, &["token", "create", "--role", "operator", "--json"]));
    let operator = created["secret"].as_str().unwrap();
    server.cli_fails(11, operator, &["proxy-enrollment", "create"]);
    server.cli_fails(11, operator, &["proxy", "list"]);

    // The audit log has the enrollment, the refusals and the deletion.
    let (status, body) = server.curl("GET", "/api/v1/audit", Some(&admin), None);
    assert_eq!(status, 200);
    let rows = json(&body);
    let rows = rows.as_array().unwrap();
    let has = |action: &str, outcome: &str, detail: &str| {
        rows.iter().any(|r| {
            r["action"] == action
                && r["outcome"] == outcome
                && r["detail"].as_str().unwrap_or("").contains(detail)
        })
    };
    assert!(has("proxy.enrollment", "ok", "expires"), "{body}");
    assert!(has("proxy.enroll", "ok", "certificate"), "{body}");
    assert!(
        has("proxy.enroll", "refused", "already used (by proxy p1)"),
        "{body}"
    );
    assert!(
        has("proxy.refused", "refused", "no client certificate"),
        "{body}"
    );
    assert!(
        has("proxy.refused", "refused", "not an enrolled proxy"),
        "{body}"
    );
    assert!(has("proxy.delete", "ok", ""), "{body}");
}

#[test]
fn an_expired_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data, &[]);
    let admin = server.admin_token();
    let old = secret(&server, &admin, &["--expires-mins", "1"]);
    server.stop_with("-TERM");
    // Back ten minutes later: the secret expired.
    let mut cmd = Command::new("faketime");
    cmd.args(["-f", "+10m", env!("CARGO_BIN_EXE_lifeboat")]);
    let server = Server::start_with(cmd, &data, &[]);
    let p1 = dir.path().join("p1");
    let out = proxy(&server, &p1, &["--enroll", &old, "--name", "p1"]);
    assert_eq!(
        out.status.code(),
        Some(11),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown, used or expired"));
    let (_, body) = server.curl("GET", "/api/v1/audit", Some(&admin), None);
    assert!(body.contains("secret expired at"), "{body}");
    assert!(!p1.join("proxy.pem").exists());
}

#[test]
fn a_server_on_the_operators_certificate_refuses_enrollment() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let data = dir.path().join("server");
    let server = Server::start(
        &data,
        &[
            "--tls-cert",
            s(&pki.server_cert),
            "--tls-key",
            s(&pki.server_key),
        ],
    );
    let admin = server.admin_token();
    let out = lifeboat()
        .env("LIFEBOAT_SERVER", server.url())
        .env("LIFEBOAT_CA", &pki.ca)
        .env("LIFEBOAT_TOKEN", &admin)
        .args(["proxy-enrollment", "create"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("operator's certificate"), "{stderr}");
    assert!(!data.join("tls").exists(), "no CA is made");
}
