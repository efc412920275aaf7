//! Behaviour of the Twilio client against the sandbox emulator: operations, retries only where
//! safe (counted in the emulator's request log), ambiguous POSTs, backoff, timeouts, pagination
//! and response/error types. The no-secret-in-logs check is in `twilio_client_logs.rs`, in its
//! own process: tracing's callsite interest cache is global, so a thread-local subscriber in a
//! binary whose other tests run in parallel misses events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandbox::twilio::{Endpoint as EmuEndpoint, Fault, KeyKind, TwilioSandbox};
use serde_json::json;
use token_rotator::secret::SecretString;
use token_rotator::twilio::{
    CallCounter, CallOutcome, CallRecord, Credentials, DeleteOutcome, Endpoint, ErrorKind,
    RetryPolicy, TransportFailure, TwilioClient, TwilioConfig,
};
use url::Url;

fn config(base: &str) -> TwilioConfig {
    TwilioConfig {
        base_url: Some(Url::parse(base).unwrap()),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        ..TwilioConfig::default()
    }
}

/// Calls the client reported, kept for assertions on attempts.
#[derive(Default)]
struct Recorder(Mutex<Vec<CallRecord>>);

impl Recorder {
    fn last(&self, endpoint: Endpoint) -> CallRecord {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.endpoint == endpoint)
            .cloned()
            .unwrap_or_else(|| panic!("no call recorded for {endpoint}"))
    }
}

struct Env {
    sb: TwilioSandbox,
    client: TwilioClient,
    calls: Arc<Recorder>,
    sid: String,
    token: String,
}

impl Env {
    async fn start() -> Env {
        Self::start_with(|c| c).await
    }

    async fn start_with(tweak: impl FnOnce(TwilioConfig) -> TwilioConfig) -> Env {
        let sb = TwilioSandbox::start().await.unwrap();
        let (sid, token) = sb.create_account();
        let calls = Arc::new(Recorder::default());
        let observer = calls.clone();
        let client = TwilioClient::with_observer(
            tweak(config(&sb.base_url())),
            Arc::new(move |r: &CallRecord| observer.0.lock().unwrap().push(r.clone())),
        )
        .unwrap();
        Env {
            sb,
            client,
            calls,
            sid,
            token,
        }
    }

    fn creds(&self) -> Credentials {
        Credentials::auth_token(&self.sid, SecretString::new(self.token.clone()))
    }

    /// Requests the emulator received for one of its endpoints.
    fn hits(&self, ep: EmuEndpoint) -> usize {
        self.sb
            .request_log()
            .iter()
            .filter(|r| r.endpoint == Some(ep))
            .count()
    }
}

#[tokio::test]
async fn auth_token_rotation_round_trip() {
    let env = Env::start().await;
    let primary = env.creds();
    let account = env.client.fetch_account(&primary).await.unwrap();
    assert_eq!(account.sid, env.sid);

    let secondary = env
        .client
        .create_secondary_auth_token(&primary)
        .await
        .unwrap();
    assert_eq!(secondary.account_sid.as_deref(), Some(env.sid.as_str()));
    assert_eq!(
        Some(secondary.secondary_auth_token.expose().to_owned()),
        env.sb.secondary_token(&env.sid)
    );
    let new_creds = Credentials::auth_token(&env.sid, secondary.secondary_auth_token.clone());
    env.client.fetch_account(&new_creds).await.unwrap();

    let promoted = env
        .client
        .promote_secondary_auth_token(&primary)
        .await
        .unwrap();
    assert_eq!(promoted.auth_token, secondary.secondary_auth_token);
    assert_eq!(
        env.sb.primary_token(&env.sid).as_deref(),
        Some(promoted.auth_token.expose())
    );

    // The old primary stops working at once.
    let err = env.client.fetch_account(&primary).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert_eq!(err.code(), Some(20003));
    // Nothing left to promote or delete.
    let err = env
        .client
        .promote_secondary_auth_token(&new_creds)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = env
        .client
        .delete_secondary_auth_token(&new_creds)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // Every AuthTokens change asked Twilio not to e-mail the owners.
    let emails: Vec<_> = env
        .sb
        .request_log()
        .iter()
        .filter(|r| r.email_notification.is_some())
        .map(|r| r.email_notification)
        .collect();
    assert!(!emails.is_empty());
    assert!(emails.iter().all(|e| *e == Some(false)), "{emails:?}");
}

#[tokio::test]
async fn email_notification_is_sent_when_suppression_is_off() {
    let env = Env::start_with(|c| TwilioConfig {
        suppress_email_notification: false,
        ..c
    })
    .await;
    env.client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap();
    env.client
        .delete_secondary_auth_token(&env.creds())
        .await
        .unwrap();
    let emails: Vec<_> = env
        .sb
        .request_log()
        .iter()
        .filter_map(|r| r.email_notification)
        .collect();
    assert_eq!(emails, vec![true, true]);
}

#[tokio::test]
async fn second_secondary_is_classified_as_already_exists() {
    let env = Env::start().await;
    env.client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap();
    let err = env
        .client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SecondaryAlreadyExists, "{err}");
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.code(), Some(70002));
    assert_eq!(env.hits(EmuEndpoint::SecondaryCreate), 2);
}

#[tokio::test]
async fn create_secondary_dropped_after_apply_is_not_retried_and_outcome_unknown() {
    let env = Env::start().await;
    env.sb
        .set_fault(EmuEndpoint::SecondaryCreate, Fault::drop_after_apply(1));
    let err = env
        .client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(
        err.transport_failure(),
        Some(TransportFailure::ConnectionLost)
    );
    assert_eq!(env.hits(EmuEndpoint::SecondaryCreate), 1);
    assert_eq!(
        env.calls.last(Endpoint::CreateSecondaryAuthToken).attempts,
        1
    );
    // It was applied: a secondary exists whose value we never saw.
    assert!(env.sb.secondary_token(&env.sid).is_some());

    // The documented recovery: delete the unknown secondary, create a fresh one.
    let gone = env
        .client
        .delete_secondary_auth_token(&env.creds())
        .await
        .unwrap();
    assert_eq!(gone, DeleteOutcome::Deleted);
    let fresh = env
        .client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap();
    assert_eq!(
        env.sb.secondary_token(&env.sid).as_deref(),
        Some(fresh.secondary_auth_token.expose())
    );
}

#[tokio::test]
async fn create_secondary_dropped_before_apply_is_still_ambiguous() {
    // The client cannot tell a drop before from a drop after; both must be ambiguous.
    let env = Env::start().await;
    env.sb
        .set_fault(EmuEndpoint::SecondaryCreate, Fault::drop_before_apply(1));
    let err = env
        .client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(env.hits(EmuEndpoint::SecondaryCreate), 1);
    assert!(env.sb.secondary_token(&env.sid).is_none());
}

#[tokio::test]
async fn promote_and_key_creation_are_never_retried_after_a_dropped_response() {
    let env = Env::start().await;
    let creds = env.creds();
    env.client
        .create_secondary_auth_token(&creds)
        .await
        .unwrap();
    env.sb
        .set_fault(EmuEndpoint::Promote, Fault::drop_after_apply(1));
    let err = env
        .client
        .promote_secondary_auth_token(&creds)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(env.hits(EmuEndpoint::Promote), 1);
    assert!(
        env.sb.secondary_token(&env.sid).is_none(),
        "promotion was applied"
    );

    let creds = Credentials::auth_token(
        &env.sid,
        SecretString::new(env.sb.primary_token(&env.sid).unwrap()),
    );
    env.sb
        .set_fault(EmuEndpoint::KeyCreate, Fault::drop_after_apply(1));
    let err = env.client.create_api_key(&creds, "lost").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(env.hits(EmuEndpoint::KeyCreate), 1);

    env.sb
        .set_fault(EmuEndpoint::IamKeyCreate, Fault::drop_after_apply(1));
    let err = env
        .client
        .iam_create_api_key(&creds, "lost-too", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(env.hits(EmuEndpoint::IamKeyCreate), 1);

    // Both keys exist; the caller finds them by name.
    let names: Vec<_> = env
        .client
        .list_api_keys(&creds)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|k| k.friendly_name)
        .collect();
    assert!(names.contains(&"lost".to_owned()) && names.contains(&"lost-too".to_owned()));
}

#[tokio::test]
async fn rate_limited_post_is_retried_with_backoff_then_succeeds() {
    let env = Env::start().await;
    env.sb
        .set_fault(EmuEndpoint::SecondaryCreate, Fault::too_many_requests(2));
    env.client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap();
    assert_eq!(env.hits(EmuEndpoint::SecondaryCreate), 3);
    let call = env.calls.last(Endpoint::CreateSecondaryAuthToken);
    assert_eq!(call.attempts, 3);
    assert_eq!(call.outcome, CallOutcome::Success);
    assert_eq!(call.status, Some(201));
}

#[tokio::test]
async fn rate_limit_outlasting_the_attempts_is_reported_as_rate_limited() {
    let env = Env::start().await;
    env.sb
        .set_fault(EmuEndpoint::AccountFetch, Fault::too_many_requests(10));
    let err = env.client.fetch_account(&env.creds()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert_eq!(err.code(), Some(20429));
    assert_eq!(env.hits(EmuEndpoint::AccountFetch), 4);
    assert_eq!(
        env.calls.last(Endpoint::FetchAccount).outcome,
        CallOutcome::Failure(ErrorKind::RateLimited)
    );
}

#[tokio::test]
async fn server_error_on_get_is_retried() {
    let env = Env::start().await;
    env.sb
        .set_fault(EmuEndpoint::AccountFetch, Fault::server_error(503, 2));
    env.client.fetch_account(&env.creds()).await.unwrap();
    assert_eq!(env.hits(EmuEndpoint::AccountFetch), 3);
    assert_eq!(env.calls.last(Endpoint::FetchAccount).attempts, 3);
}

#[tokio::test]
async fn server_error_on_post_is_not_retried() {
    let env = Env::start().await;
    env.sb
        .set_fault(EmuEndpoint::SecondaryCreate, Fault::server_error(500, 1));
    let err = env
        .client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(err.status(), Some(500));
    assert_eq!(env.hits(EmuEndpoint::SecondaryCreate), 1);
}

#[tokio::test]
async fn delete_retried_after_a_dropped_response_reports_gone_after_retry() {
    let env = Env::start().await;
    let creds = env.creds();
    let key = env
        .client
        .create_api_key(&creds, "to-delete")
        .await
        .unwrap();
    env.sb
        .set_fault(EmuEndpoint::KeyDelete, Fault::drop_after_apply(1));
    let outcome = env.client.delete_api_key(&creds, &key.sid).await.unwrap();
    assert_eq!(outcome, DeleteOutcome::GoneAfterRetry);
    assert_eq!(env.hits(EmuEndpoint::KeyDelete), 2);

    // Dropped before it was applied: the retry deletes it for real.
    let key = env
        .client
        .create_api_key(&creds, "to-delete-2")
        .await
        .unwrap();
    env.sb
        .set_fault(EmuEndpoint::KeyDelete, Fault::drop_before_apply(1));
    let outcome = env.client.delete_api_key(&creds, &key.sid).await.unwrap();
    assert_eq!(outcome, DeleteOutcome::Deleted);
    assert!(env.sb.keys(&env.sid).is_empty());

    // A 404 on the first attempt is a plain NotFound, and 429s do not make it ambiguous.
    let err = env
        .client
        .delete_api_key(&creds, &key.sid)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    env.sb
        .set_fault(EmuEndpoint::IamKeyDelete, Fault::too_many_requests(1));
    let err = env
        .client
        .iam_delete_api_key(&creds, &key.sid)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn timeouts_retry_gets_but_make_posts_ambiguous() {
    let env = Env::start_with(|c| TwilioConfig {
        request_timeout: Duration::from_millis(150),
        retry: RetryPolicy {
            max_attempts: 2,
            ..c.retry.clone()
        },
        ..c
    })
    .await;
    env.sb.set_fault(
        EmuEndpoint::AccountFetch,
        Fault::latency(Duration::from_millis(600)),
    );
    let err = env.client.fetch_account(&env.creds()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert_eq!(err.transport_failure(), Some(TransportFailure::Timeout));
    assert_eq!(env.calls.last(Endpoint::FetchAccount).attempts, 2);

    env.sb.set_fault(
        EmuEndpoint::SecondaryCreate,
        Fault::latency(Duration::from_millis(600)),
    );
    let err = env
        .client
        .create_secondary_auth_token(&env.creds())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(err.transport_failure(), Some(TransportFailure::Timeout));
    assert_eq!(
        env.calls.last(Endpoint::CreateSecondaryAuthToken).attempts,
        1
    );

    env.sb.clear_faults();
    env.client.fetch_account(&env.creds()).await.unwrap();
}

#[tokio::test]
async fn connect_failures_are_retried_even_for_posts() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let counter = Arc::new(CallCounter::new());
    let client = TwilioClient::with_observer(config(&base), counter.clone()).unwrap();
    let creds = Credentials::auth_token(
        "AC00000000000000000000000000000000",
        SecretString::new("0123456789abcdef0123456789abcdef"),
    );
    let err = client
        .create_secondary_auth_token(&creds)
        .await
        .unwrap_err();
    // Nothing reached Twilio, so this is not ambiguous, and it was retried.
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert_eq!(err.transport_failure(), Some(TransportFailure::Connect));
    assert_eq!(
        counter.get(
            Endpoint::CreateSecondaryAuthToken,
            CallOutcome::Failure(ErrorKind::Transient)
        ),
        1
    );
}

#[tokio::test]
async fn listings_follow_every_page_in_both_apis() {
    let env = Env::start_with(|c| TwilioConfig { page_size: 2, ..c }).await;
    let mut seeded: Vec<String> = (0..5)
        .map(|i| {
            env.sb
                .create_key(&env.sid, KeyKind::Standard, &format!("k{i}"))
                .0
        })
        .collect();
    seeded.sort();

    let mut listed: Vec<String> = env
        .client
        .list_api_keys(&env.creds())
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.sid)
        .collect();
    listed.sort();
    assert_eq!(listed, seeded);
    assert_eq!(env.hits(EmuEndpoint::KeysList), 3);

    let mut listed: Vec<String> = env
        .client
        .iam_list_api_keys(&env.creds())
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.sid)
        .collect();
    listed.sort();
    assert_eq!(listed, seeded);
    assert_eq!(env.hits(EmuEndpoint::IamKeysList), 3);
    // Later pages went to the configured host, by path and query only.
    assert!(env
        .sb
        .request_log()
        .iter()
        .any(|r| r.endpoint == Some(EmuEndpoint::IamKeysList) && r.path.contains("PageToken=")));
}

#[tokio::test]
async fn api_key_lifecycle_through_both_apis() {
    let env = Env::start().await;
    let creds = env.creds();

    let key = env
        .client
        .create_api_key(&creds, "rotator-2010")
        .await
        .unwrap();
    let fetched = env.client.fetch_api_key(&creds, &key.sid).await.unwrap();
    assert_eq!(fetched.friendly_name.as_deref(), Some("rotator-2010"));
    // The new key authenticates (the account SID stays in the path).
    let key_creds = Credentials::api_key(&env.sid, &key.sid, key.secret.clone());
    let listed = env.client.iam_list_api_keys(&creds).await.unwrap();
    assert!(listed.iter().any(|k| k.sid == key.sid));

    let policy = json!({ "allow": ["/twilio/messaging/messages/read"] });
    let restricted = env
        .client
        .iam_create_api_key(&creds, "rotator-restricted", Some(&policy))
        .await
        .unwrap();
    let fetched = env
        .client
        .iam_fetch_api_key(&creds, &restricted.sid)
        .await
        .unwrap();
    assert_eq!(fetched.policy, Some(policy));
    let infos = env.sb.keys(&env.sid);
    assert!(infos
        .iter()
        .any(|k| k.sid == restricted.sid && k.kind == KeyKind::Restricted));

    // A standard key may not manage keys.
    let err = env
        .client
        .create_api_key(&key_creds, "nope")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");

    assert_eq!(
        env.client
            .iam_delete_api_key(&creds, &restricted.sid)
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        env.client.delete_api_key(&creds, &key.sid).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(env.sb.keys(&env.sid).is_empty());
    let err = env
        .client
        .fetch_api_key(&creds, &key.sid)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn region_and_edge_hosts_reach_the_emulator_through_the_override() {
    // The override wins over region/edge: plain paths, one host.
    let env = Env::start_with(|c| TwilioConfig {
        region: Some("ie1".into()),
        edge: Some("dublin".into()),
        ..c
    })
    .await;
    env.client.fetch_account(&env.creds()).await.unwrap();
    let log = env.sb.request_log();
    assert_eq!(
        log.last().unwrap().path,
        format!("/2010-04-01/Accounts/{}.json", env.sid)
    );
}

/// Twenty calls at once on one account whose concurrency limit is 2 (50 ms each): with the
/// operator's per-account limit at 2, none is refused; without it (negative control), Twilio
/// refuses the excess with 429 and the client retries them.
async fn twenty_at_once(per_account: usize) -> (u64, usize) {
    let sb = TwilioSandbox::start_with(sandbox::twilio::TwilioConfig {
        latency: Duration::from_millis(50),
        max_concurrent_per_account: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let (sid, token) = sb.create_account();
    let mut cfg = config(&sb.base_url());
    cfg.retry.max_attempts = 20;
    let client = TwilioClient::with_limiter(
        cfg,
        Arc::new(CallCounter::default()),
        token_rotator::twilio::AccountLimiter::new(per_account),
    )
    .unwrap();
    let creds = Credentials::auth_token(&sid, SecretString::new(token));
    let calls = (0..20).map(|_| client.fetch_account(&creds));
    let ok = futures::future::join_all(calls)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    (sb.concurrency_refusals(), ok)
}

#[tokio::test]
async fn per_account_limit_keeps_calls_under_twilios_concurrency_limit() {
    let (refused, ok) = twenty_at_once(2).await;
    assert_eq!(
        (refused, ok),
        (0, 20),
        "limited to 2: no 429 and every call served"
    );
    let (refused, _) = twenty_at_once(0).await;
    assert!(refused > 0, "unlimited: Twilio refused {refused} calls");
}
