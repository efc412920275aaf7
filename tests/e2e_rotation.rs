//! End to end: the real controller rotates a Twilio Auth Token in the sandbox while simulated
//! pods keep calling Twilio with whatever their env holds.

mod common;

use common::*;
use std::time::Duration;
use token_rotator::api::Phase;
use token_rotator::controller::failpoints::Failpoints;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rotation_completes_with_zero_refused_consumer_requests() {
    let w = world(3).await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;

    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;

    assert_eq!(st.phase, Some(Phase::Ready));
    assert!(st.rotation.is_none());
    let new = w.sb.twilio.primary_token(&w.sid).expect("primary");
    assert_ne!(new, w.old_token, "the primary token changed");
    assert!(
        w.sb.twilio.secondary_token(&w.sid).is_none(),
        "no secondary left"
    );
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(new.as_str())
    );
    assert_eq!(
        secret_value(&w, "twilio-admin", "authToken")
            .await
            .as_deref(),
        Some(new.as_str()),
        "the operator's own credential follows the rotation"
    );
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_PREVIOUS_AUTH_TOKEN").await,
        None,
        "the previous token is retired after the overlap"
    );
    assert_eq!(
        secret_value(&w, "twilio-rotation-staging", "token").await,
        None
    );
    assert!(
        !token_works(&w, &w.old_token).await,
        "the old token is refused"
    );
    assert!(token_works(&w, &new).await);
    let pods = w.sb.workloads.all_pods();
    assert_eq!(pods.len(), 3);
    assert!(pods
        .iter()
        .all(|p| p.env.get("TWILIO_AUTH_TOKEN") == Some(&new)));
    assert!(served > 0, "pods kept calling Twilio");
    assert_eq!(refused, 0, "no consumer request was refused");
    assert_eq!(
        email_notifications(&w),
        vec![false, false],
        "create and promote, without e-mail by default"
    );

    // Events tell the story, and none of them carries a token.
    let events = wait_events(
        &w,
        &[
            "RotationStarted",
            "SecondaryTokenCreated",
            "SecretsUpdated",
            "WorkloadsRestarted",
            "RolloutComplete",
            "TokenVerified",
            "TokenPromoted",
            "RotationSucceeded",
        ],
    )
    .await;
    // Stopped only now: the last Events follow the last status write.
    ctl.abort();
    let dump = serde_json::to_string(&events).unwrap() + &serde_json::to_string(&st).unwrap();
    assert!(
        !dump.contains(&new) && !dump.contains(&w.old_token),
        "a token leaked into Events or status"
    );
}

/// For each Auth Token change Twilio received (create, promote, delete the secondary): whether
/// it would have e-mailed the account's owners.
fn email_notifications(w: &World) -> Vec<bool> {
    use sandbox::twilio::Endpoint;
    w.sb.twilio
        .request_log()
        .iter()
        .filter(|r| {
            matches!(
                r.endpoint,
                Some(Endpoint::SecondaryCreate | Endpoint::Promote | Endpoint::SecondaryDelete)
            ) && r.status.is_some_and(|s| s < 300)
        })
        .filter_map(|r| r.email_notification)
        .collect()
}

/// `spec.authToken.suppressEmailNotification: false` is honoured per resource: Twilio is asked
/// to e-mail the account's owners about the new token and its promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_notification_is_a_per_resource_choice() {
    let w = world(1).await;
    let ctl = start_controller(&w, Failpoints::default());
    let mut tr = manual_rotation(&w, "twilio");
    tr.spec.auth_token = Some(token_rotator::api::AuthTokenSpec {
        suppress_email_notification: Some(false),
    });
    create(&w, &tr).await;
    wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 1).await;
    ctl.abort();
    assert_eq!(email_notifications(&w), vec![true, true]);
}

/// The naive ordering (promote before the rollout) that the controller avoids: with the same
/// traffic it produces refused requests, which shows the zero-refused check can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_promote_before_rollout_breaks_consumers() {
    let w = world(2).await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let twilio =
        token_rotator::twilio::TwilioClient::new(config(&w, Failpoints::default()).twilio).unwrap();
    let creds = token_rotator::twilio::Credentials::auth_token(&w.sid, w.old_token.clone().into());
    twilio.create_secondary_auth_token(&creds).await.unwrap();
    twilio.promote_secondary_auth_token(&creds).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, refused) = traffic.stop().await;
    assert!(refused > 0, "pods still on the old token must be refused");
}

/// Crash the controller at every step (before the action, between the action and its status
/// write, after the status write, and between creating the secondary and storing it), restart
/// it, and check the rotation still completes with no lost token and no refused consumer call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_crash_at_every_step() {
    let steps = [
        "Stage",
        "Distribute",
        "Restart",
        "Verify",
        "Promote",
        "Retire",
    ];
    let points = std::iter::once("stage:created".to_owned()).chain(crash_points(&steps));
    for point in points {
        let w = world(2).await;
        let traffic = consumer_traffic(&w, Duration::from_millis(20));
        crash_at(&w, &point, async |w| {
            create(w, &manual_rotation(w, "twilio")).await
        })
        .await;
        let st = resume(&w, |s| s.rotations == 1).await;
        let (_, refused) = traffic.stop().await;
        assert_eq!(st.phase, Some(Phase::Ready), "{point}");
        let new = w.sb.twilio.primary_token(&w.sid).unwrap();
        assert_ne!(new, w.old_token, "{point}");
        assert!(
            w.sb.twilio.secondary_token(&w.sid).is_none(),
            "{point}: at most one secondary, none left"
        );
        assert_eq!(
            secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
                .await
                .as_deref(),
            Some(new.as_str()),
            "{point}: the token in use is the one in the Secret"
        );
        assert_eq!(
            refused,
            0,
            "{point}: refused consumer requests; Twilio's refusals by credential: {:?}",
            w.sb.twilio
                .stats()
                .credentials
                .values()
                .map(|c| (&c.role, c.refused))
                .collect::<Vec<_>>()
        );
    }
}

/// A scheduled run that was missed while the operator was down (the last rotation was three
/// days ago on a daily schedule) runs once at start, and the next run is a day later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_scheduled_rotation_runs_once_on_start() {
    use chrono::{Duration as CD, Utc};
    let w = world(2).await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    create(
        &w,
        &rotation(
            &w,
            "twilio",
            serde_json::json!({"tokenrotator.io/schedule": "@every 24h"}),
        ),
    )
    .await;
    last_rotated_days_ago(&w, "twilio", 3, 4).await;
    let ctl = start_controller(&w, Failpoints::default());
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| s.rotations == 5).await;
    // Give a second run the chance to (wrongly) start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st2 = wait_status(&w, "twilio", Duration::from_secs(5), |_| true).await;
    let (_, refused) = traffic.stop().await;
    ctl.abort();
    assert_eq!(
        st2.rotations, 5,
        "the missed runs are run once, not replayed"
    );
    assert_eq!(st2.phase, Some(Phase::Ready));
    let last = token_rotator::time::from_k8s(st.last_rotation_time.as_ref().unwrap());
    let next = token_rotator::time::from_k8s(st.next_rotation_time.as_ref().unwrap());
    assert!(
        last > Utc::now() - CD::minutes(1),
        "lastRotationTime is this rotation"
    );
    assert!(
        next >= last + CD::hours(24) && next <= last + CD::hours(24) + CD::minutes(5),
        "{last} -> {next}"
    );
    let notes: Vec<String> = wait_events(&w, &["RotationStarted", "RotationSucceeded"])
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RotationStarted"))
        .filter_map(|e| e.note)
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("schedule"), "{notes:?}");
    assert_eq!(refused, 0);
    assert_ne!(w.sb.twilio.primary_token(&w.sid).unwrap(), w.old_token);
}

/// The abort path crashes too: at every step of rolling back (restoring the Secrets, deleting
/// the unused secondary), before the action, between it and its status write, and after it.
/// A restarted controller finishes the abort: the old token everywhere, no secondary left, no
/// refused call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_crash_at_every_step_of_an_abort() {
    use sandbox::workloads::WorkloadKind;
    for point in crash_points(&["RestoreSecrets", "DeleteSecondary"]) {
        let w = world(1).await;
        w.sb.workloads.set_readiness_delay(
            WorkloadKind::Deployment,
            NS,
            "api",
            Duration::from_millis(1500),
        );
        let traffic = consumer_traffic(&w, Duration::from_millis(20));
        crash_at(&w, &point, async |w| {
            create(w, &manual_rotation(w, "twilio")).await;
            wait_phase(w, "twilio", Phase::RollingOut).await;
            annotate(w, "twilio", "tokenrotator.io/abort", "1").await;
        })
        .await;
        let st = resume(&w, |s| s.phase == Some(Phase::Aborted)).await;
        let (_, refused) = traffic.stop().await;
        assert!(st.rotation.is_none(), "{point}");
        assert_eq!(
            w.sb.twilio.primary_token(&w.sid).as_deref(),
            Some(w.old_token.as_str()),
            "{point}"
        );
        assert!(
            w.sb.twilio.secondary_token(&w.sid).is_none(),
            "{point}: the unused secondary is deleted"
        );
        assert_token_everywhere(&w, &w.old_token, &point).await;
        assert_eq!(refused, 0, "{point}");
    }
}
