//! `lifeboat job ...` and `lifeboat session ...`: the server's jobs and
//! their sessions through lifeboat_server's client (`--server`, `--token`,
//! `--ca`); tables for people, `--json` for scripts. `job run --wait` and
//! `session show --follow` poll the session until it ends.

use super::remote::client;
use crate::args::{OutputArgs, RemoteArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use crate::progress::Bars;
use clap::{Args, Subcommand};
use lifeboat_engine::Progress;
use lifeboat_server::api::jobs::{CreateJob, UpdateJob};
use lifeboat_server::catalog::jobs::{Job, Retention};
use lifeboat_server::catalog::sessions::Session;
use lifeboat_server::Client;
use std::time::Duration;

/// How often `--wait` and `--follow` ask the server.
const POLL: Duration = Duration::from_millis(500);

#[derive(Subcommand)]
pub enum JobCommand {
    /// Create a job: back up one VM's sources into a served repository
    Create(JobCreateArgs),
    /// List jobs
    List(OutputArgs),
    /// Show one job
    Show(JobNameArgs),
    /// Change a job: the options given change, the others stay
    Update(JobUpdateArgs),
    /// Run a job now (202: queued); --wait until its session ends
    Run(JobRunArgs),
    /// Delete a job (admin); its sessions stay as history
    Delete(JobNameArgs),
}

#[derive(Args)]
pub struct JobCreateArgs {
    /// The job's name, also the VM's name in the repository
    pub name: String,
    /// The served repository's name (`serve --repo NAME=PATH`)
    #[arg(long, value_name = "NAME")]
    pub repo_name: String,
    /// NAME=[FORMAT:]PATH of an image file (absolute, on the server), or one
    /// qmp:/path/to.sock (repeatable)
    #[arg(long = "source", value_name = "SPEC", required = true)]
    pub sources: Vec<String>,
    /// Cron expression in the server's time zone, e.g. "0 2 * * *"
    /// (without: runs on demand only)
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// After each successful run keep the newest N restore points of the VM
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_last: u32,
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_daily: u32,
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_weekly: u32,
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_monthly: u32,
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_yearly: u32,
    /// Run by this enrolled proxy only (default: the server runs it)
    #[arg(long, value_name = "NAME", conflicts_with = "pool")]
    pub proxy: Option<String>,
    /// Run by any enrolled proxy
    #[arg(long)]
    pub pool: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct JobUpdateArgs {
    pub name: String,
    /// Replace the sources (repeatable)
    #[arg(long = "source", value_name = "SPEC")]
    pub sources: Vec<String>,
    /// New cron schedule
    #[arg(long, value_name = "CRON", conflicts_with = "no_schedule")]
    pub schedule: Option<String>,
    /// Remove the schedule: on demand only
    #[arg(long)]
    pub no_schedule: bool,
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Runs again on its schedule and on demand
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Runs neither on its schedule nor on demand
    #[arg(long)]
    pub disable: bool,
    /// Run by this enrolled proxy only
    #[arg(long, value_name = "NAME", conflicts_with_all = ["pool", "on_server"])]
    pub proxy: Option<String>,
    /// Run by any enrolled proxy
    #[arg(long, conflicts_with = "on_server")]
    pub pool: bool,
    /// Run by the server itself
    #[arg(long)]
    pub on_server: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct JobNameArgs {
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct JobRunArgs {
    pub name: String,
    /// Wait for the session to end; exit non-zero when it failed
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand)]
pub enum SessionCommand {
    /// The newest sessions, newest first
    List(SessionListArgs),
    /// One session with its log; --follow prints new log lines until it ends
    Show(SessionShowArgs),
    /// Cancel a queued or running session (operator); it is not retried
    Cancel(SessionCancelArgs),
}

#[derive(Args)]
pub struct SessionCancelArgs {
    pub id: i64,
    /// Wait until the session has ended
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct SessionListArgs {
    /// Only this job's sessions
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct SessionShowArgs {
    pub id: i64,
    /// Print new log lines until the session ends
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `lifeboat job ...`.
pub fn job(remote: &RemoteArgs, command: JobCommand) -> anyhow::Result<i32> {
    let c = client(remote)?;
    match command {
        JobCommand::Create(a) => {
            let job = c.create_job(&CreateJob {
                name: a.name,
                repository: a.repo_name,
                sources: a.sources,
                schedule: a.schedule,
                retention: Retention {
                    last: a.keep_last,
                    daily: a.keep_daily,
                    weekly: a.keep_weekly,
                    monthly: a.keep_monthly,
                    yearly: a.keep_yearly,
                },
                proxy: a.proxy,
                pool: a.pool,
            })?;
            if a.output.json {
                print_json(&job)?;
            } else {
                println!("created job {}", job.name);
                print_job(&job);
            }
        }
        JobCommand::List(output) => {
            let jobs = c.list_jobs()?;
            if output.json {
                print_json(&jobs)?;
            } else {
                println!(
                    "{:<20} {:<12} {:<16} sources",
                    "name", "repository", "schedule"
                );
                for j in &jobs {
                    println!(
                        "{:<20} {:<12} {:<16} {}",
                        j.name,
                        j.repository,
                        j.schedule.as_deref().unwrap_or("on demand"),
                        j.sources.join(" ")
                    );
                }
            }
        }
        JobCommand::Show(a) => {
            let job = c.job(&a.name)?;
            if a.output.json {
                print_json(&job)?;
            } else {
                print_job(&job);
            }
        }
        JobCommand::Run(a) => {
            let session = c.run_job(&a.name)?;
            if !a.wait {
                if a.output.json {
                    print_json(&session)?;
                } else {
                    println!("queued session {} of job {}", session.id, session.job);
                }
                return Ok(exit::OK);
            }
            if !a.output.json {
                println!("queued session {} of job {}", session.id, session.job);
            }
            let ended = follow(&c, session.id, !a.output.json)?;
            if a.output.json {
                print_json(&ended)?;
            } else {
                print_session(&ended);
            }
            return Ok(if ended.state.as_str() == "succeeded" {
                exit::OK
            } else {
                exit::ERROR
            });
        }
        JobCommand::Update(a) => {
            let keeps = [
                a.keep_last,
                a.keep_daily,
                a.keep_weekly,
                a.keep_monthly,
                a.keep_yearly,
            ];
            let retention = if keeps.iter().any(Option::is_some) {
                let r = c.job(&a.name)?.retention;
                Some(Retention {
                    last: a.keep_last.unwrap_or(r.last),
                    daily: a.keep_daily.unwrap_or(r.daily),
                    weekly: a.keep_weekly.unwrap_or(r.weekly),
                    monthly: a.keep_monthly.unwrap_or(r.monthly),
                    yearly: a.keep_yearly.unwrap_or(r.yearly),
                })
            } else {
                None
            };
            let job = c.update_job(
                &a.name,
                &UpdateJob {
                    sources: (!a.sources.is_empty()).then_some(a.sources),
                    schedule: a.schedule.or(a.no_schedule.then(String::new)),
                    retention,
                    enabled: (a.enable || a.disable).then_some(a.enable),
                    proxy: a.proxy.or(a.on_server.then(String::new)),
                    pool: (a.pool || a.on_server).then_some(a.pool),
                },
            )?;
            if a.output.json {
                print_json(&job)?;
            } else {
                println!("updated job {}", job.name);
                print_job(&job);
            }
        }
        JobCommand::Delete(a) => {
            let d = c.delete_job(&a.name)?;
            if a.output.json {
                print_json(&d)?;
            } else {
                println!("deleted job {}", d.deleted);
            }
        }
    }
    Ok(exit::OK)
}

/// `lifeboat session ...`.
pub fn session(remote: &RemoteArgs, command: SessionCommand) -> anyhow::Result<i32> {
    let c = client(remote)?;
    match command {
        SessionCommand::List(a) => {
            let sessions = c.sessions(a.job.as_deref())?;
            if a.output.json {
                print_json(&sessions)?;
            } else {
                println!(
                    "{:>6}  {:<16} {:<9} {:>7}  {:<10} {:<21} {:>10}  restore point / error",
                    "id", "job", "trigger", "attempt", "state", "queued (UTC)", "read"
                );
                for s in &sessions {
                    println!(
                        "{:>6}  {:<16} {:<9} {:>7}  {:<10} {:<21} {:>10}  {}",
                        s.id,
                        s.job,
                        s.trigger.as_str(),
                        s.attempt,
                        s.state.as_str(),
                        s.queued_at,
                        bytes(s.bytes_read),
                        s.restore_point
                            .as_deref()
                            .or(s.error.as_deref())
                            .unwrap_or("")
                    );
                }
            }
        }
        SessionCommand::Cancel(a) => {
            let mut s = c.cancel_session(a.id)?;
            if a.wait {
                s = follow(&c, a.id, false)?;
            }
            if a.output.json {
                print_json(&s)?;
            } else {
                println!("cancel of session {} requested: {}", s.id, s.state.as_str());
            }
        }
        SessionCommand::Show(a) => {
            let s = if a.follow {
                follow(&c, a.id, !a.output.json)?
            } else {
                c.session(a.id)?
            };
            if a.output.json {
                print_json(&s)?;
            } else {
                if !a.follow {
                    for l in s.log.iter().flatten() {
                        println!("{}  {}", l.time, l.line);
                    }
                }
                print_session(&s);
            }
        }
    }
    Ok(exit::OK)
}

/// Polls session `id` until it ends, printing new log lines when `print`
/// and, on a terminal, a bar of its bytes read with the rate and the time
/// left (a new bar when a disk starts and the total grows).
fn follow(c: &Client, id: i64, print: bool) -> anyhow::Result<Session> {
    let mut shown = 0;
    let bars = Bars::new();
    let (mut total, mut read) = (0u64, 0u64);
    loop {
        let s = c.session(id)?;
        let log = s.log.as_deref().unwrap_or_default();
        if print {
            if s.bytes_total != total {
                bars.finish();
                total = s.bytes_total;
                bars.start(&format!("session {id}"), total);
                read = 0;
            }
            for l in log.iter().skip(shown) {
                bars.println(&format!("{}  {}", l.time, l.line));
            }
            bars.advance(s.bytes_read.saturating_sub(read));
            read = read.max(s.bytes_read);
        }
        shown = shown.max(log.len());
        if s.state.ended() {
            bars.finish();
            return Ok(s);
        }
        std::thread::sleep(POLL);
    }
}

fn print_job(j: &Job) {
    println!("  repository     {}", j.repository);
    for s in &j.sources {
        println!("  source         {s}");
    }
    println!(
        "  schedule       {}",
        j.schedule.as_deref().unwrap_or("on demand only")
    );
    let r = &j.retention;
    if r.policy().is_some() {
        println!(
            "  keep           last {} daily {} weekly {} monthly {} yearly {}",
            r.last, r.daily, r.weekly, r.monthly, r.yearly
        );
    } else {
        println!("  keep           everything");
    }
    println!("  created        {}", j.created_at);
    let runs_on = match (&j.runs_on.proxy, j.runs_on.pool) {
        (Some(p), _) => format!("proxy {p}"),
        (None, true) => "any enrolled proxy (pool)".into(),
        (None, false) => "the server itself".into(),
    };
    println!("  runs on        {runs_on}");
    if !j.enabled {
        println!("  disabled       (runs neither on its schedule nor on demand)");
    }
}

fn print_session(s: &Session) {
    println!(
        "session {} of job {}: {} ({}, attempt {})",
        s.id,
        s.job,
        s.state.as_str(),
        s.trigger.as_str(),
        s.attempt
    );
    println!(
        "  read {} of {}, stored {} new",
        bytes(s.bytes_read),
        bytes(s.bytes_total),
        bytes(s.bytes_stored)
    );
    println!(
        "  ran on {}",
        s.proxy
            .as_deref()
            .map_or("the server itself".into(), |p| format!("proxy {p}"))
    );
    if let Some(p) = &s.restore_point {
        println!("  restore point {p}");
    }
    if let Some(e) = &s.error {
        println!("  error: {e}");
    }
}
