//! `--max-concurrent-rotations`: four resources due at once on four accounts, with room for two.
//! Never more than two rotations are in flight (sampled from one LIST at a time), the others
//! wait in `Pending` with `WaitingForCapacity`, and all four complete with no refused call.

mod common;

use common::*;
use kube::api::{Api, ListParams, PostParams};
use sandbox::Sandbox;
use std::time::Duration;
use token_rotator::api::{Phase, TokenRotation};
use token_rotator::controller::failpoints::Failpoints;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_the_configured_number_of_rotations_run_at_once() {
    let sb = Sandbox::start().await.expect("sandbox");
    let mut accounts = Vec::new();
    for i in 0..4 {
        let ns = format!("team-{i}");
        let (sid, token) = sb.twilio.create_account();
        let creds = serde_json::json!({"TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token});
        populate(
            &sb,
            &ns,
            &token,
            creds,
            &["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"],
            1,
        )
        .await;
        accounts.push((ns, sid, token));
    }
    let w = World {
        client: sb.client(),
        sid: accounts[0].1.clone(),
        old_token: accounts[0].2.clone(),
        old_key: None,
        sb,
    };
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let mut cfg = config(&w, Failpoints::default());
    cfg.max_concurrent_rotations = 2;
    let ctl = start_controller_with(&w, cfg);
    for (ns, sid, _) in &accounts {
        Api::<TokenRotation>::namespaced(w.client.clone(), ns)
            .create(
                &PostParams::default(),
                &rotation_in(
                    ns,
                    sid,
                    "twilio",
                    serde_json::json!({"tokenrotator.io/rotate-now": "1"}),
                ),
            )
            .await
            .unwrap();
    }
    let all: Api<TokenRotation> = Api::all(w.client.clone());
    let (mut most, mut waited) = (0, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let items = all.list(&ListParams::default()).await.unwrap().items;
        let statuses: Vec<_> = items
            .iter()
            .map(|t| t.status.clone().unwrap_or_default())
            .collect();
        let in_flight = statuses.iter().filter(|s| s.rotation.is_some()).count();
        most = most.max(in_flight);
        assert!(in_flight <= 2, "{in_flight} rotations in flight at once");
        waited |= statuses.iter().any(|s| {
            s.phase == Some(Phase::Pending)
                && s.conditions
                    .iter()
                    .any(|c| c.reason == "WaitingForCapacity")
        });
        if statuses.len() == 4
            && statuses
                .iter()
                .all(|s| s.rotations == 1 && s.phase == Some(Phase::Ready))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{statuses:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    eprintln!("capacity 2 of 4: at most {most} in flight; {served} served, {refused} refused");
    assert_eq!(most, 2, "the two places were used");
    assert!(waited, "the others waited for a place");
    assert_eq!(refused, 0);
    for (_, sid, token) in &accounts {
        assert_ne!(
            w.sb.twilio.primary_token(sid).as_deref(),
            Some(token.as_str())
        );
    }
}
