//! Transition tests for the pure state machine.

use super::*;
use crate::api::{
    conditions::{DEGRADED, READY, ROTATING},
    AbortStep, Phase, RestartPolicy, RotationResult, TokenRotationSpec, TokenRotationStatus,
    Trigger, WorkloadKind, WorkloadProgress,
};
use crate::rotation::conditions::{get, is_true};
use crate::rotation::consumers::{ConsumerPod, PodAt, PodOwner, PodView, Reads};
use crate::time::{from_k8s, to_k8s};
use chrono::{DateTime, Duration as CD, TimeZone, Utc};
use std::time::Duration;

fn spec() -> TokenRotationSpec {
    serde_json::from_value(serde_json::json!({
        "twilio": {"accountSid": "AC0123456789abcdef0123456789abcdef",
                   "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
        "authToken": {},
        "secrets": [{"name": "creds", "tokenKey": "TWILIO_AUTH_TOKEN"}],
        "rolloutTimeout": "10m",
        "propagationDelay": "60s",
        "overlap": "5m"
    }))
    .unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

/// What the controller observes with `status`: the staging Secret holds the current
/// rotation's token once the status says it was staged.
fn obs(status: TokenRotationStatus) -> Observation {
    let staged_for = status
        .rotation
        .as_ref()
        .filter(|r| r.staged)
        .map(|r| r.id.clone());
    Observation {
        now: t0(),
        generation: Some(1),
        staging_secret: "twilio-rotation-staging".into(),
        uid: "uid-1".into(),
        created: t0() - CD::days(1),
        spec: spec(),
        spec_changed: false,
        plan: Plan::new(&spec(), None),
        rotate_now: None,
        abort: None,
        delete_secondary: None,
        deleting: false,
        status,
        account_holder: None,
        at_capacity: None,
        account_conflict: None,
        staged_for,
        staged_keys: None,
        rollout: None,
        reverted: Vec::new(),
        pods: None,
        copies: Vec::new(),
    }
}

/// The Degraded condition, which must be True with `reason`.
fn degraded_by<'a>(
    s: &'a TokenRotationStatus,
    reason: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let c = get(&s.conditions, DEGRADED).expect("a Degraded condition");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reason));
    c
}

fn holder(ns: &str, name: &str) -> Holder {
    Holder::TokenRotation {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn api() -> WorkloadAt {
    WorkloadAt {
        namespace: "shop".into(),
        kind: WorkloadKind::Deployment,
        name: "api".into(),
    }
}

fn progress(done: bool, reason: Option<&str>) -> WorkloadProgress {
    WorkloadProgress {
        namespace: None,
        kind: WorkloadKind::Deployment,
        name: "api".into(),
        desired: 3,
        updated: if done { 3 } else { 1 },
        available: if done { 3 } else { 1 },
        done,
        reason: reason.map(Into::into),
    }
}

/// Starts a manual rotation and returns the status after the Start decision.
fn started() -> TokenRotationStatus {
    let mut o = obs(TokenRotationStatus::default());
    o.rotate_now = Some("1".into());
    decide(&o).status
}

fn at_phase(phase: Phase) -> TokenRotationStatus {
    let mut s = started();
    s.phase = Some(phase);
    if let Some(r) = s.rotation.as_mut() {
        r.staged = !matches!(phase, Phase::Staging);
    }
    s
}

fn id(s: &TokenRotationStatus) -> String {
    s.rotation.as_ref().unwrap().id.clone()
}

#[test]
fn idle_without_trigger_is_ready_and_does_nothing() {
    let d = decide(&obs(TokenRotationStatus::default()));
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::Ready));
    assert!(is_true(&d.status.conditions, READY));
    assert_eq!(
        get(&d.status.conditions, READY).unwrap().reason,
        "NoRotationNeeded"
    );
    assert!(!is_true(&d.status.conditions, ROTATING));
    assert!(!is_true(&d.status.conditions, DEGRADED));
    assert_eq!(d.status.observed_generation, Some(1));
    assert!(d.events.is_empty());
}

#[test]
fn rotate_now_starts_once_and_records_id_before_any_twilio_call() {
    let mut o = obs(TokenRotationStatus::default());
    o.rotate_now = Some("2026-11-23".into());
    let d = decide(&o);
    assert_eq!(
        d.action,
        Action::None,
        "the ID is written before Twilio is called"
    );
    assert_eq!(d.status.phase, Some(Phase::Staging));
    let r = d.status.rotation.as_ref().unwrap();
    assert_eq!(r.trigger, Trigger::Manual);
    assert!(!r.staged);
    assert_eq!(r.staging_secret, "twilio-rotation-staging");
    assert_eq!(d.status.last_rotate_now.as_deref(), Some("2026-11-23"));
    assert_eq!(d.events[0].reason, "RotationStarted");
    assert!(is_true(&d.status.conditions, ROTATING));
    assert!(!is_true(&d.status.conditions, READY));

    // The same annotation value after the rotation finished does not start another.
    let mut done = d.status.clone();
    done.phase = Some(Phase::Ready);
    done.rotation = None;
    let mut o2 = obs(done);
    o2.rotate_now = Some("2026-11-23".into());
    assert_eq!(decide(&o2).status.phase, Some(Phase::Ready));
}

#[test]
fn schedule_due_starts_a_scheduled_rotation_and_sets_next_time() {
    let mut o = obs(TokenRotationStatus::default());
    o.plan = Plan::new(&spec(), Some("@every 24h"));
    // created a day ago: due now (plus at most five minutes of jitter).
    o.now = t0() + CD::minutes(6);
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Staging));
    assert_eq!(
        d.status.rotation.as_ref().unwrap().trigger,
        Trigger::Schedule
    );

    let mut o = obs(TokenRotationStatus::default());
    o.plan = Plan::new(&spec(), Some("@every 48h"));
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Ready));
    let next = from_k8s(d.status.next_rotation_time.as_ref().unwrap());
    assert!(next > t0() && next <= t0() + CD::days(1) + CD::minutes(5));
    let wait = d.requeue_after.unwrap();
    assert!(wait <= Duration::from_secs(3600), "idle requeue is capped");
}

#[test]
fn invalid_schedule_degrades_once_but_rotate_now_still_works() {
    let mut o = obs(TokenRotationStatus::default());
    o.plan = Plan::new(&spec(), Some("every sunday"));
    let d = decide(&o);
    let c = degraded_by(&d.status, "InvalidSchedule");
    assert!(c.message.contains("every sunday"));
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].reason, "InvalidSchedule");
    assert!(d.events[0].warning);
    assert!(d.status.next_rotation_time.is_none());
    // Reconciling again does not repeat the Event.
    let mut o2 = o.clone();
    o2.status = d.status.clone();
    assert!(decide(&o2).events.is_empty());
    // A manual rotation is not blocked by a broken schedule.
    o2.rotate_now = Some("x".into());
    assert_eq!(decide(&o2).status.phase, Some(Phase::Staging));
    // Fixing the schedule clears Degraded.
    let mut o3 = o2.clone();
    o3.rotate_now = None;
    o3.plan = Plan::new(&spec(), Some("0 3 * * 0"));
    assert!(!is_true(&decide(&o3).status.conditions, DEGRADED));
}

#[test]
fn suspend_blocks_new_rotations_and_holds_in_flight() {
    let mut s = spec();
    s.suspend = true;
    let mut o = obs(TokenRotationStatus::default());
    o.plan = Plan::new(&s, None);
    o.rotate_now = Some("1".into());
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Ready));
    assert!(d.status.message.unwrap().contains("suspended"));

    let mut o = obs(at_phase(Phase::RollingOut));
    o.plan = Plan::new(&s, None);
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    assert_eq!(
        get(&d.status.conditions, ROTATING).unwrap().reason,
        "Suspended"
    );
}

#[test]
fn second_rotation_on_the_same_account_waits_with_a_clear_condition() {
    let mut o = obs(TokenRotationStatus::default());
    o.rotate_now = Some("1".into());
    o.account_holder = Some(holder("shop", "other"));
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::Pending));
    let c = get(&d.status.conditions, ROTATING).unwrap();
    assert_eq!(c.reason, "WaitingForAccount");
    assert!(c.message.contains("shop/other"));
    assert_eq!(d.events[0].reason, "WaitingForAccount");
    // rotate-now is not consumed while waiting, so the rotation starts once the lock frees.
    assert_eq!(d.status.last_rotate_now, None);
    let mut o2 = o.clone();
    o2.status = d.status;
    assert!(
        decide(&o2).events.is_empty(),
        "no repeated Event while waiting"
    );
    o2.account_holder = None;
    assert_eq!(decide(&o2).status.phase, Some(Phase::Staging));
}

#[test]
fn staging_creates_and_stores_then_distributes() {
    let s = started();
    let d = decide(&obs(s.clone()));
    assert_eq!(
        d.action,
        Action::Stage {
            clear_existing: false
        }
    );
    assert_eq!(d.status.phase, Some(Phase::Distributing));
    assert!(d.status.rotation.as_ref().unwrap().staged);
    assert_eq!(d.events[0].reason, "SecondaryTokenCreated");
}

#[test]
fn staging_resumes_without_a_second_token_when_the_token_was_stored() {
    // Crash after the staging Secret was written but before status said so.
    let s = started();
    let mut o = obs(s.clone());
    o.staged_for = Some(id(&s));
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::Distributing));
}

#[test]
fn staging_after_crash_before_storing_stages_again() {
    // Crash between creating the secondary and storing it: no staging Secret for this ID, so
    // Stage runs again (it deletes the unknown secondary first).
    let mut s = started();
    s.rotation.as_mut().unwrap().create_called = true;
    let mut o = obs(s.clone());
    o.staged_for = Some("some-older-rotation".into());
    assert_eq!(
        decide(&o).action,
        Action::Stage {
            clear_existing: true
        }
    );
}

#[test]
fn distributing_applies_then_rolls_out() {
    let s = at_phase(Phase::Distributing);
    let mut o = obs(s.clone());
    o.staged_for = Some(id(&s));
    let d = decide(&o);
    assert_eq!(d.action, Action::Distribute);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    assert_eq!(d.events[0].reason, "SecretsUpdated");
}

#[test]
fn distributing_with_lost_staging_secret_starts_the_token_over() {
    let s = at_phase(Phase::Distributing);
    let mut o = obs(s);
    o.staged_for = None;
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::Staging));
    assert!(!d.status.rotation.as_ref().unwrap().staged);
    assert_eq!(d.events[0].reason, "StagingSecretLost");
}

#[test]
fn rolling_out_restarts_unstamped_workloads_with_the_rotation_id() {
    let s = at_phase(Phase::RollingOut);
    let mut o = obs(s.clone());
    o.rollout = Some(RolloutView {
        workloads: vec![progress(false, None)],
        unstamped: vec![api()],
    });
    // The first look records the write and waits for it to settle (kubelet Secret caches).
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(
        d.status.rotation.as_ref().unwrap().distributed_time,
        Some(to_k8s(o.now))
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(1)));
    o.status = d.status;
    o.now += CD::seconds(1);
    let d = decide(&o);
    assert_eq!(
        d.action,
        Action::Restart {
            stamp: id(&s),
            workloads: vec![api()],
            serve: Serve::New,
        }
    );
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    assert_eq!(d.events[0].reason, "WorkloadsRestarted");
}

fn consumer(name: &str, owner: PodOwner, started: chrono::DateTime<chrono::Utc>) -> ConsumerPod {
    ConsumerPod {
        namespace: "shop".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        owner,
        reads: Reads {
            at_start: true,
            files: false,
        },
        started: Some(started),
        terminating: false,
        stamped: false,
    }
}

fn deployment_pod(name: &str, started: chrono::DateTime<chrono::Utc>) -> ConsumerPod {
    consumer(
        name,
        PodOwner::Workload {
            kind: WorkloadKind::Deployment,
            name: "api".into(),
            dependent: true,
        },
        started,
    )
}

fn bare(name: &str, started: chrono::DateTime<chrono::Utc>) -> ConsumerPod {
    consumer(
        name,
        PodOwner::Other {
            kind: "Pod".into(),
            name: name.into(),
        },
        started,
    )
}

/// A RollingOut observation whose workloads are through, with these consumer pods; the
/// distribution was seen at the phase start.
fn through_with(pods: Vec<ConsumerPod>) -> (Observation, chrono::DateTime<chrono::Utc>) {
    let mut s = at_phase(Phase::RollingOut);
    let start = from_k8s(&s.rotation.as_ref().unwrap().phase_start_time);
    s.rotation.as_mut().unwrap().distributed_time = Some(to_k8s(start));
    let mut o = obs(s);
    o.rollout = Some(RolloutView {
        workloads: vec![progress(true, None)],
        unstamped: vec![],
    });
    o.pods = Some(PodView {
        pods,
        finished: 0,
        dependents: 1,
    });
    (o, start)
}

fn set_pods(o: &mut Observation, pods: Vec<ConsumerPod>) {
    o.pods.as_mut().unwrap().pods = pods;
}

/// Workloads through, but a pod that started before the rollout still drains: its credential
/// must stay valid, so verification (and promotion) waits; pods started since do not count; a
/// drain past rolloutTimeout holds.
#[test]
fn draining_pods_on_the_old_credential_hold_promotion() {
    let (mut o, start) = through_with(vec![]);
    let mut old = deployment_pod("worker-old", start - chrono::Duration::minutes(5));
    old.terminating = true;
    let new = deployment_pod("api-new", start + chrono::Duration::seconds(1));
    set_pods(&mut o, vec![old.clone(), new.clone()]);
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    let msg = d.status.message.clone().unwrap();
    assert!(
        msg.contains("1 pod on the old credential") && msg.contains("Draining"),
        "{msg}"
    );
    let waiting = &d.status.rotation.as_ref().unwrap().waiting_on;
    assert_eq!(waiting.len(), 1);
    assert_eq!((waiting[0].name.as_str(), waiting[0].pods), ("api", 1));
    // Gone: on to verification.
    set_pods(&mut o, vec![new]);
    assert_eq!(decide(&o).status.phase, Some(Phase::Verifying));
    // Still draining after rolloutTimeout: held, nothing promoted.
    set_pods(&mut o, vec![old]);
    o.now = start + chrono::Duration::days(1);
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    assert!(degraded_by(&d.status, "RolloutTimeout")
        .message
        .contains("after rolloutTimeout, 1 pod on the old credential"));
}

/// A bare Pod on the old token: nothing the rotation does replaces it. Hold (default) names it;
/// Delete deletes it by UID; Ignore promotes and says so in a Warning Event.
#[test]
fn unmanaged_pods_hold_delete_or_are_ignored() {
    let (mut o, start) = through_with(vec![]);
    let old = bare("debug-shell", start - chrono::Duration::minutes(1));
    set_pods(&mut o, vec![old.clone()]);
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    let c = degraded_by(&d.status, "UnmanagedConsumers");
    assert!(
        c.message
            .contains("Pod shop/debug-shell (1 pod, Unmanaged)"),
        "{}",
        c.message
    );
    assert!(c.message.contains("unmanagedPods: Delete"), "{}", c.message);
    // Deleted by the user: the hold clears.
    set_pods(&mut o, vec![]);
    o.status = d.status.clone();
    assert_eq!(decide(&o).status.phase, Some(Phase::Verifying));

    set_pods(&mut o, vec![old.clone()]);
    o.spec.workloads = Some(crate::api::WorkloadsSpec {
        unmanaged_pods: crate::api::UnmanagedPods::Delete,
        ..Default::default()
    });
    o.plan = Plan::new(&o.spec, None);
    let d = decide(&o);
    assert_eq!(
        d.action,
        Action::DeletePods {
            pods: vec![PodAt {
                namespace: "shop".into(),
                name: "debug-shell".into(),
                uid: "uid-debug-shell".into()
            }]
        }
    );
    assert!(d
        .events
        .iter()
        .any(|e| e.reason == "UnmanagedConsumers" && e.warning));

    o.spec.workloads = Some(crate::api::WorkloadsSpec {
        unmanaged_pods: crate::api::UnmanagedPods::Ignore,
        ..Default::default()
    });
    o.plan = Plan::new(&o.spec, None);
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Verifying));
    let e = d
        .events
        .iter()
        .find(|e| e.reason == "UnmanagedConsumers")
        .unwrap();
    assert!(e.warning && e.note.contains("shop/debug-shell") && e.note.contains("Ignore"));
}

/// Pods of a Job run to completion (waited on); a pod of a Rollout is restarted through
/// `spec.restartAt` unless it was restarted since the distribution; a pod started after the
/// distribution is done whoever owns it.
#[test]
fn jobs_are_waited_on_and_rollouts_restarted() {
    let (mut o, start) = through_with(vec![]);
    let job = consumer(
        "report-28",
        PodOwner::Job {
            name: "report-28".into(),
        },
        start - chrono::Duration::seconds(30),
    );
    set_pods(&mut o, vec![job.clone()]);
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert!(d.status.message.as_ref().unwrap().contains("JobRunning"));
    let rollout = |restart_at| {
        consumer(
            "web-abc",
            PodOwner::Rollout {
                name: "web".into(),
                restart_at,
            },
            start - chrono::Duration::minutes(3),
        )
    };
    set_pods(&mut o, vec![rollout(None)]);
    assert_eq!(
        decide(&o).action,
        Action::RestartRollouts {
            rollouts: vec![("shop".into(), "web".into())]
        }
    );
    // Restarted since the distribution: wait for Argo to replace the pod.
    set_pods(
        &mut o,
        vec![rollout(Some(start + chrono::Duration::seconds(2)))],
    );
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert!(d
        .status
        .message
        .as_ref()
        .unwrap()
        .contains("Rollout shop/web"));
    // Replaced, and the Job's next pod started after the distribution.
    let mut next = job;
    next.started = Some(start + chrono::Duration::seconds(5));
    set_pods(&mut o, vec![next]);
    assert_eq!(decide(&o).status.phase, Some(Phase::Verifying));
}

/// `restart: Never`: a pod reading mounted files holds the new token once the kubelet sync
/// delay is over; one reading env (or a `subPath` mount) never will, and nothing restarts it.
#[test]
fn restart_never_trusts_refreshed_files_but_not_env() {
    let (mut o, start) = through_with(vec![]);
    o.spec.workloads = Some(crate::api::WorkloadsSpec {
        restart: RestartPolicy::Never,
        kubelet_sync_delay: Some("30s".into()),
        ..Default::default()
    });
    o.plan = Plan::new(&o.spec, None);
    o.rollout = None;
    let mut files = deployment_pod("api-1", start - chrono::Duration::minutes(10));
    files.reads = Reads {
        at_start: false,
        files: true,
    };
    set_pods(&mut o, vec![files.clone()]);
    o.now = start + chrono::Duration::seconds(10);
    assert_eq!(decide(&o).status.phase, Some(Phase::RollingOut));
    o.now = start + chrono::Duration::seconds(31);
    assert_eq!(decide(&o).status.phase, Some(Phase::Verifying));
    let env = deployment_pod("api-2", start - chrono::Duration::minutes(10));
    set_pods(&mut o, vec![files, env]);
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    assert!(degraded_by(&d.status, "UnmanagedConsumers")
        .message
        .contains("Deployment shop/api (1 pod, Unmanaged)"));
}

/// No Pod reads the targets and no dependent workload exists: held unless the spec says so.
#[test]
fn no_consumers_found_holds_unless_the_spec_proceeds() {
    let (mut o, _) = through_with(vec![]);
    o.pods.as_mut().unwrap().dependents = 0;
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    assert!(degraded_by(&d.status, "NoConsumersFound")
        .message
        .contains("workloads.noConsumers: Proceed"));
    // A finished Job's pod is a consumer: nothing to wait for.
    o.pods.as_mut().unwrap().finished = 1;
    assert_eq!(decide(&o).status.phase, Some(Phase::Verifying));
    o.pods.as_mut().unwrap().finished = 0;
    o.spec.workloads = Some(crate::api::WorkloadsSpec {
        no_consumers: crate::api::NoConsumers::Proceed,
        ..Default::default()
    });
    o.plan = Plan::new(&o.spec, None);
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Verifying));
    assert!(d
        .events
        .iter()
        .any(|e| e.reason == "NoConsumersFound" && e.note.contains("no consumers found")));
}

/// The first look in RollingOut records when the new token was seen in every target.
#[test]
fn the_distribution_time_is_recorded_once() {
    let (mut o, start) = through_with(vec![]);
    o.status.rotation.as_mut().unwrap().distributed_time = None;
    o.now = start + chrono::Duration::seconds(3);
    let d = decide(&o);
    let t = d.status.rotation.as_ref().unwrap().distributed_time.clone();
    assert_eq!(t, Some(to_k8s(o.now)));
    o.status = d.status;
    o.now += chrono::Duration::seconds(10);
    let d = decide(&o);
    assert_eq!(d.status.rotation.unwrap().distributed_time, t);
}

#[test]
fn rolling_out_waits_then_verifies_when_every_workload_is_done() {
    let s = at_phase(Phase::RollingOut);
    let mut o = obs(s.clone());
    o.rollout = Some(RolloutView {
        workloads: vec![progress(false, None)],
        unstamped: vec![],
    });
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    assert!(d.status.message.as_ref().unwrap().contains("0/1"));
    assert_eq!(d.status.rotation.as_ref().unwrap().workloads[0].updated, 1);

    o.rollout = Some(RolloutView {
        workloads: vec![progress(true, None)],
        unstamped: vec![],
    });
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Verifying));
    assert_eq!(d.events[0].reason, "RolloutComplete");
}

#[test]
fn rolling_out_with_no_dependent_workloads_goes_straight_to_verify() {
    let mut o = obs(at_phase(Phase::RollingOut));
    o.rollout = Some(RolloutView::default());
    assert_eq!(decide(&o).status.phase, Some(Phase::Verifying));
}

#[test]
fn rollout_timeout_holds_without_promoting_and_warns_once() {
    let s = at_phase(Phase::RollingOut);
    let mut o = obs(s);
    o.now = t0() + CD::minutes(11);
    o.rollout = Some(RolloutView {
        workloads: vec![progress(false, None)],
        unstamped: vec![],
    });
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    let c = degraded_by(&d.status, "RolloutTimeout");
    assert!(c.message.contains("Deployment api (1/3 updated"));
    assert!(c.message.contains("abort"));
    let reasons: Vec<_> = d.events.iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"RotationHeld") && reasons.contains(&"RolloutTimeout"));
    let mut o2 = o.clone();
    o2.status = d.status;
    assert!(decide(&o2).events.is_empty(), "the hold is announced once");
    // Completing the rollout later clears the hold and moves on.
    o2.rollout = Some(RolloutView {
        workloads: vec![progress(true, None)],
        unstamped: vec![],
    });
    let d = decide(&o2);
    assert_eq!(d.status.phase, Some(Phase::Verifying));
    assert!(!is_true(&d.status.conditions, DEGRADED));
}

#[test]
fn paused_or_failing_workloads_hold_at_once() {
    for (reason, expect) in [
        ("Paused", "WorkloadPaused"),
        ("ProgressDeadlineExceeded", "RolloutFailed"),
    ] {
        let mut o = obs(at_phase(Phase::RollingOut));
        o.rollout = Some(RolloutView {
            workloads: vec![progress(false, Some(reason))],
            unstamped: vec![],
        });
        let d = decide(&o);
        assert_eq!(d.action, Action::None);
        assert_eq!(get(&d.status.conditions, DEGRADED).unwrap().reason, expect);
    }
}

#[test]
fn restart_never_waits_for_the_kubelet_sync_delay() {
    let mut sp = spec();
    sp.workloads = Some(crate::api::WorkloadsSpec {
        restart: RestartPolicy::Never,
        kubelet_sync_delay: Some("30s".into()),
        ..Default::default()
    });
    let mut o = obs(at_phase(Phase::RollingOut));
    o.plan = Plan::new(&sp, None);
    assert_eq!(decide(&o).status.phase, Some(Phase::RollingOut));
    o.now = t0() + CD::seconds(31);
    assert_eq!(decide(&o).status.phase, Some(Phase::Verifying));
}

#[test]
fn verifying_then_promoting_then_retiring() {
    let d = decide(&obs(at_phase(Phase::Verifying)));
    assert_eq!(d.action, Action::Verify);
    assert_eq!(
        d.status.phase,
        Some(Phase::Promoting),
        "Promoting is written before promotion"
    );

    let d = decide(&obs(at_phase(Phase::Promoting)));
    assert_eq!(d.action, Action::Promote);
    assert_eq!(d.status.phase, Some(Phase::Retiring));
    assert!(d.status.rotation.as_ref().unwrap().promoted_time.is_some());
    assert_eq!(d.events[0].reason, "TokenPromoted");
}

#[test]
fn the_wait_to_retire_changes_nothing_the_promotion_wrote() {
    // Each status a look decides is written unless unchanged: the looks between promotion
    // and retirement must decide the very status the promotion wrote, or each is a write.
    for kind in ["authToken", "apiKey"] {
        let mut o = obs(at_phase(Phase::Promoting));
        // Promoted within a second: the time is stored in whole seconds.
        o.now = t0() + CD::milliseconds(250);
        if kind == "apiKey" {
            o.spec = key_spec(0);
            o.plan = Plan::new(&o.spec, None);
        }
        let promoted = decide(&o).status;
        assert_eq!(promoted.phase, Some(Phase::Retiring));
        let msg = promoted.message.clone().unwrap();
        assert!(msg.ends_with(" at 2026-11-23T10:06:00+00:00"), "{msg}");
        let mut next = o.clone();
        next.status = promoted.clone();
        for after in [0, 1, 359] {
            next.now = o.now + CD::seconds(after);
            let d = decide(&next);
            assert_eq!(d.action, Action::None, "{kind} +{after}s");
            assert_eq!(d.status, promoted, "{kind} +{after}s");
        }
        // Deleted meanwhile: the overlap is cut short, which the message says.
        next.deleting = true;
        next.now = o.now + CD::seconds(1);
        assert_ne!(decide(&next).status.message, promoted.message);
    }
}

#[test]
fn verification_failure_waits_through_propagation_then_degrades() {
    let o = obs(at_phase(Phase::Verifying));
    let f = Failure {
        class: FailureClass::NewTokenRefused,
        message: "Twilio answered 401 (code 20003)".into(),
    };
    let d = on_failure(&o, &Action::Verify, &f);
    assert_eq!(d.status.phase, Some(Phase::Verifying));
    assert!(
        !is_true(&d.status.conditions, DEGRADED),
        "inside the propagation delay"
    );
    let mut late = o.clone();
    late.now = t0() + CD::seconds(61);
    let d = on_failure(&late, &Action::Verify, &f);
    assert_eq!(d.status.phase, Some(Phase::Verifying));
    assert_eq!(
        get(&d.status.conditions, DEGRADED).unwrap().reason,
        "VerificationFailed"
    );
}

#[test]
fn retiring_waits_propagation_plus_overlap_then_completes() {
    let d = decide(&obs(at_phase(Phase::Promoting)));
    let promoted = d.status.clone();
    let mut o = obs(promoted.clone());
    o.now = t0() + CD::minutes(5);
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));
    o.now = t0() + CD::minutes(6);
    let d = decide(&o);
    assert_eq!(
        d.action,
        Action::Retire {
            delete_keys: vec![]
        }
    );
    assert_eq!(d.status.phase, Some(Phase::Ready));
    assert!(d.status.rotation.is_none());
    assert_eq!(d.status.rotations, 1);
    assert_eq!(d.status.last_result, Some(RotationResult::Succeeded));
    assert_eq!(
        from_k8s(d.status.last_rotation_time.as_ref().unwrap()),
        t0()
    );
    assert!(is_true(&d.status.conditions, READY));
    assert!(!is_true(&d.status.conditions, ROTATING));
    assert_eq!(d.events[0].reason, "RotationSucceeded");
    assert_eq!(
        get(&d.status.conditions, READY).unwrap().message,
        format!("rotation {} succeeded", id(&promoted))
    );
    // What it writes is the resting state: the next look (its own status write's watch
    // event) finds nothing to change and writes nothing.
    o.status = d.status.clone();
    let again = decide(&o);
    assert_eq!(again.action, Action::None);
    assert_eq!(again.status, d.status);
    assert!(again.events.is_empty());
}

#[test]
fn a_scheduled_rotation_ends_in_its_resting_state() {
    let plan = || Plan::new(&spec(), Some("@every 720h"));
    let mut o = obs(at_phase(Phase::Promoting));
    o.plan = plan();
    let promoted = decide(&o).status;
    let mut o = obs(promoted);
    o.plan = plan();
    o.now = t0() + CD::minutes(6);
    let d = decide(&o);
    assert!(matches!(d.action, Action::Retire { .. }));
    let next = d.status.next_rotation_time.clone();
    assert!(next.is_some());
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("next rotation at"),
        "{:?}",
        d.status.message
    );
    o.status = d.status.clone();
    o.now += CD::seconds(1);
    let again = decide(&o);
    assert_eq!(again.action, Action::None);
    assert_eq!(again.status, d.status, "a second write after the rotation");
}

#[test]
fn abort_before_promotion_rolls_back_in_order() {
    let s = at_phase(Phase::RollingOut);
    let rid = id(&s);
    let mut o = obs(s);
    o.abort = Some("please".into());
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Aborting));
    assert_eq!(d.status.last_abort.as_deref(), Some("please"));
    assert_eq!(
        d.status.rotation.as_ref().unwrap().abort_step,
        Some(AbortStep::RestoreSecrets)
    );

    let mut o = obs(d.status);
    o.abort = Some("please".into());
    let d = decide(&o);
    assert_eq!(d.action, Action::RestoreSecrets);
    assert_eq!(
        d.status.rotation.as_ref().unwrap().abort_step,
        Some(AbortStep::RollBack)
    );

    let mut o = obs(d.status);
    o.abort = Some("please".into());
    o.rollout = Some(RolloutView {
        workloads: vec![progress(false, None)],
        unstamped: vec![api()],
    });
    // The restore settles first.
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    o.status = d.status;
    o.now += CD::seconds(1);
    let d = decide(&o);
    assert_eq!(
        d.action,
        Action::Restart {
            stamp: format!("{rid}-rollback"),
            workloads: vec![api()],
            serve: Serve::Old,
        }
    );
    o.rollout = Some(RolloutView {
        workloads: vec![progress(true, None)],
        unstamped: vec![],
    });
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(
        d.status.rotation.as_ref().unwrap().abort_step,
        Some(AbortStep::DeleteSecondary)
    );

    // Pods the rollback stopped may still drain on the new token: it is deleted only after
    // propagationDelay (60 s here).
    let mut o = obs(d.status);
    o.abort = Some("please".into());
    // (The rollback step began a second in, after the restore settled.)
    o.now = t0() + CD::seconds(1);
    let wait = decide(&o);
    assert_eq!(wait.action, Action::None);
    assert_eq!(wait.status.phase, Some(Phase::Aborting));
    assert_eq!(wait.requeue_after, Some(Duration::from_secs(60)));
    o.now = t0() + CD::seconds(62);
    let d = decide(&o);
    assert_eq!(d.action, Action::DeleteSecondary { at_twilio: true });
    assert_eq!(d.status.phase, Some(Phase::Aborted));
    assert_eq!(d.status.last_result, Some(RotationResult::Aborted));
    let ready = get(&d.status.conditions, READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RotationAborted")
    );
    // The end of the abort is the resting state: the next look writes nothing.
    let mut rest = o.clone();
    rest.status = d.status.clone();
    let again = decide(&rest);
    assert_eq!(
        (again.action, again.status),
        (Action::None, d.status.clone())
    );

    // The stale abort annotation does not abort the next rotation.
    let mut o = obs(d.status);
    o.abort = Some("please".into());
    o.rotate_now = Some("again".into());
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Staging));
    let mut o = obs(d.status);
    o.abort = Some("please".into());
    assert_eq!(decide(&o).status.phase, Some(Phase::Distributing));
}

#[test]
fn abort_before_staging_only_deletes_the_secondary() {
    let mut o = obs(started());
    o.abort = Some("1".into());
    let d = decide(&o);
    assert_eq!(
        d.status.rotation.as_ref().unwrap().abort_step,
        Some(AbortStep::DeleteSecondary)
    );
}

#[test]
fn abort_after_promotion_is_refused_and_the_rotation_completes() {
    let mut o = obs(at_phase(Phase::Promoting));
    o.abort = Some("1".into());
    let d = decide(&o);
    assert_eq!(d.action, Action::Promote);
    assert!(d
        .events
        .iter()
        .any(|e| e.reason == "AbortRefused" && e.warning));
}

#[test]
fn abort_with_nothing_in_flight_is_recorded_and_ignored() {
    let mut o = obs(TokenRotationStatus::default());
    o.abort = Some("1".into());
    let d = decide(&o);
    assert_eq!(d.status.last_abort.as_deref(), Some("1"));
    assert_eq!(d.events[0].reason, "AbortIgnored");
}

#[test]
fn failures_map_to_documented_reasons_and_never_advance() {
    for (class, reason) in [
        (
            FailureClass::CredentialsMissing,
            "CredentialsSecretNotFound",
        ),
        (FailureClass::AuthenticationFailed, "AuthenticationFailed"),
        (FailureClass::TwilioUnavailable, "TwilioUnavailable"),
        (FailureClass::TwilioRateLimited, "TwilioRateLimited"),
        (FailureClass::OutcomeUnknown, "TwilioOutcomeUnknown"),
        (FailureClass::Kubernetes, "KubernetesError"),
        (FailureClass::Forbidden, "Forbidden"),
        (FailureClass::StagingLost, "StagingSecretLost"),
        (FailureClass::TwilioRejected, "TwilioRejected"),
    ] {
        let s = at_phase(Phase::Distributing);
        let d = on_failure(
            &obs(s.clone()),
            &Action::Distribute,
            &Failure {
                class,
                message: "details".into(),
            },
        );
        assert_eq!(d.action, Action::None);
        assert_eq!(
            d.status.phase, s.phase,
            "{reason}: a failure never advances"
        );
        assert_eq!(d.status.rotation, s.rotation);
        let c = degraded_by(&d.status, reason);
        assert!(c
            .message
            .contains("writing the new token into the target Secrets failed: details"));
        assert_eq!(d.events[0].reason, reason);
        assert!(d.requeue_after.is_some());
    }
}

/// Drives decisions against a tiny model of the world, crashing (dropping the decision's status
/// write) at every step once, and checks that the rotation always completes with exactly one
/// token staged per rotation ID and the phases in order.
#[test]
fn resumes_from_every_phase_after_a_crash() {
    for crash_at in 0..12 {
        let mut status = TokenRotationStatus::default();
        let mut staged_for: Option<String> = None;
        let mut stamped = false;
        let mut rolled_out = false;
        let mut now = t0();
        let mut stage_calls = 0;
        let mut promoted = 0;
        let mut phases = vec![];
        for step in 0..60 {
            let mut o = obs(status.clone());
            o.now = now;
            o.rotate_now = Some("go".into());
            o.staged_for = staged_for.clone();
            o.rollout = Some(RolloutView {
                workloads: vec![progress(rolled_out, None)],
                unstamped: if stamped { vec![] } else { vec![api()] },
            });
            let d = decide(&o);
            // Perform the action.
            match &d.action {
                Action::Stage { .. } => {
                    stage_calls += 1;
                    staged_for = status.rotation.as_ref().map(|r| r.id.clone());
                }
                Action::Restart { .. } => stamped = true,
                Action::Promote => promoted += 1,
                Action::Retire { .. } => staged_for = None,
                _ => {}
            }
            if stamped {
                rolled_out = true;
            }
            let crashed = step == crash_at;
            if !crashed {
                status = d.status;
                if phases.last() != status.phase.as_ref() {
                    phases.push(status.phase.unwrap());
                }
            }
            now += CD::seconds(
                d.requeue_after
                    .map(|r| r.as_secs() as i64)
                    .unwrap_or(1)
                    .max(1),
            );
            if status.rotations == 1 {
                break;
            }
        }
        assert_eq!(status.rotations, 1, "crash at {crash_at}: completed");
        assert_eq!(status.phase, Some(Phase::Ready));
        assert!(
            stage_calls <= 2,
            "crash at {crash_at}: at most one re-stage"
        );
        assert!(promoted >= 1);
        assert_eq!(
            phases,
            vec![
                Phase::Staging,
                Phase::Distributing,
                Phase::RollingOut,
                Phase::Verifying,
                Phase::Promoting,
                Phase::Retiring,
                Phase::Ready
            ],
            "crash at {crash_at}"
        );
    }
}

#[test]
fn staging_secret_names_fit_the_kubernetes_limit() {
    let long = "a".repeat(253);
    let n = super::machine::staging_secret_name(&long, "-rotation-staging");
    assert!(n.len() <= 253);
    assert!(n.ends_with("-rotation-staging"));
}

fn key_spec(retain: i32) -> TokenRotationSpec {
    serde_json::from_value(serde_json::json!({
        "twilio": {"accountSid": "AC0123456789abcdef0123456789abcdef",
                   "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
        "apiKey": {"retainPrevious": retain},
        "secrets": [{"name": "creds", "tokenKey": "SECRET", "keySidKey": "KEY"}],
        "propagationDelay": "60s",
        "overlap": "5m"
    }))
    .unwrap()
}

/// Runs an API key rotation from distribution to its end, with `new` replacing `previous`.
fn key_rotation(
    retain: i32,
    status: TokenRotationStatus,
    new: &str,
    previous: Option<&str>,
) -> Decision {
    let mut st = status;
    st.phase = Some(Phase::Distributing);
    st.rotation = at_phase(Phase::Distributing).rotation;
    let mut o = obs(st);
    o.plan = Plan::new(&key_spec(retain), None);
    o.staged_for = o.status.rotation.as_ref().map(|r| r.id.clone());
    o.staged_keys = Some(StagedKeys {
        new: new.into(),
        previous: previous.map(Into::into),
    });
    let d = decide(&o);
    assert_eq!(d.action, Action::Distribute);
    let r = d.status.rotation.as_ref().unwrap();
    assert_eq!(r.key_sid.as_deref(), Some(new));
    assert_eq!(r.previous_key_sid.as_deref(), previous);
    // The staging Secret is gone by retirement: the SIDs come from status.
    o.staged_keys = None;
    o.staged_for = None;
    let mut st = d.status;
    st.phase = Some(Phase::Retiring);
    if let Some(r) = st.rotation.as_mut() {
        r.promoted_time = Some(crate::time::to_k8s(t0()));
    }
    o.status = st;
    o.now = t0() + CD::minutes(10);
    decide(&o)
}

#[test]
fn api_key_retirement_deletes_the_previous_key_by_default() {
    let d = key_rotation(0, TokenRotationStatus::default(), "SKnew", Some("SKold"));
    assert_eq!(
        d.action,
        Action::Retire {
            delete_keys: vec!["SKold".into()]
        }
    );
    let keys = d.status.api_key.unwrap();
    assert_eq!(keys.current_key_sid.as_deref(), Some("SKnew"));
    assert!(keys.retained_key_sids.is_empty());
}

#[test]
fn api_key_retirement_keeps_the_newest_previous_keys() {
    // Three rotations with retainPrevious 2: k0 -> k1 -> k2 -> k3.
    let mut status = TokenRotationStatus::default();
    let mut deleted = Vec::new();
    for (new, prev) in [("SK1", "SK0"), ("SK2", "SK1"), ("SK3", "SK2")] {
        let d = key_rotation(2, status, new, Some(prev));
        if let Action::Retire { delete_keys } = &d.action {
            deleted.extend(delete_keys.clone());
        } else {
            panic!("expected Retire, got {:?}", d.action);
        }
        status = d.status;
    }
    assert_eq!(deleted, ["SK0"]);
    let keys = status.api_key.unwrap();
    assert_eq!(keys.current_key_sid.as_deref(), Some("SK3"));
    assert_eq!(keys.retained_key_sids, ["SK2", "SK1"]);
    // Lowering retainPrevious deletes the surplus at the next rotation, oldest first.
    let d = key_rotation(0, status_with(keys), "SK4", Some("SK3"));
    assert_eq!(
        d.action,
        Action::Retire {
            delete_keys: vec!["SK3".into(), "SK2".into(), "SK1".into()]
        }
    );
}

fn status_with(keys: crate::api::ApiKeyStatus) -> TokenRotationStatus {
    TokenRotationStatus {
        api_key: Some(keys),
        ..Default::default()
    }
}

#[test]
fn first_api_key_rotation_has_nothing_to_delete() {
    let d = key_rotation(1, TokenRotationStatus::default(), "SK1", None);
    assert_eq!(
        d.action,
        Action::Retire {
            delete_keys: vec![]
        }
    );
    assert_eq!(
        d.status.api_key.unwrap().current_key_sid.as_deref(),
        Some("SK1")
    );
}

#[test]
fn standard_key_credentials_say_what_to_fix() {
    let mut st = at_phase(Phase::Staging);
    st.phase = Some(Phase::Staging);
    let mut o = obs(st);
    o.plan = Plan::new(&key_spec(0), None);
    let f = Failure {
        class: FailureClass::StandardKeyCredentials,
        message: "SKabc is a Standard or restricted API key".into(),
    };
    let d = on_failure(
        &o,
        &Action::Stage {
            clear_existing: false,
        },
        &f,
    );
    let c = get(&d.status.conditions, DEGRADED).unwrap();
    assert_eq!(c.reason, "StandardKeyCredentials");
    assert!(c.message.contains("Main API key"), "{}", c.message);
    assert_eq!(d.events[0].reason, "StandardKeyCredentials");
    // Nothing was created: the rotation gives the account up rather than holding it.
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert!(d.status.rotation.is_none());
}

fn reverted() -> RevertedKey {
    RevertedKey {
        namespace: "shop".into(),
        secret: "creds".into(),
        key: "TWILIO_AUTH_TOKEN".into(),
        manager: Some("argocd-controller".into()),
    }
}

/// A reverted target before promotion is written again once, with a new restart stamp; the
/// second time the rotation holds naming the Secret and the writer, and a new rotate-now value
/// asks for one more try.
#[test]
fn reverted_target_is_written_again_once_then_holds() {
    for phase in [Phase::RollingOut, Phase::Verifying, Phase::Promoting] {
        let s = at_phase(phase);
        let mut o = obs(s.clone());
        o.reverted = vec![reverted()];
        let d = decide(&o);
        assert_eq!(d.action, Action::Distribute, "{phase}");
        assert_eq!(d.status.phase, Some(Phase::RollingOut));
        let r = d.status.rotation.clone().unwrap();
        assert_eq!(r.redistributions, 1);
        assert_eq!(r.rollout_stamp(), format!("{}-2", id(&s)), "a new stamp");
        assert_eq!(d.events[0].reason, "TargetSecretReverted");
        assert!(d.events[0].note.contains("argocd-controller"));

        // Reverted again: hold, promote nothing.
        let mut o2 = obs(d.status);
        o2.reverted = vec![reverted()];
        let held = decide(&o2);
        assert_eq!(held.action, Action::None);
        assert_eq!(held.status.phase, Some(Phase::RollingOut));
        let c = degraded_by(&held.status, "TargetSecretReverted");
        assert!(c
            .message
            .contains("Secret shop/creds key TWILIO_AUTH_TOKEN"));
        assert!(c.message.contains("\"argocd-controller\""));
        assert!(c.message.contains("ignoreDifferences"));
        assert_eq!(
            get(&held.status.conditions, ROTATING).unwrap().reason,
            "Held"
        );
        assert!(held.events.iter().any(|e| e.reason == "RotationHeld"));
        // Held: no repeated Events.
        let mut o3 = obs(held.status.clone());
        o3.reverted = vec![reverted()];
        assert!(decide(&o3).events.is_empty());
        // The user fixed the writer and asks again.
        o3.rotate_now = Some("retry".into());
        let again = decide(&o3);
        assert_eq!(again.action, Action::Distribute);
        assert_eq!(again.status.rotation.unwrap().redistributions, 2);
        assert_eq!(again.status.last_rotate_now.as_deref(), Some("retry"));
    }
    // Nothing reverted: the rollout goes on as usual.
    let o = obs(at_phase(Phase::Verifying));
    assert_eq!(decide(&o).action, Action::Verify);
}

/// Two resources rotating one account's Auth Token: the later one never starts and says who
/// owns the account and how to merge; rotate-now is consumed, not queued.
#[test]
fn later_auth_token_resource_on_the_same_account_never_rotates() {
    let mut o = obs(TokenRotationStatus::default());
    o.rotate_now = Some("1".into());
    o.account_conflict = Some(AccountConflict {
        other: holder("billing", "twilio"),
        owner: false,
    });
    let d = decide(&o);
    // The claim is only as good as the credentials: they are checked (a read).
    assert_eq!(d.action, Action::CheckCredentials);
    assert!(d.status.rotation.is_none());
    assert_eq!(d.status.phase, Some(Phase::Pending));
    let c = degraded_by(&d.status, "AccountConflict");
    assert!(c.message.contains("TokenRotation billing/twilio"));
    assert!(c.message.contains("ClusterTokenRotation"));
    assert_eq!(d.status.last_rotate_now, None, "the request stays pending");
    // The conflict resolved (the other resource merged away or refused): it rotates.
    let mut o2 = obs(d.status);
    o2.rotate_now = Some("1".into());
    let d2 = decide(&o2);
    assert_eq!(d2.status.phase, Some(Phase::Staging));
    assert!(!is_true(&d2.status.conditions, DEGRADED));
    // API keys of one account may coexist.
    let mut k = obs(TokenRotationStatus::default());
    k.plan = Plan::new(&key_spec(0), None);
    k.rotate_now = Some("1".into());
    k.account_conflict = Some(AccountConflict {
        other: holder("billing", "twilio"),
        owner: false,
    });
    assert_eq!(decide(&k).status.phase, Some(Phase::Staging));
    // The owner does not start either, and one in flight holds before promoting.
    let mut own = obs(TokenRotationStatus::default());
    own.rotate_now = Some("1".into());
    own.account_conflict = Some(AccountConflict {
        other: holder("billing", "twilio"),
        owner: true,
    });
    let d = decide(&own);
    assert!(d.status.rotation.is_none());
    assert!(get(&d.status.conditions, DEGRADED)
        .unwrap()
        .message
        .contains("also rotates"));
    let mut fl = obs(at_phase(Phase::Verifying));
    fl.account_conflict = own.account_conflict.clone();
    let d = decide(&fl);
    assert_eq!(d.action, Action::None, "nothing is verified or promoted");
    assert_eq!(d.status.phase, Some(Phase::Verifying));
    assert_eq!(
        get(&d.status.conditions, DEGRADED).unwrap().reason,
        "AccountConflict"
    );
    assert!(d.events.iter().any(|e| e.reason == "RotationHeld"));
}

/// A resource in an account conflict whose credentials Twilio refuses is marked so (it then
/// stops counting as a claimant) and keeps reporting the refusal, not the conflict.
#[test]
fn refused_credentials_in_a_conflict_are_recorded() {
    let mut o = obs(TokenRotationStatus::default());
    o.account_conflict = Some(AccountConflict {
        other: holder("shop", "twilio"),
        owner: true,
    });
    let d = decide(&o);
    assert_eq!(d.action, Action::CheckCredentials);
    let f = Failure {
        class: FailureClass::AuthenticationFailed,
        message: "Twilio refused the credential".into(),
    };
    let failed = on_failure(&o, &d.action, &f);
    assert!(failed.status.credentials_refused);
    assert_eq!(
        get(&failed.status.conditions, DEGRADED).unwrap().reason,
        "AuthenticationFailed"
    );
    // Next round: still checked, still reported as refused credentials, no new Event.
    let mut o2 = o.clone();
    o2.status = failed.status.clone();
    let d2 = decide(&o2);
    assert_eq!(d2.action, Action::CheckCredentials);
    let again = on_failure(&o2, &d2.action, &f);
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(
        get(&again.status.conditions, DEGRADED).unwrap().reason,
        "AuthenticationFailed"
    );
    // Fixed credentials: the check passes and the flag clears.
    assert!(!d2.status.credentials_refused);
}

/// Missing permissions are found before the create call: the rotation is given up at once
/// (nothing exists to clean up), naming them and what to grant; a 403 after the call (the
/// store of the new token refused) may have left a secondary, so the rotation holds instead.
#[test]
fn missing_permissions_before_the_create_give_up_and_a_later_403_holds() {
    let s = started();
    let stage = Action::Stage {
        clear_existing: false,
    };
    let missing = Failure {
        class: FailureClass::MissingPermissions,
        message: "the operator may not create secrets in \"shop\" (nothing was created)".into(),
    };
    let d = on_failure(&obs(s.clone()), &stage, &missing);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert!(d.status.rotation.is_none());
    let c = degraded_by(&d.status, "MissingPermissions");
    assert!(c.message.contains("may not create secrets in \"shop\""));
    assert!(c.message.contains("grant the operator's ServiceAccount"));
    assert!(c.message.contains("nothing was created"));

    let refused = Failure {
        class: FailureClass::Forbidden,
        message: "storing the new credential in the staging Secret: forbidden".into(),
    };
    let d = on_failure(&obs(s.clone()), &stage, &refused);
    assert_eq!(d.status.phase, s.phase, "held, not given up");
    assert!(d.status.rotation.as_ref().unwrap().create_called);
    degraded_by(&d.status, "Forbidden");
}

/// The first create records the attempt before Twilio is called and leaves an existing
/// secondary alone; later attempts (or the user's go-ahead naming the rotation) clear it.
#[test]
fn staging_records_the_attempt_first_and_never_clears_a_foreign_secondary() {
    let s = started();
    let d = decide(&obs(s.clone()));
    assert_eq!(
        d.action,
        Action::Stage {
            clear_existing: false
        }
    );
    let before = d.before.clone().expect("status written before the call");
    assert_eq!(before.phase, Some(Phase::Staging));
    assert!(before.rotation.as_ref().unwrap().create_called);
    assert!(d.status.rotation.as_ref().unwrap().create_called);

    // Twilio says a secondary exists: it is someone else's.
    let mut o = obs(before.clone());
    o.status.rotation.as_mut().unwrap().create_called = false;
    let f = Failure {
        class: FailureClass::ForeignSecondary,
        message: "the account already has a secondary".into(),
    };
    let held = on_failure(&o, &d.action, &f);
    assert_eq!(held.status.phase, Some(Phase::Staging));
    let r = held.status.rotation.clone().unwrap();
    assert!(!r.create_called, "nothing of ours exists");
    let c = get(&held.status.conditions, DEGRADED).unwrap();
    assert_eq!(c.reason, "ForeignSecondaryToken");
    assert!(c
        .message
        .contains(&format!("tokenrotator.io/delete-secondary={}", r.id)));
    // Retried as before: still not cleared.
    assert_eq!(
        decide(&obs(held.status.clone())).action,
        Action::Stage {
            clear_existing: false
        }
    );
    // The user names this rotation: the next attempt deletes it.
    let mut told = obs(held.status.clone());
    told.delete_secondary = Some(r.id.clone());
    assert_eq!(
        decide(&told).action,
        Action::Stage {
            clear_existing: true
        }
    );
    let mut stale = obs(held.status.clone());
    stale.delete_secondary = Some("some-other-rotation".into());
    assert_eq!(
        decide(&stale).action,
        Action::Stage {
            clear_existing: false
        }
    );
    // Aborted while held: nothing was created, so nothing is deleted at Twilio.
    let mut ab = obs(held.status.clone());
    ab.abort = Some("1".into());
    let d = decide(&ab);
    let mut ab2 = obs(d.status);
    ab2.abort = Some("1".into());
    assert_eq!(
        decide(&ab2).action,
        Action::DeleteSecondary { at_twilio: false }
    );

    // A transient failure may have created one: the next attempt clears it.
    let f = Failure {
        class: FailureClass::OutcomeUnknown,
        message: "timed out".into(),
    };
    let d = on_failure(
        &obs(s.clone()),
        &Action::Stage {
            clear_existing: false,
        },
        &f,
    );
    assert!(d.status.rotation.as_ref().unwrap().create_called);
    // Retried without another status write first (the record stands).
    assert!(decide(&obs(d.status.clone())).before.is_none());
    assert_eq!(
        decide(&obs(d.status)).action,
        Action::Stage {
            clear_existing: true
        }
    );
}

/// Refused credentials at Staging give the account up at once; the schedule counts from then.
#[test]
fn refused_credentials_give_the_account_up_and_wait_for_the_next_slot() {
    let mut o = obs(TokenRotationStatus::default());
    o.plan = Plan::new(&spec(), Some("@every 24h"));
    o.status.last_rotation_time = Some(crate::time::to_k8s(t0() - CD::days(3)));
    let started = decide(&o).status;
    assert_eq!(started.phase, Some(Phase::Staging));
    let mut o = obs(started);
    o.plan = Plan::new(&spec(), Some("@every 24h"));
    let f = Failure {
        class: FailureClass::AuthenticationFailed,
        message: "Twilio refused the credential".into(),
    };
    let d = on_failure(
        &o,
        &Action::Stage {
            clear_existing: false,
        },
        &f,
    );
    assert!(d.status.rotation.is_none(), "the claim is given up");
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.last_result, Some(RotationResult::Failed));
    assert!(d.events.iter().any(|e| e.reason == "RotationFailed"));
    let next = from_k8s(d.status.next_rotation_time.as_ref().unwrap());
    assert!(next >= t0() + CD::hours(24), "not again at once: {next}");
    // At rest: still Degraded with the reason, not started again.
    let mut rest = obs(d.status);
    rest.plan = Plan::new(&spec(), Some("@every 24h"));
    let d = decide(&rest);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert!(d.status.rotation.is_none());
    assert_eq!(
        get(&d.status.conditions, DEGRADED).unwrap().reason,
        "AuthenticationFailed"
    );
}

/// An aborted scheduled run is not started again at once: the next run is the next slot
/// after the abort.
#[test]
fn aborted_scheduled_run_waits_for_the_next_slot() {
    let mut s = at_phase(Phase::Aborting);
    s.last_rotation_time = Some(crate::time::to_k8s(t0() - CD::days(3)));
    s.rotation.as_mut().unwrap().abort_step = Some(AbortStep::DeleteSecondary);
    let mut o = obs(s);
    o.plan = Plan::new(&spec(), Some("@every 24h"));
    o.now = t0() + CD::minutes(2);
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Aborted));
    let next = from_k8s(d.status.next_rotation_time.as_ref().unwrap());
    assert!(next >= o.now + CD::hours(24), "{next}");
    let mut o = obs(d.status);
    o.plan = Plan::new(&spec(), Some("@every 24h"));
    o.now = t0() + CD::minutes(7);
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Aborted), "not restarted");
}

/// Deleting the resource before promotion rolls back like an abort; after it, the rotation
/// completes (without the overlap); idle, nothing starts.
#[test]
fn deletion_rolls_back_before_promotion_and_completes_after() {
    for phase in [Phase::Distributing, Phase::RollingOut, Phase::Verifying] {
        let mut o = obs(at_phase(phase));
        o.deleting = true;
        let d = decide(&o);
        assert_eq!(d.status.phase, Some(Phase::Aborting), "{phase}");
        assert_eq!(
            d.status.rotation.unwrap().abort_step,
            Some(AbortStep::RestoreSecrets)
        );
        assert!(d.events[0].note.contains("being deleted"));
    }
    let mut o = obs(at_phase(Phase::Staging));
    o.deleting = true;
    let d = decide(&o);
    assert_eq!(
        d.status.rotation.unwrap().abort_step,
        Some(AbortStep::DeleteSecondary)
    );
    let mut o = obs(at_phase(Phase::Promoting));
    o.deleting = true;
    assert_eq!(decide(&o).action, Action::Promote);
    // Retiring while deleted waits propagation only.
    let mut s = at_phase(Phase::Retiring);
    s.rotation.as_mut().unwrap().promoted_time = Some(crate::time::to_k8s(t0()));
    let mut o = obs(s);
    o.now = t0() + CD::seconds(61);
    assert_eq!(decide(&o).action, Action::None, "overlap still running");
    o.deleting = true;
    assert!(matches!(decide(&o).action, Action::Retire { .. }));
    // Suspend does not stop a deletion's rollback.
    let mut susp = spec();
    susp.suspend = true;
    let mut o = obs(at_phase(Phase::RollingOut));
    o.plan = Plan::new(&susp, None);
    o.deleting = true;
    assert_eq!(decide(&o).status.phase, Some(Phase::Aborting));
    // Idle and deleted: nothing starts, nothing to requeue.
    let mut o = obs(TokenRotationStatus::default());
    o.rotate_now = Some("1".into());
    o.deleting = true;
    let d = decide(&o);
    assert!(d.status.rotation.is_none());
    assert_eq!(d.requeue_after, None);
}

/// A rollback has nothing to wait for on a workload that no longer exists.
#[test]
fn rollback_counts_deleted_workloads_as_done() {
    let mut s = at_phase(Phase::Aborting);
    s.rotation.as_mut().unwrap().abort_step = Some(AbortStep::RollBack);
    let mut o = obs(s);
    o.rollout = Some(RolloutView {
        workloads: vec![progress(false, Some("NotFound"))],
        unstamped: vec![],
    });
    let d = decide(&o);
    assert_eq!(
        d.status.rotation.unwrap().abort_step,
        Some(AbortStep::DeleteSecondary)
    );
}

/// Edits during a rotation are reported as applying to the next one.
#[test]
fn spec_edits_in_flight_are_reported() {
    let mut o = obs(at_phase(Phase::RollingOut));
    o.spec_changed = true;
    o.rollout = Some(RolloutView {
        workloads: vec![progress(false, None)],
        unstamped: vec![],
    });
    let d = decide(&o);
    let c = get(&d.status.conditions, ROTATING).unwrap();
    assert!(
        c.message.contains("applies to the next rotation"),
        "{}",
        c.message
    );
    // The started rotation records the spec it runs with.
    assert_eq!(started().rotation.unwrap().spec, Some(spec()));
}

/// Each resource writes as its own field manager and stamps its own annotation: distinct for
/// every resource, within the API server's limits, and stable.
#[test]
fn field_managers_and_stamp_keys_are_per_resource() {
    let cluster = |n: &str| Holder::ClusterTokenRotation { name: n.into() };
    let all = [
        holder("shop", "twilio"),
        holder("billing", "twilio"),
        holder("cluster", "shared"),
        cluster("shared"),
        holder("shop", &"a".repeat(253)),
        holder("shop", &format!("{}b", "a".repeat(252))),
    ];
    let managers: std::collections::BTreeSet<String> =
        all.iter().map(Holder::field_manager).collect();
    assert_eq!(managers.len(), all.len(), "{managers:?}");
    assert!(managers
        .iter()
        .all(|m| m.len() <= 128 && m.starts_with("token-rotator:")));
    assert_eq!(
        holder("shop", "twilio").field_manager(),
        "token-rotator:shop/twilio"
    );
    assert_eq!(
        cluster("shared").field_manager(),
        "token-rotator:cluster:shared"
    );
    let keys: std::collections::BTreeSet<String> = all.iter().map(Holder::stamp_key).collect();
    assert_eq!(keys.len(), all.len());
    for k in &keys {
        let (prefix, name) = k.split_once('/').unwrap();
        assert_eq!(prefix, "tokenrotator.io");
        assert!(name.len() <= 63, "{k}");
    }
    assert_eq!(
        holder("shop", "twilio").stamp_key(),
        holder("shop", "twilio").stamp_key()
    );
}

/// A ClusterTokenRotation's staging Secret can never be named like a TokenRotation's in its
/// credentials namespace (`cluster-x` used to collide with cluster rotation `x`).
#[test]
fn staging_names_of_the_two_kinds_never_collide() {
    use super::machine::staging_secret_name;
    for name in ["x", "cluster-x", "x-cluster", "x.cluster", "a-b"] {
        let ctr = staging_secret_name(name, "-clusterrotation-staging");
        assert!(!ctr.ends_with("-rotation-staging"), "{ctr}");
        for tr_name in [
            "x",
            "cluster-x",
            "x-cluster",
            "x.cluster",
            "a-b",
            "x-cluster",
        ] {
            assert_ne!(ctr, staging_secret_name(tr_name, "-rotation-staging"));
        }
    }
}

/// A staging Secret deleted after distribution is rebuilt before anything needs it; for an API
/// key the previous key's secret is gone with it, so an abort is refused from then on.
#[test]
fn staging_lost_after_distribution_is_rebuilt() {
    for phase in [Phase::RollingOut, Phase::Verifying, Phase::Promoting] {
        let mut o = obs(at_phase(phase));
        o.staged_for = None;
        let d = decide(&o);
        assert_eq!(d.action, Action::Recover, "{phase}");
        assert_eq!(d.status.phase, Some(phase), "nothing advances");
        assert_eq!(d.events[0].reason, "StagingSecretLost");
        assert!(!d.status.rotation.unwrap().previous_lost);
    }
    let mut o = obs(at_phase(Phase::RollingOut));
    o.plan = Plan::new(&key_spec(0), None);
    o.staged_for = None;
    let d = decide(&o);
    assert_eq!(d.action, Action::Recover);
    assert!(d.status.rotation.as_ref().unwrap().previous_lost);
    let mut o = obs(d.status);
    o.plan = Plan::new(&key_spec(0), None);
    o.abort = Some("1".into());
    o.staged_for = Some(id(&o.status));
    let d = decide(&o);
    assert_ne!(d.status.phase, Some(Phase::Aborting));
    assert!(d.events.iter().any(|e| e.reason == "AbortRefused"));
}

/// Every rotation that ends is recorded in status.history, newest first and bounded: a
/// success with its key, an abort with the hold that led to it, a failure with its reason.
#[test]
fn ended_rotations_are_kept_in_a_bounded_history() {
    // Success.
    let mut s = at_phase(Phase::Retiring);
    s.rotation.as_mut().unwrap().promoted_time = Some(crate::time::to_k8s(t0()));
    let mut o = obs(s.clone());
    o.now = t0() + CD::minutes(10);
    let d = decide(&o);
    let h = &d.status.history;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].id, id(&s));
    assert_eq!(h[0].result, RotationResult::Succeeded);
    assert_eq!(h[0].trigger, Trigger::Manual);
    assert_eq!(from_k8s(&h[0].end_time), t0() + CD::minutes(10));
    // Abort after a hold: the hold is the reason.
    let mut a = at_phase(Phase::Aborting);
    {
        let r = a.rotation.as_mut().unwrap();
        r.abort_step = Some(AbortStep::DeleteSecondary);
        r.held_reason = Some("RolloutTimeout".into());
        r.staged = false;
    }
    a.history = d.status.history.clone();
    let d = decide(&obs(a));
    assert_eq!(d.status.history.len(), 2);
    assert_eq!(d.status.history[0].result, RotationResult::Aborted);
    assert_eq!(
        d.status.history[0].reason.as_deref(),
        Some("RolloutTimeout")
    );
    // Refused credentials: a failure with its reason; never more than the limit.
    let mut f = started();
    f.history = (0..10).map(|_| d.status.history[1].clone()).collect();
    let failed = on_failure(
        &obs(f),
        &Action::Stage {
            clear_existing: false,
        },
        &Failure {
            class: FailureClass::AuthenticationFailed,
            message: "refused".into(),
        },
    );
    assert_eq!(failed.status.history.len(), crate::api::HISTORY_LIMIT);
    assert_eq!(failed.status.history[0].result, RotationResult::Failed);
    assert_eq!(
        failed.status.history[0].reason.as_deref(),
        Some("AuthenticationFailed")
    );
}

/// Scheduled runs start only inside a rotation window with room for the mandatory waits; a
/// slot missed outside one moves to the next opening; rotate-now runs at once regardless.
#[test]
fn scheduled_runs_wait_for_a_rotation_window() {
    let mut s = spec();
    s.windows = vec![crate::api::RotationWindow {
        start: "0 2 * * *".into(),
        duration: "4h".into(),
    }];
    let plan = Plan::new(&s, Some("@every 24h")).unwrap();
    let st = TokenRotationStatus {
        last_rotation_time: Some(crate::time::to_k8s(t0() - CD::days(3))),
        ..Default::default()
    };
    // t0 is 10:00: due, but outside the 02:00-06:00 window.
    let mut o = obs(st.clone());
    o.plan = Ok(plan.clone());
    let d = decide(&o);
    assert_eq!(d.status.phase, Some(Phase::Ready), "not started");
    let next = from_k8s(d.status.next_rotation_time.as_ref().unwrap());
    assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap());
    // In the window: it starts.
    let mut o = obs(d.status.clone());
    o.plan = Ok(plan.clone());
    o.now = Utc.with_ymd_and_hms(2026, 11, 24, 2, 30, 0).unwrap();
    assert_eq!(decide(&o).status.phase, Some(Phase::Staging));
    // Too late in the window for the waits (60s + 5m here): the next night.
    o.now = Utc.with_ymd_and_hms(2026, 11, 24, 5, 57, 0).unwrap();
    let late = decide(&o);
    assert_eq!(late.status.phase, Some(Phase::Ready));
    assert_eq!(
        from_k8s(late.status.next_rotation_time.as_ref().unwrap()),
        Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap()
    );
    // rotate-now is not bound to windows.
    let mut o = obs(st);
    o.plan = Ok(plan);
    o.rotate_now = Some("now".into());
    assert_eq!(decide(&o).status.phase, Some(Phase::Staging));
    // A window shorter than the waits is refused with the reason.
    let mut short = spec();
    short.windows = vec![crate::api::RotationWindow {
        start: "0 2 * * *".into(),
        duration: "2m".into(),
    }];
    let err = Plan::new(&short, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("shorter than the rotation's mandatory waits"),
        "{err}"
    );
    let mut bad = spec();
    bad.windows = vec![crate::api::RotationWindow {
        start: "at two".into(),
        duration: "4h".into(),
    }];
    assert!(Plan::new(&bad, None)
        .unwrap_err()
        .to_string()
        .contains("spec.windows[0].start"));
}

/// A copy of the old credential outside the rotation holds it in Verifying, naming
/// namespace/name/key; once it is gone, verification goes on.
#[test]
fn uncovered_copies_hold_before_verification() {
    let mut o = obs(at_phase(Phase::Verifying));
    o.copies = (0..7)
        .map(|i| crate::rotation::TokenCopy {
            namespace: "shop".into(),
            secret: format!("copy-{i}"),
            key: "token".into(),
        })
        .collect();
    let d = decide(&o);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::Verifying));
    let c = degraded_by(&d.status, "UncoveredTokenCopies");
    assert!(
        c.message.starts_with("7 Secret keys") && c.message.contains("shop/copy-0 key token"),
        "{}",
        c.message
    );
    assert!(c.message.contains("and 2 more") && !c.message.contains("copy-5"));
    o.status = d.status;
    o.copies.clear();
    let d = decide(&o);
    assert_eq!(d.action, Action::Verify);
    assert_eq!(d.status.phase, Some(Phase::Promoting));
    assert!(!is_true(&d.status.conditions, DEGRADED));
}

/// A ClusterTokenRotation over 300 namespaces: status lists at most 50 workloads (the ones not
/// done first) with whole counts, and every condition message, the status message and every
/// Event note stay under 1 KiB, waiting, timed out, and waiting on pods.
#[test]
fn status_and_messages_stay_bounded_over_300_namespaces() {
    let s = at_phase(Phase::RollingOut);
    let start = from_k8s(&s.rotation.as_ref().unwrap().phase_start_time);
    let mut o = obs(s);
    let workloads: Vec<WorkloadProgress> = (0..300)
        .map(|i| {
            let mut p = progress(i % 30 != 0, None);
            p.namespace = Some(format!("team-{i:03}"));
            p
        })
        .collect();
    o.rollout = Some(RolloutView {
        workloads,
        unstamped: vec![],
    });
    let check = |d: &Decision| {
        let r = d.status.rotation.as_ref().unwrap();
        assert!(r.workloads.len() <= 50);
        assert_eq!((r.workloads_total, r.workloads_done), (300, 290));
        assert!(r.workloads[..10].iter().all(|w| !w.done), "not done first");
        assert!(r.waiting_on.len() <= crate::rotation::consumers::MAX_GROUPS);
        assert!(d.status.message.as_deref().unwrap_or("").len() < 1024);
        for c in &d.status.conditions {
            assert!(
                c.message.len() < 1024,
                "{}: {} bytes",
                c.type_,
                c.message.len()
            );
        }
        for e in &d.events {
            assert!(e.note.len() < 1024, "{}: {} bytes", e.reason, e.note.len());
        }
        let json = serde_json::to_string(&d.status).unwrap();
        assert!(json.len() < 32 * 1024, "status is {} bytes", json.len());
    };
    let d = decide(&o);
    assert!(d.status.message.as_ref().unwrap().contains("290/300"));
    check(&d);
    // Past rolloutTimeout: held, naming five and counting the rest.
    o.now = start + CD::days(1);
    let d = decide(&o);
    let held = degraded_by(&d.status, "RolloutTimeout");
    assert!(held.message.contains("and 5 more"), "{}", held.message);
    check(&d);
    // Every workload through, 300 bare pods on the old token: held, bounded.
    o.now = start + CD::seconds(5);
    for w in &mut o.rollout.as_mut().unwrap().workloads {
        w.done = true;
    }
    o.status.rotation.as_mut().unwrap().distributed_time = Some(to_k8s(start));
    o.pods = Some(PodView {
        pods: (0..300)
            .map(|i| {
                let mut p = bare(&format!("debug-{i}"), start - CD::minutes(1));
                p.namespace = format!("team-{i:03}");
                p
            })
            .collect(),
        finished: 0,
        dependents: 300,
    });
    let d = decide(&o);
    let held = degraded_by(&d.status, "UnmanagedConsumers");
    assert!(
        held.message.contains("and 295 more owners"),
        "{}",
        held.message
    );
    let r = d.status.rotation.as_ref().unwrap();
    assert_eq!(r.waiting_on.len(), crate::rotation::consumers::MAX_GROUPS);
    assert!(d.status.message.as_deref().unwrap_or("").len() < 1024);
    for c in &d.status.conditions {
        assert!(
            c.message.len() < 1024,
            "{}: {} bytes",
            c.type_,
            c.message.len()
        );
    }
}
