//! Server-side controllers a real control plane runs: garbage collection by ownerReferences
//! (background, foreground, orphan), namespace cleanup, and CRD instance cleanup.

use serde_json::Value;

use crate::kube::engine::{self, DeleteOpts, CRD_FINALIZER};
use crate::kube::meta;
use crate::kube::registry::ResourceDef;
use crate::kube::store::State;

fn owner_exists(st: &State, dependent_ns: &str, owner: &Value) -> bool {
    let api_version = owner
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let kind = owner.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    let name = owner.get("name").and_then(|v| v.as_str()).unwrap_or("");
    let uid = owner.get("uid").and_then(|v| v.as_str()).unwrap_or("");
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let Some(def) = st.registry.by_kind(group, version, kind) else {
        return false;
    };
    let ns = if def.namespaced { dependent_ns } else { "" };
    st.get(&def.storage, ns, name)
        .is_some_and(|o| meta::uid(&o) == Some(uid))
}

fn def_for(st: &State, storage: &str) -> Option<ResourceDef> {
    st.registry.storage_def(storage).map(|d| (*d).clone())
}

/// Removes one finalizer; deletes the object when it was the last thing holding it.
fn drop_finalizer(st: &mut State, def: &ResourceDef, ns: &str, name: &str, fin: &str) {
    let Some(obj) = st.get(&def.storage, ns, name) else {
        return;
    };
    let mut o = (*obj).clone();
    let mut f = meta::finalizers(&o);
    let before = f.len();
    f.retain(|x| x != fin);
    if f.len() == before {
        return;
    }
    meta::set_finalizers(&mut o, &f);
    let ns_blocked = def.builtin
        && def.kind == "Namespace"
        && meta::get_path(&o, "spec.finalizers")
            .and_then(|x| x.as_array())
            .is_some_and(|a| !a.is_empty());
    if f.is_empty() && meta::deletion_timestamp(&o).is_some() && !ns_blocked {
        st.put(&def.storage, o);
        if let Some(gone) = st.remove(&def.storage, ns, name) {
            engine::after_remove(st, def, &gone);
        }
    } else {
        st.put(&def.storage, o);
    }
}

fn delete_background(st: &mut State, storage: &str, ns: &str, name: &str) {
    let Some(def) = def_for(st, storage) else {
        return;
    };
    let nsopt = if def.namespaced { Some(ns) } else { None };
    let _ = engine::delete(st, &def, nsopt, name, &DeleteOpts::default());
}

/// Runs one pass of every controller; returns true if anything changed.
pub fn reconcile(st: &mut State) -> bool {
    let start_rv = st.current_rv();
    // Dependents of removed owners.
    let mut guard = 0;
    while let Some(uid) = st.gc_queue.pop() {
        guard += 1;
        if guard > 100_000 {
            break;
        }
        for (storage, ns, name) in st.dependents(&uid) {
            let Some(obj) = st.get(&storage, &ns, &name) else {
                continue;
            };
            let refs = meta::owner_refs(&obj);
            let alive: Vec<Value> = refs
                .iter()
                .filter(|r| owner_exists(st, &ns, r))
                .cloned()
                .collect();
            if alive.is_empty() {
                delete_background(st, &storage, &ns, &name);
            } else if alive.len() != refs.len() {
                let mut o = (*obj).clone();
                meta::metadata_mut(&mut o).insert("ownerReferences".into(), Value::Array(alive));
                st.put(&storage, o);
            }
        }
    }
    // Objects whose deletion waits on us.
    let pending: Vec<(String, String, String)> = st.pending.iter().cloned().collect();
    for (storage, ns, name) in pending {
        let Some(obj) = st.get(&storage, &ns, &name) else {
            st.pending.remove(&(storage, ns, name));
            continue;
        };
        if meta::deletion_timestamp(&obj).is_none() {
            st.pending.remove(&(storage, ns, name));
            continue;
        }
        let Some(def) = def_for(st, &storage) else {
            continue;
        };
        let uid = meta::uid(&obj).unwrap_or("").to_string();
        let fins = meta::finalizers(&obj);
        if fins.iter().any(|f| f == "orphan") {
            for (s, dns, dname) in st.dependents(&uid) {
                if let Some(d) = st.get(&s, &dns, &dname) {
                    let mut o = (*d).clone();
                    let refs: Vec<Value> = meta::owner_refs(&o)
                        .into_iter()
                        .filter(|r| r.get("uid").and_then(|u| u.as_str()) != Some(uid.as_str()))
                        .collect();
                    let md = meta::metadata_mut(&mut o);
                    if refs.is_empty() {
                        md.remove("ownerReferences");
                    } else {
                        md.insert("ownerReferences".into(), Value::Array(refs));
                    }
                    st.put(&s, o);
                }
            }
            drop_finalizer(st, &def, &ns, &name, "orphan");
            continue;
        }
        if fins.iter().any(|f| f == "foregroundDeletion") {
            let deps = st.dependents(&uid);
            let mut blocking = false;
            for (s, dns, dname) in &deps {
                let Some(d) = st.get(s, dns, dname) else {
                    continue;
                };
                if meta::deletion_timestamp(&d).is_none() {
                    delete_background(st, s, dns, dname);
                }
                let still = st.get(s, dns, dname);
                if let Some(d) = still {
                    let blocks = meta::owner_refs(&d).iter().any(|r| {
                        r.get("uid").and_then(|u| u.as_str()) == Some(uid.as_str())
                            && r.get("blockOwnerDeletion").and_then(|b| b.as_bool()) == Some(true)
                    });
                    blocking |= blocks;
                }
            }
            if !blocking {
                drop_finalizer(st, &def, &ns, &name, "foregroundDeletion");
            }
            continue;
        }
        if def.builtin && def.kind == "Namespace" {
            let mut remaining = 0;
            for s in st.storages() {
                let Some(d) = def_for(st, &s) else { continue };
                if !d.namespaced {
                    continue;
                }
                for o in st.list(&s, Some(&name)) {
                    remaining += 1;
                    if meta::deletion_timestamp(&o).is_none() {
                        delete_background(st, &s, &name, meta::name(&o));
                    }
                }
            }
            if remaining == 0 {
                let mut o = (*obj).clone();
                if let Some(f) = o.get_mut("spec").and_then(|s| s.get_mut("finalizers")) {
                    *f = Value::Array(Vec::new());
                }
                if meta::finalizers(&o).is_empty() {
                    st.put(&storage, o);
                    st.remove(&storage, "", &name);
                    st.pending.remove(&(storage, ns, name));
                } else {
                    st.put(&storage, o);
                }
            }
            continue;
        }
        let crd_cleanup = def.builtin
            && def.kind == "CustomResourceDefinition"
            && fins.iter().any(|f| f == CRD_FINALIZER);
        if !crd_cleanup {
            // Only client-owned finalizers hold it: nothing for the server to do.
            st.pending.remove(&(storage, ns, name));
            continue;
        }
        {
            let group = meta::get_path(&obj, "spec.group")
                .and_then(|g| g.as_str())
                .unwrap_or("");
            let plural = meta::get_path(&obj, "spec.names.plural")
                .and_then(|g| g.as_str())
                .unwrap_or("");
            let cr_storage = format!("{group}/{plural}");
            let items = st.list(&cr_storage, None);
            for o in &items {
                if meta::deletion_timestamp(o).is_none() {
                    delete_background(st, &cr_storage, meta::namespace(o), meta::name(o));
                }
            }
            if st.count(&cr_storage) == 0 {
                drop_finalizer(st, &def, &ns, &name, CRD_FINALIZER);
            }
            continue;
        }
    }
    st.current_rv() != start_rv
}
