//! `lifeboat bitmaps qmp:SOCKET`: the changed-block tracking state of each
//! disk of a running QEMU VM, and what the next live backup would read.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lifeboat_hypervisor::{
    list_disks, next_read, persistence, BitmapInfo, Disk, NextRead, Persistence, QmpClient, PREFIX,
};
use serde::Serialize;

use crate::output::{bytes, print_json};

/// Arguments of `lifeboat bitmaps`.
#[derive(Args)]
pub struct BitmapsArgs {
    /// The VM's QMP socket: qmp:/path/to/qmp.sock
    #[arg(value_name = "qmp:SOCKET")]
    pub vm: String,
    /// Timeout of each QMP command, seconds
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    qmp: PathBuf,
    qemu_version: String,
    disks: Vec<DiskReport>,
}

#[derive(Serialize)]
struct DiskReport {
    disk: String,
    node: String,
    format: String,
    file: String,
    size: u64,
    bitmaps: Vec<BitmapInfo>,
    tracking: Persistence,
    next_backup: NextRead,
    /// A copy-before-write filter sits above the disk (a backup in progress,
    /// or the leftover of a killed one).
    filtered: bool,
}

/// Parses `qmp:/path`.
pub fn qmp_socket(spec: &str) -> anyhow::Result<PathBuf> {
    match spec.strip_prefix("qmp:") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => anyhow::bail!("{spec:?} is not a VM: expected qmp:/path/to/qmp.sock"),
    }
}

fn report(d: &Disk) -> DiskReport {
    DiskReport {
        disk: d.label(),
        node: d.node_name.clone(),
        format: d.format.clone(),
        file: d.file.clone(),
        size: d.size,
        bitmaps: d.bitmaps.clone(),
        tracking: persistence(d),
        next_backup: next_read(d),
        filtered: d.filtered_by_lifeboat,
    }
}

/// Runs `lifeboat bitmaps`.
pub fn run(a: BitmapsArgs) -> anyhow::Result<i32> {
    let socket = qmp_socket(&a.vm)?;
    let client = QmpClient::connect_with_timeout(&socket, Duration::from_secs(a.timeout.max(1)))?;
    let disks = list_disks(&client).with_context(|| format!("listing the disks of {}", a.vm))?;
    let r = Report {
        qmp: socket,
        qemu_version: client.version().to_string(),
        disks: disks.iter().map(report).collect(),
    };
    if a.json {
        print_json(&r)?;
        return Ok(crate::exit::OK);
    }
    println!(
        "{} (QEMU {}): {} disk(s)",
        a.vm,
        r.qemu_version,
        r.disks.len()
    );
    for d in &r.disks {
        println!(
            "{}  {}  {}  node {}  {}",
            d.disk,
            d.format,
            bytes(d.size),
            d.node,
            d.file
        );
        for b in &d.bitmaps {
            let ours = if b.name.starts_with(PREFIX) {
                ""
            } else {
                "  (not lifeboat's)"
            };
            println!(
                "  bitmap {}: {}, {}{}{}, {} dirty, granularity {}{ours}",
                b.name,
                if b.persistent {
                    "persistent"
                } else {
                    "non-persistent"
                },
                if b.recording { "recording" } else { "disabled" },
                if b.busy { ", busy" } else { "" },
                if b.inconsistent { ", INCONSISTENT" } else { "" },
                bytes(b.dirty_bytes),
                bytes(b.granularity)
            );
        }
        match &d.tracking {
            Persistence::Persistent => {
                println!("  tracking: persistent bitmaps (stored in the qcow2 image)")
            }
            Persistence::NonPersistent { reason } => {
                println!("  tracking: non-persistent: {reason}")
            }
        }
        if d.filtered {
            println!("  note: a copy-before-write filter sits above the disk (a backup runs, or one was killed)");
        }
        match &d.next_backup {
            NextRead::Incremental {
                bitmap,
                dirty_bytes,
            } => println!(
                "  next backup: incremental, reads {} dirty (bitmap {bitmap})",
                bytes(*dirty_bytes)
            ),
            NextRead::Full { reason } => println!("  next backup: full read: {reason}"),
        }
    }
    Ok(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmp_specs_are_checked() {
        assert_eq!(
            qmp_socket("qmp:/run/a.qmp").unwrap(),
            PathBuf::from("/run/a.qmp")
        );
        for bad in ["/run/a.qmp", "qmp:", "nbd://x"] {
            let e = qmp_socket(bad).unwrap_err().to_string();
            assert!(e.contains("expected qmp:/path"), "{e}");
        }
    }
}
