//! Retention: [`KeepPolicy`] and `prune`, with restic / Proxmox Backup
//! semantics, applied per VM.
//!
//! Restore points are walked newest first. `last` keeps the N newest. Each
//! period rule (hourly, daily, weekly, monthly, yearly) keeps the newest
//! restore point of each of its N most recent periods that hold one: a
//! restore point is kept when its period differs from the period of the
//! last one that rule kept and the rule has quota left. Periods are in UTC;
//! weeks are ISO weeks. A restore point kept by any rule is kept, with every
//! reason listed. Locked restore points are always kept ("locked until ...").
//! A policy of all zeros is refused: it would delete everything. Damaged
//! restore points (manifest or index unreadable) are left alone: not
//! counted by any rule (an unreadable newest point must not make prune
//! remove the intact one before it) and not removed (`repo repair` decides).

use crate::error::{Error, Result};
use crate::model::Manifest;
use crate::repository::Repository;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many restore points to keep, per VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

/// What prune kept (with the reasons) and removed (or would, on a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub kept: Vec<(String, Vec<String>)>,
    pub removed: Vec<String>,
    /// Damaged restore points (a manifest or index that does not read):
    /// neither counted by the keep rules nor removed, left for `repo repair`.
    pub damaged: Vec<String>,
}

impl KeepPolicy {
    fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|&n| n == 0)
    }
}

type Bucket = fn(DateTime<Utc>) -> String;

/// Decides for the restore points of ONE VM; returns (kept + reasons,
/// removed), both newest first.
pub(crate) fn select<'a>(
    points: &[&'a Manifest],
    policy: &KeepPolicy,
    now: DateTime<Utc>,
) -> (Vec<(&'a Manifest, Vec<String>)>, Vec<&'a Manifest>) {
    let mut sorted: Vec<&Manifest> = points.to_vec();
    sorted.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
    let rules: [(&str, u32, Bucket); 5] = [
        ("hourly", policy.hourly, |t| {
            t.format("%Y-%m-%d %H").to_string()
        }),
        ("daily", policy.daily, |t| t.format("%Y-%m-%d").to_string()),
        ("weekly", policy.weekly, |t| t.format("%G-W%V").to_string()),
        ("monthly", policy.monthly, |t| t.format("%Y-%m").to_string()),
        ("yearly", policy.yearly, |t| t.format("%Y").to_string()),
    ];
    let mut left: Vec<u32> = rules.iter().map(|r| r.1).collect();
    let mut last_kept: Vec<Option<String>> = vec![None; rules.len()];
    let mut last_left = policy.last;
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for m in sorted {
        let mut reasons = Vec::new();
        if let Some(until) = m.locked_until.filter(|_| m.is_locked(now)) {
            reasons.push(format!("locked until {}", until.to_rfc3339()));
        }
        if last_left > 0 {
            last_left -= 1;
            reasons.push("last".to_string());
        }
        for (i, (name, _, bucket)) in rules.iter().enumerate() {
            let period = bucket(m.time);
            if left[i] > 0 && last_kept[i].as_deref() != Some(period.as_str()) {
                left[i] -= 1;
                reasons.push(format!("{name} {period}"));
                last_kept[i] = Some(period);
            }
        }
        if reasons.is_empty() {
            removed.push(m);
        } else {
            kept.push((m, reasons));
        }
    }
    (kept, removed)
}

impl Repository {
    /// Applies `policy` to every VM; with `dry_run` only reports.
    pub fn prune(&self, policy: &KeepPolicy, dry_run: bool) -> Result<PruneReport> {
        self.prune_at(None, policy, dry_run, Utc::now())
    }

    /// Applies `policy` to the restore points of `vm` only (a backup job's
    /// retention); the other VMs' points are neither counted nor touched.
    pub fn prune_vm(&self, vm: &str, policy: &KeepPolicy, dry_run: bool) -> Result<PruneReport> {
        self.prune_at(Some(vm), policy, dry_run, Utc::now())
    }

    /// [`Repository::prune`] (every VM, or `vm` only) at an explicit "now"
    /// (lock expiry is judged against it): for tests.
    pub fn prune_at(
        &self,
        vm: Option<&str>,
        policy: &KeepPolicy,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<PruneReport> {
        if policy.is_empty() {
            return Err(Error::invalid(
                "keep policy",
                "every keep count is zero, which would delete every restore point; keep at least one",
            ));
        }
        let _guard = self.snapshots_lock("prune")?;
        let listing = self.list_all(vm)?;
        let mut damaged: Vec<String> = listing
            .damaged
            .iter()
            .flat_map(|d| d.restore_points.iter().cloned())
            .collect();
        // A damaged point must not count as the one a rule keeps, or the
        // intact points it stands in for would be removed.
        let all: Vec<Manifest> = listing
            .points
            .into_iter()
            .filter(|m| {
                let intact = self.index_damage(m).is_empty();
                if !intact {
                    damaged.push(m.name());
                }
                intact
            })
            .collect();
        let mut report = PruneReport {
            damaged,
            ..Default::default()
        };
        let mut by_vm: BTreeMap<&str, Vec<&Manifest>> = BTreeMap::new();
        for m in &all {
            by_vm.entry(m.vm.as_str()).or_default().push(m);
        }
        for points in by_vm.values() {
            let (kept, removed) = select(points, policy, now);
            for (m, reasons) in kept {
                report.kept.push((m.name(), reasons));
            }
            for m in removed {
                if !dry_run {
                    self.forget_locked(m, now)?;
                }
                report.removed.push(m.name());
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn point(id: &str, t: DateTime<Utc>) -> Manifest {
        Manifest {
            format_version: 1,
            vm: "vm".into(),
            id: id.into(),
            time: t,
            disks: vec![],
            locked_until: None,
            scan: None,
            salvage: None,
            consistency: None,
        }
    }

    fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).single().unwrap()
    }

    fn names(v: &[&Manifest]) -> Vec<String> {
        v.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn daily_keeps_newest_of_each_of_n_days() {
        // Two backups per day over 5 days.
        let mut pts = Vec::new();
        for d in 1..=5 {
            pts.push(point(&format!("d{d}-a"), at(2026, 3, d, 1)));
            pts.push(point(&format!("d{d}-b"), at(2026, 3, d, 13)));
        }
        let refs: Vec<&Manifest> = pts.iter().collect();
        let policy = KeepPolicy {
            daily: 3,
            ..Default::default()
        };
        let (kept, removed) = select(&refs, &policy, at(2026, 4, 1, 0));
        let kept_ids: Vec<&str> = kept.iter().map(|(m, _)| m.id.as_str()).collect();
        assert_eq!(kept_ids, ["d5-b", "d4-b", "d3-b"]);
        assert_eq!(kept[0].1, ["daily 2026-03-05"]);
        assert_eq!(removed.len(), 7);
    }

    #[test]
    fn rules_combine_and_locked_is_always_kept() {
        let mut pts = [
            point("jan", at(2026, 1, 15, 0)),
            point("feb", at(2026, 2, 15, 0)),
            point("mar1", at(2026, 3, 1, 0)),
            point("mar2", at(2026, 3, 2, 0)),
            point("old", at(2025, 6, 1, 0)),
        ];
        pts[4].locked_until = Some(at(2027, 1, 1, 0));
        let refs: Vec<&Manifest> = pts.iter().collect();
        let policy = KeepPolicy {
            last: 1,
            monthly: 2,
            ..Default::default()
        };
        let (kept, removed) = select(&refs, &policy, at(2026, 4, 1, 0));
        let got: Vec<(String, Vec<String>)> = kept
            .iter()
            .map(|(m, r)| (m.id.clone(), r.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "mar2".to_string(),
                    vec!["last".to_string(), "monthly 2026-03".to_string()]
                ),
                ("feb".to_string(), vec!["monthly 2026-02".to_string()]),
                (
                    "old".to_string(),
                    vec!["locked until 2027-01-01T00:00:00+00:00".to_string()]
                ),
            ]
        );
        assert_eq!(names(&removed), ["mar1", "jan"]);
        // An expired lock no longer protects.
        let (_, removed) = select(&refs, &policy, at(2028, 1, 1, 0));
        assert_eq!(names(&removed), ["mar1", "jan", "old"]);
    }

    #[test]
    fn weekly_uses_iso_weeks_and_yearly_counts_years() {
        // 2026-01-01 is a Thursday of ISO week 2026-W01; 2025-12-29 too.
        let pts = [
            point("a", at(2025, 12, 29, 0)),
            point("b", at(2026, 1, 1, 0)),
            point("c", at(2026, 1, 5, 0)),
        ];
        let refs: Vec<&Manifest> = pts.iter().collect();
        let (kept, _) = select(
            &refs,
            &KeepPolicy {
                weekly: 5,
                ..Default::default()
            },
            at(2026, 2, 1, 0),
        );
        let ids: Vec<&str> = kept.iter().map(|(m, _)| m.id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
        let (kept, _) = select(
            &refs,
            &KeepPolicy {
                yearly: 5,
                ..Default::default()
            },
            at(2026, 2, 1, 0),
        );
        let ids: Vec<&str> = kept.iter().map(|(m, _)| m.id.as_str()).collect();
        assert_eq!(ids, ["c", "a"]);
    }
}
