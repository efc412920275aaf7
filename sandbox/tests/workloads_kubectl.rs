//! `kubectl rollout restart` / `kubectl rollout status` against the sandbox API server with the
//! workload simulator running: the status it writes must satisfy kubectl's rollout logic.

mod workloads_common;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use sandbox::workloads::{SimulatorOptions, WorkloadKind};
use serde_json::json;
use workloads_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_and_status_complete() {
    let e = env_with(SimulatorOptions {
        nodes: 2,
        ..fast_options()
    })
    .await;
    let k = Kubectl::new(&e);
    secret(&e.client, "twilio", "old-token").await;
    let _: Deployment = create(
        &e.client,
        deployment("web", 3, "twilio", json!({"type": "RollingUpdate"})),
    )
    .await;
    let _: StatefulSet = create(&e.client, json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template("db", "twilio")}
    }))
    .await;
    let _: DaemonSet = create(&e.client, json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent", "twilio")}
    }))
    .await;
    for target in ["deployment/web", "statefulset/db", "daemonset/agent"] {
        let (ok, out) = k.run(&["rollout", "status", target, "--timeout=30s"]).await;
        assert!(ok, "{target}: {out}");
    }

    set_token(&e.client, "twilio", "new-token").await;
    for target in ["deployment/web", "statefulset/db", "daemonset/agent"] {
        let (ok, out) = k.run(&["rollout", "restart", target]).await;
        assert!(ok, "{target}: {out}");
        let (ok, out) = k.run(&["rollout", "status", target, "--timeout=30s"]).await;
        assert!(ok, "{target}: {out}");
        // kubectl words it per kind; with the defaulted partition 0 a StatefulSet reports
        // "partitioned roll out complete", as on a real cluster.
        assert!(
            out.contains("successfully rolled out") || out.contains("roll out complete"),
            "{target}: {out}"
        );
    }
    for (kind, name, n) in [
        (WorkloadKind::Deployment, "web", 3),
        (WorkloadKind::StatefulSet, "db", 2),
        (WorkloadKind::DaemonSet, "agent", 2),
    ] {
        let pods = e.sim.pods(kind, NS, name);
        assert_eq!(pods.len(), n, "{name}");
        assert!(
            pods.iter()
                .all(|p| p.ready && p.env["TWILIO_AUTH_TOKEN"] == "new-token"),
            "{name}: {pods:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_reports_an_exceeded_progress_deadline() {
    let e = env().await;
    let k = Kubectl::new(&e);
    secret(&e.client, "twilio", "old-token").await;
    let mut obj = deployment("web", 2, "twilio", json!({"type": "RollingUpdate"}));
    obj["spec"]["progressDeadlineSeconds"] = json!(2);
    let _: Deployment = create(&e.client, obj).await;
    let (ok, out) = k
        .run(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(ok, "{out}");

    e.sim
        .fail_new_pods(WorkloadKind::Deployment, NS, "web", true);
    let (ok, out) = k.run(&["rollout", "restart", "deployment/web"]).await;
    assert!(ok, "{out}");
    let (ok, out) = k
        .run(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(!ok, "rollout status must fail: {out}");
    assert!(out.contains("exceeded its progress deadline"), "{out}");
}
