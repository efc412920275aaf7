//! Cost of a `/metrics` scrape as the number of TokenRotations grows: the per-resource gauges are
//! rebuilt from a snapshot at every scrape, so this is the figure to watch.
//!
//! `cargo bench --bench metrics` prints, per size: time per scrape (median of 20) and body size.

use std::time::Instant;
use token_rotator::api::{Phase, RotationResult, TokenRotationStatus};
use token_rotator::metrics::Metrics;
use token_rotator::time::to_k8s;

fn main() {
    for n in [100usize, 1_000, 10_000] {
        let m = Metrics::new();
        let now = chrono::Utc::now();
        for i in 0..n {
            let status = TokenRotationStatus {
                phase: Some(Phase::Ready),
                last_rotation_time: Some(to_k8s(now - chrono::Duration::hours(i as i64 % 500))),
                next_rotation_time: Some(to_k8s(now + chrono::Duration::hours(24))),
                last_result: Some(RotationResult::Succeeded),
                rotations: 1,
                ..Default::default()
            };
            let ns = format!("team-{}", i % 50);
            let name = format!("twilio-{i}");
            m.status_written(&ns, &name, &TokenRotationStatus::default(), &status, now);
            m.reconciled(&ns, &name);
        }
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let body = m.encode().expect("encode");
            times.push(t.elapsed());
            bytes = body.len();
        }
        times.sort();
        println!(
            "{n:>6} TokenRotations: scrape median {:>8.2} ms, max {:>8.2} ms, body {:>6} KiB",
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            bytes / 1024
        );
    }
}
