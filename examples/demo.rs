//! The demo: a full Twilio Auth Token rotation on the embedded sandbox (in-memory Kubernetes API
//! server, workload simulator, Twilio emulator), with simulated pods calling Twilio throughout.
//! Prints each phase as it happens and a summary; exits non-zero unless the rotation completed
//! with zero refused requests.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use token_rotator::controller::failpoints::Failpoints;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let t0 = Instant::now();
    println!("starting the sandbox: Kubernetes API server, workload simulator, Twilio emulator");
    let w = world(3).await;
    println!(
        "namespace {NS}: Secret twilio-creds, Deployment api (3 pods on the current token), account {}",
        w.sid
    );
    let traffic = consumer_traffic(&w, Duration::from_millis(50));
    let ctl = start_controller(&w, Failpoints::default());
    create(&w, &manual_rotation(&w, "twilio")).await;
    println!("TokenRotation shop/twilio created with tokenrotator.io/rotate-now; the controller takes over\n");

    let api: kube::Api<token_rotator::api::TokenRotation> =
        kube::Api::namespaced(w.client.clone(), NS);
    // A watch sees every status write, so even phases that last milliseconds are shown.
    let mut events = Box::pin(
        kube::runtime::watcher(
            api,
            kube::runtime::watcher::Config::default().fields("metadata.name=twilio"),
        )
        .applied_objects(),
    );
    let start = Instant::now();
    let mut last: Option<String> = None;
    let mut phase_start = Instant::now();
    let mut durations: Vec<(String, Duration)> = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(deadline);
    let ok = loop {
        let tr = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(tr)) => tr,
                Some(Err(e)) => { eprintln!("watch error: {e}"); continue; }
                None => break false,
            },
            _ = &mut deadline => { eprintln!("the rotation did not complete within 120s"); break false; }
        };
        let st = tr.status.unwrap_or_default();
        let Some(phase) = st.phase.map(|p| p.to_string()) else {
            continue;
        };
        if last.as_deref() != Some(phase.as_str()) {
            if let Some(prev) = last.take() {
                durations.push((prev, phase_start.elapsed()));
            }
            println!(
                "[{:>6.2}s] {:<13} {}",
                start.elapsed().as_secs_f64(),
                phase,
                st.message.clone().unwrap_or_default()
            );
            phase_start = Instant::now();
            last = Some(phase);
        }
        if st.rotations >= 1 {
            break true;
        }
    };
    let (served, refused) = traffic.stop().await;
    ctl.abort();

    let new = w.sb.twilio.primary_token(&w.sid).unwrap_or_default();
    let old_refused = !token_works(&w, &w.old_token).await;
    let pods_on_new =
        w.sb.workloads
            .all_pods()
            .iter()
            .filter(|p| p.env.get("TWILIO_AUTH_TOKEN") == Some(&new))
            .count();
    println!("\nsummary");
    for (phase, d) in durations {
        println!("  {phase:<13} {:>7.2}s", d.as_secs_f64());
    }
    println!("  rotation completed: {ok}");
    println!("  pods on the new token: {pods_on_new}/3");
    println!("  old token refused by Twilio: {old_refused}");
    println!("  consumer requests served: {served}");
    println!("  consumer requests refused: {refused}");
    println!("  total time: {:.2}s", t0.elapsed().as_secs_f64());
    if ok && refused == 0 && served > 0 && old_refused && pods_on_new == 3 {
        println!("DEMO OK");
        ExitCode::SUCCESS
    } else {
        println!("DEMO FAILED");
        ExitCode::FAILURE
    }
}
