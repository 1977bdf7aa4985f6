//! The command line: every subcommand and flag of `lifeboat`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Back up virtual machines and bring them back instantly"
)]
pub struct Cli {
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the Lifeboat server is and how to talk to it (the commands that
/// are requests to a server, and `preflight --server`).
#[derive(Args, Clone, Debug)]
pub struct RemoteArgs {
    /// The Lifeboat server: https://HOST[:PORT]
    #[arg(long, global = true, env = "LIFEBOAT_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The CA certificate (PEM) the server's certificate must chain to
    /// (default: the system's roots); `lifeboat serve` makes one in
    /// DATA_DIR/tls/ca.pem
    #[arg(long, global = true, env = "LIFEBOAT_CA", value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// API token (prefer LIFEBOAT_TOKEN: other users can read a command line)
    #[arg(
        long,
        global = true,
        env = "LIFEBOAT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// Where the repository is and how to unlock it.
#[derive(Args, Clone)]
pub struct RepoArgs {
    /// Repository directory
    #[arg(long, env = "LIFEBOAT_REPO", value_name = "DIR")]
    pub repo: PathBuf,
    /// File holding the passphrase (else LIFEBOAT_PASSPHRASE)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// [`RepoArgs`] of a command that can also run on an agent through the
/// server instead ([`AgentTargetArgs`]): the repository is needed only
/// without `--target`.
#[derive(Args, Clone)]
pub struct LocalRepoArgs {
    /// Repository directory (not with --target: the server names it)
    #[arg(
        long,
        env = "LIFEBOAT_REPO",
        value_name = "DIR",
        required_unless_present = "agent"
    )]
    pub repo: Option<PathBuf>,
    /// File holding the passphrase (else LIFEBOAT_PASSPHRASE)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl LocalRepoArgs {
    /// The repository of a local run.
    pub fn local(&self) -> anyhow::Result<RepoArgs> {
        Ok(RepoArgs {
            repo: self
                .repo
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no repository: give --repo DIR"))?,
            passphrase_file: self.passphrase_file.clone(),
        })
    }
}

/// Run on an agent, through the server (`--server`, `--token`).
#[derive(Args, Clone)]
pub struct AgentTargetArgs {
    /// Run on this agent through the server (--server) instead of here;
    /// the local options (mount root, state dir, cache...) are the agent's
    #[arg(long = "target", value_name = "AGENT")]
    pub agent: Option<String>,
    /// With --target: the served repository's name (default: the
    /// server's only one)
    #[arg(long, value_name = "NAME", requires = "agent")]
    pub repository: Option<String>,
}

/// Output selection shared by commands that print data.
#[derive(Args, Clone, Copy)]
pub struct OutputArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Manage repositories
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// Manage the passphrases (key slots) of an encrypted repository
    Key {
        #[command(subcommand)]
        command: crate::commands::key::KeyCommand,
    },
    /// Back up the disks of a VM as one restore point
    Backup(BackupArgs),
    /// List restore points
    List(ListArgs),
    /// Show one restore point: disks, sizes, stored bytes, dedup ratio
    Show(ShowArgs),
    /// Restore one disk of a restore point to an image file or block device
    Restore(RestoreArgs),
    /// Re-read and authenticate every chunk the selected restore points need
    Verify(VerifyArgs),
    /// Delete restore points that no retention rule keeps
    Prune(PruneArgs),
    /// Delete one restore point
    Forget(ForgetArgs),
    /// Remove chunks no restore point references
    Gc(GcArgs),
    /// Make a restore point immutable until a date (extend only)
    Lock(LockArgs),
    /// A guided end-to-end tour on a generated VM disk
    Demo(DemoArgs),
    /// The Instant VM Recovery service (NFSv3 datastore + NBD), in the foreground
    Nfs {
        #[command(subcommand)]
        command: crate::commands::nfs_serve::NfsCommand,
    },
    /// Boot VMs straight from restore points (requests to `lifeboat nfs serve`)
    InstantRecovery {
        #[command(subcommand)]
        command: crate::commands::instant_recovery::IrCommand,
    },
    /// Browse and copy files of a restore point (no root, no mounts)
    Files {
        #[command(subcommand)]
        command: crate::commands::files::FilesCommand,
    },
    /// Publish a restore point read-only on this machine (FUSE, loop
    /// devices, mounts), or on an agent with --target
    Publish(crate::commands::publish::PublishArgs),
    /// List published sessions
    Published(crate::commands::publish::PublishedArgs),
    /// Remove a published session (or --all), also after a crashed publisher
    Unpublish(crate::commands::publish::UnpublishArgs),
    /// Scan restore points for malware (ClamAV, YARA): publish, scan,
    /// report, unpublish; here, or on an agent with --target
    Scan(crate::commands::scan::ScanArgs),
    /// The changed-block tracking of a running QEMU VM's disks (qmp:SOCKET)
    Bitmaps(crate::commands::bitmaps::BitmapsArgs),
    /// The port table of this configuration: from, to, port, protocol, why
    Ports(crate::commands::preflight::PortsArgs),
    /// Try the ports a deployment needs (TCP, TLS and certificate, NFS NULL,
    /// QMP, NTP clock skew) and say what to open or fix
    Preflight(crate::commands::preflight::PreflightArgs),
    /// The backup server: HTTPS REST API, catalog, tokens, jobs (in the foreground)
    Serve(crate::commands::serve::ServeArgs),
    /// Check the token against the server (--server, --token): whose it is
    Login(OutputArgs),
    /// Manage the server's API tokens (admin)
    Token {
        #[command(subcommand)]
        command: crate::commands::remote::TokenCommand,
    },
    /// Restore points of a repository the server serves
    RestorePoint {
        #[command(subcommand)]
        command: crate::commands::remote::RestorePointCommand,
    },
    /// The server's catalog against its repositories (admin)
    Catalog {
        #[command(subcommand)]
        command: crate::commands::remote::CatalogCommand,
    },
    /// The server's backup jobs: create, list, show, run, delete
    Job {
        #[command(subcommand)]
        command: crate::commands::jobs::JobCommand,
    },
    /// The server's sessions (runs of jobs) and their logs
    Session {
        #[command(subcommand)]
        command: crate::commands::jobs::SessionCommand,
    },
    /// Run as a backup proxy of --server (enrolling first with --enroll
    /// SECRET --name NAME); or list and delete the server's proxies
    Proxy(crate::commands::proxy::ProxyArgs),
    /// One-time secrets that enroll proxies and agents (admin)
    ProxyEnrollment {
        #[command(subcommand)]
        command: crate::commands::proxy::EnrollmentCommand,
    },
    /// Run as a publish and scan target of --server (enrolling first with
    /// --enroll SECRET --name NAME); or list and delete the server's agents
    Agent(crate::commands::agent::AgentArgs),
    /// Restore points published on agents through the server: list, delete
    Publication {
        #[command(subcommand)]
        command: crate::commands::publications::PublicationCommand,
    },
    /// The publisher process `publish` starts (internal)
    #[command(hide = true)]
    PublishDaemon(crate::commands::publish::PublishDaemonArgs),
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Create a repository (encrypted unless --no-encryption)
    Init(InitArgs),
    /// Quarantine damaged manifests, indexes and chunks; optionally write
    /// salvaged restore points (unreadable ranges read as zeros, listed)
    Repair(RepairArgs),
}

#[derive(Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Say what would be done, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// For each damaged restore point, write a new salvaged one
    #[arg(long)]
    pub salvage: bool,
    /// Instead of repairing: remove quarantine entries older than DAYS days
    #[arg(long, value_name = "DAYS", conflicts_with = "salvage")]
    pub purge_quarantine: Option<u32>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Store chunks unencrypted (digests are then plain BLAKE3)
    #[arg(long)]
    pub no_encryption: bool,
    /// Chunk size in KiB (power of two, 256..=16384)
    #[arg(long, value_name = "KIB")]
    pub chunk_size_kib: Option<u32>,
    /// zstd compression level (1..=19)
    #[arg(long, value_name = "LEVEL")]
    pub compression_level: Option<i32>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// VM name
    #[arg(long)]
    pub vm: String,
    /// Disks as NAME=PATH or NAME=FORMAT:PATH (FORMAT: raw, qcow2, vmdk, vhdx, auto),
    /// or qmp:SOCKET alone: every disk of the running VM behind that QMP socket
    #[arg(required = true, value_name = "NAME=[FORMAT:]PATH | qmp:SOCKET")]
    pub disks: Vec<String>,
    /// Live backup: a private directory for the fleecing overlays and QEMU's
    /// NBD socket (default: a fresh one under the temporary directory)
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Live backup: timeout of every QMP command and NBD request, seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub qmp_timeout: u64,
    /// Live backup: the host side of the VM's QEMU guest agent channel (the
    /// unix socket of its org.qemu.guest_agent.0 chardev). The guest's
    /// filesystems are frozen for the point in time (at most 10 s); without
    /// it, or when the agent does not answer, the backup is crash-consistent
    #[arg(long, value_name = "SOCKET")]
    pub guest_agent: Option<PathBuf>,
    /// Live backup: timeout of every guest agent command, seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub agent_timeout: u64,
    /// Live backup: application-aware processing. The guest helper is
    /// copied into the guest through the guest agent (--guest-agent is
    /// required), runs --pre-freeze before the freeze and --post-thaw after
    /// the thaw, and is removed; the restore point is application-consistent
    /// when the pre-freeze script succeeded, else filesystem- or
    /// crash-consistent with the reason (the backup never fails for it)
    #[arg(long, requires = "guest_agent", requires = "pre_freeze")]
    pub app_aware: bool,
    /// Live backup, --app-aware: the script run in the guest before the freeze
    #[arg(long, value_name = "SCRIPT", requires = "app_aware")]
    pub pre_freeze: Option<PathBuf>,
    /// Live backup, --app-aware: the script run in the guest after the thaw
    /// (always, when the pre-freeze script ran)
    #[arg(long, value_name = "SCRIPT", requires = "app_aware")]
    pub post_thaw: Option<PathBuf>,
    /// Live backup, --app-aware: each script's timeout, seconds (the helper
    /// kills the script's process group then)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        requires = "app_aware"
    )]
    pub script_timeout: u64,
    /// Live backup, --app-aware: where to reach the guest helper (default:
    /// the guest's first IPv4 address as the guest agent reports it, port
    /// --guest-helper-port)
    #[arg(long, value_name = "HOST:PORT", requires = "app_aware")]
    pub guest_helper_address: Option<String>,
    /// Live backup, --app-aware: the port the helper listens on in the guest
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 3542,
        requires = "app_aware"
    )]
    pub guest_helper_port: u16,
    /// Live backup, --app-aware: the statically linked lifeboat-guest-helper
    /// binary (default: beside the lifeboat executable)
    #[arg(long, value_name = "PATH", requires = "app_aware")]
    pub guest_helper_bin: Option<PathBuf>,
    /// Format of the disks given without FORMAT: (auto: block device or .raw/.img
    /// name = raw, .qcow2/.vmdk/.vhdx name = that, else the file's first bytes)
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    pub format: String,
    /// zstd level (1..=19) of this backup's new chunks (default: the
    /// repository's level; a live backup's default is 1, see
    /// docs/live-backup.md)
    #[arg(long, value_name = "LEVEL")]
    pub compression_level: Option<i32>,
    /// A backing file, VMDK extent file, or directory whose files the images
    /// may make the backup read (repeatable; nothing by default)
    #[arg(long, value_name = "PATH")]
    pub allow_backing: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only this VM
    #[arg(long)]
    pub vm: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point: VM@ID or VM@latest
    pub restore_point: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point: VM@ID or VM@latest
    pub restore_point: String,
    /// Disk to restore (may be left out when the restore point has one disk)
    #[arg(long)]
    pub disk: Option<String>,
    /// Target file or block device
    #[arg(long)]
    pub to: PathBuf,
    /// raw or qcow2 (default: from the target's extension, else raw)
    #[arg(long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only this restore point (VM@ID or VM@latest)
    pub restore_point: Option<String>,
    /// Read only a subset of the chunks: a random P% ("10%") or slice K of
    /// N ("1/5"); the others are only checked to exist
    #[arg(long, value_name = "P% | K/N")]
    pub read_data_subset: Option<lifeboat_repo::Subset>,
    /// Do not read again chunks verified intact within the last DAYS days
    #[arg(long, value_name = "DAYS")]
    pub reverify_after: Option<u32>,
    /// Only report damaged chunks: do not move them into quarantine/ (by
    /// default they are, so the next backup of the same data heals them)
    #[arg(long)]
    pub no_heal: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long, default_value_t = 0)]
    pub keep_last: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_hourly: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_daily: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_yearly: u32,
    /// Apply the policy to this VM's restore points only (default: every VM's)
    #[arg(long)]
    pub vm: Option<String>,
    /// Say what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point: VM@ID
    pub restore_point: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point: VM@ID or VM@latest
    pub restore_point: String,
    /// Date (YYYY-MM-DD, UTC midnight) or RFC 3339 time
    #[arg(long)]
    pub until: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Working directory (default: a new folder under the system temp dir)
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the working directory afterwards
    #[arg(long)]
    pub keep: bool,
    /// Size of the generated disk in MiB
    #[arg(long, default_value_t = 256)]
    pub disk_mib: u64,
}
