//! `lifeboat instant-recovery start|list|stop|migrate`: requests to the
//! service (`lifeboat nfs serve`) running on this machine, over the control
//! socket in `--cache-dir` (the same folder pairs a command with its
//! service). With `--server` (or LIFEBOAT_SERVER), `start`, `list` and
//! `stop` are requests to the Lifeboat server's API instead, which passes
//! them to the NFS service of the repository `--repo-name` names. Text for
//! people, `--json` for scripts.

use super::nfs_serve::DEFAULT_CACHE_DIR;
use super::remote::client;
use crate::args::{OutputArgs, RemoteArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use anyhow::Context;
use clap::{Args, Subcommand};
use lifeboat_ir::{Request, Response, SessionInfo, StartRequest};
use std::path::{Path, PathBuf};

/// The server's repository (with `--server`).
#[derive(Args, Clone)]
pub struct ServerRepoArgs {
    /// With --server: the served repository (default: the server's only one)
    #[arg(long, value_name = "NAME")]
    pub repo_name: Option<String>,
}

#[derive(Args, Clone)]
pub struct CacheArgs {
    /// Cache folder of the service to talk to
    #[arg(long, env = "LIFEBOAT_IR_CACHE", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
}

#[derive(Subcommand)]
pub enum IrCommand {
    /// Start a session: export a restore point's disks over NFS (and NBD)
    Start(StartArgs),
    /// List the running sessions
    List(ListArgs),
    /// Stop a session (its overlay is deleted unless --keep-overlay)
    Stop(StopArgs),
    /// Write a session's disks (restore point + changes) to standalone images
    Migrate(MigrateArgs),
}

#[derive(Args)]
pub struct StartArgs {
    /// Repository (must be the one the service serves)
    #[arg(long, env = "LIFEBOAT_REPO", value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Restore point: VM@ID or VM@latest
    pub restore_point: String,
    /// Client address or CIDR network that may use this session over NFS
    /// and NBD (repeatable; narrows the service's --allow; none: every
    /// client the service allows)
    #[arg(long, value_name = "ADDR|CIDR")]
    pub allow: Vec<String>,
    /// Also export the disks over NBD
    #[arg(long)]
    pub nbd: bool,
    #[command(flatten)]
    pub server: ServerRepoArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub server: ServerRepoArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct StopArgs {
    /// Session id
    pub session: String,
    /// Keep the overlay (the VM's changes) in the cache folder
    #[arg(long)]
    pub keep_overlay: bool,
    #[command(flatten)]
    pub server: ServerRepoArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Session id
    pub session: String,
    /// Target image (several disks: <stem>-<disk>.<ext> beside it)
    #[arg(long)]
    pub to: PathBuf,
    /// raw or qcow2 (default: from the extension, else raw)
    #[arg(long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Sends `req`; a service-side error becomes an error (exit 5 for an
/// unknown session, else 1) after printing it.
fn ask(cache: &Path, req: &Request, json: bool) -> anyhow::Result<Result<Response, i32>> {
    let resp = lifeboat_ir::request(cache, req)?;
    if let Response::Error { message } = &resp {
        if json {
            print_json(&resp)?;
        }
        eprintln!("lifeboat: error: {message}");
        let code = if message.starts_with("no session") || message.contains("not found") {
            exit::NOT_FOUND
        } else {
            exit::ERROR
        };
        return Ok(Err(code));
    }
    Ok(Ok(resp))
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("finding the current directory")?
        .join(p))
}

pub fn run(command: IrCommand, remote: &RemoteArgs) -> anyhow::Result<i32> {
    let remote = remote.server.is_some().then_some(remote);
    match command {
        IrCommand::Start(a) => start(a, remote),
        IrCommand::List(a) => list(a, remote),
        IrCommand::Stop(a) => stop(a, remote),
        IrCommand::Migrate(_) if remote.is_some() => anyhow::bail!(
            "migrate is not a request to the server: run `lifeboat instant-recovery migrate` on the host of the NFS service (without --server / LIFEBOAT_SERVER)"
        ),
        IrCommand::Migrate(a) => migrate(a),
    }
}

/// The served repository `given` names, or the server's only one.
fn server_repository(
    c: &lifeboat_server::Client,
    given: &ServerRepoArgs,
) -> anyhow::Result<String> {
    if let Some(name) = &given.repo_name {
        return Ok(name.clone());
    }
    let served = c.repositories()?;
    match served.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => anyhow::bail!("the server serves no repository"),
        _ => anyhow::bail!(
            "the server serves {} repositories ({}): give --repo-name NAME",
            served.len(),
            served
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn start(a: StartArgs, remote: Option<&RemoteArgs>) -> anyhow::Result<i32> {
    let resp = if let Some(remote) = remote {
        let c = client(remote)?;
        let name = server_repository(&c, &a.server)?;
        let started = c.start_recovery(
            &name,
            &lifeboat_server::api::instant_recovery::StartRecovery {
                restore_point: a.restore_point.clone(),
                allow: a.allow.clone(),
                nbd: a.nbd,
            },
        )?;
        Response::Started {
            session: started.session,
            start_ms: started.start_ms,
        }
    } else {
        let repo = a.repo.as_deref().map(absolute).transpose()?;
        let req = Request::Start(StartRequest {
            restore_point: a.restore_point.clone(),
            repo,
            allow: a.allow.clone(),
            nbd: a.nbd,
        });
        match ask(&a.cache.cache_dir, &req, a.output.json)? {
            Ok(r) => r,
            Err(code) => return Ok(code),
        }
    };
    if a.output.json {
        print_json(&resp)?;
        return Ok(exit::OK);
    }
    if let Response::Started { session, start_ms } = &resp {
        print_session(session);
        println!("started in {start_ms} ms");
    }
    Ok(exit::OK)
}

/// The session id, its export, and lines to paste into QEMU and ESXi.
fn print_session(s: &SessionInfo) {
    println!("session        {}", s.id);
    println!("restore point  {}", s.restore_point);
    println!("NFS export     {}:{}", s.service.host, s.nfs_dir);
    for d in &s.disks {
        println!(
            "disk {:<9} {} ({}, overlay {})",
            d.name,
            d.file,
            bytes(d.size),
            bytes(d.overlay_bytes)
        );
        if let Some(url) = s.nbd_url(d) {
            println!("NBD            {url}");
        }
    }
    println!("QEMU:");
    println!("  {}", s.qemu_command());
    if let Some(c) = s.qemu_caveat() {
        println!("  (note: {c})");
    }
    println!("ESXi:");
    println!("  {}", s.esxcli());
}

fn list(a: ListArgs, remote: Option<&RemoteArgs>) -> anyhow::Result<i32> {
    let resp = if let Some(remote) = remote {
        let c = client(remote)?;
        let name = server_repository(&c, &a.server)?;
        let listed = c.list_recoveries(&name)?;
        Response::Sessions {
            service: listed.service,
            sessions: listed.sessions,
        }
    } else {
        match ask(&a.cache.cache_dir, &Request::List, a.output.json)? {
            Ok(r) => r,
            Err(code) => return Ok(code),
        }
    };
    if a.output.json {
        print_json(&resp)?;
        return Ok(exit::OK);
    }
    if let Response::Sessions { sessions, .. } = &resp {
        if sessions.is_empty() {
            println!("no sessions");
        }
        for s in sessions {
            let written: u64 = s.disks.iter().map(|d| d.overlay_bytes).sum();
            println!(
                "{:<20} {:<36} {} disk(s)  written {:<10} nbd {}  since {}",
                s.id,
                s.restore_point,
                s.disks.len(),
                bytes(written),
                if s.nbd { "yes" } else { "no" },
                s.created.format("%Y-%m-%d %H:%M:%S")
            );
        }
    }
    Ok(exit::OK)
}

fn stop(a: StopArgs, remote: Option<&RemoteArgs>) -> anyhow::Result<i32> {
    let resp = if let Some(remote) = remote {
        let c = client(remote)?;
        let name = server_repository(&c, &a.server)?;
        let stopped = c.stop_recovery(&name, &a.session, a.keep_overlay)?;
        Response::Stopped {
            session: stopped.session,
            overlay_kept: stopped.overlay_kept,
        }
    } else {
        let req = Request::Stop {
            session: a.session.clone(),
            keep_overlay: a.keep_overlay,
        };
        match ask(&a.cache.cache_dir, &req, a.output.json)? {
            Ok(r) => r,
            Err(code) => return Ok(code),
        }
    };
    if a.output.json {
        print_json(&resp)?;
    } else if a.keep_overlay {
        println!("stopped {} (overlay kept)", a.session);
    } else {
        println!("stopped {}", a.session);
    }
    Ok(exit::OK)
}

fn migrate(a: MigrateArgs) -> anyhow::Result<i32> {
    let req = Request::Migrate {
        session: a.session.clone(),
        to: absolute(&a.to)?,
        format: a.format.clone(),
    };
    let resp = match ask(&a.cache.cache_dir, &req, a.output.json)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if a.output.json {
        print_json(&resp)?;
        return Ok(exit::OK);
    }
    if let Response::Migrated { migrated } = &resp {
        for m in migrated {
            println!(
                "{} {} -> {} ({}, {}, {} written, {} ms)",
                m.session,
                m.disk,
                m.path.display(),
                m.format,
                bytes(m.size),
                bytes(m.bytes_written),
                m.elapsed_ms
            );
        }
    }
    Ok(exit::OK)
}
