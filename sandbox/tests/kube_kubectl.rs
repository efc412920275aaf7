//! kubectl v1.35 against the sandbox API server: client-side and server-side apply, create,
//! replace, get with printer columns, get -w, patch (merge/json/strategic), delete with
//! finalizers, wait, rollout restart, scale, explain, and protobuf-bodied `create <kind>`.

mod kube_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_common::{yaml, Cli, Raw, WIDGET_CRD};
use sandbox::kube::ApiServer;
use serde_json::{json, Value};

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"#;

const WIDGET: &str = r#"
apiVersion: demo.example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: default
spec:
  size: 3
"#;

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["manager"].as_str().unwrap(),
                e["operation"].as_str().unwrap()
            )
        })
        .collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_create_replace_patch_get() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let cfg = s.kubeconfig_yaml();
    let out = blocking(move || {
        let kubectl = sandbox::tools::kubectl();
        let cli = Cli::new(&cfg);
        let k = |args: &[&str]| cli.ok(&kubectl, args);
        let dep = cli.write("dep.yaml", DEPLOY);
        assert!(k(&["apply", "-f", &dep]).contains("deployment.apps/web created"));
        assert!(k(&["apply", "-f", &dep]).contains("deployment.apps/web unchanged"));
        let dep2 = cli.write("dep2.yaml", &DEPLOY.replace("replicas: 2", "replicas: 3").replace("nginx:1.25", "nginx:1.26"));
        assert!(k(&["apply", "-f", &dep2]).contains("deployment.apps/web configured"));
        let after_csa: Value = serde_json::from_str(&k(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"])).unwrap();
        assert!(managers(&after_csa).contains(&"kubectl-client-side-apply/Update".to_string()), "{:?}", managers(&after_csa));
        assert!(after_csa["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
        assert_eq!(after_csa["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1, "strategic merge kept one container");
        assert_eq!(after_csa["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");

        let dep3 = cli.write("dep3.yaml", &DEPLOY.replace("replicas: 2", "replicas: 4"));
        assert!(k(&["apply", "--server-side", "-f", &dep3]).contains("serverside-applied"));
        let after_ssa: Value = serde_json::from_str(&k(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"])).unwrap();
        assert!(managers(&after_ssa).contains(&"kubectl/Apply".to_string()), "{:?}", managers(&after_ssa));
        assert_eq!(after_ssa["spec"]["replicas"], 4);

        // Printer columns for built-ins and a CRD.
        let table = k(&["get", "deploy"]);
        assert!(table.lines().next().unwrap().split_whitespace().eq(["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]), "{table}");
        assert!(table.contains("web    0/4"), "{table}");
        let crd = cli.write("crd.yaml", WIDGET_CRD);
        assert!(k(&["apply", "-f", &crd]).contains("customresourcedefinition.apiextensions.k8s.io/widgets.demo.example.com created"));
        k(&["wait", "--for=condition=Established", "crd/widgets.demo.example.com", "--timeout=10s"]);
        let w = cli.write("w.yaml", WIDGET);
        assert!(k(&["apply", "-f", &w]).contains("widget.demo.example.com/w1 created"));
        let wt = k(&["get", "widgets"]);
        assert!(wt.lines().next().unwrap().split_whitespace().eq(["NAME", "SIZE", "READY", "AGE"]), "{wt}");
        assert!(wt.lines().nth(1).unwrap().starts_with("w1"), "{wt}");
        assert!(k(&["get", "wd", "w1", "-o", "jsonpath={.spec.color}"]).contains("red"), "short name + defaulting");
        let bad = cli.run(&kubectl, &["apply", "-f", &cli.write("bad.yaml", &WIDGET.replace("size: 3", "size: 30"))]);
        assert!(!bad.ok && bad.stderr.contains("spec.size: Invalid value: 30: spec.size in body should be less than or equal to 10"), "{}", bad.stderr);
        let unknown = cli.run(&kubectl, &["apply", "-f", &cli.write("unk.yaml", &WIDGET.replace("size: 3", "size: 3\n  bogus: 1"))]);
        assert!(!unknown.ok && unknown.stderr.contains("unknown field \"spec.bogus\""), "strict validation: {}", unknown.stderr);

        // create / replace
        let cm = cli.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\ndata:\n  a: b\n");
        assert!(k(&["create", "-f", &cm]).contains("configmap/c1 created"));
        let again = cli.run(&kubectl, &["create", "-f", &cm]);
        assert!(!again.ok && again.stderr.contains("AlreadyExists") || again.stderr.contains("already exists"), "{}", again.stderr);
        let cm2 = cli.write("cm2.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\ndata:\n  a: c\n");
        assert!(k(&["replace", "-f", &cm2]).contains("configmap/c1 replaced"));
        assert_eq!(k(&["get", "cm", "c1", "-o", "jsonpath={.data.a}"]), "c");
        // Typed clientset commands send protobuf bodies.
        assert!(k(&["create", "configmap", "c2", "--from-literal=k=v"]).contains("configmap/c2 created"));
        assert!(k(&["create", "secret", "generic", "s1", "--from-literal=pw=hunter2"]).contains("secret/s1 created"));
        assert!(k(&["create", "namespace", "team-a"]).contains("namespace/team-a created"));
        assert!(k(&["create", "serviceaccount", "bot", "-n", "team-a"]).contains("serviceaccount/bot created"));
        assert_eq!(k(&["get", "secret", "s1", "-o", "jsonpath={.data.pw}"]), "aHVudGVyMg==");

        // patch: merge, json, strategic
        k(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"replicas":1}}"#]);
        k(&["patch", "deploy", "web", "--type=json", "-p", r#"[{"op":"add","path":"/metadata/labels","value":{"tier":"front"}}]"#]);
        k(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:1"}]}}}}"#]);
        let d: Value = serde_json::from_str(&k(&["get", "deploy", "web", "-o", "json"])).unwrap();
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["metadata"]["labels"]["tier"], "front");
        let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["nginx", "side"], "strategic patch merged containers by name");
        let failed = cli.run(&kubectl, &["patch", "deploy", "web", "--type=json", "-p", r#"[{"op":"test","path":"/spec/replicas","value":9}]"#]);
        assert!(!failed.ok, "a failing JSON patch test is an error");

        // rollout restart and scale
        k(&["rollout", "restart", "deploy/web"]);
        let at = k(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}"]);
        assert!(chrono::DateTime::parse_from_rfc3339(at.trim()).is_ok(), "restartedAt annotation: {at:?}");
        k(&["scale", "deploy/web", "--replicas=5"]);
        assert_eq!(k(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "5");
        let explain = cli.run(&kubectl, &["explain", "widgets.spec"]);
        (explain.ok, explain.stdout)
    })
    .await;
    assert!(
        out.0 && out.1.contains("size"),
        "kubectl explain: {}",
        out.1
    );
    assert_eq!(
        raw.get("/api/v1/namespaces/team-a/serviceaccounts/bot")
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_delete_with_finalizers_and_wait() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    raw.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        yaml(WIDGET_CRD),
    )
    .await;
    raw.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "first"}}),
    )
    .await;
    let cfg = s.kubeconfig_yaml();
    let cli = std::sync::Arc::new(Cli::new(&cfg));

    // get -w streams changes (Tables) until killed.
    let kubectl = sandbox::tools::kubectl();
    let mut child = Command::new(&kubectl)
        .args(["get", "configmaps", "-w", "--request-timeout=0"])
        .env("KUBECONFIG", &cli.kubeconfig)
        .env("KUBECACHEDIR", cli.dir.join("watch-cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let wait_line = |lines: &mut Vec<String>, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if lines.iter().any(|l: &String| l.contains(needle)) {
                return true;
            }
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                lines.push(l);
            }
        }
        false
    };
    assert!(wait_line(&mut lines, "first"), "initial list: {lines:?}");
    raw.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "second"}, "data": {"a": "1"}}),
    )
    .await;
    assert!(
        wait_line(&mut lines, "second"),
        "streamed a change: {lines:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines[0].split_whitespace().eq(["NAME", "DATA", "AGE"]),
        "{lines:?}"
    );

    // delete waits while finalizers hold the object, then returns once they are removed.
    raw.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    let c2 = cli.clone();
    let deleting = tokio::task::spawn_blocking(move || {
        c2.run(
            &sandbox::tools::kubectl(),
            &["delete", "configmap", "held", "--timeout=20s"],
        )
    });
    let mut saw_ts = false;
    for _ in 0..100 {
        if raw
            .get("/api/v1/namespaces/default/configmaps/held")
            .await
            .body["metadata"]["deletionTimestamp"]
            .is_string()
        {
            saw_ts = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_ts);
    raw.patch(
        "/api/v1/namespaces/default/configmaps/held",
        "application/merge-patch+json",
        r#"{"metadata":{"finalizers":null}}"#,
    )
    .await;
    let out = deleting.await.unwrap();
    assert!(
        out.ok && out.stdout.contains("configmap \"held\" deleted"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        raw.get("/api/v1/namespaces/default/configmaps/held")
            .await
            .status,
        404
    );

    // wait --for=condition on a custom resource's status.
    raw.post("/apis/demo.example.com/v1/namespaces/default/widgets", json!({"apiVersion": "demo.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})).await;
    let c3 = cli.clone();
    let waiting = tokio::task::spawn_blocking(move || {
        c3.run(
            &sandbox::tools::kubectl(),
            &["wait", "--for=condition=Ready", "widget/w", "--timeout=20s"],
        )
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    raw.patch(
        "/apis/demo.example.com/v1/namespaces/default/widgets/w/status",
        "application/merge-patch+json",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    )
    .await;
    let out = waiting.await.unwrap();
    assert!(
        out.ok && out.stdout.contains("condition met"),
        "{} {}",
        out.stdout,
        out.stderr
    );
}
