//! The `sandbox` binary as a user runs it: `sandbox kube` rolls Deployments out (kubectl
//! `rollout status` completes), and `sandbox up` adds the Twilio emulator and consumer traffic
//! from every pod holding Twilio credentials, counted at `/sandbox/v1/traffic`.

mod kube_common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube_common::Cli;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sandbox");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `sandbox ARGS`, returns it with the `key: value` lines it printed until `last`.
fn start(args: &[&str], last: &str) -> (Child, Vec<(String, String)>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with(last);
        if let Some((k, v)) = line.split_once(": ") {
            seen.push((k.to_string(), v.to_string()));
        }
        if done {
            break;
        }
    }
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, seen)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const APP: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: twilio, namespace: default}
stringData:
  TWILIO_ACCOUNT_SID: AC0123456789abcdef0123456789abcdef
  TWILIO_AUTH_TOKEN: 0123456789abcdef0123456789abcdef
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: app
        image: shop/api:1
        envFrom: [{secretRef: {name: twilio}}]
"#;

#[test]
fn sandbox_kube_rolls_deployments_out() {
    let port = free_port().to_string();
    let cli = Cli::new("");
    let kc = cli.dir.join("kc.yaml");
    let (child, _) = start(
        &[
            "kube",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--kubeconfig",
            kc.to_str().unwrap(),
        ],
        "sandbox kube API server listening",
    );
    let _guard = Killed(child);
    std::fs::copy(&kc, &cli.kubeconfig).unwrap();
    let kubectl = sandbox::tools::kubectl();
    let app = cli.write("app.yaml", APP);
    cli.ok(&kubectl, &["apply", "-f", &app]);
    let out = cli.ok(
        &kubectl,
        &["rollout", "status", "deployment/api", "--timeout=30s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = cli.ok(&kubectl, &["get", "pods", "-l", "app=api", "-o", "name"]);
    assert_eq!(pods.lines().count(), 2, "{pods}");
}

#[test]
fn sandbox_up_runs_consumers_against_the_twilio_emulator() {
    let port = free_port().to_string();
    let cli = Cli::new("");
    let kc = cli.dir.join("kc.yaml");
    let (child, banner) = start(
        &[
            "up",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--account",
            "AC0123456789abcdef0123456789abcdef:0123456789abcdef0123456789abcdef",
            "--call-every-ms",
            "50",
        ],
        "requests",
    );
    let _guard = Killed(child);
    let get = |k: &str| {
        banner
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("banner lacks {k}: {banner:?}"))
    };
    assert_eq!(get("kubeconfig"), kc.to_str().unwrap());
    assert!(get("twilio base url").starts_with("http://127.0.0.1:"));
    let traffic_url = get("traffic");
    std::fs::copy(&kc, &cli.kubeconfig).unwrap();
    let kubectl = sandbox::tools::kubectl();
    let app = cli.write("app.yaml", APP);
    cli.ok(&kubectl, &["apply", "-f", &app]);
    cli.ok(
        &kubectl,
        &["rollout", "status", "deployment/api", "--timeout=30s"],
    );
    sandbox::kube::ensure_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let summary: Value = loop {
        let v: Value = rt.block_on(async {
            reqwest::get(&traffic_url)
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let pods = v["pods"].as_array().map(|p| p.len()).unwrap_or(0);
        if pods == 2 && v["served"].as_u64() > Some(10) {
            break v;
        }
        assert!(Instant::now() < deadline, "no traffic: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(summary["refused"], 0, "{summary}");
    let row = &summary["pods"][0];
    assert_eq!(row["namespace"], "default");
    assert!(row["pod"].as_str().unwrap().starts_with("api-"));
    // A fingerprint, never the token.
    assert_eq!(row["credential"].as_str().unwrap().len(), 8);
    assert!(!summary
        .to_string()
        .contains("0123456789abcdef0123456789abcdef"));
}
