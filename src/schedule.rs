//! The `tokenrotator.io/schedule` annotation: standard cron (UTC) or `@every <duration>`.
//!
//! Pure functions only. The next run is computed from the last rotation (or the resource's
//! creation), so a run missed while the operator was down is due at once, and runs only once.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Cron(Box<cron::Schedule>),
    Every(std::time::Duration),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("invalid schedule {value:?}: {reason}; use a 5-field cron expression in UTC such as \"0 3 * * 0\", a macro such as \"@weekly\", or \"@every 720h\"")]
    Invalid { value: String, reason: String },
}

/// Parses a Kubernetes-style duration (`90s`, `15m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = kube::core::Duration::from_str(s.trim()).map_err(|e| e.to_string())?;
    if d.is_negative() {
        return Err("duration must not be negative".into());
    }
    Ok(d.into())
}

impl Schedule {
    pub fn parse(value: &str) -> Result<Self, ScheduleError> {
        let invalid = |reason: String| ScheduleError::Invalid {
            value: value.to_owned(),
            reason,
        };
        let v = value.trim();
        if let Some(rest) = v.strip_prefix("@every") {
            let d = parse_duration(rest).map_err(invalid)?;
            if d < std::time::Duration::from_secs(60) {
                return Err(invalid("@every must be at least 1m".into()));
            }
            return Ok(Self::Every(d));
        }
        let expr = if v.starts_with('@') {
            v.to_owned()
        } else {
            let fields: Vec<&str> = v.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(invalid(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                    fields.len()
                )));
            }
            // The cron crate wants seconds first and numbers weekdays 1-7 from Sunday, where
            // standard cron numbers them 0-7 with both 0 and 7 meaning Sunday.
            let dow = convert_day_of_week(fields[4]).map_err(invalid)?;
            format!(
                "0 {} {} {} {} {}",
                fields[0], fields[1], fields[2], fields[3], dow
            )
        };
        let parsed = cron::Schedule::from_str(&expr).map_err(|e| invalid(e.to_string()))?;
        if parsed.upcoming(Utc).next().is_none() {
            return Err(invalid("the expression never fires".into()));
        }
        Ok(Self::Cron(Box::new(parsed)))
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(d) => ChronoDuration::from_std(*d).ok().map(|d| after + d),
            Self::Cron(c) => c.after(&after).next(),
        }
    }

    /// Typical spacing between runs, used to bound the jitter.
    pub fn interval(&self, around: DateTime<Utc>) -> std::time::Duration {
        match self {
            Self::Every(d) => *d,
            Self::Cron(c) => {
                let mut it = c.after(&around);
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
                    _ => std::time::Duration::ZERO,
                }
            }
        }
    }
}

fn convert_day_of_week(field: &str) -> Result<String, String> {
    let map = |n: &str| -> Result<u32, String> {
        let v: u32 = n
            .parse()
            .map_err(|_| format!("day-of-week {n:?} is not a number"))?;
        if v > 7 {
            return Err(format!("day-of-week {v} is out of range 0-7"));
        }
        Ok(if v == 7 { 1 } else { v + 1 })
    };
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let step_suffix = step.map(|s| format!("/{s}")).unwrap_or_default();
        match range.split_once('-') {
            Some((a, b)) if is_num(a) && is_num(b) => {
                let (a_raw, b_raw): (u32, u32) = (
                    a.parse().map_err(|_| "bad range".to_string())?,
                    b.parse().map_err(|_| "bad range".to_string())?,
                );
                if b_raw == 7 && a_raw > 0 && step.is_none() {
                    // e.g. 5-7 (Friday..Sunday) becomes 6-7,1.
                    out.push(format!("{}-7", map(a)?));
                    out.push("1".to_owned());
                } else {
                    let b_mapped = if b_raw == 7 { 7 } else { map(b)? };
                    out.push(format!("{}-{}{}", map(a)?, b_mapped, step_suffix));
                }
            }
            _ if is_num(range) => out.push(format!("{}{}", map(range)?, step_suffix)),
            _ => out.push(item.to_owned()),
        }
    }
    Ok(out.join(","))
}

/// A per-resource delay so that a fleet sharing one schedule does not call Twilio at once:
/// stable for a given `seed` (the resource UID), at most a tenth of the interval and 5 minutes.
pub fn jitter(seed: &str, interval: std::time::Duration) -> std::time::Duration {
    let h = crate::hash::fnv1a64(seed.bytes());
    let cap = (interval / 10).min(std::time::Duration::from_secs(300));
    let cap_ms = cap.as_millis() as u64;
    if cap_ms == 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_millis(h % cap_ms)
}

/// When the schedule runs next, counted from the last rotation or, before the first, from the
/// resource's creation; jitter included.
pub fn next_run(
    schedule: &Schedule,
    last_rotation: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    seed: &str,
) -> Option<DateTime<Utc>> {
    let base = last_rotation.unwrap_or(created);
    let next = schedule.next_after(base)?;
    let j = jitter(seed, schedule.interval(next));
    Some(next + ChronoDuration::from_std(j).ok()?)
}

/// A time range scheduled rotations may run in: it opens at each `start` (cron, UTC) and stays
/// open for `length`.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start: Schedule,
    pub length: std::time::Duration,
}

/// How far ahead a window is looked for before giving up.
const WINDOW_HORIZON_DAYS: i64 = 400;

/// The earliest time at or after `t` at which a rotation needing `needs` fits entirely inside
/// one of `windows` (none: `t` itself). `None` when no window opens within the horizon or none
/// is long enough.
pub fn next_allowed(
    windows: &[Window],
    t: DateTime<Utc>,
    needs: std::time::Duration,
) -> Option<DateTime<Utc>> {
    if windows.is_empty() {
        return Some(t);
    }
    let needs = ChronoDuration::from_std(needs).ok()?;
    let horizon = t + ChronoDuration::days(WINDOW_HORIZON_DAYS);
    windows
        .iter()
        .filter_map(|w| {
            let length = ChronoDuration::from_std(w.length).ok()?;
            if needs > length {
                return None;
            }
            // Windows that opened up to `length` before t may still be open.
            let mut open = w
                .start
                .next_after(t - length - ChronoDuration::seconds(1))?;
            while open <= horizon {
                let close = open + length;
                let start = open.max(t);
                if start + needs <= close {
                    return Some(start);
                }
                open = w.start.next_after(open)?;
            }
            None
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn nightly(hour: u32, hours: u64) -> Window {
        Window {
            start: Schedule::parse(&format!("0 {hour} * * *")).unwrap(),
            length: std::time::Duration::from_secs(hours * 3600),
        }
    }

    #[test]
    fn a_rotation_starts_only_where_it_fits_in_a_window() {
        let mins = |m: u64| std::time::Duration::from_secs(m * 60);
        let w = [nightly(2, 4)]; // 02:00-06:00 UTC
                                 // Inside a window with room: at once.
        let inside = t("2026-11-23T03:00:00Z");
        assert_eq!(next_allowed(&w, inside, mins(30)), Some(inside));
        // Too close to the end: the next night.
        assert_eq!(
            next_allowed(&w, t("2026-11-23T05:45:00Z"), mins(30)),
            Some(t("2026-11-24T02:00:00Z"))
        );
        // Outside: the next opening.
        assert_eq!(
            next_allowed(&w, t("2026-11-23T10:00:00Z"), mins(30)),
            Some(t("2026-11-24T02:00:00Z"))
        );
        // Several windows: the earliest that fits.
        let both = [nightly(2, 4), nightly(12, 1)];
        assert_eq!(
            next_allowed(&both, t("2026-11-23T10:00:00Z"), mins(30)),
            Some(t("2026-11-23T12:00:00Z"))
        );
        // A window shorter than the mandatory waits never fits.
        assert_eq!(next_allowed(&[nightly(2, 1)], inside, mins(90)), None);
        // No windows: any time.
        assert_eq!(next_allowed(&[], inside, mins(90)), Some(inside));
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn standard_cron_sunday_is_zero_and_seven() {
        for expr in ["0 3 * * 0", "0 3 * * 7", "0 3 * * SUN"] {
            let s = Schedule::parse(expr).unwrap();
            let n = s.next_after(t("2026-11-23T10:00:00Z")).unwrap(); // a Monday
            assert_eq!(n.weekday(), Weekday::Sun, "{expr}");
            assert_eq!((n.hour(), n.minute()), (3, 0));
            assert_eq!(n, Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap());
        }
    }

    #[test]
    fn weekday_ranges_keep_their_meaning() {
        // Monday to Friday.
        let s = Schedule::parse("30 2 * * 1-5").unwrap();
        let n = s.next_after(t("2026-11-28T00:00:00Z")).unwrap(); // Saturday
        assert_eq!(n.weekday(), Weekday::Mon);
        // Friday to Sunday, written with 7.
        let s = Schedule::parse("0 0 * * 5-7").unwrap();
        let days: Vec<Weekday> = {
            let mut v = vec![];
            let mut at = t("2026-11-23T00:00:00Z");
            for _ in 0..3 {
                at = s.next_after(at).unwrap();
                v.push(at.weekday());
            }
            v
        };
        assert_eq!(days, vec![Weekday::Fri, Weekday::Sat, Weekday::Sun]);
    }

    #[test]
    fn every_and_macros() {
        let s = Schedule::parse("@every 720h").unwrap();
        assert_eq!(
            s.next_after(t("2026-01-01T00:00:00Z")).unwrap(),
            t("2026-01-31T00:00:00Z")
        );
        assert!(Schedule::parse("@weekly").is_ok());
        assert!(Schedule::parse("@daily").is_ok());
    }

    #[test]
    fn invalid_schedules_explain_what_to_write() {
        for bad in [
            "",
            "every day",
            "61 * * * *",
            "0 3 * *",
            "* * * * * *",
            "@every 10s",
            "@every x",
            "0 3 * * 8",
        ] {
            let err = Schedule::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid schedule"), "{bad}: {err}");
            assert!(err.contains("@every 720h"), "{bad}: {err}");
        }
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let day = std::time::Duration::from_secs(86400);
        let a = jitter("uid-a", day);
        assert_eq!(a, jitter("uid-a", day));
        assert!(a < std::time::Duration::from_secs(300));
        assert_ne!(jitter("uid-a", day), jitter("uid-b", day));
        let hour = std::time::Duration::from_secs(3600);
        assert!(jitter("uid-a", hour) < std::time::Duration::from_secs(360));
        assert_eq!(
            jitter("x", std::time::Duration::ZERO),
            std::time::Duration::ZERO
        );
    }

    #[test]
    fn next_run_counts_from_last_rotation_and_runs_missed_once() {
        let s = Schedule::parse("@every 24h").unwrap();
        let created = t("2026-01-01T00:00:00Z");
        let n = next_run(&s, None, created, "u").unwrap();
        assert!(n >= t("2026-01-02T00:00:00Z") && n < t("2026-01-02T00:05:00Z"));
        // The operator was down for a week: the next run is in the past (due once); after it
        // runs, the next one is a day after that rotation, not a backlog.
        let last = t("2026-01-09T12:00:00Z");
        let n2 = next_run(&s, Some(last), created, "u").unwrap();
        assert!(n2 > last + ChronoDuration::hours(23));
    }

    #[test]
    fn durations_parse_like_kubernetes() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
