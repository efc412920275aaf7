//! The autoscaling/v1 `scale` subresource: the Scale view of an object, and writes through it.

use super::*;

pub(super) enum ScaleInput {
    Put(Value),
    Patch(PatchType, Vec<u8>),
}

fn scale_paths(def: &ResourceDef) -> (String, String, Option<String>) {
    match def.crd.as_ref().and_then(|c| c.scale.clone()) {
        Some(s) => (
            s.spec_replicas.trim_start_matches('.').to_string(),
            s.status_replicas.trim_start_matches('.').to_string(),
            s.label_selector
                .map(|l| l.trim_start_matches('.').to_string()),
        ),
        None => ("spec.replicas".into(), "status.replicas".into(), None),
    }
}

fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(|m| m.as_object()) {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(ex) = sel.get("matchExpressions").and_then(|m| m.as_array()) {
        for e in ex {
            let key = e.get("key").and_then(|k| k.as_str()).unwrap_or("");
            let vals: Vec<&str> = e
                .get("values")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(|o| o.as_str()).unwrap_or("") {
                "In" => parts.push(format!("{key} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.sort();
    parts.join(",")
}

/// The autoscaling/v1 Scale view of an object.
pub fn scale_of(def: &ResourceDef, obj: &Value) -> Value {
    let (spec_p, status_p, sel_p) = scale_paths(def);
    let md = meta::metadata(obj).cloned().unwrap_or_default();
    let mut smd = Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = md.get(k) {
            smd.insert(k.into(), v.clone());
        }
    }
    let selector = match sel_p {
        Some(p) => meta::get_path(obj, &p)
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_string(),
        None => meta::get_path(obj, "spec.selector")
            .map(selector_string)
            .unwrap_or_default(),
    };
    let mut status =
        json!({"replicas": meta::get_path(obj, &status_p).and_then(|r| r.as_i64()).unwrap_or(0)});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": smd,
        "spec": {"replicas": meta::get_path(obj, &spec_p).and_then(|r| r.as_i64()).unwrap_or(0)},
        "status": status,
    })
}

fn set_path(obj: &mut Value, path: &str, v: Value) {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let mut cur = obj;
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().expect("object");
        if i + 1 == parts.len() {
            m.insert(p.to_string(), v);
            return;
        }
        cur = m.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

pub(super) fn scale_write(
    st: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    input: ScaleInput,
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    let ns_k = ns_key(def, ns);
    let old = st
        .get(&def.storage, &ns_k, name)
        .ok_or_else(|| ApiError::not_found(&def.gr(), name))?;
    let old_view = present(def, &old);
    let cur_scale = scale_of(def, &old_view);
    let new_scale = match input {
        ScaleInput::Put(v) => v,
        ScaleInput::Patch(PatchType::Merge, b) => {
            patch::merge_patch(&cur_scale, &decode_patch_body(&b)?)
        }
        ScaleInput::Patch(PatchType::Json, b) => match jsonpatch::apply(&cur_scale, &b) {
            Ok(v) => v,
            Err(jsonpatch::JsonPatchError::Decode(e)) => return Err(ApiError::bad_request(e)),
            Err(jsonpatch::JsonPatchError::Apply(e)) => {
                return Err(ApiError::new(422, "Invalid", e))
            }
        },
        ScaleInput::Patch(PatchType::Strategic, b) => {
            let p = decode_patch_body(&b)?;
            strategic::apply(
                &cur_scale,
                &p,
                Schema::builtin("io.k8s.api.autoscaling.v1.Scale").node(),
            )
            .map_err(|e| ApiError::new(422, "Invalid", e))?
        }
        ScaleInput::Patch(PatchType::Apply, b) => {
            let a = decode_yaml_or_json(&b).map_err(ApiError::bad_request)?;
            patch::merge_patch(&cur_scale, &a)
        }
    };
    if let Some(rv) = meta::resource_version(&new_scale) {
        if Some(rv) != meta::resource_version(&old) {
            return Err(ApiError::stale(&def.gr(), name));
        }
    }
    let replicas = meta::get_path(&new_scale, "spec.replicas")
        .cloned()
        .unwrap_or(json!(0));
    if replicas.as_i64().is_none_or(|r| r < 0) {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            name,
            &[FieldError::invalid(
                "spec.replicas",
                replicas.clone(),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let (spec_p, _, _) = scale_paths(def);
    let mut new = old_view.clone();
    set_path(&mut new, &spec_p, replicas);
    let out = commit(st, def, Some(&old), new, Sub::Scale, opts, Fields::Update)?;
    Ok(Outcome {
        code: 200,
        body: scale_of(def, &out.body),
        warnings: out.warnings,
    })
}
