use super::*;
use crate::api::{RotationStatus, Trigger};
use crate::time::to_k8s;
use chrono::{Duration, SubsecRound};

fn in_flight(phase: Phase, phase_start: DateTime<Utc>) -> TokenRotationStatus {
    TokenRotationStatus {
        phase: Some(phase),
        rotation: Some(RotationStatus {
            id: "r1".into(),
            trigger: Trigger::Manual,
            start_time: to_k8s(phase_start),
            phase_start_time: to_k8s(phase_start),
            staging_secret: "s".into(),
            staged: true,
            promoted_time: None,
            key_sid: None,
            previous_key_sid: None,
            workloads: vec![],
            workloads_total: 0,
            workloads_done: 0,
            distributed_time: None,
            waiting_on: vec![],
            abort_step: None,
            held_reason: None,
            create_called: false,
            redistributions: 0,
            previous_lost: false,
            spec: None,
        }),
        ..Default::default()
    }
}

/// The sample lines of one metric name (exactly that name, any labels).
fn samples(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(str::to_owned)
        .collect()
}

fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    samples(text, name)
        .iter()
        .find(|l| labels.split(',').all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn phase_is_one_hot_and_moves_with_status() {
    let m = Metrics::new();
    let now = Utc::now().trunc_subsecs(0); // status times have whole seconds
    m.status_written(
        "ns",
        "tr",
        &TokenRotationStatus::default(),
        &in_flight(Phase::Staging, now),
        now,
    );
    let text = m.encode().unwrap();
    let phases = samples(&text, "token_rotator_phase");
    assert_eq!(phases.len(), PHASES.len(), "{text}");
    assert_eq!(
        value(&text, "token_rotator_phase", r#"phase="Staging""#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "token_rotator_phase", r#"phase="Ready""#),
        Some(0.0)
    );

    m.status_written(
        "ns",
        "tr",
        &in_flight(Phase::Staging, now),
        &in_flight(Phase::Distributing, now),
        now + Duration::seconds(3),
    );
    let text = m.encode().unwrap();
    assert_eq!(
        value(&text, "token_rotator_phase", r#"phase="Staging""#),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "token_rotator_phase", r#"phase="Distributing""#),
        Some(1.0)
    );
    // The Staging phase lasted 3 s: one observation summing to 3.
    assert_eq!(
        value(
            &text,
            "token_rotator_phase_duration_seconds_count",
            r#"phase="Staging""#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "token_rotator_phase_duration_seconds_sum",
            r#"phase="Staging""#
        ),
        Some(3.0)
    );
}

#[test]
fn finished_rotation_counts_by_result_and_sets_age() {
    let m = Metrics::new();
    let now = Utc::now().trunc_subsecs(0); // status times have whole seconds
    let done = TokenRotationStatus {
        phase: Some(Phase::Ready),
        last_rotation_time: Some(to_k8s(now - Duration::seconds(90))),
        next_rotation_time: Some(to_k8s(now + Duration::hours(1))),
        last_result: Some(RotationResult::Succeeded),
        rotations: 1,
        ..Default::default()
    };
    m.status_written("ns", "tr", &in_flight(Phase::Retiring, now), &done, now);
    // A status write that does not end a rotation does not count again.
    m.status_written("ns", "tr", &done, &done, now);
    let text = m.encode().unwrap();
    assert_eq!(
        value(
            &text,
            "token_rotator_rotations_total",
            r#"result="Succeeded""#
        ),
        Some(1.0)
    );
    let age = value(&text, "token_rotator_token_age_seconds", r#"name="tr""#).unwrap();
    assert!((90.0..100.0).contains(&age), "age {age}");
    let next = value(
        &text,
        "token_rotator_next_rotation_timestamp_seconds",
        r#"name="tr""#,
    )
    .unwrap();
    assert_eq!(next, seconds(now + Duration::hours(1)));
}

#[test]
fn held_rotation_shows_and_forget_drops_the_series() {
    let m = Metrics::new();
    let now = Utc::now().trunc_subsecs(0); // status times have whole seconds
    let mut held = in_flight(Phase::RollingOut, now);
    if let Some(r) = held.rotation.as_mut() {
        r.held_reason = Some("RolloutTimeout".into());
    }
    m.observe("ns", "tr", &held);
    let text = m.encode().unwrap();
    assert_eq!(
        value(&text, "token_rotator_rotation_held", r#"name="tr""#),
        Some(1.0)
    );
    m.forget("ns", "tr");
    let text = m.encode().unwrap();
    assert!(samples(&text, "token_rotator_rotation_held").is_empty());
    assert!(samples(&text, "token_rotator_phase").is_empty());
}

/// A deleted resource leaves no series behind: not its gauges, and not its counters and
/// histograms either; another resource's stay.
#[test]
fn forget_drops_counters_and_histograms_too() {
    let m = Metrics::new();
    let now = Utc::now().trunc_subsecs(0);
    for name in ["gone", "kept"] {
        m.reconciled("ns", name);
        m.reconcile_error("ns", name, "TwilioUnavailable");
        let rolling = in_flight(Phase::RollingOut, now - Duration::seconds(5));
        let mut done = TokenRotationStatus {
            phase: Some(Phase::Ready),
            last_result: Some(crate::api::RotationResult::Succeeded),
            ..Default::default()
        };
        done.rotations = 1;
        m.status_written("ns", name, &rolling, &done, now);
    }
    const PER_RESOURCE: [&str; 3] = [
        "token_rotator_reconciles_total",
        "token_rotator_reconcile_errors_total",
        "token_rotator_rotations_total",
    ];
    // The phase histogram is per namespace: both resources' phases in one series, which a
    // deletion leaves (its observations happened).
    let phases = |text: &str| samples(text, "token_rotator_phase_duration_seconds_count");
    let text = m.encode().unwrap();
    for metric in PER_RESOURCE {
        assert_eq!(samples(&text, metric).len(), 2, "{metric}: {text}");
    }
    assert_eq!(phases(&text).len(), 1, "{text}");
    assert_eq!(
        value(
            &text,
            "token_rotator_phase_duration_seconds_count",
            r#"phase="RollingOut""#
        ),
        Some(2.0)
    );
    assert!(!phases(&text)[0].contains("name="), "{text}");
    m.forget("ns", "gone");
    let text = m.encode().unwrap();
    for metric in PER_RESOURCE {
        let left = samples(&text, metric);
        assert_eq!(left.len(), 1, "{metric}: {left:?}");
        assert!(left[0].contains(r#"name="kept""#), "{left:?}");
    }
    assert_eq!(phases(&text).len(), 1, "{text}");
}

#[test]
fn twilio_calls_and_errors_are_counted() {
    use crate::twilio::{CallOutcome, CallRecord, Endpoint, ErrorKind};
    let m = Metrics::new();
    let observer = m.twilio_observer();
    for outcome in [
        CallOutcome::Success,
        CallOutcome::Success,
        CallOutcome::Failure(ErrorKind::RateLimited),
    ] {
        observer.on_call(&CallRecord {
            endpoint: Endpoint::CreateSecondaryAuthToken,
            outcome,
            attempts: 1,
            status: Some(201),
            duration: std::time::Duration::from_millis(5),
        });
    }
    m.reconcile_error("ns", "tr", "TwilioUnavailable");
    m.set_leader(true);
    let text = m.encode().unwrap();
    let ok = r#"endpoint="create_secondary_auth_token",outcome="success""#;
    assert_eq!(
        value(&text, "token_rotator_twilio_requests_total", ok),
        Some(2.0)
    );
    let limited = format!(
        r#"outcome="{}""#,
        CallOutcome::Failure(ErrorKind::RateLimited).as_str()
    );
    assert_eq!(
        value(&text, "token_rotator_twilio_requests_total", &limited),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "token_rotator_reconcile_errors_total",
            r#"reason="TwilioUnavailable""#
        ),
        Some(1.0)
    );
    assert_eq!(value(&text, "token_rotator_leader", ""), Some(1.0));
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with EOF");
}
