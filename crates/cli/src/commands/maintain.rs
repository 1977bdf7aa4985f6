//! `verify`, `prune`, `forget`, `gc`, `lock`: keeping a repository healthy.

use super::open_repo;
use crate::args::{ForgetArgs, GcArgs, LockArgs, PruneArgs, VerifyArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use lifeboat_repo::{KeepPolicy, VerifyOptions, VerifyReport};

pub fn verify(a: VerifyArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let only = match &a.restore_point {
        Some(spec) => Some(super::resolve(&repo, spec)?),
        None => None,
    };
    let opts = VerifyOptions {
        only,
        subset: a.read_data_subset,
        reverify_after: a
            .reverify_after
            .map(|days| chrono::Duration::days(i64::from(days))),
        heal: !a.no_heal,
    };
    let report = repo.verify_with(&opts)?;
    if a.output.json {
        print_json(&report)?;
    } else {
        print_verify(&report);
    }
    Ok(if report.is_ok() {
        exit::OK
    } else {
        exit::DAMAGE
    })
}

/// The human form of a verify report: what was read, then each damaged
/// file with the restore points that depend on it.
fn print_verify(report: &VerifyReport) {
    println!(
        "checked {} restore points, {} indexes, {} of {} chunks read ({})",
        report.restore_points_checked,
        report.indexes_checked,
        report.chunks_checked,
        report.chunks_referenced,
        bytes(report.bytes_checked)
    );
    if report.chunks_not_read > 0 {
        println!(
            "{} chunks outside the subset: checked to exist, not read",
            report.chunks_not_read
        );
    }
    if report.chunks_recently_verified > 0 {
        println!(
            "{} chunks verified recently: not read again",
            report.chunks_recently_verified
        );
    }
    for d in &report.damage {
        println!("BAD {d}");
        if d.all_restore_points {
            println!("    every restore point depends on it");
        } else if d.used_by.is_empty() {
            for rp in &d.restore_points {
                println!("    restore point {rp} depends on it");
            }
        }
        for (rp, disk) in &d.used_by {
            println!("    used by {rp} disk {disk}");
        }
    }
    print_quarantine(report);
    if report.damage.is_empty() {
        println!("no damage found");
    } else {
        println!(
            "{} damaged files; {} restore points affected: {}",
            report.damage.len(),
            report.restore_points_damaged.len(),
            report.restore_points_damaged.join(", ")
        );
    }
}

/// The quarantine lines of a verify report: explained damage that no
/// restore point listed above depends on any more.
fn print_quarantine(report: &VerifyReport) {
    if report.quarantined.is_empty() {
        return;
    }
    /// Lines shown; `--json` lists every entry.
    const SHOWN: usize = 20;
    println!("{} files in quarantine/:", report.quarantined.len());
    let newest = report.quarantined.len().saturating_sub(SHOWN);
    if newest > 0 {
        println!("    ({newest} older entries not shown; --json lists them)");
    }
    for n in report.quarantined.iter().skip(newest) {
        println!(
            "    quarantined {} {} ({} by {}{}): {}",
            n.kind.as_str(),
            n.original,
            n.time.format("%Y-%m-%d %H:%M:%S UTC"),
            n.by,
            n.moved_to
                .as_deref()
                .map_or(String::from(", was missing"), |to| format!(", now {to}")),
            n.reason
        );
    }
}

pub fn prune(a: PruneArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let policy = KeepPolicy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
    };
    let report = match &a.vm {
        Some(vm) => repo.prune_vm(vm, &policy, a.dry_run)?,
        None => repo.prune(&policy, a.dry_run)?,
    };
    if a.output.json {
        print_json(&report)?;
        return Ok(exit::OK);
    }
    for (name, reasons) in &report.kept {
        println!("keep   {name}  ({})", reasons.join(", "));
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for name in &report.removed {
        println!("{verb} {name}");
    }
    for name in &report.damaged {
        println!("damaged {name}: left alone (see `lifeboat verify`)");
    }
    println!(
        "{} kept, {} {verb}{}",
        report.kept.len(),
        report.removed.len(),
        if a.dry_run {
            ""
        } else {
            "; run `lifeboat gc` to free their chunks"
        }
    );
    Ok(exit::OK)
}

pub fn forget(a: ForgetArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let m = super::resolve(&repo, &a.restore_point)?;
    repo.forget(&m)?;
    if a.output.json {
        print_json(&serde_json::json!({ "removed": m.name() }))?;
    } else {
        println!("removed {}; run `lifeboat gc` to free its chunks", m.name());
    }
    Ok(exit::OK)
}

pub fn gc(a: GcArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let report = repo.gc()?;
    if a.output.json {
        print_json(&report)?;
    } else {
        println!(
            "removed {} chunks ({}), kept {}, removed {} stale temporary files",
            report.chunks_removed,
            bytes(report.bytes_removed),
            report.chunks_kept,
            report.temp_files_removed
        );
        if report.damaged_manifests > 0 {
            println!(
                "kept the chunks of {} restore points whose manifest is damaged (see `lifeboat verify`)",
                report.damaged_manifests
            );
        }
    }
    Ok(exit::OK)
}

pub fn lock(a: LockArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let until = parse_until(&a.until)?;
    let m = super::resolve(&repo, &a.restore_point)?;
    let m = repo.lock(&m, until)?;
    if a.output.json {
        print_json(&m)?;
    } else {
        println!(
            "{} is immutable until {}",
            m.name(),
            until.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    Ok(exit::OK)
}

/// `2027-01-01` (midnight UTC) or an RFC 3339 time.
fn parse_until(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("--until {text:?}: expected YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(day
        .and_hms_opt(0, 0, 0)
        .context("midnight exists")?
        .and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_accepts_dates_and_times() {
        assert_eq!(
            parse_until("2027-01-01").unwrap().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_until("2027-01-01T10:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2027-01-01T08:00:00+00:00"
        );
        assert!(parse_until("next tuesday").is_err());
    }
}
