//! ClusterTokenRotation end to end: one Auth Token shared by three namespaces, one of which
//! rolls out slowly, and a fourth that starts matching mid-rollout. Promotion must wait for
//! all of them.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sandbox::workloads::WorkloadKind;
use sandbox::Sandbox;
use std::time::{Duration, Instant};
use token_rotator::api::{ClusterTokenRotation, Phase, TokenRotationStatus};
use token_rotator::controller::failpoints::Failpoints;

const TEAMS: [&str; 3] = ["team-a", "team-b", "team-c"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_waits_for_the_slowest_namespace() {
    let sb = Sandbox::start().await.expect("sandbox");
    let client = sb.client();
    let (sid, token) = sb.twilio.create_account();
    let creds = serde_json::json!({"TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token});
    let env = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"];
    // Three labelled namespaces, the operator's credentials in `ops`, and a bystander with the
    // same Secret name, no label, and its own account.
    for ns in TEAMS {
        populate(&sb, ns, &token, creds.clone(), &env, 2).await;
    }
    // team-d uses the account too but is only labelled while the others roll out.
    populate(&sb, "team-d", &token, creds.clone(), &env, 1).await;
    // No consumer runs in `ops` (a Deployment scaled to zero).
    populate(&sb, "ops", &token, creds.clone(), &env, 0).await;
    let (other_sid, other_token) = sb.twilio.create_account();
    let other =
        serde_json::json!({"TWILIO_ACCOUNT_SID": other_sid, "TWILIO_AUTH_TOKEN": other_token});
    populate(&sb, "bystander", &other_token, other, &env, 1).await;
    sb.workloads.set_readiness_delay(
        WorkloadKind::Deployment,
        "team-b",
        "api",
        Duration::from_millis(2500),
    );
    let w = World {
        client: client.clone(),
        sid: sid.clone(),
        old_token: token.clone(),
        old_key: None,
        sb,
    };
    for ns in TEAMS {
        label_shared(&w, ns).await;
    }
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    let ctr = shared_rotation(&w, "ops");
    let api: Api<ClusterTokenRotation> = Api::all(client.clone());
    api.create(&PostParams::default(), &ctr).await.unwrap();

    // Watch the rollout: remember a moment where the fast namespaces are done, the slow one is
    // not, and nothing has been promoted.
    let started = Instant::now();
    let mut held_for_b: Option<(Duration, TokenRotationStatus)> = None;
    let mut promoted_at = None;
    let done_in = |st: &TokenRotationStatus, ns: &str| {
        st.rotation.as_ref().is_some_and(|r| {
            r.workloads
                .iter()
                .any(|p| p.namespace.as_deref() == Some(ns) && p.done)
        })
    };
    let st = loop {
        let st = api.get("shared").await.unwrap().status.unwrap_or_default();
        if st.phase == Some(Phase::RollingOut)
            && done_in(&st, "team-a")
            && done_in(&st, "team-c")
            && !done_in(&st, "team-b")
            && held_for_b.is_none()
        {
            assert_eq!(
                w.sb.twilio.primary_token(&sid).as_deref(),
                Some(token.as_str()),
                "nothing is promoted while team-b rolls out"
            );
            held_for_b = Some((started.elapsed(), st.clone()));
            label_shared(&w, "team-d").await;
        }
        if matches!(st.phase, Some(Phase::Promoting | Phase::Retiring)) && promoted_at.is_none() {
            promoted_at = Some(started.elapsed());
        }
        if st.rotations == 1 {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{st:#?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    let refusals = traffic.refusals();
    let (_, refused) = traffic.stop().await;
    ctl.abort();
    if refused > 0 {
        eprintln!("refused: {refusals:#?}");
    }

    let (held, snapshot) = held_for_b.expect("a moment where only team-b was still rolling out");
    let promoted = promoted_at.expect("promotion observed");
    assert!(
        promoted > held,
        "promoted after the wait on team-b ({promoted:?} vs {held:?})"
    );
    let b = snapshot
        .rotation
        .unwrap()
        .workloads
        .into_iter()
        .find(|p| p.namespace.as_deref() == Some("team-b"))
        .unwrap();
    assert!(!b.done && b.kind == token_rotator::api::WorkloadKind::Deployment);
    assert_eq!(st.namespaces, ["team-a", "team-b", "team-c", "team-d"]);
    let new = w.sb.twilio.primary_token(&sid).unwrap();
    assert_ne!(new, token);
    for ns in TEAMS.iter().chain(&["team-d"]) {
        assert_eq!(
            secret_value_in(&w, ns, "twilio-creds", "TWILIO_AUTH_TOKEN")
                .await
                .as_deref(),
            Some(new.as_str()),
            "{ns}"
        );
    }
    assert_eq!(
        secret_value_in(&w, "bystander", "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(other_token.as_str()),
        "a namespace the selector does not match is left alone"
    );
    // The operator's credential (in ops) follows the token, so it never locks itself out.
    let admin = Api::<Secret>::namespaced(client.clone(), "ops")
        .get("twilio-admin")
        .await
        .unwrap();
    assert_eq!(
        admin.data.unwrap()["authToken"].0,
        new.as_bytes(),
        "credentials Secret in credentialsNamespace"
    );
    // Includes team-d, which joined mid-rollout: it got the new token before its restart.
    assert_eq!(
        refused, 0,
        "refused consumer requests across all namespaces"
    );
}

/// Twelve namespaces `wide-00`..`wide-11` labelled to share one account (one consumer
/// replica each), the operator's credentials in `ops`.
async fn wide_world() -> World {
    let sb = Sandbox::start().await.expect("sandbox");
    let (sid, token) = sb.twilio.create_account();
    let creds = serde_json::json!({"TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token});
    let env = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"];
    let teams: Vec<String> = (0..12).map(|i| format!("wide-{i:02}")).collect();
    populate(&sb, "ops", &token, serde_json::json!({}), &[], 0).await;
    for ns in &teams {
        populate(&sb, ns, &token, creds.clone(), &env, 1).await;
    }
    let w = World {
        client: sb.client(),
        sid: sid.clone(),
        old_token: token.clone(),
        old_key: None,
        sb,
    };
    for ns in &teams {
        label_shared(&w, ns).await;
    }
    w
}

/// Starts consumer traffic and the controller, and creates the ClusterTokenRotation `shared`
/// (credentials in `ops`). Returns the traffic, where the audit log stood, and the controller.
async fn rotate_shared(w: &World) -> (sandbox::Traffic, usize, tokio::task::JoinHandle<()>) {
    let traffic = consumer_traffic(w, Duration::from_millis(20));
    let from = w.sb.api.audit_log().len();
    let ctl = start_controller(w, Failpoints::default());
    Api::<ClusterTokenRotation>::all(w.client.clone())
        .create(&PostParams::default(), &shared_rotation(w, "ops"))
        .await
        .unwrap();
    (traffic, from, ctl)
}

/// LISTs of `resource` since `from` in the audit log: (across the cluster, per namespace).
fn lists(w: &World, from: usize, resource: &str) -> (usize, usize) {
    let log = w.sb.api.audit_log();
    let of = |wide: bool| {
        log[from..]
            .iter()
            .filter(|r| r.verb == "list" && r.resource == resource)
            .filter(|r| r.namespace.is_empty() == wide)
            .count()
    };
    (of(true), of(false))
}

/// A ClusterTokenRotation over 12 namespaces reads its workloads from the operator's shared
/// workload cache: one LIST of Deployments across the cluster when the operator starts (its
/// watch), none per reconcile and none per namespace; its pods by LISTs across the cluster,
/// none per namespace; it rotates with no refused call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_cluster_rotation_reads_workloads_from_the_shared_cache() {
    let w = wide_world().await;
    let (traffic, from, ctl) = rotate_shared(&w).await;
    let st = wait_cluster_status(&w, "shared", Duration::from_secs(60), |s| {
        s.rotations == 1 && s.phase == Some(Phase::Ready)
    })
    .await;
    assert_eq!(st.namespaces.len(), 12);
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    let updates = w.sb.api.audit_log()[from..]
        .iter()
        .filter(|r| r.resource == "clustertokenrotations/status")
        .count();
    let (deployments_wide, deployments_per_ns) = lists(&w, from, "deployments");
    let (pods_wide, pods_per_ns) = lists(&w, from, "pods");
    eprintln!(
        "12 namespaces: {deployments_wide} cluster-wide Deployment LISTs, {deployments_per_ns} per-namespace; \
         pods {pods_wide} and {pods_per_ns}; {updates} status writes; {served} served, {refused} refused"
    );
    assert_eq!(deployments_per_ns, 0, "no LIST per namespace");
    // The shared workload cache lists once when it starts (and again only if its watch
    // breaks), however many reconciles the rotation takes.
    assert!(deployments_wide >= 1);
    assert!(
        deployments_wide <= 2,
        "no LIST per reconcile: {deployments_wide} for {updates} status writes"
    );
    assert_eq!(pods_per_ns, 0, "no pod LIST per namespace");
    assert!(pods_wide >= 1, "the pod-level barrier looked");
    assert_eq!(refused, 0);
    assert_ne!(w.sb.twilio.primary_token(&w.sid), Some(w.old_token.clone()));
}

/// The cluster-wide pod LIST of a ClusterTokenRotation over 12 namespaces sees a bare pod on
/// the old token in one of them: the rotation holds (`UnmanagedConsumers`, nothing promoted)
/// until the pod is deleted, then completes; no call is refused, and no pod LIST is made per
/// namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_cluster_rotation_holds_on_a_bare_pod_in_one_namespace() {
    let w = wide_world().await;
    bare_pod(&w.client, "wide-07", "debug").await;
    let (traffic, from, ctl) = rotate_shared(&w).await;
    let unmanaged = |s: &TokenRotationStatus| degraded(s, "UnmanagedConsumers");
    let st = wait_cluster_status(&w, "shared", Duration::from_secs(60), |s| {
        unmanaged(s).is_some()
    })
    .await;
    let msg = unmanaged(&st).unwrap_or_default();
    assert!(msg.contains("wide-07/debug"), "{msg}");
    assert!(token_works(&w, &w.old_token).await, "nothing promoted");
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(w.client.clone(), "wide-07")
        .delete("debug", &Default::default())
        .await
        .unwrap();
    wait_cluster_status(&w, "shared", Duration::from_secs(60), |s| {
        s.rotations == 1 && s.phase == Some(Phase::Ready)
    })
    .await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    let (pods_wide, pods_per_ns) = lists(&w, from, "pods");
    eprintln!(
        "bare pod in 1 of 12 namespaces: pod LISTs {pods_wide} cluster-wide, {pods_per_ns} per namespace; {served} served, {refused} refused"
    );
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert_eq!(pods_per_ns, 0, "no pod LIST per namespace");
    assert!(
        !token_works(&w, &w.old_token).await,
        "promoted once the pod was gone"
    );
}
