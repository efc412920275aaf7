//! Small accessors for `metadata` inside untyped objects.

use serde_json::{json, Map, Value};

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let m = obj.as_object_mut().expect("object");
    let md = m.entry("metadata").or_insert_with(|| json!({}));
    if !md.is_object() {
        *md = json!({});
    }
    md.as_object_mut().expect("object")
}

fn md_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    metadata(obj)?.get(key)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    md_str(obj, "name").unwrap_or("")
}

pub fn namespace(obj: &Value) -> &str {
    md_str(obj, "namespace").unwrap_or("")
}

pub fn uid(obj: &Value) -> Option<&str> {
    md_str(obj, "uid")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    md_str(obj, "resourceVersion").filter(|s| !s.is_empty())
}

pub fn set_resource_version(obj: &mut Value, rv: u64) {
    metadata_mut(obj).insert("resourceVersion".into(), json!(rv.to_string()));
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    md_str(obj, "deletionTimestamp")
}

pub fn generation(obj: &Value) -> i64 {
    metadata(obj)
        .and_then(|m| m.get("generation"))
        .and_then(|g| g.as_i64())
        .unwrap_or(0)
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(|f| f.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, f: &[String]) {
    let md = metadata_mut(obj);
    if f.is_empty() {
        md.remove("finalizers");
    } else {
        md.insert("finalizers".into(), json!(f));
    }
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    metadata(obj)?.get("labels")?.as_object()
}

pub fn owner_refs(obj: &Value) -> Vec<Value> {
    metadata(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(|o| o.as_array())
        .cloned()
        .unwrap_or_default()
}

pub fn owner_uids(obj: &Value) -> Vec<String> {
    owner_refs(obj)
        .iter()
        .filter_map(|r| r.get("uid")?.as_str().map(String::from))
        .collect()
}

/// RFC 3339 UTC with seconds precision, like metav1.Time.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Looks up a dotted path (`spec.replicas`) in an object.
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Value of a field for field selectors: strings as-is, scalars rendered, missing as "".
pub fn field_string(obj: &Value, path: &str) -> String {
    match get_path(obj, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}
