//! The workload simulator driving StatefulSets and DaemonSets through the sandbox API server.

mod workloads_common;

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use sandbox::workloads::{SimulatorOptions, WorkloadKind};
use serde_json::{json, Value};
use workloads_common::*;

fn statefulset(name: &str, replicas: i32, update_strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": update_strategy,
            "template": template(name, "twilio")
        }
    })
}

fn daemonset(name: &str, rolling_update: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update},
            "template": template(name, "twilio")
        }
    })
}

#[tokio::test]
async fn statefulset_rolls_in_reverse_ordinal_order() {
    let e = env().await;
    let kind = WorkloadKind::StatefulSet;
    secret(&e.client, "twilio", "old-token").await;
    let _: StatefulSet = create(
        &e.client,
        statefulset("db", 3, json!({"type": "RollingUpdate"})),
    )
    .await;
    let first = wait_for(&e.client, "db", WAIT, sts_rolled_out).await;
    let st = first.status.clone().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.ready_replicas,
            st.current_replicas,
            st.available_replicas
        ),
        (3, Some(3), Some(3), Some(3))
    );
    let names: Vec<String> = e
        .sim
        .pods(kind, NS, "db")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    let old_revision = st.current_revision.clone().unwrap();
    assert!(old_revision.starts_with("db-"), "{old_revision}");

    set_token(&e.client, "twilio", "new-token").await;
    let _: StatefulSet = merge_patch(&e.client, "db", bump_template("1")).await;
    // Record the order in which ordinals come back on the new revision.
    let mut order = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while order.len() < 3 {
        for p in e.sim.pods(kind, NS, "db") {
            let o = p.ordinal.unwrap();
            if p.revision != old_revision && !order.contains(&o) {
                assert_eq!(p.env["TWILIO_AUTH_TOKEN"], "new-token");
                order.push(o);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout stalled at {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(order, [2, 1, 0]);
    let done = wait_for(&e.client, "db", WAIT, |s: &StatefulSet| {
        sts_rolled_out(s)
            && s.status.as_ref().unwrap().current_revision.as_deref() != Some(old_revision.as_str())
    })
    .await;
    let st = done.status.unwrap();
    assert_eq!(st.observed_generation, done.metadata.generation);
    assert_eq!(
        (st.current_replicas, st.updated_replicas),
        (Some(3), Some(3))
    );
    // One pod at a time: never fewer than two ready during the update.
    let started_ready = e
        .sim
        .timeline(kind, NS, "db")
        .into_iter()
        .skip_while(|s| s.ready < 3);
    assert!(
        started_ready.clone().all(|s| s.ready >= 2),
        "{:#?}",
        e.sim.timeline(kind, NS, "db")
    );
    assert!(e.sim.pods_holding("old-token").is_empty());
}

#[tokio::test]
async fn statefulset_partition_limits_the_update() {
    let e = env().await;
    let kind = WorkloadKind::StatefulSet;
    secret(&e.client, "twilio", "old-token").await;
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    let _: StatefulSet = create(&e.client, statefulset("db", 3, strategy)).await;
    let first = wait_for(&e.client, "db", WAIT, sts_rolled_out).await;
    let old_revision = first.status.unwrap().current_revision.unwrap();

    let _: StatefulSet = merge_patch(&e.client, "db", bump_template("1")).await;
    let s = wait_for(&e.client, "db", WAIT, |s: &StatefulSet| {
        let st = s.status.as_ref().unwrap();
        st.updated_replicas == Some(1) && st.ready_replicas == Some(3)
    })
    .await;
    let st = s.status.unwrap();
    assert_eq!(
        st.current_revision.as_deref(),
        Some(old_revision.as_str()),
        "a partitioned update never completes"
    );
    assert_ne!(st.update_revision, st.current_revision);
    assert_eq!(st.current_replicas, Some(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revs: Vec<(u32, bool)> = e
        .sim
        .pods(kind, NS, "db")
        .iter()
        .map(|p| (p.ordinal.unwrap(), p.revision == old_revision))
        .collect();
    assert_eq!(revs, [(0, true), (1, true), (2, false)]);
}

#[tokio::test]
async fn on_delete_statefulset_updates_only_deleted_pods() {
    let e = env().await;
    let kind = WorkloadKind::StatefulSet;
    secret(&e.client, "twilio", "old-token").await;
    let _: StatefulSet = create(&e.client, statefulset("db", 2, json!({"type": "OnDelete"}))).await;
    wait_for(&e.client, "db", WAIT, |s: &StatefulSet| {
        s.status.as_ref().and_then(|s| s.ready_replicas) == Some(2)
    })
    .await;
    set_token(&e.client, "twilio", "new-token").await;
    let _: StatefulSet = merge_patch(&e.client, "db", bump_template("1")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(e
        .sim
        .pods(kind, NS, "db")
        .iter()
        .all(|p| p.env["TWILIO_AUTH_TOKEN"] == "old-token"));

    assert!(e.sim.delete_pod(kind, NS, "db", "db-1"));
    let pods = e
        .sim
        .wait_for_pods(kind, NS, "db", WAIT, |p| {
            p.len() == 2
                && p.iter().all(|p| p.ready)
                && p[1].env["TWILIO_AUTH_TOKEN"] == "new-token"
        })
        .await
        .unwrap();
    assert_eq!(pods[0].env["TWILIO_AUTH_TOKEN"], "old-token");
    let s = wait_for(&e.client, "db", WAIT, |s: &StatefulSet| {
        s.status.as_ref().and_then(|s| s.updated_replicas) == Some(1)
    })
    .await;
    assert_eq!(s.status.unwrap().current_replicas, Some(1));
}

#[tokio::test]
async fn daemonset_rolls_node_by_node_with_max_unavailable() {
    let e = env_with(SimulatorOptions {
        nodes: 3,
        ..fast_options()
    })
    .await;
    let kind = WorkloadKind::DaemonSet;
    secret(&e.client, "twilio", "old-token").await;
    let _: DaemonSet = create(&e.client, daemonset("agent", json!({"maxUnavailable": 1}))).await;
    let d = wait_for(&e.client, "agent", WAIT, ds_rolled_out).await;
    let st = d.status.unwrap();
    assert_eq!(
        (
            st.desired_number_scheduled,
            st.current_number_scheduled,
            st.number_ready
        ),
        (3, 3, 3)
    );
    assert_eq!(st.number_unavailable, None);
    let nodes: Vec<String> = e
        .sim
        .pods(kind, NS, "agent")
        .into_iter()
        .map(|p| p.node)
        .collect();
    assert_eq!(nodes.len(), 3);
    assert!(
        e.sim.nodes().iter().all(|n| nodes.contains(n)),
        "one pod per node: {nodes:?}"
    );

    set_token(&e.client, "twilio", "new-token").await;
    let started = Utc::now();
    let bumped: DaemonSet = merge_patch(&e.client, "agent", bump_template("1")).await;
    wait_for(&e.client, "agent", WAIT, |d: &DaemonSet| {
        d.status.as_ref().and_then(|s| s.observed_generation) == bumped.metadata.generation
            && ds_rolled_out(d)
    })
    .await;
    assert!(e
        .sim
        .pods(kind, NS, "agent")
        .iter()
        .all(|p| p.env["TWILIO_AUTH_TOKEN"] == "new-token"));
    let timeline: Vec<_> = e
        .sim
        .timeline(kind, NS, "agent")
        .into_iter()
        .filter(|s| s.at >= started)
        .collect();
    assert!(
        timeline.iter().all(|s| s.available >= 2 && s.total <= 3),
        "{timeline:#?}"
    );
    assert!(
        timeline.iter().any(|s| s.available == 2),
        "a node was actually updated: {timeline:#?}"
    );
}

#[tokio::test]
async fn daemonset_surge_keeps_every_node_available() {
    let e = env_with(SimulatorOptions {
        nodes: 2,
        ..fast_options()
    })
    .await;
    let kind = WorkloadKind::DaemonSet;
    secret(&e.client, "twilio", "old-token").await;
    let _: DaemonSet = create(
        &e.client,
        daemonset("agent", json!({"maxSurge": 1, "maxUnavailable": 0})),
    )
    .await;
    wait_for(&e.client, "agent", WAIT, ds_rolled_out).await;
    let started = Utc::now();
    let bumped: DaemonSet = merge_patch(&e.client, "agent", bump_template("1")).await;
    wait_for(&e.client, "agent", WAIT, |d: &DaemonSet| {
        d.status.as_ref().and_then(|s| s.observed_generation) == bumped.metadata.generation
            && ds_rolled_out(d)
    })
    .await;
    let timeline: Vec<_> = e
        .sim
        .timeline(kind, NS, "agent")
        .into_iter()
        .filter(|s| s.at >= started)
        .collect();
    assert!(
        timeline.iter().all(|s| s.available >= 2 && s.total <= 3),
        "{timeline:#?}"
    );
    assert!(
        timeline.iter().any(|s| s.total == 3),
        "a surge pod ran: {timeline:#?}"
    );
    assert_eq!(e.sim.pods(kind, NS, "agent").len(), 2);
}
