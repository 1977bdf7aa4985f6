//! The demo's server step: the backup server in-process on a free loopback
//! port with the demo's repository and its own CA, a local proxy enrolled
//! with a one-time secret (its client certificate signed by the server's
//! CA), a backup job of the demo disk that the proxy pulls over mutual TLS
//! and runs, and the session as `lifeboat session show` reports it. The
//! new restore point must be in the repository, and (the disk being
//! unchanged since the last backup) store no new chunk.

use anyhow::{bail, Context};
use lifeboat_repo::Repository;
use lifeboat_server::api::jobs::CreateJob;
use lifeboat_server::catalog::proxies::PeerKind;
use lifeboat_server::catalog::sessions::SessionState;
use lifeboat_server::jobs::source::SourceRoots;
use lifeboat_server::jobs::JobsConfig;
use lifeboat_server::proxies::identity;
use lifeboat_server::proxies::worker::{self, WorkerConfig};
use lifeboat_server::{Background, Client, ServerConfig, ADMIN_TOKEN_FILE};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

const PROXY: &str = "demo-proxy";
const SESSION_WITHIN: Duration = Duration::from_secs(120);

pub fn run(
    repo: &Repository,
    passphrase: &str,
    vm: &str,
    disk: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .context("finding a free loopback port")?
        .port();
    let data_dir = dir.join("server");
    let server = Background::start(ServerConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        data_dir: data_dir.clone(),
        tls: None,
        repositories: vec![("demo".into(), repo.path().to_path_buf())],
        nfs: Vec::new(),
        passphrase: Some(passphrase.into()),
        jobs: JobsConfig::default(),
    })?;
    let url = server.url();
    let ca = data_dir.join("tls").join("ca.pem");
    let token = std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE))
        .context("reading the bootstrap admin token")?;
    let admin = Client::new(&url, Some(&ca), Some(token.trim().to_string()))?;
    println!(
        "    server {url}: its own CA ({}), bootstrap admin token in {}",
        ca.display(),
        data_dir.join(ADMIN_TOKEN_FILE).display()
    );

    let enrollment = admin.create_enrollment(PeerKind::Proxy, Some(10))?;
    let (identity, enrolled) = identity::enroll(
        &url,
        Some(&ca),
        PeerKind::Proxy,
        enrollment.secret,
        PROXY.into(),
        &dir.join("proxy"),
    )?;
    println!(
        "    proxy {PROXY} enrolled with a one-time secret: client certificate {}... from the server's CA",
        enrolled.proxy.fingerprint.get(..16).unwrap_or_default()
    );
    let disk = disk
        .canonicalize()
        .with_context(|| format!("resolving {}", disk.display()))?;
    let images = disk.parent().context("the demo disk has no folder")?;
    let source_roots = SourceRoots::new("the demo proxy", &[images.to_path_buf()])
        .map_err(|e| anyhow::anyhow!(e))?;
    // The proxy pulls work until the process ends (the server never dials it).
    std::thread::spawn(move || {
        worker::run(
            &identity,
            WorkerConfig {
                max_jobs: 1,
                source_roots,
            },
        )
    });

    admin.create_job(&CreateJob {
        name: vm.into(),
        repository: "demo".into(),
        sources: vec![format!("disk0={}", disk.display())],
        schedule: Some("0 2 * * *".into()),
        retention: Default::default(),
        proxy: Some(PROXY.into()),
        pool: false,
    })?;
    let queued = admin.run_job(vm)?;
    println!(
        "    job {vm} (nightly at 02:00, run now): session {} queued for {PROXY}",
        queued.id
    );
    let since = Instant::now();
    let session = loop {
        let s = admin.session(queued.id)?;
        if matches!(s.state, SessionState::Succeeded | SessionState::Failed) {
            break s;
        }
        if since.elapsed() > SESSION_WITHIN {
            bail!("session {} did not end within {SESSION_WITHIN:?}", s.id);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if session.state != SessionState::Succeeded {
        bail!(
            "session {} of job {vm} failed: {}",
            session.id,
            session.error.as_deref().unwrap_or("no error recorded")
        );
    }
    let point = session
        .restore_point
        .clone()
        .context("the session succeeded without a restore point")?;
    let ran_by = session.proxy.as_deref().unwrap_or("the server");
    if ran_by != PROXY {
        bail!("session {} ran on {ran_by}, not on {PROXY}", session.id);
    }
    let manifest = repo
        .resolve(&point)
        .with_context(|| format!("finding {point} in the repository"))?;
    let new_chunks: u64 = manifest.disks.iter().map(|d| d.stats.new_chunks).sum();
    println!(
        "    session {} {} on {ran_by} in {:.1} s: read {}, stored {} new, restore point {point} ({new_chunks} new chunks: the disk did not change)",
        session.id,
        session.state.as_str(),
        since.elapsed().as_secs_f64(),
        crate::output::bytes(session.bytes_read),
        crate::output::bytes(session.bytes_stored),
    );
    if new_chunks != 0 {
        bail!("{point} stored {new_chunks} new chunks of an unchanged disk");
    }
    for line in session.log.iter().flatten().take(6) {
        println!("      {} {}", line.time, line.line);
    }
    server.stop()?;
    Ok(())
}
