//! Retention locks, forget and prune with synthetic restore point times.

mod common;
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use lifeboat_repo::*;

fn day(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).single().unwrap()
}

#[test]
fn lock_extend_shorten_and_forget_locked() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), true);
    let m = backup(&repo, "vm", &noise(1000, 1));
    let now = Utc::now();
    let locked = repo.lock(&m, now + Duration::days(1)).unwrap();
    assert!(locked.is_locked(now));
    assert!(!locked.is_locked(now + Duration::days(2)));
    match repo.forget(&m) {
        Err(Error::Locked {
            restore_point,
            until,
        }) => {
            assert_eq!(restore_point, m.name());
            assert_eq!(Some(until), locked.locked_until);
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // Extending works and persists; shortening is refused.
    let extended = repo.lock(&m, now + Duration::days(2)).unwrap();
    let reopened = Repository::open(repo.path(), Some(PASS)).unwrap();
    assert_eq!(
        reopened.resolve(&m.name()).unwrap().locked_until,
        extended.locked_until
    );
    match repo.lock(&m, now + Duration::days(1)) {
        Err(Error::LockShortening {
            current, requested, ..
        }) => {
            assert_eq!(Some(current), extended.locked_until);
            assert_eq!(requested, now + Duration::days(1));
        }
        other => panic!("expected LockShortening, got {other:?}"),
    }
    // The rewritten manifest still names the same data.
    assert_eq!(read_back(&repo, &extended, "disk0"), noise(1000, 1));
    assert!(matches!(repo.forget(&m), Err(Error::Locked { .. })));
    // An unlocked (or expired) one is forgotten; forgetting twice is NotFound.
    let other = backup(&repo, "vm", &noise(1000, 2));
    repo.lock(&other, now - Duration::hours(1)).unwrap();
    repo.forget(&other).unwrap();
    assert!(matches!(repo.forget(&other), Err(Error::NotFound { .. })));
    assert_eq!(repo.list(None).unwrap().len(), 1);
}

#[test]
fn prune_keeps_per_policy_per_vm_and_respects_locks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), false);
    let mut web = Vec::new();
    for d in 1..=6 {
        web.push(backup_at(
            &repo,
            "web",
            &noise(500, u64::from(d)),
            day(d, 2),
        ));
        web.push(backup_at(
            &repo,
            "web",
            &noise(500, u64::from(d) + 100),
            day(d, 14),
        ));
    }
    let db: Vec<Manifest> = (1..=3)
        .map(|d| backup_at(&repo, "db", &noise(500, u64::from(d) + 200), day(d, 3)))
        .collect();
    // Lock an old one far into the future.
    repo.lock(&web[0], Utc::now() + Duration::days(365))
        .unwrap();

    let policy = KeepPolicy {
        last: 1,
        daily: 3,
        ..Default::default()
    };
    let dry = repo.prune(&policy, true).unwrap();
    assert_eq!(
        repo.list(None).unwrap().len(),
        15,
        "dry run removed something"
    );
    let report = repo.prune(&policy, false).unwrap();
    assert_eq!(report.removed, dry.removed);

    let kept: Vec<&str> = report.kept.iter().map(|(n, _)| n.as_str()).collect();
    let expect_kept = [
        db[2].name(),
        db[1].name(),
        db[0].name(),
        web[11].name(),
        web[9].name(),
        web[7].name(),
        web[0].name(),
    ];
    assert_eq!(
        kept,
        expect_kept.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(report.kept[3].1, ["last", "daily 2026-03-06"]);
    assert!(
        report.kept[6].1[0].starts_with("locked until"),
        "{:?}",
        report.kept[6]
    );
    assert_eq!(report.removed.len(), 8);
    let mut left: Vec<String> = repo.list(None).unwrap().iter().map(|m| m.name()).collect();
    left.sort();
    let mut want: Vec<String> = expect_kept.to_vec();
    want.sort();
    assert_eq!(left, want);
    // Indexes of removed restore points are gone; chunks wait for gc.
    assert!(!repo.path().join("indexes/web").join(&web[1].id).exists());
}

#[test]
fn an_empty_policy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), false);
    backup(&repo, "vm", &noise(100, 1));
    assert!(matches!(
        repo.prune(&KeepPolicy::default(), false),
        Err(Error::Invalid { .. })
    ));
    assert_eq!(repo.list(None).unwrap().len(), 1);
}

#[test]
fn prune_of_one_vm_leaves_the_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(&dir.path().join("repo"), false);
    let web: Vec<Manifest> = (1..=3)
        .map(|d| backup_at(&repo, "web", &noise(500, u64::from(d)), day(d, 2)))
        .collect();
    let db: Vec<Manifest> = (1..=3)
        .map(|d| backup_at(&repo, "db", &noise(500, u64::from(d) + 50), day(d, 3)))
        .collect();
    let policy = KeepPolicy {
        last: 1,
        ..Default::default()
    };
    let report = repo.prune_vm("db", &policy, false).unwrap();
    // Newest first, as prune walks them.
    assert_eq!(report.removed, vec![db[1].name(), db[0].name()]);
    let left: Vec<String> = repo.list(None).unwrap().iter().map(|m| m.name()).collect();
    for m in &web {
        assert!(
            left.contains(&m.name()),
            "{} of another VM was removed",
            m.name()
        );
    }
    assert!(left.contains(&db[2].name()));
    assert_eq!(left.len(), 4);
    assert!(
        repo.prune_vm("../x", &policy, true).is_err(),
        "a bad VM name must be refused"
    );
}
