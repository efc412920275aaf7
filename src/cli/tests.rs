use super::*;
use crate::api::TokenRotation;
use chrono::{Duration, SubsecRound};
use serde_json::json;

fn tr(name: &str, status: serde_json::Value, suspend: bool) -> TokenRotation {
    serde_json::from_value(json!({
        "apiVersion": "tokenrotator.io/v1alpha1",
        "kind": "TokenRotation",
        "metadata": {"name": name, "namespace": "payments"},
        "spec": {
            "twilio": {"accountSid": format!("AC{}", "0".repeat(32)),
                       "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
            "authToken": {},
            "secrets": [{"name": "creds", "tokenKey": "TOKEN"}],
            "suspend": suspend
        },
        "status": status
    }))
    .unwrap()
}

fn in_flight(phase: &str, promoted: bool) -> serde_json::Value {
    let mut rotation = json!({
        "id": "r-1", "trigger": "Manual", "startTime": "2026-11-23T10:00:00Z",
        "phaseStartTime": "2026-11-23T10:00:00Z", "stagingSecret": "s", "staged": true,
        "workloads": [
            {"kind": "Deployment", "name": "api", "desired": 3, "updated": 3, "available": 3, "done": true},
            {"kind": "Deployment", "name": "worker", "desired": 2, "updated": 1, "available": 1, "done": false}
        ]
    });
    if promoted {
        rotation["promotedTime"] = json!("2026-11-23T10:05:00Z");
    }
    json!({"phase": phase, "rotation": rotation})
}

#[test]
fn rotate_is_refused_while_in_flight_or_suspended() {
    assert!(check_rotate(&tr("a", json!({"phase": "Ready"}), false)).is_ok());
    let err = check_rotate(&tr("a", in_flight("RollingOut", false), false)).unwrap_err();
    assert!(matches!(err, CliError::InFlight { .. }));
    assert!(err.to_string().contains("phase RollingOut"), "{err}");
    let err = check_rotate(&tr("a", json!({"phase": "Ready"}), true)).unwrap_err();
    assert!(err.to_string().contains("spec.suspend"), "{err}");
}

#[test]
fn abort_only_before_promotion() {
    assert!(check_abort(&tr("a", in_flight("RollingOut", false), false)).is_ok());
    assert!(matches!(
        check_abort(&tr("a", json!({"phase": "Ready"}), false)),
        Err(CliError::NothingToAbort(_))
    ));
    for (phase, promoted) in [("Retiring", true), ("Promoting", false)] {
        let err = check_abort(&tr("a", in_flight(phase, promoted), false)).unwrap_err();
        assert!(matches!(err, CliError::PastPromotion { .. }), "{phase}");
        assert!(err.to_string().contains("nothing to roll back to"));
    }
}

#[test]
fn status_table_shows_phase_progress_and_times() {
    let now = Utc::now().trunc_subsecs(0);
    let last = crate::time::to_k8s(now - Duration::days(3));
    let next = crate::time::to_k8s(now + Duration::hours(5));
    let ready = tr(
        "billing",
        json!({"phase": "Ready", "lastRotationTime": last, "nextRotationTime": next,
               "message": "token rotated"}),
        false,
    );
    let rolling = tr("api", in_flight("RollingOut", false), false);
    let paused = tr("legacy", json!({}), true);
    let table = status_table(&[ready, rolling, paused], now, true);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let cells = |l: &str| {
        l.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(lines[0]),
        [
            "NAMESPACE",
            "NAME",
            "PHASE",
            "WORKLOADS",
            "LAST ROTATION",
            "NEXT ROTATION",
            "MESSAGE"
        ]
    );
    assert_eq!(
        cells(lines[1]),
        [
            "payments",
            "billing",
            "Ready",
            "-",
            "3d ago",
            "in 5h",
            "token rotated"
        ]
    );
    assert_eq!(
        cells(lines[2]),
        ["payments", "api", "RollingOut", "1/2", "never", "-"]
    );
    assert_eq!(
        cells(lines[3]),
        ["payments", "legacy", "Pending", "-", "never", "suspended"]
    );
    // Columns line up: every row's PHASE starts where the header's does.
    let col = lines[0].find("PHASE").unwrap();
    assert!(lines[1..]
        .iter()
        .all(|l| l[col..].starts_with(|c: char| c.is_ascii_uppercase())));
}

#[test]
fn short_durations_like_kubectl() {
    assert_eq!(short_duration(Duration::seconds(42)), "42s");
    assert_eq!(short_duration(Duration::minutes(5)), "5m");
    assert_eq!(short_duration(Duration::hours(3)), "3h");
    assert_eq!(short_duration(Duration::days(9)), "9d");
}

#[test]
fn history_table_lists_ended_rotations_newest_first() {
    let now = Utc::now().trunc_subsecs(0);
    let t = |ago: i64| crate::time::to_k8s(now - Duration::minutes(ago));
    let with = tr(
        "billing",
        json!({"phase": "Ready", "history": [
            {"id": "r2", "trigger": "Schedule", "startTime": t(10), "endTime": t(3),
             "result": "Succeeded", "keySid": "SK0123"},
            {"id": "r1", "trigger": "Manual", "startTime": t(600), "endTime": t(590),
             "result": "Aborted", "reason": "RolloutTimeout"}
        ]}),
        false,
    );
    let table = history_table(&with, now);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ROTATION"));
    assert!(
        lines[1].contains("r2") && lines[1].contains("Succeeded") && lines[1].contains("SK0123"),
        "{table}"
    );
    assert!(
        lines[1].contains("10m ago") && lines[1].contains("7m"),
        "{table}"
    );
    assert!(
        lines[2].contains("r1")
            && lines[2].contains("Aborted")
            && lines[2].contains("RolloutTimeout"),
        "{table}"
    );
    let none = history_table(&tr("new", json!({}), false), now);
    assert_eq!(none, "No rotation has ended yet.\n");
}
