//! `status.conditions` bookkeeping in the Kubernetes style.

use crate::time::to_k8s;
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Sets a condition, keeping `lastTransitionTime` when the status does not change so that
/// watchers can tell how long a state has held.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status_str = if status { "True" } else { "False" };
    let message = message.into();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status_str {
            c.last_transition_time = to_k8s(now);
        }
        c.status = status_str.to_owned();
        c.reason = reason.to_owned();
        c.message = message;
        c.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: status_str.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: to_k8s(now),
        });
    }
}

pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 2, 0).unwrap();
        let mut cs = vec![];
        set(&mut cs, "Ready", true, "A", "a", Some(1), t0);
        set(&mut cs, "Ready", true, "B", "b", Some(2), t1);
        assert_eq!(cs.len(), 1);
        assert_eq!(crate::time::from_k8s(&cs[0].last_transition_time), t0);
        assert_eq!(cs[0].reason, "B");
        assert_eq!(cs[0].observed_generation, Some(2));
        set(&mut cs, "Ready", false, "C", "c", Some(2), t2);
        assert_eq!(crate::time::from_k8s(&cs[0].last_transition_time), t2);
        assert!(!is_true(&cs, "Ready"));
    }
}
