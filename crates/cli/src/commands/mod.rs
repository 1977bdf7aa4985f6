//! Dispatch from a parsed command to the code that runs it. Each command
//! returns the process exit code it wants.

pub mod agent;
mod backup;
mod backup_live;
pub mod bitmaps;
pub mod files;
mod inspect;
pub mod instant_recovery;
pub mod jobs;
pub mod key;
mod maintain;
pub mod nfs_serve;
pub mod preflight;
pub mod proxy;
pub mod publications;
pub mod publish;
pub mod remote;
mod repair;
mod repo_init;
mod restore;
mod salvage_files;
pub mod scan;
pub mod serve;
pub mod serve_config;

use crate::args::{Command, RemoteArgs, RepoArgs, RepoCommand};
use crate::passphrase::passphrase;
use anyhow::Context;
use lifeboat_repo::{Manifest, Repository};

/// Runs one command.
pub fn run(command: Command, remote: &RemoteArgs) -> anyhow::Result<i32> {
    match command {
        Command::Publish(a) => publish::publish(a, remote),
        Command::Published(a) => publish::published(a),
        Command::Unpublish(a) => publish::unpublish(a),
        Command::PublishDaemon(a) => publish::daemon(a),
        Command::Repo {
            command: RepoCommand::Init(a),
        } => repo_init::run(a),
        Command::Repo {
            command: RepoCommand::Repair(a),
        } => repair::run(a),
        Command::Key { command } => key::run(command),
        Command::Backup(a) => backup::run(a),
        Command::List(a) => inspect::list(a),
        Command::Show(a) => inspect::show(a),
        Command::Restore(a) => restore::run(a),
        Command::Verify(a) => maintain::verify(a),
        Command::Prune(a) => maintain::prune(a),
        Command::Forget(a) => maintain::forget(a),
        Command::Gc(a) => maintain::gc(a),
        Command::Lock(a) => maintain::lock(a),
        Command::Demo(a) => crate::demo::run(a),
        Command::Nfs { command } => nfs_serve::run(command),
        Command::InstantRecovery { command } => instant_recovery::run(command, remote),
        Command::Files { command } => files::run(command),
        Command::Scan(a) => scan::run(a, remote),
        Command::Bitmaps(a) => bitmaps::run(a),
        Command::Ports(a) => preflight::ports(a),
        Command::Preflight(a) => preflight::preflight(a, remote),
        Command::Serve(a) => serve::run(a),
        Command::Login(o) => remote::login(remote, o),
        Command::Token { command } => remote::token(remote, command),
        Command::RestorePoint { command } => remote::restore_point(remote, command),
        Command::Catalog { command } => remote::catalog(remote, command),
        Command::Job { command } => jobs::job(remote, command),
        Command::Session { command } => jobs::session(remote, command),
        Command::Proxy(a) => proxy::run(remote, a),
        Command::ProxyEnrollment { command } => proxy::enrollment(remote, command),
        Command::Agent(a) => agent::run(remote, a),
        Command::Publication { command } => publications::run(remote, command),
    }
}

/// Opens the repository named by `args`, unlocking it with the passphrase.
pub fn open_repo(args: &RepoArgs) -> anyhow::Result<Repository> {
    let pass = passphrase(args.passphrase_file.as_deref())?;
    Repository::open(&args.repo, pass.as_deref())
        .map(|r| r.with_heal_on_read(true))
        .with_context(|| format!("opening repository {}", args.repo.display()))
}

/// Resolves a restore point spec, saying on stderr which damaged restore
/// points `@latest` skipped (they stay listed by `list` and `verify`).
pub fn resolve(repo: &Repository, spec: &str) -> anyhow::Result<Manifest> {
    let r = repo.resolve_noting(spec)?;
    for d in &r.skipped {
        eprintln!(
            "lifeboat: note: {spec} skipped damaged restore point {}: {d}",
            d.restore_points.join(", ")
        );
    }
    if !r.skipped.is_empty() {
        eprintln!("lifeboat: note: {spec} is {}", r.manifest.name());
    }
    Ok(r.manifest)
}
