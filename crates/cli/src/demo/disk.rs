//! Builds the demo's VM disk: a GPT disk with one ext4 partition full of
//! ordinary files, made with Debian's e2fsprogs (`mkfs.ext4 -d`, `debugfs`)
//! so no root and no mounts are needed.

use anyhow::{bail, Context};
use lifeboat_formats::gpt::{self, GptPartition};
use lifeboat_vdisk::{FileDisk, ReadDisk, SliceDiskMut, WriteDisk};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Where the partition starts: 1 MiB, the usual alignment.
pub const PARTITION_OFFSET: u64 = 1 << 20;
/// Fixed filesystem UUID and hash seed, so a rebuilt disk is identical.
const FS_UUID: &str = "6a1f0c3e-2b7d-4e5a-9c1b-0d2e3f4a5b6c";

/// A generated VM disk and the filesystem image it was assembled from.
pub struct DemoDisk {
    pub path: PathBuf,
    pub fs_image: PathBuf,
    pub size: u64,
    pub files: usize,
    pub file_bytes: u64,
}

/// Makes `dir/files` (a small system-like tree), the ext4 image and the GPT disk.
pub fn build(dir: &Path, size_mib: u64) -> anyhow::Result<DemoDisk> {
    if size_mib < 32 {
        bail!("--disk-mib {size_mib}: the demo disk needs at least 32 MiB");
    }
    let tree = dir.join("files");
    let (files, file_bytes) = write_tree(&tree, size_mib)?;
    let size = size_mib << 20;
    let fs_size = size - 2 * PARTITION_OFFSET;
    let fs_image = dir.join("rootfs.ext4");
    fs::File::create(&fs_image)
        .and_then(|f| f.set_len(fs_size))
        .with_context(|| format!("creating {}", fs_image.display()))?;
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-O",
            "^64bit,^metadata_csum",
            "-L",
            "demo-root",
        ])
        .args(["-U", FS_UUID, "-E"])
        .arg(format!("root_owner=0:0,hash_seed={FS_UUID}"))
        .arg("-d")
        .arg(&tree)
        .arg(&fs_image))?;
    let path = dir.join("web01-disk0.raw");
    assemble(&path, &fs_image, size)?;
    Ok(DemoDisk {
        path,
        fs_image,
        size,
        files,
        file_bytes,
    })
}

/// Where [`change`] writes its new report in the guest.
pub const REPORT_PATH: &str = "/home/demo/report.txt";
/// Where [`change`] plants the file the scan step must find.
pub const PLANTED_PATH: &str = "/home/demo/invoice.txt";

/// Local copies of what [`change`] wrote into the guest.
pub struct Changes {
    /// The content of [`REPORT_PATH`].
    pub report: PathBuf,
}

/// Changes the filesystem the way a running VM would (a new report, a
/// rewritten config file, a downloaded file: `planted`) and writes it back
/// into the disk.
pub fn change(disk: &DemoDisk, dir: &Path, planted: &str) -> anyhow::Result<Changes> {
    let report = dir.join("report.txt");
    let mut text = String::new();
    for i in 0..40_000 {
        text.push_str(&format!(
            "{i:06} quarterly numbers line, changed after the first backup\n"
        ));
    }
    fs::write(&report, text).with_context(|| format!("writing {}", report.display()))?;
    let hostname = dir.join("hostname");
    fs::write(&hostname, "web01-renamed\n")?;
    let invoice = dir.join("invoice.txt");
    fs::write(&invoice, planted).with_context(|| format!("writing {}", invoice.display()))?;
    for request in [
        format!("write {} {REPORT_PATH}", report.display()),
        "rm /etc/hostname".to_string(),
        format!("write {} /etc/hostname", hostname.display()),
        format!("write {} {PLANTED_PATH}", invoice.display()),
    ] {
        debugfs(&disk.fs_image, &request)?;
    }
    assemble(&disk.path, &disk.fs_image, disk.size)?;
    Ok(Changes { report })
}

/// Runs one `debugfs -w` request. debugfs exits 0 even when a request
/// fails, so anything on stderr besides its version banner is an error.
fn debugfs(fs_image: &Path, request: &str) -> anyhow::Result<()> {
    let out = run(Command::new("debugfs")
        .args(["-w", "-R", request])
        .arg(fs_image))?;
    let errors: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap_or("(not UTF-8)")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !errors.is_empty() {
        bail!(
            "debugfs {request:?} on {}: {}",
            fs_image.display(),
            errors.join("; ")
        );
    }
    Ok(())
}

/// Writes the GPT and copies the filesystem image into the partition.
fn assemble(path: &Path, fs_image: &Path, size: u64) -> anyhow::Result<()> {
    let disk = Arc::new(FileDisk::create(path, size)?);
    let last = gpt::last_usable_lba(size);
    let part = GptPartition {
        type_guid: gpt::LINUX_FILESYSTEM,
        unique_guid: *b"lifeboat-demo-p1",
        first_lba: PARTITION_OFFSET / gpt::SECTOR,
        last_lba: last,
        name: "root".into(),
    };
    gpt::write_gpt(disk.as_ref(), *b"lifeboat-demo-d0", &[part])?;
    let fs = FileDisk::open(fs_image)?;
    let window = SliceDiskMut::new(disk.clone(), PARTITION_OFFSET, fs.size(), "partition 1")?;
    lifeboat_engine::copy_disk(&fs, &window, 1 << 20, true, &lifeboat_engine::NoProgress)?;
    disk.flush()?;
    Ok(())
}

/// A small tree that looks like a system: configs, logs, docs, a binary blob.
/// Returns the number of files and their bytes.
fn write_tree(root: &Path, size_mib: u64) -> anyhow::Result<(usize, u64)> {
    let budget = (size_mib << 20) / 5; // fill about a fifth of the disk
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut put = |rel: &str, content: &[u8]| -> anyhow::Result<()> {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f =
            fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        f.write_all(content)?;
        files += 1;
        bytes += content.len() as u64;
        Ok(())
    };
    put("etc/hostname", b"web01\n")?;
    put("etc/hosts", b"127.0.0.1 localhost\n10.0.0.5 web01\n")?;
    put("etc/fstab", b"LABEL=demo-root / ext4 defaults 0 1\n")?;
    put("home/demo/.profile", b"export PATH=$HOME/bin:$PATH\n")?;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 7;
        rng ^= rng >> 9;
        rng
    };
    let words = [
        "backup", "restore", "volume", "kernel", "request", "latency", "disk", "lifeboat", "GET",
        "200",
    ];
    let mut used = 0u64;
    let mut n = 0;
    while used < budget {
        // Logs and docs compress well; one file in eight is random (like media).
        let len = 64 * 1024 + (next() % (512 * 1024)) as usize;
        let content: Vec<u8> = if n % 8 == 7 {
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut s = String::with_capacity(len);
            while s.len() < len {
                s.push_str(words[(next() % words.len() as u64) as usize]);
                s.push(if next() % 12 == 0 { '\n' } else { ' ' });
            }
            s.into_bytes()
        };
        let rel = match n % 3 {
            0 => format!("var/log/app/app-{n:04}.log"),
            1 => format!("usr/share/doc/pkg{:03}/README-{n}", n % 50),
            _ => format!("srv/data/{:02}/blob-{n}.bin", n % 16),
        };
        put(&rel, &content)?;
        used += len as u64;
        n += 1;
    }
    Ok((files, bytes))
}

fn run(cmd: &mut Command) -> anyhow::Result<std::process::Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("{program} not found: install e2fsprogs (apt-get install e2fsprogs)")
        } else {
            anyhow::anyhow!("running {program}: {e}")
        }
    })?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
