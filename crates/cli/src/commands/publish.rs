//! `lifeboat publish`, `published`, `unpublish` and the hidden
//! `publish-daemon` (the detached publisher process `publish` starts: it
//! serves the FUSE disk files and lives until `unpublish`). See the
//! `lifeboat-publish` crate for the design.

use crate::args::{AgentTargetArgs, LocalRepoArgs, OutputArgs, RemoteArgs};
use crate::output::print_json;
use crate::passphrase::passphrase;
use anyhow::{bail, Context};
use clap::Args;
use lifeboat_publish::{DaemonRequest, PublishOptions, SessionState};
use std::path::PathBuf;

#[derive(Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub repo: LocalRepoArgs,
    #[command(flatten)]
    pub on: AgentTargetArgs,
    /// Restore point: `vm@id`, `vm@latest`
    pub restore_point: String,
    /// Where sessions are mounted: <mount-root>/<session>/<vm>/<volume>
    #[arg(long, default_value = lifeboat_publish::DEFAULT_MOUNT_ROOT, value_name = "DIR")]
    pub mount_root: PathBuf,
    /// Only these disks (comma separated)
    #[arg(long, value_delimiter = ',', value_name = "DISKS")]
    pub disks: Vec<String>,
    /// Keep small blocks read from the repository (filesystem metadata) in
    /// DIR/<repository id>/, so later publishers of restore points sharing
    /// chunks read them without decoding a chunk
    #[arg(long, value_name = "DIR")]
    pub block_cache: Option<PathBuf>,
    /// Group (name or gid) that may read what is published besides root:
    /// directories 0750 and disk files 0440 root:GROUP (default: root
    /// alone, 0700 and 0400)
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Where session state files live.
#[derive(Args)]
pub struct StateArgs {
    /// Directory of the session state files
    #[arg(long, env = "LIFEBOAT_PUBLISH_STATE", default_value = lifeboat_publish::DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
}

#[derive(Args)]
pub struct PublishedArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct UnpublishArgs {
    /// The session to remove
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub session: Option<String>,
    /// Remove every session, also those of publishers that died
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct PublishDaemonArgs {
    /// The request, as JSON (written by `lifeboat publish`)
    pub request: String,
}

fn print_session(s: &SessionState) {
    println!(
        "session {}  {}  since {}",
        s.session,
        s.restore_point,
        s.since.to_rfc3339()
    );
    for m in &s.mounts {
        if m.mounted {
            println!(
                "  {:<12} {:<7} {:<12} {}",
                m.volume,
                m.fstype,
                m.device,
                m.mount_point.display()
            );
        }
    }
    for l in &s.loops {
        if !s.mounts.iter().any(|m| m.volume == l.volume && m.mounted) {
            println!(
                "  {:<12} {:<7} {:<12} (not mounted)",
                l.volume,
                "",
                l.device.as_deref().unwrap_or("?")
            );
        }
    }
    for p in &s.problems {
        let what = if p.kind.leaves_data_unserved() {
            "problem"
        } else {
            "note"
        };
        println!("  {what}: {p}");
    }
}

/// `lifeboat publish`.
pub fn publish(a: PublishArgs, remote: &RemoteArgs) -> anyhow::Result<i32> {
    if let Some(agent) = &a.on.agent {
        return super::publications::publish(remote, agent, &a);
    }
    let local = a.repo.local()?;
    let pass = passphrase(local.passphrase_file.as_deref())?;
    let mut opts = PublishOptions {
        repo: local.repo,
        restore_point: a.restore_point.clone(),
        mount_root: a.mount_root,
        state_dir: a.state.state_dir,
        disks: a.disks,
        block_store: a.block_cache,
        group: a
            .group
            .as_deref()
            .map(lifeboat_publish::resolve_group)
            .transpose()?,
    };
    let exe = std::env::current_exe().context("finding the lifeboat executable")?;
    let mut daemon = std::process::Command::new(exe);
    daemon.arg("publish-daemon");
    let repo = lifeboat_repo::Repository::open(&opts.repo, pass.as_deref())
        .with_context(|| format!("opening repository {}", opts.repo.display()))?;
    // Resolved here so the user hears which damaged points @latest skipped.
    opts.restore_point = super::resolve(&repo, &a.restore_point)?.name();
    let s = lifeboat_publish::publish(&opts, &repo, daemon)
        .with_context(|| format!("publishing {}", a.restore_point))?;
    if a.output.json {
        print_json(&s)?;
    } else {
        print_session(&s);
    }
    Ok(0)
}

/// `lifeboat published`.
pub fn published(a: PublishedArgs) -> anyhow::Result<i32> {
    let list = lifeboat_publish::published(&a.state.state_dir)?;
    if a.output.json {
        print_json(&list)?;
    } else if list.is_empty() {
        println!("nothing published");
    } else {
        for p in &list {
            print_session(&p.state);
            if !p.alive {
                println!(
                    "  publisher is gone: run `lifeboat unpublish {}`",
                    p.state.session
                );
            }
        }
    }
    Ok(0)
}

/// `lifeboat unpublish`.
pub fn unpublish(a: UnpublishArgs) -> anyhow::Result<i32> {
    let dir = &a.state.state_dir;
    let (done, errors) = if a.all {
        lifeboat_publish::unpublish_all(dir)?
    } else {
        let Some(name) = a.session.as_deref() else {
            bail!("name a session or pass --all");
        };
        (vec![lifeboat_publish::unpublish(dir, name)?], Vec::new())
    };
    let names: Vec<&str> = done.iter().map(|s| s.session.as_str()).collect();
    if a.output.json {
        print_json(&serde_json::json!({
            "unpublished": names,
            "errors": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        }))?;
    } else {
        for n in &names {
            println!("unpublished {n}");
        }
        for e in &errors {
            eprintln!("error: {e}");
        }
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// `lifeboat publish-daemon` (started by `publish`, not by users).
pub fn daemon(a: PublishDaemonArgs) -> anyhow::Result<i32> {
    let req: DaemonRequest = serde_json::from_str(&a.request).context("reading the request")?;
    lifeboat_publish::run_daemon(&req, &mut std::io::stdin().lock(), &mut std::io::stdout())?;
    Ok(0)
}
