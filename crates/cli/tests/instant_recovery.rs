//! `lifeboat nfs serve` and `lifeboat instant-recovery start|list|stop|migrate`
//! through the real binary: the service runs as a child process, the
//! commands talk to it over the control socket, libnfs copies a disk out,
//! SIGTERM and SIGINT stop it cleanly, and sessions survive its restart.
mod common;
use common::nfs_service::{copy_first_disk, repo_with_web01, NfsService as Server};
use common::*;
use std::process::Command;

#[test]
fn serve_start_list_migrate_stop_and_restart() {
    require_tool("nfs-cp", "libnfs-utils");
    let dir = tempfile::tempdir().unwrap();
    let (repo, bytes) = repo_with_web01(dir.path(), 7);
    let cache = dir.path().join("ir");
    let server = Server::start(&repo, &cache, &dir.path().join("serve1.log"));

    // Text output: id, export, NBD URL, QEMU and ESXi lines.
    let text = ok(&[
        "instant-recovery",
        "start",
        "--repo",
        s(&repo),
        "web01@latest",
        "--nbd",
        "--cache-dir",
        s(&cache),
    ]);
    println!("{text}");
    for want in [
        "session ",
        "NFS export     127.0.0.1:/lifeboat/web01-",
        "nbd://127.0.0.1:",
        "-drive file=nfs://127.0.0.1/lifeboat/web01-",
        "-flat.vmdk,format=raw,if=virtio",
        "esxcli storage nfs add -H 127.0.0.1 -s /lifeboat/web01-",
        "-v lifeboat-web01-",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let first = text.split_whitespace().nth(1).unwrap().to_string();

    // JSON output, and the disk copied out over NFS is bit-exact.
    let v = json(&ok(&[
        "instant-recovery",
        "start",
        "web01@latest",
        "--json",
        "--cache-dir",
        s(&cache),
    ]));
    let sess = &v["session"];
    let id = sess["id"].as_str().unwrap().to_string();
    // preflight finds the service through its portmapper.
    let pm = sess["service"]["portmap_port"].to_string();
    let pre = json(&ok(&[
        "preflight",
        "--nfs",
        "127.0.0.1",
        "--portmapper-port",
        &pm,
        "--json",
    ]));
    assert_eq!(pre["failed"], 0, "{pre}");
    let names: Vec<&str> = pre["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["portmapper", "MOUNT v3 NULL", "NFS v3 NULL"],
        "{pre}"
    );
    let copy = copy_first_disk(sess, &dir.path().join("copy.raw"));
    assert!(copy == bytes, "nfs-cp copy differs");

    let listed = json(&ok(&[
        "instant-recovery",
        "list",
        "--json",
        "--cache-dir",
        s(&cache),
    ]));
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 2, "{listed}");
    let text = ok(&["instant-recovery", "list", "--cache-dir", s(&cache)]);
    assert!(text.contains(&id) && text.contains(&first), "{text}");

    // Migrate to qcow2 (format from the extension).
    let target = dir.path().join("web01.qcow2");
    let out = ok(&[
        "instant-recovery",
        "migrate",
        &id,
        "--to",
        s(&target),
        "--cache-dir",
        s(&cache),
    ]);
    assert!(out.contains("qcow2"), "{out}");
    let raw = dir.path().join("web01-migrated.raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&target)
        .arg(&raw)
        .output()
        .expect("qemu-img (apt-get install qemu-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&raw).unwrap() == bytes);

    ok(&["instant-recovery", "stop", &id, "--cache-dir", s(&cache)]);
    let err = fails_with(
        5,
        &["instant-recovery", "stop", &id, "--cache-dir", s(&cache)],
    );
    assert!(err.contains("no session"), "{err}");
    let err = fails_with(
        1,
        &[
            "instant-recovery",
            "start",
            "--repo",
            s(dir.path()),
            "web01@latest",
            "--cache-dir",
            s(&cache),
        ],
    );
    assert!(err.contains("serves repository"), "{err}");

    let log = server.stop_with("-TERM");
    assert!(
        log.contains("signal received") && log.contains("service: stopped"),
        "{log}"
    );
    assert!(!cache.join("control.sock").exists());
    let err = fails_with(1, &["instant-recovery", "list", "--cache-dir", s(&cache)]);
    assert!(err.contains("nfs serve"), "{err}");

    // Restart: the first session is back; SIGINT stops it too.
    let server = Server::start(&repo, &cache, &dir.path().join("serve2.log"));
    let listed = json(&ok(&[
        "instant-recovery",
        "list",
        "--json",
        "--cache-dir",
        s(&cache),
    ]));
    let ids: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![first.as_str()]);
    server.stop_with("-INT");

    let out = ok(&["verify", "--repo", s(&repo)]);
    println!("{out}");
}

#[test]
fn commands_without_a_service_say_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails_with(
        1,
        &["instant-recovery", "list", "--cache-dir", s(dir.path())],
    );
    assert!(err.contains("lifeboat nfs serve"), "{err}");
    let nope = dir.path().join("nope");
    let err = fails_with(5, &nfs_serve_args(&nope, dir.path()));
    assert!(err.contains("nope"), "{err}");
}
