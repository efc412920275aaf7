//! The RBAC authorizer over the stored Roles, ClusterRoles and bindings, and the ClusterRole
//! aggregation controller (`aggregationRule` → `rules`).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Attributes, UserInfo};
use crate::kube::meta;
use crate::kube::store::State;

const ROLES: &str = "rbac.authorization.k8s.io/roles";
const CLUSTER_ROLES: &str = "rbac.authorization.k8s.io/clusterroles";
const BINDINGS: &str = "rbac.authorization.k8s.io/rolebindings";
const CLUSTER_BINDINGS: &str = "rbac.authorization.k8s.io/clusterrolebindings";

/// The authorizer's answer, with the reason the apiserver gives for an allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default()
}

fn has(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// Whether one PolicyRule allows the request (`rbac/v1` `RuleAllows`).
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(rule.get("verbs"));
    match a {
        Attributes::Resource {
            verb,
            group,
            subresource,
            name,
            ..
        } => {
            if !has(&verbs, verb) || !has(&strings(rule.get("apiGroups")), group) {
                return false;
            }
            let combined = a.resource_path();
            let resources = strings(rule.get("resources"));
            let resource_ok = resources.iter().any(|r| {
                *r == "*"
                    || *r == combined
                    || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
            });
            let names = strings(rule.get("resourceNames"));
            resource_ok && (names.is_empty() || names.contains(&name.as_str()))
        }
        Attributes::NonResource { verb, path } => {
            has(&verbs, verb)
                && strings(rule.get("nonResourceURLs")).iter().any(|u| {
                    *u == "*"
                        || u == path
                        || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
                })
        }
    }
}

/// Whether a binding's subject is this user.
fn subject_matches(subject: &Value, user: &UserInfo) -> bool {
    let name = subject.get("name").and_then(|n| n.as_str()).unwrap_or("");
    match subject.get("kind").and_then(|k| k.as_str()) {
        Some("User") => user.name == name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject
                .get("namespace")
                .and_then(|n| n.as_str())
                .unwrap_or("");
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn binds(binding: &Value, user: &UserInfo) -> bool {
    binding
        .get("subjects")
        .and_then(|s| s.as_array())
        .is_some_and(|subs| subs.iter().any(|s| subject_matches(s, user)))
}

/// The role a binding refers to, if it exists; (kind, name, role).
fn role_of(st: &State, binding: &Value, ns: &str) -> Option<(String, String, Arc<Value>)> {
    let r = binding.get("roleRef")?;
    let kind = r.get("kind")?.as_str()?;
    let name = r.get("name")?.as_str()?;
    let role = match kind {
        "ClusterRole" => st.get(CLUSTER_ROLES, "", name)?,
        "Role" => st.get(ROLES, ns, name)?,
        _ => return None,
    };
    Some((kind.to_string(), name.to_string(), role))
}

fn rules(role: &Value) -> Vec<Value> {
    role.get("rules")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default()
}

/// Every (binding description, rules) that applies to `user` in `ns` ("" = cluster scope only).
fn applicable(st: &State, user: &UserInfo, ns: &str) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for b in st.list(CLUSTER_BINDINGS, None) {
        if binds(&b, user) {
            if let Some((kind, name, role)) = role_of(st, &b, "") {
                out.push((
                    format!("ClusterRoleBinding {:?} of {kind} {name:?}", meta::name(&b)),
                    rules(&role),
                ));
            }
        }
    }
    if !ns.is_empty() {
        for b in st.list(BINDINGS, Some(ns)) {
            if binds(&b, user) {
                if let Some((kind, name, role)) = role_of(st, &b, ns) {
                    out.push((
                        format!("RoleBinding \"{ns}/{}\" of {kind} {name:?}", meta::name(&b)),
                        rules(&role),
                    ));
                }
            }
        }
    }
    out
}

fn namespace_of(a: &Attributes) -> &str {
    match a {
        Attributes::Resource { namespace, .. } => namespace,
        Attributes::NonResource { .. } => "",
    }
}

/// The RBAC authorizer: allowed when any rule of any role bound to the user (cluster-wide, or in
/// the request's namespace) allows the request. `system:masters` is bound to `cluster-admin` by
/// the bootstrap policy, not special-cased here.
pub fn authorize(st: &State, user: &UserInfo, a: &Attributes) -> Decision {
    for (via, rules) in applicable(st, user, namespace_of(a)) {
        if rules.iter().any(|r| rule_allows(r, a)) {
            let subject = if user.name.starts_with("system:serviceaccount:") {
                "ServiceAccount"
            } else {
                "User"
            };
            return Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {via} to {subject} {:?}", user.name),
            };
        }
    }
    Decision {
        allowed: false,
        reason: String::new(),
    }
}

/// Rules the user has in `ns`, for SelfSubjectRulesReview: (resource rules, non-resource rules).
pub fn rules_for(st: &State, user: &UserInfo, ns: &str) -> (Vec<Value>, Vec<Value>) {
    let mut resource = Vec::new();
    let mut non_resource = Vec::new();
    for (_, rules) in applicable(st, user, ns) {
        for r in rules {
            if r.get("nonResourceURLs").is_some() {
                non_resource
                    .push(json!({"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}));
            } else {
                let mut out = json!({
                    "verbs": r.get("verbs").cloned().unwrap_or(json!([])),
                    "apiGroups": r.get("apiGroups").cloned().unwrap_or(json!([])),
                    "resources": r.get("resources").cloned().unwrap_or(json!([])),
                });
                if let Some(n) = r.get("resourceNames") {
                    out["resourceNames"] = n.clone();
                }
                resource.push(out);
            }
        }
    }
    (resource, non_resource)
}

/// The aggregation controller: each ClusterRole with an `aggregationRule` gets the rules of every
/// ClusterRole its selectors match. Runs after any ClusterRole changes, until nothing moves
/// (aggregated roles may themselves be aggregated, e.g. `edit` into `admin`).
pub fn aggregate(st: &mut State) {
    for _ in 0..8 {
        let roles = st.list(CLUSTER_ROLES, None);
        let mut changed = false;
        for role in &roles {
            let Some(selectors) = role
                .get("aggregationRule")
                .and_then(|a| a.get("clusterRoleSelectors"))
                .and_then(|s| s.as_array())
            else {
                continue;
            };
            let mut union: Vec<Value> = Vec::new();
            for other in &roles {
                if meta::name(other) == meta::name(role) {
                    continue;
                }
                let labels = other.get("metadata").and_then(|m| m.get("labels"));
                if selectors
                    .iter()
                    .any(|s| crate::kube::builtin::selector_matches(s, labels))
                {
                    for r in rules(other) {
                        if !union.contains(&r) {
                            union.push(r);
                        }
                    }
                }
            }
            if rules(role) != union {
                let mut updated = (**role).clone();
                updated["rules"] = Value::Array(union);
                st.put(CLUSTER_ROLES, updated);
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::resource(verb, group, resource, Some("shop"), Some(name)).with_subresource(sub)
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let rule = json!({"apiGroups": ["tokenrotator.io"], "resources": ["tokenrotations", "tokenrotations/status"], "verbs": ["get", "patch"]});
        assert!(rule_allows(
            &rule,
            &res("patch", "tokenrotator.io", "tokenrotations", "status", "a")
        ));
        assert!(!rule_allows(
            &rule,
            &res("update", "tokenrotator.io", "tokenrotations", "status", "a")
        ));
        assert!(!rule_allows(
            &rule,
            &res(
                "patch",
                "tokenrotator.io",
                "tokenrotations",
                "finalizers",
                "a"
            )
        ));
        assert!(!rule_allows(
            &rule,
            &res("get", "", "tokenrotations", "", "a")
        ));
        let star_sub = json!({"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["*"]});
        assert!(rule_allows(
            &star_sub,
            &res("update", "apps", "deployments", "scale", "a")
        ));
        assert!(!rule_allows(
            &star_sub,
            &res("update", "apps", "deployments", "", "a")
        ));
        let named = json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["hook"], "verbs": ["get"]});
        assert!(rule_allows(&named, &res("get", "", "secrets", "", "hook")));
        assert!(!rule_allows(
            &named,
            &res("get", "", "secrets", "", "other")
        ));
        assert!(!rule_allows(&named, &res("list", "", "secrets", "", "")));
        let urls = json!({"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]});
        let path = |p: &str| Attributes::NonResource {
            verb: "get".into(),
            path: p.into(),
        };
        assert!(rule_allows(&urls, &path("/healthz")));
        assert!(rule_allows(&urls, &path("/apis/apps/v1")));
        assert!(!rule_allows(&urls, &path("/metrics")));
    }
}
