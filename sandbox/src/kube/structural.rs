//! Structural-schema processing of objects: pruning unknown fields, defaulting, and OpenAPI
//! value validation with apiextensions-style messages.

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::kube::error::{FieldError, FieldErrorType};
use crate::kube::schema::Node;

/// A schema `pattern`, compiled once per process (a CRD's patterns are few; compiling one at
/// every validated string was a visible share of the API server's CPU). `None` if invalid.
fn compiled(pattern: &str) -> Option<Arc<Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Regex>>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache
        .entry(pattern.to_owned())
        .or_insert_with(|| Regex::new(pattern).ok().map(Arc::new))
        .clone()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes fields the schema does not declare; returns their paths (for Strict/Warn).
pub fn prune(obj: &mut Value, node: Node, path: &str, root: bool, out: &mut Vec<String>) {
    if node.preserve_unknown()
        && node.properties().is_none()
        && node.additional().is_none()
        && !node.embedded_resource()
    {
        return;
    }
    match obj {
        Value::Object(m) => {
            let embedded = root || node.embedded_resource();
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if embedded && k == "metadata" && !root {
                    if let Some(v) = m.get_mut(&k) {
                        prune_embedded_meta(v);
                    }
                    continue;
                }
                match node.field(&k) {
                    Some(child) => {
                        if let Some(v) = m.get_mut(&k) {
                            if embedded && k == "metadata" && !root {
                                prune_embedded_meta(v);
                                continue;
                            }
                            prune(v, child, &join(path, &k), false, out);
                        }
                    }
                    None => {
                        if !node.preserve_unknown() {
                            m.remove(&k);
                            out.push(join(path, &k));
                        }
                    }
                }
            }
        }
        Value::Array(a) => {
            let items = node.items();
            for (i, v) in a.iter_mut().enumerate() {
                prune(v, items, &format!("{path}[{i}]"), false, out);
            }
        }
        _ => {}
    }
}

/// Embedded resources keep only the ObjectMeta fields that survive a round trip.
fn prune_embedded_meta(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|k, _| {
            matches!(
                k.as_str(),
                "name" | "namespace" | "labels" | "annotations" | "generateName" | "finalizers"
            )
        });
    }
}

/// Fills in schema defaults for absent fields, recursively.
pub fn apply_defaults(obj: &mut Value, node: Node) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = node.properties() {
                for (k, _) in props.iter() {
                    let Some(child) = node.field(k) else { continue };
                    if !m.contains_key(k) {
                        if let Some(d) = child.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(v) = m.get_mut(k) {
                        apply_defaults(v, child);
                    }
                }
            }
            if node.properties().is_none() {
                if let Some(add) = node.additional() {
                    if add.is_known() {
                        for v in m.values_mut() {
                            apply_defaults(v, add);
                        }
                    }
                }
            }
        }
        Value::Array(a) => {
            let items = node.items();
            if items.is_known() {
                for v in a.iter_mut() {
                    apply_defaults(v, items);
                }
            }
        }
        _ => {}
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match want {
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn check_format(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" => uuid::Uuid::parse_str(s).is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "hostname" => {
            !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        }
        _ => true,
    }
}

/// Validates a value against a structural schema node, collecting every error.
pub fn validate(v: &Value, node: Node, path: &str, errs: &mut Vec<FieldError>) {
    if !node.is_known() {
        return;
    }
    if v.is_null() {
        if node.get("nullable").and_then(|n| n.as_bool()) == Some(true) {
            return;
        }
        if node.type_name().is_some() {
            errs.push(FieldError::new(
                FieldErrorType::TypeInvalid,
                path,
                Some(Value::String("null".into())),
                format!(
                    "{path} in body must be of type {}: \"null\"",
                    node.type_name().unwrap_or("")
                ),
            ));
        }
        return;
    }
    if node.int_or_string() {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push(FieldError::new(
                FieldErrorType::TypeInvalid,
                path,
                Some(Value::String(type_of(v).into())),
                format!(
                    "{path} in body must be of type integer,string: {}",
                    crate::kube::error::go_value(v)
                ),
            ));
        }
        return;
    }
    if let Some(t) = node.type_name() {
        if !type_ok(t, v) {
            errs.push(FieldError::new(
                FieldErrorType::TypeInvalid,
                path,
                Some(Value::String(type_of(v).into())),
                format!(
                    "{path} in body must be of type {t}: {}",
                    crate::kube::error::go_value(v)
                ),
            ));
            return;
        }
    }
    if let Some(en) = node.get("enum").and_then(|e| e.as_array()) {
        if !en.contains(v) {
            let valid: Vec<String> = en
                .iter()
                .map(|e| {
                    e.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| e.to_string())
                })
                .collect();
            errs.push(FieldError::new(
                FieldErrorType::NotSupported(valid),
                path,
                Some(v.clone()),
                "",
            ));
        }
    }
    match v {
        Value::String(s) => {
            if let Some(max) = node.get("maxLength").and_then(|m| m.as_u64()) {
                if s.chars().count() as u64 > max {
                    errs.push(FieldError::new(
                        FieldErrorType::TooLong(max as usize),
                        path,
                        Some(v.clone()),
                        "",
                    ));
                }
            }
            if let Some(min) = node.get("minLength").and_then(|m| m.as_u64()) {
                if (s.chars().count() as u64) < min {
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!("{path} in body should be at least {min} chars long"),
                    ));
                }
            }
            if let Some(p) = node.get("pattern").and_then(|p| p.as_str()) {
                if let Some(re) = compiled(p) {
                    if !re.is_match(s) {
                        errs.push(FieldError::invalid(
                            path,
                            v.clone(),
                            format!("{path} in body should match '{p}'"),
                        ));
                    }
                }
            }
            if let Some(f) = node.get("format").and_then(|f| f.as_str()) {
                if !check_format(f, s) {
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!("{path} in body must be of type {f}: {s:?}"),
                    ));
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let excl_min = node.get("exclusiveMinimum").and_then(|e| e.as_bool()) == Some(true);
            let excl_max = node.get("exclusiveMaximum").and_then(|e| e.as_bool()) == Some(true);
            if let Some(min) = node.get("minimum").and_then(|m| m.as_f64()) {
                if x < min || (excl_min && x == min) {
                    let rel = if excl_min {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!("{path} in body should be {rel} {}", fmt_num(min)),
                    ));
                }
            }
            if let Some(max) = node.get("maximum").and_then(|m| m.as_f64()) {
                if x > max || (excl_max && x == max) {
                    let rel = if excl_max {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!("{path} in body should be {rel} {}", fmt_num(max)),
                    ));
                }
            }
            if let Some(m) = node.get("multipleOf").and_then(|m| m.as_f64()) {
                if m != 0.0 && (x / m).fract() != 0.0 {
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!("{path} in body should be a multiple of {}", fmt_num(m)),
                    ));
                }
            }
        }
        Value::Array(a) => {
            if let Some(max) = node.get("maxItems").and_then(|m| m.as_u64()) {
                if a.len() as u64 > max {
                    errs.push(FieldError::new(
                        FieldErrorType::TooMany(max as usize),
                        path,
                        Some(v.clone()),
                        "",
                    ));
                }
            }
            if let Some(min) = node.get("minItems").and_then(|m| m.as_u64()) {
                if (a.len() as u64) < min {
                    errs.push(FieldError::invalid(
                        path,
                        Value::from(a.len()),
                        format!("{path} in body should have at least {min} items"),
                    ));
                }
            }
            check_list_uniqueness(a, node, path, errs);
            let items = node.items();
            for (i, item) in a.iter().enumerate() {
                validate(item, items, &format!("{path}[{i}]"), errs);
            }
        }
        Value::Object(m) => validate_object(m, node, path, errs),
        _ => {}
    }
}

fn check_list_uniqueness(a: &[Value], node: Node, path: &str, errs: &mut Vec<FieldError>) {
    use crate::kube::schema::ListType;
    match node.list_type() {
        ListType::Set => {
            for (i, x) in a.iter().enumerate() {
                if a[..i].contains(x) {
                    errs.push(FieldError::new(
                        FieldErrorType::Duplicate,
                        format!("{path}[{i}]"),
                        Some(x.clone()),
                        "",
                    ));
                }
            }
        }
        ListType::Map(keys) => {
            let key_of = |x: &Value| {
                keys.iter()
                    .map(|k| x.get(k).cloned().unwrap_or(Value::Null))
                    .collect::<Vec<_>>()
            };
            for (i, x) in a.iter().enumerate() {
                let kx = key_of(x);
                if a[..i].iter().any(|y| key_of(y) == kx) {
                    let shown = if keys.len() == 1 {
                        kx[0].clone()
                    } else {
                        Value::Object(keys.iter().cloned().zip(kx.iter().cloned()).collect())
                    };
                    errs.push(FieldError::new(
                        FieldErrorType::Duplicate,
                        format!("{path}[{i}]"),
                        Some(shown),
                        "",
                    ));
                }
            }
        }
        ListType::Atomic => {}
    }
}

fn validate_object(m: &Map<String, Value>, node: Node, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(req) = node.get("required").and_then(|r| r.as_array()) {
        for r in req.iter().filter_map(|r| r.as_str()) {
            if !m.contains_key(r) {
                errs.push(FieldError::required(join(path, r), ""));
            }
        }
    }
    if let Some(max) = node.get("maxProperties").and_then(|x| x.as_u64()) {
        if m.len() as u64 > max {
            errs.push(FieldError::new(
                FieldErrorType::TooMany(max as usize),
                path,
                Some(Value::from(m.len())),
                "",
            ));
        }
    }
    if let Some(min) = node.get("minProperties").and_then(|x| x.as_u64()) {
        if (m.len() as u64) < min {
            errs.push(FieldError::invalid(
                path,
                Value::from(m.len()),
                format!("{path} in body should have at least {min} properties"),
            ));
        }
    }
    for (k, v) in m {
        if path.is_empty() && (k == "metadata" || k == "apiVersion" || k == "kind") {
            continue;
        }
        if let Some(child) = node.field(k) {
            validate(v, child, &join(path, k), errs);
        }
    }
}

/// Type errors in built-in objects, reported like Go's JSON decoder
/// (`json: cannot unmarshal string into Go struct field ... of type int32`).
pub fn builtin_type_errors(v: &Value, node: Node, path: &str, out: &mut Vec<String>) {
    if !node.is_known() || v.is_null() {
        return;
    }
    if node.int_or_string() {
        return;
    }
    if let Some(t) = node.type_name() {
        if !type_ok(t, v) {
            let go_t = match (t, node.get("format").and_then(|f| f.as_str())) {
                ("integer", Some(f)) => f.to_string(),
                ("integer", None) => "int64".into(),
                ("number", _) => "float64".into(),
                ("boolean", _) => "bool".into(),
                ("array", _) => "[]interface {}".into(),
                ("object", _) => "map[string]interface {}".into(),
                (t, _) => t.to_string(),
            };
            out.push(format!(
                "json: cannot unmarshal {} into Go struct field .{path} of type {go_t}",
                type_of(v)
            ));
            return;
        }
    }
    match v {
        Value::Array(a) => {
            let items = node.items();
            for item in a {
                builtin_type_errors(item, items, path, out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                if let Some(child) = node.field(k) {
                    builtin_type_errors(x, child, &join(path, k), out);
                }
            }
        }
        _ => {}
    }
}
