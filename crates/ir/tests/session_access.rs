//! Per-session access with real clients: a session started with `--allow`
//! admits only those clients on NFS (libnfs: nfs-ls, nfs-cat) and NBD
//! (nbdinfo, which gets NBD_REP_ERR_POLICY), other sessions stay reachable,
//! the NFS root listing and the NBD export listing hide what a client may
//! not use, and the list survives a restart of the service.
mod common;
use common::*;
use lifeboat_ir::{Request, Response, ServiceLog, SessionInfo, StartRequest};
use lifeboat_testsupport::nfs::*;
use lifeboat_testsupport::{run, tool};
use std::path::Path;

const SIZE: usize = 2 << 20;

fn start(cache: &Path, allow: &[&str]) -> SessionInfo {
    let resp = lifeboat_ir::request(
        cache,
        &Request::Start(StartRequest {
            restore_point: "web01@latest".into(),
            repo: None,
            allow: allow.iter().map(|a| a.to_string()).collect(),
            nbd: true,
        }),
    )
    .unwrap();
    match resp {
        Response::Started { session, .. } => session,
        other => panic!("start: {other:?}"),
    }
}

fn nbdinfo(s: &SessionInfo) -> std::process::Output {
    tool("nbdinfo", "libnbd-bin")
        .env("LIBNBD_DEBUG", "1")
        .arg(s.nbd_url(&s.disks[0]).unwrap())
        .output()
        .unwrap()
}

fn nbdinfo_list(s: &SessionInfo) -> String {
    let url = format!("nbd://127.0.0.1:{}/", s.service.nbd_port.unwrap());
    let out = run(tool("nbdinfo", "libnbd-bin").arg("--list").arg(url)).stdout;
    String::from_utf8(out).unwrap()
}

/// What 127.0.0.1 can and cannot do with session `a` (it is on a's list)
/// and session `b` (only 10.9.9.9 is).
fn check(a: &SessionInfo, b: &SessionInfo, bytes: &[u8], log: &ServiceLog) {
    let disk = |s: &SessionInfo| url(s, &format!("{}/{}", s.id, s.disks[0].file));
    let got = run(nfs_tool("nfs-cat").arg(disk(a))).stdout;
    assert!(got == bytes, "nfs-cat of session A differs from the disk");
    let ls = String::from_utf8(run(nfs_tool("nfs-ls").arg(url(a, &a.id))).stdout).unwrap();
    assert!(ls.contains(&a.disks[0].file), "{ls}");

    for (tool, url) in [("nfs-cat", disk(b)), ("nfs-ls", url(b, &b.id))] {
        let out = nfs_tool(tool).arg(&url).output().unwrap();
        assert!(
            !out.status.success(),
            "{tool} {url} read a session this client may not use"
        );
    }

    let root = String::from_utf8(run(nfs_tool("nfs-ls").arg(url(a, ""))).stdout).unwrap();
    assert!(root.contains(&a.id), "{root}");
    assert!(
        !root.contains(&b.id),
        "the root listing leaks {}: {root}",
        b.id
    );

    // The raw protocol answers: MNT3ERR_ACCES and NFS3ERR_ACCES (13).
    let (mount, nfs) = (
        addr("127.0.0.1", a.service.mount_port),
        addr("127.0.0.1", a.service.nfs_port),
    );
    let mut m = connect(mount);
    assert_eq!(mnt(&mut m, &format!("/lifeboat/{}", b.id)).0, 13);
    assert_eq!(mnt(&mut m, &format!("/lifeboat/{}", a.id)).0, 0);
    let (st, root_fh) = mnt(&mut m, "/lifeboat");
    assert_eq!(st, 0);
    let mut n = connect(nfs);
    assert_eq!(lookup(&mut n, &root_fh, &b.id).0, 13);
    assert_eq!(lookup(&mut n, &root_fh, &a.id).0, 0);

    let ok = nbdinfo(a);
    assert!(
        ok.status.success(),
        "nbdinfo of session A: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A refused export exists but is not permitted: NBD_REP_ERR_POLICY,
    // which libnbd reports as ENOTSUP ("Operation not supported"; an
    // unknown export would be ENOENT) and whose message it shows in its
    // debug output.
    let refused = nbdinfo(b);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "nbdinfo of session B succeeded");
    assert!(
        stderr.contains("opt_go request: Operation not supported"),
        "nbdinfo of session B was not refused by policy: {stderr}"
    );
    assert!(
        stderr.contains("is not permitted to this client by server policy"),
        "nbdinfo did not get the server's policy message: {stderr}"
    );
    let listed = nbdinfo_list(a);
    assert!(listed.contains(&a.id), "{listed}");
    assert!(
        !listed.contains(&b.id),
        "the NBD listing leaks {}: {listed}",
        b.id
    );
    assert!(
        log.lines()
            .iter()
            .any(|l| l.contains("refused export") && l.contains(&b.id) && l.contains("127.0.0.1")),
        "no log line names the refused export and peer: {:?}",
        log.lines()
    );
}

#[test]
fn a_session_allow_list_is_enforced_on_nfs_and_nbd_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("web01.raw");
    let bytes = make_image(&image, SIZE);
    let (repo, _) = backup(dir.path(), "web01", &image);
    let cache = dir.path().join("cache");

    let svc = service(&repo, &cache, "127.0.0.1", None);
    let a = start(&cache, &["127.0.0.1", "10.0.0.0/24"]);
    let b = start(&cache, &["10.9.9.9"]);
    assert_eq!(b.allow, ["10.9.9.9"]);
    check(&a, &b, &bytes, svc.log());
    drop(svc);

    // The list is in the persisted record...
    let record =
        std::fs::read_to_string(cache.join("sessions").join(&b.id).join("session.json")).unwrap();
    assert!(record.contains("10.9.9.9"), "{record}");
    // ...and enforced again after a restart (ports change, ids do not).
    let svc = service(&repo, &cache, "127.0.0.1", None);
    let sessions = list(&cache);
    let find = |id: &str| sessions.iter().find(|s| s.id == id).unwrap().clone();
    let (a2, b2) = (find(&a.id), find(&b.id));
    assert_eq!(b2.allow, ["10.9.9.9"]);
    check(&a2, &b2, &bytes, svc.log());
}
