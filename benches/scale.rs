//! Scale (not a test): the built operator as a child process against the sandbox (API server,
//! workload simulator, Twilio emulator with 50 ms latency and a per-account concurrency limit
//! of 2 that answers 429/20429 beyond it; the operator gets the same limit). Prints:
//!
//! 1. how long until every TokenRotation is reconciled, and the operator's resident memory
//!    idle (and its peak so far) at 100 namespaces, 10,000 Secrets, 5,000 Deployments and
//!    1,000 TokenRotations (API key rotations on 100 accounts, scheduled a month out);
//! 2. its API requests and the CPU of operator and sandbox over 20 idle seconds;
//! 3. one rotation alone (a fresh account): wall time, Twilio calls, Kubernetes writes;
//! 4. every rotation due at once (asked 64 at a time): total wall time against the mandatory
//!    waits (API key rotations of one account writing different Secrets run together),
//!    p50/p99 from each one's request to Ready, a rotation's mean time by phase (from the
//!    operator's histogram), reconciles, 429s, Twilio calls and Kubernetes writes per
//!    rotation, requests by verb, peak RSS (and the size and cost of a `/metrics` scrape), CPU
//!    of operator and sandbox;
//! 5. every rotation due at once again, now with a pod per consumer that is ready 10 s after it
//!    starts (so each rollout takes that long, as a real app's does): one alone, the total,
//!    p50/p99, and the time their number adds (the total less one alone);
//! 6. resident memory after 1,000 unrelated 1 MiB Secrets;
//! 7. one rotation per namespace at once with those Secrets in place (the copy check reads
//!    them): time, peak memory, Secret LISTs.
//!
//! Run: `cargo bench --bench scale` (release). Smaller: `SCALE_NAMESPACES=10`; start and idle
//! only: `SCALE_IDLE_ONLY=1`. Another operator binary (the image's is static, for musl):
//! `SCALE_OPERATOR_BIN=path`. The operator inherits the environment (e.g.
//! `TOKEN_ROTATOR_RECONCILE_CONCURRENCY`).

use futures::StreamExt;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use sandbox::kube::{ApiServer, ApiServerOptions};
use sandbox::twilio::{KeyKind, TwilioConfig, TwilioSandbox};
use sandbox::workloads::{SimulatorOptions, WorkloadKind, WorkloadSimulator};
use serde_json::json;
use token_rotator::api::{ClusterTokenRotation, Phase, TokenRotation};

const SECRETS_PER_NS: usize = 100;
const DEPLOYMENTS_PER_NS: usize = 50;
const TRS_PER_NS: usize = 10;
const ACCOUNTS: usize = 100;
const OPERATOR: &str = "operator";
/// Concurrent requests the Twilio emulator serves per account (429 beyond). The operator is
/// given the same limit unless `TOKEN_ROTATOR_TWILIO_CONCURRENCY_PER_ACCOUNT` says otherwise
/// (its default, 4, is above this emulator's, so it would meet 429s).
const TWILIO_ACCOUNT_LIMIT: usize = 2;
/// The last round's pods: ready this long after they start, as an app behind a readiness
/// probe (the first rounds' Deployments have no pods, so their rollouts end at once).
const READY_AFTER: Duration = Duration::from_secs(10);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// User plus system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 from the state; 100 ticks/s.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn mib(k: u64) -> f64 {
    k as f64 / 1024.0
}

/// Requests the operator made since `from` (an index into the audit log), by verb and resource.
fn requests_since(api: &ApiServer, from: usize) -> (usize, BTreeMap<String, u64>) {
    let log = api.audit_log();
    let mut by = BTreeMap::new();
    for r in log.iter().skip(from).filter(|r| r.user == OPERATOR) {
        *by.entry(format!("{} {}", r.verb, r.resource)).or_default() += 1;
    }
    (log.len(), by)
}

fn writes(by: &BTreeMap<String, u64>) -> u64 {
    by.iter()
        .filter(|(k, _)| {
            ["create ", "update ", "patch ", "delete "]
                .iter()
                .any(|v| k.starts_with(v))
        })
        .map(|(_, n)| n)
        .sum()
}

fn show(by: &BTreeMap<String, u64>) -> String {
    by.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_rotation(ns: &str, name: &str, sid: &str, secret: &str) -> TokenRotation {
    serde_json::from_value(json!({
        "apiVersion": "tokenrotator.io/v1alpha1", "kind": "TokenRotation",
        // A slot a month out: idle until then.
        "metadata": {"name": name, "namespace": ns, "annotations": {"tokenrotator.io/schedule": "0 3 1 1 *"}},
        "spec": {
            "twilio": {"accountSid": sid, "credentialsSecretRef": {"name": "twilio-admin", "key": "authToken"}},
            "apiKey": {},
            "secrets": [{"name": secret, "accountSidKey": "TWILIO_ACCOUNT_SID",
                         "keySidKey": "TWILIO_API_KEY", "tokenKey": "TWILIO_API_SECRET"}],
            "rolloutTimeout": "10m", "propagationDelay": "1s", "overlap": "1s"
        }
    }))
    .expect("TokenRotation")
}

fn deployment(ns: &str, name: &str, secret: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            // No pods: the simulator keeps 5,000 of them cheap; rollouts complete at once.
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": "shop/app:1",
                                  "env": [{"name": "TWILIO_API_SECRET", "valueFrom": {"secretKeyRef": {"name": secret, "key": "TWILIO_API_SECRET"}}}]}]}}
        }
    }))
    .expect("Deployment")
}

async fn statuses(client: &kube::Client) -> Vec<token_rotator::api::TokenRotationStatus> {
    Api::<TokenRotation>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|t| t.status.unwrap_or_default())
        .collect()
}

/// What the bench reads of one `/metrics` scrape.
struct Scrape {
    /// The phase histogram, summed over namespaces: phase -> (seconds, phases ended).
    phases: BTreeMap<String, (f64, u64)>,
    /// Reconciles so far, summed over resources.
    reconciles: f64,
    /// The size of the whole exposition, in bytes.
    bytes: usize,
}

async fn scrape(port: u16) -> Scrape {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut body = String::new();
    if let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        let ask = b"GET /metrics HTTP/1.0\r\nHost: operator\r\n\r\n";
        if conn.write_all(ask).await.is_ok() {
            let _ = conn.read_to_string(&mut body).await;
        }
    }
    let mut by = BTreeMap::<String, (f64, u64)>::new();
    let mut reconciles = 0.0;
    for line in body.lines() {
        if let Some(r) = line.strip_prefix("token_rotator_reconciles_total{") {
            reconciles += r
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_default();
            continue;
        }
        let (sum, rest) = if let Some(r) =
            line.strip_prefix("token_rotator_phase_duration_seconds_sum{")
        {
            (true, r)
        } else if let Some(r) = line.strip_prefix("token_rotator_phase_duration_seconds_count{") {
            (false, r)
        } else {
            continue;
        };
        let phase = rest
            .split("phase=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        let e = by.entry(phase).or_default();
        if sum {
            e.0 += value;
        } else {
            e.1 += value as u64;
        }
    }
    Scrape {
        phases: by,
        reconciles,
        bytes: body.len(),
    }
}

/// Waits until the TokenRotation has ended `rotations` rotations and is Ready; the time since
/// `since`.
async fn until_ready(
    client: &kube::Client,
    ns: &str,
    name: &str,
    rotations: i64,
    since: Instant,
) -> Duration {
    loop {
        let st = Api::<TokenRotation>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        if st.rotations >= rotations && st.phase == Some(Phase::Ready) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(300),
            "{ns}/{name}: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks every rotation now (`rotate-now: ask`, 64 requests at a time) and waits until each has
/// ended `rotations` rotations.
struct Due {
    total: Duration,
    asking: Duration,
    /// Each one's time from its own request to Ready, sorted.
    times: Vec<Duration>,
    /// The operator's peak RSS seen meanwhile (KiB).
    peak_rss: u64,
}

async fn due_at_once(
    client: &kube::Client,
    trs: &[(String, String, String)],
    ask: &str,
    rotations: i64,
    pid: u32,
) -> Due {
    let due = Instant::now();
    let asked_at: BTreeMap<(String, String), Duration> =
        futures::stream::iter(trs.iter().map(|(ns, name, _)| {
            let client = client.clone();
            async move {
                Api::<TokenRotation>::namespaced(client, ns)
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {"tokenrotator.io/rotate-now": ask}}})),
                    )
                    .await
                    .expect("rotate-now");
                ((ns.clone(), name.clone()), due.elapsed())
            }
        }))
        .buffer_unordered(64)
        .collect()
        .await;
    let asking = due.elapsed();
    let mut done_at: BTreeMap<(String, String), Duration> = BTreeMap::new();
    let mut peak_rss = 0;
    // A watch, not a list per look: listing 1,000 resources with their status every second
    // cost the API server on the same two cores; the watch sends each change once, on time.
    let mut changes = std::pin::pin!(kube::runtime::watcher(
        Api::<TokenRotation>::all(client.clone()),
        kube::runtime::watcher::Config::default(),
    ));
    let mut rss_tick = tokio::time::interval(Duration::from_millis(200));
    while done_at.len() < trs.len() {
        tokio::select! {
            ev = changes.next() => {
                let t = match ev {
                    Some(Ok(kube::runtime::watcher::Event::Apply(t)))
                    | Some(Ok(kube::runtime::watcher::Event::InitApply(t))) => t,
                    Some(_) => continue,
                    None => panic!("the TokenRotation watch ended"),
                };
                let st = t.status.clone().unwrap_or_default();
                if st.rotations >= rotations && st.phase == Some(Phase::Ready) {
                    let key = (
                        t.metadata.namespace.clone().unwrap_or_default(),
                        t.metadata.name.clone().unwrap_or_default(),
                    );
                    done_at.entry(key).or_insert_with(|| due.elapsed());
                }
            }
            _ = rss_tick.tick() => {
                peak_rss = peak_rss.max(kib(pid, "VmRSS:"));
                assert!(
                    due.elapsed() < Duration::from_secs(1800),
                    "{} of {} rotations done after 30 min",
                    done_at.len(),
                    trs.len()
                );
            }
        }
    }
    let total = due.elapsed();
    let mut times: Vec<Duration> = done_at
        .iter()
        .map(|(k, at)| at.saturating_sub(asked_at.get(k).copied().unwrap_or_default()))
        .collect();
    times.sort();
    Due {
        total,
        asking,
        times,
        peak_rss: peak_rss.max(kib(pid, "VmHWM:")),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    token_rotator::tls::install_crypto_provider();
    let namespaces = env_usize("SCALE_NAMESPACES", 100);
    let accounts = ACCOUNTS.min(namespaces * TRS_PER_NS);
    let api = ApiServer::start_with(ApiServerOptions::default())
        .await
        .expect("API server");
    let client = api.client().await;
    // The simulator's pass walks all 5,000 workloads (settled ones are skipped by uid, their
    // ReplicaSets left as written), where a real Deployment controller's work per change is one
    // object. It passes on every change it watches and on a periodic tick
    // (for time-driven progress, which the first rounds' pod-less Deployments do not have):
    // ticks once a second, and passes at least 50 ms apart (back to back, with 1,000 rotations
    // writing, they took a third of the sandbox's CPU), keep that cost off the operator's figures.
    // Its writes go 10 at a time, as kube-controller-manager's 5 Deployment and 5 ReplicaSet
    // syncs do: one after another, 1,000 restarts queued ~5,000 writes behind each other and
    // RollingOut took 17-18 s of a rotation's mean instead of 2.
    let sim_options = SimulatorOptions {
        tick_interval: Duration::from_secs(1),
        min_pass_gap: Duration::from_millis(50),
        concurrent_writes: 10,
        ..SimulatorOptions::default()
    };
    let sim = WorkloadSimulator::start(client.clone(), sim_options)
        .await
        .expect("simulator");
    let twilio = TwilioSandbox::start_with(TwilioConfig {
        latency: Duration::from_millis(50),
        max_concurrent_per_account: Some(TWILIO_ACCOUNT_LIMIT),
        ..TwilioConfig::default()
    })
    .await
    .expect("Twilio emulator");

    // The world.
    let setup = Instant::now();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in [TokenRotation::crd(), ClusterTokenRotation::crd()] {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD");
    }
    let creds: Vec<(String, String)> = (0..accounts).map(|_| twilio.create_account()).collect();
    let pp = PostParams::default();
    let mut trs = Vec::new();
    for n in 0..namespaces {
        let ns = format!("team-{n:03}");
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
        Api::<Namespace>::all(client.clone())
            .create(&pp, &namespace)
            .await
            .expect("namespace");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        for i in 0..SECRETS_PER_NS {
            // The first TRS_PER_NS are the rotations' targets, holding a key made by hand.
            let (data, name) = if i < TRS_PER_NS {
                let (sid, _) = &creds[(n * TRS_PER_NS + i) % accounts];
                let (key, secret) = twilio.create_key(sid, KeyKind::Standard, "by hand");
                (
                    json!({"TWILIO_ACCOUNT_SID": sid, "TWILIO_API_KEY": key, "TWILIO_API_SECRET": secret}),
                    format!("key-{i}"),
                )
            } else {
                (
                    json!({"config": format!("value-{n}-{i}")}),
                    format!("app-{i}"),
                )
            };
            let s: Secret = serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": ns}, "stringData": data}),
            )
            .expect("secret");
            secrets.create(&pp, &s).await.expect("secret");
        }
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        for d in 0..DEPLOYMENTS_PER_NS {
            let secret = if d < TRS_PER_NS {
                format!("key-{d}")
            } else {
                format!("app-{}", TRS_PER_NS + d % (SECRETS_PER_NS - TRS_PER_NS))
            };
            deployments
                .create(&pp, &deployment(&ns, &format!("app-{d}"), &secret))
                .await
                .expect("deployment");
        }
        for i in 0..TRS_PER_NS {
            let (sid, _) = &creds[(n * TRS_PER_NS + i) % accounts];
            trs.push((ns.clone(), format!("key-{i}"), sid.clone()));
        }
    }
    // Each rotation's admin credential: one Secret per namespace per account would be 1,000
    // more Secrets; the rotations of a namespace share `twilio-admin` only when they share an
    // account, so each gets its own key in one Secret.
    for n in 0..namespaces {
        let ns = format!("team-{n:03}");
        let mut data = serde_json::Map::new();
        for i in 0..TRS_PER_NS {
            let (_, token) = &creds[(n * TRS_PER_NS + i) % accounts];
            data.insert(format!("authToken-{i}"), json!(token));
        }
        let s: Secret = serde_json::from_value(
            json!({"metadata": {"name": "twilio-admin", "namespace": ns}, "stringData": data}),
        )
        .expect("secret");
        Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&pp, &s)
            .await
            .expect("admin secret");
    }
    for (i, (ns, secret, sid)) in trs.iter().enumerate() {
        let mut tr = key_rotation(ns, secret, sid, secret);
        tr.spec.twilio.credentials_secret_ref.key = format!("authToken-{}", i % TRS_PER_NS);
        Api::<TokenRotation>::namespaced(client.clone(), ns)
            .create(&pp, &tr)
            .await
            .expect("TokenRotation");
    }
    println!(
        "world: {namespaces} namespaces, {} Secrets, {} Deployments, {} TokenRotations (API keys) on {accounts} accounts; built in {:.1}s",
        namespaces * (SECRETS_PER_NS + 1),
        namespaces * DEPLOYMENTS_PER_NS,
        trs.len(),
        setup.elapsed().as_secs_f64()
    );

    // The operator, as a child process.
    let dir = std::env::temp_dir().join(format!("scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let kc = dir.join("operator.kubeconfig");
    std::fs::write(&kc, api.kubeconfig_yaml_as(OPERATOR)).expect("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let log_from = api.audit_log().len();
    let started = Instant::now();
    // Another build of the operator (e.g. the image's static musl binary) can be measured too.
    let binary = std::env::var_os("SCALE_OPERATOR_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_token-rotator").into());
    let mut child = tokio::process::Command::new(&binary)
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["run", "--leader-elect=false", "--http-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--twilio-base-url")
        .arg(twilio.base_url())
        .env("RUST_LOG", "warn")
        .env(
            "TOKEN_ROTATOR_TWILIO_CONCURRENCY_PER_ACCOUNT",
            std::env::var("TOKEN_ROTATOR_TWILIO_CONCURRENCY_PER_ACCOUNT")
                .unwrap_or_else(|_| TWILIO_ACCOUNT_LIMIT.to_string()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("operator");
    println!("operator: {}", std::path::Path::new(&binary).display());
    let pid = child.id().expect("pid");
    loop {
        let st = statuses(&client).await;
        if st.iter().filter(|s| s.next_rotation_time.is_some()).count() == trs.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not every TokenRotation was reconciled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reconciled = started.elapsed();
    let (after_start, by) = requests_since(&api, log_from);
    println!(
        "start: every TokenRotation reconciled in {:.1}s; {} requests: {}",
        reconciled.as_secs_f64(),
        by.values().sum::<u64>(),
        show(&by)
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (idle_rss, idle_peak) = (kib(pid, "VmRSS:"), kib(pid, "VmHWM:"));
    println!(
        "idle: RSS {:.1} MiB (peak so far {:.1} MiB)",
        mib(idle_rss),
        mib(idle_peak)
    );
    let (log_idle, _) = requests_since(&api, after_start);
    let idle_cpu = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    tokio::time::sleep(Duration::from_secs(20)).await;
    println!(
        "idle 20s: CPU operator {:.1}s, sandbox {:.1}s",
        cpu_seconds(pid) - idle_cpu.0,
        cpu_seconds(std::process::id()) - idle_cpu.1
    );
    let (log_now, by) = requests_since(&api, log_idle);
    println!(
        "idle 20s: {} requests ({})",
        by.values().sum::<u64>(),
        if by.is_empty() {
            "none".to_string()
        } else {
            show(&by)
        }
    );

    if std::env::var_os("SCALE_IDLE_ONLY").is_some() {
        let _ = child.kill().await;
        return;
    }

    // One alone: a fresh account in its own namespace, nothing else rotating.
    let (solo_sid, solo_token) = twilio.create_account();
    let (key, secret) = twilio.create_key(&solo_sid, KeyKind::Standard, "by hand");
    let ns = "solo";
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&pp, &namespace)
        .await
        .expect("namespace");
    for s in [
        json!({"metadata": {"name": "key-0", "namespace": ns},
               "stringData": {"TWILIO_ACCOUNT_SID": solo_sid, "TWILIO_API_KEY": key, "TWILIO_API_SECRET": secret}}),
        json!({"metadata": {"name": "twilio-admin", "namespace": ns}, "stringData": {"authToken-0": solo_token}}),
    ] {
        let s: Secret = serde_json::from_value(s).expect("secret");
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&pp, &s)
            .await
            .expect("secret");
    }
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&pp, &deployment(ns, "app-0", "key-0"))
        .await
        .expect("deployment");
    let mut solo = key_rotation(ns, "key-0", &solo_sid, "key-0");
    solo.spec.twilio.credentials_secret_ref.key = "authToken-0".into();
    solo.metadata.annotations =
        Some([("tokenrotator.io/rotate-now".to_string(), "1".to_string())].into());
    let (log_solo, _) = requests_since(&api, log_now);
    let twilio_solo = twilio.request_count();
    let alone = Instant::now();
    Api::<TokenRotation>::namespaced(client.clone(), ns)
        .create(&pp, &solo)
        .await
        .expect("solo");
    let alone = until_ready(&client, ns, "key-0", 1, alone).await;
    let (log_now, by) = requests_since(&api, log_solo);
    println!(
        "one alone: {:.2}s (mandatory waits 2.0s + Twilio latency); {} Twilio calls; {} Kubernetes requests, {} writes: {}",
        alone.as_secs_f64(),
        twilio.request_count() - twilio_solo,
        by.values().sum::<u64>(),
        writes(&by),
        show(&by)
    );

    // Due at once: every rotation asked for now.
    let hwm = kib(pid, "VmHWM:");
    let before = scrape(port).await;
    println!(
        "a /metrics scrape with 1,000 resources: {} KiB of text; peak RSS {:.1} -> {:.1} MiB",
        before.bytes / 1024,
        mib(hwm),
        mib(kib(pid, "VmHWM:"))
    );
    let twilio_before = twilio.request_count();
    let cpu_before = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let Due {
        total,
        asking: asked,
        times,
        peak_rss,
    } = due_at_once(&client, &trs, "1", 1, pid).await;
    let cpu = (
        cpu_seconds(pid) - cpu_before.0,
        cpu_seconds(std::process::id()) - cpu_before.1,
    );
    let (log_after, by) = requests_since(&api, log_now);
    let per_account = trs.len().div_ceil(accounts);
    let twilio_calls = twilio.request_count() - twilio_before;
    println!(
        "all due at once: {} rotations in {:.1}s (asking, 64 at a time, took {:.1}s); p50 {:.1}s, p99 {:.1}s from its request to Ready; {} per account, together (each writes its own Secret)",
        trs.len(),
        total.as_secs_f64(),
        asked.as_secs_f64(),
        percentile(&times, 0.5).as_secs_f64(),
        percentile(&times, 0.99).as_secs_f64(),
        per_account
    );
    println!(
        "  mandatory waits per rotation: propagationDelay 1s + overlap 1s + Twilio latency 50 ms per call, run in parallel: >= 2.0s; one alone took {:.2}s (ratio of the total to that: {:.1}; of the p50: {:.1})",
        alone.as_secs_f64(),
        total.as_secs_f64() / alone.as_secs_f64(),
        percentile(&times, 0.5).as_secs_f64() / alone.as_secs_f64()
    );
    // Where the time went: each phase's mean, from the operator's own histogram.
    let after = scrape(port).await;
    let mut in_phases = 0.0;
    let mut shown = Vec::new();
    for (phase, (secs, n)) in &after.phases {
        let (s0, n0) = before.phases.get(phase).copied().unwrap_or_default();
        if n - n0 == 0 {
            continue;
        }
        let mean = (secs - s0) / trs.len() as f64;
        in_phases += mean;
        shown.push(format!("{phase} {mean:.2}s"));
    }
    let mean_time =
        times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len().max(1) as f64;
    println!(
        "  a rotation's mean time, by phase (operator histogram): {}; phases {in_phases:.1}s of the mean {mean_time:.1}s from request to Ready (the rest: from the request to the start)",
        shown.join(", ")
    );
    println!(
        "  reconciles: {:.0} ({:.1} per rotation)",
        after.reconciles - before.reconciles,
        (after.reconciles - before.reconciles) / trs.len() as f64
    );
    println!(
        "  Twilio: {} calls ({:.1} per rotation, consumer traffic none), {} answered 429 by the emulator's limit of {TWILIO_ACCOUNT_LIMIT} per account",
        twilio_calls,
        twilio_calls as f64 / trs.len() as f64,
        twilio.concurrency_refusals()
    );
    println!(
        "  Kubernetes: {} requests, {:.1} writes per rotation: {}",
        by.values().sum::<u64>(),
        writes(&by) as f64 / trs.len() as f64,
        show(&by)
    );
    println!(
        "  peak RSS while rotating: {:.1} MiB; a /metrics scrape after them: {} KiB of text, peak RSS then {:.1} MiB",
        mib(peak_rss),
        after.bytes / 1024,
        mib(kib(pid, "VmHWM:"))
    );
    println!(
        "  CPU meanwhile: operator {:.1}s, sandbox (API server, simulator, emulator, this bench) {:.1}s, of {:.1}s available on {} cores",
        cpu.0,
        cpu.1,
        total.as_secs_f64() * cores() as f64,
        cores()
    );

    // Every rotation again, now with pods that take READY_AFTER to be ready: each consumer
    // (and the lone one's) gets one replica, and each rotation's rollout waits for its new pod.
    let consumers: Vec<(String, String)> = trs
        .iter()
        .map(|(ns, name, _)| (ns.clone(), name.replace("key-", "app-")))
        .chain(std::iter::once(("solo".to_string(), "app-0".to_string())))
        .collect();
    for (ns, name) in &consumers {
        sim.set_readiness_delay(WorkloadKind::Deployment, ns, name, READY_AFTER);
    }
    futures::stream::iter(consumers.iter().map(|(ns, name)| {
        let client = client.clone();
        async move {
            Api::<Deployment>::namespaced(client, ns)
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 1}})),
                )
                .await
                .expect("scale");
        }
    }))
    .buffer_unordered(64)
    .collect::<Vec<()>>()
    .await;
    let scaling = Instant::now();
    loop {
        let ready = Api::<Deployment>::all(client.clone())
            .list(&ListParams::default())
            .await
            .expect("deployments")
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1))
            .count();
        if ready == consumers.len() {
            break;
        }
        assert!(
            scaling.elapsed() < Duration::from_secs(300),
            "{ready} consumers ready"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let solo_again = Instant::now();
    Api::<TokenRotation>::namespaced(client.clone(), ns)
        .patch(
            "key-0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"tokenrotator.io/rotate-now": "2"}}}),
            ),
        )
        .await
        .expect("rotate-now");
    let alone = until_ready(&client, ns, "key-0", 2, solo_again).await;
    let cpu_before = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let again = due_at_once(&client, &trs, "2", 2, pid).await;
    let added = again.total.saturating_sub(alone);
    println!(
        "with a pod per consumer, ready {}s after it starts: one alone {:.1}s; all {} at once {:.1}s (p50 {:.1}s, p99 {:.1}s from its request); added by their number (the total less one alone): {:.1}s, {:.0}% of the total; CPU operator {:.1}s, sandbox {:.1}s; peak RSS {:.1} MiB",
        READY_AFTER.as_secs(),
        alone.as_secs_f64(),
        trs.len(),
        again.total.as_secs_f64(),
        percentile(&again.times, 0.5).as_secs_f64(),
        percentile(&again.times, 0.99).as_secs_f64(),
        added.as_secs_f64(),
        100.0 * added.as_secs_f64() / again.total.as_secs_f64(),
        cpu_seconds(pid) - cpu_before.0,
        cpu_seconds(std::process::id()) - cpu_before.1,
        mib(again.peak_rss),
    );

    // Unrelated large Secrets: the label-selected watch never sees them.
    // The last rotations' trailing writes (finalizer, Events) end first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (log_quiet, _) = requests_since(&api, log_after);
    let before = kib(pid, "VmRSS:");
    let blob = "x".repeat(1 << 20);
    for i in 0..1000 {
        let ns = format!("team-{:03}", i % namespaces);
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("blob-{i}"), "namespace": ns},
            "stringData": {"blob": blob}
        }))
        .expect("secret");
        Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&pp, &s)
            .await
            .expect("blob");
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = kib(pid, "VmRSS:");
    let (_, by) = requests_since(&api, log_quiet);
    println!(
        "1,000 unrelated 1 MiB Secrets: RSS {:.1} -> {:.1} MiB ({:+.1} MiB); {} requests meanwhile ({})",
        mib(before),
        mib(after),
        mib(after) - mib(before),
        by.values().sum::<u64>(),
        show(&by)
    );

    // Rotations over those large Secrets: the copy check reads every Secret of its namespace
    // (10 of 1 MiB, 101 small), each while the others do. One per namespace.
    let mut seen = std::collections::BTreeSet::new();
    let one_per_ns: Vec<(String, String, String)> = trs
        .iter()
        .filter(|(ns, _, _)| seen.insert(ns.clone()))
        .cloned()
        .collect();
    let (log_large, _) = requests_since(&api, 0);
    let hwm = kib(pid, "VmHWM:");
    let cpu_before = cpu_seconds(pid);
    let large = due_at_once(&client, &one_per_ns, "3", 3, pid).await;
    let (_, by) = requests_since(&api, log_large);
    println!(
        "{} rotations at once (one per namespace), each namespace holding 10 of those 1 MiB Secrets: {:.1}s (p50 {:.1}s); peak RSS sampled {:.1} MiB, high-water mark {:.1} -> {:.1} MiB; operator CPU {:.1}s; Secret LISTs {}",
        one_per_ns.len(),
        large.total.as_secs_f64(),
        percentile(&large.times, 0.5).as_secs_f64(),
        mib(large.peak_rss),
        mib(hwm),
        mib(kib(pid, "VmHWM:")),
        cpu_seconds(pid) - cpu_before,
        by.get("list secrets").copied().unwrap_or_default(),
    );
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
