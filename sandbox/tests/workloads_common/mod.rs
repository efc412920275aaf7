//! Helpers shared by the workloads_* tests: an API server plus a simulator, object builders, and
//! waits on API objects.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, DeploymentCondition, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use sandbox::kube::ApiServer;
use sandbox::workloads::{SimulatorOptions, WorkloadSimulator};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub const NS: &str = "default";
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Env {
    pub server: ApiServer,
    pub client: Client,
    pub sim: WorkloadSimulator,
}

pub fn fast_options() -> SimulatorOptions {
    SimulatorOptions {
        readiness_delay: Duration::from_millis(100),
        secret_sync_delay: Duration::from_millis(300),
        tick_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

pub async fn env_with(opts: SimulatorOptions) -> Env {
    let server = ApiServer::start().await.expect("API server starts");
    let client = server.client().await;
    let sim = WorkloadSimulator::start(client.clone(), opts)
        .await
        .expect("simulator starts");
    Env {
        server,
        client,
        sim,
    }
}

pub async fn env() -> Env {
    env_with(fast_options()).await
}

pub async fn create<K>(client: &Client, obj: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), NS);
    let obj: K = serde_json::from_value(obj).expect("valid object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create")
}

pub async fn merge_patch<K>(client: &Client, name: &str, patch: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), NS);
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch")
}

pub async fn get<K>(client: &Client, name: &str) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), NS);
    api.get(name).await.expect("get")
}

/// Polls the object until `pred` holds; panics with the last state after `timeout`.
pub async fn wait_for<K>(
    client: &Client,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&K) -> bool,
) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let obj: K = get(client, name).await;
        if pred(&obj) {
            return obj;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting on {name}: {obj:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn secret(client: &Client, name: &str, token: &str) -> Secret {
    create(
        client,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"authToken": token, "accountSid": "AC00000000000000000000000000000000"}
        }),
    )
    .await
}

pub async fn set_token(client: &Client, name: &str, token: &str) {
    let _: Secret = merge_patch(client, name, json!({"stringData": {"authToken": token}})).await;
}

/// A pod template whose container reads the token through env, envFrom (prefixed) and a
/// mounted volume.
pub fn template(app: &str, secret: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{
                "name": "app", "image": "example/app:1",
                "env": [{"name": "TWILIO_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "authToken"}}}],
                "envFrom": [{"prefix": "TW_", "secretRef": {"name": secret}}],
                "volumeMounts": [{"name": "creds", "mountPath": "/etc/twilio", "readOnly": true}]
            }],
            "volumes": [{"name": "creds", "secret": {"secretName": secret}}]
        }
    })
}

pub fn deployment(name: &str, replicas: i32, secret: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": template(name, secret)
        }
    })
}

/// Changes the pod template the way a rotation operator (or `kubectl rollout restart`) does.
pub fn bump_template(stamp: &str) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {"example.com/restartedAt": stamp}}}}})
}

pub fn condition<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn reason(d: &Deployment, type_: &str) -> Option<(String, String)> {
    condition(d, type_).map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// `kubectl rollout status` done, plus helm/kstatus's extra requirements.
pub fn rollout_complete(d: &Deployment) -> bool {
    let Some(s) = &d.status else { return false };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let n = |v: Option<i32>| v.unwrap_or(0);
    d.metadata.generation <= s.observed_generation
        && reason(d, "Progressing").map(|r| r.1) == Some("NewReplicaSetAvailable".into())
        && reason(d, "Available") == Some(("True".into(), "MinimumReplicasAvailable".into()))
        && n(s.updated_replicas) == want
        && n(s.replicas) == want
        && n(s.available_replicas) == want
        && n(s.ready_replicas) >= want
}

/// `kubectl rollout status statefulset` done (RollingUpdate, no partition).
pub fn sts_rolled_out(s: &StatefulSet) -> bool {
    let Some(st) = &s.status else { return false };
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    s.metadata.generation <= st.observed_generation
        && st.ready_replicas.unwrap_or(0) >= want
        && st.updated_replicas.unwrap_or(0) == want
        && st.current_revision.is_some()
        && st.current_revision == st.update_revision
}

/// `kubectl rollout status daemonset` done.
pub fn ds_rolled_out(d: &DaemonSet) -> bool {
    let Some(st) = &d.status else { return false };
    d.metadata.generation <= st.observed_generation
        && st.desired_number_scheduled > 0
        && st.updated_number_scheduled.unwrap_or(0) == st.desired_number_scheduled
        && st.number_available.unwrap_or(0) == st.desired_number_scheduled
}

/// kubectl with a private kubeconfig and cache dir; run asynchronously so the simulator keeps
/// going on the test's runtime while kubectl waits.
pub struct Kubectl {
    pub dir: std::path::PathBuf,
}

impl Kubectl {
    pub fn new(e: &Env) -> Self {
        let dir = std::env::temp_dir().join(format!("sandbox-workloads-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kubeconfig"), e.server.kubeconfig_yaml()).unwrap();
        Kubectl { dir }
    }

    async fn output(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(sandbox::tools::kubectl())
            .args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.join("cache"))
            .env("HOME", &self.dir)
            .output()
            .await
            .unwrap()
    }

    /// Whether it succeeded, and stdout followed by stderr.
    pub async fn run(&self, args: &[&str]) -> (bool, String) {
        let out = self.output(args).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs a command that must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; its stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args).await;
        assert!(!out.status.success(), "kubectl {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
