//! `lifeboat agent`: run as an agent of a server (enrolling first with a
//! one-time secret of kind agent when the data dir holds no certificate
//! yet), serving publish, unpublish and scan requests from the server
//! until stopped; and `agent list|delete` against the server.
//! lifeboat_agent does the work; this parses and prints.

use crate::args::{OutputArgs, RemoteArgs};
use crate::commands::proxy::{load_or_enroll, EnrollArgs};
use crate::commands::remote::client;
use crate::exit;
use crate::output::print_json;
use crate::passphrase::passphrase;
use anyhow::Context;
use clap::{Args, Subcommand};
use lifeboat_agent::{AgentConfig, DEFAULT_DATA_DIR, DEFAULT_PORT};
use lifeboat_server::catalog::proxies::PeerKind;
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    #[command(flatten)]
    pub run: AgentRunArgs,
}

#[derive(Subcommand)]
pub enum AgentCommand {
    /// List the server's enrolled agents: where each listens, last seen
    List(OutputArgs),
    /// Delete an agent: its certificate is refused from its next call on,
    /// and the server calls it no more (admin)
    Delete(AgentDeleteArgs),
}

#[derive(Args)]
pub struct AgentDeleteArgs {
    /// The agent's name
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct AgentRunArgs {
    #[command(flatten)]
    pub enrollment: EnrollArgs,
    /// The agent's folder: its key, certificate, the server's CA and URL,
    /// its publications' and scans' state
    #[arg(long, default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The port to listen on; when it is taken, a free one (logged and
    /// reported to the server)
    #[arg(long, default_value_t = DEFAULT_PORT, value_name = "PORT")]
    pub port: u16,
    /// The address the server should call (default: the address the
    /// agent's calls come from)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Where publications are mounted: <mount-root>/<session>/<vm>/<volume>
    #[arg(long, default_value = lifeboat_publish::DEFAULT_MOUNT_ROOT, value_name = "DIR")]
    pub mount_root: PathBuf,
    /// File holding the repositories' passphrase (else
    /// LIFEBOAT_PASSPHRASE); it never crosses the wire
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// ClamAV signature database (file or directory) for scans
    #[arg(long, value_name = "PATH")]
    pub clamav_db: Option<PathBuf>,
}

/// `lifeboat agent ...`.
pub fn run(remote: &RemoteArgs, a: AgentArgs) -> anyhow::Result<i32> {
    match a.command {
        Some(AgentCommand::List(output)) => {
            let agents = client(remote)?.list_agents()?;
            if output.json {
                print_json(&agents)?;
            } else {
                println!(
                    "{:<20} {:<22} {:<21} {:<21} fingerprint (SHA-256)",
                    "name", "address", "last seen", "certificate until"
                );
                for a in &agents {
                    let address = lifeboat_server::agents::call::address_text(a);
                    println!(
                        "{:<20} {:<22} {:<21} {:<21} {}",
                        a.name,
                        address.as_deref().unwrap_or("-"),
                        a.last_seen.as_deref().unwrap_or("-"),
                        a.not_after,
                        a.fingerprint
                    );
                }
            }
            Ok(exit::OK)
        }
        Some(AgentCommand::Delete(d)) => {
            let deleted = client(remote)?.delete_agent(&d.name)?;
            if d.output.json {
                print_json(&deleted)?;
            } else {
                println!("deleted agent {}", deleted.deleted);
            }
            Ok(exit::OK)
        }
        None => serve(remote, a.run),
    }
}

/// Enrolls (first start) or loads the identity, then serves.
fn serve(remote: &RemoteArgs, a: AgentRunArgs) -> anyhow::Result<i32> {
    let identity = load_or_enroll(remote, &a.data_dir, PeerKind::Agent, a.enrollment)?;
    let passphrase = passphrase(a.passphrase_file.as_deref())?;
    crate::output::install_json_logs();
    let program = std::env::current_exe().context("finding the lifeboat executable")?;
    lifeboat_agent::run(
        AgentConfig {
            data_dir: a.data_dir,
            port: a.port,
            host: a.host,
            mount_root: a.mount_root,
            passphrase,
            clamav_db: a.clamav_db,
            program,
        },
        &identity,
    )?;
    Ok(exit::OK)
}
