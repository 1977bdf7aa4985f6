//! `lifeboat files ls|get`: browse and copy files out of a restore point
//! in userspace (no root, no mounts), through `lifeboat-browse`. With one
//! disk holding one filesystem paths are plain; otherwise `--disk` /
//! `--volume` choose, and `ls` without a path lists the volumes.
//! `get` writes to a temporary file beside the target and renames it only
//! when every byte was read, so a damaged restore point leaves no output.

use super::open_repo;
use crate::args::{OutputArgs, RepoArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use anyhow::Context;
use clap::{Args, Subcommand};
use lifeboat_browse::{open_restore_point, Entry, EntryKind, VolumeInfo};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum FilesCommand {
    /// List a directory (without a path on a restore point with several
    /// filesystems: list its volumes)
    Ls(LsArgs),
    /// Copy one file out of a restore point, bytes exact
    Get(GetArgs),
}

/// Which restore point, disk and volume.
#[derive(Args)]
pub struct Target {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point: VM@ID or VM@latest
    pub restore_point: String,
    /// Disk of the restore point (needed when several hold filesystems)
    #[arg(long)]
    pub disk: Option<String>,
    /// Volume: a partition (disk0p1) or an LVM logical volume (vg0-root)
    #[arg(long)]
    pub volume: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Directory (absolute path inside the filesystem)
    pub path: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub target: Target,
    /// File (absolute path inside the filesystem)
    pub path: String,
    /// Where to write it (an existing directory receives the file by name)
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(command: FilesCommand) -> anyhow::Result<i32> {
    let result = match command {
        FilesCommand::Ls(a) => ls(a),
        FilesCommand::Get(a) => get(a),
    };
    match result {
        Err(e) if is_damage(&e) => {
            eprintln!("error: {}", crate::output::error_message(&e));
            Ok(exit::DAMAGE)
        }
        other => other,
    }
}

/// True when a missing or corrupt chunk caused `e`.
fn is_damage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<lifeboat_browse::Error>()
            .is_some_and(|b| b.is_damage())
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<lifeboat_browse::Error>())
                .is_some_and(|b| b.is_damage())
    })
}

fn ls(a: LsArgs) -> anyhow::Result<i32> {
    let t = &a.target;
    let repo = open_repo(&t.repo)?;
    let m = repo.resolve(&t.restore_point)?;
    let rp = open_restore_point(&repo, &m)?;
    for p in rp.problems() {
        let level = if p.kind.leaves_data_unserved() {
            "warning"
        } else {
            "note"
        };
        eprintln!("{level}: {p}");
    }
    let Some(path) = a.path.as_deref() else {
        let with_fs = rp.volumes().iter().filter(|v| v.fs.is_some()).count();
        if t.disk.is_none() && t.volume.is_none() && with_fs != 1 {
            print_volumes(&rp.volumes(), a.output.json)?;
            return Ok(exit::OK);
        }
        return list_dir(&rp, t, "/", a.output.json);
    };
    list_dir(&rp, t, path, a.output.json)
}

fn list_dir(
    rp: &lifeboat_browse::RestorePointVolumes,
    t: &Target,
    path: &str,
    json: bool,
) -> anyhow::Result<i32> {
    let sel = rp.select(t.disk.as_deref(), t.volume.as_deref())?;
    let fs = sel.open()?;
    let entries = match fs.stat(path)? {
        e if e.kind == EntryKind::Dir => fs.list(path)?,
        e => vec![e],
    };
    if json {
        print_json(&serde_json::json!({
            "disk": sel.disk,
            "volume": sel.volume.name,
            "filesystem": fs.fs_type(),
            "path": path,
            "entries": entries,
        }))?;
    } else {
        for e in &entries {
            println!("{}", entry_line(e));
        }
    }
    Ok(exit::OK)
}

fn print_volumes(vols: &[VolumeInfo], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!({ "volumes": vols }));
    }
    println!(
        "{:<8} {:<16} {:>10} {:<8} TYPE",
        "DISK", "VOLUME", "SIZE", "FS"
    );
    for v in vols {
        let fs = v.fs.map(|f| f.name()).unwrap_or("-");
        println!(
            "{:<8} {:<16} {:>10} {:<8} {}{}",
            v.disk,
            v.name,
            bytes(v.size),
            fs,
            v.type_hint,
            v.probe_error
                .as_deref()
                .map(|e| format!(" (unreadable: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `-rw-r--r-- 0/0 1234 2024-01-01 12:00 name -> target`.
fn entry_line(e: &Entry) -> String {
    let t = match e.kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Other => '?',
    };
    let mut perms = String::with_capacity(9);
    for shift in [6u32, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let time = chrono::DateTime::from_timestamp(e.mtime, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| e.mtime.to_string());
    let target = e
        .symlink_target
        .as_deref()
        .map(|t| format!(" -> {t}"))
        .unwrap_or_default();
    format!(
        "{t}{perms} {:>5}/{:<5} {:>12} {time} {}{target}",
        e.uid, e.gid, e.size, e.name
    )
}

fn get(a: GetArgs) -> anyhow::Result<i32> {
    let t = &a.target;
    let repo = open_repo(&t.repo)?;
    let m = repo.resolve(&t.restore_point)?;
    let rp = open_restore_point(&repo, &m)?;
    let sel = rp.select(t.disk.as_deref(), t.volume.as_deref())?;
    let fs = sel.open()?;
    let entry = fs.stat(&a.path)?;
    let to = if a.to.is_dir() {
        a.to.join(&entry.name)
    } else {
        a.to.clone()
    };
    anyhow::ensure!(
        !to.exists(),
        "{} already exists: remove it or choose another --to",
        to.display()
    );
    let mut reader = fs.read_file(&a.path)?;
    let tmp = temp_path(&to);
    let copied = (|| -> anyhow::Result<u64> {
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let n = std::io::copy(&mut reader, &mut file)
            .with_context(|| format!("copying {} out of {}", a.path, m.name()))?;
        file.flush()?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        Ok(n)
    })();
    let n = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &to).with_context(|| format!("renaming to {}", to.display()))?;
    if a.output.json {
        print_json(&serde_json::json!({
            "restore_point": m.name(),
            "disk": sel.disk,
            "volume": sel.volume.name,
            "path": a.path,
            "to": to,
            "size": n,
        }))?;
    } else {
        println!("copied {} ({}) to {}", a.path, bytes(n), to.display());
    }
    Ok(exit::OK)
}

/// `.tmp-<name>-<pid>` beside `to`.
fn temp_path(to: &Path) -> PathBuf {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    to.with_file_name(format!(".tmp-{name}-{}", std::process::id()))
}
