//! Patch semantics: JSON merge, JSON patch, strategic merge, server-side apply (ownership,
//! conflicts, removal), dryRun, fieldManager bookkeeping, fieldValidation.

mod kube_common;

use kube_common::{assert_status, yaml, Raw, WIDGET_CRD};
use sandbox::kube::ApiServer;
use serde_json::{json, Value};

const DEPS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "b:1"}
            ]}}
        }
    })
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    raw.post(DEPS, deployment("d")).await;
    let p = format!("{DEPS}/d");
    // Merge patch replaces lists wholesale and deletes with null.
    let m = raw
        .patch(
            &p,
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"a":"1","b":"2"}}}"#,
        )
        .await
        .body;
    let m = {
        let _ = m;
        raw.patch(
            &p,
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"a":null}}}"#,
        )
        .await
        .body
    };
    assert_eq!(m["metadata"]["labels"], json!({"b": "2"}));

    // JSON patch; a failing op is a 422 and changes nothing; test-for-null on a missing path passes.
    let before = raw.get(&p).await.body;
    let r = raw.patch(&p, "application/json-patch+json", r#"[{"op":"replace","path":"/spec/replicas","value":4},{"op":"test","path":"/spec/paused","value":true}]"#).await;
    assert_status(&r, 422, "Invalid");
    assert_eq!(
        raw.get(&p).await.body["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    let r = raw.patch(&p, "application/json-patch+json", r#"[{"op":"test","path":"/metadata/finalizers","value":null},{"op":"add","path":"/metadata/finalizers","value":["x.io/f"]}]"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["finalizers"], json!(["x.io/f"]));
    assert_status(
        &raw.patch(&p, "application/json-patch+json", "{not a patch")
            .await,
        400,
        "BadRequest",
    );

    // Strategic merge: containers and env merge by name, directives honoured.
    let sp = json!({"spec": {"template": {"spec": {
    "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
    "containers": [
        {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
        {"name": "b", "$patch": "delete"},
        {"name": "c", "image": "c:1"}
    ]}}}});
    let r = raw
        .patch(
            &p,
            "application/strategic-merge-patch+json",
            &sp.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cs = r.body["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = cs.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["c", "a"]);
    assert_eq!(cs[1]["image"], "a:2");
    assert_eq!(
        cs[1]["env"],
        json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])
    );
    assert_eq!(
        cs[1]["ports"][0]["containerPort"], 80,
        "unpatched fields kept"
    );
    let r = raw
        .patch(
            &p,
            "application/strategic-merge-patch+json",
            r#"{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}}"#,
        )
        .await;
    assert_eq!(r.body["spec"]["strategy"], json!({"type": "Recreate"}));
    let r = raw
        .patch(
            &p,
            "application/strategic-merge-patch+json",
            r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["x.io/f"]}}"#,
        )
        .await;
    assert!(
        r.body["metadata"]
            .get("finalizers")
            .is_none_or(|f| f == &json!([])),
        "{}",
        r.text
    );
    // kubectl rollout restart's patch
    let r = raw.patch(&p, "application/strategic-merge-patch+json", r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-01-01T00:00:00Z"}}}}}"#).await;
    assert_eq!(
        r.body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2025-01-01T00:00:00Z"
    );
}

#[tokio::test]
async fn server_side_apply_ownership_conflicts_and_removal() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let p = format!("{DEPS}/ssa");
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa", "labels": {"owner": "ctl"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ssa"}},
                 "template": {"metadata": {"labels": {"app": "ssa"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}
    });
    let ct = "application/apply-patch+yaml";
    let r = raw.patch(&p, ct, &applied.to_string()).await;
    let st = assert_status(&r, 422, "Invalid");
    assert_eq!(st["message"], "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
    let r = raw
        .patch(
            &format!("{p}?force=true"),
            "application/merge-patch+json",
            "{}",
        )
        .await;
    assert_status(&r, 422, "Invalid");

    // Apply creates the object (YAML body).
    let yaml_body = serde_yaml::to_string(&applied).unwrap();
    let r = raw
        .patch(&format!("{p}?fieldManager=ctl"), ct, &yaml_body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        managers(&r.body),
        [("ctl".to_string(), "Apply".to_string())]
    );
    let fields = &r.body["metadata"]["managedFields"][0]["fieldsV1"];
    assert!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"]["f:image"]
            .is_object(),
        "{fields}"
    );

    // A plain update by another manager takes ownership of what it changed.
    let r = raw
        .patch(
            &format!("{p}?fieldManager=scaler"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
        )
        .await;
    assert!(managers(&r.body).contains(&("scaler".to_string(), "Update".to_string())));

    // Re-applying a different replicas value conflicts.
    let r = raw
        .patch(&format!("{p}?fieldManager=ctl"), ct, &applied.to_string())
        .await;
    let st = assert_status(&r, 409, "Conflict");
    assert_eq!(
        st["message"],
        "Apply failed with 1 conflict: conflict with \"scaler\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        st["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"scaler\" using apps/v1", "field": ".spec.replicas"})
    );

    // force takes ownership.
    let r = raw
        .patch(
            &format!("{p}?fieldManager=ctl&force=true"),
            ct,
            &applied.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["spec"]["replicas"], 2);
    assert!(
        !managers(&r.body).iter().any(|(m, _)| m == "scaler"),
        "scaler lost its only field"
    );

    // Another applier co-owns the label with the same value; a second container is added by a third.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa", "labels": {"owner": "ctl", "extra": "1"}}});
    assert_eq!(
        raw.patch(&format!("{p}?fieldManager=other"), ct, &other.to_string())
            .await
            .status,
        200
    );
    let side = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"}, "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s:1"}]}}}});
    let r = raw
        .patch(&format!("{p}?fieldManager=sidecar"), ct, &side.to_string())
        .await;
    assert_eq!(
        r.body["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "lists merge by key"
    );

    // ctl stops applying the label and replicas: the shared label stays, replicas is removed.
    let mut less = applied.clone();
    less["metadata"].as_object_mut().unwrap().remove("labels");
    less["spec"].as_object_mut().unwrap().remove("replicas");
    let r = raw
        .patch(&format!("{p}?fieldManager=ctl"), ct, &less.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["metadata"]["labels"]["owner"], "ctl",
        "still owned by `other`"
    );
    assert!(
        r.body["spec"].get("replicas").is_none_or(|v| v == 1),
        "replicas dropped (then defaulted): {}",
        r.body["spec"]
    );
    assert_eq!(
        r.body["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "sidecar's container kept"
    );

    // Status subresource apply.
    let st = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"}, "status": {"replicas": 1, "spec": 1}});
    let r = raw
        .patch(
            &format!("{p}/status?fieldManager=ctrl"),
            ct,
            &st.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["replicas"], 1);
    let e = r.body["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "ctrl")
        .unwrap()
        .clone();
    assert_eq!(e["subresource"], "status");
}

#[tokio::test]
async fn dry_run_field_manager_and_field_validation() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let cms = "/api/v1/namespaces/default/configmaps";
    let before = s.resource_version();
    let r = raw
        .post(
            &format!("{cms}?dryRun=All"),
            json!({"metadata": {"name": "dry"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(s.resource_version(), before, "dryRun changes nothing");
    assert_eq!(raw.get(&format!("{cms}/dry")).await.status, 404);

    let r = raw
        .post(
            &format!("{cms}?fieldManager=my-tool"),
            json!({"metadata": {"name": "m"}, "data": {"a": "b"}}),
        )
        .await;
    assert_eq!(
        managers(&r.body),
        [("my-tool".to_string(), "Update".to_string())]
    );
    assert_eq!(
        r.body["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {".": {}, "f:a": {}}})
    );
    let r = raw
        .patch(
            &format!("{cms}/m?dryRun=All"),
            "application/merge-patch+json",
            r#"{"data":{"a":"c"}}"#,
        )
        .await;
    assert_eq!(r.body["data"]["a"], "c");
    assert_eq!(raw.get(&format!("{cms}/m")).await.body["data"]["a"], "b");

    let unknown =
        json!({"metadata": {"name": "u"}, "data": {"a": "b"}, "bogus": 1, "metadata2": {}});
    let r = raw
        .post(&format!("{cms}?fieldValidation=Strict"), unknown.clone())
        .await;
    let st = assert_status(&r, 400, "BadRequest");
    assert_eq!(
        st["message"],
        "strict decoding error: unknown field \"bogus\", unknown field \"metadata2\""
    );
    let r = raw
        .post(&format!("{cms}?fieldValidation=Warn"), unknown.clone())
        .await;
    assert_eq!(r.status, 201);
    let warnings: Vec<&str> = r
        .headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        warnings.contains(&"299 - \"unknown field \\\"bogus\\\"\""),
        "{warnings:?}"
    );
    assert!(r.body.get("bogus").is_none(), "unknown fields dropped");
    let mut ign = unknown.clone();
    ign["metadata"]["name"] = json!("i");
    let r = raw
        .post(&format!("{cms}?fieldValidation=Ignore"), ign)
        .await;
    assert_eq!(r.status, 201);
    assert!(r.headers.get("warning").is_none());

    // Custom resources: unknown fields pruned, or rejected with Strict.
    raw.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        yaml(WIDGET_CRD),
    )
    .await;
    let w = json!({"apiVersion": "demo.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2, "shape": "round"}});
    let st = assert_status(
        &raw.post(
            "/apis/demo.example.com/v1/namespaces/default/widgets?fieldValidation=Strict",
            w.clone(),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        st["message"],
        "strict decoding error: unknown field \"spec.shape\""
    );
    let r = raw
        .post("/apis/demo.example.com/v1/namespaces/default/widgets", w)
        .await;
    assert_eq!(r.status, 201);
    assert!(r.body["spec"].get("shape").is_none());
}

#[tokio::test]
async fn kube_rs_patch_flavours_and_finalizer_helper() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};
    use kube::runtime::finalizer::{finalizer, Event};
    use std::sync::Arc;

    let s = ApiServer::start().await.unwrap();
    let client = s.client().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(deployment("k")).unwrap();
    let pp = PatchParams::apply("token-rotator");
    let created = api.patch("k", &pp, &Patch::Apply(&d)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let merged = api
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.spec.unwrap().replicas, Some(3));
    let st = api
        .patch_status(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 2, "replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().observed_generation, Some(2));
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 1}]))
            .unwrap();
    let j = api
        .patch("k", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(j.spec.unwrap().replicas, Some(1));

    // kube's finalizer helper: adds the finalizer (JSON patch with test-for-null), then cleans up on delete.
    let obj = Arc::new(api.get("k").await.unwrap());
    let action = finalizer(&api, "example.com/cleanup", obj, |ev| async move {
        match ev {
            Event::Apply(_) | Event::Cleanup(_) => {
                Ok::<_, kube::Error>(kube::runtime::controller::Action::await_change())
            }
        }
    })
    .await;
    assert!(action.is_ok(), "{action:?}");
    let with_fin = api.get("k").await.unwrap();
    assert_eq!(
        with_fin.metadata.finalizers,
        Some(vec!["example.com/cleanup".to_string()])
    );
    api.delete("k", &Default::default()).await.unwrap();
    let deleting = Arc::new(api.get("k").await.unwrap());
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let action = finalizer(&api, "example.com/cleanup", deleting, |_ev| async move {
        Ok::<_, kube::Error>(kube::runtime::controller::Action::await_change())
    })
    .await;
    assert!(action.is_ok(), "{action:?}");
    assert!(
        api.get_opt("k").await.unwrap().is_none(),
        "last finalizer removed -> deleted"
    );
}

/// An update carrying no managedFields, or an empty list, leaves the recorded managers as they
/// are (a client unaware of the field never strips it); one carrying a list sets them.
#[tokio::test]
async fn an_update_without_managed_fields_keeps_them() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    raw.post(&format!("{DEPS}?fieldManager=creator"), deployment("d"))
        .await;
    let p = format!("{DEPS}/d");
    let mut current = raw.get(&p).await.body;
    assert_eq!(managers(&current), [("creator".into(), "Update".into())]);
    for sent in [None, Some(json!([]))] {
        match &sent {
            None => current["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields"),
            Some(v) => current["metadata"]
                .as_object_mut()
                .unwrap()
                .insert("managedFields".into(), v.clone()),
        };
        current["metadata"]["labels"] =
            json!({"sent": if sent.is_some() { "empty" } else { "none" }});
        let r = raw
            .put(&format!("{p}?fieldManager=labeller"), current.clone())
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            managers(&r.body),
            [
                ("creator".into(), "Update".into()),
                ("labeller".into(), "Update".into())
            ],
            "managedFields sent: {sent:?}"
        );
        current = r.body;
    }
}
