//! Field sets in the FieldsV1 trie format used by `metadata.managedFields`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::kube::schema::{ListType, Node};

/// A set of field paths. `member` says the path of this node itself is in the set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    pub member: bool,
    pub children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn from_fields_v1(v: &Value) -> Self {
        let mut fs = FieldSet::default();
        if let Some(m) = v.as_object() {
            for (k, c) in m {
                if k == "." {
                    fs.member = true;
                    continue;
                }
                let mut child = FieldSet::from_fields_v1(c);
                if c.as_object().is_some_and(|o| o.is_empty()) {
                    child.member = true;
                }
                fs.children.insert(k.clone(), child);
            }
        }
        fs
    }

    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            if c.is_empty() {
                continue;
            }
            m.insert(k.clone(), c.to_fields_v1());
        }
        Value::Object(m)
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(|c| c.is_empty())
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, c) in &other.children {
            self.children.entry(k.clone()).or_default().union(c);
        }
    }

    /// Paths of self that are not in other.
    pub fn minus(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.minus(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    pub fn intersect(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersect(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Member paths (sequences of FieldsV1 keys).
    pub fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    fn walk(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.walk(prefix, out);
            prefix.pop();
        }
    }

    /// Whether the set holds this path or anything below it.
    pub fn touches(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => !self.is_empty(),
            Some((h, rest)) => self.children.get(h).is_some_and(|c| c.touches(rest)),
        }
    }

    pub fn remove_path(&mut self, path: &[String]) {
        match path.split_first() {
            None => {
                self.member = false;
                self.children.clear();
            }
            Some((h, rest)) => {
                if let Some(c) = self.children.get_mut(h) {
                    c.remove_path(rest);
                    if c.is_empty() {
                        self.children.remove(h);
                    }
                }
            }
        }
    }

    pub fn insert_path(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((h, rest)) => self
                .children
                .entry(h.clone())
                .or_default()
                .insert_path(rest),
        }
    }

    /// Drops paths that no longer exist in `obj`.
    pub fn retain_existing(&mut self, obj: &Value) {
        let keys: Vec<String> = self.children.keys().cloned().collect();
        for k in keys {
            match resolve_key(obj, &k) {
                Some(child_obj) => {
                    let child_obj = child_obj.clone();
                    if let Some(c) = self.children.get_mut(&k) {
                        c.retain_existing(&child_obj);
                        if c.is_empty() {
                            self.children.remove(&k);
                        }
                    }
                }
                None => {
                    self.children.remove(&k);
                }
            }
        }
    }
}

fn key_matches(item: &Value, keys: &Map<String, Value>) -> bool {
    keys.iter().all(|(k, v)| item.get(k) == Some(v))
}

/// The child value a FieldsV1 key addresses.
pub fn resolve_key<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(f) = key.strip_prefix("f:") {
        return obj.get(f);
    }
    if let Some(k) = key.strip_prefix("k:") {
        let keys: Map<String, Value> = serde_json::from_str(k).ok()?;
        return obj.as_array()?.iter().find(|i| key_matches(i, &keys));
    }
    if let Some(v) = key.strip_prefix("v:") {
        let val: Value = serde_json::from_str(v).ok()?;
        return obj.as_array()?.iter().find(|i| **i == val);
    }
    if let Some(i) = key.strip_prefix("i:") {
        return obj.as_array()?.get(i.parse::<usize>().ok()?);
    }
    None
}

pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for k in path {
        cur = resolve_key(cur, k)?;
    }
    Some(cur)
}

/// Removes the value at `path` from `obj` (map key, list item by key or value).
pub fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for k in parent {
        let next = match resolve_key_mut(cur, k) {
            Some(n) => n,
            None => return,
        };
        cur = next;
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(keys), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        ) {
            a.retain(|i| !key_matches(i, &keys));
        }
    } else if let Some(v) = last.strip_prefix("v:") {
        if let (Ok(val), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut()) {
            a.retain(|i| *i != val);
        }
    }
}

fn resolve_key_mut<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    if let Some(f) = key.strip_prefix("f:") {
        return obj.get_mut(f);
    }
    if let Some(k) = key.strip_prefix("k:") {
        let keys: Map<String, Value> = serde_json::from_str(k).ok()?;
        return obj
            .as_array_mut()?
            .iter_mut()
            .find(|i| key_matches(i, &keys));
    }
    if let Some(v) = key.strip_prefix("v:") {
        let val: Value = serde_json::from_str(v).ok()?;
        return obj.as_array_mut()?.iter_mut().find(|i| **i == val);
    }
    None
}

/// `.spec.containers[name="x"].image`, as structured-merge-diff prints paths.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for k in path {
        if let Some(f) = k.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = k.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = k.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = k.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

/// `k:{...}` key of a list item; missing key fields take their schema default (`protocol: TCP`).
pub fn item_key_with(item: &Value, keys: &[String], items: Node) -> String {
    let m: Map<String, Value> = keys
        .iter()
        .filter_map(|k| {
            let v = item
                .get(k)
                .cloned()
                .or_else(|| items.field(k).and_then(|f| f.get("default").cloned()));
            v.map(|v| (k.clone(), v))
        })
        .collect();
    format!("k:{}", Value::Object(m))
}

/// The set of fields an object (or applied configuration) specifies.
pub fn set_from_object(v: &Value, node: Node) -> FieldSet {
    let mut fs = FieldSet::default();
    walk_value(v, node, &mut fs);
    fs
}

fn walk_value(v: &Value, node: Node, fs: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() && !node.map_atomic() => {
            for (k, cv) in m {
                let cn = node.field(k).unwrap_or_else(|| Node::none(node.comps()));
                let child = fs.children.entry(format!("f:{k}")).or_default();
                walk_child(cv, cn, child);
            }
        }
        Value::Array(a) if !a.is_empty() => match node.list_type() {
            ListType::Map(keys) => {
                let items = node.items();
                for item in a {
                    let child = fs
                        .children
                        .entry(item_key_with(item, &keys, items))
                        .or_default();
                    child.member = true;
                    walk_value(item, items, child);
                }
            }
            ListType::Set => {
                for item in a {
                    fs.children.entry(format!("v:{item}")).or_default().member = true;
                }
            }
            ListType::Atomic => fs.member = true,
        },
        _ => fs.member = true,
    }
}

fn walk_child(cv: &Value, cn: Node, child: &mut FieldSet) {
    match cv {
        Value::Object(m) if !m.is_empty() && !cn.map_atomic() => walk_value(cv, cn, child),
        Value::Array(a) if !a.is_empty() && cn.list_type() != ListType::Atomic => {
            walk_value(cv, cn, child)
        }
        _ => child.member = true,
    }
}

/// Fields changed (added or modified) from `old` to `new`; new containers count as members.
pub fn changed_set(old: Option<&Value>, new: &Value, node: Node) -> FieldSet {
    let mut fs = FieldSet::default();
    let empty = Value::Object(Default::default());
    diff_into(Some(old.unwrap_or(&empty)), new, node, &mut fs);
    fs
}

fn diff_into(old: Option<&Value>, new: &Value, node: Node, fs: &mut FieldSet) {
    if old == Some(new) {
        return;
    }
    match (old, new) {
        (Some(Value::Object(om)), Value::Object(nm)) if !node.map_atomic() => {
            for (k, nv) in nm {
                let cn = node.field(k).unwrap_or_else(|| Node::none(node.comps()));
                let mut child = FieldSet::default();
                match om.get(k) {
                    Some(ov) => diff_child(Some(ov), nv, cn, &mut child),
                    None => diff_child(None, nv, cn, &mut child),
                }
                if !child.is_empty() {
                    fs.children.insert(format!("f:{k}"), child);
                }
            }
        }
        (Some(Value::Array(oa)), Value::Array(na)) => match node.list_type() {
            ListType::Map(keys) => {
                let items = node.items();
                for item in na {
                    let key = item_key_with(item, &keys, items);
                    let prev = oa.iter().find(|o| item_key_with(o, &keys, items) == key);
                    let mut child = FieldSet::default();
                    if prev.is_none() {
                        child.member = true;
                    }
                    diff_into(prev, item, items, &mut child);
                    if prev.is_none() {
                        walk_value(item, items, &mut child);
                    }
                    if !child.is_empty() {
                        fs.children.insert(key, child);
                    }
                }
            }
            ListType::Set => {
                for item in na {
                    if !oa.contains(item) {
                        fs.children.entry(format!("v:{item}")).or_default().member = true;
                    }
                }
            }
            ListType::Atomic => fs.member = true,
        },
        (None, v) => {
            let granular = v.is_object() && !node.map_atomic()
                || v.is_array() && node.list_type() != ListType::Atomic;
            if granular
                && v.as_object().is_none_or(|o| !o.is_empty())
                && v.as_array().is_none_or(|a| !a.is_empty())
            {
                walk_value(v, node, fs);
                // Like structured-merge-diff: a new map (not a struct) is itself a member.
                fs.member = v.is_array() || node.additional().is_some() || !node.is_known();
            } else {
                fs.member = true;
            }
        }
        _ => fs.member = true,
    }
}

fn diff_child(old: Option<&Value>, nv: &Value, cn: Node, child: &mut FieldSet) {
    diff_into(old, nv, cn, child);
}
