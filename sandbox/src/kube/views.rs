//! Presenting stored objects through a resource (apiVersion/kind, events.k8s.io/v1 <-> core/v1).

use serde_json::{json, Map, Value};

use crate::kube::registry::{ResourceDef, View};

/// (core/v1 name, events.k8s.io/v1 name) pairs that differ.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(m: &mut Map<String, Value>, pairs: &[(&str, &str)], forward: bool) {
    let mut out = Map::new();
    for (k, v) in std::mem::take(m) {
        let nk = pairs
            .iter()
            .find(|(a, b)| if forward { a == &k } else { b == &k })
            .map(|(a, b)| {
                if forward {
                    b.to_string()
                } else {
                    a.to_string()
                }
            })
            .unwrap_or(k);
        out.insert(nk, v);
    }
    *m = out;
}

/// Stored form -> the form served by `def`.
pub fn to_view(def: &ResourceDef, stored: &Value) -> Value {
    let mut v = stored.clone();
    if let Some(m) = v.as_object_mut() {
        if def.view == View::EventsV1 {
            rename(m, EVENT_FIELDS, true);
        }
        m.insert("apiVersion".into(), json!(def.api_version()));
        m.insert("kind".into(), json!(def.kind));
    }
    v
}

/// Served form -> stored form (`storage_api_version` of the storage version).
pub fn from_view(
    def: &ResourceDef,
    v: Value,
    storage_api_version: &str,
    storage_kind: &str,
) -> Value {
    let mut v = v;
    if let Some(m) = v.as_object_mut() {
        if def.view == View::EventsV1 {
            rename(m, EVENT_FIELDS, false);
            // core/v1 Events need a message/involvedObject for kubectl's printer.
            if !m.contains_key("involvedObject") {
                m.insert("involvedObject".into(), json!({}));
            }
        }
        m.insert("apiVersion".into(), json!(storage_api_version));
        m.insert("kind".into(), json!(storage_kind));
    }
    v
}

/// True when the stored bytes can be served as they are.
pub fn is_identity(def: &ResourceDef) -> bool {
    def.view == View::Plain && def.storage_version
}
