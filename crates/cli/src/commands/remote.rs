//! The commands that are requests to a Lifeboat server (`--server`,
//! `--ca`, `--token`): `login`, `token create|list|delete`,
//! `restore-point list`. lifeboat_server's client does the work; this
//! parses and prints (tables for people, `--json` for scripts).

use crate::args::{OutputArgs, RemoteArgs};
use crate::exit;
use crate::output::print_json;
use clap::{Args, Subcommand};
use lifeboat_server::{Client, Role};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once
    Create(TokenCreateArgs),
    /// List tokens (never their secrets)
    List(OutputArgs),
    /// Delete a token: it is refused from its next request on
    Delete(TokenDeleteArgs),
}

#[derive(Args)]
pub struct TokenCreateArgs {
    /// admin, operator or viewer
    #[arg(long)]
    pub role: Role,
    /// A name to recognise it by (default: the role)
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct TokenDeleteArgs {
    /// The token's id (`token list`)
    pub id: i64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand)]
pub enum RestorePointCommand {
    /// List the restore points of a repository the server serves
    List(RestorePointListArgs),
}

#[derive(Args)]
pub struct RestorePointListArgs {
    /// The repository's name on the server (`serve --repo NAME=PATH`)
    #[arg(long, value_name = "NAME")]
    pub repo_name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Compare the server's catalog with its repositories: restore points
    /// committed but not recorded, recorded but gone or damaged, jobs of
    /// unserved repositories (admin)
    Check(CatalogCheckArgs),
}

#[derive(Args)]
pub struct CatalogCheckArgs {
    /// Bring the catalog in line where it can be (never writes a repository)
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub(crate) fn client(remote: &RemoteArgs) -> anyhow::Result<Client> {
    let server = remote
        .server
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no server: give --server URL or set LIFEBOAT_SERVER"))?;
    Ok(Client::new(
        server,
        remote.ca.as_deref(),
        remote.token.clone(),
    )?)
}

/// `lifeboat login`.
pub fn login(remote: &RemoteArgs, output: OutputArgs) -> anyhow::Result<i32> {
    let t = client(remote)?.login()?;
    if output.json {
        print_json(&t)?;
    } else {
        println!(
            "logged in as token {} ({:?}), role {}",
            t.id, t.name, t.role
        );
    }
    Ok(exit::OK)
}

/// `lifeboat token ...`.
pub fn token(remote: &RemoteArgs, command: TokenCommand) -> anyhow::Result<i32> {
    let c = client(remote)?;
    match command {
        TokenCommand::Create(a) => {
            let created = c.create_token(a.role, a.name)?;
            if a.output.json {
                print_json(&created)?;
            } else {
                println!(
                    "token {} ({:?}), role {}",
                    created.token.id, created.token.name, created.token.role
                );
                println!("secret (shown once, keep it safe): {}", created.secret);
            }
        }
        TokenCommand::List(output) => {
            let tokens = c.list_tokens()?;
            if output.json {
                print_json(&tokens)?;
            } else {
                println!(
                    "{:>6}  {:<9} {:<21} {:>10}  name",
                    "id", "role", "created (UTC)", "created by"
                );
                for t in &tokens {
                    println!(
                        "{:>6}  {:<9} {:<21} {:>10}  {}",
                        t.id,
                        t.role.as_str(),
                        t.created_at,
                        t.created_by.map_or("-".into(), |b| b.to_string()),
                        t.name
                    );
                }
            }
        }
        TokenCommand::Delete(a) => {
            let d = c.delete_token(a.id)?;
            if a.output.json {
                print_json(&d)?;
            } else {
                println!("deleted token {}", d.deleted);
            }
        }
    }
    Ok(exit::OK)
}

/// `lifeboat restore-point list`.
pub fn restore_point(remote: &RemoteArgs, command: RestorePointCommand) -> anyhow::Result<i32> {
    let RestorePointCommand::List(a) = command;
    let points = client(remote)?.restore_points(&a.repo_name)?;
    if a.output.json {
        print_json(&points)?;
        return Ok(exit::OK);
    }
    let report = points
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<Vec<lifeboat_repo::ListedPoint>, _>>()
        .map_err(|e| anyhow::anyhow!("the server's restore point list does not read: {e}"))?;
    super::inspect::print_listing(&report);
    Ok(exit::OK)
}

/// `lifeboat catalog check [--repair]`: exit 0 when nothing is left to
/// repair, 3 when a finding remains.
pub fn catalog(remote: &RemoteArgs, command: CatalogCommand) -> anyhow::Result<i32> {
    let CatalogCommand::Check(a) = command;
    let report = client(remote)?.check(a.repair)?;
    let left = report.findings.iter().filter(|f| !f.repaired).count();
    if a.output.json {
        print_json(&report)?;
    } else {
        for f in &report.findings {
            let state = if f.repaired { "repaired" } else { "found" };
            println!("{state:<9} {:?}: {}", f.kind, f.detail);
        }
        println!(
            "checked {} session(s) against {} repository(ies): {} finding(s), {} repaired",
            report.sessions_checked,
            report.repositories_checked,
            report.findings.len(),
            report.findings.len() - left
        );
    }
    Ok(if left == 0 { exit::OK } else { exit::DAMAGE })
}
