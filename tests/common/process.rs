//! The built `token-rotator` binary as separate processes: `run` replicas with their own log
//! file and HTTP port, and one-shot CLI commands, each through a kubeconfig file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_token-rotator");

/// A running `token-rotator run` process, killed on drop; its output goes to `log`.
pub struct Replica {
    pub name: String,
    pub child: tokio::process::Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Replica {
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }

    pub async fn scrape(&self) -> String {
        http_get(&self.metrics_url()).await.1
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn http_get(url: &str) -> (u16, String) {
    sandbox::kube::ensure_crypto_provider();
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Starts `token-rotator --kubeconfig KUBECONFIG run --instance NAME ...` with a free HTTP port,
/// the Twilio emulator at `twilio_url`, and `extra` arguments; output goes to `dir/NAME.log`.
pub fn start_replica(
    kubeconfig: &Path,
    dir: &Path,
    name: &str,
    twilio_url: &str,
    extra: &[&str],
) -> Replica {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = tokio::process::Command::new(BIN)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["run", "--instance", name])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--twilio-base-url", twilio_url])
        .args(extra)
        .env("RUST_LOG", "info,token_rotator=debug")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .expect("start token-rotator");
    Replica {
        name: name.into(),
        child,
        port,
        log,
    }
}

/// Waits (30 s at most) until the replica's `/readyz` answers 200.
pub async fn wait_ready(r: &Replica) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{}/readyz", r.port);
    while http_get(&url).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "{} never became ready:\n{}",
            r.name,
            r.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one CLI command through `kubeconfig`.
pub async fn cli(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("run token-rotator")
}

pub fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "token-rotator-bin-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
