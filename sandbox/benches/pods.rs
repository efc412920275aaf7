//! Cost of the workload simulator (not a test): 5,000 simulated pods as API objects (500
//! Deployments of 10 replicas in 50 namespaces, each pod reading a Secret), then a rollout of
//! all 500 Deployments at once. The API server runs as a separate process (`sandbox kube
//! --no-workloads`), so this process's memory and CPU are the simulator's. Prints the time to
//! run the pods, the simulator's and the API server's resident memory per pod, CPU per pod at
//! rest, and the simulator's API writes per second during the rollout.
//!
//! Run: `cargo bench -p sandbox --bench pods` (release profile). `PODS_DEPLOYMENTS=50` for a
//! smaller run.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use sandbox::workloads::{SimulatorOptions, WorkloadSimulator};
use serde_json::json;

const NAMESPACES: usize = 50;
const REPLICAS: usize = 10;

fn proc_status(field: &str) -> u64 {
    proc_status_of("self", field)
}

fn proc_status_of(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process.
fn cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

async fn wait_all(
    sim: &WorkloadSimulator,
    total: usize,
    pred: impl Fn(&sandbox::workloads::SimPod) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let pods = sim.all_pods();
        let n = pods.iter().filter(|p| pred(p)).count();
        if n >= total && pods.len() == total {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(900), "{n}/{total}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn client_for(url: &str, token: Option<&str>) -> kube::Client {
    let mut yaml = sandbox::kube::kubeconfig_yaml_for(url);
    if let Some(t) = token {
        yaml = yaml.replace("  user: {}", &format!("  user:\n    token: {t}"));
    }
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// Writes the simulator made so far, from the server's request counts.
async fn simulator_writes(url: &str) -> usize {
    let v: serde_json::Value = reqwest::get(format!("{url}/sandbox/v1/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["user"] == "simulator")
        .filter(|i| {
            matches!(
                i["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete")
            )
        })
        .map(|i| i["count"].as_u64().unwrap_or(0) as usize)
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let deployments: usize = std::env::var("PODS_DEPLOYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let total = deployments * REPLICAS;
    let dir = std::env::temp_dir().join(format!("pods-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args([
            "kube",
            "--no-workloads",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--kubeconfig")
        .arg(&kc)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server_pid = server.id().to_string();
    sandbox::kube::ensure_crypto_provider();
    while !kc.exists() || reqwest::get(format!("{url}/healthz")).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sandbox::kube::ensure_crypto_provider();
    let client = client_for(&url, None).await;
    // The simulator's own token names it in the server's request counts.
    let sim_client = client_for(&url, Some("simulator")).await;
    let sim = WorkloadSimulator::start(
        sim_client,
        SimulatorOptions {
            tick_interval: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let server_rss_before = proc_status_of(&server_pid, "VmRSS:");
    let rss_before = proc_status("VmRSS:");
    let created = Instant::now();
    for n in 0..NAMESPACES {
        let ns = format!("ns-{n}");
        let o: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &o)
            .await
            .unwrap();
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "twilio", "namespace": ns},
            "stringData": {"TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef"}
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &s)
            .await
            .unwrap();
    }
    for i in 0..deployments {
        let ns = format!("ns-{}", i % NAMESPACES);
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("app-{i}"), "namespace": ns},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                                  "spec": {"containers": [{"name": "app", "image": "shop/api:1",
                                           "envFrom": [{"secretRef": {"name": "twilio"}}]}]}}}
        }))
        .unwrap();
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
    }
    wait_all(&sim, total, |p| p.ready).await;
    let ready_in = created.elapsed();
    // Let the mirror catch up, then measure at rest.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after = proc_status("VmRSS:");
    let server_rss_after = proc_status_of(&server_pid, "VmRSS:");
    let (cpu0, server_cpu0) = (cpu("self"), cpu(&server_pid));
    let rest = Duration::from_secs(10);
    tokio::time::sleep(rest).await;
    let cpu_rest = cpu("self") - cpu0;
    let server_cpu_rest = cpu(&server_pid) - server_cpu0;

    // A rollout of every Deployment at once.
    let writes_before = simulator_writes(&url).await;
    let started = Instant::now();
    for i in 0..deployments {
        let ns = format!("ns-{}", i % NAMESPACES);
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .patch(
                &format!("app-{i}"),
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"template": {"metadata": {"annotations": {"restart": "1"}}}}}),
                ),
            )
            .await
            .unwrap();
    }
    let rolled = {
        let start = Instant::now();
        loop {
            let ds = Api::<Deployment>::all(client.clone())
                .list(&Default::default())
                .await
                .unwrap()
                .items;
            let done = ds
                .iter()
                .filter(|d| {
                    let s = d.status.clone().unwrap_or_default();
                    s.observed_generation == d.metadata.generation
                        && s.updated_replicas == Some(REPLICAS as i32)
                        && s.available_replicas == Some(REPLICAS as i32)
                        && s.replicas == Some(REPLICAS as i32)
                })
                .count();
            if done == deployments {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(900),
                "{done}/{deployments}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let took = started.elapsed().max(rolled);
    let writes = simulator_writes(&url).await - writes_before;
    let rss_peak = proc_status("VmHWM:");
    let server_peak = proc_status_of(&server_pid, "VmHWM:");
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let per_pod = |after: u64, before: u64| after.saturating_sub(before) as f64 / total as f64;
    println!("simulated pods: {total} ({deployments} Deployments x {REPLICAS}, {NAMESPACES} namespaces), with their ReplicaSets as API objects");
    println!("all ready (simulator) in {:.1} s", ready_in.as_secs_f64());
    println!(
        "simulator resident memory: {:.1} MiB before, {:.1} MiB with the pods ({:.1} KiB per pod), peak {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        per_pod(rss_after, rss_before),
        rss_peak as f64 / 1024.0
    );
    println!(
        "API server resident memory: {:.1} MiB before, {:.1} MiB with the pods ({:.1} KiB per pod, including its watch event log), peak {:.1} MiB",
        server_rss_before as f64 / 1024.0,
        server_rss_after as f64 / 1024.0,
        per_pod(server_rss_after, server_rss_before),
        server_peak as f64 / 1024.0
    );
    println!(
        "CPU at rest: simulator {:.1} % of a core ({:.2} µs per pod per second), API server {:.1} %",
        cpu_rest.as_secs_f64() / rest.as_secs_f64() * 100.0,
        cpu_rest.as_secs_f64() * 1e6 / rest.as_secs_f64() / total as f64,
        server_cpu_rest.as_secs_f64() / rest.as_secs_f64() * 100.0
    );
    println!(
        "rollout of {deployments} Deployments: {:.1} s, {writes} simulator writes ({:.0} per second)",
        took.as_secs_f64(),
        writes as f64 / took.as_secs_f64()
    );
}
