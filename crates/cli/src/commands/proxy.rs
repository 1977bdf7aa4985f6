//! `lifeboat proxy`: run as a backup proxy of a server (enrolling first
//! with a one-time secret when the data dir holds no certificate yet),
//! pulling sessions and running them until stopped, and
//! the admin's `proxy list|delete` and `proxy-enrollment create`.
//! lifeboat_server does the work (key pair, enrollment, the client with
//! the proxy's certificate); this parses and prints.

use crate::args::{OutputArgs, RemoteArgs};
use crate::commands::remote::client;
use crate::exit;
use crate::output::print_json;
use anyhow::Context;
use clap::{Args, Subcommand};
use lifeboat_server::catalog::proxies::PeerKind;
use lifeboat_server::jobs::source::SourceRoots;
use lifeboat_server::proxies::identity::{self, Identity};
use lifeboat_server::proxies::worker::{self, WorkerConfig, DEFAULT_MAX_JOBS};
use lifeboat_server::Client;
use std::path::PathBuf;

/// The proxy's data dir unless `--data-dir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/lifeboat-proxy";

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProxyArgs {
    #[command(subcommand)]
    pub command: Option<ProxyCommand>,
    #[command(flatten)]
    pub run: ProxyRunArgs,
}

#[derive(Subcommand)]
pub enum ProxyCommand {
    /// List the server's enrolled proxies (admin)
    List(OutputArgs),
    /// Delete a proxy: its certificate is refused from its next request on (admin)
    Delete(ProxyDeleteArgs),
}

#[derive(Args)]
pub struct ProxyDeleteArgs {
    /// The proxy's name
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The first start of a proxy or an agent: its one-time secret and name.
#[derive(Args)]
pub struct EnrollArgs {
    /// The one-time enrollment secret (`proxy-enrollment create`, with
    /// `--kind agent` for an agent); only for the first start
    #[arg(
        long,
        value_name = "SECRET",
        env = "LIFEBOAT_ENROLL",
        hide_env_values = true
    )]
    pub enroll: Option<String>,
    /// Its name (with --enroll): lower-case letters, digits, '-'
    #[arg(long, requires = "enroll")]
    pub name: Option<String>,
}

#[derive(Args)]
pub struct ProxyRunArgs {
    #[command(flatten)]
    pub enrollment: EnrollArgs,
    /// The proxy's folder: its key, certificate, the server's CA and URL
    #[arg(long, default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Sessions this proxy runs at once; the server gives it no more
    #[arg(long, default_value_t = DEFAULT_MAX_JOBS, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_jobs: u32,
    /// A folder whose image files and QMP sockets this proxy's jobs may
    /// read (repeatable); without one, jobs read no host path
    #[arg(long = "source-root", value_name = "DIR")]
    pub source_roots: Vec<PathBuf>,
    /// Enroll (or check the certificate) and exit instead of pulling work
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand)]
pub enum EnrollmentCommand {
    /// Make a one-time enrollment secret (admin); printed once
    Create(EnrollmentCreateArgs),
}

#[derive(Args)]
pub struct EnrollmentCreateArgs {
    /// What the secret enrolls: proxy (`lifeboat proxy --enroll`) or
    /// agent (`lifeboat agent --enroll`)
    #[arg(long, default_value = "proxy", value_name = "KIND")]
    pub kind: PeerKind,
    /// Minutes until the secret expires
    #[arg(long, default_value_t = 60, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10080))]
    pub expires_mins: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `lifeboat proxy-enrollment ...`.
pub fn enrollment(remote: &RemoteArgs, command: EnrollmentCommand) -> anyhow::Result<i32> {
    let EnrollmentCommand::Create(a) = command;
    let created = client(remote)?.create_enrollment(a.kind, Some(a.expires_mins))?;
    if a.output.json {
        print_json(&created)?;
    } else {
        println!(
            "enrollment {} ({}), expires {}",
            created.enrollment.id, created.enrollment.kind, created.enrollment.expires_at
        );
        println!(
            "secret (shown once, good for one {}): {}",
            created.enrollment.kind, created.secret
        );
    }
    Ok(exit::OK)
}

/// `lifeboat proxy ...`.
pub fn run(remote: &RemoteArgs, a: ProxyArgs) -> anyhow::Result<i32> {
    match a.command {
        Some(ProxyCommand::List(output)) => {
            let proxies = client(remote)?.list_proxies()?;
            if output.json {
                print_json(&proxies)?;
            } else {
                println!(
                    "{:<20} {:<21} {:<21} {:<21} fingerprint (SHA-256)",
                    "name", "enrolled (UTC)", "certificate until", "last seen"
                );
                for p in &proxies {
                    println!(
                        "{:<20} {:<21} {:<21} {:<21} {}",
                        p.name,
                        p.enrolled_at,
                        p.not_after,
                        p.last_seen.as_deref().unwrap_or("-"),
                        p.fingerprint
                    );
                }
            }
            Ok(exit::OK)
        }
        Some(ProxyCommand::Delete(d)) => {
            let deleted = client(remote)?.delete_proxy(&d.name)?;
            if d.output.json {
                print_json(&deleted)?;
            } else {
                println!("deleted proxy {}", deleted.deleted);
            }
            Ok(exit::OK)
        }
        None => serve(remote, a.run),
    }
}

/// The `kind` identity in `dir`: enrolled now (first start), or loaded.
pub(crate) fn load_or_enroll(
    remote: &RemoteArgs,
    dir: &std::path::Path,
    kind: PeerKind,
    enrollment: EnrollArgs,
) -> anyhow::Result<Identity> {
    let EnrollArgs {
        enroll: secret,
        name,
    } = enrollment;
    Ok(match (Identity::load(dir, kind)?, secret) {
        (Some(_), Some(_)) => anyhow::bail!(
            "{} holds an enrolled {kind} already: start without --enroll, or use another --data-dir to enroll anew",
            dir.display()
        ),
        (Some(identity), None) => identity,
        (None, None) => anyhow::bail!(
            "{} holds no {kind} certificate: enroll first with --server URL --enroll SECRET --name NAME",
            dir.display()
        ),
        (None, Some(secret)) => {
            let name = name.context("--enroll needs --name NAME")?;
            enroll(remote, dir, kind, secret, name)?
        }
    })
}

/// Enrolls (first start) or loads the identity, then checks in.
fn serve(remote: &RemoteArgs, a: ProxyRunArgs) -> anyhow::Result<i32> {
    let source_roots =
        SourceRoots::new("lifeboat proxy", &a.source_roots).map_err(|e| anyhow::anyhow!(e))?;
    let identity = load_or_enroll(remote, &a.data_dir, PeerKind::Proxy, a.enrollment)?;
    let proxy = Client::for_proxy(&identity)?.proxy_hello()?;
    if a.output.json {
        print_json(&proxy)?;
    } else {
        println!(
            "proxy {} checked in with {} (certificate {}, until {})",
            proxy.name, identity.server, proxy.fingerprint, proxy.not_after
        );
    }
    if a.check {
        return Ok(exit::OK);
    }
    crate::output::install_json_logs();
    tracing::info!(
        proxy = proxy.name,
        server = identity.server,
        max_jobs = a.max_jobs,
        "pulling work"
    );
    worker::run(
        &identity,
        WorkerConfig {
            max_jobs: a.max_jobs,
            source_roots,
        },
    )?;
    Ok(exit::OK)
}

/// Makes the key pair, has the server sign its certificate, keeps the
/// files (the proxy's or the agent's, as `kind` says).
fn enroll(
    remote: &RemoteArgs,
    dir: &std::path::Path,
    kind: PeerKind,
    secret: String,
    name: String,
) -> anyhow::Result<Identity> {
    let server = remote
        .server
        .as_deref()
        .context("enrolling needs the server: --server URL (or LIFEBOAT_SERVER)")?;
    let (identity, enrolled) =
        identity::enroll(server, remote.ca.as_deref(), kind, secret, name, dir)?;
    eprintln!(
        "enrolled as {kind} {}; key and certificate in {}",
        enrolled.proxy.name,
        dir.display()
    );
    Ok(identity)
}
