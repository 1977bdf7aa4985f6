//! The server run in-process through the library (`lifeboat_server::run`
//! with a stop channel) and driven by the library's own [`Client`] over
//! real TLS on loopback: the operator's certificate (made by the openssl
//! CLI) instead of the server's CA, the client's typed errors for each
//! refusal, certificate checks on the client side, and restore points of
//! a repository the engine backed up.

use lifeboat_server::{Client, ClientError, ErrorKind, Role, ServerConfig, TlsFiles};
use lifeboat_testsupport::{free_port, pki::Pki};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A server on its own runtime thread; stopped on drop.
struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<lifeboat_server::Result<()>>>,
    url: String,
    data: PathBuf,
}

impl InProcess {
    fn start(
        data: &Path,
        tls: Option<TlsFiles>,
        repositories: Vec<(String, PathBuf)>,
    ) -> InProcess {
        let port = free_port();
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = ServerConfig {
            listen,
            data_dir: data.to_path_buf(),
            tls,
            repositories,
            nfs: Vec::new(),
            passphrase: None,
            jobs: Default::default(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(lifeboat_server::run(config, async {
                    let _ = rx.await;
                }))
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(listen).is_err() {
            assert!(!thread.is_finished(), "the server stopped at start");
            assert!(Instant::now() < deadline, "the server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        InProcess {
            stop: Some(tx),
            thread: Some(thread),
            url: format!("https://localhost:{port}"),
            data: data.to_path_buf(),
        }
    }

    fn admin(&self) -> String {
        std::fs::read_to_string(self.data.join(lifeboat_server::ADMIN_TOKEN_FILE))
            .unwrap()
            .trim()
            .to_string()
    }

    fn stop(mut self) -> lifeboat_server::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn the_operators_certificate_and_the_clients_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let data = dir.path().join("data");
    let server = InProcess::start(
        &data,
        Some(TlsFiles {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
        }),
        Vec::new(),
    );
    assert!(
        !data.join("tls").exists(),
        "with the operator's files no CA is made"
    );
    let admin = Client::new(&server.url, Some(&pki.ca), Some(server.admin())).unwrap();
    let me = admin.login().unwrap();
    assert_eq!(me.role, Role::Admin);
    assert_eq!(me.created_by, None);

    let made = admin.create_token(Role::Viewer, Some("v".into())).unwrap();
    assert!(made.secret.starts_with("lbt_"));
    let viewer = Client::new(&server.url, Some(&pki.ca), Some(made.secret.clone())).unwrap();
    assert_eq!(viewer.login().unwrap().id, made.token.id);
    let e = viewer.create_token(Role::Admin, None).unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Forbidden), "{e}");
    assert!(matches!(e, ClientError::Server { status: 403, .. }), "{e}");
    let e = viewer.restore_points("none").unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");

    admin.delete_token(made.token.id).unwrap();
    let e = viewer.login().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Unauthorized), "{e}");
    let e = Client::new(&server.url, Some(&pki.ca), None)
        .unwrap()
        .login()
        .unwrap_err();
    assert!(matches!(e, ClientError::NoToken), "{e}");

    let audit = admin.audit().unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "token.create").count(),
        2,
        "{actions:?}"
    );
    assert!(actions.contains(&"token.delete"), "{actions:?}");
    assert!(actions.contains(&"auth.forbidden"), "{actions:?}");

    // A client trusting another CA, or the system roots, refuses the
    // server's certificate; plain http:// is refused before any request.
    let rogue = dir.path().join("rogue-ca.pem");
    for ca in [Some(rogue.as_path()), None] {
        let e = Client::new(&server.url, ca, Some(server.admin()))
            .unwrap()
            .login()
            .unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    }
    let e = Client::new("http://localhost:1", None, None).err().unwrap();
    assert!(matches!(e, ClientError::BadUrl { .. }), "{e}");
    server.stop().unwrap();
}

#[test]
fn restore_points_of_an_engine_backup_and_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, vec![7u8; 1 << 20]).unwrap();
    let repo_path = dir.path().join("repo");
    let (repo, manifest) =
        lifeboat_testsupport::repo::backed_up(&repo_path, "vm1", &[("disk0", &disk)]);
    let server = InProcess::start(
        &dir.path().join("data"),
        None,
        vec![("r1".into(), repo_path.clone())],
    );
    let ca = dir.path().join("data/tls/ca.pem");
    let admin = Client::new(&server.url, Some(&ca), Some(server.admin())).unwrap();
    let points = admin.restore_points("r1").unwrap();
    let expected = serde_json::to_value(repo.list_report(None).unwrap()).unwrap();
    assert_eq!(serde_json::Value::Array(points.clone()), expected);
    assert_eq!(points.len(), 1);
    assert_eq!(points[0]["id"], manifest.id.as_str());
    assert_eq!(points[0]["scan_state"], "not_scanned");
    server.stop().unwrap();
}
