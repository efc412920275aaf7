//! Twilio emulator fault injection, propagation delay, stats and request log, `/_sandbox/` API.

mod twilio_support;

use std::time::{Duration, Instant};

use sandbox::twilio::{Endpoint, Fault, KeyKind, TwilioSandbox};
use serde_json::{json, Value};
use twilio_support::{call, http, try_call};

fn acct_path(sid: &str) -> String {
    format!("/2010-04-01/Accounts/{sid}.json")
}

#[tokio::test]
async fn status_faults_are_not_applied_and_run_out() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    let auth = Some((ac.as_str(), tok.as_str()));
    call(&base, "POST", "/v1/AuthTokens/Secondary", auth, &[])
        .await
        .expect(201);
    let secondary = tw.secondary_token(&ac).unwrap();

    tw.set_fault(Endpoint::Promote, Fault::too_many_requests(2));
    for _ in 0..2 {
        call(&base, "POST", "/v1/AuthTokens/Promote", auth, &[])
            .await
            .expect_error(429, 20429);
    }
    // Nothing was applied; other endpoints unaffected.
    assert_eq!(tw.primary_token(&ac).as_deref(), Some(tok.as_str()));
    call(&base, "GET", &acct_path(&ac), auth, &[])
        .await
        .expect(200);
    call(&base, "POST", "/v1/AuthTokens/Promote", auth, &[])
        .await
        .expect(200);
    assert_eq!(tw.primary_token(&ac), Some(secondary.clone()));

    let auth = Some((ac.as_str(), secondary.as_str()));
    tw.set_fault(Endpoint::Any, Fault::server_error(503, 1));
    call(&base, "GET", &acct_path(&ac), auth, &[])
        .await
        .expect_error(503, 20503);
    tw.set_fault(Endpoint::KeyCreate, Fault::server_error(500, 1));
    call(
        &base,
        "POST",
        &format!("/2010-04-01/Accounts/{ac}/Keys.json"),
        auth,
        &[],
    )
    .await
    .expect_error(500, 20500);
    assert!(tw.keys(&ac).is_empty());
    call(&base, "GET", &acct_path(&ac), auth, &[])
        .await
        .expect(200);

    let log = tw.request_log();
    let faulted: Vec<(Option<u16>, Option<String>)> = log
        .iter()
        .filter(|r| r.fault.is_some())
        .map(|r| (r.status, r.fault.clone()))
        .collect();
    assert_eq!(
        faulted,
        [
            (Some(429), Some("status 429".into())),
            (Some(429), Some("status 429".into())),
            (Some(503), Some("status 503".into())),
            (Some(500), Some("status 500".into())),
        ]
    );
    assert_eq!(
        log.iter().filter(|r| r.twilio_code == Some(20429)).count(),
        2
    );
}

#[tokio::test]
async fn latency_fault_delays_and_concurrency_is_reported() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    tw.set_fault(
        Endpoint::AccountFetch,
        Fault::latency(Duration::from_millis(400)),
    );
    let started = Instant::now();
    let path = acct_path(&ac);
    let calls = (0..3).map(|_| call(&base, "GET", &path, Some((&ac, &tok)), &[]));
    let resps = futures::future::join_all(calls).await;
    // A lower bound only: the sleep guarantees it.
    assert!(started.elapsed() >= Duration::from_millis(400));
    let max_concurrent = resps
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200);
            r.headers["twilio-concurrent-requests"]
                .to_str()
                .unwrap()
                .parse::<u32>()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(
        max_concurrent >= 2,
        "three overlapping requests, saw {max_concurrent}"
    );
    let duration: f64 = resps[0].headers["twilio-request-duration"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(duration >= 0.4, "duration header {duration}");
    assert!(tw
        .request_log()
        .iter()
        .all(|r| r.fault.as_deref() == Some("latency 400ms")));
}

#[tokio::test]
async fn drop_before_apply_changes_nothing() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    let auth = Some((ac.as_str(), tok.as_str()));
    tw.set_fault(Endpoint::SecondaryCreate, Fault::drop_before_apply(2));
    for _ in 0..2 {
        let err = try_call(&base, "POST", "/v1/AuthTokens/Secondary", auth, &[])
            .await
            .err()
            .expect("connection must be dropped");
        assert!(!err.is_status(), "{err}");
    }
    assert_eq!(tw.secondary_token(&ac), None);
    call(&base, "POST", "/v1/AuthTokens/Secondary", auth, &[])
        .await
        .expect(201);
    let drops: Vec<_> = tw
        .request_log()
        .into_iter()
        .filter(|r| r.fault.as_deref() == Some("drop_before_apply"))
        .collect();
    assert_eq!(drops.len(), 2);
    assert!(drops
        .iter()
        .all(|r| r.status.is_none() && r.authenticated.is_none()));
    // Dropped before authentication: not counted.
    assert_eq!(tw.stats_for_secret(&tok).authenticated, 1);
}

#[tokio::test]
async fn drop_after_apply_changes_state_without_answer() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    let auth = Some((ac.as_str(), tok.as_str()));
    let keys = format!("/2010-04-01/Accounts/{ac}/Keys.json");

    // A retried non-idempotent POST creates a second key.
    tw.set_fault(Endpoint::KeyCreate, Fault::drop_after_apply(1));
    assert!(
        try_call(&base, "POST", &keys, auth, &[("FriendlyName", "k")])
            .await
            .is_err()
    );
    assert_eq!(tw.keys(&ac).len(), 1, "applied although unanswered");
    call(&base, "POST", &keys, auth, &[("FriendlyName", "k")])
        .await
        .expect(201);
    assert_eq!(tw.keys(&ac).len(), 2);

    // A promotion whose answer is lost: the caller's old primary is already dead.
    call(&base, "POST", "/v1/AuthTokens/Secondary", auth, &[])
        .await
        .expect(201);
    let secondary = tw.secondary_token(&ac).unwrap();
    tw.set_fault(Endpoint::Promote, Fault::drop_after_apply(1));
    assert!(try_call(&base, "POST", "/v1/AuthTokens/Promote", auth, &[])
        .await
        .is_err());
    assert_eq!(tw.primary_token(&ac), Some(secondary.clone()));
    call(&base, "GET", &acct_path(&ac), auth, &[])
        .await
        .expect_error(401, 20003);
    // The retry with the new token finds no secondary left.
    call(
        &base,
        "POST",
        "/v1/AuthTokens/Promote",
        Some((&ac, &secondary)),
        &[],
    )
    .await
    .expect_error(404, 20404);

    let dropped: Vec<_> = tw
        .request_log()
        .into_iter()
        .filter(|r| r.fault.as_deref() == Some("drop_after_apply"))
        .collect();
    assert_eq!(dropped.len(), 2);
    assert!(dropped
        .iter()
        .all(|r| r.status.is_none() && r.authenticated == Some(true)));
    assert_eq!(
        dropped[1].note.as_deref(),
        Some("applied; would have answered 200")
    );
    assert_eq!(dropped[1].email_notification, Some(true));
}

#[tokio::test]
async fn propagation_delay_refuses_new_credentials() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    let auth = Some((ac.as_str(), tok.as_str()));
    let (seeded, seeded_secret) = tw.create_key(&ac, KeyKind::Main, "seeded");
    tw.set_propagation_delay(Duration::from_secs(60));

    let secondary = call(&base, "POST", "/v1/AuthTokens/Secondary", auth, &[])
        .await
        .expect(201)
        .body["secondary_auth_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_key = call(
        &base,
        "POST",
        &format!("/2010-04-01/Accounts/{ac}/Keys.json"),
        auth,
        &[],
    )
    .await
    .expect(201)
    .body;
    let (sk, secret) = (
        new_key["sid"].as_str().unwrap().to_string(),
        new_key["secret"].as_str().unwrap().to_string(),
    );
    let balance = format!("/2010-04-01/Accounts/{ac}/Balance.json");
    // New credentials are refused; old and seeded ones work.
    call(&base, "GET", &acct_path(&ac), Some((&ac, &secondary)), &[])
        .await
        .expect_error(401, 20003);
    call(&base, "GET", &balance, Some((&sk, &secret)), &[])
        .await
        .expect_error(401, 20003);
    call(&base, "GET", &acct_path(&ac), auth, &[])
        .await
        .expect(200);
    call(&base, "GET", &balance, Some((&seeded, &seeded_secret)), &[])
        .await
        .expect(200);
    assert!(tw
        .request_log()
        .iter()
        .any(|r| r.note.as_deref() == Some("auth token not yet propagated")));

    // Promotion restarts the clock for the promoted token (and the old primary is gone).
    call(&base, "POST", "/v1/AuthTokens/Promote", auth, &[])
        .await
        .expect(200);
    call(&base, "GET", &acct_path(&ac), Some((&ac, &secondary)), &[])
        .await
        .expect_error(401, 20003);

    // A short delay really expires.
    tw.set_propagation_delay(Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(400)).await;
    call(&base, "GET", &acct_path(&ac), Some((&ac, &secondary)), &[])
        .await
        .expect(200);
    call(&base, "GET", &balance, Some((&sk, &secret)), &[])
        .await
        .expect(200);
    assert_eq!(tw.stats_for_secret(&secret).refused, 1);
    assert_eq!(tw.stats_for_secret(&secret).authenticated, 1);
}

#[tokio::test]
async fn stats_count_each_credential() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    let get = |auth: Option<(String, String)>| {
        let base = base.clone();
        let path = acct_path(&ac);
        async move {
            call(
                &base,
                "GET",
                &path,
                auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                &[],
            )
            .await
        }
    };
    let a = |u: &str, p: &str| Some((u.to_string(), p.to_string()));
    get(a(&ac, &tok)).await.expect(200);
    get(a(&ac, &tok)).await.expect(200);
    call(
        &base,
        "POST",
        "/v1/AuthTokens/Secondary",
        Some((&ac, &tok)),
        &[],
    )
    .await
    .expect(201);
    let sec = tw.secondary_token(&ac).unwrap();
    get(a(&ac, &sec)).await.expect(200);
    call(
        &base,
        "POST",
        "/v1/AuthTokens/Promote",
        Some((&ac, &sec)),
        &[],
    )
    .await
    .expect(200);
    get(a(&ac, &tok)).await.expect_error(401, 20003);
    get(a(&ac, &tok)).await.expect_error(401, 20003);
    get(a(&ac, "not-a-token")).await.expect_error(401, 20003);
    get(a("ACffffffffffffffffffffffffffffffff", "x"))
        .await
        .expect_error(401, 20003);
    get(None).await.expect_error(401, 20003);

    let old = tw.stats_for_secret(&tok);
    assert_eq!(old.id, format!("{ac}/auth-token#1"));
    assert_eq!(
        (old.role.as_str(), old.authenticated, old.refused),
        ("retired", 3, 2)
    );
    let new = tw.stats_for_secret(&sec);
    assert_eq!(new.id, format!("{ac}/auth-token#2"));
    assert_eq!(
        (new.role.as_str(), new.authenticated, new.refused),
        ("primary", 2, 0)
    );
    let stats = tw.stats();
    assert_eq!(
        stats.get(&ac).refused,
        1,
        "unknown token under the username"
    );
    assert_eq!(stats.get("ACffffffffffffffffffffffffffffffff").refused, 1);
    assert_eq!(stats.get("(anonymous)").refused, 1);
    assert_eq!((stats.total_authenticated(), stats.total_refused()), (5, 5));
    assert_eq!(tw.stats_for_secret("never-seen").id, "(unknown)");

    let log = tw.request_log();
    assert_eq!(log.len(), 10);
    let refused_old = log
        .iter()
        .filter(|r| {
            r.credential_id.as_deref() == Some(old.id.as_str())
                && r.credential_role.as_deref() == Some("retired")
        })
        .count();
    assert_eq!(refused_old, 2);
    assert!(log
        .iter()
        .all(|r| r.user_agent.as_deref() == Some("twilio-emu-tests/1")));
    let dump = serde_json::to_string(&log).unwrap();
    assert!(!dump.contains(&tok) && !dump.contains(&sec));
}

#[tokio::test]
async fn sandbox_http_api() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let c = http();

    let created: Value = c
        .post(format!("{base}/_sandbox/accounts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ac = created["sid"].as_str().unwrap().to_string();
    let tok = created["auth_token"].as_str().unwrap().to_string();
    assert_eq!(created["region"], "us1");
    let sub: Value = c
        .post(format!("{base}/_sandbox/accounts"))
        .json(&json!({ "parent_sid": ac }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ie: Value = c
        .post(format!("{base}/_sandbox/accounts"))
        .json(&json!({ "sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "t", "region": "ie1" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ie["region"], "ie1");
    call(
        &base,
        "GET",
        &acct_path(sub["sid"].as_str().unwrap()),
        Some((&ac, &tok)),
        &[],
    )
    .await
    .expect(200);

    let r = c
        .post(format!("{base}/_sandbox/faults"))
        .json(&json!({ "endpoint": "account_fetch", "fault": { "kind": "status", "status": 429, "times": 1 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    c.post(format!("{base}/_sandbox/faults"))
        .json(&json!({ "fault": { "kind": "latency", "delay_ms": 1 }, "propagation_delay_ms": 60000 }))
        .send()
        .await
        .unwrap();
    call(&base, "GET", &acct_path(&ac), Some((&ac, &tok)), &[])
        .await
        .expect_error(429, 20429);
    call(
        &base,
        "POST",
        "/v1/AuthTokens/Secondary",
        Some((&ac, &tok)),
        &[],
    )
    .await
    .expect(201);
    let sec = tw.secondary_token(&ac).unwrap();
    call(&base, "GET", &acct_path(&ac), Some((&ac, &sec)), &[])
        .await
        .expect_error(401, 20003);
    let r = c
        .delete(format!("{base}/_sandbox/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    call(&base, "GET", &acct_path(&ac), Some((&ac, &sec)), &[])
        .await
        .expect(200);

    let r = c
        .post(format!("{base}/_sandbox/switches"))
        .json(&json!({ "reject_second_secondary": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(!tw.switches().reject_second_secondary);
    assert!(
        tw.switches().delete_missing_secondary_is_404,
        "omitted fields keep defaults"
    );

    let stats: Value = c
        .get(format!("{base}/_sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let primary_id = format!("{ac}/auth-token#1");
    assert_eq!(stats["credentials"][&primary_id]["authenticated"], 2);
    assert_eq!(stats["credentials"][&primary_id]["role"], "primary");
    let secondary_stats = &stats["credentials"][format!("{ac}/auth-token#2")];
    assert_eq!(
        (
            secondary_stats["authenticated"].as_u64(),
            secondary_stats["refused"].as_u64()
        ),
        (Some(1), Some(1))
    );

    let requests: Vec<Value> = c
        .get(format!("{base}/_sandbox/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests.len(), 5);
    assert_eq!(requests[1]["endpoint"], "account_fetch");
    assert_eq!(requests[1]["status"], 429);
    assert_eq!(requests[1]["twilio_code"], 20429);
    assert_eq!(requests[2]["endpoint"], "secondary_create");
    assert_eq!(requests[2]["product"], "accounts");
    assert_eq!(requests[2]["credential_id"], primary_id.as_str());

    let accounts: Vec<Value> = c
        .get(format!("{base}/_sandbox/accounts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(accounts.len(), 3);
    let bad = c
        .post(format!("{base}/_sandbox/faults"))
        .json(&json!({ "fault": { "kind": "bogus" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    tw.shutdown().await;
    assert!(try_call(&base, "GET", "/_sandbox/stats", None, &[])
        .await
        .is_err());
}

/// Latency delays every answer; the per-account concurrency limit answers 429/20429 to a
/// user's request beyond the limit (counted), while another account is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_the_per_account_concurrency_limit() {
    let tw = TwilioSandbox::start_with(sandbox::twilio::TwilioConfig {
        latency: Duration::from_millis(300),
        max_concurrent_per_account: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = tw.base_url();
    let (a, ta) = tw.create_account();
    let (b, tb) = tw.create_account();
    let started = Instant::now();
    let (pa, ta2) = (acct_path(&a), acct_path(&a));
    let first = call(&base, "GET", &pa, Some((a.as_str(), ta.as_str())), &[]);
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(&base, "GET", &ta2, Some((a.as_str(), ta.as_str())), &[]).await
    };
    let other = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(
            &base,
            "GET",
            &acct_path(&b),
            Some((b.as_str(), tb.as_str())),
            &[],
        )
        .await
    };
    let (first, second, other) = tokio::join!(first, second, other);
    first.expect(200);
    second.expect_error(429, 20429);
    other.expect(200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "latency applied"
    );
    assert_eq!(tw.concurrency_refusals(), 1);
    // Once the first is answered, the account may call again.
    call(
        &base,
        "GET",
        &acct_path(&a),
        Some((a.as_str(), ta.as_str())),
        &[],
    )
    .await
    .expect(200);
}
