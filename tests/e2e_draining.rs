//! Old pods drain: deleted by the rollout, they stay Terminating for their grace period and keep
//! calling Twilio with the token they started with (the sandbox honours the grace period here,
//! scaled to 3 s). Promotion must wait until they are gone; the negative control promotes as soon as the
//! workloads are through, and the draining pods' calls are refused.

mod common;

use common::*;
use kube::api::Api;
use sandbox::workloads::SimulatorOptions;
use sandbox::Sandbox;
use std::time::Duration;
use token_rotator::api::Phase;
use token_rotator::controller::failpoints::Failpoints;

/// The usual world, but deleted pods drain: the default 30 s grace period, scaled to 3 s.
async fn draining_world() -> World {
    let sb = Sandbox::start_with(SimulatorOptions {
        termination_grace_scale: 0.1,
        ..Default::default()
    })
    .await
    .expect("sandbox");
    let (sid, token) = sb.twilio.create_account();
    let creds = serde_json::json!({"TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token});
    populate(
        &sb,
        NS,
        &token,
        creds,
        &["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"],
        2,
    )
    .await;
    World {
        client: sb.client(),
        sid,
        old_token: token,
        old_key: None,
        sb,
    }
}

async fn rotate(skip_barrier: bool) -> (u64, u64, Vec<sandbox::Refusal>, bool) {
    let w = draining_world().await;
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let mut cfg = config(&w, Failpoints::default());
    cfg.safety.skip_pod_barrier = skip_barrier;
    let ctl = start_controller_with(&w, cfg);
    create(&w, &manual_rotation(&w, "twilio")).await;
    // Did the rotation wait on the draining pods at some point?
    let mut waited = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let st = Api::<token_rotator::api::TokenRotation>::namespaced(w.client.clone(), NS)
            .get("twilio")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        waited |= st
            .message
            .as_deref()
            .is_some_and(|m| m.contains("on the old credential") && m.contains("Draining"));
        if st.rotations == 1 && st.phase == Some(Phase::Ready) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{st:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for every old pod to have drained and stopped.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refusals = traffic.refusals();
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    (served, refused, refusals, waited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_waits_for_pods_draining_on_the_old_token() {
    let (served, refused, refusals, waited) = rotate(false).await;
    eprintln!("draining barrier: {served} served, {refused} refused");
    assert!(served > 0);
    assert!(waited, "the rotation waited on the draining pods");
    assert_eq!(refused, 0, "{refusals:#?}");
}

/// Negative control: without the barrier the same rotation promotes while the old pods drain,
/// and their calls are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_barrier_draining_pods_are_refused() {
    let (served, refused, refusals, _) = rotate(true).await;
    eprintln!("no barrier: {served} served, {refused} refused");
    assert!(refused > 0, "draining pods kept working on a dead token");
    assert!(
        refusals.iter().all(|r| r.phase == "terminating"),
        "only draining pods were refused: {refusals:#?}"
    );
}
