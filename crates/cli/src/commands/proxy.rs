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
use lifeboat_server::api::proxies::Enroll;
use lifeboat_server::proxies::identity::{new_key, Identity};
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

#[derive(Args)]
pub struct ProxyRunArgs {
    /// The one-time enrollment secret (`proxy-enrollment create`); only
    /// for the first start
    #[arg(
        long,
        value_name = "SECRET",
        env = "LIFEBOAT_ENROLL",
        hide_env_values = true
    )]
    pub enroll: Option<String>,
    /// The proxy's name (with --enroll): lower-case letters, digits, '-'
    #[arg(long, requires = "enroll")]
    pub name: Option<String>,
    /// The proxy's folder: its key, certificate, the server's CA and URL
    #[arg(long, default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Sessions this proxy runs at once; the server gives it no more
    #[arg(long, default_value_t = DEFAULT_MAX_JOBS, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_jobs: u32,
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
    let created = client(remote)?.create_enrollment(Some(a.expires_mins))?;
    if a.output.json {
        print_json(&created)?;
    } else {
        println!(
            "enrollment {}, expires {}",
            created.enrollment.id, created.enrollment.expires_at
        );
        println!(
            "secret (shown once, good for one proxy): {}",
            created.secret
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

/// Enrolls (first start) or loads the identity, then checks in.
fn serve(remote: &RemoteArgs, a: ProxyRunArgs) -> anyhow::Result<i32> {
    let identity = match (Identity::load(&a.data_dir)?, a.enroll) {
        (Some(_), Some(_)) => anyhow::bail!(
            "{} holds an enrolled proxy already: start without --enroll, or use another --data-dir to enroll anew",
            a.data_dir.display()
        ),
        (Some(identity), None) => identity,
        (None, None) => anyhow::bail!(
            "{} holds no proxy certificate: enroll first with --server URL --enroll SECRET --name NAME",
            a.data_dir.display()
        ),
        (None, Some(secret)) => {
            let name = a.name.context("--enroll needs --name NAME")?;
            enroll(remote, &a.data_dir, secret, name)?
        }
    };
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
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
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
        },
    )?;
    Ok(exit::OK)
}

/// Makes the key pair, has the server sign its certificate, keeps the
/// files.
fn enroll(
    remote: &RemoteArgs,
    dir: &std::path::Path,
    secret: String,
    name: String,
) -> anyhow::Result<Identity> {
    let server = remote
        .server
        .as_deref()
        .context("enrolling needs the server: --server URL (or LIFEBOAT_SERVER)")?;
    let unauthenticated = Client::new(server, remote.ca.as_deref(), None)?;
    let key = new_key()?;
    let enrolled = unauthenticated.enroll(&Enroll {
        secret,
        name,
        public_key: key.public_key_pem(),
    })?;
    let identity = Identity::save(
        dir,
        &key,
        &enrolled.certificate,
        enrolled.ca.as_bytes(),
        server.trim_end_matches('/'),
    )?;
    eprintln!(
        "enrolled as proxy {}; key and certificate in {}",
        enrolled.proxy.name,
        dir.display()
    );
    Ok(identity)
}
