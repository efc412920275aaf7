//! Authentication and RBAC in the sandbox API server, driven by kubectl 1.35 and raw HTTP:
//! static and ServiceAccount tokens (`kubectl create token`), 401s, 403s worded like the
//! apiserver's, Roles/ClusterRoles/bindings with resourceNames and subresources, aggregated
//! ClusterRoles, `kubectl auth can-i` (with `--as` impersonation and `--list`), `auth whoami`,
//! and the OwnerReferencesPermissionEnforcement rule.

mod kube_common;

use kube_common::{assert_status, Cli, Raw};
use sandbox::kube::auth::{AuthOptions, StaticToken};
use sandbox::kube::{ApiServer, ApiServerOptions};
use serde_json::{json, Value};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn server() -> ApiServer {
    ApiServer::start_with(ApiServerOptions {
        auth: Some(AuthOptions {
            tokens: vec![
                StaticToken::new("alice-token", "alice", &[]),
                StaticToken::new("bob-token", "bob", &["devs"]),
            ],
        }),
        ..Default::default()
    })
    .await
    .unwrap()
}

const POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
# alice may view in shop (the aggregated bootstrap role), and read one Secret by name.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-view, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: one-secret, namespace: shop}
rules:
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [public]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-one-secret, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: one-secret}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
# The group devs may create ConfigMaps and read Deployments in shop, nothing more.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: configmaps, namespace: shop}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, get]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs-configmaps, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmaps}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}]
---
apiVersion: v1
kind: Secret
metadata: {name: public, namespace: shop}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: private, namespace: shop}
stringData: {k: v}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: app, image: api:1}]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_under_rbac_can_i_whoami_impersonation_and_forbidden_messages() {
    let s = server().await;
    let admin = s.kubeconfig_yaml();
    let alice = s.kubeconfig_yaml_as("alice-token");
    let stranger = s.kubeconfig_yaml_as("no-such-token");
    blocking(move || {
        let kubectl = sandbox::tools::kubectl();
        let admin = Cli::new(&admin);
        let policy = admin.write("policy.yaml", POLICY);
        admin.ok(&kubectl, &["apply", "-f", &policy]);
        let can = |args: &[&str]| {
            let mut a = vec!["auth", "can-i"];
            a.extend_from_slice(args);
            let o = admin.run(&kubectl, &a);
            o.stdout.trim().to_string()
        };
        // The bootstrap administrator (system:masters) may do anything.
        assert_eq!(can(&["delete", "nodes"]), "yes");
        // alice through the aggregated view role, and one Secret by name.
        assert_eq!(can(&["list", "pods", "-n", "shop", "--as", "alice"]), "yes");
        assert_eq!(can(&["watch", "deployments.apps", "-n", "shop", "--as", "alice"]), "yes");
        assert_eq!(can(&["create", "pods", "-n", "shop", "--as", "alice"]), "no");
        assert_eq!(can(&["list", "pods", "-n", "default", "--as", "alice"]), "no");
        assert_eq!(can(&["list", "secrets", "-n", "shop", "--as", "alice"]), "no");
        assert_eq!(can(&["get", "secrets/public", "-n", "shop", "--as", "alice"]), "yes");
        assert_eq!(can(&["get", "secrets/private", "-n", "shop", "--as", "alice"]), "no");
        // Groups come with the impersonated user only when named.
        assert_eq!(can(&["create", "configmaps", "-n", "shop", "--as", "bob"]), "no");
        assert_eq!(
            can(&["create", "configmaps", "-n", "shop", "--as", "bob", "--as-group", "devs"]),
            "yes"
        );

        let alice = Cli::new(&alice);
        let who = alice.ok(&kubectl, &["auth", "whoami", "-o", "json"]);
        let who: Value = serde_json::from_str(&who).unwrap();
        assert_eq!(who["status"]["userInfo"]["username"], "alice");
        assert!(who["status"]["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:authenticated")));
        assert!(alice.ok(&kubectl, &["get", "pods", "-n", "shop"]).is_empty());
        assert!(alice
            .ok(&kubectl, &["get", "secret", "public", "-n", "shop", "-o", "name"])
            .contains("secret/public"));
        let denied = alice.run(&kubectl, &["get", "secrets", "-n", "shop"]);
        assert!(!denied.ok);
        assert!(
            denied.stderr.contains(
                "secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"shop\""
            ),
            "{}",
            denied.stderr
        );
        let denied = alice.run(&kubectl, &["delete", "deployment", "api", "-n", "shop"]);
        assert!(
            denied.stderr.contains(
                "deployments.apps \"api\" is forbidden: User \"alice\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"shop\""
            ),
            "{}",
            denied.stderr
        );
        // alice may not impersonate.
        let denied = alice.run(&kubectl, &["get", "pods", "-n", "shop", "--as", "bob"]);
        assert!(
            denied.stderr.contains(
                "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
            ),
            "{}",
            denied.stderr
        );
        let rules = alice.ok(&kubectl, &["auth", "can-i", "--list", "-n", "shop"]);
        assert!(rules.contains("secrets") && rules.contains("[public]"), "{rules}");
        // An unknown token is a 401.
        let o = Cli::new(&stranger).run(&kubectl, &["get", "pods"]);
        assert!(
            o.stderr.contains("You must be logged in to the server"),
            "{}",
            o.stderr
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_aggregation_and_owner_reference_enforcement() {
    let s = server().await;
    let admin_cfg = s.kubeconfig_yaml();
    let (token, admin_cfg) = blocking(move || {
        let kubectl = sandbox::tools::kubectl();
        let admin = Cli::new(&admin_cfg);
        let policy = admin.write("policy.yaml", POLICY);
        admin.ok(&kubectl, &["apply", "-f", &policy]);
        admin.ok(
            &kubectl,
            &["create", "serviceaccount", "robot", "-n", "shop"],
        );
        let token = admin.ok(&kubectl, &["create", "token", "robot", "-n", "shop"]);
        (token.trim().to_string(), admin_cfg)
    })
    .await;
    let raw = Raw::with_ca(&s.url(), &s.ca_pem().unwrap());
    let bearer = format!("Bearer {token}");
    let as_robot = |path: &'static str| {
        let h = bearer.clone();
        let raw = &raw;
        async move {
            raw.send_h("GET", path, None, None, &[("authorization", h.as_str())])
                .await
        }
    };
    let r = as_robot("/api/v1/namespaces/shop/configmaps").await;
    let st = assert_status(&r, 403, "Forbidden");
    assert_eq!(
        st["message"],
        "configmaps is forbidden: User \"system:serviceaccount:shop:robot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"shop\""
    );
    assert_eq!(st["details"], json!({"kind": "configmaps"}));
    // Discovery and health are open to every authenticated user; anonymous may see health.
    assert_eq!(as_robot("/apis").await.status, 200);
    assert_eq!(raw.get("/healthz").await.status, 200);
    let r = raw.get("/apis").await;
    assert_eq!(
        assert_status(&r, 403, "Forbidden")["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/apis\""
    );

    // A ClusterRole labelled for aggregation lands in `view` at once; binding the
    // ServiceAccount (by kind ServiceAccount) to view lets it list ConfigMaps.
    let cfg = admin_cfg.clone();
    let view = blocking(move || {
        let kubectl = sandbox::tools::kubectl();
        let admin = Cli::new(&cfg);
        let extra = admin.write(
            "extra.yaml",
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- apiGroups: [demo.example.com]
  resources: [widgets]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: robot-view, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: robot, namespace: shop}]
"#,
        );
        admin.ok(&kubectl, &["apply", "-f", &extra]);
        admin.ok(&kubectl, &["get", "clusterrole", "view", "-o", "json"])
    })
    .await;
    let view: Value = serde_json::from_str(&view).unwrap();
    assert!(
        view["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"] == json!(["widgets"])),
        "{view}"
    );
    assert_eq!(
        as_robot("/api/v1/namespaces/shop/configmaps").await.status,
        200
    );
    assert_eq!(
        as_robot("/api/v1/namespaces/default/configmaps")
            .await
            .status,
        403
    );

    // OwnerReferencesPermissionEnforcement: bob (group devs) may create ConfigMaps, but not
    // one that blocks the deletion of a Deployment whose finalizers he may not update.
    let bob = s.client_with_token("bob-token").await;
    let admin = s.client().await;
    let deploys: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(admin.clone(), "shop");
    let uid = deploys.get("api").await.unwrap().metadata.uid.unwrap();
    let cm = |name: &str, block: bool| -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": uid,
                "blockOwnerDeletion": block}]},
            "data": {"k": "v"}
        }))
        .unwrap()
    };
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(bob.clone(), "shop");
    cms.create(&Default::default(), &cm("plain", false))
        .await
        .expect("an owner reference that blocks nothing needs nothing more");
    let err = cms
        .create(&Default::default(), &cm("blocking", true))
        .await
        .unwrap_err();
    let kube::Error::Api(e) = err else {
        panic!("{err}")
    };
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "configmaps \"blocking\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>"
    );
    let grant: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": "configmaps", "namespace": "shop"},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments/finalizers"], "verbs": ["update"]}
        ]
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(admin.clone(), "shop")
        .replace("configmaps", &Default::default(), &grant)
        .await
        .unwrap();
    cms.create(&Default::default(), &cm("blocking", true))
        .await
        .expect("allowed with update on deployments/finalizers");

    // A minted token dies with its ServiceAccount.
    kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin, "shop")
        .delete("robot", &Default::default())
        .await
        .unwrap();
    let r = as_robot("/api/v1/namespaces/shop/configmaps").await;
    assert_status(&r, 401, "Unauthorized");

    // The request log names each caller, with the verb and resource the authorizer saw.
    let log = s.audit_log();
    assert!(log
        .iter()
        .any(|r| r.user == "system:serviceaccount:shop:robot"
            && r.verb == "list"
            && r.resource == "configmaps"
            && r.namespace == "shop"
            && r.status == 403));
    assert!(log
        .iter()
        .any(|r| r.user == "bob" && r.verb == "create" && r.status == 403));
}
