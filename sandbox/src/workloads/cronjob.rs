//! The CronJob controller, pure: when the schedule fires, a Job from `jobTemplate` (named
//! `<cronjob>-<scheduled unix minutes>` as the real one names it), `concurrencyPolicy`
//! (Allow, Forbid, Replace), `suspend`, and the history limits for finished Jobs.
//!
//! Tests cannot wait for minutes: the annotation `sandbox.tokenrotator.io/every: 2s` replaces the
//! schedule with a period (the Job name then carries unix seconds).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{json, Value};

/// Replaces the schedule with a period, for tests (a sandbox extension).
pub const EVERY_ANNOTATION: &str = "sandbox.tokenrotator.io/every";

/// When the schedule fires.
#[derive(Debug, Clone)]
pub enum Fires {
    Cron(Box<cron::Schedule>),
    Every(Duration),
}

impl Fires {
    pub fn of(c: &CronJob) -> Option<Self> {
        if let Some(every) = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(EVERY_ANNOTATION))
        {
            return super::simulator::parse_seconds(every)
                .filter(|d| !d.is_zero())
                .map(Self::Every);
        }
        let spec = c.spec.as_ref()?;
        // Standard 5-field cron; the crate wants seconds first and numbers weekdays from 1.
        let fields: Vec<&str> = spec.schedule.split_whitespace().collect();
        let expr = match fields.as_slice() {
            [m, h, dom, mon, dow] => {
                let dow = match *dow {
                    "*" | "?" => (*dow).to_owned(),
                    d => d
                        .split(',')
                        .map(|part| {
                            part.split('-')
                                .map(|x| {
                                    x.parse::<u8>()
                                        .map(|n| (n % 7 + 1).to_string())
                                        .unwrap_or_else(|_| x.to_owned())
                                })
                                .collect::<Vec<_>>()
                                .join("-")
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                };
                format!("0 {m} {h} {dom} {mon} {dow}")
            }
            _ if spec.schedule.starts_with('@') => spec.schedule.clone(),
            _ => return None,
        };
        cron::Schedule::from_str(&expr)
            .ok()
            .map(|s| Self::Cron(Box::new(s)))
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
            Self::Cron(c) => c.after(&after).next(),
        }
    }

    /// Suffix of the Job name for a firing at `t`.
    fn suffix(&self, t: DateTime<Utc>) -> i64 {
        match self {
            Self::Every(_) => t.timestamp(),
            Self::Cron(_) => t.timestamp() / 60,
        }
    }
}

/// What the controller does for one CronJob this pass.
#[derive(Debug, Default)]
pub struct Plan {
    /// Jobs to create (bodies).
    pub create: Vec<Value>,
    /// Jobs to delete (names): replaced, or beyond the history limits.
    pub delete: Vec<String>,
    /// The firing handled now, for `status.lastScheduleTime`.
    pub scheduled: Option<DateTime<Utc>>,
}

fn finished(j: &Job) -> Option<bool> {
    let conds = j.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_ == "Complete")
}

/// `jobs`: the Jobs this CronJob owns; `last`: the last firing handled (None: since creation).
pub fn plan(c: &CronJob, jobs: &[&Job], last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = c.spec.as_ref() else {
        return out;
    };
    let Some(fires) = Fires::of(c) else {
        return out;
    };
    let created = c
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
        .unwrap_or(now);
    let from = last.unwrap_or(created);
    // Only the latest missed firing runs (as with a small startingDeadlineSeconds).
    let mut due = None;
    let mut t = from;
    while let Some(next) = fires.next_after(t) {
        if next > now {
            break;
        }
        due = Some(next);
        t = next;
    }
    let mut running: Vec<&&Job> = jobs.iter().filter(|j| finished(j).is_none()).collect();
    if let Some(at) = due {
        out.scheduled = Some(at);
        if !spec.suspend.unwrap_or(false) {
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            let go = match policy {
                "Forbid" => running.is_empty(),
                "Replace" => {
                    out.delete
                        .extend(running.iter().filter_map(|j| j.metadata.name.clone()));
                    running.clear();
                    true
                }
                _ => true,
            };
            if go {
                out.create.push(job_for(c, &fires, at));
            }
        }
    }
    // History limits: the oldest finished Jobs beyond them go.
    for (ok, limit) in [
        (true, spec.successful_jobs_history_limit.unwrap_or(3)),
        (false, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&&Job> = jobs.iter().filter(|j| finished(j) == Some(ok)).collect();
        done.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        out.delete.extend(
            done.iter()
                .take(extra)
                .filter_map(|j| j.metadata.name.clone()),
        );
    }
    out
}

fn job_for(c: &CronJob, fires: &Fires, at: DateTime<Utc>) -> Value {
    let name = c.metadata.name.clone().unwrap_or_default();
    let template = c
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let mut meta = serde_json::to_value(template.metadata.unwrap_or_default()).unwrap_or(json!({}));
    meta["name"] = json!(format!("{name}-{}", fires.suffix(at)));
    meta["namespace"] = json!(c.metadata.namespace.clone().unwrap_or_default());
    meta["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] =
        json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    meta["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "CronJob", "name": name,
        "uid": c.metadata.uid.clone().unwrap_or_default(),
        "controller": true, "blockOwnerDeletion": true,
    }]);
    json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": serde_json::to_value(template.spec.unwrap_or_default()).unwrap_or(json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(schedule: &str, every: Option<&str>, policy: &str) -> CronJob {
        let mut annotations = serde_json::Map::new();
        if let Some(e) = every {
            annotations.insert(EVERY_ANNOTATION.into(), json!(e));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "nightly", "namespace": "shop", "uid": "u1",
                         "creationTimestamp": "2026-11-30T00:00:00Z", "annotations": annotations},
            "spec": {"schedule": schedule, "concurrencyPolicy": policy,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}}
        }))
        .unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn fires_on_schedule_names_jobs_like_the_controller_and_honours_forbid() {
        let c = cron("*/5 * * * *", None, "Allow");
        let p = plan(&c, &[], None, t("2026-11-30T00:04:00Z"));
        assert!(p.create.is_empty() && p.scheduled.is_none());
        let p = plan(&c, &[], None, t("2026-11-30T00:12:00Z"));
        assert_eq!(
            p.scheduled,
            Some(t("2026-11-30T00:10:00Z")),
            "only the latest missed firing"
        );
        let job = &p.create[0];
        assert_eq!(
            job["metadata"]["name"],
            format!("nightly-{}", t("2026-11-30T00:10:00Z").timestamp() / 60)
        );
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        // Forbid: not while one runs.
        let c = cron("*/5 * * * *", None, "Forbid");
        let running: Job =
            serde_json::from_value(json!({"metadata": {"name": "nightly-1"}})).unwrap();
        let p = plan(
            &c,
            &[&running],
            Some(t("2026-11-30T00:05:00Z")),
            t("2026-11-30T00:10:00Z"),
        );
        assert!(p.create.is_empty());
        assert_eq!(p.scheduled, Some(t("2026-11-30T00:10:00Z")));
        // Replace: the running one goes.
        let c = cron("*/5 * * * *", None, "Replace");
        let p = plan(
            &c,
            &[&running],
            Some(t("2026-11-30T00:05:00Z")),
            t("2026-11-30T00:10:00Z"),
        );
        assert_eq!(p.delete, vec!["nightly-1".to_string()]);
        assert_eq!(p.create.len(), 1);
    }

    #[test]
    fn the_every_annotation_replaces_the_schedule() {
        let c = cron("0 3 * * *", Some("2s"), "Allow");
        let p = plan(
            &c,
            &[],
            Some(t("2026-11-30T00:00:00Z")),
            t("2026-11-30T00:00:03Z"),
        );
        assert_eq!(p.scheduled, Some(t("2026-11-30T00:00:02Z")));
        assert_eq!(p.create.len(), 1);
    }
}
