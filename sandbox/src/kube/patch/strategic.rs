//! Strategic merge patch for built-in kinds, driven by the schema's x-kubernetes-patch-* extensions:
//! lists merged by key, `$patch` (replace/delete/merge), `$retainKeys`, `$setElementOrder/...`,
//! `$deleteFromPrimitiveList/...`.

use serde_json::{Map, Value};

use crate::kube::schema::Node;

const DIRECTIVE: &str = "$patch";
const RETAIN: &str = "$retainKeys";
const ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch; errors are messages for a 422/400.
pub fn apply(original: &Value, patch: &Value, node: Node) -> Result<Value, String> {
    match patch {
        Value::Object(pm) => {
            let base = original.as_object().cloned().unwrap_or_default();
            merge_map(base, pm, node).map(Value::Object)
        }
        _ => Err("strategic merge patch must be a JSON object".into()),
    }
}

fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
    node: Node,
) -> Result<Map<String, Value>, String> {
    match patch.get(DIRECTIVE).and_then(|d| d.as_str()) {
        Some("replace") => {
            let mut p = patch.clone();
            p.remove(DIRECTIVE);
            return Ok(strip_directives(p));
        }
        Some("delete") => return Ok(Map::new()),
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other} in map: {patch:?}")),
    }
    let retain: Option<Vec<String>> = patch.get(RETAIN).and_then(|r| r.as_array()).map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    });
    for (k, pv) in patch {
        if k == DIRECTIVE || k == RETAIN || k.starts_with(ORDER_PREFIX) {
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE_PREFIX) {
            if let (Some(Value::Array(list)), Some(del)) = (orig.get_mut(field), pv.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if pv.is_null() {
            orig.remove(k);
            continue;
        }
        let child = node.field(k).unwrap_or_else(|| Node::none(node.comps()));
        let raw = node.prop_raw(k);
        let (merge_key, strategies) = raw_patch_meta(raw);
        let merged = match (orig.remove(k), pv) {
            (Some(Value::Object(om)), Value::Object(pm)) => {
                if pm.get(DIRECTIVE).and_then(|d| d.as_str()) == Some("delete") {
                    continue;
                }
                Value::Object(merge_map(om, pm, child)?)
            }
            (Some(Value::Array(oa)), Value::Array(pa)) if strategies.contains(&"merge") => {
                let order = patch
                    .get(&format!("{ORDER_PREFIX}{k}"))
                    .and_then(|o| o.as_array());
                Value::Array(merge_list(oa, pa, merge_key, child.items(), order)?)
            }
            (None, Value::Object(pm)) => {
                if pm.get(DIRECTIVE).and_then(|d| d.as_str()) == Some("delete") {
                    continue;
                }
                Value::Object(merge_map(Map::new(), pm, child)?)
            }
            (None, Value::Array(pa)) if strategies.contains(&"merge") => {
                let order = patch
                    .get(&format!("{ORDER_PREFIX}{k}"))
                    .and_then(|o| o.as_array());
                Value::Array(merge_list(Vec::new(), pa, merge_key, child.items(), order)?)
            }
            (_, pv) => strip_value(pv.clone()),
        };
        orig.insert(k.clone(), merged);
    }
    // Lists only reordered by $setElementOrder (no items patched).
    for (k, order) in patch {
        if let Some(field) = k.strip_prefix(ORDER_PREFIX) {
            if patch.contains_key(field) {
                continue;
            }
            if let (Some(Value::Array(list)), Some(order)) = (orig.get_mut(field), order.as_array())
            {
                let (merge_key, _) = raw_patch_meta(node.prop_raw(field));
                let sorted = reorder(std::mem::take(list), order, merge_key);
                *list = sorted;
            }
        }
    }
    if let Some(keep) = retain {
        orig.retain(|k, _| keep.contains(k));
    }
    Ok(orig)
}

fn raw_patch_meta(raw: Option<&Value>) -> (Option<&str>, Vec<&str>) {
    let Some(raw) = raw else {
        return (None, Vec::new());
    };
    let strat = raw
        .get("x-kubernetes-patch-strategy")
        .and_then(|s| s.as_str())
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    (
        raw.get("x-kubernetes-patch-merge-key")
            .and_then(|k| k.as_str()),
        strat,
    )
}

fn merge_list(
    mut orig: Vec<Value>,
    patch: &[Value],
    merge_key: Option<&str>,
    items: Node,
    order: Option<&Vec<Value>>,
) -> Result<Vec<Value>, String> {
    // `{"$patch": "replace"}` as an item replaces the whole list with the other items.
    if patch
        .iter()
        .any(|p| p.get(DIRECTIVE).and_then(|d| d.as_str()) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|p| p.get(DIRECTIVE).is_none())
            .cloned()
            .map(strip_value)
            .collect());
    }
    match merge_key {
        Some(key) => {
            for p in patch {
                let Some(pm) = p.as_object() else {
                    return Err(format!(
                        "merging an object in json but data type is not map: {p}"
                    ));
                };
                let kv = pm.get(key).cloned();
                let Some(kv) = kv else {
                    return Err(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    ));
                };
                let pos = orig.iter().position(|o| o.get(key) == Some(&kv));
                match pm.get(DIRECTIVE).and_then(|d| d.as_str()) {
                    Some("delete") => {
                        if let Some(i) = pos {
                            orig.remove(i);
                        }
                    }
                    _ => match pos {
                        Some(i) => {
                            let o = orig[i].as_object().cloned().unwrap_or_default();
                            orig[i] = Value::Object(merge_map(o, pm, items)?);
                        }
                        None => orig.push(Value::Object(merge_map(Map::new(), pm, items)?)),
                    },
                }
            }
            if let Some(order) = order {
                orig = reorder(orig, order, Some(key));
            }
            Ok(orig)
        }
        None => {
            // Primitive list with merge strategy: union.
            for p in patch {
                if !orig.contains(p) {
                    orig.push(p.clone());
                }
            }
            if let Some(order) = order {
                orig = reorder(orig, order, None);
            }
            Ok(orig)
        }
    }
}

/// Orders items as listed in `$setElementOrder`, keeping unlisted ones after.
fn reorder(list: Vec<Value>, order: &[Value], merge_key: Option<&str>) -> Vec<Value> {
    let ident = |v: &Value| -> Value {
        match merge_key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut out = Vec::with_capacity(list.len());
    let mut rest = list;
    for o in order {
        let want = match merge_key {
            Some(k) => o.get(k).cloned().unwrap_or(Value::Null),
            None => o.clone(),
        };
        if let Some(i) = rest.iter().position(|x| ident(x) == want) {
            out.push(rest.remove(i));
        }
    }
    out.extend(rest);
    out
}

fn strip_directives(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|k, _| {
        !(k == DIRECTIVE
            || k == RETAIN
            || k.starts_with(ORDER_PREFIX)
            || k.starts_with(DELETE_PRIMITIVE_PREFIX))
    });
    for v in m.values_mut() {
        *v = strip_value(std::mem::take(v));
    }
    m
}

fn strip_value(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m)),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_value).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::schema::Schema;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_directives() {
        let s = Schema::builtin("io.k8s.api.apps.v1.Deployment");
        let orig = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
            {"name": "b", "$patch": "delete"}
        ]}}}});
        let out = apply(&orig, &patch, s.node()).unwrap();
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().unwrap().len(), 1);
        assert_eq!(cs[0]["image"], "a:2");
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let s = Schema::builtin("io.k8s.api.core.v1.ConfigMap");
        let orig = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = apply(&orig, &json!({"metadata": {"finalizers": ["c"]}}), s.node()).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = apply(
            &out,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            s.node(),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn retain_keys_drops_other_strategy_fields() {
        let s = Schema::builtin("io.k8s.api.apps.v1.Deployment");
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = apply(&orig, &patch, s.node()).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }
}
