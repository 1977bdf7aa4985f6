//! `lifeboat key list|add|remove`: the passphrases of an encrypted
//! repository, one key slot each (`keys/<id>.key`, see
//! docs/repository-format.md).

use super::open_repo;
use crate::args::{OutputArgs, RepoArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// List the key slots: id, when added, Argon2id cost, state
    List(KeyListArgs),
    /// Add a passphrase (from --new-passphrase-file, else LIFEBOAT_NEW_PASSPHRASE)
    Add(KeyAddArgs),
    /// Remove a key slot: its passphrase no longer opens the repository
    Remove(KeyRemoveArgs),
}

#[derive(Args)]
pub struct KeyListArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct KeyAddArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// File holding the new passphrase (else LIFEBOAT_NEW_PASSPHRASE)
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct KeyRemoveArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Slot id (16 hex digits, from `key list`)
    pub slot: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(command: KeyCommand) -> anyhow::Result<i32> {
    match command {
        KeyCommand::List(a) => list(a),
        KeyCommand::Add(a) => add(a),
        KeyCommand::Remove(a) => remove(a),
    }
}

fn list(a: KeyListArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let slots = repo.key_slots()?;
    if a.output.json {
        print_json(&slots)?;
        return Ok(exit::OK);
    }
    println!("{:<16}  {:<20}  {:<26}  STATE", "SLOT", "ADDED", "KDF");
    for k in &slots {
        let added = k
            .added
            .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_else(|| "-".into());
        let kdf = k
            .kdf
            .map(|p| {
                format!(
                    "argon2id {} t={} p={}",
                    bytes(u64::from(p.m_cost_kib) * 1024),
                    p.t_cost,
                    p.p_cost
                )
            })
            .unwrap_or_else(|| "-".into());
        let mut state = match &k.damage {
            None => "ok".to_string(),
            Some(d) => format!("DAMAGED: {d}"),
        };
        if k.config_key {
            state.push_str(", config's key");
        }
        if k.in_use {
            state.push_str(", this passphrase");
        }
        println!("{:<16}  {added:<20}  {kdf:<26}  {state}", k.id);
    }
    Ok(exit::OK)
}

fn add(a: KeyAddArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let new = new_passphrase(a.new_passphrase_file.as_deref())?;
    let id = repo
        .add_key(&new)
        .with_context(|| format!("adding a key to {}", repo.path().display()))?;
    if a.output.json {
        print_json(&serde_json::json!({ "added": id }))?;
    } else {
        println!("added key slot {id}");
    }
    Ok(exit::OK)
}

fn remove(a: KeyRemoveArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    repo.remove_key(&a.slot)
        .with_context(|| format!("removing key slot {} of {}", a.slot, repo.path().display()))?;
    if a.output.json {
        print_json(&serde_json::json!({ "removed": a.slot }))?;
    } else {
        println!("removed key slot {}", a.slot);
    }
    Ok(exit::OK)
}

/// The new passphrase: `--new-passphrase-file` (first line), else
/// `LIFEBOAT_NEW_PASSPHRASE`; never from the command line.
fn new_passphrase(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    if let Some(path) = file {
        return crate::passphrase::passphrase(Some(path))?
            .context("the new passphrase file is empty");
    }
    std::env::var("LIFEBOAT_NEW_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty())
        .context("give the new passphrase in LIFEBOAT_NEW_PASSPHRASE or --new-passphrase-file")
}
