//! `lifeboat demo`: a real end-to-end tour on a generated VM disk, with the
//! embedded defaults. It builds a GPT + ext4 disk, backs it up into an
//! encrypted repository, changes files in it, backs it up again (only the
//! changed chunks are stored), backs up the same disk converted to qcow2
//! (zero new chunks: digests do not depend on the image format), restores
//! to raw and qcow2 and proves every restore bit-exact, and verifies the
//! repository. Then the other two capabilities, each step checking its own
//! result: files browsed and copied out of the latest restore point
//! (browse_step.rs), an Instant Recovery session served by the real service
//! in-process whose writes land in an overlay while the restore point stays
//! unchanged (ir_step.rs), a YARA scan that finds the
//! file planted between the two backups (scan_step.rs), and the backup
//! server in-process with a proxy enrolled over mutual TLS that runs a
//! backup job of the same disk (server_step.rs).

mod browse_step;
mod disk;
mod ir_step;
mod scan_step;
mod server_step;

use crate::args::DemoArgs;
use crate::exit;
use crate::output::{bytes, rate};
use anyhow::{bail, Context};
use lifeboat_engine::{
    backup_vm, copy_disk, restore_to_file, DiskSource, NoProgress, RestoreFormat,
};
use lifeboat_formats::qcow2::Qcow2Writer;
use lifeboat_repo::{InitOptions, Repository, DEFAULT_CHUNK_SIZE, DEFAULT_ZSTD_LEVEL};
use lifeboat_vdisk::ReadDisk;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const DEMO_PASSPHRASE: &str = "lifeboat-demo-passphrase";

pub fn run(a: DemoArgs) -> anyhow::Result<i32> {
    let (dir, remove_after) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("lifeboat-demo-{}", std::process::id())),
            !a.keep,
        ),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "demo directory {} is not empty: give an empty or new --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = tour(&dir, a.disk_mib);
    if remove_after {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("\nworking files kept in {}", dir.display());
    }
    result?;
    Ok(exit::OK)
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn tour(dir: &Path, disk_mib: u64) -> anyhow::Result<()> {
    println!("Lifeboat demo: back up a VM disk, change it, back it up again, restore, prove it;");
    println!(
        "then browse its files, boot it instantly (Instant Recovery), and scan it for malware."
    );
    println!("working directory: {}", dir.display());

    step(
        1,
        "build a VM disk: GPT, one ext4 partition with ordinary files",
    );
    let t = Instant::now();
    let vm_disk = disk::build(dir, disk_mib)?;
    println!(
        "    {} ({}), {} files, {} of file data, partition at {}, built in {:.2} s",
        vm_disk.path.display(),
        bytes(vm_disk.size),
        vm_disk.files,
        bytes(vm_disk.file_bytes),
        bytes(disk::PARTITION_OFFSET),
        t.elapsed().as_secs_f64()
    );
    let original = fingerprint(&lifeboat_formats::open_image(&vm_disk.path)?)?;

    step(
        2,
        "create an encrypted repository (AES-256-GCM, key wrapped with Argon2id)",
    );
    let repo_dir = dir.join("repo");
    let repo = Repository::init(
        &repo_dir,
        InitOptions {
            passphrase: Some(DEMO_PASSPHRASE.into()),
            chunk_size: DEFAULT_CHUNK_SIZE,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        },
    )?;
    println!(
        "    {} with {} chunks, zstd level {DEFAULT_ZSTD_LEVEL}",
        repo_dir.display(),
        bytes(u64::from(repo.chunk_size()))
    );

    step(3, "first backup of web01");
    let first = backup(&repo, "web01", &vm_disk.path)?;

    step(
        4,
        "change the VM's filesystem (a new 2 MiB report, a rewritten /etc/hostname, a suspicious download)",
    );
    let changes = disk::change(&vm_disk, dir, scan_step::PLANTED_CONTENT)?;
    let changed = fingerprint(&lifeboat_formats::open_image(&vm_disk.path)?)?;
    if changed == original {
        bail!("the change left the disk identical: the demo cannot show an incremental backup");
    }
    println!(
        "    disk fingerprint {} -> {}",
        short(&original),
        short(&changed)
    );

    step(
        5,
        "second backup: the disk is read again, only new chunks are stored",
    );
    let second = backup(&repo, "web01", &vm_disk.path)?;

    step(
        6,
        "the same disk as qcow2 backs up to the same chunks (format-independent digests)",
    );
    let qcow2_path = dir.join("web01-disk0.qcow2");
    let raw = lifeboat_formats::open_image(&vm_disk.path)?;
    let writer = Qcow2Writer::create(&qcow2_path, raw.size())?;
    copy_disk(raw.as_ref(), &writer, 1 << 20, true, &NoProgress)?;
    writer.finish()?;
    backup(&repo, "web01-qcow2", &qcow2_path)?;

    step(7, "list the restore points");
    for m in repo.list(None)? {
        let new: u64 = m.disks.iter().map(|d| d.stats.new_stored_bytes).sum();
        println!(
            "    {:<36} {}  stored new {}",
            m.name(),
            m.time.format("%H:%M:%S"),
            bytes(new)
        );
    }

    step(8, "restore both backups of web01 and prove them bit-exact");
    check_restore(
        &repo,
        &first,
        dir.join("first.raw"),
        RestoreFormat::Raw,
        &original,
    )?;
    check_restore(
        &repo,
        &second,
        dir.join("latest.raw"),
        RestoreFormat::Raw,
        &changed,
    )?;
    check_restore(
        &repo,
        &second,
        dir.join("latest.qcow2"),
        RestoreFormat::Qcow2,
        &changed,
    )?;

    step(9, "verify: re-read and authenticate every chunk");
    let report = repo.verify(None)?;
    println!(
        "    {} restore points, {} chunks, {}: {}",
        report.restore_points_checked,
        report.chunks_checked,
        bytes(report.bytes_checked),
        if report.is_ok() {
            "no damage"
        } else {
            "DAMAGE FOUND"
        }
    );
    if !report.is_ok() {
        bail!("verify found {} damaged files", report.damage.len());
    }

    step(
        10,
        "browse files of web01@latest in userspace (lifeboat files ls/get: no root, no mount)",
    );
    browse_step::run(
        &repo,
        "web01@latest",
        "/home/demo",
        browse_step::Expected {
            guest_path: disk::REPORT_PATH,
            local: &changes.report,
        },
        &dir.join("report-from-backup.txt"),
    )?;

    step(
        11,
        "Instant VM Recovery: the IR service serves web01@latest, writes go to an overlay",
    );
    ir_step::run(&repo, DEMO_PASSPHRASE, &second, dir)?;

    step(
        12,
        "scan both backups of web01 for malware (YARA, files read from the repository)",
    );
    scan_step::run(&repo, &first, &second, disk::PLANTED_PATH)?;

    step(
        13,
        "the backup server: HTTPS API with its own CA, a proxy enrolled over mutual TLS runs a job of web01",
    );
    server_step::run(&repo, DEMO_PASSPHRASE, "web01", &vm_disk.path, dir)?;

    let usage = lifeboat_engine::restore_point_usage(&repo, &repo.resolve("web01@latest")?)?;
    println!(
        "\nweb01@latest: {} disk, {} of data, stored in {} ({:.2}x smaller)",
        bytes(usage.logical_bytes),
        bytes(usage.data_bytes),
        bytes(usage.stored_bytes),
        usage.reduction_ratio
    );
    println!(
        "demo finished: every restore matched its source bit for bit, the file copied out matched,"
    );
    println!(
        "the Instant Recovery session left its backup unchanged, the scan found the planted file,"
    );
    println!(
        "and the proxy's backup job through the server stored no new chunk of the unchanged disk."
    );
    Ok(())
}

fn backup(repo: &Repository, vm: &str, path: &Path) -> anyhow::Result<String> {
    let disk = lifeboat_formats::open_image(path)?;
    let summary = backup_vm(
        repo,
        vm,
        &[DiskSource::from_disk("disk0", disk)],
        &NoProgress,
    )?;
    let m = summary.manifest;
    let d = &m.disks[0];
    let secs = summary.elapsed.as_secs_f64();
    println!(
        "    {}: read {} in {:.2} s ({}), {} data chunks, {} zero, {} new, {} stored new",
        m.name(),
        bytes(d.stats.bytes_read),
        secs,
        rate(d.size, secs),
        d.stats.data_chunks,
        d.stats.zero_chunks,
        d.stats.new_chunks,
        bytes(d.stats.new_stored_bytes)
    );
    Ok(m.name())
}

fn check_restore(
    repo: &Repository,
    spec: &str,
    to: PathBuf,
    format: RestoreFormat,
    expected: &blake3::Hash,
) -> anyhow::Result<()> {
    let m = repo.resolve(spec)?;
    let disk = repo.open_disk(&m, "disk0")?;
    let summary = restore_to_file(
        &disk,
        &to,
        format,
        u64::from(repo.chunk_size()),
        &NoProgress,
    )?;
    let restored = lifeboat_formats::open_image(&to)?;
    let got = fingerprint(&restored)?;
    let verdict = if &got == expected {
        "bit-exact"
    } else {
        "MISMATCH"
    };
    println!(
        "    {spec} -> {} ({:?}, {:.2} s): BLAKE3 {} {verdict}",
        to.display(),
        format,
        summary.elapsed.as_secs_f64(),
        short(&got)
    );
    if &got != expected {
        bail!(
            "restore of {spec} to {} does not match its source",
            to.display()
        );
    }
    Ok(())
}

/// BLAKE3 of every byte of a disk.
fn fingerprint(disk: &Arc<dyn ReadDisk>) -> anyhow::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 4 << 20];
    let size = disk.size();
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(buf.len() as u64) as usize;
        disk.read_at(&mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hasher.finalize())
}

fn short(h: &blake3::Hash) -> String {
    h.to_hex()[..16].to_string()
}
