//! Publishing and scanning on agents through the server: `publish VM@ID
//! --target AGENT`, `scan VM@ID --target AGENT`, `publication
//! list|delete`. lifeboat_server's client does the work; this parses and
//! prints. A remote scan waits for the agent's verdict and exits as a
//! local scan would (0 clean, 7 infected, 3 incomplete, 8 unproven).

use super::publish::PublishArgs;
use super::remote::client;
use super::scan::ScanArgs;
use crate::args::{OutputArgs, RemoteArgs};
use crate::exit;
use crate::output::print_json;
use clap::{Args, Subcommand};
use lifeboat_server::agents::wire::{Publication, Verdict};
use lifeboat_server::api::publications::OnTarget;
use lifeboat_server::Client;
use std::time::Duration;

/// How long `scan --target` waits for the verdict.
const SCAN_WAIT: Duration = Duration::from_secs(6 * 60 * 60);

#[derive(Subcommand)]
pub enum PublicationCommand {
    /// List the restore points published on every agent
    List(OutputArgs),
    /// Unpublish one (AGENT:SESSION, as the list shows it): its mounts,
    /// loop devices and publisher go
    Delete(PublicationDeleteArgs),
}

#[derive(Args)]
pub struct PublicationDeleteArgs {
    /// The publication's id: AGENT:SESSION
    pub id: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `lifeboat publish VM@ID --target AGENT`.
pub fn publish(remote: &RemoteArgs, agent: &str, a: &PublishArgs) -> anyhow::Result<i32> {
    let p = client(remote)?.publish(&OnTarget {
        restore_point: a.restore_point.clone(),
        repository: a.on.repository.clone(),
        target: agent.to_string(),
    })?;
    if a.output.json {
        print_json(&p)?;
    } else {
        print_publication(&p);
    }
    Ok(exit::OK)
}

/// `lifeboat scan VM@ID --target AGENT`: the verdict's exit code.
pub fn scan(remote: &RemoteArgs, agent: &str, a: &ScanArgs) -> anyhow::Result<i32> {
    let server = remote
        .server
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no server: give --server URL or set LIFEBOAT_SERVER"))?;
    let c = Client::with_timeout(
        server,
        remote.ca.as_deref(),
        remote.token.clone(),
        SCAN_WAIT,
    )?;
    let result = c.scan(&OnTarget {
        restore_point: a.target.clone(),
        repository: a.on.repository.clone(),
        target: agent.to_string(),
    })?;
    if a.output.json {
        print_json(&result.report)?;
    } else {
        println!("scanned on agent {}:", result.agent);
        match serde_json::from_value::<lifeboat_scan::ScanReport>(result.report.clone()) {
            Ok(report) => {
                let notes: Vec<String> = result.report["notes"]
                    .as_array()
                    .map(|n| {
                        n.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                super::scan::print_report(&report, &notes);
            }
            Err(_) => println!("{}: {}", result.restore_point, result.verdict.as_str()),
        }
    }
    Ok(match result.verdict {
        Verdict::Clean => exit::OK,
        Verdict::Infected => exit::INFECTED,
        Verdict::Incomplete => exit::DAMAGE,
        Verdict::Unproven => exit::UNPROVEN,
    })
}

/// `lifeboat publication ...`.
pub fn run(remote: &RemoteArgs, command: PublicationCommand) -> anyhow::Result<i32> {
    let c = client(remote)?;
    match command {
        PublicationCommand::List(output) => {
            let list = c.publications()?;
            if output.json {
                print_json(&list)?;
            } else {
                if list.publications.is_empty() {
                    println!("nothing published on any agent");
                }
                for p in &list.publications {
                    print_publication(p);
                }
                for u in &list.unreachable {
                    println!("agent {}: not asked: {}", u.agent, u.error);
                }
            }
        }
        PublicationCommand::Delete(d) => {
            let done = c.unpublish(&d.id)?;
            if d.output.json {
                print_json(&done)?;
            } else {
                println!("unpublished {}", done.deleted);
            }
        }
    }
    Ok(exit::OK)
}

fn print_publication(p: &Publication) {
    println!(
        "publication {}  {}  {}{}  since {}",
        p.id,
        p.restore_point,
        p.status,
        if p.alive { "" } else { " (publisher gone)" },
        p.since
    );
    println!("  disks        {}", p.disks_dir);
    for m in p.mounts.iter().filter(|m| m.mounted) {
        println!(
            "  {:<12} {:<7} {:<12} {}",
            m.volume, m.fstype, m.device, m.mount_point
        );
    }
    for problem in &p.problems {
        println!("  problem: {problem}");
    }
}
