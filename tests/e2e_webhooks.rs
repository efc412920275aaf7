//! End to end: webhook-safe overlap for Auth Tokens. Twilio signs webhooks with the account's
//! primary Auth Token only; a validator that accepts any token listed under the target Secret's
//! `webhookTokensKey` must never reject a genuine signature, during or after a rotation, nor
//! after an abort. Requests are signed by the emulator exactly as Twilio does (checked against
//! the official Python `RequestValidator` in the sandbox's tests) with whichever token is
//! primary at that moment, then validated against the Secret's contents as they are right then.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use sandbox::twilio::webhook_signature;
use sandbox::workloads::WorkloadKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use token_rotator::api::{Phase, TokenRotation};
use token_rotator::controller::failpoints::Failpoints;

const TARGET: &str = "twilio-creds";
const WEBHOOK_KEY: &str = "TWILIO_WEBHOOK_AUTH_TOKENS";
const URL: &str = "https://shop.example.com/twilio/sms?tenant=eu";

/// The e2e rotation with `webhookTokensKey` on its target Secret.
fn webhook_rotation(w: &World) -> TokenRotation {
    let mut tr = manual_rotation(w, "twilio");
    tr.spec.secrets[0].webhook_tokens_key = Some(WEBHOOK_KEY.into());
    tr
}

/// The app's starting point, as an operator user would set it up: the webhook key holds the
/// current token (the operator writes it from the first distribution on).
async fn seed_webhook_key(w: &World) {
    Api::<Secret>::namespaced(w.client.clone(), NS)
        .patch(
            TARGET,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {WEBHOOK_KEY: w.old_token}})),
        )
        .await
        .unwrap();
}

#[derive(Debug, Default)]
struct Tally {
    /// Validated against the webhook key: accepted / rejected.
    accepted: u64,
    rejected: u64,
    /// The control: a validator that only knows `tokenKey`.
    rejected_by_token_key: u64,
    /// Who signed (the primary at signing time): the old token, or another one.
    signed_with_old: u64,
    signed_with_other: u64,
    /// Successive distinct values of the webhook key.
    webhook_values: Vec<Option<String>>,
}

fn accepts(tokens: &str, params: &[(&str, &str)], signature: &str) -> bool {
    tokens
        .split(',')
        .any(|t| !t.is_empty() && webhook_signature(t, URL, params) == signature)
}

/// Every ~10 ms until `stop`: Twilio signs a request with the current primary, and the app
/// validates it with the Secret's current contents.
async fn validate_webhooks_until(w: &World, stop: &AtomicBool) -> Tally {
    let api: Api<Secret> = Api::namespaced(w.client.clone(), NS);
    let mut t = Tally::default();
    let mut i: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let message_sid = format!("SM{i:032x}");
        let body = format!("order {i} shipped \u{2713}");
        let params = [
            ("MessageSid", message_sid.as_str()),
            ("AccountSid", w.sid.as_str()),
            ("From", "+15005550006"),
            ("To", "+15005550001"),
            ("Body", body.as_str()),
        ];
        let signature = w.sb.twilio.sign_webhook(&w.sid, URL, &params).unwrap();
        if signature == webhook_signature(&w.old_token, URL, &params) {
            t.signed_with_old += 1;
        } else {
            t.signed_with_other += 1;
        }
        // The request reaches the app after signing; it reads the Secret as it is now.
        let secret = api.get(TARGET).await.unwrap();
        let value = |k: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|b| String::from_utf8(b.0.clone()).unwrap())
        };
        let listed = value(WEBHOOK_KEY);
        if t.webhook_values.last() != Some(&listed) {
            t.webhook_values.push(listed.clone());
        }
        if listed
            .as_deref()
            .is_some_and(|l| accepts(l, &params, &signature))
        {
            t.accepted += 1;
        } else {
            t.rejected += 1;
        }
        if !value("TWILIO_AUTH_TOKEN")
            .as_deref()
            .is_some_and(|l| accepts(l, &params, &signature))
        {
            t.rejected_by_token_key += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t
}

/// The webhook key's successive values with tokens named `old`/`new`.
fn named(values: &[Option<String>], old: &str, new: &str) -> Vec<String> {
    values
        .iter()
        .map(|v| match v {
            None => "<absent>".to_string(),
            Some(v) => v
                .split(',')
                .map(|t| match t {
                    _ if t == old => "old",
                    _ if t == new => "new",
                    _ => "<unknown token>",
                })
                .collect::<Vec<_>>()
                .join(","),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_validator_on_the_secret_accepts_every_signature_across_a_rotation() {
    let w = world(2).await;
    // A rollout that takes a while, so the window between distribution and promotion (where a
    // validator that only knows tokenKey fails) is well sampled.
    w.sb.workloads.set_readiness_delay(
        WorkloadKind::Deployment,
        NS,
        "api",
        Duration::from_millis(300),
    );
    seed_webhook_key(&w).await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &webhook_rotation(&w)).await;

    let stop = AtomicBool::new(false);
    let run = async {
        let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
        // Keep validating a little after retirement.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        st
    };
    let (tally, st) = tokio::join!(validate_webhooks_until(&w, &stop), run);
    let (_, refused) = traffic.stop().await;
    ctl.abort();

    assert_eq!(st.phase, Some(Phase::Ready));
    let new = w.sb.twilio.primary_token(&w.sid).unwrap();
    assert_ne!(new, w.old_token);
    assert_eq!(
        tally.rejected, 0,
        "a genuine Twilio signature was rejected: {tally:?}"
    );
    assert!(
        tally.accepted >= 100,
        "too few webhooks validated: {tally:?}"
    );
    assert!(
        tally.signed_with_old > 0 && tally.signed_with_other > 0,
        "the signer changed during the run (old primary, then new): {tally:?}"
    );
    assert!(
        tally.rejected_by_token_key > 0,
        "the control (tokenKey only) must reject requests signed with the old primary while the new token is distributed: {tally:?}"
    );
    // The key at each step, the signing token first.
    assert_eq!(
        named(&tally.webhook_values, &w.old_token, &new),
        ["old", "old,new", "new,old", "new"],
        "webhook key over the rotation"
    );
    assert_eq!(
        secret_value(&w, TARGET, WEBHOOK_KEY).await.as_deref(),
        Some(new.as_str()),
        "after retirement the webhook key holds exactly the new token"
    );
    assert_eq!(refused, 0, "no consumer API call was refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_abort_the_webhook_key_holds_only_the_old_token() {
    let w = world(2).await;
    w.sb.workloads
        .fail_new_pods(WorkloadKind::Deployment, NS, "api", true);
    seed_webhook_key(&w).await;
    let ctl = start_controller(&w, Failpoints::default());
    let mut tr = webhook_rotation(&w);
    tr.spec.rollout_timeout = "2s".into();
    create(&w, &tr).await;

    let stop = AtomicBool::new(false);
    let run = async {
        let held = wait_status(&w, "twilio", Duration::from_secs(30), |s| {
            s.conditions.iter().any(|c| {
                c.type_ == "Degraded" && c.status == "True" && c.reason == "RolloutTimeout"
            })
        })
        .await;
        let new = w.sb.twilio.secondary_token(&w.sid).expect("a staged token");
        let during = secret_value(&w, TARGET, WEBHOOK_KEY).await;
        w.sb.workloads
            .fail_new_pods(WorkloadKind::Deployment, NS, "api", false);
        Api::<TokenRotation>::namespaced(w.client.clone(), NS)
            .patch(
                "twilio",
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"metadata": {"annotations": {"tokenrotator.io/abort": "yes"}}}),
                ),
            )
            .await
            .unwrap();
        let st = wait_status(&w, "twilio", Duration::from_secs(30), |s| {
            s.phase == Some(Phase::Aborted)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        (held, new, during, st)
    };
    let (tally, (held, new, during, st)) = tokio::join!(validate_webhooks_until(&w, &stop), run);
    ctl.abort();

    assert_eq!(held.phase, Some(Phase::RollingOut));
    assert_eq!(
        during,
        Some(format!("{},{new}", w.old_token)),
        "while held before promotion: the signing (old) token first, then the new one"
    );
    assert_eq!(st.phase, Some(Phase::Aborted));
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
    assert!(w.sb.twilio.secondary_token(&w.sid).is_none());
    assert_eq!(
        secret_value(&w, TARGET, WEBHOOK_KEY).await.as_deref(),
        Some(w.old_token.as_str()),
        "after an abort the webhook key holds exactly the old token"
    );
    assert_eq!(tally.rejected, 0, "{tally:?}");
    assert!(tally.accepted >= 100, "{tally:?}");
    assert_eq!(tally.signed_with_other, 0, "never promoted: {tally:?}");
    assert!(
        tally.rejected_by_token_key > 0,
        "the control (tokenKey only) rejects while the new token is distributed: {tally:?}"
    );
    assert_eq!(
        named(&tally.webhook_values, &w.old_token, &new),
        ["old", "old,new", "old"]
    );
}

/// The CRD refuses a webhook key that would overwrite another key the operator writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_key_must_differ_from_the_other_keys() {
    let w = world(1).await;
    let api: Api<TokenRotation> = Api::namespaced(w.client.clone(), NS);
    for clash in [
        "TWILIO_AUTH_TOKEN",
        "TWILIO_PREVIOUS_AUTH_TOKEN",
        "TWILIO_ACCOUNT_SID",
    ] {
        let mut tr = webhook_rotation(&w);
        tr.spec.secrets[0].webhook_tokens_key = Some(clash.into());
        let err = api
            .create(&PostParams::default(), &tr)
            .await
            .expect_err(clash);
        let msg = err.to_string();
        assert!(
            msg.contains(
                "webhookTokensKey must differ from tokenKey, previousTokenKey and accountSidKey"
            ),
            "{clash}: {msg}"
        );
    }
    let mut bad = webhook_rotation(&w);
    bad.spec.secrets[0].webhook_tokens_key = Some("not/a key".into());
    api.create(&PostParams::default(), &bad)
        .await
        .expect_err("a key that is not a valid Secret data key");
    api.create(&PostParams::default(), &webhook_rotation(&w))
        .await
        .expect("a distinct webhook key is accepted");
}
