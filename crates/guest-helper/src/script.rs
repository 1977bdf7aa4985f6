//! Running one script: its own process group, stdout and stderr streamed
//! line by line as they come, killed (the whole group) at its timeout.
//!
//! Once the script itself has exited, output still in its pipes is
//! forwarded for at most [`DRAIN`]; whatever it left running in the
//! background with the pipes open is not waited for.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lifeboat_guest_helper::wire::{split_line, ScriptEnd, Stream, MAX_LINE};

/// How long output is still forwarded after the script exited or was killed.
const DRAIN: Duration = Duration::from_millis(500);

/// PATH for scripts when the helper was started without one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

type Line = (Stream, Option<String>);

/// Runs `path`; `send` gets each output line. An error from `send` (the
/// proxy is gone) kills the script and is returned.
pub fn run(
    path: &Path,
    timeout: Duration,
    send: &mut dyn FnMut(Stream, String) -> std::io::Result<()>,
) -> std::io::Result<ScriptEnd> {
    if !path.is_file() {
        return Ok(ScriptEnd::NotRun(format!(
            "{} does not exist",
            path.display()
        )));
    }
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)) {
        return Ok(ScriptEnd::NotRun(format!(
            "cannot make {} executable: {e}",
            path.display()
        )));
    }
    let mut cmd = Command::new(path);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = path.parent() {
        cmd.current_dir(dir);
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ok(ScriptEnd::NotRun(format!(
                "cannot start {}: {e}",
                path.display()
            )))
        }
    };
    let (tx, rx) = mpsc::channel::<Line>();
    if let Some(out) = child.stdout.take() {
        forward(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward(err, Stream::Stderr, tx);
    }
    let deadline = Instant::now() + timeout;
    let mut open = 2;
    let (end, drain_until) = loop {
        if let Some(status) = child.try_wait()? {
            let end = match status.code() {
                Some(c) => ScriptEnd::Exited(c),
                None => ScriptEnd::Killed(status.signal().unwrap_or(0)),
            };
            break (end, Instant::now() + DRAIN);
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            break (ScriptEnd::TimedOut(timeout), Instant::now() + DRAIN);
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        if let Err(e) = pass_on(&rx, wait, &mut open, send) {
            kill_group(&mut child);
            return Err(e);
        }
    };
    while open > 0 {
        let left = drain_until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        pass_on(&rx, left, &mut open, send)?;
    }
    Ok(end)
}

/// Passes on the next line, if one comes within `wait`.
fn pass_on(
    rx: &mpsc::Receiver<Line>,
    wait: Duration,
    open: &mut usize,
    send: &mut dyn FnMut(Stream, String) -> std::io::Result<()>,
) -> std::io::Result<()> {
    match rx.recv_timeout(wait) {
        Ok((stream, Some(line))) => send(stream, line),
        Ok((_, None)) => {
            *open = open.saturating_sub(1);
            Ok(())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Ok(()),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            *open = 0;
            Ok(())
        }
    }
}

/// Kills the script's process group (the script and everything it started
/// that stayed in it) and reaps the script.
fn kill_group(child: &mut Child) {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    match pid {
        Some(pid) => {
            if let Err(e) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)
            {
                eprintln!("lifeboat-guest-helper: killing process group {pid:?}: {e}");
                let _ = child.kill();
            }
        }
        None => {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}

/// A thread that sends each line of `pipe`, then `None` at its end.
fn forward(pipe: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<Line>) {
    let spawned = std::thread::Builder::new()
        .name("script-output".into())
        .spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match (&mut r).take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        for part in split_line(&String::from_utf8_lossy(&buf)) {
                            if tx.send((stream, Some(part))).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            let _ = tx.send((stream, None));
        });
    if let Err(e) = spawned {
        eprintln!("lifeboat-guest-helper: cannot start an output reader: {e}");
    }
}
