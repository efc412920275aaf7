//! `metadata.managedFields` bookkeeping and server-side apply (merge, conflicts, removal of
//! fields a manager stopped applying).

use serde_json::{json, Value};

use crate::kube::meta;
use crate::kube::patch::fieldset::{
    changed_set, item_key_with, path_string, remove_at, set_from_object, value_at, FieldSet,
};
use crate::kube::schema::{ListType, Node};

/// One managedFields entry with its parsed field set.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub set: FieldSet,
}

impl Entry {
    fn same_owner(&self, manager: &str, op: &str, sub: &str) -> bool {
        self.manager == manager && self.operation == op && self.subresource == sub
    }

    fn to_value(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.set.to_fields_v1(),
        });
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        v
    }

    /// How conflict messages name a manager.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

pub fn entries(obj: &Value) -> Vec<Entry> {
    meta::metadata(obj)
        .and_then(|m| m.get("managedFields"))
        .and_then(|m| m.as_array())
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e
                        .get("manager")
                        .and_then(|x| x.as_str())
                        .unwrap_or("")
                        .to_string(),
                    operation: e
                        .get("operation")
                        .and_then(|x| x.as_str())
                        .unwrap_or("Update")
                        .to_string(),
                    api_version: e
                        .get("apiVersion")
                        .and_then(|x| x.as_str())
                        .unwrap_or("")
                        .to_string(),
                    time: e
                        .get("time")
                        .and_then(|x| x.as_str())
                        .unwrap_or("")
                        .to_string(),
                    subresource: e
                        .get("subresource")
                        .and_then(|x| x.as_str())
                        .unwrap_or("")
                        .to_string(),
                    set: FieldSet::from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn store_entries(obj: &mut Value, list: &[Entry]) {
    let vals: Vec<Value> = list
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| e.to_value())
        .collect();
    let md = meta::metadata_mut(obj);
    if vals.is_empty() {
        md.remove("managedFields");
    } else {
        md.insert("managedFields".into(), Value::Array(vals));
    }
}

/// Which part of an object a write through a given endpoint owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Main resource of a kind without status subresource: everything.
    All,
    /// Main resource of a kind with status subresource: all but status.
    NoStatus,
    /// The status subresource: status only.
    StatusOnly,
}

/// The trackable part of an object: no type meta, no server-set metadata.
pub fn trackable(obj: &Value, scope: Scope) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        match scope {
            Scope::All => {}
            Scope::NoStatus => {
                m.remove("status");
            }
            Scope::StatusOnly => m.retain(|k, _| k == "status"),
        }
        if let Some(md) = m.get_mut("metadata").and_then(|x| x.as_object_mut()) {
            for k in [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
                "generateName",
            ] {
                md.remove(k);
            }
            if md.is_empty() {
                m.remove("metadata");
            }
        }
    }
    v
}

/// Records a non-apply write by `manager`: changed fields move to its Update entry.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
    api_version: &str,
    scope: Scope,
    node: Node,
) {
    // A request that edits managedFields itself sets the baseline; an empty list edits
    // nothing (so that clients unaware of the field never strip it: `[{}]` clears it).
    let base = match (
        old,
        meta::metadata(new)
            .and_then(|m| m.get("managedFields"))
            .filter(|m| m.as_array().is_none_or(|a| !a.is_empty())),
    ) {
        (Some(o), Some(nm))
            if meta::metadata(o).and_then(|m| m.get("managedFields")) != Some(nm) =>
        {
            entries(new)
        }
        (None, Some(_)) => entries(new),
        (Some(o), _) => entries(o),
        (None, None) => Vec::new(),
    };
    let old_t = old.map(|o| trackable(o, scope));
    let new_t = trackable(new, scope);
    let mut changed = changed_set(old_t.as_ref(), &new_t, node);
    changed.member = false;
    let mut list = base;
    if !changed.is_empty() {
        for e in list.iter_mut() {
            if !e.same_owner(manager, "Update", subresource) {
                e.set = e.set.minus(&changed);
            }
        }
        let now = meta::now_rfc3339();
        match list
            .iter_mut()
            .find(|e| e.same_owner(manager, "Update", subresource))
        {
            Some(e) => {
                e.set.union(&changed);
                e.time = now;
                e.api_version = api_version.to_string();
            }
            None => list.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now,
                subresource: subresource.to_string(),
                set: changed,
            }),
        }
    }
    let full_t = trackable(new, Scope::All);
    for e in list.iter_mut() {
        e.set.retain_existing(&full_t);
    }
    store_entries(new, &list);
}

/// An ownership conflict found by apply.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

/// Merges an applied configuration into the live object per the schema's list/map types.
pub fn merge_applied(live: &Value, applied: &Value, node: Node) -> Value {
    match (live, applied) {
        (Value::Object(lm), Value::Object(am)) if !node.map_atomic() => {
            let mut out = lm.clone();
            for (k, av) in am {
                if av.is_null() {
                    out.remove(k);
                    continue;
                }
                let cn = node.field(k).unwrap_or_else(|| Node::none(node.comps()));
                let merged = match lm.get(k) {
                    Some(lv) => merge_applied(lv, av, cn),
                    None => av.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(la), Value::Array(aa)) => match node.list_type() {
            ListType::Map(keys) => {
                let items = node.items();
                let key_of = |v: &Value| item_key_with(v, &keys, items);
                let mut out = la.clone();
                for ai in aa {
                    let k = key_of(ai);
                    match out.iter_mut().find(|li| key_of(li) == k) {
                        Some(li) => *li = merge_applied(li, ai, items),
                        None => out.push(ai.clone()),
                    }
                }
                Value::Array(out)
            }
            ListType::Set => {
                let mut out = la.clone();
                for ai in aa {
                    if !out.contains(ai) {
                        out.push(ai.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Atomic => applied.clone(),
        },
        _ => applied.clone(),
    }
}

/// Server-side apply of `applied` (already stripped of server fields) by `manager` onto `live`.
/// Returns the new object (managedFields updated) or the conflicts.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    subresource: &str,
    api_version: &str,
    force: bool,
    scope: Scope,
    node: Node,
) -> Result<Value, Vec<Conflict>> {
    let applied_t = trackable(applied, scope);
    let mut new_set = set_from_object(&applied_t, node);
    new_set.member = false;
    let mut list = entries(live);
    let live_t = trackable(live, Scope::All);
    let mut conflicts = Vec::new();
    let mut forced: Vec<(usize, Vec<String>)> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        if e.same_owner(manager, "Apply", subresource) {
            continue;
        }
        for p in e.set.intersect(&new_set).members() {
            let lv = value_at(&live_t, &p);
            let av = value_at(&applied_t, &p);
            // List items and maps are compared by their members; only leaf values conflict.
            let leaf = av.is_some_and(|v| v.as_object().is_none_or(|o| o.is_empty()));
            if leaf && lv != av {
                conflicts.push(Conflict {
                    manager: e.describe(),
                    path: path_string(&p),
                });
                forced.push((i, p));
            }
        }
    }
    if !conflicts.is_empty()
        && !force
        && !allowed_by_last_applied(live, &live_t, manager, &forced, scope)
    {
        return Err(conflicts);
    }
    for (i, p) in forced {
        list[i].set.remove_path(&p);
    }
    let mut merged = merge_applied(live, applied, node);
    // Fields this manager applied before but not now are removed unless someone else owns them.
    if let Some(prev) = list
        .iter()
        .find(|e| e.same_owner(manager, "Apply", subresource))
    {
        let dropped = prev.set.minus(&new_set);
        for p in dropped.members() {
            let owned_elsewhere = list
                .iter()
                .filter(|e| !e.same_owner(manager, "Apply", subresource))
                .any(|e| e.set.touches(&p))
                || new_set.touches(&p);
            if !owned_elsewhere && !p.is_empty() {
                remove_at(&mut merged, &p);
            }
        }
    }
    let now = meta::now_rfc3339();
    match list
        .iter_mut()
        .find(|e| e.same_owner(manager, "Apply", subresource))
    {
        Some(e) => {
            e.set = new_set;
            e.time = now;
            e.api_version = api_version.to_string();
        }
        None => list.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: now,
            subresource: subresource.to_string(),
            set: new_set,
        }),
    }
    // Values this apply changed that others held through Update operations move to the applier.
    let mut changed = changed_set(Some(&live_t), &trackable(&merged, Scope::All), node);
    changed.member = false;
    for e in list.iter_mut() {
        if !e.same_owner(manager, "Apply", subresource) && e.operation == "Update" {
            e.set = e.set.minus(&changed);
        }
    }
    let full_t = trackable(&merged, Scope::All);
    for e in list.iter_mut() {
        e.set.retain_existing(&full_t);
    }
    store_entries(&mut merged, &list);
    Ok(merged)
}

/// The apiserver lets `kubectl apply --server-side` take over fields last applied client-side
/// (recorded in the last-applied annotation with the live value) without a conflict.
fn allowed_by_last_applied(
    live: &Value,
    live_t: &Value,
    manager: &str,
    conflicts: &[(usize, Vec<String>)],
    scope: Scope,
) -> bool {
    if manager != "kubectl" {
        return false;
    }
    let Some(la) = meta::metadata(live)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("kubectl.kubernetes.io/last-applied-configuration"))
        .and_then(|a| a.as_str())
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    else {
        return false;
    };
    let la_t = trackable(&la, scope);
    conflicts.iter().all(|(_, p)| {
        let lv = value_at(live_t, p);
        lv.is_some() && lv == value_at(&la_t, p)
    })
}

/// The 409 message structured-merge-diff conflicts produce.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if conflicts.len() == 1 {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].manager, conflicts[0].path
        );
    }
    let mut by: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for c in conflicts {
        by.entry(&c.manager).or_default().push(&c.path);
    }
    let mut lines = Vec::new();
    for (m, paths) in by {
        lines.push(format!("conflicts with {m}:"));
        for p in paths {
            lines.push(format!("- {p}"));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

pub fn conflict_causes(conflicts: &[Conflict]) -> Vec<Value> {
    conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.path}))
        .collect()
}

/// Default manager name from a User-Agent (`kubectl/v1.35.2 (linux/amd64) ...` -> `kubectl`).
pub fn manager_from_user_agent(ua: &str) -> String {
    let first = ua.split('/').next().unwrap_or("").trim();
    if first.is_empty() {
        "unknown".into()
    } else {
        first.chars().take(128).collect()
    }
}
