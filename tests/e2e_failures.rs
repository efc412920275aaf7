//! End to end: what goes wrong, and that nothing is lost when it does. Each case checks the
//! documented condition and Event, that nothing was promoted too early, that consumers were
//! never refused, and that no token reached a log line.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use sandbox::twilio::{Endpoint, Fault};
use sandbox::workloads::WorkloadKind;
use std::time::Duration;
use token_rotator::api::{Phase, TokenRotation, TokenRotationStatus};
use token_rotator::controller::failpoints::Failpoints;

fn degraded(s: &TokenRotationStatus) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Waits until `name` is Degraded with `reason`.
async fn wait_degraded(
    w: &World,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> TokenRotationStatus {
    wait_status(w, name, timeout, |s| {
        degraded(s).is_some_and(|(r, _)| r == reason)
    })
    .await
}

fn with_spec(
    mut tr: TokenRotation,
    f: impl FnOnce(&mut token_rotator::api::TokenRotationSpec),
) -> TokenRotation {
    f(&mut tr.spec);
    tr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_timeout_holds_then_abort_restores_the_old_token() {
    capture_logs();
    let w = world(2).await;
    w.sb.workloads
        .fail_new_pods(WorkloadKind::Deployment, NS, "api", true);
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    let tr = with_spec(manual_rotation(&w, "twilio"), |s| {
        s.rollout_timeout = "2s".into()
    });
    create(&w, &tr).await;
    let st = wait_degraded(&w, "twilio", "RolloutTimeout", Duration::from_secs(30)).await;
    assert_eq!(st.phase, Some(Phase::RollingOut), "held, not promoted");
    let new =
        w.sb.twilio
            .secondary_token(&w.sid)
            .expect("the new token is still a secondary");
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
    assert!(token_works(&w, &w.old_token).await && token_works(&w, &new).await);
    wait_events(&w, &["RotationHeld"]).await;

    // Abort: the old token returns to the Secret, the workload rolls back onto it, then the new
    // token is deleted.
    w.sb.workloads
        .fail_new_pods(WorkloadKind::Deployment, NS, "api", false);
    annotate(&w, "twilio", "tokenrotator.io/abort", "yes").await;
    let st = wait_status(&w, "twilio", Duration::from_secs(30), |s| {
        s.phase == Some(Phase::Aborted)
    })
    .await;
    let (served, refused) = traffic.stop().await;
    assert!(st
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "RotationAborted"));
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
    assert!(
        w.sb.twilio.secondary_token(&w.sid).is_none(),
        "the new token was deleted"
    );
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(w.old_token.as_str())
    );
    assert_eq!(
        secret_value(&w, "twilio-admin", "authToken")
            .await
            .as_deref(),
        Some(w.old_token.as_str())
    );
    let pods = w.sb.workloads.pods(WorkloadKind::Deployment, NS, "api");
    assert!(pods
        .iter()
        .all(|p| p.env.get("TWILIO_AUTH_TOKEN") == Some(&w.old_token)));
    wait_events(
        &w,
        &["RotationAborting", "SecretsRestored", "RotationAborted"],
    )
    .await;
    // Stopped only now: the last Events follow the last status write.
    ctl.abort();
    assert!(served > 0);
    assert_eq!(
        refused, 0,
        "no consumer was refused during hold and rollback"
    );
    assert_no_token_in_logs(&[&w.old_token, &new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_holds_without_promotion() {
    capture_logs();
    let w = world(2).await;
    Api::<Deployment>::namespaced(w.client.clone(), NS)
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap();
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    let st = wait_degraded(&w, "twilio", "WorkloadPaused", Duration::from_secs(30)).await;
    // The Events follow the status write: stopping the controller before they are out could
    // cut them off.
    wait_events(&w, &["WorkloadPaused"]).await;
    ctl.abort();
    let (_, msg) = degraded(&st).unwrap();
    assert!(msg.contains("Deployment api"), "{msg}");
    assert_eq!(st.phase, Some(Phase::RollingOut));
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_secret_then_wrong_credential_then_fixed() {
    capture_logs();
    let w = world(1).await;
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), NS);
    secrets
        .delete("twilio-admin", &DeleteParams::default())
        .await
        .unwrap();
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    let st = wait_degraded(
        &w,
        "twilio",
        "CredentialsSecretNotFound",
        Duration::from_secs(30),
    )
    .await;
    assert!(degraded(&st).unwrap().1.contains("twilio-admin"));
    // Nothing was created, so the run gives the account up instead of holding it.
    assert_eq!(st.phase, Some(Phase::Failed));
    assert!(st.rotation.is_none());

    // A wrong token: Twilio refuses it; nothing is created.
    let wrong = "0123456789abcdef0123456789abcdef";
    let s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "twilio-admin", "namespace": NS}, "stringData": {"authToken": wrong}
    }))
    .unwrap();
    secrets.create(&Default::default(), &s).await.unwrap();
    // The failed run is asked for again.
    annotate(&w, "twilio", "tokenrotator.io/rotate-now", "2").await;
    let st = wait_degraded(
        &w,
        "twilio",
        "AuthenticationFailed",
        Duration::from_secs(60),
    )
    .await;
    assert!(degraded(&st).unwrap().1.contains("credentialsSecretRef"));
    assert_eq!(st.phase, Some(Phase::Failed));
    assert!(w.sb.twilio.secondary_token(&w.sid).is_none());
    wait_events(
        &w,
        &[
            "CredentialsSecretNotFound",
            "AuthenticationFailed",
            "RotationFailed",
        ],
    )
    .await;
    ctl.abort();
    assert_no_token_in_logs(&[&w.old_token, wrong]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_schedule_is_reported_and_rotate_now_still_works() {
    capture_logs();
    let w = world(1).await;
    let ctl = start_controller(&w, Failpoints::default());
    create(
        &w,
        &rotation(
            &w,
            "twilio",
            serde_json::json!({"tokenrotator.io/schedule": "every sunday"}),
        ),
    )
    .await;
    let st = wait_degraded(&w, "twilio", "InvalidSchedule", Duration::from_secs(30)).await;
    assert!(degraded(&st).unwrap().1.contains("every sunday"));
    wait_events(&w, &["InvalidSchedule"]).await;
    annotate(&w, "twilio", "tokenrotator.io/rotate-now", "now").await;
    wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_5xx_storm_and_429s_degrade_then_recover() {
    capture_logs();
    let w = world(1).await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    // A 5xx on creating the secondary (never repeated blindly) is reported, and the next
    // attempt first clears what the failed one may have made: an idempotent DELETE, which the
    // client retries through a 5xx storm before reporting it.
    w.sb.twilio
        .set_fault(Endpoint::SecondaryCreate, Fault::server_error(503, 1));
    w.sb.twilio
        .set_fault(Endpoint::SecondaryDelete, Fault::server_error(503, 12));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_degraded(&w, "twilio", "TwilioUnavailable", Duration::from_secs(30)).await;
    assert!(
        w.sb.twilio.secondary_token(&w.sid).is_none(),
        "nothing created during the storm"
    );
    // Then 429s on promotion: retried with backoff, reported while they last.
    w.sb.twilio.clear_faults();
    w.sb.twilio
        .set_fault(Endpoint::Promote, Fault::too_many_requests(6));
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (_, refused) = traffic.stop().await;
    ctl.abort();
    assert_eq!(st.phase, Some(Phase::Ready));
    wait_events(&w, &["TwilioUnavailable", "TwilioRateLimited"]).await;
    assert_eq!(refused, 0);
    let new = w.sb.twilio.primary_token(&w.sid).unwrap();
    assert_no_token_in_logs(&[&w.old_token, &new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_key_rotations_on_one_account_serialize() {
    capture_logs();
    // API keys are independent, so two resources may rotate keys of one account; they take
    // turns like before (two Auth Token resources on one account are a conflict instead).
    let w = key_world(1, sandbox::twilio::KeyKind::Standard).await;
    let ctl = start_controller(&w, Failpoints::default());
    let a = key_rotation(&w, "first", serde_json::json!({}));
    // Nothing reads other-creds in this world: that is expected here, not a missed consumer.
    let b = with_spec(key_rotation(&w, "second", serde_json::json!({})), |s| {
        s.secrets[0].name = "other-creds".into();
        s.workloads =
            Some(serde_json::from_value(serde_json::json!({"noConsumers": "Proceed"})).unwrap());
    });
    create(&w, &a).await;
    create(&w, &b).await;
    // Sample both statuses: never two rotations in flight at once.
    let api: Api<TokenRotation> = Api::namespaced(w.client.clone(), NS);
    let mut saw_waiting = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        // One LIST is one snapshot: both statuses as of the same resourceVersion.
        let items = api.list(&ListParams::default()).await.unwrap().items;
        let status_of = |n: &str| {
            items
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(n))
                .and_then(|t| t.status.clone())
                .unwrap_or_default()
        };
        let (sa, sb) = (status_of("first"), status_of("second"));
        assert!(
            !(sa.rotation.is_some() && sb.rotation.is_some()),
            "two rotations in flight on one account: {:?} / {:?}",
            sa.phase,
            sb.phase
        );
        saw_waiting |= [&sa, &sb]
            .iter()
            .any(|s| s.conditions.iter().any(|c| c.reason == "WaitingForAccount"));
        if sa.rotations == 1 && sb.rotations == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both rotations should finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctl.abort();
    assert!(saw_waiting, "one waited with WaitingForAccount");
    wait_events(&w, &["WaitingForAccount"]).await;
}
