//! `lifeboat backup --vm NAME qmp:SOCKET`: every disk of a running VM at one
//! point in time, incremental where a dirty bitmap proves what changed
//! (lifeboat_hypervisor::live_backup). Prints, per disk, full or
//! incremental and why, bytes read, changed and uploaded, how long the
//! guest was paused, and the restore point's consistency: filesystem-
//! consistent when `--guest-agent` froze the guest, application-consistent
//! when `--app-aware` also ran the pre-freeze script successfully through the
//! guest helper, else crash-consistent with the reason (also on stderr). The
//! scripts' output and results are printed (and in `--json`).

use super::open_repo;
use crate::args::BackupArgs;
use crate::exit;
use crate::output::{bytes, print_json};
use crate::progress::Bars;
use anyhow::Context;
use lifeboat_hypervisor::{
    live_backup_socket, AgentOptions, AppAwareOptions, AppAwareReport, LiveBackupOptions,
    GUEST_HELPER_BIN,
};
use lifeboat_repo::ConsistencyLevel;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn run(a: &BackupArgs, socket: &Path) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let defaults = LiveBackupOptions::new(&a.vm, Duration::from_secs(a.qmp_timeout.max(1)));
    let opts = LiveBackupOptions {
        compression_level: a.compression_level.unwrap_or(defaults.compression_level),
        agent: a.guest_agent.as_ref().map(|socket| AgentOptions {
            timeout: Duration::from_secs(a.agent_timeout.max(1)),
            app_aware: app_aware_options(a),
            ..AgentOptions::new(socket)
        }),
        ..defaults
    };
    let report = live_backup_socket(&repo, socket, a.work_dir.as_deref(), opts, &Bars::new())
        .with_context(|| format!("live backup of {} through {}", a.vm, socket.display()))?;
    if a.app_aware && report.consistency.level != ConsistencyLevel::Application {
        eprintln!(
            "warning: {} is not application-consistent: {}",
            report.restore_point,
            report.consistency.why.as_deref().unwrap_or("")
        );
    }
    if report.consistency.level == ConsistencyLevel::Crash {
        eprintln!(
            "warning: {} is crash-consistent: {}",
            report.restore_point,
            report
                .consistency
                .why
                .as_deref()
                .unwrap_or("nothing was frozen")
        );
    }
    if a.output.json {
        print_json(&report)?;
        return Ok(exit::OK);
    }
    println!(
        "created restore point {} ({}; point in time by {:?}, guest paused {} ms, zstd level {})",
        report.restore_point,
        report.consistency.describe(),
        report.method,
        report.paused_ms,
        report.compression_level
    );
    for d in &report.disks {
        println!(
            "  {:<12} {:<11} read {:>10}  changed {:>10}  uploaded {:>10}  bitmap {}{}",
            d.disk,
            d.read,
            bytes(d.bytes_read),
            bytes(d.changed_bytes),
            bytes(d.uploaded_bytes),
            d.bitmap,
            if d.persistent {
                ""
            } else {
                " (not persistent: a VM restart means a full read)"
            }
        );
        if let Some(why) = &d.why_full {
            println!("  {:<12} full because {why}", "");
        }
    }
    if let Some(app) = &report.app_aware {
        print_app_aware(app);
    }
    println!("  {:.2} s", report.elapsed_ms as f64 / 1000.0);
    Ok(exit::OK)
}

/// The helper binary: `--guest-helper-bin`, else beside this executable.
fn helper_bin(a: &BackupArgs) -> PathBuf {
    if let Some(p) = &a.guest_helper_bin {
        return p.clone();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(GUEST_HELPER_BIN)));
    beside.unwrap_or_else(|| PathBuf::from(GUEST_HELPER_BIN))
}

fn app_aware_options(a: &BackupArgs) -> Option<AppAwareOptions> {
    let pre = a.pre_freeze.as_ref().filter(|_| a.app_aware)?;
    let bin = helper_bin(a);
    if !bin.is_file() {
        eprintln!(
            "warning: no guest helper binary at {} ({}); the backup goes on without \
             application awareness (build it with scripts/build-guest-helper.sh)",
            bin.display(),
            if a.guest_helper_bin.is_some() {
                "--guest-helper-bin"
            } else {
                "looked beside the lifeboat executable; --guest-helper-bin PATH names another"
            }
        );
    }
    Some(AppAwareOptions {
        post_thaw: a.post_thaw.clone(),
        script_timeout: Duration::from_secs(a.script_timeout.max(1)),
        address: a.guest_helper_address.clone(),
        port: a.guest_helper_port,
        ..AppAwareOptions::new(bin, pre)
    })
}

fn print_app_aware(app: &AppAwareReport) {
    for s in [&app.pre_freeze, &app.post_thaw].into_iter().flatten() {
        println!("  {} script {} ({} ms)", s.phase, s.result, s.elapsed_ms);
        for l in &s.output {
            println!("    {} | {}", l.stream, l.text);
        }
    }
    if let Some(f) = &app.fault {
        println!("  guest helper: {f}");
    }
    if let Some(dir) = &app.guest_dir {
        println!(
            "  guest helper directory {dir}: {}",
            if app.removed {
                "removed"
            } else {
                "NOT removed"
            }
        );
    }
}
