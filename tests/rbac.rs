//! Least privilege, proven: the chart installed by helm on a sandbox that authenticates and
//! enforces RBAC, the built binary run as the chart's ServiceAccount (its token minted for it),
//! and every kind of rotation, an abort and a leader handover with consumer traffic throughout.
//! The sandbox's request log then shows zero 403s for the operator, and every verb the chart
//! grants is one the operator used. People: `token-rotator rotate/abort/status` work for a user
//! bound to `edit` (which aggregates the chart's `token-rotator-edit`), and fail for `view` with
//! the missing permission named.

mod common;
#[path = "common/process.rs"]
mod process;

use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use process::{cli, start_replica, tempdir, wait_ready, Replica};
use sandbox::kube::auth::{AuthOptions, StaticToken};
use sandbox::kube::{AdmissionCheck, ApiServerOptions, AuditRecord};
use sandbox::Sandbox;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use token_rotator::api::{ClusterTokenRotation, Phase, TokenRotation};

const RELEASE_NS: &str = "token-rotator";
const OPERATOR: &str = "system:serviceaccount:token-rotator:token-rotator";
const ALICE: &str = "alice-token";
const VICTOR: &str = "victor-token";

async fn authz_sandbox() -> Sandbox {
    Sandbox::start_full(
        ApiServerOptions {
            auth: Some(AuthOptions {
                tokens: vec![
                    StaticToken::new(ALICE, "alice", &[]),
                    StaticToken::new(VICTOR, "victor", &[]),
                ],
            }),
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .expect("sandbox")
}

/// helm with its own home, cache and config under `dir`, against `kubeconfig`.
fn helm(dir: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(sandbox::tools::helm())
        .args(args)
        .env("HOME", dir)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", dir.join("kubecache"))
        .env("HELM_CACHE_HOME", dir.join("helm-cache"))
        .env("HELM_CONFIG_HOME", dir.join("helm-config"))
        .env("HELM_DATA_HOME", dir.join("helm-data"))
        .output()
        .expect("start helm");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chart() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/token-rotator")
        .to_string_lossy()
        .into_owned()
}

/// `helm install` of the chart (CRDs skipped: the worlds installed them) as the administrator,
/// then the rendered RBAC objects, for the verb audit.
async fn install_chart(sb: &Sandbox, dir: &Path, set: &[&str]) -> Vec<Value> {
    let admin = dir.join("admin.kubeconfig");
    std::fs::write(&admin, sb.api.kubeconfig_yaml()).unwrap();
    let mut args: Vec<String> = [
        "install",
        "token-rotator",
        &chart(),
        "--namespace",
        RELEASE_NS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--create-namespace".into(), "--skip-crds".into()]);
    for s in set {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    let mut template = args.clone();
    template[0] = "template".into();
    template.retain(|a| a != "--create-namespace");
    let (dir2, admin2) = (dir.to_path_buf(), admin.clone());
    tokio::task::spawn_blocking(move || {
        fn refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let out = helm(&dir2, &admin2, &refs(&args));
        assert!(out.contains("STATUS: deployed"), "{out}");
        let rendered = helm(&dir2, &admin2, &refs(&template));
        serde_yaml::Deserializer::from_str(&rendered)
            .map(|d| Value::deserialize(d).expect("helm renders YAML"))
            .filter(|v| !v.is_null())
            .collect()
    })
    .await
    .unwrap()
}

/// (apiGroup, resource, verb) of every rule the chart grants the operator's ServiceAccount.
fn granted(objs: &[Value]) -> BTreeSet<(String, String, String)> {
    let bound: BTreeSet<(String, String)> = objs
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
        .filter(|b| {
            b["subjects"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["kind"] == "ServiceAccount"))
        })
        .map(|b| {
            (
                b["roleRef"]["kind"].as_str().unwrap().to_string(),
                b["roleRef"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut out = BTreeSet::new();
    for role in objs.iter().filter(|o| {
        bound.contains(&(
            o["kind"].as_str().unwrap_or("").to_string(),
            o["metadata"]["name"].as_str().unwrap_or("").to_string(),
        ))
    }) {
        for rule in role["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for v in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            g.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                            v.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The requests behind each permission: (group, resource, verb) → one example. Besides the
/// requests themselves, writes check more inside (a create hidden in server-side apply needs
/// `create`; an owner reference with blockOwnerDeletion needs `update` on the owner's
/// finalizers): the sandbox logs those checks too.
fn used(
    log: &[AuditRecord],
    checks: &[AdmissionCheck],
) -> BTreeMap<(String, String, String), String> {
    let mut out = BTreeMap::new();
    for r in log
        .iter()
        .filter(|r| r.user == OPERATOR && !r.resource.is_empty())
    {
        out.entry((r.group.clone(), r.resource.clone(), r.verb.clone()))
            .or_insert_with(|| format!("{} {} -> {}", r.method, r.path, r.status));
    }
    for c in checks.iter().filter(|c| c.user == OPERATOR && c.allowed) {
        out.entry((c.group.clone(), c.resource.clone(), c.verb.clone()))
            .or_insert_with(|| {
                format!(
                    "checked inside a write: {} {} {:?} in {:?}",
                    c.verb, c.resource, c.name, c.namespace
                )
            });
    }
    out
}

fn forbidden(log: &[AuditRecord]) -> Vec<String> {
    log.iter()
        .filter(|r| r.user == OPERATOR && (r.status == 403 || r.status == 401))
        .map(|r| format!("{} {} {} {}", r.status, r.verb, r.resource, r.path))
        .collect()
}

/// A namespace whose pods run on `account`'s Auth Token (or API key) from Secret
/// `twilio-creds`, with the admin credential in `twilio-admin`.
async fn tenant(sb: &Sandbox, ns: &str, key: bool, replicas: i32) -> (String, String) {
    let (sid, token) = sb.twilio.create_account();
    if key {
        let (k, secret) = sb
            .twilio
            .create_key(&sid, sandbox::twilio::KeyKind::Standard, "by hand");
        let creds =
            json!({"TWILIO_ACCOUNT_SID": sid, "TWILIO_API_KEY": k, "TWILIO_API_SECRET": secret});
        let env = ["TWILIO_ACCOUNT_SID", "TWILIO_API_KEY", "TWILIO_API_SECRET"];
        populate(sb, ns, &token, creds, &env, replicas).await;
    } else {
        let creds = json!({"TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token});
        let env = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"];
        populate(sb, ns, &token, creds, &env, replicas).await;
    }
    (sid, token)
}

async fn wait_tr(
    client: &kube::Client,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&token_rotator::api::TokenRotationStatus) -> bool,
    replicas: &[&Replica],
) {
    let api: Api<TokenRotation> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let st = api.get(name).await.unwrap().status.unwrap_or_default();
        if pred(&st) {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas.iter().map(|r| r.output()).collect();
            panic!(
                "{ns}/{name}: {what} never happened; status {st:#?}\n{}",
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A StatefulSet and a DaemonSet in `ns` reading the Auth Token from `twilio-creds`, beside the
/// Deployment: the operator restarts all three kinds.
async fn more_consumers(sb: &Sandbox, ns: &str) {
    let env = json!([
        {"name": "TWILIO_ACCOUNT_SID", "valueFrom": {"secretKeyRef": {"name": "twilio-creds", "key": "TWILIO_ACCOUNT_SID"}}},
        {"name": "TWILIO_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "twilio-creds", "key": "TWILIO_AUTH_TOKEN"}}}
    ]);
    let template = |app: &str| {
        json!({"metadata": {"labels": {"app": app}},
               "spec": {"containers": [{"name": "app", "image": format!("shop/{app}:1"), "env": env}]}})
    };
    let sts: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "worker", "namespace": ns},
        "spec": {"replicas": 1, "serviceName": "worker", "selector": {"matchLabels": {"app": "worker"}},
                 "template": template("worker")}
    }))
    .unwrap();
    Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(sb.client(), ns)
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let ds: k8s_openapi::api::apps::v1::DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent")}
    }))
    .unwrap();
    Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(sb.client(), ns)
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    use sandbox::workloads::WorkloadKind;
    for (kind, name, n) in [
        (WorkloadKind::StatefulSet, "worker", 1),
        (WorkloadKind::DaemonSet, "agent", 2),
    ] {
        sb.workloads
            .wait_for_pods(kind, ns, name, Duration::from_secs(20), |pods| {
                pods.len() == n && pods.iter().all(|p| p.ready)
            })
            .await
            .expect("pods ready");
    }
    // The Pod-level barrier's kinds: an Argo Rollout (restarted by spec.restartAt) and a bare
    // Pod (deleted: the rotation of this namespace says unmanagedPods: Delete).
    argo_rollout(&sb.client(), ns, "web", 1).await;
    bare_pod(&sb.client(), ns, "debug").await;
}

/// The rotation of `shop` in these tests: unmanaged pods (the bare `debug`) are deleted.
fn shop_rotation(sid: &str, annotations: Value) -> TokenRotation {
    let mut tr = rotation_in("shop", sid, "shop", annotations);
    tr.spec.workloads = Some(serde_json::from_value(json!({"unmanagedPods": "Delete"})).unwrap());
    tr
}

/// Asks an idle rotation to abort twice: two identical `AbortIgnored` Events, so the second
/// is patched into a series (the only Events that repeat word for word).
async fn abort_idle_twice(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<TokenRotation> = Api::namespaced(client.clone(), ns);
    for value in ["idle-1", "idle-2"] {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tokenrotator.io/abort": value}}})),
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = api.get(name).await.unwrap().status.unwrap_or_default();
            if st.last_abort.as_deref() == Some(value) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "abort {value} never seen: {st:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A kubeconfig file for `token`, written under `dir`.
fn kubeconfig(sb: &Sandbox, dir: &Path, file: &str, token: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, sb.api.kubeconfig_yaml_as(token)).unwrap();
    p
}

async fn bind(sb: &Sandbox, ns: &str, user: &str, role: &str) {
    let rb: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{user}-{role}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(sb.client(), ns)
        .create(&PostParams::default(), &rb)
        .await
        .unwrap();
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scope_every_rotation_abort_and_handover_under_the_chart_rbac() {
    let sb = authz_sandbox().await;
    let admin = sb.client();
    let dir = tempdir();
    // Tenants: Auth Token consumers in shop and abort, API key consumers in keys, and two
    // namespaces sharing one account through a ClusterTokenRotation (credentials in billing).
    let (shop_sid, shop_token) = tenant(&sb, "shop", false, 2).await;
    more_consumers(&sb, "shop").await;
    let (named_sid, named_token) = tenant(&sb, "team-c", false, 1).await;
    let (abort_sid, abort_token) = tenant(&sb, "abort", false, 2).await;
    let (keys_sid, _) = tenant(&sb, "keys", true, 2).await;
    let (shared_sid, shared_token) = tenant(&sb, "team-a", false, 2).await;
    let creds = json!({"TWILIO_ACCOUNT_SID": shared_sid, "TWILIO_AUTH_TOKEN": shared_token});
    let env = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"];
    populate(&sb, "team-b", &shared_token, creds, &env, 2).await;
    // billing holds only the credentials: no consumers there, and not a target.
    let billing: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "billing"}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &billing)
        .await
        .unwrap();
    let admin_secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "twilio-admin", "namespace": "billing"},
        "stringData": {"authToken": shared_token}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), "billing")
        .create(&PostParams::default(), &admin_secret)
        .await
        .unwrap();
    for ns in ["team-a", "team-b"] {
        Api::<Namespace>::all(admin.clone())
            .patch(
                ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"twilio": "shared"}}})),
            )
            .await
            .unwrap();
    }
    let rendered = install_chart(&sb, &dir, &["rbac.scope=cluster"]).await;
    for ns in ["shop", "abort"] {
        bind(&sb, ns, "alice", "edit").await;
    }
    bind(&sb, "shop", "victor", "view").await;

    let token = sb
        .api
        .service_account_token(RELEASE_NS, "token-rotator")
        .unwrap();
    let operator_kc = kubeconfig(&sb, &dir, "operator.kubeconfig", &token);
    let alice = kubeconfig(&sb, &dir, "alice.kubeconfig", ALICE);
    let victor = kubeconfig(&sb, &dir, "victor.kubeconfig", VICTOR);
    let tokens = sb.start_traffic(
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        Duration::from_millis(20),
    );
    let keys = sb.start_key_traffic(
        "TWILIO_ACCOUNT_SID",
        "TWILIO_API_KEY",
        "TWILIO_API_SECRET",
        Duration::from_millis(20),
    );
    let lease = [
        "--lease-namespace",
        RELEASE_NS,
        "--lease-duration-seconds",
        "3",
    ];
    let twilio = sb.twilio.base_url();
    let mut a = start_replica(&operator_kc, &dir, "replica-a", &twilio, &lease);
    wait_ready(&a).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease_holder(&admin, RELEASE_NS).await.as_deref() != Some("replica-a") {
        assert!(Instant::now() < deadline, "no leader:\n{}", a.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = start_replica(&operator_kc, &dir, "replica-b", &twilio, &lease);
    wait_ready(&b).await;

    // alice (edit) creates a TokenRotation and rotates it with the CLI.
    let alice_client = sb.api.client_with_token(ALICE).await;
    Api::<TokenRotation>::namespaced(alice_client, "shop")
        .create(&PostParams::default(), &shop_rotation(&shop_sid, json!({})))
        .await
        .expect("edit may create TokenRotations");
    let out = cli(&alice, &["status", "-n", "shop"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // victor (view) may look, not rotate: the error names the missing permission.
    let out = cli(&victor, &["status", "shop", "-n", "shop"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&victor, &["rotate", "shop", "-n", "shop"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("User \"victor\" cannot patch resource \"tokenrotations\" in API group \"tokenrotator.io\" in the namespace \"shop\""),
        "{err}"
    );
    assert!(
        err.contains("need patch on the resource: the edit role"),
        "{err}"
    );
    assert!(err.lines().count() <= 3, "a line or two, not a dump: {err}");
    let out = cli(&alice, &["rotate", "shop", "-n", "shop"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    wait_tr(
        &admin,
        "shop",
        "shop",
        "rotation",
        |s| s.rotations == 1 && s.phase == Some(Phase::Ready),
        &[&a, &b],
    )
    .await;
    assert_ne!(sb.twilio.primary_token(&shop_sid), Some(shop_token));
    // Again: a second rotation's Events are new ones (they name its rotation ID); a repeated
    // identical Event is patched (its series counted).
    let out = cli(&alice, &["rotate", "shop", "-n", "shop"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    wait_tr(
        &admin,
        "shop",
        "shop",
        "second rotation",
        |s| s.rotations == 2 && s.phase == Some(Phase::Ready),
        &[&a, &b],
    )
    .await;
    abort_idle_twice(&admin, "shop", "shop").await;

    // An abort in flight, by alice: new pods never get ready, so the rollout waits.
    sb.workloads.fail_new_pods(
        sandbox::workloads::WorkloadKind::Deployment,
        "abort",
        "api",
        true,
    );
    Api::<TokenRotation>::namespaced(admin.clone(), "abort")
        .create(
            &PostParams::default(),
            &rotation_in(
                "abort",
                &abort_sid,
                "held",
                json!({"tokenrotator.io/rotate-now": "1"}),
            ),
        )
        .await
        .unwrap();
    wait_tr(
        &admin,
        "abort",
        "held",
        "rollout",
        |s| s.phase == Some(Phase::RollingOut),
        &[&a, &b],
    )
    .await;
    let out = cli(&alice, &["abort", "held", "-n", "abort"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    sb.workloads.fail_new_pods(
        sandbox::workloads::WorkloadKind::Deployment,
        "abort",
        "api",
        false,
    );
    wait_tr(
        &admin,
        "abort",
        "held",
        "abort",
        |s| s.phase == Some(Phase::Aborted),
        &[&a, &b],
    )
    .await;
    assert_eq!(sb.twilio.primary_token(&abort_sid), Some(abort_token));
    assert!(sb.twilio.secondary_token(&abort_sid).is_none());

    // The leader crashes; the standby takes the lease and does the rest.
    a.child.kill().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease_holder(&admin, RELEASE_NS).await.as_deref() != Some("replica-b") {
        assert!(Instant::now() < deadline, "no take-over:\n{}", b.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Api::<TokenRotation>::namespaced(admin.clone(), "keys")
        .create(
            &PostParams::default(),
            &key_rotation_in("keys", &keys_sid, "keys", json!({})),
        )
        .await
        .unwrap();
    // One ClusterTokenRotation selects namespaces by label, one names them.
    let by_label = shared_rotation_for(&shared_sid, "billing");
    let mut by_name = shared_rotation_for(&named_sid, "billing");
    by_name.metadata.name = Some("named".into());
    by_name.spec.namespaces = serde_json::from_value(json!({"names": ["team-c"]})).unwrap();
    by_name.spec.credentials_namespace = "team-c".into();
    for ctr in [by_label, by_name] {
        Api::<ClusterTokenRotation>::all(admin.clone())
            .create(&PostParams::default(), &ctr)
            .await
            .unwrap();
    }
    wait_tr(
        &admin,
        "keys",
        "keys",
        "API key rotation",
        |s| s.rotations == 1 && s.phase == Some(Phase::Ready),
        &[&b],
    )
    .await;
    for name in ["shared", "named"] {
        wait_cluster_status_with(&admin, name, Duration::from_secs(90), |s| {
            s.rotations == 1 && s.phase == Some(Phase::Ready)
        })
        .await;
    }
    assert_ne!(sb.twilio.primary_token(&shared_sid), Some(shared_token));
    assert_ne!(sb.twilio.primary_token(&named_sid), Some(named_token));

    let (token_refusals, key_refusals) = (tokens.refusals(), keys.refusals());
    let (served, refused) = tokens.stop().await;
    let (key_served, key_refused) = keys.stop().await;
    eprintln!("consumer calls: Auth Token {served} served / {refused} refused; API key {key_served} / {key_refused}");
    assert!(served > 0 && key_served > 0);
    assert_eq!(
        refused, 0,
        "Auth Token consumers refused: {token_refusals:#?}"
    );
    assert_eq!(
        key_refused,
        0,
        "API key consumers refused: {key_refusals:#?}\n{}",
        b.output()
    );

    let log = sb.api.audit_log();
    let denied = forbidden(&log);
    assert!(
        denied.is_empty(),
        "the operator was refused:\n{}",
        denied.join("\n")
    );
    let checks = sb.api.admission_checks();
    let refused_checks: Vec<_> = checks
        .iter()
        .filter(|c| c.user == OPERATOR && !c.allowed)
        .collect();
    assert!(refused_checks.is_empty(), "{refused_checks:?}");
    let used = used(&log, &checks);
    let granted = granted(&rendered);
    eprintln!("granted rule -> a request that needed it:");
    let mut unused = Vec::new();
    for g in &granted {
        match used.get(g) {
            Some(example) => eprintln!("  {g:?}: {example}"),
            None => unused.push(format!("{g:?}")),
        }
    }
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
    drop(b);
}

/// A World over an authorizing sandbox, for the in-process controller's config.
fn world_of(sb: Sandbox, sid: String, token: String) -> World {
    World {
        client: sb.client(),
        sid,
        old_token: token,
        old_key: None,
        sb,
    }
}

/// The in-process controller, authenticated as the chart's ServiceAccount.
async fn start_as_operator(
    w: &World,
    namespaces: &[&str],
    safety: token_rotator::controller::SafetyOverrides,
) -> tokio::task::JoinHandle<()> {
    let token =
        w.sb.api
            .service_account_token(RELEASE_NS, "token-rotator")
            .unwrap();
    let client = w.sb.api.client_with_token(&token).await;
    let mut cfg = config(w, Default::default());
    cfg.namespaces = namespaces.iter().map(|n| n.to_string()).collect();
    cfg.safety = safety;
    tokio::spawn(async move {
        if let Err(e) = token_rotator::controller::run(client, cfg).await {
            panic!("controller stopped: {e}");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_scope_touches_nothing_outside_and_gets_no_403() {
    let sb = authz_sandbox().await;
    let dir = tempdir();
    let (sid, token) = tenant(&sb, "shop", false, 2).await;
    more_consumers(&sb, "shop").await;
    let (out_sid, out_token) = tenant(&sb, "outside", false, 1).await;
    let rendered = install_chart(
        &sb,
        &dir,
        &["rbac.scope=namespaces", "rbac.namespaces={shop}"],
    )
    .await;
    bind(&sb, "shop", "alice", "edit").await;
    bind(&sb, "shop", "victor", "view").await;
    let w = world_of(sb, sid.clone(), token.clone());
    Api::<TokenRotation>::namespaced(w.client.clone(), "outside")
        .create(
            &PostParams::default(),
            &rotation_in(
                "outside",
                &out_sid,
                "stray",
                json!({"tokenrotator.io/rotate-now": "1"}),
            ),
        )
        .await
        .unwrap();
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_as_operator(&w, &["shop"], Default::default()).await;
    Api::<TokenRotation>::namespaced(w.client.clone(), "shop")
        .create(
            &PostParams::default(),
            &shop_rotation(&sid, json!({"tokenrotator.io/rotate-now": "1"})),
        )
        .await
        .unwrap();
    wait_tr(
        &w.client,
        "shop",
        "shop",
        "rotation",
        |s| s.rotations == 1 && s.phase == Some(Phase::Ready),
        &[],
    )
    .await;
    // Twice: the second rotation finds nothing unmanaged left.
    Api::<TokenRotation>::namespaced(w.client.clone(), "shop")
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"tokenrotator.io/rotate-now": "2"}}}),
            ),
        )
        .await
        .unwrap();
    wait_tr(
        &w.client,
        "shop",
        "shop",
        "second rotation",
        |s| s.rotations == 2 && s.phase == Some(Phase::Ready),
        &[],
    )
    .await;
    abort_idle_twice(&w.client, "shop", "shop").await;
    // Time for anything stray to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0);
    assert_ne!(w.sb.twilio.primary_token(&sid), Some(token));

    // Outside the scope: untouched, and never even asked about.
    let stray = Api::<TokenRotation>::namespaced(w.client.clone(), "outside")
        .get("stray")
        .await
        .unwrap();
    assert!(stray.status.is_none(), "{:?}", stray.status);
    assert_eq!(w.sb.twilio.primary_token(&out_sid), Some(out_token));
    let log = w.sb.api.audit_log();
    // Nothing in outside, nothing cluster-wide but the permission checks it asks about itself.
    let outside: Vec<_> = log
        .iter()
        .filter(|r| r.user == OPERATOR)
        .filter(|r| {
            r.namespace == "outside"
                || (r.namespace.is_empty() && r.resource != "selfsubjectaccessreviews")
        })
        .map(|r| format!("{} {} {}", r.verb, r.resource, r.path))
        .collect();
    assert!(outside.is_empty(), "requests outside shop: {outside:?}");
    let denied = forbidden(&log);
    assert!(denied.is_empty(), "403 storm:\n{}", denied.join("\n"));
    // Every verb of the namespace Role is used (the leader election Role is the same as in
    // cluster scope, covered there; the in-process controller does not elect).
    let used = used(&log, &w.sb.api.admission_checks());
    let unused: Vec<_> = granted(&rendered)
        .into_iter()
        .filter(|(g, _, _)| g != "coordination.k8s.io")
        .filter(|g| !used.contains_key(g))
        .collect();
    assert!(unused.is_empty(), "granted but never used: {unused:?}");

    // People: the chart's roles aggregate into the bootstrap edit and view roles.
    let admin = w.sb.api.kubeconfig_yaml();
    let answers = tokio::task::spawn_blocking(move || {
        let dir = tempdir();
        let kc = dir.join("admin.kubeconfig");
        std::fs::write(&kc, admin).unwrap();
        let can = |args: &[&str]| {
            let out = std::process::Command::new(sandbox::tools::kubectl())
                .args(["auth", "can-i"])
                .args(args)
                .env("KUBECONFIG", &kc)
                .env("HOME", &dir)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        [
            can(&[
                "create",
                "tokenrotations.tokenrotator.io",
                "-n",
                "shop",
                "--as",
                "alice",
            ]),
            can(&[
                "patch",
                "tokenrotations.tokenrotator.io",
                "-n",
                "shop",
                "--as",
                "alice",
            ]),
            can(&[
                "delete",
                "tokenrotations.tokenrotator.io",
                "-n",
                "shop",
                "--as",
                "alice",
            ]),
            can(&[
                "list",
                "tokenrotations.tokenrotator.io",
                "-n",
                "shop",
                "--as",
                "victor",
            ]),
            can(&[
                "patch",
                "tokenrotations.tokenrotator.io",
                "-n",
                "shop",
                "--as",
                "victor",
            ]),
            can(&[
                "list",
                "tokenrotations.tokenrotator.io",
                "-n",
                "outside",
                "--as",
                "victor",
            ]),
            can(&[
                "update",
                "tokenrotations.tokenrotator.io",
                "--subresource",
                "status",
                "-n",
                "shop",
                "--as",
                "alice",
            ]),
        ]
    })
    .await
    .unwrap();
    assert_eq!(answers, ["yes", "yes", "yes", "yes", "no", "no", "no"]);
}

/// The negative control: the same chart with one verb taken away (secrets create, which
/// server-side apply needs for a Secret that does not exist yet). The sandbox's authorizer says
/// no, and the operator, asking before it creates anything, gives the rotation up naming the
/// permission: no token created, nothing promoted, consumers unharmed. Granted again, a new
/// rotate-now completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_needed_verb_nothing_is_created_and_the_permission_is_named() {
    let sb = authz_sandbox().await;
    let dir = tempdir();
    let (sid, token) = tenant(&sb, "shop", false, 2).await;
    install_chart(&sb, &dir, &["rbac.scope=cluster"]).await;
    let (roles, full) = cut_secrets_create(&sb).await;
    let w = world_of(sb, sid.clone(), token.clone());
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let ctl = start_as_operator(&w, &[], Default::default()).await;
    let trs: Api<TokenRotation> = Api::namespaced(w.client.clone(), "shop");
    trs.create(
        &PostParams::default(),
        &rotation_in(
            "shop",
            &sid,
            "shop",
            json!({"tokenrotator.io/rotate-now": "1"}),
        ),
    )
    .await
    .unwrap();
    wait_tr(
        &w.client,
        "shop",
        "shop",
        "giving up",
        |s| s.phase == Some(Phase::Failed),
        &[],
    )
    .await;
    let st = trs.get("shop").await.unwrap().status.unwrap_or_default();
    let degraded = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "MissingPermissions");
    assert!(
        degraded
            .message
            .contains("may not create secrets in \"shop\""),
        "{}",
        degraded.message
    );
    assert!(
        w.sb.twilio.secondary_token(&sid).is_none(),
        "nothing created"
    );
    assert_eq!(w.sb.twilio.primary_token(&sid), Some(token.clone()));
    let denied = forbidden(&w.sb.api.audit_log());
    assert!(
        denied.is_empty(),
        "asked first, so never refused: {denied:?}"
    );

    // Granted again: a new rotate-now completes.
    let mut restored = full;
    restored.metadata.resource_version = None;
    roles
        .replace("token-rotator", &PostParams::default(), &restored)
        .await
        .unwrap();
    trs.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"tokenrotator.io/rotate-now": "2"}}})),
    )
    .await
    .unwrap();
    wait_tr(
        &w.client,
        "shop",
        "shop",
        "rotation",
        |s| s.rotations == 1 && s.phase == Some(Phase::Ready),
        &[],
    )
    .await;
    let (served, refused) = traffic.stop().await;
    ctl.abort();
    assert!(served > 0);
    assert_eq!(refused, 0, "consumers refused");
    assert_ne!(w.sb.twilio.primary_token(&sid), Some(token));
}

/// Takes `create` away from the operator's Secret rule; returns the roles API and the full role.
async fn cut_secrets_create(
    sb: &Sandbox,
) -> (
    Api<k8s_openapi::api::rbac::v1::ClusterRole>,
    k8s_openapi::api::rbac::v1::ClusterRole,
) {
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(sb.client());
    let full = roles.get("token-rotator").await.unwrap();
    let mut cut = full.clone();
    for rule in cut.rules.iter_mut().flatten() {
        if rule.resources.iter().flatten().any(|r| r == "secrets") {
            rule.verbs.retain(|v| v != "create");
        }
    }
    roles
        .replace("token-rotator", &PostParams::default(), &cut)
        .await
        .unwrap();
    (roles, full)
}

/// Calls that asked Twilio for a new secondary Auth Token.
fn secondary_creates(w: &World) -> usize {
    w.sb.twilio
        .request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/v1/AuthTokens/Secondary"))
        .count()
}

/// The negative control of the permission check: without it, the same missing verb is found
/// by the write that needs it, after Twilio created a secondary, and every retry creates
/// another one (cleaned up by the next attempt, but a token shown once each time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_permission_check_each_retry_creates_a_secondary() {
    let sb = authz_sandbox().await;
    let dir = tempdir();
    let (sid, token) = tenant(&sb, "shop", false, 2).await;
    install_chart(&sb, &dir, &["rbac.scope=cluster"]).await;
    cut_secrets_create(&sb).await;
    let w = world_of(sb, sid.clone(), token.clone());
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let safety = token_rotator::controller::SafetyOverrides {
        skip_permission_preflight: true,
        ..Default::default()
    };
    let ctl = start_as_operator(&w, &[], safety).await;
    Api::<TokenRotation>::namespaced(w.client.clone(), "shop")
        .create(
            &PostParams::default(),
            &shop_rotation(&sid, json!({"tokenrotator.io/rotate-now": "1"})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while secondary_creates(&w) < 2 {
        assert!(
            Instant::now() < deadline,
            "only {} creates",
            secondary_creates(&w)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let denied = forbidden(&w.sb.api.audit_log());
    let refused_checks =
        w.sb.api
            .admission_checks()
            .iter()
            .filter(|c| c.user == OPERATOR && !c.allowed)
            .count();
    let (_, refused) = traffic.stop().await;
    ctl.abort();
    eprintln!(
        "without the check: {} secondary creates, {} refused writes",
        secondary_creates(&w),
        denied.len() + refused_checks
    );
    assert!(
        refused_checks > 0,
        "the authorizer refused the staging Secret's create"
    );
    assert_eq!(refused, 0, "consumers never saw the new token");
}
