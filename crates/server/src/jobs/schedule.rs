//! Job schedules: a cron expression (five fields, minute granularity, as
//! crontab(5) has them: `0 2 * * *`) evaluated in the server's time zone;
//! when a job is next due, whether a run fell due while the server was down
//! (it then runs once at start, not once per missed time), and how long a
//! failed run waits before its retry.

use chrono::{DateTime, TimeZone};
use croner::Cron;
use std::str::FromStr;
use std::time::Duration;

/// A cron expression that could not be used as a schedule.
#[derive(Debug, thiserror::Error)]
#[error("schedule {expr:?} is not a five-field cron expression (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\"): {detail}")]
pub struct ScheduleError {
    pub expr: String,
    pub detail: String,
}

/// A job's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
}

impl Schedule {
    /// Parses a five-field cron expression (`@daily` and the other
    /// aliases too). Seconds and years fields are refused: jobs run at
    /// minute granularity, as cron's do.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let err = |detail: String| ScheduleError {
            expr: expr.to_string(),
            detail,
        };
        let trimmed = expr.trim();
        if !trimmed.starts_with('@') && trimmed.split_whitespace().count() != 5 {
            return Err(err(format!(
                "{} fields",
                trimmed.split_whitespace().count()
            )));
        }
        let cron = Cron::from_str(trimmed).map_err(|e| err(e.to_string()))?;
        Ok(Schedule { cron })
    }

    /// The expression as given (trimmed).
    pub fn expr(&self) -> &str {
        self.cron.as_str()
    }

    /// The first time strictly after `t` the job is due (`None`: never,
    /// e.g. `0 0 30 2 *`).
    pub fn next_after<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>>
    where
        DateTime<Tz>: croner::CronDateTime,
    {
        self.cron.find_next_occurrence(t, false).ok()
    }

    /// The latest time in `(since, now]` the job was due: a run missed
    /// while the server was down, to be made up once at start (`None`:
    /// nothing fell due).
    pub fn missed<Tz: TimeZone>(
        &self,
        since: &DateTime<Tz>,
        now: &DateTime<Tz>,
    ) -> Option<DateTime<Tz>>
    where
        DateTime<Tz>: croner::CronDateTime,
    {
        let last = self.cron.find_previous_occurrence(now, true).ok()?;
        (last > *since).then_some(last)
    }
}

/// Retries of a failed run: at most this many after the first attempt.
pub const MAX_RETRIES: u32 = 3;

/// The wait before a failed run's first retry (`serve --retry-base-secs`).
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(60);

/// How long retry `n` (1-based) of a failed run waits: one minute, doubled
/// for each retry, at most an hour.
pub fn retry_delay(n: u32) -> Duration {
    retry_delay_from(DEFAULT_RETRY_BASE, n)
}

/// [`retry_delay`] with another first wait than a minute (`base`, doubled
/// for each retry, at most an hour).
pub fn retry_delay_from(base: Duration, n: u32) -> Duration {
    let secs = base
        .as_secs()
        .max(1)
        .saturating_mul(1u64 << n.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_run_of_a_nightly_job() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(
            s.next_after(&at("2026-12-07T23:10:00Z")),
            Some(at("2026-12-08T02:00:00Z"))
        );
        // Strictly after: at 02:00 the next one is tomorrow's.
        assert_eq!(
            s.next_after(&at("2026-12-08T02:00:00Z")),
            Some(at("2026-12-09T02:00:00Z"))
        );
    }

    #[test]
    fn the_time_zone_is_the_servers() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        let cet = FixedOffset::east_opt(3600).unwrap();
        let t = at("2026-12-07T23:10:00Z").with_timezone(&cet);
        // 02:00 in UTC+1 is 01:00 UTC.
        assert_eq!(
            s.next_after(&t).unwrap().with_timezone(&Utc),
            at("2026-12-08T01:00:00Z")
        );
    }

    #[test]
    fn weekdays_ranges_steps_and_aliases() {
        let s = Schedule::parse("30 */6 * * 1-5").unwrap();
        // Saturday 2026-12-05 -> Monday 00:30.
        assert_eq!(
            s.next_after(&at("2026-12-05T12:00:00Z")),
            Some(at("2026-12-07T00:30:00Z"))
        );
        let d = Schedule::parse("@daily").unwrap();
        assert_eq!(
            d.next_after(&at("2026-12-07T23:10:00Z")),
            Some(at("2026-12-08T00:00:00Z"))
        );
    }

    #[test]
    fn a_missed_run_is_found_once() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        // Down from Monday 01:00 to Wednesday 09:00: two nights missed,
        // one make-up run, for the latest of them.
        assert_eq!(
            s.missed(&at("2026-12-07T01:00:00Z"), &at("2026-12-09T09:00:00Z")),
            Some(at("2026-12-09T02:00:00Z"))
        );
        // Last run after the due time: nothing missed.
        assert_eq!(
            s.missed(&at("2026-12-09T02:00:05Z"), &at("2026-12-09T09:00:00Z")),
            None
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_the_expression() {
        for bad in [
            "",
            "0 2 * *",
            "0 0 2 * * *",
            "61 * * * *",
            "* * * * * * *",
            "every day",
        ] {
            let e = Schedule::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(2), Duration::from_secs(120));
        assert_eq!(retry_delay(3), Duration::from_secs(240));
        assert_eq!(retry_delay(40), Duration::from_secs(3600));
        let base = Duration::from_secs(1);
        assert_eq!(retry_delay_from(base, 1), base);
        assert_eq!(retry_delay_from(base, 3), Duration::from_secs(4));
    }
}
