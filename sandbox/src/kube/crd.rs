//! CustomResourceDefinitions: validation of the CRD itself, its status conditions, and the
//! resource definitions (with schema, printer columns and CEL rules) it serves.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::kube::cel::CelRules;
use crate::kube::error::FieldError;
use crate::kube::meta;
use crate::kube::registry::{Generation, ResourceDef, View};
use crate::kube::schema::Schema;

/// Per-version information a custom resource needs at request time.
#[derive(Debug)]
pub struct CrdVersionInfo {
    pub crd_name: String,
    pub schema: Schema,
    pub has_schema: bool,
    pub printer_columns: Vec<Value>,
    pub scale: Option<ScalePaths>,
    pub selectable_fields: Vec<String>,
    pub cel: Option<Arc<CelRules>>,
}

#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

fn s<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    meta::get_path(v, path)?.as_str()
}

/// Field errors in a CRD (the subset of apiextensions validation that clients trip over).
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = s(crd, "spec.group").unwrap_or("");
    let plural = s(crd, "spec.names.plural").unwrap_or("");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if s(crd, "spec.names.kind").unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    let name = meta::name(crd);
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match s(crd, "spec.scope") {
        Some("Namespaced") | Some("Cluster") => {}
        Some(other) => errs.push(FieldError::new(
            crate::kube::error::FieldErrorType::NotSupported(vec![
                "Cluster".into(),
                "Namespaced".into(),
            ]),
            "spec.scope",
            Some(json!(other)),
            "",
        )),
        None => errs.push(FieldError::required("spec.scope", "")),
    }
    let versions = meta::get_path(crd, "spec.versions")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!(versions),
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(|b| b.as_bool()) == Some(true))
            .count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                json!(versions),
                "must have exactly one version marked as storage version",
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            if v.get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .is_empty()
            {
                errs.push(FieldError::required(format!("spec.versions[{i}].name"), ""));
            }
            if v.get("served").is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].served"),
                    "",
                ));
            }
            if v.get("storage").is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].storage"),
                    "",
                ));
            }
            if let Some(sch) = v.get("schema").and_then(|s| s.get("openAPIV3Schema")) {
                if sch.get("type").and_then(|t| t.as_str()) != Some("object") {
                    errs.push(FieldError::new(
                        crate::kube::error::FieldErrorType::Required,
                        format!("spec.versions[{i}].schema.openAPIV3Schema.type"),
                        None,
                        "must not be empty at the root",
                    ));
                }
            }
        }
    }
    errs
}

/// Status set at once on create/update: accepted names, stored versions, conditions.
pub fn crd_status(crd: &Value, old_status: Option<&Value>) -> Value {
    let now = meta::now_rfc3339();
    let names = meta::get_path(crd, "spec.names")
        .cloned()
        .unwrap_or(json!({}));
    let mut accepted = names.clone();
    if accepted
        .get("singular")
        .is_none_or(|v| v.as_str() == Some(""))
    {
        accepted["singular"] = json!(s(crd, "spec.names.kind").unwrap_or("").to_lowercase());
    }
    if accepted
        .get("listKind")
        .is_none_or(|v| v.as_str() == Some(""))
    {
        accepted["listKind"] = json!(format!("{}List", s(crd, "spec.names.kind").unwrap_or("")));
    }
    let mut stored: Vec<String> = old_status
        .and_then(|s| s.get("storedVersions"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(vs) = meta::get_path(crd, "spec.versions").and_then(|v| v.as_array()) {
        for v in vs {
            if v.get("storage").and_then(|b| b.as_bool()) == Some(true) {
                if let Some(n) = v.get("name").and_then(|n| n.as_str()) {
                    if !stored.iter().any(|x| x == n) {
                        stored.push(n.to_string());
                    }
                }
            }
        }
    }
    let keep_time = |t: &str| -> String {
        old_status
            .and_then(|s| s.get("conditions"))
            .and_then(|c| c.as_array())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("type").and_then(|x| x.as_str()) == Some(t))
            })
            .and_then(|c| c.get("lastTransitionTime"))
            .and_then(|x| x.as_str())
            .map(String::from)
            .unwrap_or_else(|| now.clone())
    };
    json!({
        "acceptedNames": accepted,
        "storedVersions": stored,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": keep_time("NamesAccepted"),
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": keep_time("Established"),
            }
        ]
    })
}

/// Resource definitions served by a CRD (one per served version).
pub fn defs_from_crd(crd: &Value) -> Vec<ResourceDef> {
    let group = s(crd, "spec.group").unwrap_or("").to_string();
    let kind = s(crd, "spec.names.kind").unwrap_or("").to_string();
    let plural = s(crd, "spec.names.plural").unwrap_or("").to_string();
    let singular = s(crd, "spec.names.singular")
        .filter(|x| !x.is_empty())
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = s(crd, "spec.names.listKind")
        .filter(|x| !x.is_empty())
        .map(String::from)
        .unwrap_or_else(|| format!("{kind}List"));
    let strs = |p: &str| -> Vec<String> {
        meta::get_path(crd, p)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let short = strs("spec.names.shortNames");
    let categories = strs("spec.names.categories");
    let namespaced = s(crd, "spec.scope") != Some("Cluster");
    let storage = format!("{group}/{plural}");
    let crd_name = meta::name(crd).to_string();
    let mut out = Vec::new();
    for v in meta::get_path(crd, "spec.versions")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default()
    {
        if v.get("served").and_then(|b| b.as_bool()) != Some(true) {
            continue;
        }
        let version = v
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_string();
        let open_api = v.get("schema").and_then(|s| s.get("openAPIV3Schema"));
        let status = v
            .get("subresources")
            .and_then(|s| s.get("status"))
            .is_some();
        let scale = v
            .get("subresources")
            .and_then(|s| s.get("scale"))
            .map(|sc| ScalePaths {
                spec_replicas: sc
                    .get("specReplicasPath")
                    .and_then(|x| x.as_str())
                    .unwrap_or(".spec.replicas")
                    .to_string(),
                status_replicas: sc
                    .get("statusReplicasPath")
                    .and_then(|x| x.as_str())
                    .unwrap_or(".status.replicas")
                    .to_string(),
                label_selector: sc
                    .get("labelSelectorPath")
                    .and_then(|x| x.as_str())
                    .map(String::from),
            });
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(|c| c.as_array())
            .cloned()
            .unwrap_or_default();
        let selectable_fields: Vec<String> = v
            .get("selectableFields")
            .and_then(|c| c.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.get("jsonPath").and_then(|p| p.as_str()))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        let cel = open_api
            .and_then(|sch| CelRules::compile(&crd_name, &group, &version, &kind, sch))
            .map(Arc::new);
        let info = CrdVersionInfo {
            crd_name: crd_name.clone(),
            schema: Schema::for_crd(open_api),
            has_schema: open_api.is_some(),
            printer_columns,
            scale: scale.clone(),
            selectable_fields: selectable_fields.clone(),
            cel,
        };
        out.push(ResourceDef {
            group: group.clone(),
            version,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: short.clone(),
            categories: categories.clone(),
            storage: storage.clone(),
            view: View::Plain,
            status,
            scale: scale.is_some(),
            generation: if status {
                Generation::NonMetadataStatus
            } else {
                Generation::NonMetadata
            },
            builtin: false,
            schema_name: None,
            crd: Some(Arc::new(info)),
            field_selectors: selectable_fields,
            storage_version: v.get("storage").and_then(|b| b.as_bool()) == Some(true),
        });
    }
    out
}
