//! The workload simulator driving Deployments through the sandbox API server.

mod workloads_common;

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use sandbox::workloads::{PodPhase, SimulatorOptions, WorkloadKind::Deployment as D};
use serde_json::json;
use workloads_common::*;

fn rolling(max_surge: i32, max_unavailable: i32) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}})
}

#[tokio::test]
async fn pods_read_the_secret_and_status_reports_a_complete_rollout() {
    let e = env().await;
    secret(&e.client, "twilio", "token-one").await;
    let _: Deployment = create(
        &e.client,
        deployment("web", 3, "twilio", json!({"type": "RollingUpdate"})),
    )
    .await;

    let d = wait_for(&e.client, "web", WAIT, rollout_complete).await;
    let s = d.status.clone().unwrap();
    assert_eq!(s.observed_generation, d.metadata.generation);
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(
        s.unavailable_replicas, None,
        "zero counts are omitted as by the real controller"
    );
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(progressing.status, "True");
    assert!(
        progressing
            .message
            .as_deref()
            .unwrap()
            .starts_with("ReplicaSet \"web-"),
        "{progressing:?}"
    );

    let pods = e.sim.pods(D, NS, "web");
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(p.phase, PodPhase::Running);
        assert!(p.ready);
        assert_eq!(p.env["TWILIO_AUTH_TOKEN"], "token-one");
        assert_eq!(p.env["TW_authToken"], "token-one");
        assert_eq!(p.env["TW_accountSid"], "AC00000000000000000000000000000000");
        assert_eq!(p.mounted["/etc/twilio"]["authToken"], "token-one");
        assert!(
            p.name.starts_with(&format!("web-{}-", p.revision)),
            "{}",
            p.name
        );
    }
    assert_eq!(e.sim.pods_holding("token-one").len(), 3);
    assert_eq!(e.sim.pods_not_holding("token-one").len(), 0);
}

#[tokio::test]
async fn rotation_rolls_out_without_dropping_below_min_available() {
    let e = env().await;
    secret(&e.client, "twilio", "old-token").await;
    let _: Deployment = create(&e.client, deployment("web", 4, "twilio", rolling(1, 1))).await;
    let before = wait_for(&e.client, "web", WAIT, rollout_complete).await;
    let old_pods = e.sim.pods(D, NS, "web");

    // Rotating the Secret alone changes nothing the running containers' env sees.
    set_token(&e.client, "twilio", "new-token").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for p in e.sim.pods(D, NS, "web") {
        assert_eq!(
            p.env["TWILIO_AUTH_TOKEN"], "old-token",
            "env is a snapshot taken at start"
        );
    }

    let started = Utc::now();
    let bumped: Deployment = merge_patch(&e.client, "web", bump_template("1")).await;
    assert!(bumped.metadata.generation > before.metadata.generation);
    let after = wait_for(&e.client, "web", WAIT, |d: &Deployment| {
        d.metadata.generation == bumped.metadata.generation && rollout_complete(d)
    })
    .await;
    let s = after.status.clone().unwrap();
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas),
        (Some(4), Some(4), Some(4))
    );

    let pods = e.sim.pods(D, NS, "web");
    assert_eq!(pods.len(), 4);
    assert!(pods
        .iter()
        .all(|p| p.env["TWILIO_AUTH_TOKEN"] == "new-token"));
    assert!(
        e.sim.pods_holding("old-token").is_empty(),
        "{:#?}",
        e.sim.pods_holding("old-token")
    );
    assert!(
        pods.iter()
            .all(|p| !old_pods.iter().any(|o| o.name == p.name)),
        "every pod was replaced"
    );
    assert!(pods.iter().all(|p| p.revision != old_pods[0].revision));

    // Exact pod-count history: never more than replicas + maxSurge pods, never fewer than
    // replicas - maxUnavailable available, and the rollout did happen in between.
    let timeline: Vec<_> = e
        .sim
        .timeline(D, NS, "web")
        .into_iter()
        .filter(|s| s.at >= started)
        .collect();
    assert!(timeline.len() >= 4, "{timeline:#?}");
    for s in &timeline {
        assert!(s.total <= 5, "surge exceeded: {s:?}");
        assert!(s.available >= 3, "availability dropped: {s:?}");
    }
    assert!(
        timeline.iter().any(|s| s.total == 5),
        "the rollout surged: {timeline:#?}"
    );
    assert_eq!(
        timeline.last().map(|s| (s.total, s.updated, s.available)),
        Some((4, 4, 4))
    );
}

#[tokio::test]
async fn pods_that_never_become_ready_exceed_the_progress_deadline() {
    let e = env().await;
    secret(&e.client, "twilio", "old-token").await;
    let mut obj = deployment("web", 2, "twilio", rolling(1, 0));
    obj["spec"]["progressDeadlineSeconds"] = json!(2);
    let _: Deployment = create(&e.client, obj).await;
    wait_for(&e.client, "web", WAIT, rollout_complete).await;

    e.sim.fail_new_pods(D, NS, "web", true);
    set_token(&e.client, "twilio", "new-token").await;
    let _: Deployment = merge_patch(&e.client, "web", bump_template("1")).await;
    let d = wait_for(&e.client, "web", WAIT, |d: &Deployment| {
        reason(d, "Progressing").map(|r| r.1) == Some("ProgressDeadlineExceeded".into())
    })
    .await;
    assert_eq!(reason(&d, "Progressing").unwrap().0, "False");
    assert!(!rollout_complete(&d));
    // maxUnavailable 0: the old pods keep serving with the old token.
    assert_eq!(
        reason(&d, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    let s = d.status.unwrap();
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas),
        (Some(3), Some(1), Some(2))
    );
    // Env tells old from new pods (mounted files follow the Secret in all of them).
    let (new_pods, old_pods): (Vec<_>, Vec<_>) = e
        .sim
        .pods(D, NS, "web")
        .into_iter()
        .partition(|p| p.env["TWILIO_AUTH_TOKEN"] == "new-token");
    assert_eq!(old_pods.len(), 2);
    assert!(old_pods.iter().all(|p| p.ready));
    assert_eq!(new_pods.len(), 1);
    assert!(!new_pods[0].ready && new_pods[0].phase == PodPhase::Running);
}

#[tokio::test]
async fn a_paused_deployment_does_not_roll_out_until_resumed() {
    let e = env().await;
    secret(&e.client, "twilio", "old-token").await;
    let _: Deployment = create(&e.client, deployment("web", 2, "twilio", rolling(1, 0))).await;
    wait_for(&e.client, "web", WAIT, rollout_complete).await;
    let old_revision = e.sim.pods(D, NS, "web")[0].revision.clone();

    let _: Deployment = merge_patch(&e.client, "web", json!({"spec": {"paused": true}})).await;
    set_token(&e.client, "twilio", "new-token").await;
    let bumped: Deployment = merge_patch(&e.client, "web", bump_template("1")).await;
    let d = wait_for(&e.client, "web", WAIT, |d: &Deployment| {
        d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
    })
    .await;
    assert_eq!(d.metadata.generation, bumped.metadata.generation);
    assert_eq!(
        reason(&d, "Progressing"),
        Some(("Unknown".into(), "DeploymentPaused".into()))
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pods = e.sim.pods(D, NS, "web");
    assert_eq!(pods.len(), 2);
    assert!(pods
        .iter()
        .all(|p| p.revision == old_revision && p.holds("old-token")));
    assert_eq!(
        get::<Deployment>(&e.client, "web")
            .await
            .status
            .unwrap()
            .updated_replicas,
        None
    );

    let _: Deployment = merge_patch(&e.client, "web", json!({"spec": {"paused": false}})).await;
    wait_for(&e.client, "web", WAIT, rollout_complete).await;
    let pods = e.sim.pods(D, NS, "web");
    assert!(
        pods.iter()
            .all(|p| p.revision != old_revision && p.holds("new-token")),
        "{pods:#?}"
    );
}

#[tokio::test]
async fn mounted_secrets_follow_the_secret_after_the_sync_delay_without_restart() {
    let e = env_with(SimulatorOptions {
        secret_sync_delay: Duration::from_millis(700),
        ..fast_options()
    })
    .await;
    secret(&e.client, "twilio", "old-token").await;
    let _: Deployment = create(&e.client, deployment("web", 2, "twilio", rolling(1, 0))).await;
    wait_for(&e.client, "web", WAIT, rollout_complete).await;
    let before = e.sim.pods(D, NS, "web");

    let changed = tokio::time::Instant::now();
    set_token(&e.client, "twilio", "new-token").await;
    let after = e
        .sim
        .wait_for_pods(D, NS, "web", WAIT, |pods| {
            pods.iter()
                .all(|p| p.mounted["/etc/twilio"]["authToken"] == "new-token")
        })
        .await
        .unwrap();
    assert!(
        changed.elapsed() >= Duration::from_millis(700),
        "files changed before the sync delay"
    );
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a.name, b.name, "no restart");
        assert_eq!(a.started_at, b.started_at);
        assert_eq!(
            a.env["TWILIO_AUTH_TOKEN"], "old-token",
            "env keeps the value read at start"
        );
        assert!(a.holds("old-token") && a.holds("new-token"));
    }
}

#[tokio::test]
async fn a_missing_secret_keeps_pods_pending_until_it_exists() {
    let e = env().await;
    let mut obj = deployment("web", 1, "later", rolling(1, 0));
    // Without the volume the env reference is what blocks the container.
    obj["spec"]["template"]["spec"]["volumes"] = json!([]);
    obj["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = json!([]);
    let _: Deployment = create(&e.client, obj).await;
    let pods = e
        .sim
        .wait_for_pods(D, NS, "web", WAIT, |pods| {
            pods.len() == 1 && pods[0].waiting_reason.is_some()
        })
        .await
        .unwrap();
    assert_eq!(pods[0].phase, PodPhase::Pending);
    assert_eq!(
        pods[0].waiting_reason.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert_eq!(
        pods[0].waiting_message.as_deref(),
        Some("secret \"later\" not found")
    );
    let d = wait_for(&e.client, "web", WAIT, |d: &Deployment| {
        d.status.as_ref().and_then(|s| s.replicas) == Some(1)
    })
    .await;
    assert_eq!(
        reason(&d, "Available"),
        Some(("False".into(), "MinimumReplicasUnavailable".into()))
    );
    assert_eq!(d.status.unwrap().unavailable_replicas, Some(1));

    secret(&e.client, "later", "late-token").await;
    wait_for(&e.client, "web", WAIT, rollout_complete).await;
    let pods = e.sim.pods(D, NS, "web");
    assert_eq!(pods[0].env["TWILIO_AUTH_TOKEN"], "late-token");
}

#[tokio::test]
async fn per_workload_readiness_delay_and_min_ready_seconds() {
    let e = env().await;
    secret(&e.client, "twilio", "tok").await;
    e.sim
        .set_readiness_delay(D, NS, "slow", Duration::from_millis(1500));
    let _: Deployment = create(&e.client, deployment("slow", 1, "twilio", rolling(1, 0))).await;
    let mut fast = deployment("fast", 1, "twilio", rolling(1, 0));
    fast["spec"]["minReadySeconds"] = json!(1);
    let _: Deployment = create(&e.client, fast).await;
    wait_for(&e.client, "slow", WAIT, rollout_complete).await;
    let d = wait_for(&e.client, "fast", WAIT, rollout_complete).await;

    let slow = &e.sim.pods(D, NS, "slow")[0];
    assert!(
        slow.ready_at.unwrap() - slow.started_at.unwrap() >= chrono::Duration::milliseconds(1500)
    );
    // The knob is per workload: the other one keeps the default delay (100ms here).
    let fast = &e.sim.pods(D, NS, "fast")[0];
    let gap = fast.ready_at.unwrap() - fast.started_at.unwrap();
    assert!(
        gap >= chrono::Duration::milliseconds(100) && gap < chrono::Duration::milliseconds(1500),
        "{gap}"
    );
    // Available only once ready for minReadySeconds.
    let timeline = e.sim.timeline(D, NS, "fast");
    let ready_at = timeline.iter().find(|s| s.ready == 1).unwrap().at;
    let available_at = timeline.iter().find(|s| s.available == 1).unwrap().at;
    assert!(
        available_at - ready_at >= chrono::Duration::seconds(1),
        "{timeline:#?}"
    );
    assert_eq!(d.status.unwrap().available_replicas, Some(1));
}

#[tokio::test]
async fn recreate_and_scaling() {
    let e = env().await;
    secret(&e.client, "twilio", "old-token").await;
    let _: Deployment = create(
        &e.client,
        deployment("web", 3, "twilio", json!({"type": "Recreate"})),
    )
    .await;
    wait_for(&e.client, "web", WAIT, rollout_complete).await;
    set_token(&e.client, "twilio", "new-token").await;
    let started = Utc::now();
    let _: Deployment = merge_patch(&e.client, "web", bump_template("1")).await;
    wait_for(&e.client, "web", WAIT, |d: &Deployment| {
        rollout_complete(d) && d.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    assert!(e
        .sim
        .pods(D, NS, "web")
        .iter()
        .all(|p| p.holds("new-token")));
    // Recreate: old and new pods never coexist, so the count drops to zero in between.
    let timeline: Vec<_> = e
        .sim
        .timeline(D, NS, "web")
        .into_iter()
        .filter(|s| s.at >= started)
        .collect();
    assert!(timeline.iter().any(|s| s.total == 0), "{timeline:#?}");
    assert!(timeline.iter().all(|s| s.total <= 3));

    let _: Deployment = merge_patch(&e.client, "web", json!({"spec": {"replicas": 1}})).await;
    let d = wait_for(&e.client, "web", WAIT, |d: &Deployment| {
        rollout_complete(d) && d.status.as_ref().and_then(|s| s.replicas) == Some(1)
    })
    .await;
    assert_eq!(e.sim.pods(D, NS, "web").len(), 1);
    assert_eq!(d.status.unwrap().updated_replicas, Some(1));
}

#[tokio::test]
async fn deleting_a_deployment_removes_its_pods() {
    let e = env().await;
    secret(&e.client, "twilio", "tok").await;
    let _: Deployment = create(&e.client, deployment("web", 2, "twilio", rolling(1, 0))).await;
    wait_for(&e.client, "web", WAIT, rollout_complete).await;
    assert_eq!(e.sim.all_pods().len(), 2);
    let api: kube::Api<Deployment> = kube::Api::namespaced(e.client.clone(), NS);
    api.delete("web", &Default::default()).await.unwrap();
    e.sim
        .wait_for_pods(D, NS, "web", WAIT, |p| p.is_empty())
        .await
        .unwrap();
    assert!(e.sim.all_pods().is_empty());
}
