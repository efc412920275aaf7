//! Object semantics of the sandbox API server: metadata, resourceVersion, generation,
//! status/scale subresources, finalizers, garbage collection, namespaces, CRDs, Events.

mod kube_common;

use kube_common::{assert_status, yaml, Raw, WIDGET_CRD};
use sandbox::kube::ApiServer;
use serde_json::json;

async fn setup() -> (ApiServer, Raw) {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    (s, raw)
}

fn rv(v: &serde_json::Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn deployment(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}
        }
    })
}

#[tokio::test]
async fn create_sets_metadata_and_one_global_resource_version() {
    let (_s, raw) = setup().await;
    let ns = raw.get("/api/v1/namespaces").await;
    let names: Vec<&str> = ns.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"default") && names.contains(&"kube-system"),
        "{names:?}"
    );

    let cm = raw.post("/api/v1/namespaces/default/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}})).await;
    assert_eq!(cm.status, 201, "{}", cm.text);
    let md = &cm.body["metadata"];
    assert_eq!(
        md["namespace"], "default",
        "namespace defaults from the URL"
    );
    assert!(uuid::Uuid::parse_str(md["uid"].as_str().unwrap()).is_ok());
    let ts = md["creationTimestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z') && !ts.contains('.'),
        "{ts}"
    );
    assert!(
        md.get("generation").is_none(),
        "ConfigMaps have no generation"
    );

    let sec = raw.post("/api/v1/namespaces/default/secrets", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"generateName": "tok-"}, "stringData": {"a": "b"}})).await;
    assert_eq!(sec.status, 201, "{}", sec.text);
    let gen_name = sec.body["metadata"]["name"].as_str().unwrap();
    assert!(
        gen_name.starts_with("tok-") && gen_name.len() == 9,
        "{gen_name}"
    );
    assert_eq!(
        sec.body["data"]["a"], "Yg==",
        "stringData is folded into data"
    );
    assert_eq!(sec.body["type"], "Opaque");
    assert!(rv(&sec.body) > rv(&cm.body), "one counter across kinds");

    let dep = raw
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            deployment("web"),
        )
        .await;
    assert_eq!(dep.status, 201, "{}", dep.text);
    assert_eq!(dep.body["metadata"]["generation"], 1);
    assert!(rv(&dep.body) > rv(&sec.body));
    assert_eq!(dep.body["spec"]["replicas"], 1, "defaults applied");
    assert_eq!(
        dep.body["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );

    let list = raw.get("/api/v1/namespaces/default/configmaps").await;
    assert_eq!(list.body["kind"], "ConfigMapList");
    assert!(rv(&list.body) >= rv(&dep.body), "list RV is the current RV");

    let wrong_ns = raw.post("/api/v1/namespaces/default/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "other"}})).await;
    let st = assert_status(&wrong_ns, 400, "BadRequest");
    assert_eq!(
        st["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );
}

#[tokio::test]
async fn generation_rules_per_kind() {
    let (_s, raw) = setup().await;
    let dep = raw
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            deployment("g"),
        )
        .await
        .body;
    let p = "/apis/apps/v1/namespaces/default/deployments/g";
    let lab = raw
        .patch(
            p,
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        )
        .await
        .body;
    assert_eq!(
        lab["metadata"]["generation"], 1,
        "labels do not bump generation"
    );
    let ann = raw
        .patch(
            p,
            "application/merge-patch+json",
            r#"{"metadata":{"annotations":{"x":"y"}}}"#,
        )
        .await
        .body;
    assert_eq!(
        ann["metadata"]["generation"], 2,
        "Deployments bump on annotation changes"
    );
    let spec = raw
        .patch(
            p,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":3}}"#,
        )
        .await
        .body;
    assert_eq!(spec["metadata"]["generation"], 3);
    let st = raw
        .patch(
            &format!("{p}/status"),
            "application/merge-patch+json",
            r#"{"status":{"replicas":3}}"#,
        )
        .await
        .body;
    assert_eq!(st["metadata"]["generation"], 3, "status writes do not bump");
    assert!(rv(&st) > rv(&dep));

    // A write that changes nothing keeps the resourceVersion and emits nothing.
    let same = raw
        .patch(
            p,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":3}}"#,
        )
        .await
        .body;
    assert_eq!(rv(&same), rv(&st));

    // Custom resources without status subresource bump on any non-metadata change.
    let mut crd = yaml(WIDGET_CRD);
    crd["spec"]["versions"][0]
        .as_object_mut()
        .unwrap()
        .remove("subresources");
    assert_eq!(
        raw.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            crd
        )
        .await
        .status,
        201
    );
    let w = raw.post("/apis/demo.example.com/v1/namespaces/default/widgets", json!({"apiVersion": "demo.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}, "status": {"conditions": []}})).await;
    assert_eq!(w.status, 201, "{}", w.text);
    assert_eq!(
        w.body["status"]["conditions"],
        json!([]),
        "without a status subresource status is kept"
    );
    let w2 = raw
        .patch(
            "/apis/demo.example.com/v1/namespaces/default/widgets/w",
            "application/merge-patch+json",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        )
        .await
        .body;
    assert_eq!(w2["metadata"]["generation"], 2);
}

#[tokio::test]
async fn optimistic_concurrency_and_put_rules() {
    let (_s, raw) = setup().await;
    let dep = raw
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            deployment("x"),
        )
        .await
        .body;
    let p = "/apis/apps/v1/namespaces/default/deployments/x";
    let mut upd = dep.clone();
    upd["spec"]["replicas"] = json!(2);
    let ok = raw.put(p, upd.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let stale = raw.put(p, upd.clone()).await;
    let st = assert_status(&stale, 409, "Conflict");
    assert_eq!(
        st["message"],
        "Operation cannot be fulfilled on deployments.apps \"x\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(st["details"]["kind"], "deployments");
    assert_eq!(st["details"]["group"], "apps");

    // Built-ins accept an unconditional PUT (no resourceVersion).
    let mut unconditional = ok.body.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    unconditional["spec"]["replicas"] = json!(4);
    assert_eq!(raw.put(p, unconditional).await.status, 200);

    // Custom resources require it.
    assert_eq!(
        raw.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml(WIDGET_CRD)
        )
        .await
        .status,
        201
    );
    let w = raw.post("/apis/demo.example.com/v1/namespaces/default/widgets", json!({"apiVersion": "demo.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})).await.body;
    let mut no_rv = w.clone();
    no_rv["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let r = raw
        .put(
            "/apis/demo.example.com/v1/namespaces/default/widgets/w",
            no_rv,
        )
        .await;
    let st = assert_status(&r, 422, "Invalid");
    assert_eq!(st["message"], "Widget.demo.example.com \"w\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update");

    // Name in body must match the URL.
    let mut renamed = ok.body.clone();
    renamed["metadata"]["name"] = json!("y");
    let r = raw.put(p, renamed).await;
    let st = assert_status(&r, 400, "BadRequest");
    assert_eq!(
        st["message"],
        "the name of the object (y) does not match the name on the URL (x)"
    );
}

#[tokio::test]
async fn error_reasons_match_a_real_server() {
    let (_s, raw) = setup().await;
    // NotFound
    let st = assert_status(
        &raw.get("/apis/apps/v1/namespaces/default/deployments/nope")
            .await,
        404,
        "NotFound",
    );
    assert_eq!(st["message"], "deployments.apps \"nope\" not found");
    assert_eq!(
        st["details"],
        json!({"name": "nope", "group": "apps", "kind": "deployments"})
    );
    let st = assert_status(
        &raw.get("/api/v1/namespaces/default/secrets/nope").await,
        404,
        "NotFound",
    );
    assert_eq!(st["message"], "secrets \"nope\" not found");
    let st = assert_status(
        &raw.post(
            "/api/v1/namespaces/missing/configmaps",
            json!({"metadata": {"name": "a"}}),
        )
        .await,
        404,
        "NotFound",
    );
    assert_eq!(st["message"], "namespaces \"missing\" not found");
    assert_status(
        &raw.get("/apis/nothing.example.com/v1/things").await,
        404,
        "NotFound",
    );
    // AlreadyExists
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}});
    assert_eq!(
        raw.post("/api/v1/namespaces/default/configmaps", cm.clone())
            .await
            .status,
        201
    );
    let st = assert_status(
        &raw.post("/api/v1/namespaces/default/configmaps", cm.clone())
            .await,
        409,
        "AlreadyExists",
    );
    assert_eq!(st["message"], "configmaps \"dup\" already exists");
    // Invalid: every failed field is listed
    let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "Bad_Name"}, "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}});
    let st = assert_status(
        &raw.post("/apis/apps/v1/namespaces/default/deployments", bad)
            .await,
        422,
        "Invalid",
    );
    let causes = st["details"]["causes"].as_array().unwrap();
    let fields: Vec<&str> = causes
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"metadata.name")
            && fields.contains(&"spec.replicas")
            && fields.contains(&"spec.template.spec.containers[0].image"),
        "{fields:?}"
    );
    assert_eq!(st["details"]["kind"], "Deployment");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .starts_with("Deployment.apps \"Bad_Name\" is invalid: ["),
        "{}",
        st["message"]
    );
    let st = assert_status(
        &raw.post(
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        )
        .await,
        422,
        "Invalid",
    );
    assert_eq!(
        st["details"]["causes"][0]["message"],
        "Required value: name or generateName is required"
    );
    // BadRequest: malformed JSON, wrong apiVersion, unsupported field selector
    let r = raw
        .send(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some("application/json"),
            Some("{not json".into()),
        )
        .await;
    let st = assert_status(&r, 400, "BadRequest");
    assert!(st["message"].as_str().unwrap().starts_with("the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; json parse error"), "{}", st["message"]);
    let st = assert_status(
        &raw.post(
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "z"}}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        st["message"],
        "the API version in the data (apps/v1) does not match the expected API version (v1)"
    );
    let st = assert_status(
        &raw.get("/api/v1/namespaces/default/configmaps?fieldSelector=spec.foo%3Dbar")
            .await,
        400,
        "BadRequest",
    );
    assert_eq!(st["message"], "field label not supported: spec.foo");
    assert_status(
        &raw.get("/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(b")
            .await,
        400,
        "BadRequest",
    );
    // MethodNotAllowed
    assert_status(
        &raw.send(
            "POST",
            "/api/v1/namespaces/default/configmaps/dup",
            Some("application/json"),
            Some(cm.to_string()),
        )
        .await,
        405,
        "MethodNotAllowed",
    );
    assert_status(
        &raw.send(
            "PUT",
            "/api/v1/namespaces/default/configmaps",
            Some("application/json"),
            Some(cm.to_string()),
        )
        .await,
        405,
        "MethodNotAllowed",
    );
    // UnsupportedMediaType
    let st = assert_status(
        &raw.patch(
            "/api/v1/namespaces/default/configmaps/dup",
            "text/plain",
            "{}",
        )
        .await,
        415,
        "UnsupportedMediaType",
    );
    assert!(st["message"].as_str().unwrap().starts_with("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"), "{}", st["message"]);
    assert_eq!(
        raw.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml(WIDGET_CRD)
        )
        .await
        .status,
        201
    );
    assert_eq!(raw.post("/apis/demo.example.com/v1/namespaces/default/widgets", json!({"apiVersion": "demo.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})).await.status, 201);
    assert_status(
        &raw.patch(
            "/apis/demo.example.com/v1/namespaces/default/widgets/w",
            "application/strategic-merge-patch+json",
            "{}",
        )
        .await,
        415,
        "UnsupportedMediaType",
    );
    // NotAcceptable
    let r = raw
        .send_h(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            None,
            None,
            &[("accept", "application/vnd.kubernetes.protobuf")],
        )
        .await;
    assert_status(&r, 406, "NotAcceptable");
    // Forbidden: terminating namespace
    assert_eq!(
        raw.post(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "term"}})
        )
        .await
        .status,
        201
    );
    assert_eq!(raw.post("/api/v1/namespaces/term/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).await.status, 201);
    let del = raw.delete("/api/v1/namespaces/term").await;
    assert_eq!(del.status, 200, "{}", del.text);
    assert_eq!(del.body["status"]["phase"], "Terminating");
    let st = assert_status(
        &raw.post(
            "/api/v1/namespaces/term/configmaps",
            json!({"metadata": {"name": "new"}}),
        )
        .await,
        403,
        "Forbidden",
    );
    assert_eq!(st["message"], "configmaps is forbidden: unable to create new content in namespace term because it is being terminated");
    // Expired: too old continue token
    for i in 0..3 {
        raw.post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": format!("p{i}")}}),
        )
        .await;
    }
    let page = raw
        .get("/api/v1/namespaces/default/configmaps?limit=1")
        .await;
    let token = page.body["metadata"]["continue"]
        .as_str()
        .unwrap()
        .to_string();
    _s.compact();
    let st = assert_status(
        &raw.get(&format!(
            "/api/v1/namespaces/default/configmaps?limit=1&continue={token}"
        ))
        .await,
        410,
        "Expired",
    );
    assert!(st["message"]
        .as_str()
        .unwrap()
        .starts_with("The provided continue parameter is too old"));
    // Expired (Gone) on a too-old list resourceVersion is covered in kube_watch.rs.
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let (_s, raw) = setup().await;
    let p = "/apis/apps/v1/namespaces/default/deployments/d";
    let mut d = deployment("d");
    d["status"] = json!({"replicas": 7});
    let created = raw
        .post("/apis/apps/v1/namespaces/default/deployments", d)
        .await
        .body;
    assert_eq!(created["status"], json!({}), "create resets status");
    let st = raw
        .patch(
            &format!("{p}/status"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":9},"status":{"readyReplicas":1,"replicas":1}}"#,
        )
        .await;
    assert_eq!(st.status, 200, "{}", st.text);
    assert_eq!(st.body["status"]["readyReplicas"], 1);
    assert_eq!(st.body["spec"]["replicas"], 1, "status writes ignore spec");
    let mut main = st.body.clone();
    main["status"] = json!({"readyReplicas": 99});
    main["spec"]["replicas"] = json!(2);
    let m = raw.put(p, main).await.body;
    assert_eq!(m["status"]["readyReplicas"], 1, "main writes ignore status");
    assert_eq!(m["spec"]["replicas"], 2);

    let scale = raw.get(&format!("{p}/scale")).await;
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["apiVersion"], "autoscaling/v1");
    assert_eq!(scale.body["spec"]["replicas"], 2);
    assert_eq!(scale.body["status"]["selector"], "app=d");
    let mut s2 = scale.body.clone();
    s2["spec"]["replicas"] = json!(5);
    assert_eq!(
        raw.put(&format!("{p}/scale"), s2).await.body["spec"]["replicas"],
        5
    );
    raw.patch(
        &format!("{p}/scale"),
        "application/merge-patch+json",
        r#"{"spec":{"replicas":6}}"#,
    )
    .await;
    assert_eq!(raw.get(p).await.body["spec"]["replicas"], 6);

    assert_status(
        &raw.get("/api/v1/namespaces/default/configmaps/x/status")
            .await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn finalizers_hold_objects_until_removed() {
    let (_s, raw) = setup().await;
    let p = "/api/v1/namespaces/default/configmaps/f";
    raw.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "f", "finalizers": ["example.com/a"]}}),
    )
    .await;
    let dep = raw
        .post("/apis/apps/v1/namespaces/default/deployments", {
            let mut d = deployment("fd");
            d["metadata"]["finalizers"] = json!(["example.com/a"]);
            d
        })
        .await
        .body;
    let del = raw.delete(p).await;
    assert_eq!(del.status, 200);
    assert!(
        del.body["metadata"]["deletionTimestamp"].is_string(),
        "{}",
        del.text
    );
    assert_eq!(del.body["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(
        raw.get(p).await.status,
        200,
        "still there while finalizers remain"
    );
    let add = raw
        .patch(
            p,
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":["example.com/a","example.com/b"]}}"#,
        )
        .await;
    let st = assert_status(&add, 422, "Invalid");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("no new finalizers can be added if the object is being deleted"),
        "{}",
        st["message"]
    );
    let rm = raw
        .patch(
            p,
            "application/json-patch+json",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        )
        .await;
    assert_eq!(rm.status, 200, "{}", rm.text);
    assert_status(&raw.get(p).await, 404, "NotFound");

    // Deletion bumps generation of kinds that have one.
    let d = raw
        .delete("/apis/apps/v1/namespaces/default/deployments/fd")
        .await
        .body;
    assert_eq!(
        d["metadata"]["generation"].as_i64().unwrap(),
        dep["metadata"]["generation"].as_i64().unwrap() + 1
    );

    // Immediate deletion answers with a Status.
    raw.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "g"}}),
    )
    .await;
    let d = raw.delete("/api/v1/namespaces/default/configmaps/g").await;
    assert_eq!(d.body["kind"], "Status");
    assert_eq!(d.body["status"], "Success");
    assert_eq!(d.body["details"]["name"], "g");
    assert_eq!(d.body["details"]["kind"], "configmaps");
    // Preconditions
    raw.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "h"}}),
    )
    .await;
    let r = raw
        .send(
            "DELETE",
            "/api/v1/namespaces/default/configmaps/h",
            Some("application/json"),
            Some(json!({"preconditions": {"uid": "nope"}}).to_string()),
        )
        .await;
    assert_status(&r, 409, "Conflict");
}

async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn garbage_collection_background_foreground_orphan() {
    let (_s, raw) = setup().await;
    let mk_owner = |name: &str| json!({"metadata": {"name": name}});
    let owner = raw
        .post("/api/v1/namespaces/default/configmaps", mk_owner("owner"))
        .await
        .body;
    let owned = |name: &str, owner: &serde_json::Value, block: bool| json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block}]}});
    raw.post(
        "/api/v1/namespaces/default/secrets",
        owned("dep1", &owner, false),
    )
    .await;
    raw.delete("/api/v1/namespaces/default/configmaps/owner")
        .await;
    assert!(
        eventually(|| async {
            raw.get("/api/v1/namespaces/default/secrets/dep1")
                .await
                .status
                == 404
        })
        .await,
        "background GC"
    );

    let owner = raw
        .post("/api/v1/namespaces/default/configmaps", mk_owner("fg"))
        .await
        .body;
    let mut dep = owned("dep2", &owner, true);
    dep["metadata"]["finalizers"] = json!(["example.com/slow"]);
    raw.post("/api/v1/namespaces/default/secrets", dep).await;
    let r = raw
        .send(
            "DELETE",
            "/api/v1/namespaces/default/configmaps/fg",
            Some("application/json"),
            Some(r#"{"propagationPolicy":"Foreground"}"#.into()),
        )
        .await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(
        eventually(|| async {
            raw.get("/api/v1/namespaces/default/secrets/dep2")
                .await
                .body["metadata"]["deletionTimestamp"]
                .is_string()
        })
        .await
    );
    assert_eq!(
        raw.get("/api/v1/namespaces/default/configmaps/fg")
            .await
            .status,
        200,
        "owner waits for blocking dependents"
    );
    raw.patch(
        "/api/v1/namespaces/default/secrets/dep2",
        "application/merge-patch+json",
        r#"{"metadata":{"finalizers":null}}"#,
    )
    .await;
    assert!(
        eventually(|| async {
            raw.get("/api/v1/namespaces/default/configmaps/fg")
                .await
                .status
                == 404
        })
        .await,
        "foreground finished"
    );

    let owner = raw
        .post("/api/v1/namespaces/default/configmaps", mk_owner("or"))
        .await
        .body;
    raw.post(
        "/api/v1/namespaces/default/secrets",
        owned("dep3", &owner, false),
    )
    .await;
    raw.send(
        "DELETE",
        "/api/v1/namespaces/default/configmaps/or?propagationPolicy=Orphan",
        None,
        None,
    )
    .await;
    assert!(
        eventually(|| async {
            raw.get("/api/v1/namespaces/default/configmaps/or")
                .await
                .status
                == 404
        })
        .await
    );
    let d3 = raw.get("/api/v1/namespaces/default/secrets/dep3").await;
    assert_eq!(d3.status, 200);
    assert!(
        d3.body["metadata"].get("ownerReferences").is_none(),
        "orphaned dependents lose the reference"
    );
}

#[tokio::test]
async fn namespace_and_crd_deletion_remove_contents() {
    let (_s, raw) = setup().await;
    raw.post("/api/v1/namespaces", json!({"metadata": {"name": "gone"}}))
        .await;
    raw.post(
        "/api/v1/namespaces/gone/configmaps",
        json!({"metadata": {"name": "a"}}),
    )
    .await;
    raw.post(
        "/api/v1/namespaces/gone/secrets",
        json!({"metadata": {"name": "b"}}),
    )
    .await;
    raw.delete("/api/v1/namespaces/gone").await;
    assert!(eventually(|| async { raw.get("/api/v1/namespaces/gone").await.status == 404 }).await);
    assert_eq!(
        raw.get("/api/v1/namespaces/gone/configmaps/a").await.status,
        404
    );

    let crd = raw
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml(WIDGET_CRD),
        )
        .await;
    let conds = crd.body["status"]["conditions"].as_array().unwrap();
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True"));
    assert!(conds
        .iter()
        .any(|c| c["type"] == "NamesAccepted" && c["reason"] == "NoConflicts"));
    raw.post("/apis/demo.example.com/v1/namespaces/default/widgets", json!({"apiVersion": "demo.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})).await;
    let disc = raw.get("/apis/demo.example.com/v1").await;
    assert_eq!(disc.body["resources"][0]["name"], "widgets");
    raw.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.demo.example.com")
        .await;
    assert!(
        eventually(|| async {
            raw.get(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.demo.example.com",
            )
            .await
            .status
                == 404
        })
        .await
    );
    assert_eq!(
        raw.get("/apis/demo.example.com/v1/namespaces/default/widgets")
            .await
            .status,
        404,
        "no longer served"
    );
}

#[tokio::test]
async fn events_are_served_through_both_apis_and_kube_recorder_works() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
    use kube::api::{Api, ListParams, PostParams};
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    use kube::Resource;

    let (s, raw) = setup().await;
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "subject"}})).unwrap(),
        )
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "token-rotator".into(),
            instance: Some("pod-1".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Rotated".into(),
        note: Some("rotated the token".into()),
        action: "Rotate".into(),
        secondary: None,
    };
    let oref = cm.object_ref(&());
    recorder.publish(&ev, &oref).await.unwrap();
    recorder.publish(&ev, &oref).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let list = core.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1, "repeats become a series on one Event");
    let e = &list.items[0];
    assert_eq!(e.message.as_deref(), Some("rotated the token"));
    assert_eq!(e.involved_object.name.as_deref(), Some("subject"));
    assert_eq!(e.reporting_component.as_deref(), Some("token-rotator"));
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));
    let v1 = raw
        .get("/apis/events.k8s.io/v1/namespaces/default/events")
        .await;
    assert_eq!(v1.body["items"][0]["note"], "rotated the token");
    assert_eq!(v1.body["items"][0]["regarding"]["name"], "subject");

    // Leases: plain resource with RV-based conflicts and MicroTime fields.
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let l = leases.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2025-01-01T00:00:00.123456Z"}})).unwrap()).await.unwrap();
    assert!(l.spec.as_ref().unwrap().renew_time.is_some());
    let mut l2 = l.clone();
    l2.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("leader", &PostParams::default(), &l2)
        .await
        .unwrap();
    let err = leases
        .replace("leader", &PostParams::default(), &l2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully() {
    let (_s, raw) = setup().await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    let created = raw.post(pods, pod("bound", Some("node-1"))).await.body;
    assert_eq!(created["status"]["phase"], "Pending");
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    let d = raw.delete(&format!("{pods}/bound")).await;
    assert_eq!(d.body["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(
        raw.get(&format!("{pods}/bound")).await.status,
        200,
        "the kubelet finishes the deletion"
    );
    let d = raw
        .send(
            "DELETE",
            &format!("{pods}/bound"),
            Some("application/json"),
            Some(r#"{"gracePeriodSeconds":0}"#.into()),
        )
        .await;
    assert_eq!(d.status, 200);
    assert_eq!(raw.get(&format!("{pods}/bound")).await.status, 404);
    raw.post(pods, pod("unbound", None)).await;
    raw.delete(&format!("{pods}/unbound")).await;
    assert_eq!(
        raw.get(&format!("{pods}/unbound")).await.status,
        404,
        "unscheduled pods go at once"
    );
}

#[tokio::test]
async fn cli_writes_a_kubeconfig_and_serves() {
    let dir = std::env::temp_dir().join(format!("sandbox-kube-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args([
            "kube",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
            kc.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut text = String::new();
    for _ in 0..200 {
        if let Ok(t) = std::fs::read_to_string(&kc) {
            if t.contains("current-context: sandbox") {
                text = t;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let cfg: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let server = cfg["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string();
    let v = Raw::new(&server).get("/version").await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(v.body["gitVersion"], "v1.35.0-sandbox");
    assert_eq!(cfg["contexts"][0]["name"], "sandbox");
    assert_eq!(cfg["users"][0]["name"], "sandbox");
}

#[tokio::test]
async fn delete_collection_honours_selectors() {
    let (_s, raw) = setup().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    for (n, team) in [("a", "x"), ("b", "x"), ("c", "y")] {
        raw.post(
            cms,
            json!({"metadata": {"name": n, "labels": {"team": team}}}),
        )
        .await;
    }
    let r = raw.delete(&format!("{cms}?labelSelector=team%3Dx")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["kind"], "ConfigMapList");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let left: Vec<String> = raw.get(&format!("{cms}?labelSelector=team")).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["c"]);
}
