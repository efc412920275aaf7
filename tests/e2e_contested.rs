//! End to end: the cluster fights back. Other writers revert the target Secret, two resources
//! claim one account, the resource is deleted mid-rotation, a secondary token made elsewhere
//! exists, a held scheduled run is aborted, the spec changes mid-flight. In every case the pods
//! keep calling Twilio and none is refused, or the rotation holds with nothing promoted; each
//! safety check has a negative control (the same scenario with the check off refuses calls or
//! loses the rollback).

mod common;

use common::*;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use sandbox::workloads::WorkloadKind;
use std::time::Duration;
use token_rotator::api::{
    ClusterTokenRotation, Phase, TokenRotation, TokenRotationSpec, TokenRotationStatus,
};
use token_rotator::controller::failpoints::Failpoints;
use token_rotator::controller::SafetyOverrides;

fn degraded(s: &TokenRotationStatus) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

fn with_spec(mut tr: TokenRotation, f: impl FnOnce(&mut TokenRotationSpec)) -> TokenRotation {
    f(&mut tr.spec);
    tr
}

/// A rotation that completed with pods calling Twilio throughout and none refused; returns the
/// new primary.
fn rotated_cleanly(w: &World, st: &TokenRotationStatus, served: u64, refused: u64) -> String {
    assert!(served > 0, "pods kept calling Twilio");
    assert_eq!(refused, 0, "no consumer call refused");
    assert_eq!(st.phase, Some(Phase::Ready));
    let new = w.sb.twilio.primary_token(&w.sid).unwrap();
    assert_ne!(new, w.old_token, "the primary changed");
    new
}

/// Writes `token` back into `ns`/twilio-creds as another tool would (a merge patch of
/// `stringData` under its own field manager).
async fn revert(w: &World, ns: &str, token: &str, manager: &str) {
    let pp = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    Api::<Secret>::namespaced(w.client.clone(), ns)
        .patch(
            "twilio-creds",
            &pp,
            &Patch::Merge(serde_json::json!({"stringData": {"TWILIO_AUTH_TOKEN": token}})),
        )
        .await
        .unwrap();
}

async fn phase_of(w: &World, name: &str) -> Option<Phase> {
    Api::<TokenRotation>::namespaced(w.client.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|t| t.status)
        .and_then(|s| s.phase)
}

/// A rollout slow enough to act during it.
fn slow_rollout(w: &World) {
    w.sb.workloads.set_readiness_delay(
        WorkloadKind::Deployment,
        NS,
        "api",
        Duration::from_millis(800),
    );
}

/// GitOps writes the old token back once while the workloads roll out: the operator writes it
/// again, restarts the consumers again, and promotes with zero refused calls; the Event names
/// the writer. Without the check (negative control) the same scenario refuses calls.
async fn revert_once(safety: SafetyOverrides) -> (u64, u64, TokenRotationStatus, World) {
    capture_logs();
    let w = world(2).await;
    slow_rollout(&w);
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety = safety;
    let ctl = start_controller_with(&w, cfg);
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_phase(&w, "twilio", Phase::RollingOut).await;
    revert(&w, NS, &w.old_token, "argocd-controller").await;
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    // Let pods that restarted onto a dead token show it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    (served, refused, st, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverted_target_is_written_again_and_consumers_never_refused() {
    let (served, refused, st, w) = revert_once(SafetyOverrides::default()).await;
    let new = rotated_cleanly(&w, &st, served, refused);
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(new.as_str())
    );
    let events = wait_events(&w, &["TargetSecretReverted", "RotationSucceeded"]).await;
    let note = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("TargetSecretReverted"))
        .and_then(|e| e.note.clone())
        .unwrap();
    assert!(
        note.contains("Secret shop/twilio-creds key TWILIO_AUTH_TOKEN")
            && note.contains("argocd-controller"),
        "{note}"
    );
    let dump = serde_json::to_string(&events).unwrap() + &serde_json::to_string(&st).unwrap();
    assert!(!dump.contains(&new) && !dump.contains(&w.old_token));
    assert_no_token_in_logs(&[&new, &w.old_token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_the_target_recheck_a_revert_refuses_calls() {
    let safety = SafetyOverrides {
        skip_target_recheck: true,
        ..SafetyOverrides::default()
    };
    let (_, refused, st, _w) = revert_once(safety).await;
    assert_eq!(st.phase, Some(Phase::Ready), "it promoted regardless");
    assert!(refused > 0, "pods restarted onto the reverted token");
}

/// A writer that keeps reverting (Argo CD self-heal): after one more write the rotation holds,
/// naming the Secret and the field manager, with nothing promoted; abort rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_reverter_holds_naming_the_writer_then_aborts_cleanly() {
    let w = world(2).await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_phase(&w, "twilio", Phase::RollingOut).await;
    let client = w.client.clone();
    let old = w.old_token.clone();
    let reverter = tokio::spawn(async move {
        let pp = PatchParams {
            field_manager: Some("kustomize-controller".into()),
            ..PatchParams::default()
        };
        let api = Api::<Secret>::namespaced(client, NS);
        loop {
            let _ = api
                .patch(
                    "twilio-creds",
                    &pp,
                    &Patch::Merge(serde_json::json!({"stringData": {"TWILIO_AUTH_TOKEN": old}})),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let st = wait_status(&w, "twilio", Duration::from_secs(40), |s| {
        degraded(s).is_some_and(|(r, _)| r == "TargetSecretReverted")
    })
    .await;
    let (_, msg) = degraded(&st).unwrap();
    assert!(
        msg.contains("Secret shop/twilio-creds key TWILIO_AUTH_TOKEN"),
        "{msg}"
    );
    assert!(msg.contains("kustomize-controller"), "{msg}");
    assert!(msg.contains("ignoreDifferences"), "{msg}");
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str()),
        "nothing promoted"
    );
    assert!(matches!(
        st.phase,
        Some(Phase::RollingOut | Phase::Verifying)
    ));
    annotate(&w, "twilio", "tokenrotator.io/abort", "1").await;
    let st = wait_status(&w, "twilio", Duration::from_secs(40), |s| {
        s.phase == Some(Phase::Aborted)
    })
    .await;
    reverter.abort();
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert!(w.sb.twilio.secondary_token(&w.sid).is_none());
    assert!(token_works(&w, &w.old_token).await);
    assert!(st.rotation.is_none());
}

/// Two namespaces consume one account, each with its own TokenRotation: neither promotes (the
/// later never rotates, the owner holds), both say why; merged into one ClusterTokenRotation
/// the account rotates with zero refused calls in both namespaces.
async fn two_owners(safety: SafetyOverrides) -> (u64, World) {
    let w = world(2).await;
    populate(
        &w.sb,
        "billing",
        &w.old_token,
        serde_json::json!({"TWILIO_ACCOUNT_SID": w.sid, "TWILIO_AUTH_TOKEN": w.old_token}),
        &["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"],
        2,
    )
    .await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety = safety;
    let ctl = start_controller_with(&w, cfg);
    create(&w, &rotation(&w, "twilio", serde_json::json!({}))).await;
    // creationTimestamp has whole seconds: billing is the later one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut billing = rotation(&w, "twilio", serde_json::json!({}));
    billing.metadata.namespace = Some("billing".into());
    let billing_api = Api::<TokenRotation>::namespaced(w.client.clone(), "billing");
    billing_api
        .create(&PostParams::default(), &billing)
        .await
        .unwrap();
    // Both teams ask for a rotation.
    annotate(&w, "twilio", "tokenrotator.io/rotate-now", "1").await;
    billing_api
        .patch(
            "twilio",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"annotations": {"tokenrotator.io/rotate-now": "1"}}}),
            ),
        )
        .await
        .unwrap();
    if safety.skip_account_conflict {
        // The two take turns on the account lock; whichever promotes first kills the token
        // the other namespace's pods hold (and the other's own credentials).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let rotated = |st: Option<TokenRotationStatus>| st.is_some_and(|s| s.rotations >= 1);
            let shop = Api::<TokenRotation>::namespaced(w.client.clone(), NS)
                .get("twilio")
                .await
                .unwrap()
                .status;
            let billing = billing_api.get("twilio").await.unwrap().status;
            if rotated(shop) || rotated(billing) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "neither rotated");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, refused) = traffic.stop().await;
        ctl.abort();
        return (refused, w);
    }
    let shop = wait_status(&w, "twilio", Duration::from_secs(30), |s| {
        degraded(s).is_some_and(|(r, _)| r == "AccountConflict")
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let billing_st = loop {
        let st = billing_api
            .get("twilio")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if degraded(&st).is_some_and(|(r, _)| r == "AccountConflict") {
            break st;
        }
        assert!(tokio::time::Instant::now() < deadline, "{st:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, msg) = degraded(&billing_st).unwrap();
    assert!(msg.contains("TokenRotation shop/twilio"), "{msg}");
    assert!(msg.contains("never does"), "{msg}");
    let (_, msg) = degraded(&shop).unwrap();
    assert!(msg.contains("TokenRotation billing/twilio"), "{msg}");
    assert!(billing_st.rotation.is_none());
    // Give a wrong promotion every chance to happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str()),
        "nothing promoted while both exist"
    );

    // The fix the message names: one ClusterTokenRotation over both namespaces.
    for ns in [NS, "billing"] {
        Api::<TokenRotation>::namespaced(w.client.clone(), ns)
            .delete("twilio", &DeleteParams::default())
            .await
            .unwrap();
        label_shared(&w, ns).await;
    }
    Api::<ClusterTokenRotation>::all(w.client.clone())
        .create(&PostParams::default(), &shared_rotation(&w, NS))
        .await
        .unwrap();
    wait_cluster_status(&w, "shared", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (_, refused) = traffic.stop().await;
    ctl.abort();
    assert_ne!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
    (refused, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resources_on_one_auth_token_conflict_instead_of_queueing() {
    let (refused, _w) = two_owners(SafetyOverrides::default()).await;
    assert_eq!(refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_the_conflict_check_the_other_namespace_is_refused() {
    let safety = SafetyOverrides {
        skip_account_conflict: true,
        ..SafetyOverrides::default()
    };
    let (refused, _w) = two_owners(safety).await;
    assert!(
        refused > 0,
        "billing's pods kept the token shop promoted away"
    );
}

/// Deleted during the rollout (a GitOps prune, a rename) and created again: the finalizer rolls
/// the first rotation back (old token in the Secrets and the credentials, secondary deleted),
/// then the new resource rotates; no call refused, and the operator's credential works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_mid_rollout_rolls_back_then_the_recreated_resource_rotates() {
    let w = world(2).await;
    slow_rollout(&w);
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_phase(&w, "twilio", Phase::RollingOut).await;
    let api = Api::<TokenRotation>::namespaced(w.client.clone(), NS);
    api.delete("twilio", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut saw_aborting = false;
    while let Some(tr) = api.get_opt("twilio").await.unwrap() {
        saw_aborting |= tr.status.and_then(|s| s.phase) == Some(Phase::Aborting);
        assert!(tokio::time::Instant::now() < deadline, "deletion hangs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_aborting, "the deletion rolled the rotation back first");
    assert!(w.sb.twilio.secondary_token(&w.sid).is_none());
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
    assert_token_everywhere(&w, &w.old_token, "the old token is back").await;

    create(&w, &manual_rotation(&w, "twilio")).await;
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    let new = rotated_cleanly(&w, &st, served, refused);
    assert_eq!(
        secret_value(&w, "twilio-admin", "authToken")
            .await
            .as_deref(),
        Some(new.as_str()),
        "the operator's credential is the live token"
    );
    assert!(
        Api::<TokenRotation>::namespaced(w.client.clone(), NS)
            .get("twilio")
            .await
            .unwrap()
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty(),
        "no finalizer once idle"
    );
}

/// Without the finalizer the same deletion orphans the rotation: the consumers are left on an
/// unpromoted secondary nobody will promote or delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_the_finalizer_a_deletion_orphans_the_rotation() {
    let w = world(2).await;
    slow_rollout(&w);
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety.skip_finalizer = true;
    let ctl = start_controller_with(&w, cfg);
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_phase(&w, "twilio", Phase::RollingOut).await;
    Api::<TokenRotation>::namespaced(w.client.clone(), NS)
        .delete("twilio", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    ctl.abort();
    assert!(phase_of(&w, "twilio").await.is_none(), "gone at once");
    let secondary = w.sb.twilio.secondary_token(&w.sid).expect("orphaned");
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(secondary.as_str()),
        "consumers are left on a secondary nobody owns"
    );
}

/// A secondary Auth Token made elsewhere (the Console, another cluster) before the rotation,
/// and used there: namespace `elsewhere` runs on it. Returns the world, the token and the
/// traffic of every pod.
async fn foreign_secondary() -> (World, String, sandbox::Traffic) {
    let w = world(2).await;
    let twilio =
        token_rotator::twilio::TwilioClient::new(config(&w, Failpoints::default()).twilio).unwrap();
    let creds = token_rotator::twilio::Credentials::auth_token(&w.sid, w.old_token.clone().into());
    twilio.create_secondary_auth_token(&creds).await.unwrap();
    let foreign = w.sb.twilio.secondary_token(&w.sid).unwrap();
    populate(
        &w.sb,
        "elsewhere",
        &foreign,
        serde_json::json!({"TWILIO_ACCOUNT_SID": w.sid, "TWILIO_AUTH_TOKEN": foreign}),
        &["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"],
        1,
    )
    .await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    (w, foreign, traffic)
}

/// That secondary is never deleted: the rotation holds naming how to go on, its users keep
/// working; told so by rotation ID (once they moved off it), the operator deletes it and
/// rotates. Negative control below: deleting it at Staging refuses its users' calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_made_elsewhere_is_never_deleted_without_being_told() {
    capture_logs();
    let (w, foreign, traffic) = foreign_secondary().await;
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    let st = wait_status(&w, "twilio", Duration::from_secs(30), |s| {
        degraded(s).is_some_and(|(r, _)| r == "ForeignSecondaryToken")
    })
    .await;
    let id = st.rotation.as_ref().unwrap().id.clone();
    let (_, msg) = degraded(&st).unwrap();
    assert!(
        msg.contains(&format!("tokenrotator.io/delete-secondary={id}")),
        "{msg}"
    );
    assert_eq!(st.phase, Some(Phase::Staging));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (served, refused) = traffic.stop().await;
    assert!(served > 0);
    assert_eq!(
        refused, 0,
        "the secondary's own users kept working through the hold"
    );
    assert_eq!(
        w.sb.twilio.secondary_token(&w.sid).as_deref(),
        Some(foreign.as_str()),
        "the foreign secondary is untouched"
    );
    // Its users move off it; the owner says to delete it.
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(w.client.clone(), "elsewhere")
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    annotate(&w, "twilio", "tokenrotator.io/delete-secondary", &id).await;
    let st = wait_status(&w, "twilio", Duration::from_secs(90), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    let new = rotated_cleanly(&w, &st, served, refused);
    assert_ne!(new, foreign);
    let events = wait_events(&w, &["ForeignSecondaryToken", "RotationSucceeded"]).await;
    let dump = serde_json::to_string(&events).unwrap() + &serde_json::to_string(&st).unwrap();
    for t in [&new, &foreign, &w.old_token] {
        assert!(!dump.contains(t.as_str()), "a token in Events or status");
    }
    assert_no_token_in_logs(&[&new, &foreign, &w.old_token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_deleting_a_foreign_secondary_refuses_its_users() {
    let (w, _foreign, traffic) = foreign_secondary().await;
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety.skip_foreign_secondary_check = true;
    let ctl = start_controller_with(&w, cfg);
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (_, refused) = traffic.stop().await;
    ctl.abort();
    assert!(
        refused > 0,
        "the other users of the deleted secondary were refused"
    );
}

/// A scheduled run held by a slow rollout and aborted reaches Aborted within its rollout
/// window, and the next run is the next slot after the abort, not at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_held_scheduled_run_completes_and_waits_for_the_next_slot() {
    use chrono::{Duration as CD, Utc};
    let w = world(1).await;
    w.sb.workloads
        .set_readiness_delay(WorkloadKind::Deployment, NS, "api", Duration::from_secs(8));
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let tr = with_spec(
        rotation(
            &w,
            "twilio",
            serde_json::json!({"tokenrotator.io/schedule": "@every 24h"}),
        ),
        |s| s.rollout_timeout = "2s".into(),
    );
    create(&w, &tr).await;
    last_rotated_days_ago(&w, "twilio", 3, 4).await;
    let ctl = start_controller(&w, Failpoints::default());
    wait_status(&w, "twilio", Duration::from_secs(30), |s| {
        degraded(s).is_some_and(|(r, _)| r == "RolloutTimeout")
    })
    .await;
    annotate(&w, "twilio", "tokenrotator.io/abort", "1").await;
    w.sb.workloads
        .set_readiness_delay(WorkloadKind::Deployment, NS, "api", Duration::ZERO);
    let st = wait_phase(&w, "twilio", Phase::Aborted).await;
    assert!(degraded(&st).is_none(), "{st:#?}");
    let next = token_rotator::time::from_k8s(st.next_rotation_time.as_ref().unwrap());
    assert!(
        next > Utc::now() + CD::hours(23),
        "next slot after the abort: {next}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        phase_of(&w, "twilio").await,
        Some(Phase::Aborted),
        "not started again"
    );
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
    assert!(w.sb.twilio.secondary_token(&w.sid).is_none());
}

/// Switching the spec from authToken to apiKey mid-flight cannot skip promotion: the rotation
/// in flight runs with the spec it started with, and says the edit waits for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_edits_mid_flight_apply_to_the_next_rotation() {
    let w = world(2).await;
    slow_rollout(&w);
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_phase(&w, "twilio", Phase::RollingOut).await;
    Api::<TokenRotation>::namespaced(w.client.clone(), NS)
        .patch(
            "twilio",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {
                "authToken": null,
                "apiKey": {},
                "secrets": [{"name": "twilio-creds", "accountSidKey": "TWILIO_ACCOUNT_SID",
                             "tokenKey": "TWILIO_API_SECRET", "keySidKey": "TWILIO_API_KEY"}]
            }})),
        )
        .await
        .unwrap();
    let noted = wait_status(&w, "twilio", Duration::from_secs(30), |s| {
        s.message
            .as_deref()
            .is_some_and(|m| m.contains("applies to the next rotation"))
            || s.rotations == 1
    })
    .await;
    assert_eq!(noted.rotations, 0, "the edit was reported while in flight");
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert!(st.api_key.is_none(), "no API key was made");
    let new = w.sb.twilio.primary_token(&w.sid).unwrap();
    assert_ne!(new, w.old_token, "the Auth Token was promoted");
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(new.as_str())
    );
}

/// Deleting the namespace mid-rotation does not hang: the rotation is rolled back (the
/// secondary deleted, the old token still the primary) and the namespace goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_mid_rotation_rolls_back_and_does_not_hang() {
    let w = world(2).await;
    slow_rollout(&w);
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_phase(&w, "twilio", Phase::RollingOut).await;
    let namespaces = Api::<Namespace>::all(w.client.clone());
    namespaces
        .delete(NS, &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while namespaces.get_opt(NS).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace deletion hangs: {:?}",
            phase_of(&w, "twilio").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctl.abort();
    assert!(
        w.sb.twilio.secondary_token(&w.sid).is_none(),
        "secondary deleted"
    );
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
}

/// Two API key rotations write different keys of one Secret: neither removes the other's keys
/// (server-side apply drops the fields a manager stops sending, so each resource applies as its
/// own field manager). With one shared manager (negative control) the second apply removes the
/// first resource's keys.
async fn shared_secret(safety: SafetyOverrides) -> World {
    let w = key_world(1, sandbox::twilio::KeyKind::Standard).await;
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety = safety;
    let ctl = start_controller_with(&w, cfg);
    let first = key_rotation(&w, "first", serde_json::json!({}));
    let second = with_spec(key_rotation(&w, "second", serde_json::json!({})), |s| {
        s.secrets[0].key_sid_key = Some("SECOND_API_KEY".into());
        s.secrets[0].token_key = "SECOND_API_SECRET".into();
        s.secrets[0].account_sid_key = None;
    });
    create(&w, &first).await;
    wait_status(&w, "first", Duration::from_secs(60), |s| s.rotations == 1).await;
    create(&w, &second).await;
    if safety.shared_field_manager {
        // Its distribution is what removes the keys (and its rollout then stalls on pods that
        // lost them).
        wait_status(&w, "second", Duration::from_secs(60), |s| {
            s.phase == Some(Phase::RollingOut) || s.rotations == 1
        })
        .await;
    } else {
        wait_status(&w, "second", Duration::from_secs(60), |s| s.rotations == 1).await;
    }
    ctl.abort();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resources_writing_one_secret_keep_each_others_keys() {
    let w = shared_secret(SafetyOverrides::default()).await;
    for key in [
        "TWILIO_API_KEY",
        "TWILIO_API_SECRET",
        "SECOND_API_KEY",
        "SECOND_API_SECRET",
    ] {
        assert!(
            secret_value(&w, "twilio-creds", key).await.is_some(),
            "{key} survived the other resource's writes"
        );
    }
    let key = secret_value(&w, "twilio-creds", "TWILIO_API_KEY")
        .await
        .unwrap();
    assert!(
        w.sb.twilio.keys(&w.sid).iter().any(|k| k.sid == key),
        "the first resource's key is live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_one_shared_field_manager_removes_the_other_resources_keys() {
    let safety = SafetyOverrides {
        shared_field_manager: true,
        ..SafetyOverrides::default()
    };
    let w = shared_secret(safety).await;
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_API_SECRET").await,
        None,
        "the second apply dropped the first resource's key"
    );
}

/// Two rotations of two accounts restart one Deployment that reads both: each resource stamps
/// its own annotation, so each restarts it once and both complete. With one shared annotation
/// (negative control) they overwrite each other's stamp and restart it over and over.
async fn shared_workload(safety: SafetyOverrides) -> (i64, bool) {
    use k8s_openapi::api::apps::v1::Deployment;
    let w = world(1).await;
    let (sid_b, token_b) = w.sb.twilio.create_account();
    let secrets = Api::<Secret>::namespaced(w.client.clone(), NS);
    for (name, data) in [
        ("other-admin", serde_json::json!({"authToken": token_b})),
        (
            "other-creds",
            serde_json::json!({"OTHER_SID": sid_b, "OTHER_TOKEN": token_b}),
        ),
    ] {
        let s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": NS}, "stringData": data
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let deployments = Api::<Deployment>::namespaced(w.client.clone(), NS);
    deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Strategic(
                serde_json::json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "app", "env": [{"name": "OTHER_TOKEN", "valueFrom": {"secretKeyRef":
                        {"name": "other-creds", "key": "OTHER_TOKEN"}}}]}
                ]}}}}),
            ),
        )
        .await
        .unwrap();
    // The two rollouts must overlap for a shared stamp to matter: a rollout faster than the
    // gap between the two rotations' restarts (each settles 1 s after distributing) would let
    // them take turns even with one stamp.
    w.sb.workloads
        .set_readiness_delay(WorkloadKind::Deployment, NS, "api", Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let generation = |d: Deployment| d.metadata.generation.unwrap_or_default();
    let before = generation(deployments.get("api").await.unwrap());
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety = safety;
    let ctl = start_controller_with(&w, cfg);
    let a = manual_rotation(&w, "account-a");
    let b = with_spec(manual_rotation(&w, "account-b"), |s| {
        s.twilio.account_sid = sid_b.clone();
        s.twilio.credentials_secret_ref.name = "other-admin".into();
        s.secrets[0].name = "other-creds".into();
        s.secrets[0].account_sid_key = Some("OTHER_SID".into());
        s.secrets[0].token_key = "OTHER_TOKEN".into();
        s.secrets[0].previous_token_key = None;
        s.rollout_timeout = "8s".into();
    });
    let a = with_spec(a, |s| s.rollout_timeout = "8s".into());
    create(&w, &a).await;
    create(&w, &b).await;
    let api = Api::<TokenRotation>::namespaced(w.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let both = loop {
        let done = |n: &'static str| {
            let api = api.clone();
            async move {
                api.get(n)
                    .await
                    .unwrap()
                    .status
                    .is_some_and(|s| s.rotations == 1)
            }
        };
        if done("account-a").await && done("account-b").await {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ctl.abort();
    let restarts = generation(deployments.get("api").await.unwrap()) - before;
    (restarts, both)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resources_restarting_one_workload_restart_it_once_each() {
    let (restarts, both) = shared_workload(SafetyOverrides::default()).await;
    assert!(both, "both rotations completed");
    assert_eq!(restarts, 2, "one restart per rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_one_shared_stamp_makes_two_resources_fight() {
    let safety = SafetyOverrides {
        shared_field_manager: true,
        ..SafetyOverrides::default()
    };
    let (restarts, both) = shared_workload(safety).await;
    eprintln!("shared stamp: {restarts} restarts, both completed: {both}");
    assert!(
        restarts > 2 || !both,
        "shared stamp: {restarts} restarts, both completed: {both}"
    );
}

/// Deletes the staging Secret (as someone cleaning up by hand would) once the rollout runs.
async fn lose_staging(w: &World) {
    let st = wait_phase(w, "twilio", Phase::RollingOut).await;
    let name = st.rotation.unwrap().staging_secret;
    let secrets = Api::<Secret>::namespaced(w.client.clone(), NS);
    // It carries the operator's finalizer; a person deleting it by hand removes that too.
    secrets
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    secrets
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
}

/// The staging Secret deleted after distribution: the rotation rebuilds it (the new token is
/// in the credentials Secret, Twilio names the old one as the primary) and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_secret_lost_after_distribution_is_rebuilt_and_the_rotation_completes() {
    capture_logs();
    let w = world(2).await;
    slow_rollout(&w);
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    lose_staging(&w).await;
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    let new = rotated_cleanly(&w, &st, served, refused);
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(new.as_str())
    );
    let events = wait_events(&w, &["StagingSecretLost", "RotationSucceeded"]).await;
    let dump = serde_json::to_string(&events).unwrap() + &serde_json::to_string(&st).unwrap();
    assert!(!dump.contains(&new) && !dump.contains(&w.old_token));
    assert_no_token_in_logs(&[&new, &w.old_token]);
}

/// Lost staging Secret, then abort: the old token (Twilio's primary) goes back everywhere and
/// the secondary is deleted; nothing stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_secret_lost_then_aborted_restores_the_old_token() {
    let w = world(2).await;
    w.sb.workloads
        .fail_new_pods(WorkloadKind::Deployment, NS, "api", true);
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    lose_staging(&w).await;
    // Rebuilt while the rollout is stuck, then aborted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.sb.workloads
        .fail_new_pods(WorkloadKind::Deployment, NS, "api", false);
    annotate(&w, "twilio", "tokenrotator.io/abort", "1").await;
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| {
        s.phase == Some(Phase::Aborted)
    })
    .await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert!(st.rotation.is_none());
    assert!(w.sb.twilio.secondary_token(&w.sid).is_none());
    assert_token_everywhere(&w, &w.old_token, "after the abort").await;
}

/// A namespace matched by a ClusterTokenRotation is deleted mid-rotation: nothing more is
/// written there, its consumers are waited on until they are gone, and the rotation completes
/// instead of stalling; no call refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matched_namespace_deleted_mid_rotation_does_not_stall_it() {
    let w = world(1).await;
    let env = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"];
    let creds = serde_json::json!({"TWILIO_ACCOUNT_SID": w.sid, "TWILIO_AUTH_TOKEN": w.old_token});
    populate(&w.sb, "leaving", &w.old_token, creds, &env, 1).await;
    w.sb.workloads.set_readiness_delay(
        WorkloadKind::Deployment,
        "leaving",
        "api",
        Duration::from_secs(3),
    );
    for ns in [NS, "leaving"] {
        label_shared(&w, ns).await;
    }
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    Api::<ClusterTokenRotation>::all(w.client.clone())
        .create(&PostParams::default(), &shared_rotation(&w, NS))
        .await
        .unwrap();
    wait_cluster_status(&w, "shared", Duration::from_secs(30), |s| {
        s.phase == Some(Phase::RollingOut)
    })
    .await;
    Api::<Namespace>::all(w.client.clone())
        .delete("leaving", &DeleteParams::default())
        .await
        .unwrap();
    let st = wait_cluster_status(&w, "shared", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert_eq!(st.namespaces, vec![NS.to_string()]);
    assert_ne!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
}

/// An older TokenRotation in another namespace names the same account with credentials Twilio
/// refuses (a namespace editor's junk): it cannot stall the account. Its credentials are
/// checked, it stops counting as the owner, and the real rotation completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_resource_with_refused_credentials_cannot_stall_the_account() {
    let w = world(2).await;
    let wrong = "0123456789abcdef0123456789abcdef";
    populate(
        &w.sb,
        "junk",
        wrong,
        serde_json::json!({"TWILIO_ACCOUNT_SID": w.sid, "TWILIO_AUTH_TOKEN": wrong}),
        &["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"],
        0,
    )
    .await;
    let mut junk = rotation(&w, "junk", serde_json::json!({}));
    junk.metadata.namespace = Some("junk".into());
    let junk_api = Api::<TokenRotation>::namespaced(w.client.clone(), "junk");
    junk_api
        .create(&PostParams::default(), &junk)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert_eq!(st.phase, Some(Phase::Ready));
    let junk_st = junk_api
        .get("junk")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert!(junk_st.credentials_refused, "{junk_st:#?}");
    assert_eq!(
        degraded(&junk_st).map(|d| d.0).as_deref(),
        Some("AuthenticationFailed")
    );
}

/// The credentials Secret is reverted to the old (dead) token after promotion: retirement
/// writes the rotation's own new token, never what the credentials Secret holds by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirement_writes_the_rotations_own_token_after_a_revert() {
    let w = world(1).await;
    let ctl = start_controller(&w, Failpoints::default());
    create(
        &w,
        &with_spec(manual_rotation(&w, "twilio"), |s| s.overlap = "3s".into()),
    )
    .await;
    wait_phase(&w, "twilio", Phase::Retiring).await;
    Api::<Secret>::namespaced(w.client.clone(), NS)
        .patch(
            "twilio-admin",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"authToken": w.old_token}})),
        )
        .await
        .unwrap();
    wait_status(&w, "twilio", Duration::from_secs(30), |s| s.rotations == 1).await;
    ctl.abort();
    let new = w.sb.twilio.primary_token(&w.sid).unwrap();
    assert_ne!(new, w.old_token);
    assert_token_everywhere(&w, &new, "the live token, not the reverted dead one").await;
}

/// Deleting the CRD mid-rotation does not hang: every resource is deleted, each rotation in
/// flight is rolled back first (the old token stays the primary, the secondary is deleted),
/// and the CRD goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_crd_mid_rotation_rolls_back_and_does_not_hang() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let w = world(2).await;
    slow_rollout(&w);
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_phase(&w, "twilio", Phase::RollingOut).await;
    let crds = Api::<CustomResourceDefinition>::all(w.client.clone());
    crds.delete("tokenrotations.tokenrotator.io", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while crds
        .get_opt("tokenrotations.tokenrotator.io")
        .await
        .unwrap()
        .is_some()
    {
        assert!(tokio::time::Instant::now() < deadline, "CRD deletion hangs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert!(w.sb.twilio.secondary_token(&w.sid).is_none());
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(w.old_token.as_str())
    );
}

/// Argo CD or Flux re-applying the Deployment with server-side apply (as their own field
/// manager, without our annotation) keep our restart stamp: no extra rollout. And keys and
/// annotations of a target Secret written by someone else survive our writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitops_re_apply_keeps_the_stamp_and_others_keys_survive() {
    use k8s_openapi::api::apps::v1::Deployment;
    let w = world(1).await;
    let secrets = Api::<Secret>::namespaced(w.client.clone(), NS);
    let other = PatchParams::apply("helm").force();
    secrets
        .patch(
            "twilio-creds",
            &other,
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "twilio-creds",
                             "annotations": {"reloader.stakater.com/ignore": "true"}},
                "stringData": {"OTHER_SETTING": "kept"}
            })),
        )
        .await
        .unwrap();
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let deployments = Api::<Deployment>::namespaced(w.client.clone(), NS);
    let stamped = deployments.get("api").await.unwrap();
    let annotations = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default()
    };
    let ours: Vec<String> = annotations(&stamped)
        .into_keys()
        .filter(|k| k.starts_with("tokenrotator.io/rotation-"))
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", annotations(&stamped));
    // The GitOps tool applies the Deployment from Git: the same spec, no stamp.
    let from_git = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "app", "image": "shop/api:1", "env": [
                    {"name": "TWILIO_ACCOUNT_SID", "valueFrom": {"secretKeyRef": {"name": "twilio-creds", "key": "TWILIO_ACCOUNT_SID"}}},
                    {"name": "TWILIO_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "twilio-creds", "key": "TWILIO_AUTH_TOKEN"}}}
                ]}]}
            }
        }
    });
    for manager in ["argocd-controller", "kustomize-controller"] {
        deployments
            .patch(
                "api",
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&from_git),
            )
            .await
            .unwrap();
    }
    let after = deployments.get("api").await.unwrap();
    ctl.abort();
    assert_eq!(
        annotations(&after).get(&ours[0]),
        annotations(&stamped).get(&ours[0]),
        "the stamp survives the re-apply"
    );
    assert_eq!(
        after.metadata.generation, stamped.metadata.generation,
        "no extra rollout"
    );
    let creds = secrets.get("twilio-creds").await.unwrap();
    assert_eq!(
        creds
            .metadata
            .annotations
            .unwrap_or_default()
            .get("reloader.stakater.com/ignore")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        secret_value(&w, "twilio-creds", "OTHER_SETTING")
            .await
            .as_deref(),
        Some("kept")
    );
}

/// ClusterTokenRotation `shared` (credentials and staging Secret in `shop`), its first
/// reconcile frozen right after Stage: the staging Secret is written, its status is not. After
/// 2 s (the staging Secret's watch event, several put-offs of 200 ms): its status, and how many
/// reconciles of it were put off meanwhile.
async fn frozen_after_stage(safety: SafetyOverrides) -> (TokenRotationStatus, u64) {
    let w = world(1).await;
    label_shared(&w, NS).await;
    let api = Api::<ClusterTokenRotation>::all(w.client.clone());
    let (ctl, metrics) = freeze_at(&w, safety, "after:Stage", async |w: &World| {
        api.create(&PostParams::default(), &shared_rotation(w, NS))
            .await
            .unwrap();
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = api.get("shared").await.unwrap().status.unwrap_or_default();
    ctl.abort();
    (st, metrics.reconciles_put_off("ClusterTokenRotation"))
}

/// The staging Secret's change wakes the ClusterTokenRotation under its own reference, which
/// waits behind the running reconcile: nothing is put off, nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rotation_is_reconciled_once_at_a_time() {
    let (st, put_off) = frozen_after_stage(SafetyOverrides::default()).await;
    assert_eq!(st.phase, Some(Phase::Staging));
    assert_eq!(put_off, 0);
}

/// With kube's `owns` mapping (the Secret's namespace on a cluster-scoped owner) the change
/// comes under a second reference: the guard puts that reconcile off, nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_with_kubes_owner_refs_a_second_reconcile_is_put_off() {
    let safety = SafetyOverrides {
        kube_owner_refs: true,
        ..SafetyOverrides::default()
    };
    let (st, put_off) = frozen_after_stage(safety).await;
    assert_eq!(st.phase, Some(Phase::Staging));
    assert!(put_off > 0, "the second reference never came");
}

/// Without the guard too, the second reconcile runs beside the frozen one and takes the
/// rotation on, past the step the first has not finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_the_guard_a_second_reconcile_runs_beside_the_first() {
    let safety = SafetyOverrides {
        kube_owner_refs: true,
        skip_reconcile_guard: true,
        ..SafetyOverrides::default()
    };
    let (st, put_off) = frozen_after_stage(safety).await;
    assert_eq!(put_off, 0);
    assert_ne!(st.phase, Some(Phase::Staging), "{st:#?}");
}
