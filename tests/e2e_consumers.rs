//! The Pod-level promotion barrier, end to end: consumers that are not Deployments (a bare Pod,
//! a CronJob's Jobs, an Argo Rollout, a ReplicaSet nobody owns, a pod reading mounted files
//! under `restart: Never`) call Twilio through the rotation with whatever they hold (env or
//! files), and none is refused. The negative controls switch the barrier off
//! (`SafetyOverrides::skip_pod_barrier`): the same scenarios refuse calls.

mod common;
#[path = "common/process.rs"]
mod process;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::time::Duration;
use token_rotator::api::{Phase, TokenRotation, TokenRotationStatus};
use token_rotator::controller::failpoints::Failpoints;

/// Lets the last calls happen for `ms`, stops the traffic and the controller; (served,
/// refused, the refusals in full).
async fn finish(
    traffic: sandbox::Traffic,
    ctl: tokio::task::JoinHandle<()>,
    ms: u64,
) -> (u64, u64, Vec<sandbox::Refusal>) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let refusals = traffic.refusals();
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    (served, refused, refusals)
}

/// Creates any object from JSON (its kind decides the API).
async fn apply(w: &World, ar: &ApiResource, body: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(w.client.clone(), NS, ar);
    let obj: DynamicObject = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn wait(
    w: &World,
    what: &str,
    pred: impl Fn(&TokenRotationStatus) -> bool,
) -> TokenRotationStatus {
    let api: Api<TokenRotation> = Api::namespaced(w.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let st = api.get("twilio").await.unwrap().status.unwrap_or_default();
        if pred(&st) {
            return st;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {st:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn done(st: &TokenRotationStatus) -> bool {
    st.rotations == 1 && st.phase == Some(Phase::Ready)
}

async fn set_workloads(w: &World, workloads: Value) {
    Api::<TokenRotation>::namespaced(w.client.clone(), NS)
        .patch(
            "twilio",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workloads": workloads}})),
        )
        .await
        .unwrap();
}

/// A bare Pod on the old token holds the rotation (`UnmanagedConsumers`, nothing promoted);
/// the user deletes it, and the rotation completes. No call is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_pod_holds_the_rotation_until_it_is_deleted() {
    let w = world(1).await;
    bare_pod(&w.client, NS, "debug").await;
    let st = held_by_the_pod_until_it_is_deleted(&w, "debug").await;
    let msg = degraded(&st, "UnmanagedConsumers").unwrap();
    assert!(msg.contains("Pod shop/debug (1 pod, Unmanaged)"), "{msg}");
    assert_eq!(st.phase, Some(Phase::RollingOut));
    let waiting = &st.rotation.as_ref().unwrap().waiting_on;
    assert_eq!(
        (waiting[0].kind.as_str(), waiting[0].name.as_str()),
        ("Pod", "debug")
    );
    let held = wait_events(&w, &["RotationHeld"]).await;
    assert!(held
        .iter()
        .any(|e| e.note.as_deref().unwrap_or("").contains("shop/debug")));
}

/// A bare Pod that mounts the credentials with `subPath` (a copy taken at its start, which the
/// kubelet never refreshes) holds the rotation like one reading env; deleted, it lets it go
/// on. No call is refused. (With the pod LIST decoded without the containers' volume mounts,
/// this pod was not seen as a consumer and the rotation went Ready under it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_pod_reading_the_token_by_subpath_holds_the_rotation() {
    let w = world(1).await;
    let mount = |key: &str| json!({"name": "creds", "mountPath": format!("/etc/twilio/{key}"), "subPath": key});
    let mounts = json!([mount("TWILIO_ACCOUNT_SID"), mount("TWILIO_AUTH_TOKEN")]);
    pod_mounting_the_creds(&w, "snapshot", mounts).await;
    let st = held_by_the_pod_until_it_is_deleted(&w, "snapshot").await;
    let msg = degraded(&st, "UnmanagedConsumers").unwrap();
    assert!(msg.contains("Pod shop/snapshot"), "{msg}");
}

/// With consumer traffic, a manual rotation must hold on the bare pod `pod`
/// (`UnmanagedConsumers`, the old token still working); the user then deletes the pod and the
/// rotation completes, with no call refused and the old token promoted away. Returns the held
/// status.
async fn held_by_the_pod_until_it_is_deleted(w: &World, pod: &str) -> TokenRotationStatus {
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let ctl = start_controller(w, Failpoints::default());
    create(w, &manual_rotation(w, "twilio")).await;
    let st = wait(w, "held on the bare pod", |s| {
        degraded(s, "UnmanagedConsumers").is_some()
    })
    .await;
    assert!(token_works(w, &w.old_token).await, "nothing promoted");
    // The user deletes the pod: the next check lets the rotation go on.
    Api::<Pod>::namespaced(w.client.clone(), NS)
        .delete(pod, &DeleteParams::default())
        .await
        .unwrap();
    wait(w, "completed", done).await;
    let (served, refused, refusals) = finish(traffic, ctl, 300).await;
    eprintln!("bare pod {pod}: {served} served, {refused} refused");
    assert!(served > 0);
    assert_eq!(refused, 0, "{refusals:#?}");
    assert!(
        !token_works(w, &w.old_token).await,
        "the old token was promoted away"
    );
    st
}

/// A bare Pod `name` (label `app=<name>`) whose one container has `mounts` of the volume
/// `creds`, the Secret `twilio-creds`. Waits until it is ready.
async fn pod_mounting_the_creds(w: &World, name: &str, mounts: Value) {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "shop/tool:1", "volumeMounts": mounts}],
                 "volumes": [{"name": "creds", "secret": {"secretName": "twilio-creds"}}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(w.client.clone(), NS)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
    wait_ready_pods(&w.client, NS, name, 1).await;
}

/// Negative control: without the barrier the rotation promotes under the bare pod, whose calls
/// are then refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_barrier_a_bare_pod_is_refused() {
    let w = world(1).await;
    bare_pod(&w.client, NS, "debug").await;
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety.skip_pod_barrier = true;
    let ctl = start_controller_with(&w, cfg);
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait(&w, "completed", done).await;
    let (served, refused, refusals) = finish(traffic, ctl, 300).await;
    eprintln!("no barrier, bare pod: {served} served, {refused} refused");
    assert!(refused > 0, "the bare pod kept working on a dead token");
    assert!(refusals.iter().all(|r| r.pod == "debug"), "{refusals:#?}");
}

/// Installs the Argo Rollouts CRD and a Rollout `web` (2 replicas, canary) reading the token
/// from env, and a CronJob `report` whose Jobs run 1 s every 1 s with the token from env.
async fn rollout_and_cronjob(w: &World) {
    argo_rollout(&w.client, NS, "web", 2).await;
    apply(
        w,
        &resource("batch/v1", "CronJob", "cronjobs"),
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "report", "namespace": NS,
                         "annotations": {"sandbox.tokenrotator.io/every": "1s"}},
            "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Allow",
                     "jobTemplate": {"metadata": {"annotations": {"sandbox.tokenrotator.io/run-for": "1s"}},
                                     "spec": {"template": {"metadata": {"labels": {"app": "report"}},
                                                           "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "shop/report:1", "env": creds_env()}]}}}}}
        }),
    )
    .await;
    wait_ready_pods(&w.client, NS, "report", 1).await;
}

async fn rotate_rollout_and_cronjob(
    skip_barrier: bool,
) -> (u64, u64, Vec<sandbox::Refusal>, World) {
    let w = world(1).await;
    rollout_and_cronjob(&w).await;
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety.skip_pod_barrier = skip_barrier;
    let ctl = start_controller_with(&w, cfg);
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait(&w, "completed", done).await;
    // Long enough for a Job started before the promotion to run and call.
    let (served, refused, refusals) = finish(traffic, ctl, 1500).await;
    (served, refused, refusals, w)
}

/// An Argo Rollout is restarted through `spec.restartAt` and waited on; the CronJob's Jobs that
/// started on the old token finish before promotion, and later ones read the new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_and_a_cronjob_rotate_with_zero_refused() {
    let (served, refused, refusals, w) = rotate_rollout_and_cronjob(false).await;
    eprintln!("rollout + cronjob: {served} served, {refused} refused");
    assert!(served > 0);
    assert_eq!(refused, 0, "{refusals:#?}");
    let restarted = wait_events(&w, &["WorkloadsRestarted"]).await;
    assert!(
        restarted
            .iter()
            .any(|e| e.note.as_deref().unwrap_or("").contains("Rollout shop/web")),
        "{restarted:#?}"
    );
    let rollouts = rollouts_resource();
    let ro = Api::<DynamicObject>::namespaced_with(w.client.clone(), NS, &rollouts)
        .get("web")
        .await
        .unwrap();
    assert!(
        ro.data.pointer("/spec/restartAt").is_some(),
        "restarted by restartAt"
    );
}

/// Negative control: without the barrier nothing restarts the Rollout and nothing waits for the
/// Jobs: their calls are refused after promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_barrier_rollout_pods_are_refused() {
    let (served, refused, refusals, _) = rotate_rollout_and_cronjob(true).await;
    eprintln!("no barrier, rollout + cronjob: {served} served, {refused} refused");
    assert!(refused > 0);
    assert!(
        refusals.iter().any(|r| r.pod.starts_with("web-")),
        "the Rollout's pods were refused: {refusals:#?}"
    );
}

/// `unmanagedPods: Delete`: pods of a ReplicaSet nobody owns (the operator does not restart
/// bare ReplicaSets) are deleted by UID; the ReplicaSet re-creates them on the new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_pods_delete_replaces_a_bare_replica_sets_pods() {
    let w = world(1).await;
    apply(
        &w,
        &resource("apps/v1", "ReplicaSet", "replicasets"),
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "legacy", "namespace": NS},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "legacy"}},
                     "template": {"metadata": {"labels": {"app": "legacy"}}, "spec": creds_pod_spec()}}
        }),
    )
    .await;
    wait_ready_pods(&w.client, NS, "legacy", 2).await;
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    let mut tr = manual_rotation(&w, "twilio");
    tr.spec.workloads = Some(serde_json::from_value(json!({"unmanagedPods": "Delete"})).unwrap());
    create(&w, &tr).await;
    wait(&w, "completed", done).await;
    let (served, refused, refusals) = finish(traffic, ctl, 300).await;
    eprintln!("unmanagedPods Delete: {served} served, {refused} refused");
    assert!(served > 0);
    assert_eq!(refused, 0, "{refusals:#?}");
    let events = wait_events(&w, &["UnmanagedConsumers"]).await;
    assert!(
        events
            .iter()
            .any(|e| e.note.as_deref().unwrap_or("").contains("deleting 2 pods")),
        "{events:#?}"
    );
}

/// `restart: Never` with a pod that reads the token from a mounted file: no restart, promotion
/// once the kubelet sync delay is over, no refused call. A pod that reads it from env then holds
/// a later rotation (`UnmanagedConsumers`): under `restart: Never` nothing would ever give it
/// the new token; switching that hold to `Ignore` in the live spec lets it go on, and its calls
/// are refused, as the Warning Event says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_never_proves_file_readers_and_holds_env_readers() {
    let w = world(1).await;
    // Only file readers: the Deployment from the world goes.
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(w.client.clone(), NS)
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    let mounts = json!([{"name": "creds", "mountPath": "/etc/twilio"}]);
    pod_mounting_the_creds(&w, "mounted", mounts).await;
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    let mut tr = manual_rotation(&w, "twilio");
    tr.spec.workloads = Some(
        serde_json::from_value(json!({"restart": "Never", "kubeletSyncDelay": "2s"})).unwrap(),
    );
    create(&w, &tr).await;
    wait(&w, "completed", done).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(traffic.refused(), 0, "{:#?}", traffic.refusals());
    assert!(traffic.served() > 0);

    // An env reader joins; the next rotation holds on it.
    bare_pod(&w.client, NS, "env-reader").await;
    annotate(&w, "twilio", "tokenrotator.io/rotate-now", "2").await;
    let st = wait(&w, "held on the env reader", |s| {
        degraded(s, "UnmanagedConsumers").is_some()
    })
    .await;
    let msg = degraded(&st, "UnmanagedConsumers").unwrap();
    assert!(
        msg.contains("Pod shop/env-reader") && !msg.contains("mounted"),
        "{msg}"
    );
    assert_eq!(traffic.refused(), 0, "nothing promoted while held");
    // Accepted in the live spec: promoted, and the env reader's calls are refused.
    set_workloads(
        &w,
        json!({"restart": "Never", "kubeletSyncDelay": "2s", "unmanagedPods": "Ignore"}),
    )
    .await;
    wait(&w, "completed again", |s| {
        s.rotations == 2 && s.phase == Some(Phase::Ready)
    })
    .await;
    let (served, refused, refusals) = finish(traffic, ctl, 300).await;
    eprintln!("restart Never: {served} served, {refused} refused (env reader ignored)");
    assert!(refused > 0, "the ignored env reader is refused");
    assert!(
        refusals.iter().all(|r| r.pod == "env-reader"),
        "{refusals:#?}"
    );
    let ignored = wait_events(&w, &["UnmanagedConsumers"]).await;
    assert!(ignored.iter().any(|e| e
        .note
        .as_deref()
        .unwrap_or("")
        .contains("unmanagedPods: Ignore")));
}

/// No Pod reads the target and no dependent workload exists: held (`NoConsumersFound`), not
/// taken as success; `noConsumers: Proceed` in the live spec lets it complete, and the Event
/// says no consumers were found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_consumers_found_holds_until_the_spec_proceeds() {
    let w = world(1).await;
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(w.client.clone(), NS)
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    let st = wait(&w, "held: no consumers", |s| {
        degraded(s, "NoConsumersFound").is_some()
    })
    .await;
    assert_eq!(st.phase, Some(Phase::RollingOut));
    assert!(token_works(&w, &w.old_token).await, "nothing promoted");
    set_workloads(&w, json!({"noConsumers": "Proceed"})).await;
    wait(&w, "completed", done).await;
    ctl.abort();
    let events = wait_events(&w, &["NoConsumersFound"]).await;
    assert!(events.iter().any(|e| e
        .note
        .as_deref()
        .unwrap_or("")
        .contains("no consumers found")));
}

/// Secret `legacy-copy` (not a target) holding the account SID and the old token (with a
/// trailing newline, as `echo` writes it), and bare Pod `legacy` reading both from it.
async fn legacy_copy(w: &World) {
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "legacy-copy", "namespace": NS},
        "stringData": {"TWILIO_ACCOUNT_SID": w.sid, "TWILIO_AUTH_TOKEN": format!("{}\n", w.old_token)}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(w.client.clone(), NS)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let env = json!([
        {"name": "TWILIO_ACCOUNT_SID", "valueFrom": {"secretKeyRef": {"name": "legacy-copy", "key": "TWILIO_ACCOUNT_SID"}}},
        {"name": "TWILIO_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "legacy-copy", "key": "TWILIO_AUTH_TOKEN"}}}
    ]);
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "legacy", "namespace": NS, "labels": {"app": "legacy"}},
        "spec": {"containers": [{"name": "app", "image": "shop/legacy:1", "env": env}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(w.client.clone(), NS)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
    wait_ready_pods(&w.client, NS, "legacy", 1).await;
}

/// The user retires the legacy app: its pod and its copy of the token.
async fn retire_legacy(w: &World) {
    Api::<Pod>::namespaced(w.client.clone(), NS)
        .delete("legacy", &DeleteParams::default())
        .await
        .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(w.client.clone(), NS)
        .delete("legacy-copy", &DeleteParams::default())
        .await
        .unwrap();
}

/// A copy of the old token in a Secret the rotation does not write holds it before promotion
/// (`UncoveredTokenCopies`, naming namespace/name/key, never the value); the user removes the
/// copy and its reader, and the rotation completes with no refused call. An excepted copy is
/// not reported; the copy is found on the second LIST page, past a 1 MiB Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncovered_copy_holds_until_it_is_removed() {
    let w = world(1).await;
    legacy_copy(&w).await;
    // A second copy, excepted in the spec from the start.
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "vault-sync", "namespace": NS},
        "stringData": {"token": w.old_token}
    }))
    .unwrap();
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(w.client.clone(), NS);
    secrets.create(&PostParams::default(), &s).await.unwrap();
    // More than a LIST page of other Secrets sorting before the copy (so it is on the second
    // page), one of 1 MiB, and a Helm release Secret, which the check leaves out (its value
    // is a compressed manifest, never a token: this one holds the token only to show it).
    let mut others: Vec<serde_json::Value> = (0..505)
        .map(|i| json!({"metadata": {"name": format!("aa-{i:03}"), "namespace": NS}, "stringData": {"k": "v"}}))
        .collect();
    others.push(json!({"metadata": {"name": "aa-large", "namespace": NS},
                       "stringData": {"blob": "x".repeat(1 << 20)}}));
    others.push(
        json!({"metadata": {"name": "sh.helm.release.v1.shop.v1", "namespace": NS},
                       "type": "helm.sh/release.v1", "stringData": {"release": w.old_token}}),
    );
    for o in others {
        let o: k8s_openapi::api::core::v1::Secret = serde_json::from_value(o).unwrap();
        secrets.create(&PostParams::default(), &o).await.unwrap();
    }
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    let mut tr = manual_rotation(&w, "twilio");
    tr.spec.uncovered_copies = Some(
        serde_json::from_value(json!({"except": [{"name": "vault-sync", "key": "token"}]}))
            .unwrap(),
    );
    create(&w, &tr).await;
    let st = wait(&w, "held on the copy", |s| {
        degraded(s, "UncoveredTokenCopies").is_some()
    })
    .await;
    let msg = degraded(&st, "UncoveredTokenCopies").unwrap();
    assert!(
        msg.starts_with("1 Secret keys") && msg.contains("shop/legacy-copy key TWILIO_AUTH_TOKEN"),
        "{msg}"
    );
    assert!(!msg.contains("vault-sync"), "excepted: {msg}");
    assert!(!msg.contains(&w.old_token), "no value in status");
    assert_eq!(st.phase, Some(Phase::Verifying));
    assert!(token_works(&w, &w.old_token).await, "nothing promoted");
    // The user retires the legacy app and its copy.
    retire_legacy(&w).await;
    wait(&w, "completed", done).await;
    let (served, refused, refusals) = finish(traffic, ctl, 300).await;
    eprintln!("uncovered copy: {served} served, {refused} refused");
    assert!(served > 0);
    assert_eq!(refused, 0, "{refusals:#?}");
    let events = wait_events(&w, &["UncoveredTokenCopies"]).await;
    assert!(events
        .iter()
        .all(|e| !e.note.as_deref().unwrap_or("").contains(&w.old_token)));
}

/// Negative control: with the check off (`uncoveredCopies.policy: Ignore`) the rotation
/// promotes under the copy, and its reader is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_copy_check_the_copys_reader_is_refused() {
    let w = world(1).await;
    legacy_copy(&w).await;
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    let mut tr = manual_rotation(&w, "twilio");
    tr.spec.uncovered_copies = Some(serde_json::from_value(json!({"policy": "Ignore"})).unwrap());
    create(&w, &tr).await;
    wait(&w, "completed", done).await;
    let (served, refused, refusals) = finish(traffic, ctl, 300).await;
    eprintln!("copy check off: {served} served, {refused} refused");
    assert!(
        refused > 0,
        "the copy's reader kept working on a dead token"
    );
    assert!(refusals.iter().all(|r| r.pod == "legacy"), "{refusals:#?}");
}

/// `token-rotator plan` (the built binary, read-only) on a world with every kind of trouble:
/// it names the Deployment it would restart, the Rollout it would restart by restartAt, the
/// bare Pod it would hold on, the copy outside the rotation, and the API key rotation on the
/// same account; its verdict is a hold for the unmanaged pod and the copy. It writes nothing
/// and prints no token. Then the controller meets exactly those holds, in that order, and
/// completes once the user removes each, with no refused call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_names_the_holds_the_controller_then_meets() {
    let w = world(1).await;
    bare_pod(&w.client, NS, "debug").await;
    legacy_copy(&w).await;
    argo_rollout(&w.client, NS, "web", 1).await;
    let mut keys = key_rotation_in(NS, &w.sid, "keys", json!({}));
    keys.metadata.annotations = None;
    create(&w, &keys).await;
    create(&w, &rotation(&w, "twilio", json!({}))).await;

    let dir = process::tempdir();
    let kc = dir.join("planner.kubeconfig");
    std::fs::write(&kc, w.sb.api.kubeconfig_yaml_as("planner")).unwrap();
    let out = process::cli(&kc, &["plan", "twilio", "-n", NS]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    eprintln!("{stdout}");
    for line in [
        "tokenrotation shop/twilio: rotates the Auth Token of account",
        "shop/twilio-creds: update",
        "Deployment shop/api",
        "Rollout shop/web (1 pod): restarted, then waited on",
        "Pod shop/debug (1 pod): unmanaged: the rotation holds until they are gone",
        "shop/legacy-copy key TWILIO_AUTH_TOKEN",
        "tokenrotation shop/keys (API key)",
        "Verdict: would hold, nothing promoted:",
        "UnmanagedConsumers: 1 pods",
        "UncoveredTokenCopies: 1 Secret keys",
    ] {
        assert!(stdout.contains(line), "plan lacks {line:?}:\n{stdout}");
    }
    assert!(
        !stdout.contains("AccountConflict"),
        "an API key rotation is no conflict"
    );
    assert!(!stdout.contains(&w.old_token) && !stderr.contains(&w.old_token));
    let planner: Vec<String> =
        w.sb.api
            .audit_log()
            .iter()
            .filter(|r| r.user == "planner")
            .map(|r| r.verb.clone())
            .collect();
    assert!(!planner.is_empty());
    assert!(
        planner.iter().all(|v| v == "get" || v == "list"),
        "plan is read-only: {planner:?}"
    );

    // The controller meets the same holds.
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    annotate(&w, "twilio", "tokenrotator.io/rotate-now", "1").await;
    wait(&w, "held on the bare pod", |s| {
        degraded(s, "UnmanagedConsumers").is_some()
    })
    .await;
    Api::<Pod>::namespaced(w.client.clone(), NS)
        .delete("debug", &DeleteParams::default())
        .await
        .unwrap();
    wait(&w, "held on the copy", |s| {
        degraded(s, "UncoveredTokenCopies").is_some()
    })
    .await;
    retire_legacy(&w).await;
    wait(&w, "completed", done).await;
    let (served, refused, refusals) = finish(traffic, ctl, 300).await;
    eprintln!("plan then rotate: {served} served, {refused} refused");
    assert_eq!(refused, 0, "{refusals:#?}");
}

/// An abort after distribution: a bare Pod started during the rotation holds the new token,
/// which the abort deletes. The rollback holds (`UnmanagedConsumers`, the new token kept) until
/// the user deletes the pod, then completes; no call is refused. Returns (served, refused,
/// whether it held).
async fn abort_with_a_pod_on_the_new_token(skip_barrier: bool) -> (u64, u64, bool) {
    use sandbox::workloads::WorkloadKind;
    let w = world(1).await;
    // The rollout never finishes, so the rotation waits in RollingOut for the abort.
    w.sb.workloads
        .fail_new_pods(WorkloadKind::Deployment, NS, "api", true);
    let traffic = w.sb.start_detected_traffic(Duration::from_millis(20));
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety.skip_pod_barrier = skip_barrier;
    let ctl = start_controller_with(&w, cfg);
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait(&w, "rolling out", |s| s.phase == Some(Phase::RollingOut)).await;
    // A pod started now reads the new token.
    bare_pod(&w.client, NS, "late").await;
    annotate(&w, "twilio", "tokenrotator.io/abort", "1").await;
    w.sb.workloads
        .fail_new_pods(WorkloadKind::Deployment, NS, "api", false);
    let mut held = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let st = Api::<TokenRotation>::namespaced(w.client.clone(), NS)
            .get("twilio")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if let Some(msg) = degraded(&st, "UnmanagedConsumers") {
            if !held {
                assert!(
                    msg.contains("Pod shop/late") && msg.contains("the abort deletes"),
                    "{msg}"
                );
                assert!(
                    w.sb.twilio.secondary_token(&w.sid).is_some(),
                    "the new token is kept"
                );
                held = true;
                Api::<Pod>::namespaced(w.client.clone(), NS)
                    .delete("late", &DeleteParams::default())
                    .await
                    .unwrap();
            }
        }
        if st.phase == Some(Phase::Aborted) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{st:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past propagationDelay: the new token is gone.
    let (served, refused, refusals) = finish(traffic, ctl, 1500).await;
    assert!(token_works(&w, &w.old_token).await, "back on the old token");
    if !skip_barrier {
        assert_eq!(refused, 0, "{refusals:#?}");
    } else {
        assert!(refusals.iter().all(|r| r.pod == "late"), "{refusals:#?}");
    }
    (served, refused, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_waits_for_pods_on_the_new_token() {
    let (served, refused, held) = abort_with_a_pod_on_the_new_token(false).await;
    eprintln!("abort, barrier: {served} served, {refused} refused");
    assert!(held, "the rollback held on the pod");
    assert!(served > 0);
}

/// Negative control: without the barrier the abort deletes the new token under the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_barrier_an_abort_breaks_pods_on_the_new_token() {
    let (served, refused, held) = abort_with_a_pod_on_the_new_token(true).await;
    eprintln!("abort, no barrier: {served} served, {refused} refused");
    assert!(!held);
    assert!(refused > 0, "the late pod kept working on a deleted token");
}
