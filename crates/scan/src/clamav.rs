//! ClamAV over a directory tree: runs `clamscan -r -i --no-summary [-d DB]`
//! (or `clamdscan --fdpass` when no database is given and a clamd socket
//! answers PING) and parses its output.
//!
//! Output parsed (stdout and stderr alike):
//! - `PATH: SIGNATURE FOUND` → a [`ClamHit`];
//! - `PATH: MESSAGE ERROR` (e.g. `Can't read file ERROR` on EIO),
//!   `WARNING: PATH: Can't access file`, `Can't open file PATH`,
//!   `ERROR: Can't open file PATH` → an [`ClamUnreadable`], never clean.
//!
//! Exit codes: 0 clean, 1 found, 2 error. Exit code 2 with per-file errors
//! parsed is not fatal (the files are reported unreadable); exit code 2 with
//! nothing parsed is an error carrying stderr. ClamAV appends `.UNOFFICIAL`
//! to names from a local database; it is kept as printed.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::clamav_db::{inspect_path, parse_version_line, ClamSignatures, DEFAULT_DB_DIR};
use crate::error::{Result, ScanError};

/// Default clamd sockets on Debian.
const CLAMD_SOCKETS: &[&str] = &["/run/clamav/clamd.ctl", "/var/run/clamav/clamd.ctl"];

/// A file ClamAV found a signature in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamHit {
    pub path: PathBuf,
    pub signature: String,
}

/// A file ClamAV could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamUnreadable {
    pub path: PathBuf,
    pub reason: String,
}

/// What one ClamAV run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClamOutcome {
    pub detections: Vec<ClamHit>,
    pub unreadable: Vec<ClamUnreadable>,
}

/// Runs ClamAV's command-line scanners.
#[derive(Debug, Clone)]
pub struct ClamAvScanner {
    database: Option<PathBuf>,
    clamd_socket: Option<PathBuf>,
}

impl ClamAvScanner {
    /// A scanner using `database` (a `.ndb`/`.hdb`/... file or a directory of
    /// them) with `clamscan`; with `None`, clamd is used when its socket
    /// answers, else `clamscan` with its default database.
    pub fn new(database: Option<PathBuf>) -> Self {
        let clamd_socket = if database.is_none() {
            CLAMD_SOCKETS
                .iter()
                .map(PathBuf::from)
                .find(|p| clamd_answers(p))
        } else {
            None
        };
        ClamAvScanner {
            database,
            clamd_socket,
        }
    }

    /// True when scans go through clamd.
    pub fn uses_clamd(&self) -> bool {
        self.clamd_socket.is_some()
    }

    /// A fingerprint of the signatures in use, for the scan cache: BLAKE3
    /// over the database file names and contents (or the clamd socket path
    /// and the ClamAV version when the daemon's database is used).
    pub fn fingerprint(&self) -> Result<String> {
        let mut h = blake3::Hasher::new();
        h.update(b"clamav\0");
        match &self.database {
            Some(db) => {
                let mut files = Vec::new();
                if db.is_dir() {
                    let rd = std::fs::read_dir(db).map_err(|e| ScanError::io(db, e))?;
                    for entry in rd {
                        let entry = entry.map_err(|e| ScanError::io(db, e))?;
                        files.push(entry.path());
                    }
                    files.sort();
                } else {
                    files.push(db.clone());
                }
                for f in files {
                    let bytes = std::fs::read(&f).map_err(|e| ScanError::io(&f, e))?;
                    h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
                    h.update(&(bytes.len() as u64).to_le_bytes());
                    h.update(&bytes);
                }
            }
            None => {
                let out = Command::new("clamscan")
                    .arg("--version")
                    .output()
                    .map_err(|e| spawn_error("clamscan", e))?;
                h.update(&out.stdout);
                if let Some(s) = &self.clamd_socket {
                    h.update(s.as_os_str().as_encoded_bytes());
                }
            }
        }
        Ok(h.finalize().to_hex().to_string())
    }

    /// The signatures scans use: clamd's database when scans go through
    /// clamd, else `database` (or [`DEFAULT_DB_DIR`]) with the version of
    /// `clamscan`.
    pub fn signatures(&self) -> Result<ClamSignatures> {
        if let Some(sock) = &self.clamd_socket {
            let answer =
                clamd_command(sock, b"zVERSION\0").ok_or_else(|| ScanError::ToolFailed {
                    tool: "clamd".to_string(),
                    code: None,
                    stderr: format!("no answer to VERSION on {}", sock.display()),
                })?;
            let (engine, daily) = parse_version_line(&answer);
            return Ok(ClamSignatures {
                engine,
                location: format!("clamd ({})", sock.display()),
                parts: daily.into_iter().collect(),
                other_files: 0,
                other_digest: None,
                other_newest: None,
                problems: Vec::new(),
            });
        }
        let out = Command::new("clamscan")
            .arg("--version")
            .output()
            .map_err(|e| spawn_error("clamscan", e))?;
        let (engine, _) = parse_version_line(&String::from_utf8_lossy(&out.stdout));
        let db = self
            .database
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_DIR));
        Ok(inspect_path(&db, &engine))
    }

    /// Scans every file under `root` recursively.
    pub fn scan_tree(&self, root: &Path) -> Result<ClamOutcome> {
        self.run(|cmd| {
            cmd.arg(root);
        })
    }

    /// Scans exactly the listed files (through `--file-list`).
    pub fn scan_files(&self, files: &[PathBuf]) -> Result<ClamOutcome> {
        if files.is_empty() {
            return Ok(ClamOutcome::default());
        }
        let mut list = tempfile_list()?;
        for f in files {
            list.1
                .write_all(f.as_os_str().as_encoded_bytes())
                .and_then(|_| list.1.write_all(b"\n"))
                .map_err(|e| ScanError::io(&list.0, e))?;
        }
        list.1.flush().map_err(|e| ScanError::io(&list.0, e))?;
        let path = list.0.clone();
        let out = self.run(|cmd| {
            let mut arg = std::ffi::OsString::from("--file-list=");
            arg.push(&path);
            cmd.arg(arg);
        });
        let _ = std::fs::remove_file(&path);
        out
    }

    fn run(&self, add_targets: impl FnOnce(&mut Command)) -> Result<ClamOutcome> {
        let tool = if self.clamd_socket.is_some() {
            "clamdscan"
        } else {
            "clamscan"
        };
        let mut cmd = Command::new(tool);
        if self.clamd_socket.is_some() {
            cmd.args(["--fdpass", "-m", "-i", "--no-summary"]);
        } else {
            cmd.args(["-r", "-i", "--no-summary"]);
            if let Some(db) = &self.database {
                cmd.arg("-d").arg(db);
            }
        }
        add_targets(&mut cmd);
        let out = cmd.output().map_err(|e| spawn_error(tool, e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut outcome = parse_output(&stdout);
        let from_stderr = parse_output(&stderr);
        outcome.detections.extend(from_stderr.detections);
        outcome.unreadable.extend(from_stderr.unreadable);
        match out.status.code() {
            Some(0) | Some(1) => Ok(outcome),
            Some(2) if !outcome.unreadable.is_empty() && !has_fatal_error(&stderr) => Ok(outcome),
            code => Err(ScanError::ToolFailed {
                tool: tool.to_string(),
                code,
                stderr: stderr.trim().to_string(),
            }),
        }
    }
}

/// Lines that mean the whole run failed rather than one file.
fn has_fatal_error(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        (l.contains("Can't open file or directory") && l.contains("database"))
            || l.contains("cli_loaddb")
            || l.contains("Malformed database")
            || l.contains("No supported database files found")
            || l.starts_with("LibClamAV Error: cl_load")
    })
}

fn spawn_error(tool: &str, e: std::io::Error) -> ScanError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ScanError::ToolMissing {
            tool: tool.to_string(),
        }
    } else {
        ScanError::Spawn {
            tool: tool.to_string(),
            source: e,
        }
    }
}

fn tempfile_list() -> Result<(PathBuf, std::fs::File)> {
    let dir = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!(
        "lifeboat-clamscan-{}-{nanos}.list",
        std::process::id()
    ));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| ScanError::io(&path, e))?;
    Ok((path, f))
}

/// True when a clamd socket at `path` answers `PING` with `PONG`.
fn clamd_answers(path: &Path) -> bool {
    clamd_command(path, b"zPING\0").is_some_and(|a| a.starts_with("PONG"))
}

/// clamd's answer (at most 256 bytes, up to its NUL) to `command` on the
/// socket at `path`; `None` when it does not answer within 2 s.
fn clamd_command(path: &Path, command: &[u8]) -> Option<String> {
    let mut s = UnixStream::connect(path).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    s.write_all(command).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while answer.len() < 256 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(buf.get(..n)?),
        }
        if answer.contains(&0) {
            break;
        }
    }
    let end = answer.iter().position(|&b| b == 0).unwrap_or(answer.len());
    let text = String::from_utf8_lossy(answer.get(..end)?).into_owned();
    (!text.is_empty()).then_some(text)
}

/// Parses clamscan/clamdscan output (either stream) into hits and
/// unreadable files. Unknown lines are ignored.
pub fn parse_output(text: &str) -> ClamOutcome {
    let mut out = ClamOutcome::default();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_suffix(" FOUND") {
            if let Some((path, sig)) = rest.rsplit_once(": ") {
                out.detections.push(ClamHit {
                    path: PathBuf::from(path),
                    signature: sig.to_string(),
                });
            }
        } else if let Some(rest) = line.strip_prefix("WARNING: ") {
            // `WARNING: PATH: Can't access file` and similar per-file warnings.
            if let Some((path, reason)) = rest.rsplit_once(": ") {
                if reason.starts_with("Can't") || reason.contains("denied") {
                    out.unreadable.push(ClamUnreadable {
                        path: PathBuf::from(path),
                        reason: reason.to_string(),
                    });
                }
            }
        } else if let Some(path) = line
            .strip_prefix("ERROR: Can't open file ")
            .or_else(|| line.strip_prefix("Can't open file "))
        {
            out.unreadable.push(ClamUnreadable {
                path: PathBuf::from(path),
                reason: "Can't open file".to_string(),
            });
        } else if let Some(rest) = line.strip_suffix(" ERROR") {
            if line.starts_with("LibClamAV") {
                continue;
            }
            if let Some((path, reason)) = rest.rsplit_once(": ") {
                out.unreadable.push(ClamUnreadable {
                    path: PathBuf::from(path),
                    reason: reason.to_string(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_found_lines_with_colons_in_path() {
        let o = parse_output(
            "/m/a: b/eicar.com: Lifeboat.Test.Eicar.UNOFFICIAL FOUND\n\
             t/marker.txt: Lifeboat.Test.Marker.UNOFFICIAL FOUND\n",
        );
        assert_eq!(o.detections.len(), 2);
        assert_eq!(o.detections[0].path, PathBuf::from("/m/a: b/eicar.com"));
        assert_eq!(o.detections[0].signature, "Lifeboat.Test.Eicar.UNOFFICIAL");
        assert!(o.unreadable.is_empty());
    }

    /// Captured from clamscan 1.4.6 (a missing path: stderr), plus the
    /// per-file error forms libclamav prints for EIO and open failures
    /// (`"%s: %s ERROR"` with `cl_strerror`), which an EIO under a published
    /// file produces; no honest way to make a file unreadable as root here.
    #[test]
    fn parses_unreadable_lines() {
        let o = parse_output(
            "/tmp/ct/nonexist: No such file or directory\n\
             WARNING: /tmp/ct/nonexist: Can't access file\n\
             /mnt/s/vm/disk0p1/var/lib/bad.bin: Can't read file ERROR\n\
             /mnt/s/vm/disk0p1/etc/shadow: Can't open file or directory ERROR\n\
             ERROR: Can't open file /mnt/s/x y\n\
             LibClamAV Error: cli_scanfile: something ERROR\n",
        );
        assert!(o.detections.is_empty());
        let paths: Vec<_> = o.unreadable.iter().map(|u| u.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                PathBuf::from("/tmp/ct/nonexist"),
                PathBuf::from("/mnt/s/vm/disk0p1/var/lib/bad.bin"),
                PathBuf::from("/mnt/s/vm/disk0p1/etc/shadow"),
                PathBuf::from("/mnt/s/x y"),
            ]
        );
        assert_eq!(o.unreadable[1].reason, "Can't read file");
    }

    #[test]
    fn garbage_is_ignored() {
        let o = parse_output("FOUND\n: FOUND\nrandom ERROR\n\u{0}\n");
        assert!(o.detections.is_empty());
        assert!(o.unreadable.is_empty());
    }
}
