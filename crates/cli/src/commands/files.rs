//! `lifeboat files ls|get`: browse and copy files out of a restore point
//! in userspace (no root, no mounts), through `lifeboat-browse`. With one
//! disk holding one filesystem paths are plain; otherwise `--disk` /
//! `--volume` choose, and `ls` without a path lists the volumes.
//! `get` writes to a temporary file beside the target and renames it only
//! when every byte was read, so a damaged restore point leaves no output.
//!
//! Everything about the file is the guest's, so `get` trusts none of it:
//! the name (used when `--to` is a directory) must be a safe single file
//! name (`lifeboat_formats::safe_name`); the temporary file has a random
//! name and is created with `O_CREAT|O_EXCL` (an existing file or symlink
//! there is never opened, so never written through); it gets the source's
//! permission bits (setuid, setgid and sticky only with `--keep-setid`,
//! as root); it is renamed into place with `RENAME_NOREPLACE`, so a file
//! or symlink planted at the destination is neither replaced nor followed.
//! Symlinks inside the restore point are resolved by the userspace reader,
//! inside the guest filesystem: they never reach a host path.

use super::open_repo;
use crate::args::{OutputArgs, RepoArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use anyhow::Context;
use clap::{Args, Subcommand};
use lifeboat_browse::{open_restore_point, Entry, EntryKind, VolumeInfo};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
    /// Keep the setuid, setgid and sticky bits of the source (root only;
    /// by default only the rwx bits are kept)
    #[arg(long)]
    pub keep_setid: bool,
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
    let m = super::resolve(&repo, &t.restore_point)?;
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
        .map(|t| format!(" -> {}", shown(t)))
        .unwrap_or_default();
    format!(
        "{t}{perms} {:>5}/{:<5} {:>12} {time} {}{target}",
        e.uid,
        e.gid,
        e.size,
        shown(&e.name)
    )
}

/// A guest-written name as printed: quoted and escaped when it holds a
/// control character (a newline or a terminal escape sequence).
fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        lifeboat_formats::safe_name::escaped(name).into()
    } else {
        name.into()
    }
}

fn get(a: GetArgs) -> anyhow::Result<i32> {
    let t = &a.target;
    anyhow::ensure!(
        !a.keep_setid || rustix::process::geteuid().is_root(),
        "--keep-setid needs root (a setuid file written by another user is not kept)"
    );
    let repo = open_repo(&t.repo)?;
    let m = super::resolve(&repo, &t.restore_point)?;
    let rp = open_restore_point(&repo, &m)?;
    let sel = rp.select(t.disk.as_deref(), t.volume.as_deref())?;
    let fs = sel.open()?;
    let entry = fs.stat(&a.path)?;
    let to = if a.to.is_dir() {
        let name = lifeboat_formats::safe_name(&entry.name)
            .with_context(|| format!("{}: name it with a file path for --to", shown(&a.path)))?;
        a.to.join(name)
    } else {
        a.to.clone()
    };
    anyhow::ensure!(
        std::fs::symlink_metadata(&to).is_err(),
        "{} already exists: remove it or choose another --to",
        to.display()
    );
    let mask = if a.keep_setid { 0o7777 } else { 0o777 };
    let mode = source_mode(fs.as_ref(), &a.path, &entry) & mask;
    let mut reader = fs.read_file(&a.path)?;
    let (mut file, tmp) = create_temp(&to)?;
    let copied = (|| -> anyhow::Result<u64> {
        let n = std::io::copy(&mut reader, &mut file)
            .with_context(|| format!("copying {} out of {}", a.path, m.name()))?;
        file.flush()?;
        // fchmod: the umask plays no part, and the bits come only once
        // every byte is there.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting mode {mode:o} on {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        rename_new(&tmp, &to)?;
        Ok(n)
    })();
    let n = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if a.output.json {
        print_json(&serde_json::json!({
            "restore_point": m.name(),
            "disk": sel.disk,
            "volume": sel.volume.name,
            "path": a.path,
            "to": to,
            "size": n,
            "mode": format!("{mode:o}"),
        }))?;
    } else {
        println!("copied {} ({}) to {}", a.path, bytes(n), to.display());
    }
    Ok(exit::OK)
}

/// Most symlinks followed to find the mode of the file a path names.
const MAX_FOLLOW: usize = 40;

/// The permission bits of the file `path` names (`entry` is its own
/// stat): a symlink's target's, resolved inside the guest filesystem as
/// `read_file` does; 0600 when the target cannot be found.
fn source_mode(fs: &dyn lifeboat_browse::Filesystem, path: &str, entry: &Entry) -> u32 {
    let mut path = path.to_string();
    let mut e = entry.clone();
    for _ in 0..MAX_FOLLOW {
        let Some(target) = e
            .symlink_target
            .as_deref()
            .filter(|_| e.kind == EntryKind::Symlink)
        else {
            return e.mode;
        };
        path = if target.starts_with('/') {
            target.to_string()
        } else {
            let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            format!("{parent}/{target}")
        };
        match fs.stat(&path) {
            Ok(next) => e = next,
            Err(_) => break,
        }
    }
    0o600
}

/// A new file with a random name beside `to`, created with `O_EXCL`
/// (never an existing file or symlink) and mode 0600.
fn create_temp(to: &Path) -> anyhow::Result<(std::fs::File, PathBuf)> {
    let dir = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut last = None;
    for _ in 0..8 {
        let mut random = [0u8; 12];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
            .context("reading random bytes for a temporary name from /dev/urandom")?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".lifeboat-get-{hex}.tmp"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e).with_context(|| format!("creating {}", tmp.display())),
        }
    }
    Err(anyhow::anyhow!(
        "creating a temporary file in {}: {}",
        dir.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Renames `tmp` to `to` unless `to` exists (a file, a directory or a
/// symlink, which is never followed).
fn rename_new(tmp: &Path, to: &Path) -> anyhow::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, tmp, CWD, to, RenameFlags::NOREPLACE).map_err(|e| {
        let why = match e {
            rustix::io::Errno::EXIST => "it already exists (left as it is)".to_string(),
            rustix::io::Errno::INVAL => {
                "this filesystem cannot rename without replacing: choose a --to on another"
                    .to_string()
            }
            other => std::io::Error::from(other).to_string(),
        };
        anyhow::anyhow!("renaming to {}: {why}", to.display())
    })
}
