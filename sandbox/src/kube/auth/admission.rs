//! Authorization checks that need the object, run inside a write (after defaults, before
//! storing): a create hidden in an apply or update of a missing object needs `create`, and the
//! OwnerReferencesPermissionEnforcement admission plugin.

use serde_json::Value;

use super::{rbac, Attributes, UserInfo};
use crate::kube::error::{ApiError, GroupResource};
use crate::kube::meta;
use crate::kube::registry::ResourceDef;
use crate::kube::store::State;

fn forbidden(def: &ResourceDef, name: &str, why: String) -> ApiError {
    ApiError::forbidden(&GroupResource::new(&def.group, &def.plural), name, &why)
}

fn blocking(r: &Value) -> bool {
    r.get("blockOwnerDeletion").and_then(|b| b.as_bool()) == Some(true)
}

/// Owner references with `blockOwnerDeletion: true` that were not blocking before.
fn new_blocking_refs(old: Option<&Value>, new: &Value) -> Vec<Value> {
    let before = old.map(meta::owner_refs).unwrap_or_default();
    meta::owner_refs(new)
        .into_iter()
        .filter(blocking)
        .filter(|r| {
            !before
                .iter()
                .any(|b| b.get("uid") == r.get("uid") && blocking(b))
        })
        .collect()
}

/// Runs the checks for `user` writing `new` (over `old`, None on create) through `def`;
/// each check made goes to `made` with its answer.
pub fn check(
    st: &State,
    user: &UserInfo,
    def: &ResourceDef,
    old: Option<&Value>,
    new: &Value,
    made: &mut Vec<(Attributes, bool)>,
) -> Result<(), ApiError> {
    let mut allowed = |a: &Attributes| {
        let ok = rbac::authorize(st, user, a).allowed;
        made.push((a.clone(), ok));
        ok
    };
    let ns = meta::namespace(new);
    let ns = (!ns.is_empty()).then_some(ns);
    let name = meta::name(new);
    if old.is_none() {
        // POST was authorized as create already; an apply or PUT that creates was authorized
        // as patch or update, and the apiserver asks for create as well.
        let a = Attributes::resource("create", &def.group, &def.plural, ns, Some(name));
        if !allowed(&a) {
            return Err(a.forbidden(user));
        }
    }
    let refs_changed = old.map(meta::owner_refs).unwrap_or_default() != meta::owner_refs(new);
    if !refs_changed {
        return Ok(());
    }
    if old.is_some() {
        let a = Attributes::resource("delete", &def.group, &def.plural, ns, Some(name));
        if !allowed(&a) {
            return Err(forbidden(
                def,
                name,
                "cannot set an ownerRef on a resource you can't delete: , <nil>".into(),
            ));
        }
    }
    for r in new_blocking_refs(old, new) {
        let api_version = r.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
        let kind = r.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let Some(owner) = st.registry.by_kind(group, version, kind) else {
            return Err(forbidden(
                def,
                name,
                format!(
                    "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion {api_version} Kind {kind}: no matches for kind {kind:?} in version {api_version:?}"
                ),
            ));
        };
        let owner_name = r.get("name").and_then(|v| v.as_str()).unwrap_or("");
        // The owner is in the object's namespace (or cluster-scoped): the plugin authorizes in
        // the object's namespace either way.
        let a = Attributes::resource("update", &owner.group, &owner.plural, ns, Some(owner_name))
            .with_subresource("finalizers");
        if !allowed(&a) {
            return Err(forbidden(
                def,
                name,
                "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>".into(),
            ));
        }
    }
    Ok(())
}
