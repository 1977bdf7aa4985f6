//! `lifeboat ports` and `lifeboat preflight` through the binary: the port
//! table with configured ports, a failing probe's exit code and fix, and a
//! preflight with nothing to try. The probes themselves are tested against
//! real servers in crates/preflight/tests, and the NFS probe against
//! `lifeboat nfs serve` in instant_recovery.rs.
mod common;
use common::*;

#[test]
fn ports_prints_the_table_with_the_configured_ports() {
    let text = ok(&["ports", "--api-port", "9443"]);
    for want in [
        "9443",
        "8082",
        "3542",
        "111",
        "1058",
        "2049",
        "10809",
        "902",
        "VMware only",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let v: serde_json::Value = serde_json::from_str(&ok(&["ports", "--json"])).unwrap();
    let rows = v.as_array().unwrap();
    let api = rows
        .iter()
        .find(|r| r["why"].as_str().unwrap().starts_with("REST API"))
        .unwrap();
    assert_eq!(api["port"], 8443);
    assert_eq!(api["status"], "built");
    assert!(rows
        .iter()
        .any(|r| r["port"] == 2049 && r["status"] == "built"));
}

#[test]
fn a_failing_check_exits_10_with_its_fix() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(&[
        "preflight",
        "--nfs",
        "127.0.0.1",
        "--portmapper-port",
        &port.to_string(),
        "--timeout",
        "2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(text.contains("FAIL  portmapper"), "{text}");
    assert!(
        text.contains(&format!("fix: open TCP {port} (portmapper)")),
        "{text}"
    );
    let none = run(&["preflight"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing to try"));
}
