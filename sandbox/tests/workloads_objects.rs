//! Simulated pods and ReplicaSets as API objects, as kubectl 1.35 and kube-rs see them: `get pods
//! -o wide`, `get rs`, owner references, `wait --for=condition=Ready`, `rollout history` and
//! `rollout undo`, `delete pod` (replaced, with a fresh credential snapshot), graceful termination
//! (a deleted pod stays Terminating for its scaled grace period and keeps what it read), and a
//! kube-rs reflector of Pods by label selector.

mod workloads_common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use sandbox::workloads::{SimulatorOptions, WorkloadKind};
use serde_json::{json, Value};
use workloads_common::*;

async fn api_pods(e: &Env, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(e.client.clone(), NS)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

/// Polls (15 s at most) until `pred` holds for the API's pods matching `selector`.
async fn wait_pods(e: &Env, selector: &str, what: &str, pred: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
    let deadline = Instant::now() + WAIT;
    loop {
        let pods = api_pods(e, selector).await;
        if pred(&pods) {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:#?}",
            pods.iter()
                .map(|p| (
                    p.metadata.name.clone(),
                    p.status.as_ref().and_then(|s| s.phase.clone())
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_and_replica_sets_are_api_objects_kubectl_can_work_with() {
    let e = env().await;
    let k = Kubectl::new(&e);
    secret(&e.client, "twilio", "old-token").await;
    let d: Deployment = create(
        &e.client,
        deployment("web", 2, "twilio", json!({"type": "RollingUpdate"})),
    )
    .await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=web",
        "--timeout=30s",
    ])
    .await;
    let pods = wait_pods(&e, "app=web", "two ready pods", |p| {
        p.len() == 2 && p.iter().all(ready)
    })
    .await;
    // Owned by the Deployment's ReplicaSet, which the Deployment owns.
    let rs: Vec<ReplicaSet> = Api::<ReplicaSet>::namespaced(e.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(rs.len(), 1);
    let rs0 = &rs[0];
    let hash = rs0.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs0.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let rs_owner = &rs0.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (rs_owner.kind.as_str(), rs_owner.uid.as_str()),
        ("Deployment", d.metadata.uid.as_deref().unwrap())
    );
    assert_eq!(rs0.status.as_ref().unwrap().ready_replicas, Some(2));
    for p in &pods {
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ReplicaSet");
        assert_eq!(Some(&owner.uid), rs0.metadata.uid.as_ref());
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
        let spec = p.spec.as_ref().unwrap();
        assert!(spec.node_name.as_deref().unwrap().starts_with("sim-node-"));
        assert_eq!(spec.containers[0].image.as_deref(), Some("example/app:1"));
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(st.pod_ip.as_deref().unwrap().starts_with("10.244."));
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready && cs.state.as_ref().unwrap().running.is_some());
    }
    // The scheduler's and kubelet's Events about a pod.
    let pod0 = name(&pods[0]);
    let deadline = Instant::now() + WAIT;
    loop {
        let events = k
            .ok(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={pod0}"),
                "-o",
                "jsonpath={.items[*].reason}",
            ])
            .await;
        if events.contains("Scheduled") && events.contains("Started") {
            break;
        }
        assert!(Instant::now() < deadline, "events: {events}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A pod whose env reads a Secret that does not exist waits as the kubelet reports it (with a
    // missing volume source it would stay ContainerCreating instead).
    let mut broken = deployment("broken", 1, "absent", json!({"type": "RollingUpdate"}));
    let spec = broken["spec"]["template"]["spec"].as_object_mut().unwrap();
    spec.remove("volumes");
    spec["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("volumeMounts");
    let _: Deployment = create(&e.client, broken).await;
    let broken = wait_pods(&e, "app=broken", "a waiting pod", |p| {
        p.len() == 1
            && p[0]
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| {
                    c[0].state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CreateContainerConfigError")
                })
    })
    .await;
    assert_eq!(
        broken[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert!(!ready(&broken[0]));
    k.ok(&["delete", "deployment", "broken"]).await;
    let wide = k.ok(&["get", "pods", "-o", "wide"]).await;
    assert!(
        wide.contains("Running") && wide.contains("sim-node-") && wide.contains("10.244."),
        "{wide}"
    );
    let rs_table = k.ok(&["get", "rs"]).await;
    assert!(rs_table.contains(&format!("web-{hash}")), "{rs_table}");

    // A new template: a second ReplicaSet with revision 2; the first is scaled to 0 and kept.
    set_token(&e.client, "twilio", "new-token").await;
    k.ok(&["rollout", "restart", "deployment/web"]).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    let history = k.ok(&["rollout", "history", "deployment/web"]).await;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let pods = wait_pods(&e, "app=web", "old pods gone", |p| {
        p.len() == 2
            && p.iter()
                .all(|p| p.metadata.labels.as_ref().unwrap()["pod-template-hash"] != hash)
    })
    .await;
    assert!(pods.iter().all(ready));

    // rollout undo brings the first template back, as revision 3.
    k.ok(&["rollout", "undo", "deployment/web"]).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    wait_pods(&e, "app=web", "first template back", |p| {
        p.len() == 2
            && p.iter().all(|p| {
                p.metadata.labels.as_ref().unwrap()["pod-template-hash"] == hash && ready(p)
            })
    })
    .await;
    let rs = Api::<ReplicaSet>::namespaced(e.client.clone(), NS)
        .get(&format!("web-{hash}"))
        .await
        .unwrap();
    assert_eq!(
        rs.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "3"
    );

    // kubectl delete pod: replaced, and the new pod reads the Secret as it is now.
    set_token(&e.client, "twilio", "newest-token").await;
    let victim = name(&api_pods(&e, "app=web").await[0]);
    k.ok(&["delete", "pod", &victim, "--wait=true"]).await;
    let pods = e
        .sim
        .wait_for_pods(WorkloadKind::Deployment, NS, "web", WAIT, |p| {
            p.len() == 2 && p.iter().all(|p| p.ready) && !p.iter().any(|p| p.name == victim)
        })
        .await
        .unwrap();
    let fresh: Vec<_> = pods
        .iter()
        .filter(|p| p.env["TWILIO_AUTH_TOKEN"] == "newest-token")
        .collect();
    assert_eq!(
        fresh.len(),
        1,
        "only the replacement took a new snapshot: {pods:#?}"
    );
    wait_pods(&e, "app=web", "API agrees", |p| {
        p.len() == 2 && !p.iter().any(|p| name(p) == victim)
    })
    .await;

    // A kube-rs reflector of Pods by label selector sees the same pods.
    let (reader, writer) = reflector::store();
    let api: Api<Pod> = Api::namespaced(e.client.clone(), NS);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().labels("app=web")),
    )
    .applied_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await.unwrap();
    let mut seen: Vec<String> = reader.state().iter().map(|p| name(p)).collect();
    let mut want: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
    task.abort();

    // Deleting the Deployment takes its ReplicaSets and pods with it (garbage collection).
    k.ok(&["delete", "deployment", "web", "--wait=true"]).await;
    wait_pods(&e, "app=web", "pods collected", |p| p.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_drains_for_its_scaled_grace_period_with_what_it_read() {
    let e = env_with(SimulatorOptions {
        termination_grace_scale: 0.1,
        ..fast_options()
    })
    .await;
    secret(&e.client, "twilio", "old-token").await;
    let mut sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "worker"},
        "spec": {"replicas": 1, "serviceName": "worker", "selector": {"matchLabels": {"app": "worker"}},
                 "template": template("worker", "twilio")}
    });
    // 20 s of grace, 2 s here.
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(20);
    let _: StatefulSet = create(&e.client, sts).await;
    wait_pods(&e, "app=worker", "ready", |p| {
        p.len() == 1 && p.iter().all(ready)
    })
    .await;
    set_token(&e.client, "twilio", "new-token").await;
    let api: Api<Pod> = Api::namespaced(e.client.clone(), NS);
    let started = Instant::now();
    api.delete("worker-0", &Default::default()).await.unwrap();
    // Terminating in the API and in the simulator, still holding the old token.
    let p = api.get("worker-0").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(20));
    let draining = e
        .sim
        .wait_for_pods(WorkloadKind::StatefulSet, NS, "worker", WAIT, |p| {
            p.iter().any(|p| p.terminating_since.is_some())
        })
        .await
        .unwrap();
    let old = &draining[0];
    assert!(!old.ready);
    assert_eq!(
        old.env["TWILIO_AUTH_TOKEN"], "old-token",
        "a draining pod keeps what it read"
    );
    // Gone after about 2 s; then the StatefulSet recreates worker-0 with the new token.
    let pods = e
        .sim
        .wait_for_pods(WorkloadKind::StatefulSet, NS, "worker", WAIT, |p| {
            p.len() == 1 && p[0].ready && p[0].terminating_since.is_none()
        })
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1900), "drained for {took:?}");
    assert_eq!(pods[0].env["TWILIO_AUTH_TOKEN"], "new-token");
    let p: Value = serde_json::to_value(api.get("worker-0").await.unwrap()).unwrap();
    assert!(p["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_their_pods_to_completion_and_bare_pods_run_until_deleted() {
    let e = env().await;
    let k = Kubectl::new(&e);
    secret(&e.client, "twilio", "old-token").await;
    // A Job of two completions, one at a time, each pod working 300 ms once ready.
    let job: k8s_openapi::api::batch::v1::Job = create(
        &e.client,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "report", "annotations": {"sandbox.tokenrotator.io/run-for": "300ms"}},
            "spec": {"completions": 2, "parallelism": 1,
                     "template": {"metadata": {"labels": {"app": "report"}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": template("report", "twilio")["spec"]["containers"]}}}
        }),
    )
    .await;
    // While one runs, it holds the token like any pod.
    let running = e
        .sim
        .wait_for_pods(WorkloadKind::Job, NS, "report", WAIT, |p| {
            p.iter().any(|p| p.ready)
        })
        .await
        .unwrap();
    assert!(running.iter().any(|p| p.holds("old-token")));
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/report",
        "--timeout=30s",
    ])
    .await;
    let pods = api_pods(&e, "batch.kubernetes.io/job-name=report").await;
    assert_eq!(pods.len(), 2, "completed pods stay");
    for p in &pods {
        assert_eq!(
            p.status.as_ref().unwrap().phase.as_deref(),
            Some("Succeeded")
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), Some(&owner.uid)),
            ("Job", job.metadata.uid.as_ref())
        );
        let cs = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            0
        );
    }
    let j: Value = serde_json::to_value(
        Api::<k8s_openapi::api::batch::v1::Job>::namespaced(e.client.clone(), NS)
            .get("report")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(j["status"]["succeeded"], 2);
    assert!(j["status"]["completionTime"].is_string());
    assert!(j["status"]["active"].is_null());
    assert!(
        e.sim
            .pods(WorkloadKind::Job, NS, "report")
            .iter()
            .all(|p| !p.ready),
        "finished pods make no calls"
    );

    // A bare pod (applied by hand, its owner a kind nobody serves): bound to a node, run, and
    // when deleted, gone for good.
    let pod = k.dir.join("pod.yaml");
    let mut spec = template("lonely", "twilio");
    spec["spec"]["terminationGracePeriodSeconds"] = json!(0);
    std::fs::write(
        &pod,
        serde_json::to_string(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "lonely", "namespace": NS, "labels": {"app": "lonely"},
                         "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Gadget",
                                              "name": "g", "uid": "0000-missing"}]},
            "spec": spec["spec"],
        }))
        .unwrap(),
    )
    .unwrap();
    k.ok(&["apply", "-f", pod.to_str().unwrap()]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/lonely",
        "--timeout=30s",
    ])
    .await;
    let p = Api::<Pod>::namespaced(e.client.clone(), NS)
        .get("lonely")
        .await
        .unwrap();
    assert!(p.spec.unwrap().node_name.unwrap().starts_with("sim-node-"));
    let sim = e.sim.pods(WorkloadKind::Pod, NS, "lonely");
    assert_eq!(sim.len(), 1);
    assert!(sim[0].ready && sim[0].holds("old-token"));
    k.ok(&["delete", "pod", "lonely", "--wait=true"]).await;
    e.sim
        .wait_for_pods(WorkloadKind::Pod, NS, "lonely", WAIT, |p| p.is_empty())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        api_pods(&e, "app=lonely").await.is_empty(),
        "nothing recreates a bare pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_makes_jobs_whose_pods_read_the_secret_as_it_is_then() {
    let e = env().await;
    secret(&e.client, "twilio", "old-token").await;
    let _: k8s_openapi::api::batch::v1::CronJob = create(
        &e.client,
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "annotations": {"sandbox.tokenrotator.io/every": "1s"}},
            "spec": {"schedule": "0 3 * * *", "successfulJobsHistoryLimit": 2, "concurrencyPolicy": "Forbid",
                     "jobTemplate": {
                        "metadata": {"annotations": {"sandbox.tokenrotator.io/run-for": "200ms"}},
                        "spec": {"template": {"metadata": {"labels": {"app": "nightly"}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": template("nightly", "twilio")["spec"]["containers"]}}}}}
        }),
    )
    .await;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(e.client.clone(), NS);
    let deadline = Instant::now() + WAIT;
    let first = loop {
        let list = jobs.list(&ListParams::default()).await.unwrap().items;
        if let Some(j) = list.first() {
            break j.clone();
        }
        assert!(Instant::now() < deadline, "no Job");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "CronJob");
    assert!(first.metadata.name.unwrap().starts_with("nightly-"));
    // The next Jobs' pods read the new token by themselves.
    set_token(&e.client, "twilio", "new-token").await;
    // Both at one look: a Job's pod runs 200 ms, so the API's list may be empty at the
    // moment the simulator holds one on the new token.
    let pods = wait_pods(&e, "app=nightly", "a pod on the new token", |pods| {
        !pods.is_empty()
            && e.sim
                .all_pods()
                .iter()
                .any(|p| p.workload.kind == WorkloadKind::Job && p.holds("new-token"))
    })
    .await;
    assert!(!pods.is_empty());
    // History: at most 2 finished Jobs stay (a third may be running).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let list = jobs.list(&ListParams::default()).await.unwrap().items;
    let done = list
        .iter()
        .filter(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1))
        .count();
    assert!((1..=2).contains(&done) && list.len() <= 3, "{}", list.len());
    let cj: Value = serde_json::to_value(
        Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(e.client.clone(), NS)
            .get("nightly")
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
}

async fn rollout_status(e: &Env) -> Value {
    let ar = sandbox::workloads::rollout::api_resource();
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(e.client.clone(), NS, &ar);
    api.get("web")
        .await
        .map(|o| o.data.get("status").cloned().unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

async fn wait_rollout(e: &Env, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let st = rollout_status(e).await;
        if pred(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{what}: {st:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_rollouts_restart_by_restart_at_and_pause_on_a_canary_step() {
    let e = env().await;
    let k = Kubectl::new(&e);
    secret(&e.client, "twilio", "old-token").await;
    let ro = k.dir.join("ro.json");
    // Without the CRD, as on a cluster without Argo: kubectl says so.
    std::fs::write(
        &ro,
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "early"}}).to_string(),
    )
    .unwrap();
    let err = k
        .fails(&["apply", "--validate=false", "-f", ro.to_str().unwrap()])
        .await;
    assert!(err.contains("no matches for kind \"Rollout\""), "{err}");
    let crd = k.dir.join("crd.yaml");
    std::fs::write(&crd, sandbox::workloads::rollout::ROLLOUT_CRD).unwrap();
    k.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    let body = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": template("web", "twilio"),
                 "strategy": {"canary": {"maxSurge": 1, "maxUnavailable": 0,
                                         "steps": [{"setWeight": 50}, {"pause": {}}]}}}
    });
    std::fs::write(&ro, body.to_string()).unwrap();
    k.ok(&["apply", "-f", ro.to_str().unwrap()]).await;
    let st = wait_rollout(&e, "healthy", |s| {
        s["phase"] == "Healthy" && s["availableReplicas"] == 2
    })
    .await;
    let hash = st["currentPodHash"].as_str().unwrap().to_string();
    assert_eq!(st["stableRS"], hash.as_str());
    let pods = wait_pods(&e, "app=web", "two pods", |p| {
        p.len() == 2 && p.iter().all(ready)
    })
    .await;
    assert_eq!(
        pods[0].metadata.labels.as_ref().unwrap()["rollouts-pod-template-hash"],
        hash
    );
    let rs = Api::<ReplicaSet>::namespaced(e.client.clone(), NS)
        .get(&format!("web-{hash}"))
        .await
        .unwrap();
    assert_eq!(rs.metadata.owner_references.unwrap()[0].kind, "Rollout");

    // restartAt: every pod started before it is replaced, and the new ones read the new token.
    set_token(&e.client, "twilio", "new-token").await;
    // restartAt has second precision: a moment surely after the Secret change is everywhere.
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    k.ok(&[
        "patch",
        "rollout",
        "web",
        "--type=merge",
        "-p",
        &json!({"spec": {"restartAt": at}}).to_string(),
    ])
    .await;
    wait_rollout(&e, "restarted", |s| {
        s["restartedAt"] == at.as_str() && s["phase"] == "Healthy"
    })
    .await;
    let pods = e.sim.pods(WorkloadKind::Rollout, NS, "web");
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter()
            .all(|p| p.env["TWILIO_AUTH_TOKEN"] == "new-token"),
        "{pods:#?}"
    );

    // A new template waits at the canary's pause step until promoted.
    k.ok(&[
        "patch",
        "rollout",
        "web",
        "--type=merge",
        "-p",
        &json!({"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}}).to_string(),
    ])
    .await;
    let st = wait_rollout(&e, "paused", |s| s["phase"] == "Paused").await;
    assert_eq!(st["pauseConditions"][0]["reason"], "CanaryPauseStep");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pods = e.sim.pods(WorkloadKind::Rollout, NS, "web");
    assert!(
        pods.iter().all(|p| p.revision == hash),
        "nothing rolls while paused"
    );
    // kubectl argo rollouts promote clears the pause conditions.
    k.ok(&[
        "patch",
        "rollout",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"pauseConditions":null}}"#,
    ])
    .await;
    let st = wait_rollout(&e, "promoted", |s| {
        s["phase"] == "Healthy" && s["updatedReplicas"] == 2 && s["currentPodHash"] != hash.as_str()
    })
    .await;
    assert_eq!(st["stableRS"], st["currentPodHash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_made_directly_keeps_its_replicas() {
    let e = env().await;
    let k = Kubectl::new(&e);
    secret(&e.client, "twilio", "old-token").await;
    let rs: ReplicaSet = create(
        &e.client,
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "plain"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "plain"}},
                     "template": template("plain", "twilio")}
        }),
    )
    .await;
    let pods = wait_pods(&e, "app=plain", "two ready", |p| {
        p.len() == 2 && p.iter().all(ready)
    })
    .await;
    for p in &pods {
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), Some(&o.uid)),
            ("ReplicaSet", rs.metadata.uid.as_ref())
        );
    }
    k.ok(&["scale", "rs/plain", "--replicas=1"]).await;
    wait_pods(&e, "app=plain", "scaled to one", |p| p.len() == 1).await;
    let victim = name(&api_pods(&e, "app=plain").await[0]);
    k.ok(&["delete", "pod", &victim, "--wait=true"]).await;
    let after = wait_pods(&e, "app=plain", "replaced", |p| {
        p.len() == 1 && name(&p[0]) != victim && ready(&p[0])
    })
    .await;
    assert_eq!(after.len(), 1);
    let st = Api::<ReplicaSet>::namespaced(e.client.clone(), NS)
        .get("plain")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (1, Some(1)));
}

/// With writes made ten at a time (as the scale bench runs the simulator), twenty Deployments
/// restarted together end as they do one write after another: each with its old ReplicaSet
/// scaled to 0, its new one holding both ready pods, and its status counting them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_ten_at_a_time_leave_every_rollout_as_one_at_a_time_does() {
    let e = env_with(SimulatorOptions {
        concurrent_writes: 10,
        ..fast_options()
    })
    .await;
    secret(&e.client, "twilio", "old-token").await;
    let names: Vec<String> = (0..20).map(|i| format!("web-{i}")).collect();
    for n in &names {
        let _: Deployment = create(
            &e.client,
            deployment(n, 2, "twilio", json!({"type": "RollingUpdate"})),
        )
        .await;
    }
    for n in &names {
        wait_for::<Deployment>(&e.client, n, WAIT, rollout_complete).await;
    }
    for n in &names {
        let _: Deployment = merge_patch(&e.client, n, bump_template("restart-1")).await;
    }
    for n in &names {
        wait_for::<Deployment>(&e.client, n, WAIT, rollout_complete).await;
        let selector = format!("app={n}");
        let pods = wait_pods(&e, &selector, "the old pods gone", |p| {
            p.len() == 2 && p.iter().all(ready)
        })
        .await;
        let rs: Vec<ReplicaSet> = Api::<ReplicaSet>::namespaced(e.client.clone(), NS)
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items;
        assert_eq!(rs.len(), 2, "{n}: the old and the new ReplicaSet");
        let replicas = |r: &ReplicaSet| r.spec.as_ref().and_then(|s| s.replicas);
        let new = rs
            .iter()
            .find(|r| replicas(r) == Some(2))
            .unwrap_or_else(|| panic!("{n}: no ReplicaSet holds 2"));
        assert!(
            rs.iter().any(|r| replicas(r) == Some(0)),
            "{n}: the old ReplicaSet is scaled to 0"
        );
        assert_eq!(new.status.as_ref().unwrap().ready_replicas, Some(2));
        for p in &pods {
            let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(Some(&owner.uid), new.metadata.uid.as_ref(), "{n}");
        }
    }
}

/// A Deployment scaled to zero settles: later passes skip it and leave its ReplicaSet as
/// written (kept, not rebuilt; not taken for gone), while a second Deployment keeps passes
/// coming. A restart, a scale-up and a deletion of the settled one still reach the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_deployment_keeps_its_replica_set_and_still_follows_changes() {
    let e = env().await;
    secret(&e.client, "twilio", "old-token").await;
    let rs_api = Api::<ReplicaSet>::namespaced(e.client.clone(), NS);
    let replica_sets = |app: &'static str| {
        let rs_api = rs_api.clone();
        async move {
            rs_api
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .unwrap()
                .items
        }
    };
    let _: Deployment = create(
        &e.client,
        deployment("idle", 0, "twilio", json!({"type": "RollingUpdate"})),
    )
    .await;
    wait_for::<Deployment>(&e.client, "idle", WAIT, rollout_complete).await;
    // Its ReplicaSet's status and spec writes follow its create: read it once they are made
    // (the same resourceVersion over ten passes).
    let mut first = replica_sets("idle").await;
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = replica_sets("idle").await;
        let rvs = |l: &[ReplicaSet]| {
            l.iter()
                .map(|r| r.metadata.resource_version.clone())
                .collect::<Vec<_>>()
        };
        if rvs(&again) == rvs(&first) {
            break;
        }
        assert!(Instant::now() < deadline, "the ReplicaSet's writes end");
        first = again;
    }
    assert_eq!(first.len(), 1, "one ReplicaSet");
    // Passes go on (every 20 ms, and on each change of a busy neighbour) while it is settled.
    let _: Deployment = create(
        &e.client,
        deployment("busy", 1, "twilio", json!({"type": "RollingUpdate"})),
    )
    .await;
    for i in 0..5 {
        let _: Deployment = merge_patch(&e.client, "busy", bump_template(&format!("b-{i}"))).await;
        wait_for::<Deployment>(&e.client, "busy", WAIT, rollout_complete).await;
    }
    let later = replica_sets("idle").await;
    assert_eq!(
        later.iter().map(|r| &r.metadata.uid).collect::<Vec<_>>(),
        first.iter().map(|r| &r.metadata.uid).collect::<Vec<_>>(),
        "the settled Deployment's ReplicaSet is the same object"
    );
    assert_eq!(
        later[0].metadata.resource_version, first[0].metadata.resource_version,
        "and was not written again"
    );
    // A restart: a second ReplicaSet, the first kept at 0.
    let _: Deployment = merge_patch(&e.client, "idle", bump_template("restart-1")).await;
    wait_for::<Deployment>(&e.client, "idle", WAIT, |d| {
        rollout_complete(d)
            && d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                == Some("2")
    })
    .await;
    assert_eq!(
        replica_sets("idle").await.len(),
        2,
        "old and new ReplicaSet"
    );
    // A scale-up runs a pod again.
    let _: Deployment = merge_patch(&e.client, "idle", json!({"spec": {"replicas": 1}})).await;
    wait_pods(&e, "app=idle", "one ready pod", |p| {
        p.len() == 1 && p.iter().all(ready)
    })
    .await;
    wait_for::<Deployment>(&e.client, "idle", WAIT, rollout_complete).await;
    // Deleted: the simulator removes what it wrote for it.
    Api::<Deployment>::namespaced(e.client.clone(), NS)
        .delete("idle", &Default::default())
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !replica_sets("idle").await.is_empty() {
        assert!(Instant::now() < deadline, "its ReplicaSets are deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
