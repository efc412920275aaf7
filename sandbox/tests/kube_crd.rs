//! CustomResourceDefinitions: structural schema pruning, defaults, validation with every failed
//! field listed, CEL rules (including transition rules and messageExpression), Table output.

mod kube_common;

use kube_common::{assert_status, yaml, Raw, WIDGET_CRD};
use sandbox::kube::ApiServer;
use serde_json::json;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rotations.ops.example.com
spec:
  group: ops.example.com
  scope: Namespaced
  names: {plural: rotations, singular: rotation, kind: Rotation, shortNames: [rot], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [secretName, schedule]
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
            - rule: "!has(oldSelf.secretName) || self.secretName == oldSelf.secretName"
              message: "secretName is immutable"
            properties:
              secretName: {type: string, minLength: 1, maxLength: 20, pattern: "^[a-z-]+$"}
              schedule: {type: string}
              kind: {type: string, enum: [AuthToken, ApiKey]}
              minReplicas: {type: integer, minimum: 0, default: 1}
              maxReplicas: {type: integer, maximum: 5, default: 3}
              tags: {type: array, maxItems: 2, items: {type: string}}
              port: {x-kubernetes-int-or-string: true}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
              template: {type: object, x-kubernetes-embedded-resource: true, x-kubernetes-preserve-unknown-fields: true}
              keys:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items: {type: object, required: [name], properties: {name: {type: string}, value: {type: string}}}
              ttl:
                type: integer
                x-kubernetes-validations:
                - rule: "self >= 60"
                  messageExpression: "'ttl ' + string(self) + ' is below 60'"
          status:
            type: object
            properties:
              phase: {type: string}
"#;

const ROT: &str = "/apis/ops.example.com/v1/namespaces/default/rotations";

#[tokio::test]
async fn schema_pruning_defaults_and_validation() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let r = raw
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml(CRD),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"]["acceptedNames"]["kind"], "Rotation");
    // Served at once, with discovery details.
    let d = raw.get("/apis/ops.example.com/v1").await.body;
    let res: Vec<&str> = d["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(res, ["rotations", "rotations/status"]);
    assert_eq!(d["resources"][0]["shortNames"], json!(["rot"]));
    assert_eq!(d["resources"][0]["categories"], json!(["all"]));
    assert!(raw.get("/apis").await.text.contains("ops.example.com"));

    let ok = json!({"apiVersion": "ops.example.com/v1", "kind": "Rotation", "metadata": {"name": "r1"},
        "spec": {"secretName": "tok", "schedule": "@daily", "port": "http", "unknown": 1,
                 "extra": {"anything": {"goes": true}},
                 "template": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "uid": "dropped"}, "data": {}}},
        "status": {"phase": "ignored-on-create"}});
    let r = raw.post(ROT, ok).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let spec = &r.body["spec"];
    assert!(spec.get("unknown").is_none(), "pruned");
    assert_eq!(
        spec["extra"]["anything"]["goes"], true,
        "preserve-unknown-fields kept"
    );
    assert_eq!(
        spec["template"]["kind"], "Secret",
        "embedded resource keeps apiVersion/kind"
    );
    assert!(
        spec["template"]["metadata"].get("uid").is_none(),
        "embedded metadata pruned to ObjectMeta basics"
    );
    assert_eq!(spec["minReplicas"], 1, "defaults");
    assert_eq!(spec["maxReplicas"], 3);
    assert!(
        r.body.get("status").is_none(),
        "status dropped on create with a status subresource"
    );
    assert_eq!(spec["port"], "http", "int-or-string accepts strings");

    // Every failed field is listed.
    let bad = json!({"apiVersion": "ops.example.com/v1", "kind": "Rotation", "metadata": {"name": "r2"},
        "spec": {"secretName": "Not_Valid_Because_Too_Long", "kind": "Password", "maxReplicas": 9, "tags": ["a", "b", "c"], "port": 1.5,
                 "keys": [{"name": "a"}, {"name": "a"}, {"value": "no-name"}]}});
    let st = assert_status(&raw.post(ROT, bad).await, 422, "Invalid");
    let causes = st["details"]["causes"].as_array().unwrap();
    let by_field = |f: &str| {
        causes
            .iter()
            .filter(|c| c["field"] == f)
            .map(|c| c["reason"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(by_field("spec.schedule"), ["FieldValueRequired"]);
    assert!(by_field("spec.secretName").contains(&"FieldValueTooLong".to_string()));
    assert!(
        by_field("spec.secretName").contains(&"FieldValueInvalid".to_string()),
        "pattern"
    );
    assert_eq!(by_field("spec.kind"), ["FieldValueNotSupported"]);
    assert_eq!(by_field("spec.maxReplicas"), ["FieldValueInvalid"]);
    assert_eq!(by_field("spec.tags"), ["FieldValueTooMany"]);
    assert_eq!(by_field("spec.port"), ["FieldValueTypeInvalid"]);
    assert_eq!(by_field("spec.keys[1]"), ["FieldValueDuplicate"]);
    assert_eq!(by_field("spec.keys[2].name"), ["FieldValueRequired"]);
    assert_eq!(st["details"]["kind"], "Rotation");
    assert_eq!(st["details"]["group"], "ops.example.com");
    let msg = st["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Rotation.ops.example.com \"r2\" is invalid: ["),
        "{msg}"
    );
    assert!(msg.contains("spec.kind: Unsupported value: \"Password\": supported values: \"AuthToken\", \"ApiKey\""), "{msg}");
    assert!(msg.contains("spec.maxReplicas: Invalid value: 9: spec.maxReplicas in body should be less than or equal to 5"), "{msg}");

    // Wrong kind for the URL.
    let st = assert_status(&raw.post(ROT, json!({"apiVersion": "ops.example.com/v1", "kind": "Other", "metadata": {"name": "x"}, "spec": {}})).await, 422, "Invalid");
    assert_eq!(
        st["message"],
        "Other.ops.example.com \"x\" is invalid: kind: Invalid value: \"Other\": must be Rotation"
    );
    assert_status(
        &raw.post(
            ROT,
            json!({"apiVersion": "ops.example.com/v1", "metadata": {"name": "x"}}),
        )
        .await,
        400,
        "BadRequest",
    );
}

/// A merge patch on `path` is accepted.
async fn accepted_merge(raw: &Raw, path: &str, body: &str) {
    let r = raw.patch(path, "application/merge-patch+json", body).await;
    assert_eq!(r.status, 200, "{body}: {}", r.text);
}

/// A merge patch on `path` is refused as Invalid with a message naming `why`.
async fn refused_merge(raw: &Raw, path: &str, body: &str, why: &str) {
    let st = assert_status(
        &raw.patch(path, "application/merge-patch+json", body).await,
        422,
        "Invalid",
    );
    let message = st["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{message}");
}

#[tokio::test]
async fn cel_rules_are_enforced_including_transition_rules() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    raw.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        yaml(CRD),
    )
    .await;
    let mk = |spec: serde_json::Value| json!({"apiVersion": "ops.example.com/v1", "kind": "Rotation", "metadata": {"name": "c"}, "spec": spec});
    let st = assert_status(&raw.post(ROT, mk(json!({"secretName": "a", "schedule": "x", "minReplicas": 4, "maxReplicas": 2, "ttl": 5}))).await, 422, "Invalid");
    let msgs: Vec<&str> = st["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert!(
        msgs.contains(&"Invalid value: \"object\": minReplicas must not exceed maxReplicas"),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"Invalid value: \"integer\": ttl 5 is below 60"),
        "messageExpression: {msgs:?}"
    );
    let r = raw
        .post(
            ROT,
            mk(json!({"secretName": "a", "schedule": "x", "ttl": 90})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    refused_merge(
        &raw,
        &format!("{ROT}/c"),
        r#"{"spec":{"secretName":"b"}}"#,
        "secretName is immutable",
    )
    .await;
    accepted_merge(&raw, &format!("{ROT}/c"), r#"{"spec":{"schedule":"y"}}"#).await;

    let report = sandbox::kube::cel_rule_report();
    let mine: Vec<_> = report
        .iter()
        .filter(|r| r.crd == "rotations.ops.example.com")
        .collect();
    assert_eq!(mine.len(), 3);
    assert!(mine.iter().all(|r| r.error.is_none()), "{mine:?}");

    // A rule that does not compile is reported and fails closed.
    let mut broken = yaml(CRD);
    broken["metadata"]["name"] = json!("brokens.ops.example.com");
    broken["spec"]["names"] = json!({"plural": "brokens", "singular": "broken", "kind": "Broken"});
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["x-kubernetes-validations"] = json!([{"rule": "self.minReplicas <<< 1"}]);
    raw.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        broken,
    )
    .await;
    let bad = sandbox::kube::cel_rule_report()
        .into_iter()
        .find(|r| r.crd == "brokens.ops.example.com" && r.rule.contains("<<<"))
        .unwrap();
    assert!(bad.error.is_some());
    let r = raw.post("/apis/ops.example.com/v1/namespaces/default/brokens", json!({"apiVersion": "ops.example.com/v1", "kind": "Broken", "metadata": {"name": "b"}, "spec": {"secretName": "a", "schedule": "x"}})).await;
    assert_status(&r, 422, "Invalid");
}

/// CRD validation ratcheting (GA in 1.33): a rule on a value the write leaves unchanged does not
/// refuse the write. An object stored before its CRD gained a rule keeps taking status and
/// metadata writes; a write that changes the ruled value is refused, and so is a new object.
#[tokio::test]
async fn cel_rules_ratchet_on_unchanged_values() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let crd = |rules: serde_json::Value| {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "limits.ops.example.com"},
               "spec": {"group": "ops.example.com", "scope": "Namespaced",
                        "names": {"plural": "limits", "singular": "limit", "kind": "Limit"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "subresources": {"status": {}},
                                      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                          "spec": {"type": "object", "x-kubernetes-validations": rules,
                                                   "properties": {"min": {"type": "integer"}, "max": {"type": "integer"},
                                                                  "note": {"type": "string"}}},
                                          "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}})
    };
    const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    const LIMITS: &str = "/apis/ops.example.com/v1/namespaces/default/limits";
    let r = raw.post(CRDS, crd(json!([]))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let obj = |name: &str| {
        json!({"apiVersion": "ops.example.com/v1", "kind": "Limit",
                                  "metadata": {"name": name}, "spec": {"min": 4, "max": 2}})
    };
    let r = raw.post(LIMITS, obj("old")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The CRD gains a rule the stored object breaks.
    let mut current: serde_json::Value = serde_json::from_str(
        &raw.get(&format!("{CRDS}/limits.ops.example.com"))
            .await
            .text,
    )
    .unwrap();
    current["spec"] =
        crd(json!([{"rule": "self.min <= self.max", "message": "min must not exceed max"}]))
            ["spec"]
            .clone();
    let r = raw
        .put(&format!("{CRDS}/limits.ops.example.com"), current)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Status and metadata writes leave spec as it was: accepted.
    accepted_merge(
        &raw,
        &format!("{LIMITS}/old/status"),
        r#"{"status":{"phase":"Ready"}}"#,
    )
    .await;
    accepted_merge(
        &raw,
        &format!("{LIMITS}/old"),
        r#"{"metadata":{"labels":{"team":"a"}}}"#,
    )
    .await;
    // A write that changes spec is judged by the rule, even if it leaves min and max alone.
    refused_merge(
        &raw,
        &format!("{LIMITS}/old"),
        r#"{"spec":{"note":"x"}}"#,
        "min must not exceed max",
    )
    .await;
    accepted_merge(&raw, &format!("{LIMITS}/old"), r#"{"spec":{"max":5}}"#).await;
    // A new object has nothing to ratchet against.
    assert_status(&raw.post(LIMITS, obj("new")).await, 422, "Invalid");
}

#[tokio::test]
async fn tables_for_custom_and_builtin_resources() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    raw.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        yaml(WIDGET_CRD),
    )
    .await;
    raw.post("/apis/demo.example.com/v1/namespaces/default/widgets", json!({"apiVersion": "demo.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 4}})).await;
    raw.patch(
        "/apis/demo.example.com/v1/namespaces/default/widgets/w/status",
        "application/merge-patch+json",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    )
    .await;
    let accept = [("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")];
    let t = raw
        .send_h(
            "GET",
            "/apis/demo.example.com/v1/namespaces/default/widgets",
            None,
            None,
            &accept,
        )
        .await
        .body;
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Size", "Ready", "Age"]);
    let cells = &t["rows"][0]["cells"];
    assert_eq!(cells[0], "w");
    assert_eq!(cells[1], 4);
    assert_eq!(cells[2], "True");
    assert!(
        cells[3].as_str().unwrap().ends_with('s'),
        "date cells are ages: {}",
        cells[3]
    );
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    raw.post("/apis/apps/v1/namespaces/default/deployments", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})).await;
    let t = raw
        .send_h(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments",
            None,
            None,
            &accept,
        )
        .await
        .body;
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Ready", "Up-to-date", "Available", "Age"]);
    assert_eq!(t["rows"][0]["cells"][1], "0/2");
}
