//! One service per cache folder, and a stop that does not depend on
//! `control.sock`: a second service is refused while the first runs even
//! when the socket was deleted, and the first still stops (and leaves a
//! socket someone else bound there alone) when its socket was deleted or
//! replaced.
mod common;
use common::*;
use lifeboat_ir::{Request, Response, Service, ServiceConfig};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Drops `svc` in another thread; fails the test if that takes more than
/// 20 s (the stop hung).
fn stops_in_time(svc: Service) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(svc);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the service did not stop within 20 s");
}

fn second_start(repo: &Path, cache: &Path) -> String {
    let c = ServiceConfig::ephemeral(repo, cache, "127.0.0.1".parse().unwrap());
    match Service::start(c) {
        Ok(_) => panic!("a second service started on {}", cache.display()),
        Err(e) => e.to_string(),
    }
}

fn fixture(dir: &Path) -> std::path::PathBuf {
    let image = dir.join("web01.raw");
    make_image(&image, 1 << 20);
    backup(dir, "web01", &image).0
}

#[test]
fn a_second_service_is_refused_while_the_first_runs_even_without_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fixture(dir.path());
    let cache = dir.path().join("cache");
    let first = service(&repo, &cache, "127.0.0.1", None);

    let err = second_start(&repo, &cache);
    assert!(err.contains("another service"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );

    // The socket is gone (deleted by hand, a tmp cleaner): still refused,
    // and the first service keeps its sessions to itself.
    std::fs::remove_file(lifeboat_ir::socket_path(&cache)).unwrap();
    let err = second_start(&repo, &cache);
    assert!(err.contains("another service"), "{err}");

    stops_in_time(first);
    // Once it is gone, the folder is free again.
    let again = service(&repo, &cache, "127.0.0.1", None);
    assert!(matches!(
        lifeboat_ir::request(&cache, &Request::List),
        Ok(Response::Sessions { .. })
    ));
    stops_in_time(again);
}

#[test]
fn a_service_stops_when_its_control_socket_was_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fixture(dir.path());
    let cache = dir.path().join("cache");
    let sock = lifeboat_ir::socket_path(&cache);
    let svc = service(&repo, &cache, "127.0.0.1", None);
    let (session, _) = start_session(&cache, "web01@latest", true);

    std::fs::remove_file(&sock).unwrap();
    let foreign = UnixListener::bind(&sock).unwrap();
    stops_in_time(svc);
    assert!(
        sock.exists(),
        "the stopping service removed a socket it did not bind"
    );
    drop(foreign);
    std::fs::remove_file(&sock).unwrap();

    // The session was kept on disk and comes back with the next service.
    let svc = service(&repo, &cache, "127.0.0.1", None);
    assert!(
        list(&cache).iter().any(|s| s.id == session.id),
        "session {} not re-opened",
        session.id
    );
    stops_in_time(svc);
}
