//! Benchmark of the sandbox API server (not a test): write throughput with 10,000 objects,
//! watch fan-out latency to 50 watchers (p50/p99), and resident memory.
//!
//! Run: `cargo bench -p sandbox --bench apiserver` (release profile).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sandbox::kube::ApiServer;
use serde_json::{json, Value};

const OBJECTS: usize = 10_000;
const WRITERS: usize = 16;
const WATCHERS: usize = 50;
const UPDATES: usize = 1_000;

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

fn pct(sorted: &[u128], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

async fn watcher(url: String, rv: String, expect: usize) -> Vec<u128> {
    let client = reqwest::Client::new();
    let mut resp = client
        .get(format!(
            "{url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"
        ))
        .send()
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut lat = Vec::with_capacity(expect);
    while lat.len() < expect {
        let Some(chunk) = resp.chunk().await.unwrap() else {
            break;
        };
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let ev: Value = serde_json::from_slice(&line).unwrap();
            let sent: u128 = ev["object"]["data"]["sent"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            lat.push(now_nanos().saturating_sub(sent));
        }
    }
    lat
}

fn main() {
    sandbox::kube::ensure_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rss_start = vm_rss_kib();
        let server = ApiServer::start().await.unwrap();
        let url = server.url();

        // Phase 1: 10,000 creates from 16 concurrent writers.
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in (w..OBJECTS).step_by(WRITERS) {
                    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "labels": {"bench": "1"}}, "data": {"sent": "0", "payload": "x".repeat(200)}});
                    let r = client.post(format!("{url}/api/v1/namespaces/default/configmaps")).json(&body).send().await.unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let create_secs = t0.elapsed().as_secs_f64();
        let rss_loaded = vm_rss_kib();

        // Phase 2: 50 watchers, 1,000 updates; latency from write start to receipt at each watcher.
        let rv = reqwest::get(format!("{url}/api/v1/namespaces/default/configmaps?limit=1")).await.unwrap().json::<Value>().await.unwrap()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let mut watchers = Vec::new();
        for _ in 0..WATCHERS {
            watchers.push(tokio::spawn(watcher(url.clone(), rv.clone(), UPDATES)));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let client = Arc::new(reqwest::Client::new());
        let t1 = Instant::now();
        for i in 0..UPDATES {
            let body = json!({"data": {"sent": now_nanos().to_string()}});
            let r = client
                .patch(format!("{url}/api/v1/namespaces/default/configmaps/cm-{}", i % OBJECTS))
                .header("content-type", "application/merge-patch+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            // Paced so the figure is delivery latency, not queueing behind a burst.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let update_secs = t1.elapsed().as_secs_f64();
        let mut lat = Vec::new();
        for w in watchers {
            lat.extend(tokio::time::timeout(Duration::from_secs(120), w).await.unwrap().unwrap());
        }
        lat.sort_unstable();
        let rss_end = vm_rss_kib();

        println!("sandbox API server benchmark ({} build)", if cfg!(debug_assertions) { "debug" } else { "release" });
        println!("  creates:            {OBJECTS} ConfigMaps by {WRITERS} writers in {create_secs:.2}s = {:.0} writes/s", OBJECTS as f64 / create_secs);
        println!("  paced updates:      {UPDATES} merge patches in {update_secs:.2}s (2 ms pause each)");
        println!(
            "  watch fan-out:      {WATCHERS} watchers, {} deliveries, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            pct(&lat, 1.0)
        );
        println!(
            "  VmRSS:              start {} MiB, with {OBJECTS} objects {} MiB, after watch phase {} MiB (client and server share the process)",
            rss_start / 1024,
            rss_loaded / 1024,
            rss_end / 1024
        );
        println!("  objects stored:     {}", server.object_count());
        assert_eq!(lat.len(), WATCHERS * UPDATES, "every watcher saw every update");
    });
}
