//! Shared fixtures of the service tests: a repository holding one backed-up
//! disk, a service on loopback, sessions started over the control socket.
//! The libnfs tools and the raw MOUNT/NFS client (to compare file handles
//! across a restart) come from lifeboat-testsupport.
#![allow(dead_code)]

use lifeboat_ir::{Request, Response, Service, ServiceConfig, SessionInfo, StartRequest};
use lifeboat_repo::{Manifest, Repository};
use lifeboat_testsupport::repo::{backed_up, repo_snapshot};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A raw disk of `size` bytes: a pseudo-random pattern with holes.
pub fn make_image(path: &Path, size: usize) -> Vec<u8> {
    let bytes = lifeboat_vdisk::testsuite::pattern_with_holes(size, 256 << 10);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// An unencrypted repository (256 KiB chunks) at `dir/repo` holding one
/// restore point of VM `vm` whose `disk0` is `image`.
pub fn backup(dir: &Path, vm: &str, image: &Path) -> (PathBuf, Manifest) {
    let path = dir.join("repo");
    let (_, manifest) = backed_up(&path, vm, &[("disk0", image)]);
    (path, manifest)
}

/// Checks that the restore point is exactly as before and verifies clean.
pub fn assert_restore_point_untouched(
    repo_path: &Path,
    manifest: &Manifest,
    before: &BTreeMap<PathBuf, Vec<u8>>,
) {
    let after = repo_snapshot(repo_path);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in before {
        assert!(after.get(k) == Some(v), "{} changed", k.display());
    }
    let repo = Repository::open(repo_path, None).unwrap();
    let report = repo.verify(Some(manifest)).unwrap();
    assert!(report.is_ok(), "verify: {report:?}");
    assert!(report.chunks_checked > 0);
}

/// A service on `ip` (all ports ephemeral unless `portmap` is given).
pub fn service(repo: &Path, cache: &Path, ip: &str, portmap: Option<u16>) -> Service {
    let ip: IpAddr = ip.parse().unwrap();
    let mut c = ServiceConfig::ephemeral(repo, cache, ip);
    if portmap.is_some() {
        c.portmap_port = portmap;
    }
    c.log_hook = Some(Arc::new(|l: &str| eprintln!("[service] {l}")));
    Service::start(c).unwrap()
}

/// Starts a session over the control socket; returns it and the start time.
pub fn start_session(cache: &Path, spec: &str, nbd: bool) -> (SessionInfo, u64) {
    let resp = lifeboat_ir::request(
        cache,
        &Request::Start(StartRequest {
            restore_point: spec.into(),
            repo: None,
            allow: vec![],
            nbd,
        }),
    )
    .unwrap();
    match resp {
        Response::Started { session, start_ms } => (session, start_ms),
        other => panic!("start: {other:?}"),
    }
}

pub fn list(cache: &Path) -> Vec<SessionInfo> {
    match lifeboat_ir::request(cache, &Request::List).unwrap() {
        Response::Sessions { sessions, .. } => sessions,
        other => panic!("list: {other:?}"),
    }
}

/// `nfs://127.0.0.1/lifeboat/<path>?...` with the service's ports.
pub fn url(s: &SessionInfo, path: &str) -> String {
    format!(
        "nfs://{}{}/{path}?version=3&mountport={}&nfsport={}",
        s.service.host, s.service.export_path, s.service.mount_port, s.service.nfs_port
    )
}
