//! helm v4 against the sandbox API server: install (server-side apply), upgrade and uninstall of
//! a chart with a CRD in crds/, RBAC, a ConfigMap, a Deployment and a custom resource.

mod kube_common;

use kube_common::{Cli, Raw};
use sandbox::kube::ApiServer;

fn chart() -> String {
    format!("{}/tests/fixtures/kube-chart", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_uninstall() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let cfg = s.kubeconfig_yaml();
    let cli = std::sync::Arc::new(Cli::new(&cfg));
    let c = cli.clone();
    let install = tokio::task::spawn_blocking(move || {
        c.run(
            &sandbox::tools::helm(),
            &["install", "demo", &chart(), "--namespace", "default"],
        )
    })
    .await
    .unwrap();
    assert!(
        install.ok && install.stdout.contains("STATUS: deployed"),
        "{}\n{}",
        install.stdout,
        install.stderr
    );

    let crd = raw
        .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.demo.example.com")
        .await;
    assert_eq!(crd.status, 200);
    let cm = raw
        .get("/api/v1/namespaces/default/configmaps/demo-config")
        .await
        .body;
    assert_eq!(cm["data"]["greeting"], "hello");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    assert!(
        cm["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["manager"] == "helm" && e["operation"] == "Apply"),
        "helm 4 installs with server-side apply: {}",
        cm["metadata"]["managedFields"]
    );
    let dep = raw
        .get("/apis/apps/v1/namespaces/default/deployments/demo-app")
        .await
        .body;
    assert_eq!(dep["spec"]["replicas"], 1);
    for p in [
        "/api/v1/namespaces/default/serviceaccounts/demo-sa",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/demo-role",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/demo-rb",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/demo-widgets",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/demo-widgets",
        "/apis/demo.example.com/v1/namespaces/default/widgets/demo-widget",
    ] {
        assert_eq!(raw.get(p).await.status, 200, "{p}");
    }
    let releases = raw
        .get("/api/v1/namespaces/default/secrets?labelSelector=owner%3Dhelm,name%3Ddemo")
        .await
        .body;
    assert_eq!(
        releases["items"].as_array().unwrap().len(),
        1,
        "release stored as a Secret (protobuf body)"
    );

    let c = cli.clone();
    let upgrade = tokio::task::spawn_blocking(move || {
        c.run(
            &sandbox::tools::helm(),
            &[
                "upgrade",
                "demo",
                &chart(),
                "--namespace",
                "default",
                "--set",
                "replicas=3",
                "--set",
                "greeting=bye",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        upgrade.ok && upgrade.stdout.contains("REVISION: 2"),
        "{}\n{}",
        upgrade.stdout,
        upgrade.stderr
    );
    assert_eq!(
        raw.get("/api/v1/namespaces/default/configmaps/demo-config")
            .await
            .body["data"]["greeting"],
        "bye"
    );
    assert_eq!(
        raw.get("/apis/apps/v1/namespaces/default/deployments/demo-app")
            .await
            .body["spec"]["replicas"],
        3
    );
    assert_eq!(
        raw.get("/apis/demo.example.com/v1/namespaces/default/widgets/demo-widget")
            .await
            .body["spec"]["size"],
        3
    );

    let c = cli.clone();
    let list = tokio::task::spawn_blocking(move || {
        c.run(&sandbox::tools::helm(), &["list", "--namespace", "default"])
    })
    .await
    .unwrap();
    assert!(
        list.ok && list.stdout.contains("demo") && list.stdout.contains("deployed"),
        "{}",
        list.stdout
    );

    let c = cli.clone();
    let un = tokio::task::spawn_blocking(move || {
        c.run(
            &sandbox::tools::helm(),
            &["uninstall", "demo", "--namespace", "default"],
        )
    })
    .await
    .unwrap();
    assert!(un.ok, "{}\n{}", un.stdout, un.stderr);
    for p in [
        "/api/v1/namespaces/default/configmaps/demo-config",
        "/apis/apps/v1/namespaces/default/deployments/demo-app",
        "/apis/demo.example.com/v1/namespaces/default/widgets/demo-widget",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/demo-widgets",
    ] {
        assert_eq!(raw.get(p).await.status, 404, "{p} removed by uninstall");
    }
    assert_eq!(
        raw.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.demo.example.com")
            .await
            .status,
        200,
        "helm keeps CRDs from crds/"
    );
}
