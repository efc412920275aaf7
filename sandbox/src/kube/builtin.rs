//! Behaviour of built-in kinds: defaults, initial status, and the validation rules clients rely on.

use serde_json::{json, Map, Value};

use crate::kube::error::FieldError;
use crate::kube::meta;

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let m = v.as_object_mut().expect("object");
    let e = m.entry(key).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e.as_object_mut().expect("object")
}

fn set_default(m: &mut Map<String, Value>, key: &str, v: Value) {
    if m.get(key).is_none_or(|x| x.is_null()) {
        m.insert(key.to_string(), v);
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let no_digest = !image.contains('@');
    match last.split_once(':') {
        None if no_digest => "Always",
        Some((_, "latest")) => "Always",
        _ => "IfNotPresent",
    }
}

fn default_containers(list: Option<&mut Value>) {
    let Some(Value::Array(cs)) = list else { return };
    for c in cs.iter_mut() {
        let Some(m) = c.as_object_mut() else { continue };
        let image = m
            .get("image")
            .and_then(|i| i.as_str())
            .unwrap_or("")
            .to_string();
        set_default(m, "imagePullPolicy", json!(image_pull_policy(&image)));
        set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
        set_default(m, "terminationMessagePolicy", json!("File"));
        set_default(m, "resources", json!({}));
        if let Some(Value::Array(ports)) = m.get_mut("ports") {
            for p in ports.iter_mut().filter_map(|p| p.as_object_mut()) {
                set_default(p, "protocol", json!("TCP"));
            }
        }
        if let Some(Value::Array(env)) = m.get_mut("env") {
            for e in env.iter_mut().filter_map(|e| e.as_object_mut()) {
                if let Some(fr) = e
                    .get_mut("valueFrom")
                    .and_then(|v| v.get_mut("fieldRef"))
                    .and_then(|f| f.as_object_mut())
                {
                    set_default(fr, "apiVersion", json!("v1"));
                }
            }
        }
    }
}

pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    default_containers(spec.get_mut("containers"));
    default_containers(spec.get_mut("initContainers"));
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(|v| v.as_object_mut()) {
            for src in ["secret", "configMap"] {
                if let Some(s) = v.get_mut(src).and_then(|s| s.as_object_mut()) {
                    set_default(s, "defaultMode", json!(420));
                }
            }
        }
    }
}

fn default_template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template") {
        default_pod_spec(obj_mut(t, "spec"));
    }
}

/// Applies the defaults a real API server fills in for built-in kinds.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("apps", "Deployment") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            let strat = spec.entry("strategy").or_insert_with(|| json!({}));
            if let Some(s) = strat.as_object_mut() {
                set_default(s, "type", json!("RollingUpdate"));
                if s.get("type") == Some(&json!("RollingUpdate")) {
                    let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        set_default(ru, "maxUnavailable", json!("25%"));
                        set_default(ru, "maxSurge", json!("25%"));
                    }
                }
            }
            default_template(spec);
        }
        ("apps", "StatefulSet") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            default_template(spec);
        }
        ("apps", "DaemonSet") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            default_template(spec);
        }
        ("apps", "ReplicaSet") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("batch", "Job") => {
            let uid = meta::uid(obj).unwrap_or("").to_string();
            let name = meta::name(obj).to_string();
            let spec = obj_mut(obj, "spec");
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completions", json!(1));
            set_default(spec, "parallelism", json!(1));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            if spec.get("manualSelector") != Some(&json!(true))
                && !uid.is_empty()
                && spec.get("selector").is_none()
            {
                spec.insert(
                    "selector".into(),
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
                );
                if let Some(t) = spec.get_mut("template") {
                    let md = obj_mut(t, "metadata");
                    let labels = md.entry("labels").or_insert_with(|| json!({}));
                    if let Some(l) = labels.as_object_mut() {
                        l.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
                        l.insert("controller-uid".into(), json!(uid));
                        l.insert("batch.kubernetes.io/job-name".into(), json!(name));
                        l.insert("job-name".into(), json!(name));
                    }
                }
            }
            default_template(spec);
        }
        ("batch", "CronJob") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(jt) = spec.get_mut("jobTemplate") {
                default_template(obj_mut(jt, "spec"));
            }
        }
        ("", "Pod") => {
            let spec = obj_mut(obj, "spec");
            default_pod_spec(spec);
            set_default(spec, "enableServiceLinks", json!(true));
            set_default(spec, "serviceAccountName", json!("default"));
            let sa = spec
                .get("serviceAccountName")
                .cloned()
                .unwrap_or(json!("default"));
            set_default(spec, "serviceAccount", sa);
            set_default(spec, "priority", json!(0));
            set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
            let tol = spec.entry("tolerations").or_insert_with(|| json!([]));
            if let Some(t) = tol.as_array_mut() {
                for key in [
                    "node.kubernetes.io/not-ready",
                    "node.kubernetes.io/unreachable",
                ] {
                    if !t.iter().any(|x| x.get("key") == Some(&json!(key))) {
                        t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                    }
                }
            }
        }
        ("", "Service") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec.get("type") != Some(&json!("ExternalName")) {
                set_default(spec, "ipFamilies", json!(["IPv4"]));
                set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports.iter_mut().filter_map(|p| p.as_object_mut()) {
                    set_default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set_default(p, "targetPort", port);
                    }
                }
            }
        }
        ("", "Secret") => {
            let m = obj.as_object_mut().expect("object");
            set_default(m, "type", json!("Opaque"));
            if let Some(Value::Object(sd)) = m.remove("stringData") {
                use base64::Engine;
                let data = m.entry("data").or_insert_with(|| json!({}));
                if let Some(d) = data.as_object_mut() {
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or("").as_bytes().to_vec();
                        d.insert(
                            k,
                            json!(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                }
            }
        }
        ("", "Namespace") => {
            let name = meta::name(obj).to_string();
            let md = meta::metadata_mut(obj);
            let labels = md.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            let spec = obj_mut(obj, "spec");
            set_default(spec, "finalizers", json!(["kubernetes"]));
        }
        ("", "PersistentVolumeClaim") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "conversion", json!({"strategy": "None"}));
        }
        _ => {}
    }
}

/// Status a built-in object starts with (main-resource writes cannot set it).
pub fn initial_status(group: &str, kind: &str) -> Option<Value> {
    Some(match (group, kind) {
        ("apps", "Deployment") => json!({}),
        ("apps", "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "DaemonSet") => json!({
            "currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0
        }),
        ("apps", "ReplicaSet") => json!({"replicas": 0}),
        ("", "Pod") => json!({"phase": "Pending", "qosClass": "BestEffort"}),
        ("", "Service") => json!({"loadBalancer": {}}),
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "PersistentVolumeClaim") => json!({"phase": "Pending"}),
        ("batch", "Job") | ("batch", "CronJob") => json!({}),
        ("policy", "PodDisruptionBudget") => {
            json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})
        }
        ("networking.k8s.io", "Ingress") => json!({"loadBalancer": {}}),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        }
        _ => return None,
    })
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

/// Name rules per kind (`metadata.name` errors).
pub fn validate_name(
    group: &str,
    kind: &str,
    builtin: bool,
    name: &str,
    errs: &mut Vec<FieldError>,
) {
    let path = "metadata.name";
    match (group, kind) {
        ("", "Namespace") => {
            if !is_label(name) {
                errs.push(FieldError::invalid(path, json!(name), DNS1123_LABEL_MSG));
            }
        }
        ("", "Service") => {
            let ok = is_label(name) && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
            if !ok {
                errs.push(FieldError::invalid(path, json!(name), DNS1035_LABEL_MSG));
            }
        }
        ("rbac.authorization.k8s.io", _) => {
            if name.contains('/') || name.contains('%') || name == "." || name == ".." {
                errs.push(FieldError::invalid(
                    path,
                    json!(name),
                    "may not contain '/' or '%'",
                ));
            }
        }
        _ => {
            let _ = builtin;
            if !is_dns_subdomain(name) {
                errs.push(FieldError::invalid(
                    path,
                    json!(name),
                    DNS1123_SUBDOMAIN_MSG,
                ));
            }
        }
    }
}

fn go_map(v: Option<&Value>) -> String {
    let Some(Value::Object(m)) = v else {
        return "map[string]string(nil)".into();
    };
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{}", v)).collect();
    format!("map[string]string{{{}}}", parts.join(", "))
}

pub(crate) fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let empty = Map::new();
    let labels = labels.and_then(|l| l.as_object()).unwrap_or(&empty);
    if let Some(ml) = sel.get("matchLabels").and_then(|m| m.as_object()) {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(|m| m.as_array()) {
        for e in exprs {
            let key = e.get("key").and_then(|k| k.as_str()).unwrap_or("");
            let vals: Vec<&Value> = e
                .get("values")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let have = labels.get(key);
            let ok = match e.get("operator").and_then(|o| o.as_str()).unwrap_or("") {
                "In" => have.is_some_and(|h| vals.contains(&h)),
                "NotIn" => have.is_none_or(|h| !vals.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

fn validate_containers(spec: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let cs = spec
        .and_then(|s| s.get("containers"))
        .and_then(|c| c.as_array());
    match cs {
        None => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => {
            errs.push(FieldError::required(format!("{path}.containers"), ""))
        }
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                let p = format!("{path}.containers[{i}]");
                match c.get("name").and_then(|n| n.as_str()) {
                    None | Some("") => errs.push(FieldError::required(format!("{p}.name"), "")),
                    Some(n) if !is_label(n) => errs.push(FieldError::invalid(
                        format!("{p}.name"),
                        json!(n),
                        DNS1123_LABEL_MSG,
                    )),
                    _ => {}
                }
                if c.get("image")
                    .and_then(|n| n.as_str())
                    .is_none_or(|s| s.trim().is_empty())
                {
                    errs.push(FieldError::required(format!("{p}.image"), ""));
                }
            }
        }
    }
}

/// Validation of built-in objects beyond the schema (422 causes).
pub fn validate(
    group: &str,
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    let spec = obj.get("spec");
    match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            if let Some(r) = spec
                .and_then(|s| s.get("replicas"))
                .and_then(|r| r.as_i64())
            {
                if r < 0 {
                    errs.push(FieldError::invalid(
                        "spec.replicas",
                        json!(r),
                        "must be greater than or equal to 0",
                    ));
                }
            }
            let sel = spec.and_then(|s| s.get("selector"));
            let tmpl_labels = spec.and_then(|s| meta::get_path(s, "template.metadata.labels"));
            match sel {
                None => errs.push(FieldError::required("spec.selector", "")),
                Some(sel) => {
                    let empty = sel
                        .get("matchLabels")
                        .and_then(|m| m.as_object())
                        .is_none_or(|m| m.is_empty())
                        && sel
                            .get("matchExpressions")
                            .and_then(|m| m.as_array())
                            .is_none_or(|m| m.is_empty());
                    if empty {
                        errs.push(FieldError::invalid(
                            "spec.selector",
                            sel.clone(),
                            "empty selector is invalid for deployment",
                        ));
                    } else if !selector_matches(sel, tmpl_labels) {
                        errs.push(FieldError::invalid(
                            "spec.template.metadata.labels",
                            json!(go_map(tmpl_labels)),
                            "`selector` does not match template `labels`",
                        ));
                    }
                    if let Some(old_sel) = old.and_then(|o| meta::get_path(o, "spec.selector")) {
                        if old_sel != sel {
                            errs.push(FieldError::invalid(
                                "spec.selector",
                                sel.clone(),
                                "field is immutable",
                            ));
                        }
                    }
                }
            }
            validate_containers(
                spec.and_then(|s| meta::get_path(s, "template.spec")),
                "spec.template.spec",
                errs,
            );
        }
        ("", "Pod") => {
            validate_containers(spec, "spec", errs);
        }
        ("batch", "Job") => {
            validate_containers(
                spec.and_then(|s| meta::get_path(s, "template.spec")),
                "spec.template.spec",
                errs,
            );
            let rp = spec
                .and_then(|s| meta::get_path(s, "template.spec.restartPolicy"))
                .and_then(|r| r.as_str());
            if let Some(rp) = rp {
                if rp != "Never" && rp != "OnFailure" {
                    errs.push(FieldError::new(
                        crate::kube::error::FieldErrorType::NotSupported(vec![
                            "OnFailure".into(),
                            "Never".into(),
                        ]),
                        "spec.template.spec.restartPolicy",
                        Some(json!(rp)),
                        "",
                    ));
                }
            }
        }
        ("", "ConfigMap" | "Secret") => {
            if let Some(old) = old {
                if old.get("immutable") == Some(&json!(true)) {
                    for f in ["data", "binaryData", "stringData"] {
                        if obj.get(f) != old.get(f) {
                            errs.push(FieldError::forbidden(
                                f,
                                "field is immutable when `immutable` is set",
                            ));
                        }
                    }
                }
                if kind == "Secret" && old.get("type") != obj.get("type") {
                    errs.push(FieldError::invalid(
                        "type",
                        obj.get("type").cloned().unwrap_or(Value::Null),
                        "field is immutable",
                    ));
                }
            }
            for f in ["data", "binaryData"] {
                if let Some(m) = obj.get(f).and_then(|d| d.as_object()) {
                    for k in m.keys() {
                        let ok = !k.is_empty()
                            && k.len() <= 253
                            && k.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
                            });
                        if !ok {
                            errs.push(FieldError::invalid(
                                format!("{f}[{k}]"),
                                json!(k),
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                    }
                }
            }
        }
        ("", "Service") => {
            let t = spec
                .and_then(|s| s.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("ClusterIP");
            let ports = spec.and_then(|s| s.get("ports")).and_then(|p| p.as_array());
            let headless = spec
                .and_then(|s| s.get("clusterIP"))
                .and_then(|c| c.as_str())
                == Some("None");
            if t != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
                errs.push(FieldError::required("spec.ports", ""));
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            match obj.get("roleRef") {
                None => errs.push(FieldError::required("roleRef", "")),
                Some(rr) => {
                    if let Some(old_rr) = old.and_then(|o| o.get("roleRef")) {
                        if old_rr != rr {
                            errs.push(FieldError::invalid(
                                "roleRef",
                                rr.clone(),
                                "cannot change roleRef",
                            ));
                        }
                    }
                }
            }
        }
        ("coordination.k8s.io", "Lease") => {
            if let Some(d) = spec
                .and_then(|s| s.get("leaseDurationSeconds"))
                .and_then(|d| d.as_i64())
            {
                if d <= 0 {
                    errs.push(FieldError::invalid(
                        "spec.leaseDurationSeconds",
                        json!(d),
                        "must be greater than 0",
                    ));
                }
            }
        }
        _ => {}
    }
}
