//! A world for end-to-end tests: the sandbox, a namespace with an admin credential Secret, a
//! consumer Secret, a Deployment reading it, and the real controller in a task.
#![allow(dead_code)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::CustomResourceExt;
use sandbox::Sandbox;
use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::Duration;
use token_rotator::api::{ClusterTokenRotation, TokenRotation, TokenRotationStatus};
use token_rotator::controller::{self, failpoints::Failpoints, Config};
use token_rotator::twilio::{RetryPolicy, TwilioConfig};

pub const NS: &str = "shop";

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INIT: Once = Once::new();

struct Sink;
impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line of every test in this binary (debug level for the operator).
pub fn capture_logs() {
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter("token_rotator=trace,kube=debug,info")
            .with_writer(|| Sink)
            .with_ansi(false)
            .try_init()
            .ok();
    });
}

pub fn assert_no_token_in_logs(tokens: &[&str]) {
    let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).to_string();
    assert!(
        logs.contains("performing step"),
        "the controller's logs were captured"
    );
    for t in tokens {
        assert!(!t.is_empty());
        assert!(!logs.contains(t), "a token appeared in a log line");
    }
}

pub struct World {
    pub sb: Sandbox,
    pub sid: String,
    pub old_token: String,
    /// API key worlds: the key (SID, secret) the consumer Secret starts with.
    pub old_key: Option<(String, String)>,
    pub client: kube::Client,
}

/// Consumers read `TWILIO_ACCOUNT_SID` and `TWILIO_AUTH_TOKEN` from Secret `twilio-creds`.
pub async fn world(replicas: i32) -> World {
    let sb = Sandbox::start().await.expect("sandbox");
    let (sid, token) = sb.twilio.create_account();
    let creds = serde_json::json!({"TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token});
    let env = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"];
    populate(&sb, NS, &token, creds, &env, replicas).await;
    World {
        client: sb.client(),
        sid,
        old_token: token,
        old_key: None,
        sb,
    }
}

/// Consumers read `TWILIO_ACCOUNT_SID`, `TWILIO_API_KEY` and `TWILIO_API_SECRET` from Secret
/// `twilio-creds`, which starts with a key of `kind` made outside the operator.
pub async fn key_world(replicas: i32, kind: sandbox::twilio::KeyKind) -> World {
    let sb = Sandbox::start().await.expect("sandbox");
    let (sid, token) = sb.twilio.create_account();
    let (key, secret) = sb.twilio.create_key(&sid, kind, "made by hand");
    let creds = serde_json::json!({
        "TWILIO_ACCOUNT_SID": sid, "TWILIO_API_KEY": key, "TWILIO_API_SECRET": secret
    });
    let env = ["TWILIO_ACCOUNT_SID", "TWILIO_API_KEY", "TWILIO_API_SECRET"];
    populate(&sb, NS, &token, creds, &env, replicas).await;
    World {
        client: sb.client(),
        sid,
        old_token: token,
        old_key: Some((key, secret)),
        sb,
    }
}

/// Installs the CRD (once) and creates in `ns`: the namespace, Secret `twilio-admin` with the
/// Auth Token, the consumer Secret `twilio-creds` with `creds`, and Deployment `api` whose
/// container reads `env` from it; waits until its pods are ready.
pub async fn populate(
    sb: &Sandbox,
    ns_name: &str,
    token: &str,
    creds: serde_json::Value,
    env: &[&str],
    replicas: i32,
) {
    let client = sb.client();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in [TokenRotation::crd(), ClusterTokenRotation::crd()] {
        let name = crd.metadata.name.clone().unwrap();
        if crds.get_opt(&name).await.unwrap().is_none() {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("install CRD");
        }
    }
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns_name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns_name);
    for (name, data) in [
        ("twilio-admin", serde_json::json!({"authToken": token})),
        ("twilio-creds", creds),
    ] {
        let s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns_name}, "stringData": data
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let env: Vec<serde_json::Value> = env
        .iter()
        .map(|k| serde_json::json!({"name": k, "valueFrom": {"secretKeyRef": {"name": "twilio-creds", "key": k}}}))
        .collect();
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api", "namespace": ns_name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "api"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "app", "image": "shop/api:1", "env": env}]}
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns_name)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    sb.workloads
        .wait_for_pods(
            sandbox::workloads::WorkloadKind::Deployment,
            ns_name,
            "api",
            Duration::from_secs(20),
            |pods| pods.len() == replicas as usize && pods.iter().all(|p| p.ready),
        )
        .await
        .expect("pods ready");
}

/// Every ready pod calls Twilio every `every` with the account SID and token its env holds.
pub fn consumer_traffic(world: &World, every: Duration) -> sandbox::Traffic {
    world
        .sb
        .start_traffic("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", every)
}

/// Every ready pod calls Twilio every `every` with the API key its env holds.
pub fn key_traffic(world: &World, every: Duration) -> sandbox::Traffic {
    world.sb.start_key_traffic(
        "TWILIO_ACCOUNT_SID",
        "TWILIO_API_KEY",
        "TWILIO_API_SECRET",
        every,
    )
}

pub fn config(world: &World, failpoints: Failpoints) -> Config {
    Config {
        twilio: TwilioConfig {
            base_url: Some(world.sb.twilio.base_url().parse().unwrap()),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            },
            ..TwilioConfig::default()
        },
        namespaces: vec![],
        instance: Some("test".into()),
        failpoints,
        metrics: Default::default(),
        notifier: Default::default(),
        safety: Default::default(),
        max_concurrent_rotations: 0,
        reconcile_concurrency: 0,
        // The flag's default, so every end-to-end test runs under it.
        twilio_limiter: token_rotator::twilio::AccountLimiter::new(4),
    }
}

pub fn start_controller(world: &World, failpoints: Failpoints) -> tokio::task::JoinHandle<()> {
    start_controller_with(world, config(world, failpoints))
}

/// Runs the real controller with `cfg` (e.g. with a safety check switched off, for a negative
/// control).
pub fn start_controller_with(world: &World, cfg: Config) -> tokio::task::JoinHandle<()> {
    // TR_TEST_LOG=token_rotator=debug shows the controller's logs when debugging a test.
    if let Ok(filter) = std::env::var("TR_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let client = world.client.clone();
    tokio::spawn(async move {
        if let Err(e) = controller::run(client, cfg).await {
            panic!("controller stopped: {e}");
        }
    })
}

pub fn rotation(world: &World, name: &str, annotations: serde_json::Value) -> TokenRotation {
    rotation_in(NS, &world.sid, name, annotations)
}

/// The Auth Token rotation of account `sid` in namespace `ns` (Secrets `twilio-admin`,
/// `twilio-creds` as [`populate`] makes them).
pub fn rotation_in(
    ns: &str,
    sid: &str,
    name: &str,
    annotations: serde_json::Value,
) -> TokenRotation {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tokenrotator.io/v1alpha1",
        "kind": "TokenRotation",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "twilio": {"accountSid": sid, "credentialsSecretRef": {"name": "twilio-admin", "key": "authToken"}},
            "authToken": {},
            "secrets": [{"name": "twilio-creds", "accountSidKey": "TWILIO_ACCOUNT_SID", "tokenKey": "TWILIO_AUTH_TOKEN",
                         "previousTokenKey": "TWILIO_PREVIOUS_AUTH_TOKEN"}],
            "rolloutTimeout": "2m",
            "propagationDelay": "1s",
            "overlap": "1s"
        }
    }))
    .unwrap()
}

/// An API key rotation asked for at once; `api_key` is `spec.apiKey`.
pub fn key_rotation(world: &World, name: &str, api_key: serde_json::Value) -> TokenRotation {
    key_rotation_in(NS, &world.sid, name, api_key)
}

/// An API key rotation of account `sid` in namespace `ns`, asked for at once.
pub fn key_rotation_in(
    ns: &str,
    sid: &str,
    name: &str,
    api_key: serde_json::Value,
) -> TokenRotation {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tokenrotator.io/v1alpha1",
        "kind": "TokenRotation",
        "metadata": {"name": name, "namespace": ns, "annotations": {"tokenrotator.io/rotate-now": "1"}},
        "spec": {
            "twilio": {"accountSid": sid, "credentialsSecretRef": {"name": "twilio-admin", "key": "authToken"}},
            "apiKey": api_key,
            "secrets": [{"name": "twilio-creds", "accountSidKey": "TWILIO_ACCOUNT_SID",
                         "keySidKey": "TWILIO_API_KEY", "tokenKey": "TWILIO_API_SECRET"}],
            "rolloutTimeout": "2m",
            "propagationDelay": "1s",
            "overlap": "1s"
        }
    }))
    .unwrap()
}

/// A rotation asked for at once with the `rotate-now` annotation.
pub fn manual_rotation(world: &World, name: &str) -> TokenRotation {
    rotation(
        world,
        name,
        serde_json::json!({"tokenrotator.io/rotate-now": "1"}),
    )
}

pub async fn create(world: &World, tr: &TokenRotation) {
    Api::<TokenRotation>::namespaced(world.client.clone(), NS)
        .create(&PostParams::default(), tr)
        .await
        .expect("create TokenRotation");
}

/// Sets one annotation on a TokenRotation (merge patch).
pub async fn annotate(w: &World, name: &str, key: &str, value: &str) {
    use kube::api::{Patch, PatchParams};
    Api::<TokenRotation>::namespaced(w.client.clone(), NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap();
}

/// Polls the resource's status until `pred` holds.
pub async fn wait_status(
    world: &World,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&TokenRotationStatus) -> bool,
) -> TokenRotationStatus {
    let api: Api<TokenRotation> = Api::namespaced(world.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let tr = api.get(name).await.unwrap();
        let st = tr.status.clone().unwrap_or_default();
        if pred(&st) {
            return st;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting on {name}; status: {st:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn secret_value(world: &World, name: &str, key: &str) -> Option<String> {
    secret_value_in(world, NS, name, key).await
}

/// One key of a Secret in namespace `ns`, if both exist.
pub async fn secret_value_in(world: &World, ns: &str, name: &str, key: &str) -> Option<String> {
    let s = Api::<Secret>::namespaced(world.client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()?;
    s.data
        .and_then(|d| d.get(key).map(|b| String::from_utf8(b.0.clone()).unwrap()))
}

/// Authenticates directly with the emulator: true if the token is accepted.
pub async fn token_works(world: &World, token: &str) -> bool {
    sandbox::kube::ensure_crypto_provider();
    reqwest::Client::new()
        .get(format!(
            "{}/2010-04-01/Accounts/{}.json",
            world.sb.twilio.base_url(),
            world.sid
        ))
        .basic_auth(&world.sid, Some(token))
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
}

/// Waits until Events with all of `reasons` exist in the namespace (they are sent right after
/// the status write that a test waits on), and returns every Event.
pub async fn wait_events(world: &World, reasons: &[&str]) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(world.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = api.list(&ListParams::default()).await.unwrap().items;
        let missing: Vec<&&str> = reasons
            .iter()
            .filter(|r| !events.iter().any(|e| e.reason.as_deref() == Some(**r)))
            .collect();
        if missing.is_empty() {
            return events;
        }
        if tokio::time::Instant::now() > deadline {
            let seen: Vec<_> = events.iter().filter_map(|e| e.reason.clone()).collect();
            panic!("missing Events {missing:?}; seen {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The crash points of `steps`: before each action, between the action and its status
/// write, and after the status write.
pub fn crash_points(steps: &[&str]) -> Vec<String> {
    steps
        .iter()
        .flat_map(|s| ["before", "after", "status"].map(|when| format!("{when}:{s}")))
        .collect()
}

/// Starts the controller with `safety` and failpoint `point` armed, runs `start` (create the
/// resource, annotate it, ...), and returns once the reconcile that reached `point` froze
/// there: the controller (still running every other reconcile) and its metrics.
pub async fn freeze_at(
    w: &World,
    safety: controller::SafetyOverrides,
    point: &str,
    start: impl AsyncFnOnce(&World),
) -> (tokio::task::JoinHandle<()>, token_rotator::metrics::Metrics) {
    let (fp, mut hits) = Failpoints::new();
    fp.arm(point);
    let mut cfg = config(w, fp);
    cfg.safety = safety;
    let metrics = cfg.metrics.clone();
    let ctl = start_controller_with(w, cfg);
    start(w).await;
    let hit = tokio::time::timeout(Duration::from_secs(30), hits.recv())
        .await
        .unwrap_or_else(|_| panic!("failpoint {point} never reached"));
    assert_eq!(hit.as_deref(), Some(point));
    (ctl, metrics)
}

/// [`freeze_at`], then kills the controller: what a crash at exactly that point looks like
/// from outside.
pub async fn crash_at(w: &World, point: &str, start: impl AsyncFnOnce(&World)) {
    let (first, _) = freeze_at(w, Default::default(), point, start).await;
    first.abort();
    let _ = first.await;
}

/// Starts a fresh controller (after [`crash_at`]) and waits until `done` holds for
/// TokenRotation `twilio`; stops the controller and returns that status.
pub async fn resume(w: &World, done: impl Fn(&TokenRotationStatus) -> bool) -> TokenRotationStatus {
    let second = start_controller(w, Failpoints::default());
    let st = wait_status(w, "twilio", Duration::from_secs(60), done).await;
    second.abort();
    st
}

/// Pretends the last rotation of TokenRotation `name` was `days` days ago (after `rotations`
/// of them), as a schedule that was missed while the operator was down.
pub async fn last_rotated_days_ago(w: &World, name: &str, days: i64, rotations: i64) {
    use kube::api::{Patch, PatchParams};
    let last = (chrono::Utc::now() - chrono::Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Api::<TokenRotation>::namespaced(w.client.clone(), NS)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"status": {"lastRotationTime": last, "rotations": rotations}}),
            ),
        )
        .await
        .unwrap();
}

/// Labels namespace `ns` `twilio=shared`, which [`shared_rotation`] selects.
pub async fn label_shared(w: &World, ns: &str) {
    use kube::api::{Patch, PatchParams};
    Api::<Namespace>::all(w.client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"twilio": "shared"}}})),
        )
        .await
        .unwrap();
}

/// ClusterTokenRotation `shared`, asked for at once: the Auth Token of the world's account
/// into `twilio-creds` of every namespace labelled `twilio=shared`, credentials in `creds_ns`.
pub fn shared_rotation(w: &World, creds_ns: &str) -> ClusterTokenRotation {
    shared_rotation_for(&w.sid, creds_ns)
}

/// [`shared_rotation`] for account `sid`.
pub fn shared_rotation_for(sid: &str, creds_ns: &str) -> ClusterTokenRotation {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tokenrotator.io/v1alpha1",
        "kind": "ClusterTokenRotation",
        "metadata": {"name": "shared", "annotations": {"tokenrotator.io/rotate-now": "1"}},
        "spec": {
            "namespaces": {"selector": {"matchLabels": {"twilio": "shared"}}},
            "credentialsNamespace": creds_ns,
            "rotation": {
                "twilio": {"accountSid": sid, "credentialsSecretRef": {"name": "twilio-admin", "key": "authToken"}},
                "authToken": {},
                "secrets": [{"name": "twilio-creds", "accountSidKey": "TWILIO_ACCOUNT_SID",
                             "tokenKey": "TWILIO_AUTH_TOKEN"}],
                "rolloutTimeout": "2m",
                "propagationDelay": "1s",
                "overlap": "1s",
                // populate leaves the admin credential in every namespace, and a consumer
                // Secret in the credentials namespace: copies these worlds accept (no pod
                // reads them while the rotation runs).
                "uncoveredCopies": {"except": [
                    {"name": "twilio-admin", "key": "authToken"},
                    {"namespace": creds_ns, "name": "twilio-creds"}
                ]}
            }
        }
    }))
    .unwrap()
}

/// Polls ClusterTokenRotation `name` until `pred` holds for its status.
pub async fn wait_cluster_status(
    w: &World,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&TokenRotationStatus) -> bool,
) -> TokenRotationStatus {
    wait_cluster_status_with(&w.client, name, timeout, pred).await
}

/// [`wait_cluster_status`] through `client`.
pub async fn wait_cluster_status_with(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&TokenRotationStatus) -> bool,
) -> TokenRotationStatus {
    let api: Api<ClusterTokenRotation> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let st = api.get(name).await.unwrap().status.unwrap_or_default();
        if pred(&st) {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting on {name}; status: {st:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (30 s at most) until TokenRotation `name` is in `phase`.
pub async fn wait_phase(
    w: &World,
    name: &str,
    phase: token_rotator::api::Phase,
) -> TokenRotationStatus {
    wait_status(w, name, Duration::from_secs(30), |s| s.phase == Some(phase)).await
}

/// Both places the world's Auth Token lives (the consumers' Secret and the operator's
/// credentials) hold `token`.
pub async fn assert_token_everywhere(w: &World, token: &str, context: &str) {
    for (secret, key) in [
        ("twilio-creds", "TWILIO_AUTH_TOKEN"),
        ("twilio-admin", "authToken"),
    ] {
        assert_eq!(
            secret_value(w, secret, key).await.as_deref(),
            Some(token),
            "{context}: {secret}"
        );
    }
}

/// The holder of the leader Lease `token-rotator` in `ns`.
pub async fn lease_holder(client: &kube::Client, ns: &str) -> Option<String> {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), ns)
        .get_opt("token-rotator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// Env entries reading the account SID and Auth Token from Secret `twilio-creds`.
pub fn creds_env() -> serde_json::Value {
    serde_json::json!([
        {"name": "TWILIO_ACCOUNT_SID", "valueFrom": {"secretKeyRef": {"name": "twilio-creds", "key": "TWILIO_ACCOUNT_SID"}}},
        {"name": "TWILIO_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "twilio-creds", "key": "TWILIO_AUTH_TOKEN"}}}
    ])
}

/// A pod spec whose one container reads [`creds_env`].
pub fn creds_pod_spec() -> serde_json::Value {
    serde_json::json!({"containers": [{"name": "app", "image": "shop/tool:1", "env": creds_env()}]})
}

/// A bare Pod `name` (label `app=<name>`) in `ns` reading the token from env: nothing
/// re-creates it. Waits until it is ready.
pub async fn bare_pod(client: &kube::Client, ns: &str, name: &str) {
    let p: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": creds_pod_spec()
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
    wait_ready_pods(client, ns, name, 1).await;
}

/// Waits until `n` pods labelled `app=<app>` in `ns` are ready.
pub async fn wait_ready_pods(client: &kube::Client, ns: &str, app: &str, n: usize) {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("app={app}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pods = api.list(&lp).await.unwrap().items;
        let ready = pods
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ns}/{app}: {ready} of {n} ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn rollouts_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// Installs the Argo Rollouts CRD (once) and creates Rollout `name` in `ns` (`replicas`
/// pods, canary with a pause step) reading the token from env; waits until its pods are ready.
pub async fn argo_rollout(client: &kube::Client, ns: &str, name: &str, replicas: usize) {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(sandbox::workloads::rollout::ROLLOUT_CRD).unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    if crds
        .get_opt("rollouts.argoproj.io")
        .await
        .unwrap()
        .is_none()
    {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &rollouts_resource());
    // Served once discovery has it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while api.list(&Default::default()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Rollouts never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let obj: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": creds_pod_spec()},
                 "strategy": {"canary": {"maxSurge": 1, "maxUnavailable": 0,
                                         "steps": [{"setWeight": 50}, {"pause": {}}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    wait_ready_pods(client, ns, name, replicas).await;
}

/// The message of the status's `Degraded=True` condition with `reason`, if it has one.
pub fn degraded(st: &TokenRotationStatus, reason: &str) -> Option<String> {
    st.conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == reason)
        .map(|c| c.message.clone())
}
