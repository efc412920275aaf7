//! `maxSurge`/`maxUnavailable` arithmetic, as `intstr.GetScaledValueFromIntOrPercent`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Scales `value` against `total`: an int is taken as is, a percentage is rounded up or down.
/// An unparsable string yields `None`.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match value {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.trim().parse().ok()?;
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            i32::try_from(v).ok()
        }
    }
}

/// Like [`scaled_value`] for an optional field, falling back to `default` when it is absent or
/// invalid (the API server would have defaulted or rejected it).
pub fn scaled_or(
    value: Option<&IntOrString>,
    default: &IntOrString,
    total: i32,
    round_up: bool,
) -> i32 {
    value
        .and_then(|v| scaled_value(v, total, round_up))
        .or_else(|| scaled_value(default, total, round_up))
        .unwrap_or(0)
        .max(0)
}

/// A Deployment's `(maxSurge, maxUnavailable)` as `deploymentutil.ResolveFenceposts`: surge rounds
/// up, unavailable rounds down, defaults 25%/25%, and both zero becomes unavailable 1.
pub fn deployment_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> (i32, i32) {
    let quarter = IntOrString::String("25%".to_owned());
    let surge = scaled_or(max_surge, &quarter, replicas, true);
    let unavailable = scaled_or(max_unavailable, &quarter, replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// A DaemonSet's `(maxSurge, maxUnavailable)` against the desired node count: both round up,
/// defaults 0/1, and both zero becomes unavailable 1 (`updatedDesiredNodeCounts`).
pub fn daemonset_limits(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let surge = scaled_or(max_surge, &IntOrString::Int(0), desired, true);
    let unavailable = scaled_or(max_unavailable, &IntOrString::Int(1), desired, true);
    if desired > 0 && surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> IntOrString {
        IntOrString::String(v.to_owned())
    }

    #[test]
    fn percentages_round_as_kubernetes() {
        assert_eq!(scaled_value(&s("25%"), 10, true), Some(3));
        assert_eq!(scaled_value(&s("25%"), 10, false), Some(2));
        assert_eq!(scaled_value(&s("25%"), 4, true), Some(1));
        assert_eq!(scaled_value(&s("25%"), 3, false), Some(0));
        assert_eq!(scaled_value(&s("100%"), 7, false), Some(7));
        assert_eq!(scaled_value(&s("0%"), 7, true), Some(0));
        assert_eq!(scaled_value(&IntOrString::Int(2), 100, false), Some(2));
        assert_eq!(scaled_value(&s("abc"), 10, true), None);
        assert_eq!(scaled_value(&s("25"), 10, true), None);
    }

    #[test]
    fn deployment_defaults_are_quarter_each() {
        assert_eq!(deployment_fenceposts(None, None, 4), (1, 1));
        assert_eq!(deployment_fenceposts(None, None, 3), (1, 0));
        assert_eq!(deployment_fenceposts(None, None, 10), (3, 2));
        assert_eq!(deployment_fenceposts(None, None, 1), (1, 0));
    }

    #[test]
    fn deployment_both_zero_allows_one_unavailable() {
        let zero = IntOrString::Int(0);
        assert_eq!(deployment_fenceposts(Some(&zero), Some(&zero), 5), (0, 1));
        assert_eq!(
            deployment_fenceposts(Some(&s("0%")), Some(&s("10%")), 5),
            (0, 1)
        );
        assert_eq!(
            deployment_fenceposts(Some(&zero), Some(&s("50%")), 5),
            (0, 2)
        );
    }

    #[test]
    fn daemonset_defaults_and_rounding() {
        assert_eq!(daemonset_limits(None, None, 2), (0, 1));
        assert_eq!(daemonset_limits(None, Some(&s("10%")), 5), (0, 1));
        assert_eq!(daemonset_limits(None, Some(&s("50%")), 5), (0, 3));
        let zero = IntOrString::Int(0);
        assert_eq!(daemonset_limits(Some(&zero), Some(&zero), 3), (0, 1));
        assert_eq!(daemonset_limits(Some(&s("50%")), Some(&zero), 3), (2, 0));
        assert_eq!(daemonset_limits(Some(&zero), Some(&zero), 0), (0, 0));
    }
}
