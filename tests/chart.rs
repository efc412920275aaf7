//! The Helm chart `charts/token-rotator`: lint, what it renders in both RBAC modes, what its values
//! schema refuses, that its CRDs are the generated ones, that helm v4 installs and uninstalls it on
//! the sandbox API server, and that checkov finds nothing unjustified in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::Api;
use serde::Deserialize;
use serde_json::{json, Value};

const RELEASE: &str = "token-rotator";
const NS: &str = "token-rotator";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/token-rotator")
}

/// A private directory for helm's config/cache/data and rendered files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("chart-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// helm isolated from the user's helm setup; KUBECONFIG is `kubeconfig` in this dir.
    fn helm(&self, args: &[&str]) -> Output {
        let out = Command::new(sandbox::tools::helm())
            .args(args)
            .env("HOME", &self.0)
            .env("KUBECONFIG", self.path("kubeconfig"))
            .env("KUBECACHEDIR", self.path("kubecache"))
            .env("HELM_CACHE_HOME", self.path("helm-cache"))
            .env("HELM_CONFIG_HOME", self.path("helm-config"))
            .env("HELM_DATA_HOME", self.path("helm-data"))
            .current_dir(&self.0)
            .output()
            .expect("start helm");
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `helm template` of the chart as release `token-rotator` in namespace `token-rotator`.
    fn render(&self, set: &[&str]) -> Output {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NS,
        ];
        for s in set {
            args.extend(["--set", s]);
        }
        self.helm(&args)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Renders and parses into objects; panics with helm's output if rendering fails.
fn render_objects(set: &[&str]) -> Vec<Value> {
    let out = Scratch::new().render(set);
    assert!(out.ok, "helm template {set:?} failed: {}", out.stderr);
    parse_docs(&out.stdout)
}

fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("helm renders YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

#[track_caller]
fn one<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> = of_kind(objs, kind)
        .into_iter()
        .filter(|o| o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

/// Rules as {(apiGroup, resource) -> verbs}, so order and grouping do not matter.
fn rule_set(rules: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut set: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in rules.as_array().expect("rules is a list") {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "unexpected rule shape: {rule}"
        );
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                let verbs = set
                    .entry((
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                    ))
                    .or_default();
                for verb in rule["verbs"].as_array().unwrap() {
                    verbs.insert(verb.as_str().unwrap().to_string());
                }
            }
        }
    }
    set
}

fn expected_operator_rules() -> BTreeMap<(String, String), BTreeSet<String>> {
    // tests/rbac.rs shows the operator uses each of these, and needs nothing more.
    let entries: &[(&str, &str, &[&str])] = &[
        // patch: the finalizer a rotation in flight holds.
        (
            "tokenrotator.io",
            "tokenrotations",
            &["get", "list", "watch", "patch"],
        ),
        ("tokenrotator.io", "tokenrotations/status", &["update"]),
        (
            "",
            "secrets",
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        ("apps", "deployments", &["list", "watch", "patch"]),
        ("apps", "statefulsets", &["list", "watch", "patch"]),
        ("apps", "daemonsets", &["list", "watch", "patch"]),
        // The Pod-level barrier; delete for unmanagedPods: Delete.
        ("", "pods", &["list", "delete"]),
        ("apps", "replicasets", &["get"]),
        ("argoproj.io", "rollouts", &["get", "patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ];
    entries
        .iter()
        .map(|(g, r, v)| {
            (
                (g.to_string(), r.to_string()),
                v.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

fn lease_rules() -> BTreeMap<(String, String), BTreeSet<String>> {
    BTreeMap::from([(
        ("coordination.k8s.io".to_string(), "leases".to_string()),
        ["get", "create", "patch"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )])
}

/// No wildcard in any apiGroups/resources/verbs of any Role or ClusterRole.
#[track_caller]
fn assert_no_wildcards(objs: &[Value]) {
    for role in objs
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                for item in rule[field].as_array().unwrap() {
                    assert!(
                        !item.as_str().unwrap().contains('*'),
                        "wildcard in {} {}: {rule}",
                        role["kind"],
                        role["metadata"]["name"]
                    );
                }
            }
        }
    }
}

fn container(objs: &[Value]) -> &Value {
    let dep = one(objs, "Deployment", RELEASE);
    let containers = dep["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn env(objs: &[Value]) -> BTreeMap<String, Value> {
    container(objs)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn app_version() -> String {
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    chart["appVersion"].as_str().unwrap().to_string()
}

#[test]
fn helm_lint_strict_passes() {
    let s = Scratch::new();
    let chart = chart_dir();
    for set in [
        &[][..],
        &["rbac.scope=namespaces", "rbac.namespaces={a,b}"][..],
    ] {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        for v in set {
            args.extend(["--set", v]);
        }
        let out = s.helm(&args);
        assert!(
            out.ok && out.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm lint --strict {set:?}:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn default_render_is_hardened_and_least_privilege() {
    let objs = render_objects(&[]);

    // Every namespaced object lands in the release namespace; all carry the standard labels.
    for o in &objs {
        let kind = o["kind"].as_str().unwrap();
        if !matches!(kind, "ClusterRole" | "ClusterRoleBinding") {
            assert_eq!(o["metadata"]["namespace"], NS, "{kind} namespace");
        }
        let labels = &o["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "token-rotator", "{kind}");
        assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{kind}");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{kind}");
        assert_eq!(labels["app.kubernetes.io/version"], app_version(), "{kind}");
    }
    let kinds: BTreeSet<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for optional in ["ServiceMonitor", "PodDisruptionBudget"] {
        assert!(!kinds.contains(optional), "{optional} is off by default");
    }

    let dep = one(&objs, "Deployment", RELEASE);
    assert_eq!(dep["spec"]["replicas"], 1);
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["automountServiceAccountToken"], true);
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["runAsGroup"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod.get(field).is_none(), "{field} must not be set");
    }

    let c = container(&objs);
    assert_eq!(
        c["image"],
        format!("ghcr.io/token-rotator/token-rotator:{}", app_version())
    );
    assert_eq!(c["imagePullPolicy"], "Always", "a tag can move");
    assert_eq!(c["args"], json!(["run"]));
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["runAsGroup"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"},
               "limits": {"cpu": "500m", "memory": "256Mi"}})
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );

    let env = env(&objs);
    assert_eq!(
        env["POD_NAME"]["valueFrom"],
        json!({"fieldRef": {"fieldPath": "metadata.name"}})
    );
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"],
        json!({"fieldRef": {"fieldPath": "metadata.namespace"}})
    );
    assert_eq!(env["TOKEN_ROTATOR_LOG_FORMAT"]["value"], "json");
    assert_eq!(env["TOKEN_ROTATOR_HTTP_ADDR"]["value"], "0.0.0.0:8080");
    assert_eq!(env["TOKEN_ROTATOR_LEADER_ELECT"]["value"], "true");
    assert_eq!(env["TOKEN_ROTATOR_LEASE_NAME"]["value"], RELEASE);
    assert_eq!(env["TOKEN_ROTATOR_LEASE_DURATION_SECONDS"]["value"], "15");
    for absent in [
        "TOKEN_ROTATOR_NAMESPACES",
        "TOKEN_ROTATOR_TWILIO_BASE_URL",
        "RUST_LOG",
    ] {
        assert!(!env.contains_key(absent), "{absent} is unset by default");
    }

    // Cluster scope: the operator's ClusterRole is exactly what it does, bound to its account.
    let cr = one(&objs, "ClusterRole", RELEASE);
    let mut cluster_rules = expected_operator_rules();
    for (g, r, v) in [
        (
            "tokenrotator.io",
            "clustertokenrotations",
            &["get", "list", "watch", "patch"][..],
        ),
        (
            "tokenrotator.io",
            "clustertokenrotations/status",
            &["update"],
        ),
        ("", "namespaces", &["get", "list"]),
    ] {
        cluster_rules.insert(
            (g.into(), r.into()),
            v.iter().map(|s| s.to_string()).collect(),
        );
    }
    assert_eq!(rule_set(&cr["rules"]), cluster_rules);
    let crb = one(&objs, "ClusterRoleBinding", RELEASE);
    assert_eq!(
        crb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RELEASE})
    );
    assert_eq!(
        crb["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}])
    );
    assert_no_wildcards(&objs);

    // The Lease permissions are namespaced to the release namespace, never cluster-wide.
    let lease_role = one(&objs, "Role", &format!("{RELEASE}-leader-election"));
    assert_eq!(lease_role["metadata"]["namespace"], NS);
    assert_eq!(rule_set(&lease_role["rules"]), lease_rules());
    let lease_rb = one(&objs, "RoleBinding", &format!("{RELEASE}-leader-election"));
    assert_eq!(lease_rb["metadata"]["namespace"], NS);
    assert_eq!(lease_rb["roleRef"]["kind"], "Role");
    assert_eq!(
        lease_rb["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}])
    );
    for cr in of_kind(&objs, "ClusterRole") {
        assert!(
            !rule_set(&cr["rules"])
                .keys()
                .any(|(g, _)| g == "coordination.k8s.io"),
            "no ClusterRole grants leases: {}",
            cr["metadata"]["name"]
        );
    }
    assert_eq!(
        of_kind(&objs, "Role").len(),
        1,
        "only the lease Role in cluster scope"
    );

    // Aggregated user roles: view reads, edit writes, aggregated into the built-in roles.
    let view = one(&objs, "ClusterRole", &format!("{RELEASE}-view"));
    for role in ["view", "edit", "admin"] {
        assert_eq!(
            view["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{role}")],
            "true"
        );
    }
    assert_eq!(
        rule_set(&view["rules"]),
        BTreeMap::from([(
            ("tokenrotator.io".into(), "tokenrotations".into()),
            ["get", "list", "watch"].map(String::from).into()
        )])
    );
    let edit = one(&objs, "ClusterRole", &format!("{RELEASE}-edit"));
    assert!(edit["metadata"]["labels"]
        .get("rbac.authorization.k8s.io/aggregate-to-view")
        .is_none());
    assert_eq!(
        edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        rule_set(&edit["rules"]),
        BTreeMap::from([(
            ("tokenrotator.io".into(), "tokenrotations".into()),
            ["create", "update", "patch", "delete"]
                .map(String::from)
                .into()
        )])
    );

    // The metrics Service targets the pods' `http` port.
    let svc = one(&objs, "Service", &format!("{RELEASE}-metrics"));
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}])
    );
    assert_eq!(
        svc["spec"]["selector"],
        dep["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn user_roles_toggle_and_values_reach_the_pod() {
    let objs = render_objects(&[
        "rbac.aggregateToUserRoles=false",
        "leaderElection.enabled=false",
        "twilio.baseUrl=http://twilio-proxy:4010",
        "logFormat=text",
        "logLevel=info\\,token_rotator=debug",
        "extraEnv[0].name=EXTRA",
        "extraEnv[0].value=yes-please",
    ]);
    assert_eq!(
        of_kind(&objs, "ClusterRole").len(),
        1,
        "only the operator's ClusterRole"
    );
    assert!(
        of_kind(&objs, "Role").is_empty(),
        "no lease Role without leader election"
    );
    let env = env(&objs);
    assert_eq!(
        env["TOKEN_ROTATOR_TWILIO_BASE_URL"]["value"],
        "http://twilio-proxy:4010"
    );
    assert_eq!(env["TOKEN_ROTATOR_LOG_FORMAT"]["value"], "text");
    assert_eq!(env["RUST_LOG"]["value"], "info,token_rotator=debug");
    assert_eq!(env["TOKEN_ROTATOR_LEADER_ELECT"]["value"], "false");
    assert_eq!(env["EXTRA"]["value"], "yes-please");
}

#[test]
fn image_digest_overrides_tag() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let objs = render_objects(&[&format!("image.digest={digest}"), "image.tag=ignored"]);
    let c = container(&objs);
    assert_eq!(
        c["image"],
        format!("ghcr.io/token-rotator/token-rotator@{digest}")
    );
    assert_eq!(c["imagePullPolicy"], "IfNotPresent", "a digest cannot move");
    let annotations = &one(&objs, "Deployment", RELEASE)["metadata"]["annotations"];
    assert!(
        !annotations.to_string().contains("CKV_K8S_43"),
        "no digest skip once pinned: {annotations}"
    );
}

#[test]
fn namespaces_scope_uses_roles_only() {
    let objs = render_objects(&["rbac.scope=namespaces", "rbac.namespaces={a,b}"]);

    assert!(
        of_kind(&objs, "ClusterRoleBinding").is_empty(),
        "no ClusterRoleBinding at all"
    );
    let cluster_roles: BTreeSet<&str> = of_kind(&objs, "ClusterRole")
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cluster_roles,
        BTreeSet::from(["token-rotator-view", "token-rotator-edit"]),
        "only the aggregated user roles are cluster-scoped"
    );

    for ns in ["a", "b"] {
        let roles: Vec<_> = of_kind(&objs, "Role")
            .into_iter()
            .filter(|r| r["metadata"]["namespace"] == ns)
            .collect();
        assert_eq!(roles.len(), 1, "one Role in {ns}");
        assert_eq!(roles[0]["metadata"]["name"], RELEASE);
        assert_eq!(rule_set(&roles[0]["rules"]), expected_operator_rules());
        let bindings: Vec<_> = of_kind(&objs, "RoleBinding")
            .into_iter()
            .filter(|r| r["metadata"]["namespace"] == ns)
            .collect();
        assert_eq!(bindings.len(), 1, "one RoleBinding in {ns}");
        assert_eq!(
            bindings[0]["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RELEASE})
        );
        assert_eq!(
            bindings[0]["subjects"],
            json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}])
        );
    }
    // Besides a and b, only the lease Role in the release namespace.
    let role_places: BTreeSet<(String, String)> = of_kind(&objs, "Role")
        .iter()
        .map(|r| {
            (
                r["metadata"]["namespace"].as_str().unwrap().to_string(),
                r["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        role_places,
        BTreeSet::from([
            ("a".into(), RELEASE.into()),
            ("b".into(), RELEASE.into()),
            (NS.into(), format!("{RELEASE}-leader-election")),
        ])
    );
    assert_no_wildcards(&objs);
    assert_eq!(env(&objs)["TOKEN_ROTATOR_NAMESPACES"]["value"], "a,b");
}

#[test]
fn schema_rejects_bad_values_naming_them() {
    let s = Scratch::new();
    let cases: &[(&[&str], &str)] = &[
        (&["rbac.scope=bogus"], "/rbac/scope"),
        (&["replicaCount=-1"], "/replicaCount"),
        (&["bogusTopLevelKey=1"], "bogusTopLevelKey"),
        (&["rbac.scope=namespaces"], "/rbac/namespaces"),
        (&["image.digest=latest"], "/image/digest"),
        (
            &["extraEnv[0].name=N", "extraEnv[0].value=1"],
            "/extraEnv/0/value",
        ),
        (&["logFormat=xml"], "/logFormat"),
        (
            &["metrics.serviceMonitor.enabled=yes"],
            "/metrics/serviceMonitor/enabled",
        ),
    ];
    for (set, names) in cases {
        let out = s.render(set);
        assert!(!out.ok, "{set:?} must be rejected");
        assert!(
            out.stderr
                .contains("values don't meet the specifications of the schema")
                && out.stderr.contains(names),
            "{set:?}: stderr should name {names}: {}",
            out.stderr
        );
    }

    // The templates guard the same rules when schema validation is skipped, and refuse two
    // replicas without leader election (which the schema cannot see).
    let out = s.helm(&[
        "template",
        RELEASE,
        chart_dir().to_str().unwrap(),
        "--skip-schema-validation",
        "--set",
        "rbac.scope=namespaces",
    ]);
    assert!(
        !out.ok
            && out
                .stderr
                .contains("rbac.namespaces must list at least one namespace"),
        "{}",
        out.stderr
    );
    let out = s.render(&["leaderElection.enabled=false", "replicaCount=2"]);
    assert!(
        !out.ok
            && out
                .stderr
                .contains("replicaCount above 1 needs leaderElection.enabled"),
        "{}",
        out.stderr
    );
}

#[test]
fn chart_crds_are_the_generated_crds() {
    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect()
    }
    let generated = files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"));
    let shipped = files(&chart_dir().join("crds"));
    assert!(!generated.is_empty());
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        shipped.keys().collect::<Vec<_>>(),
        "same CRD files (run scripts/update-crds.sh)"
    );
    for (name, bytes) in &generated {
        assert!(
            &shipped[name] == bytes,
            "charts/token-rotator/crds/{name} differs from crds/{name}: run scripts/update-crds.sh"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_v4_installs_and_uninstalls_on_the_sandbox() {
    let server = sandbox::kube::ApiServer::start().await.unwrap();
    let client = server.client().await;
    let s = std::sync::Arc::new(Scratch::new());
    std::fs::write(s.path("kubeconfig"), server.kubeconfig_yaml()).unwrap();

    let helm = |args: Vec<String>| {
        let s = s.clone();
        tokio::task::spawn_blocking(move || {
            s.helm(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let chart = chart_dir();
    let install = helm(args(&[
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NS,
        "--create-namespace",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "replicaCount=2",
    ]))
    .await
    .unwrap();
    assert!(
        install.ok && install.stdout.contains("STATUS: deployed"),
        "{}\n{}",
        install.stdout,
        install.stderr
    );
    assert!(
        install.stdout.contains("kubectl get tokenrotations"),
        "NOTES printed"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    let netpols: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);
    let roles: Api<Role> = Api::namespaced(client.clone(), NS);
    let role_bindings: Api<RoleBinding> = Api::namespaced(client.clone(), NS);
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let cluster_role_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let lease = format!("{RELEASE}-leader-election");
    let metrics = format!("{RELEASE}-metrics");

    let crd_name = "tokenrotations.tokenrotator.io";
    assert!(crds.get_opt(crd_name).await.unwrap().is_some(), "CRD");
    assert!(Api::<Namespace>::all(client.clone())
        .get_opt(NS)
        .await
        .unwrap()
        .is_some());
    let dep = deployments
        .get_opt(RELEASE)
        .await
        .unwrap()
        .expect("Deployment");
    let dep_spec = dep.spec.unwrap();
    assert_eq!(dep_spec.replicas, Some(2));
    let pod_spec = dep_spec.template.spec.unwrap();
    let sc = pod_spec.containers[0].security_context.clone().unwrap();
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "stored as rendered"
    );
    assert_eq!(pod_spec.service_account_name.as_deref(), Some(RELEASE));
    assert!(accounts.get_opt(RELEASE).await.unwrap().is_some(), "SA");
    assert!(
        services.get_opt(&metrics).await.unwrap().is_some(),
        "Service"
    );
    let pdb = pdbs.get_opt(RELEASE).await.unwrap().expect("PDB");
    assert_eq!(
        pdb.spec.unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert!(
        netpols.get_opt(RELEASE).await.unwrap().is_some(),
        "NetworkPolicy"
    );
    assert!(roles.get_opt(&lease).await.unwrap().is_some(), "lease Role");
    assert!(role_bindings.get_opt(&lease).await.unwrap().is_some());
    for name in [
        RELEASE.to_string(),
        format!("{RELEASE}-view"),
        format!("{RELEASE}-edit"),
    ] {
        assert!(
            cluster_roles.get_opt(&name).await.unwrap().is_some(),
            "ClusterRole {name}"
        );
    }
    assert!(cluster_role_bindings
        .get_opt(RELEASE)
        .await
        .unwrap()
        .is_some());

    let uninstall = helm(args(&["uninstall", RELEASE, "--namespace", NS]))
        .await
        .unwrap();
    assert!(uninstall.ok, "{}\n{}", uninstall.stdout, uninstall.stderr);
    assert!(deployments.get_opt(RELEASE).await.unwrap().is_none());
    assert!(accounts.get_opt(RELEASE).await.unwrap().is_none());
    assert!(services.get_opt(&metrics).await.unwrap().is_none());
    assert!(pdbs.get_opt(RELEASE).await.unwrap().is_none());
    assert!(netpols.get_opt(RELEASE).await.unwrap().is_none());
    assert!(roles.get_opt(&lease).await.unwrap().is_none());
    assert!(role_bindings.get_opt(&lease).await.unwrap().is_none());
    assert!(cluster_roles.get_opt(RELEASE).await.unwrap().is_none());
    assert!(cluster_roles
        .get_opt(&format!("{RELEASE}-view"))
        .await
        .unwrap()
        .is_none());
    assert!(cluster_role_bindings
        .get_opt(RELEASE)
        .await
        .unwrap()
        .is_none());
    assert!(
        crds.get_opt(crd_name).await.unwrap().is_some(),
        "helm keeps CRDs from crds/ on uninstall"
    );
    let list = helm(args(&["list", "--namespace", NS, "--short"]))
        .await
        .unwrap();
    assert!(
        list.ok && list.stdout.trim().is_empty(),
        "release gone: {}\n{}",
        list.stdout,
        list.stderr
    );
    let release_secrets = Api::<Secret>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("owner=helm,name={RELEASE}")))
        .await
        .unwrap();
    assert!(
        release_secrets.items.is_empty(),
        "helm's release records are deleted"
    );
}

/// Checks whose findings the chart cannot fix; each must come with a justification in the
/// rendered object's `checkov.io/skip*` annotation.
const JUSTIFIED_SKIPS: [&str; 3] = [
    // The operator is an API client: it needs its ServiceAccount token.
    "CKV_K8S_38",
    // The default image is a tag (no digest before the image is published).
    "CKV_K8S_43",
    // It must read Secrets whose names users choose, so no resourceNames.
    "CKV2_K8S_5",
];

/// Checks that must pass on the Deployment: the hardening the chart promises.
const MUST_PASS_ON_DEPLOYMENT: [&str; 12] = [
    "CKV_K8S_8",  // liveness probe
    "CKV_K8S_9",  // readiness probe
    "CKV_K8S_11", // CPU limit
    "CKV_K8S_13", // memory limit
    "CKV_K8S_15", // pull policy
    "CKV_K8S_20", // no privilege escalation
    "CKV_K8S_22", // read-only root filesystem
    "CKV_K8S_23", // no root containers
    "CKV_K8S_28", // NET_RAW dropped
    "CKV_K8S_31", // seccomp RuntimeDefault
    "CKV_K8S_37", // capabilities minimised
    "CKV_K8S_40", // high UID
];

/// RBAC checks that must pass on some object (they only apply to Roles and ClusterRoles).
const MUST_PASS_ON_RBAC: [&str; 4] = [
    "CKV_K8S_49",  // no wildcards
    "CKV_K8S_155", // no admission-webhook control
    "CKV_K8S_157", // no bind
    "CKV_K8S_158", // no escalate
];

fn checkov_scan(s: &Scratch, name: &str, set: &[&str]) -> (Value, usize) {
    let out = s.render(set);
    assert!(out.ok, "helm template {set:?}: {}", out.stderr);
    let docs = parse_docs(&out.stdout).len();
    let file = s.path(&format!("{name}.yaml"));
    std::fs::write(&file, &out.stdout).unwrap();
    // --skip-download: no Prisma Cloud calls (there is no network here, and results must not
    // depend on it); without --quiet the JSON lists passed and skipped checks too.
    let run = Command::new(sandbox::tools::checkov())
        .arg("-f")
        .arg(&file)
        .args(["--framework", "kubernetes", "-o", "json", "--skip-download"])
        .env("HOME", &s.0)
        .current_dir(&s.0)
        .output()
        .expect("start checkov");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov {name}: not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        )
    });
    // One framework gives one report object; several would give a list.
    let report = match report {
        Value::Array(mut reports) => {
            assert_eq!(reports.len(), 1);
            reports.remove(0)
        }
        r => r,
    };
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        run.status.success() && failed.is_empty(),
        "checkov {name} exited {}; failed checks:\n{}",
        run.status,
        failed.join("\n")
    );
    (report, docs)
}

#[test]
fn checkov_finds_nothing_unjustified() {
    let s = std::sync::Arc::new(Scratch::new());
    let common = [
        "podDisruptionBudget.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "replicaCount=2",
    ];
    // checkov takes seconds to start: scan both modes at once.
    let modes: Vec<(&str, Vec<&'static str>)> = vec![
        ("cluster", common.to_vec()),
        (
            "namespaces",
            [
                &common[..],
                &["rbac.scope=namespaces", "rbac.namespaces={a,b}"],
            ]
            .concat(),
        ),
    ];
    let scans: Vec<_> = modes
        .into_iter()
        .map(|(name, set)| {
            let s = s.clone();
            std::thread::spawn(move || (name, checkov_scan(&s, name, &set)))
        })
        .collect();
    for scan in scans {
        // Re-raise a scan thread's panic with its own message.
        let (name, (report, docs)) = scan.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        let summary = &report["summary"];
        assert_eq!(summary["failed"], 0, "{name}: {summary}");
        assert_eq!(summary["parsing_errors"], 0, "{name}: {summary}");
        // Every rendered object, plus the Pod checkov derives from the Deployment's template.
        assert_eq!(
            summary["resource_count"],
            docs + 1,
            "{name}: checkov saw every rendered object"
        );
        let results = &report["results"];

        let passed_on_deployment: BTreeSet<&str> = results["passed_checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["resource"] == format!("Deployment.{NS}.{RELEASE}"))
            .map(|c| c["check_id"].as_str().unwrap())
            .collect();
        for id in MUST_PASS_ON_DEPLOYMENT {
            assert!(
                passed_on_deployment.contains(id),
                "{name}: {id} did not pass on the Deployment: {passed_on_deployment:?}"
            );
        }
        let passed_anywhere: BTreeSet<&str> = results["passed_checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["check_id"].as_str().unwrap())
            .collect();
        // checkov evaluates the NetworkPolicy check on the Pod it derives from the template.
        assert!(
            results["passed_checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["check_id"] == "CKV2_K8S_6"
                    && c["resource"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("Pod.{NS}.{RELEASE}."))),
            "{name}: a NetworkPolicy must select the operator pods (CKV2_K8S_6)"
        );
        for id in MUST_PASS_ON_RBAC {
            assert!(passed_anywhere.contains(id), "{name}: {id} did not pass");
        }

        let skipped = results["skipped_checks"].as_array().unwrap();
        assert!(!skipped.is_empty(), "{name}: the known skips are reported");
        for skip in skipped {
            let id = skip["check_id"].as_str().unwrap();
            let why = skip["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or("");
            assert!(
                JUSTIFIED_SKIPS.contains(&id),
                "{name}: unexpected skip {id} on {}",
                skip["resource"]
            );
            assert!(
                why.len() > 40 && why != "No comment provided",
                "{name}: skip {id} on {} lacks a justification: {why:?}",
                skip["resource"]
            );
        }
    }
}

/// Every metric an example alert uses is one the operator exports (names taken from the real
/// encoder after touching every metric), so a renamed metric cannot silently break the alerts.
#[test]
fn example_alerts_use_exported_metrics() {
    use token_rotator::api::{Phase, TokenRotationStatus};
    let objs = render_objects(&["metrics.prometheusRule.enabled=true"]);
    let rule = of_kind(&objs, "PrometheusRule");
    assert_eq!(rule.len(), 1);
    let rules = rule[0]["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "TwilioTokenRotationOverdue",
            "TwilioTokenRotationHeld",
            "TokenRotatorNoLeader",
            "TokenRotatorReconcileErrors"
        ]
    );

    let m = token_rotator::metrics::Metrics::new();
    let now = chrono::Utc::now();
    let status = TokenRotationStatus {
        phase: Some(Phase::Ready),
        last_rotation_time: Some(token_rotator::time::to_k8s(now)),
        next_rotation_time: Some(token_rotator::time::to_k8s(now)),
        ..Default::default()
    };
    m.observe("ns", "tr", &status);
    m.reconcile_error("ns", "tr", "X");
    m.set_leader(true);
    let exported = exported_names(&m);
    for r in rules {
        let expr = r["expr"].as_str().unwrap();
        let used = metric_names(expr);
        assert!(!used.is_empty(), "{expr}");
        for name in used {
            assert!(
                exported.contains(&name),
                "alert uses {name}, not exported: {exported:?}"
            );
        }
    }
    // The overdue threshold comes from values.
    let objs = render_objects(&[
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.overdueSeconds=7200",
    ]);
    let expr = of_kind(&objs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"][0]["expr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(expr.ends_with("> 7200"), "{expr}");
}

/// Every sample name the operator's metrics encode now.
fn exported_names(m: &token_rotator::metrics::Metrics) -> BTreeSet<String> {
    m.encode()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The `token_rotator_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("token_rotator_"))
        .map(str::to_owned)
        .collect()
}

/// The Grafana dashboard: a ConfigMap with the sidecar's label, valid JSON, and every query
/// uses only metrics the operator exports (touched through every kind of write first).
#[test]
fn grafana_dashboard_uses_exported_metrics() {
    use token_rotator::api::{Phase, RotationResult, TokenRotationStatus};
    use token_rotator::twilio::{CallOutcome, CallRecord, Endpoint};
    assert!(
        of_kind(&render_objects(&[]), "ConfigMap").is_empty(),
        "off by default"
    );
    let objs = render_objects(&["metrics.grafanaDashboard.enabled=true"]);
    let cms = of_kind(&objs, "ConfigMap");
    assert_eq!(cms.len(), 1);
    assert_eq!(cms[0]["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: serde_json::Value =
        serde_json::from_str(cms[0]["data"]["token-rotator.json"].as_str().unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "token-rotator");

    let m = token_rotator::metrics::Metrics::new();
    let now = chrono::Utc::now();
    let rolling = serde_json::from_value::<TokenRotationStatus>(serde_json::json!({
        "phase": "RollingOut",
        "rotation": {"id": "r", "trigger": "Manual", "startTime": token_rotator::time::to_k8s(now),
                     "phaseStartTime": token_rotator::time::to_k8s(now), "stagingSecret": "s"}
    }))
    .unwrap();
    let done = TokenRotationStatus {
        phase: Some(Phase::Ready),
        last_result: Some(RotationResult::Succeeded),
        last_rotation_time: Some(token_rotator::time::to_k8s(now)),
        next_rotation_time: Some(token_rotator::time::to_k8s(now)),
        ..Default::default()
    };
    m.status_written("ns", "tr", &rolling, &done, now);
    m.reconciled("ns", "tr");
    m.reconcile_error("ns", "tr", "X");
    m.set_leader(true);
    m.twilio_observer().on_call(&CallRecord {
        endpoint: Endpoint::FetchAccount,
        outcome: CallOutcome::Success,
        attempts: 1,
        status: Some(200),
        duration: std::time::Duration::from_millis(1),
    });
    let exported = exported_names(&m);
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{expr}");
            for name in used {
                assert!(
                    exported.contains(&name),
                    "panel {} uses {name}, not exported: {exported:?}",
                    panel["title"]
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} queries");
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for wanted in [
        "Token age",
        "Next rotation",
        "Phase",
        "Held",
        "Twilio calls",
        "Twilio errors",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(wanted)),
            "{wanted}: {titles:?}"
        );
    }
}

/// Notifications: each configured sink reaches the pod as NAMESPACE/SECRET:KEY, and the
/// operator may read exactly those Secrets in the release namespace (nothing when unset).
#[test]
fn notification_sinks_reach_the_pod_with_least_privilege() {
    let default = render_objects(&[]);
    assert!(
        !of_kind(&default, "Role")
            .iter()
            .any(|r| r["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-notifications")),
        "no notification Role unless configured"
    );
    let objs = render_objects(&[
        "notifications.webhook.secretName=hooks",
        "notifications.slack.secretName=hooks",
        "notifications.slack.key=slack",
    ]);
    let env =
        &one(&objs, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        value("TOKEN_ROTATOR_NOTIFY_WEBHOOK").as_deref(),
        Some(format!("{NS}/hooks:url").as_str())
    );
    assert_eq!(
        value("TOKEN_ROTATOR_NOTIFY_SLACK").as_deref(),
        Some(format!("{NS}/hooks:slack").as_str())
    );
    let role = one(&objs, "Role", &format!("{RELEASE}-notifications"));
    assert_eq!(role["metadata"]["namespace"], NS);
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["secrets"],
                             "resourceNames": ["hooks"], "verbs": ["get"]}])
    );
    let binding = one(&objs, "RoleBinding", &format!("{RELEASE}-notifications"));
    assert_eq!(
        binding["roleRef"]["name"],
        format!("{RELEASE}-notifications")
    );
}
