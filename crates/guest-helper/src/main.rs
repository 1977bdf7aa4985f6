//! `lifeboat-guest-helper --dir DIR [--listen ADDR] [--idle-timeout SECS]`:
//! the helper Lifeboat copies into a guest for application-aware backup.
//!
//! DIR (named `lifeboat-helper-*`, made by the proxy, mode 0700) holds the
//! helper's certificate and key, the proxy's certificate (the only client
//! accepted) and the scripts (`layout`). The helper serves one pinned
//! proxy session on ADDR (default `0.0.0.0:3542`), then exits; it also
//! exits when nobody connects, or the proxy sends nothing, for the idle
//! timeout (default 120 s). On every exit it removes DIR, itself included.
//! It never connects anywhere. Its log goes to stderr.

mod script;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use lifeboat_guest_helper::layout::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_PORT, DIR_PREFIX, HELPER_CERT, HELPER_KEY, PROXY_CERT,
};
use lifeboat_guest_helper::pin::{server_config, Identity};

struct Args {
    dir: PathBuf,
    listen: String,
    idle: Duration,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut dir = None;
    let mut listen = format!("0.0.0.0:{DEFAULT_PORT}");
    let mut idle = DEFAULT_IDLE_TIMEOUT;
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--listen" => listen = value()?,
            "--idle-timeout" => {
                let v = value()?;
                let s: u64 = v
                    .parse()
                    .map_err(|_| format!("--idle-timeout {v}: not a number of seconds"))?;
                idle = Duration::from_secs(s.max(1));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let dir = dir.ok_or("--dir DIR is required")?;
    let name_ok = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(DIR_PREFIX));
    if !dir.is_absolute() || !name_ok || !dir.is_dir() {
        return Err(format!(
            "--dir {}: must be an existing absolute directory named {DIR_PREFIX}*",
            dir.display()
        ));
    }
    Ok(Args { dir, listen, idle })
}

/// Removes the helper's directory when dropped.
struct RemoveOnExit<'a>(&'a Path);

impl Drop for RemoveOnExit<'_> {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(self.0) {
            Ok(()) => eprintln!("lifeboat-guest-helper: removed {}", self.0.display()),
            Err(e) => eprintln!("lifeboat-guest-helper: removing {}: {e}", self.0.display()),
        }
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let p = dir.join(name);
    std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lifeboat-guest-helper: {e}");
            return ExitCode::from(2);
        }
    };
    let _remove = RemoveOnExit(&args.dir);
    let tls = read(&args.dir, HELPER_CERT).and_then(|cert| {
        let key = read(&args.dir, HELPER_KEY)?;
        let peer = read(&args.dir, PROXY_CERT)?;
        server_config(&Identity { cert, key }, &peer).map_err(|e| e.to_string())
    });
    let tls = match tls {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lifeboat-guest-helper: {e}");
            return ExitCode::from(1);
        }
    };
    match serve::serve(&args.dir, &args.listen, args.idle, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lifeboat-guest-helper: {e}");
            ExitCode::from(1)
        }
    }
}
