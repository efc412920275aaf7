//! End to end: notifications reach a local receiver (a generic webhook and a Slack-compatible
//! one, URLs read from a Secret) when a rotation succeeds or holds, carry no token, and a
//! receiver that is down never blocks a rotation.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sandbox::workloads::WorkloadKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use token_rotator::api::Phase;
use token_rotator::controller::failpoints::Failpoints;
use token_rotator::notify::{Delivery, Notifier, Sink, SinkKind};

/// A local HTTP receiver recording (path, JSON body) of every POST.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, serde_json::Value)>>>) {
    use axum::extract::{Json, OriginalUri, State};
    type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;
    let seen: Seen = Arc::default();
    async fn take(State(seen): State<Seen>, uri: OriginalUri, Json(body): Json<serde_json::Value>) {
        seen.lock().unwrap().push((uri.path().to_owned(), body));
    }
    let app = axum::Router::new()
        .fallback(axum::routing::post(take))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn url_secret(w: &World, name: &str, url: &str) {
    let s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": NS}, "stringData": {"url": url}
    }))
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), NS)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

fn quick() -> Delivery {
    Delivery {
        attempts: 3,
        first_backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_are_announced_to_webhook_and_slack_sinks_without_tokens() {
    let w = world(1).await;
    let (url, seen) = receiver().await;
    url_secret(&w, "hook", &format!("{url}/hook")).await;
    url_secret(&w, "slack", &format!("{url}/slack")).await;
    let sinks = vec![
        Sink::parse(SinkKind::Webhook, &format!("{NS}/hook:url")).unwrap(),
        Sink::parse(SinkKind::Slack, &format!("{NS}/slack:url")).unwrap(),
    ];
    let mut cfg = config(&w, Failpoints::default());
    cfg.notifier = Notifier::start(w.client.clone(), sinks, quick());
    let ctl = start_controller_with(&w, cfg);
    // First a hold (the rollout outlasts its timeout), then, once it finishes, a success.
    w.sb.workloads
        .set_readiness_delay(WorkloadKind::Deployment, NS, "api", Duration::from_secs(4));
    let mut tr = manual_rotation(&w, "twilio");
    tr.spec.rollout_timeout = "1s".into();
    create(&w, &tr).await;
    wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        let got = seen.lock().unwrap().clone();
        let has = |path: &str, reason: &str| {
            got.iter().any(|(p, b)| {
                p == path
                    && (b["reason"] == reason
                        || b["text"].as_str().is_some_and(|t| t.contains(reason)))
            })
        };
        if ["/hook", "/slack"]
            .iter()
            .all(|p| has(p, "RotationHeld") && has(p, "RotationSucceeded"))
        {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing notices: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ctl.abort();
    let hook = got
        .iter()
        .find(|(p, b)| p == "/hook" && b["reason"] == "RotationSucceeded")
        .unwrap();
    assert_eq!(hook.1["resource"], "TokenRotation shop/twilio");
    assert_eq!(hook.1["type"], "Normal");
    let new = w.sb.twilio.primary_token(&w.sid).unwrap();
    let dump = serde_json::to_string(&got).unwrap();
    assert!(
        !dump.contains(&new) && !dump.contains(&w.old_token),
        "a token in a notification"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_never_blocks_a_rotation() {
    let w = world(1).await;
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    url_secret(&w, "hook", &format!("http://127.0.0.1:{port}/hook")).await;
    let sinks = vec![
        Sink::parse(SinkKind::Webhook, &format!("{NS}/hook:url")).unwrap(),
        // And one whose Secret does not exist.
        Sink::parse(SinkKind::Slack, &format!("{NS}/missing:url")).unwrap(),
    ];
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let mut cfg = config(&w, Failpoints::default());
    cfg.notifier = Notifier::start(
        w.client.clone(),
        sinks,
        Delivery {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        },
    );
    let ctl = start_controller_with(&w, cfg);
    create(&w, &manual_rotation(&w, "twilio")).await;
    let st = wait_status(&w, "twilio", Duration::from_secs(30), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert_eq!(st.phase, Some(Phase::Ready));
    assert!(served > 0);
    assert_eq!(refused, 0);
}

/// What the Event tests' Events are about.
fn a_token_rotation() -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("tokenrotator.io/v1alpha1".into()),
        kind: Some("TokenRotation".into()),
        namespace: Some(NS.into()),
        name: Some("twilio".into()),
        uid: Some("u1".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_is_counted_into_one_events_series() {
    use k8s_openapi::api::events::v1::Event;
    use token_rotator::controller::events::{Events, Note};
    let w = world(1).await;
    let events = Events::new(w.client.clone(), "token-rotator".into(), None);
    let regarding = a_token_rotation();
    let note = |action, note| Note {
        warning: false,
        reason: "AbortIgnored",
        action,
        note,
    };
    for _ in 0..3 {
        events
            .publish(&note("Rotate-1", "nothing to abort"), &regarding)
            .await
            .unwrap();
    }
    events
        .publish(&note("Rotate-2", "something else"), &regarding)
        .await
        .unwrap();
    let list = Api::<Event>::namespaced(w.client.clone(), NS)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let ours: Vec<&Event> = list
        .iter()
        .filter(|e| e.reason.as_deref() == Some("AbortIgnored"))
        .collect();
    assert_eq!(ours.len(), 2, "one Event per distinct note");
    let repeated = ours
        .iter()
        .find(|e| e.note.as_deref() == Some("nothing to abort"))
        .unwrap();
    assert_eq!(repeated.series.as_ref().map(|s| s.count), Some(3));
    assert_eq!(
        repeated.reporting_controller.as_deref(),
        Some("token-rotator")
    );
    let other = ours
        .iter()
        .find(|e| e.note.as_deref() == Some("something else"))
        .unwrap();
    assert!(other.series.is_none());
}

/// A repeat of an Event deleted meanwhile (by hand, or by its time to live) is a new Event
/// rather than a failed count into the gone one's series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_of_a_deleted_event_is_posted_again() {
    use k8s_openapi::api::events::v1::Event;
    use token_rotator::controller::events::{Events, Note};
    let w = world(1).await;
    let events = Events::new(w.client.clone(), "token-rotator".into(), None);
    let regarding = a_token_rotation();
    let note = Note {
        warning: true,
        reason: "AbortIgnored",
        action: "Rotate-1",
        note: "nothing to abort",
    };
    let api = Api::<Event>::namespaced(w.client.clone(), NS);
    let ours = || async {
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("AbortIgnored"))
            .collect::<Vec<_>>()
    };
    events.publish(&note, &regarding).await.unwrap();
    let first = ours().await;
    assert_eq!(first.len(), 1);
    let name = first[0].metadata.name.clone().unwrap();
    api.delete(&name, &Default::default()).await.unwrap();
    events.publish(&note, &regarding).await.unwrap();
    let again = ours().await;
    assert_eq!(again.len(), 1, "posted again: {again:?}");
    assert_ne!(again[0].metadata.name.as_deref(), Some(name.as_str()));
    assert!(again[0].series.is_none(), "a new Event, not a count");
    // And the new one is what its repeats count into.
    events.publish(&note, &regarding).await.unwrap();
    let counted = ours().await;
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0].series.as_ref().map(|s| s.count), Some(2));
}

/// Events sent by a reconcile are queued, not awaited: they keep their order and their time
/// (taken when sent), a repeat is still counted into one series, and a full lane makes the
/// sender wait rather than drop an Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_events_keep_their_order_and_none_is_dropped() {
    use k8s_openapi::api::events::v1::Event;
    use token_rotator::controller::events::{Events, Note};
    let w = world(1).await;
    let events = Events::new(w.client.clone(), "token-rotator".into(), None);
    let regarding = a_token_rotation();
    // More than a lane holds (256), all for one object, so all in one lane.
    const SENT: usize = 600;
    for i in 0..SENT {
        let (action, note) = (format!("Rotate-{i}"), format!("step {i}"));
        let n = Note {
            warning: false,
            reason: "RotationProgress",
            action: &action,
            note: &note,
        };
        events.send(&n, &regarding).await;
    }
    for _ in 0..3 {
        let n = Note {
            warning: false,
            reason: "AbortIgnored",
            action: "Rotate-x",
            note: "nothing to abort",
        };
        events.send(&n, &regarding).await;
    }
    let api = Api::<Event>::namespaced(w.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list = api.list(&Default::default()).await.unwrap().items;
        let repeated = list
            .iter()
            .find(|e| e.reason.as_deref() == Some("AbortIgnored"));
        let done = list.len() > SENT
            && repeated.and_then(|e| e.series.as_ref()).map(|s| s.count) == Some(3);
        if done || tokio::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut steps: Vec<(usize, _)> = list
        .iter()
        .filter(|e| e.reason.as_deref() == Some("RotationProgress"))
        .map(|e| {
            let i = e.note.as_deref().unwrap()["step ".len()..].parse().unwrap();
            // (The sandbox numbers its writes in order.)
            let written: u64 = e
                .metadata
                .resource_version
                .as_deref()
                .unwrap()
                .parse()
                .unwrap();
            (i, (e.event_time.clone().unwrap().0, written))
        })
        .collect();
    assert_eq!(steps.len(), SENT, "every queued Event was posted");
    steps.sort_by_key(|(i, _)| *i);
    assert!(
        steps.windows(2).all(|p| p[0].1 .0 <= p[1].1 .0),
        "timed when sent (to the microsecond)"
    );
    assert!(
        steps.windows(2).all(|p| p[0].1 .1 < p[1].1 .1),
        "posted in the order they were sent"
    );
    let repeated: Vec<&Event> = list
        .iter()
        .filter(|e| e.reason.as_deref() == Some("AbortIgnored"))
        .collect();
    assert_eq!(repeated.len(), 1, "a repeat is counted, not posted again");
    assert_eq!(repeated[0].series.as_ref().map(|s| s.count), Some(3));
}
