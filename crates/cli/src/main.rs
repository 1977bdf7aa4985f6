//! `lifeboat`: the one binary whose subcommands play every role.
//!
//! Exit codes scripts can rely on (see docs/cli.md):
//! 0 success (a clean scan), 1 error, 2 bad usage, 3 damage found (verify,
//! gc refusing to sweep past an unreadable index),
//! a restore that met a missing/corrupt chunk, or an incomplete scan,
//! 4 wrong or missing passphrase, 5 not found (repository or restore point;
//! `scan --find-clean` found no clean point), 6 refused because locked,
//! 7 infected (`scan` found malware), 8 unproven (`scan` found nothing but
//! proved nothing), 9 busy (another process holds a repository lock), 130
//! interrupted (SIGINT/SIGTERM during `scan`), 11 the server refused the
//! token (see exit.rs).

mod args;
mod commands;
mod demo;
mod exit;
mod output;
mod passphrase;
mod progress;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    let code = match commands::run(cli.command, &cli.remote) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lifeboat: error: {}", output::error_message(&err));
            exit::code_for(&err)
        }
    };
    std::process::exit(code);
}
