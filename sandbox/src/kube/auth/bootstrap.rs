//! The bootstrap RBAC policy a real cluster starts with (a subset of kube-apiserver's
//! `bootstrappolicy`): `cluster-admin` for `system:masters`, the aggregated user-facing roles
//! `admin`/`edit`/`view`, discovery and health for everyone, self-reviews for the
//! authenticated. Installed only when authorization is on.

use serde_json::{json, Value};

use crate::kube::engine::{self, WriteOpts};
use crate::kube::store::State;

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn role(name: &str, labels: Value, aggregate_from: Option<&str>, rules: Vec<Value>) -> Value {
    let mut r = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules,
    });
    if let Some(label) = aggregate_from {
        r["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
    }
    r
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn roles() -> Vec<Value> {
    let boot = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let workloads = [
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "deployments/scale",
        "statefulsets/scale",
        "replicasets/scale",
    ];
    let core_read = [
        "pods",
        "configmaps",
        "services",
        "endpoints",
        "persistentvolumeclaims",
        "serviceaccounts",
        "events",
        "pods/status",
        "namespaces/status",
    ];
    let core_write = [
        "pods",
        "configmaps",
        "secrets",
        "services",
        "endpoints",
        "persistentvolumeclaims",
        "serviceaccounts",
        "events",
    ];
    vec![
        role(
            "cluster-admin",
            boot.clone(),
            None,
            vec![
                rule(&["*"], &["*"], &["*"]),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        role(
            "admin",
            boot.clone(),
            Some("rbac.authorization.k8s.io/aggregate-to-admin"),
            vec![],
        ),
        role(
            "edit",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            Some("rbac.authorization.k8s.io/aggregate-to-edit"),
            vec![],
        ),
        role(
            "view",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            Some("rbac.authorization.k8s.io/aggregate-to-view"),
            vec![],
        ),
        role(
            "system:aggregate-to-admin",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            None,
            vec![
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["roles", "rolebindings"],
                    crate::kube::registry::ALL_VERBS,
                ),
                rule(
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                    &["create"],
                ),
            ],
        ),
        role(
            "system:aggregate-to-edit",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            None,
            vec![
                rule(&[""], &core_write, WRITE),
                rule(&[""], &["secrets"], READ),
                rule(&["apps"], &workloads, WRITE),
                rule(&["batch"], &["jobs", "cronjobs"], WRITE),
                rule(&[""], &["serviceaccounts"], &["impersonate"]),
            ],
        ),
        role(
            "system:aggregate-to-view",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-view": "true"}),
            None,
            vec![
                rule(&[""], &core_read, READ),
                rule(&[""], &["namespaces"], READ),
                rule(&["apps"], &workloads, READ),
                rule(&["batch"], &["jobs", "cronjobs"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
            ],
        ),
        role(
            "system:basic-user",
            boot.clone(),
            None,
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        role(
            "system:discovery",
            boot.clone(),
            None,
            vec![
                json!({"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}),
            ],
        ),
        role(
            "system:public-info-viewer",
            boot,
            None,
            vec![
                json!({"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}),
            ],
        ),
    ]
}

fn bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

/// Creates the bootstrap roles and bindings (then aggregation fills `admin`, `edit`, `view`).
pub fn install(st: &mut State) {
    let opts = WriteOpts {
        field_manager: Some("kube-apiserver".into()),
        ..Default::default()
    };
    for (plural, objs) in [
        ("clusterroles", roles()),
        ("clusterrolebindings", bindings()),
    ] {
        let Some(def) = st.registry.get("rbac.authorization.k8s.io", "v1", plural) else {
            continue;
        };
        for obj in objs {
            let _ = engine::create(st, &def, None, obj, &opts);
        }
    }
    super::rbac::aggregate(st);
}
