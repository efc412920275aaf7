//! The official Python `kubernetes` client against the sandbox API server: list, create,
//! patch (strategic and merge), watch, and error statuses.

mod kube_common;

use kube_common::Cli;
use sandbox::kube::ApiServer;

const SCRIPT: &str = r#"
import json, sys, threading, time
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
apps = client.AppsV1Api()
out = {}
out["namespaces"] = sorted(n.metadata.name for n in v1.list_namespace().items)
cm = v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}), data={"a": "1"}))
out["created_rv"] = cm.metadata.resource_version
p = v1.patch_namespaced_config_map("py", "default", {"data": {"b": "2"}})
out["patched"] = p.data
dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pyd"},
       "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i:1"}, {"name": "d", "image": "j:1"}]}}}}
apps.create_namespaced_deployment("default", dep)
d = apps.patch_namespaced_deployment("pyd", "default", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}}})
out["containers"] = [(c.name, c.image) for c in d.spec.template.spec.containers]
try:
    v1.read_namespaced_config_map("missing", "default")
except ApiException as e:
    out["missing"] = [e.status, json.loads(e.body)["reason"]]
try:
    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py")))
except ApiException as e:
    out["dup"] = [e.status, json.loads(e.body)["reason"]]

rv = v1.list_namespaced_config_map("default").metadata.resource_version
def writer():
    time.sleep(0.3)
    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py2")))
    v1.delete_namespaced_config_map("py2", "default")
threading.Thread(target=writer).start()
events = []
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=10):
    events.append([ev["type"], ev["object"].metadata.name])
    if len(events) == 2:
        w.stop()
out["events"] = events
print(json.dumps(out))
"#;

/// Runs `script` with the Python client against `s`; the JSON it prints.
async fn run_python(s: &ApiServer, script: &'static str) -> serde_json::Value {
    let cli = Cli::new(&s.kubeconfig_yaml());
    let path = cli.write("client.py", script);
    let kc = cli.kubeconfig.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        let o = cli.run(&sandbox::tools::python(), &[&path, &kc]);
        (o.ok, o.stdout, o.stderr)
    })
    .await
    .unwrap();
    assert!(out.0, "python failed:\n{}\n{}", out.1, out.2);
    serde_json::from_str(out.1.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_kubernetes_client_list_watch_patch() {
    let s = ApiServer::start().await.unwrap();
    let v = run_python(&s, SCRIPT).await;
    assert!(v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "default"));
    assert!(v["created_rv"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(v["patched"], serde_json::json!({"a": "1", "b": "2"}));
    assert_eq!(
        v["containers"],
        serde_json::json!([["c", "i:2"], ["d", "j:1"]]),
        "strategic merge by container name"
    );
    assert_eq!(v["missing"], serde_json::json!([404, "NotFound"]));
    assert_eq!(v["dup"], serde_json::json!([409, "AlreadyExists"]));
    assert_eq!(
        v["events"],
        serde_json::json!([["ADDED", "py2"], ["DELETED", "py2"]])
    );
}

const PODS_SCRIPT: &str = r#"
import json, sys, time
from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
apps = client.AppsV1Api()
out = {}
apps.create_namespaced_deployment("default", {"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
ready = set()
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="app=web", timeout_seconds=20):
    p = ev["object"]
    conds = {c.type: c.status for c in (p.status.conditions or [])}
    if conds.get("Ready") == "True":
        ready.add(p.metadata.name)
    if len(ready) == 2:
        w.stop()
out["ready"] = len(ready)
pods = v1.list_namespaced_pod("default", label_selector="app=web").items
out["owners"] = sorted({p.metadata.owner_references[0].kind for p in pods})
out["nodes"] = all(p.spec.node_name.startswith("sim-node-") for p in pods)
out["ips"] = all(p.status.pod_ip.startswith("10.244.") for p in pods)
name = pods[0].metadata.name
deadline = time.time() + 10
reasons = []
while time.time() < deadline and not {"Scheduled", "Started"} <= set(reasons):
    evs = v1.list_namespaced_event("default", field_selector="involvedObject.name=" + name).items
    reasons = [e.reason for e in evs]
    time.sleep(0.1)
out["events"] = sorted(set(reasons))
print(json.dumps(out))
"#;

/// Simulated pods through the Python client: watched by label selector to Ready, owner
/// references, nodes and IPs, and the Events the scheduler and kubelet write about them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_kubernetes_client_sees_simulated_pods_and_their_events() {
    let s = ApiServer::start().await.unwrap();
    let sim = sandbox::workloads::WorkloadSimulator::start(s.client().await, Default::default())
        .await
        .unwrap();
    let v = run_python(&s, PODS_SCRIPT).await;
    assert_eq!(v["ready"], 2);
    assert_eq!(v["owners"], serde_json::json!(["ReplicaSet"]));
    assert_eq!(v["nodes"], true);
    assert_eq!(v["ips"], true);
    assert_eq!(v["events"], serde_json::json!(["Scheduled", "Started"]));
    drop(sim);
}
