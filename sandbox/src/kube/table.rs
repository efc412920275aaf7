//! `meta.k8s.io/v1 Table` output: built-in printer columns and CRD additionalPrinterColumns.

use serde_json::{json, Value};

use crate::kube::meta;
use crate::kube::registry::ResourceDef;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

struct Col {
    name: &'static str,
    typ: &'static str,
    format: &'static str,
    priority: i64,
    description: &'static str,
}

const fn col(name: &'static str, typ: &'static str, priority: i64) -> Col {
    Col {
        name,
        typ,
        format: "",
        priority,
        description: "",
    }
}

const NAME: Col = Col {
    name: "Name",
    typ: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
};
const AGE: Col = Col {
    name: "Age",
    typ: "string",
    format: "",
    priority: 0,
    description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
};

/// Human age like kubectl's `duration.HumanDuration` (`5s`, `3m2s`, `4h`, `2d`).
pub fn human_age(ts: Option<&str>) -> String {
    let Some(t) = ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    if secs < 120 {
        return format!("{secs}s");
    }
    let mins = secs / 60;
    if mins < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{mins}m")
        } else {
            format!("{mins}m{s}s")
        };
    }
    if mins < 180 {
        return format!("{mins}m");
    }
    let hours = mins / 60;
    if hours < 8 {
        let m = mins % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if days < 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if days < 365 * 2 {
        return format!("{days}d");
    }
    format!("{}y", days / 365)
}

fn i(obj: &Value, p: &str) -> i64 {
    meta::get_path(obj, p).and_then(|v| v.as_i64()).unwrap_or(0)
}

fn s(obj: &Value, p: &str) -> String {
    match meta::get_path(obj, p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn age(obj: &Value) -> Value {
    json!(human_age(
        meta::metadata(obj)
            .and_then(|m| m.get("creationTimestamp"))
            .and_then(|t| t.as_str())
    ))
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

fn selector_str(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    or_none(parts.join(","))
}

fn containers_images(obj: &Value, path: &str) -> (String, String) {
    let cs = meta::get_path(obj, path)
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = cs.iter().map(|c| s(c, "name")).collect();
    let images: Vec<String> = cs.iter().map(|c| s(c, "image")).collect();
    (names.join(","), images.join(","))
}

/// Cells of one row.
type CellFn = fn(&Value) -> Vec<Value>;

fn builtin_columns(def: &ResourceDef) -> (Vec<Col>, CellFn) {
    match (def.group.as_str(), def.kind.as_str()) {
        ("apps", "Deployment") => (
            vec![
                NAME,
                col("Ready", "string", 0),
                col("Up-to-date", "integer", 0),
                col("Available", "integer", 0),
                AGE,
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            |o| {
                let (c, im) = containers_images(o, "spec.template.spec.containers");
                vec![
                    json!(meta::name(o)),
                    json!(format!(
                        "{}/{}",
                        i(o, "status.readyReplicas"),
                        i(o, "spec.replicas")
                    )),
                    json!(i(o, "status.updatedReplicas")),
                    json!(i(o, "status.availableReplicas")),
                    age(o),
                    json!(c),
                    json!(im),
                    json!(selector_str(meta::get_path(o, "spec.selector"))),
                ]
            },
        ),
        ("apps", "StatefulSet") => (
            vec![
                NAME,
                col("Ready", "string", 0),
                AGE,
                col("Containers", "string", 1),
                col("Images", "string", 1),
            ],
            |o| {
                let (c, im) = containers_images(o, "spec.template.spec.containers");
                vec![
                    json!(meta::name(o)),
                    json!(format!(
                        "{}/{}",
                        i(o, "status.readyReplicas"),
                        i(o, "spec.replicas")
                    )),
                    age(o),
                    json!(c),
                    json!(im),
                ]
            },
        ),
        ("apps", "ReplicaSet") => (
            vec![
                NAME,
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                AGE,
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            |o| {
                let (c, im) = containers_images(o, "spec.template.spec.containers");
                vec![
                    json!(meta::name(o)),
                    json!(i(o, "spec.replicas")),
                    json!(i(o, "status.replicas")),
                    json!(i(o, "status.readyReplicas")),
                    age(o),
                    json!(c),
                    json!(im),
                    json!(selector_str(meta::get_path(o, "spec.selector"))),
                ]
            },
        ),
        ("apps", "DaemonSet") => (
            vec![
                NAME,
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Up-to-date", "integer", 0),
                col("Available", "integer", 0),
                col("Node Selector", "string", 0),
                AGE,
            ],
            |o| {
                let ns = meta::get_path(o, "spec.template.spec.nodeSelector")
                    .and_then(|n| n.as_object())
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                vec![
                    json!(meta::name(o)),
                    json!(i(o, "status.desiredNumberScheduled")),
                    json!(i(o, "status.currentNumberScheduled")),
                    json!(i(o, "status.numberReady")),
                    json!(i(o, "status.updatedNumberScheduled")),
                    json!(i(o, "status.numberAvailable")),
                    json!(or_none(ns)),
                    age(o),
                ]
            },
        ),
        ("", "Pod") => (
            vec![
                NAME,
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                AGE,
                col("IP", "string", 1),
                col("Node", "string", 1),
            ],
            |o| {
                let total = meta::get_path(o, "spec.containers")
                    .and_then(|c| c.as_array())
                    .map(|a| a.len())
                    .unwrap_or(0);
                let statuses = meta::get_path(o, "status.containerStatuses")
                    .and_then(|c| c.as_array())
                    .cloned()
                    .unwrap_or_default();
                let ready = statuses
                    .iter()
                    .filter(|c| c.get("ready") == Some(&json!(true)))
                    .count();
                let restarts: i64 = statuses.iter().map(|c| i(c, "restartCount")).sum();
                let mut status = s(o, "status.phase");
                if meta::deletion_timestamp(o).is_some() {
                    status = "Terminating".into();
                }
                vec![
                    json!(meta::name(o)),
                    json!(format!("{ready}/{total}")),
                    json!(status),
                    json!(restarts.to_string()),
                    age(o),
                    json!(or_none(s(o, "status.podIP"))),
                    json!(or_none(s(o, "spec.nodeName"))),
                ]
            },
        ),
        ("", "Namespace") => (vec![NAME, col("Status", "string", 0), AGE], |o| {
            vec![json!(meta::name(o)), json!(s(o, "status.phase")), age(o)]
        }),
        ("", "Secret") => (
            vec![
                NAME,
                col("Type", "string", 0),
                col("Data", "string", 0),
                AGE,
            ],
            |o| {
                let n = o
                    .get("data")
                    .and_then(|d| d.as_object())
                    .map(|d| d.len())
                    .unwrap_or(0);
                vec![
                    json!(meta::name(o)),
                    json!(s(o, "type")),
                    json!(n.to_string()),
                    age(o),
                ]
            },
        ),
        ("", "ConfigMap") => (vec![NAME, col("Data", "string", 0), AGE], |o| {
            let n = o
                .get("data")
                .and_then(|d| d.as_object())
                .map(|d| d.len())
                .unwrap_or(0)
                + o.get("binaryData")
                    .and_then(|d| d.as_object())
                    .map(|d| d.len())
                    .unwrap_or(0);
            vec![json!(meta::name(o)), json!(n.to_string()), age(o)]
        }),
        ("", "ServiceAccount") => (vec![NAME, col("Secrets", "string", 0), AGE], |o| {
            let n = o
                .get("secrets")
                .and_then(|d| d.as_array())
                .map(|d| d.len())
                .unwrap_or(0);
            vec![json!(meta::name(o)), json!(n.to_string()), age(o)]
        }),
        ("", "Service") => (
            vec![
                NAME,
                col("Type", "string", 0),
                col("Cluster-IP", "string", 0),
                col("External-IP", "string", 0),
                col("Port(s)", "string", 0),
                AGE,
                col("Selector", "string", 1),
            ],
            |o| {
                let ports = meta::get_path(o, "spec.ports")
                    .and_then(|p| p.as_array())
                    .cloned()
                    .unwrap_or_default();
                let ps: Vec<String> = ports
                    .iter()
                    .map(|p| {
                        let np = p
                            .get("nodePort")
                            .and_then(|n| n.as_i64())
                            .map(|n| format!(":{n}"))
                            .unwrap_or_default();
                        format!("{}{np}/{}", i(p, "port"), s(p, "protocol"))
                    })
                    .collect();
                let sel = meta::get_path(o, "spec.selector")
                    .and_then(|m| m.as_object())
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                vec![
                    json!(meta::name(o)),
                    json!(s(o, "spec.type")),
                    json!(or_none(s(o, "spec.clusterIP"))),
                    json!("<none>"),
                    json!(or_none(ps.join(","))),
                    age(o),
                    json!(or_none(sel)),
                ]
            },
        ),
        ("", "Event") | ("events.k8s.io", "Event") => (
            vec![
                col("Last Seen", "string", 0),
                col("Type", "string", 0),
                col("Reason", "string", 0),
                col("Object", "string", 0),
                col("Message", "string", 0),
            ],
            |o| {
                let reg = o
                    .get("involvedObject")
                    .or_else(|| o.get("regarding"))
                    .cloned()
                    .unwrap_or(json!({}));
                let last = ["lastTimestamp", "deprecatedLastTimestamp", "eventTime"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(|v| v.as_str()).map(String::from));
                let msg = o
                    .get("message")
                    .or_else(|| o.get("note"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("");
                vec![
                    json!(human_age(last.as_deref())),
                    json!(s(o, "type")),
                    json!(s(o, "reason")),
                    json!(format!(
                        "{}/{}",
                        s(&reg, "kind").to_lowercase(),
                        s(&reg, "name")
                    )),
                    json!(msg),
                ]
            },
        ),
        ("coordination.k8s.io", "Lease") => (vec![NAME, col("Holder", "string", 0), AGE], |o| {
            vec![
                json!(meta::name(o)),
                json!(s(o, "spec.holderIdentity")),
                age(o),
            ]
        }),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole")
        | ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            (vec![NAME, col("Created At", "date", 0)], |o| {
                vec![
                    json!(meta::name(o)),
                    json!(s(o, "metadata.creationTimestamp")),
                ]
            })
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            (vec![NAME, col("Role", "string", 0), AGE], |o| {
                vec![
                    json!(meta::name(o)),
                    json!(format!("{}/{}", s(o, "roleRef.kind"), s(o, "roleRef.name"))),
                    age(o),
                ]
            })
        }
        ("policy", "PodDisruptionBudget") => (
            vec![
                NAME,
                col("Min Available", "string", 0),
                col("Max Unavailable", "string", 0),
                col("Allowed Disruptions", "integer", 0),
                AGE,
            ],
            |o| {
                vec![
                    json!(meta::name(o)),
                    json!(if s(o, "spec.minAvailable").is_empty() {
                        "N/A".into()
                    } else {
                        s(o, "spec.minAvailable")
                    }),
                    json!(if s(o, "spec.maxUnavailable").is_empty() {
                        "N/A".into()
                    } else {
                        s(o, "spec.maxUnavailable")
                    }),
                    json!(i(o, "status.disruptionsAllowed")),
                    age(o),
                ]
            },
        ),
        ("batch", "Job") => (
            vec![
                NAME,
                col("Status", "string", 0),
                col("Completions", "string", 0),
                col("Duration", "string", 0),
                AGE,
            ],
            |o| {
                let done = i(o, "status.succeeded");
                let status = if done >= i(o, "spec.completions").max(1) {
                    "Complete"
                } else {
                    "Running"
                };
                vec![
                    json!(meta::name(o)),
                    json!(status),
                    json!(format!("{done}/{}", i(o, "spec.completions"))),
                    json!(""),
                    age(o),
                ]
            },
        ),
        _ => (vec![NAME, AGE], |o| vec![json!(meta::name(o)), age(o)]),
    }
}

/// Minimal JSONPath as used by additionalPrinterColumns: `.a.b`, `[n]`, `[*]`, `[?(@.k=="v")]`.
pub fn json_path(obj: &Value, path: &str) -> Option<Value> {
    let mut cur: Vec<Value> = vec![obj.clone()];
    let p = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect();
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = f.split_once("==")?;
                let want = v.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .iter()
                    .flat_map(|x| x.as_array().cloned().unwrap_or_default())
                    .filter(|item| {
                        meta::get_path(item, k.trim()).and_then(|x| x.as_str()) == Some(want)
                    })
                    .collect();
            } else if let Ok(n) = inner.parse::<usize>() {
                cur = cur.iter().filter_map(|v| v.get(n).cloned()).collect();
            } else {
                let key = inner.trim_matches('\'').trim_matches('"');
                cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            }
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &rest[end..];
        }
    }
    match cur.len() {
        0 => None,
        1 => cur.pop(),
        _ => Some(Value::Array(cur)),
    }
}

fn crd_cell(obj: &Value, c: &Value) -> Value {
    let path = c.get("jsonPath").and_then(|p| p.as_str()).unwrap_or("");
    let typ = c.get("type").and_then(|t| t.as_str()).unwrap_or("string");
    let v = json_path(obj, path);
    match (typ, v) {
        (_, None) => Value::Null,
        ("date", Some(Value::String(ts))) => json!(human_age(Some(&ts))),
        ("string", Some(Value::String(s))) => json!(s),
        ("string", Some(Value::Array(a))) => {
            json!(a
                .iter()
                .map(|x| x
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(","))
        }
        ("string", Some(other)) => json!(other.to_string()),
        (_, Some(v)) => v,
    }
}

fn column_defs(cols: &[Col]) -> Vec<Value> {
    cols.iter()
        .map(|c| json!({"name": c.name, "type": c.typ, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect()
}

type RowBuilder = Box<dyn Fn(&Value) -> Vec<Value> + Send + Sync>;

/// Column definitions and a row builder for a resource.
pub struct Printer {
    pub columns: Vec<Value>,
    cells: RowBuilder,
}

impl Printer {
    pub fn for_def(def: &ResourceDef) -> Self {
        if let Some(info) = &def.crd {
            let pcs = info.printer_columns.clone();
            if pcs.is_empty() {
                return Printer {
                    columns: column_defs(&[
                        NAME,
                        Col {
                            name: "Age",
                            typ: "date",
                            ..AGE
                        },
                    ]),
                    cells: Box::new(|o| vec![json!(meta::name(o)), age(o)]),
                };
            }
            let mut columns = column_defs(&[NAME]);
            for c in &pcs {
                columns.push(json!({
                    "name": c.get("name").cloned().unwrap_or(json!("")),
                    "type": c.get("type").cloned().unwrap_or(json!("string")),
                    "format": c.get("format").cloned().unwrap_or(json!("")),
                    "description": c.get("description").cloned().unwrap_or(json!("")),
                    "priority": c.get("priority").cloned().unwrap_or(json!(0)),
                }));
            }
            return Printer {
                columns,
                cells: Box::new(move |o| {
                    let mut row = vec![json!(meta::name(o))];
                    row.extend(pcs.iter().map(|c| crd_cell(o, c)));
                    row
                }),
            };
        }
        let (cols, f) = builtin_columns(def);
        Printer {
            columns: column_defs(&cols),
            cells: Box::new(f),
        }
    }

    pub fn row(&self, obj: &Value, include: Include) -> Value {
        let mut row = json!({"cells": (self.cells)(obj)});
        match include {
            Include::None => {}
            Include::Metadata => row["object"] = partial_meta(obj),
            Include::Object => row["object"] = obj.clone(),
        }
        row
    }

    pub fn table(
        &self,
        objs: &[Value],
        include: Include,
        rv: &str,
        cont: Option<&str>,
        with_columns: bool,
    ) -> Value {
        let mut md = json!({"resourceVersion": rv});
        if let Some(c) = cont {
            md["continue"] = json!(c);
        }
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": md,
            "columnDefinitions": if with_columns { Value::Array(self.columns.clone()) } else { Value::Null },
            "rows": objs.iter().map(|o| self.row(o, include)).collect::<Vec<_>>(),
        })
    }
}

pub fn partial_meta(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}
