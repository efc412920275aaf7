//! What a request asks to do, as the authorizer sees it (apiserver's `RequestInfoFactory`).

use http::Method;
use serde_json::json;

use super::{forbidden_status, UserInfo};
use crate::kube::error::ApiError;

/// A request's authorization attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

/// Subresources of a namespace that are not a resource inside it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

impl Attributes {
    pub fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        Attributes::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.unwrap_or("").into(),
            name: name.unwrap_or("").into(),
        }
    }

    pub fn with_subresource(mut self, sub: &str) -> Self {
        if let Attributes::Resource { subresource, .. } = &mut self {
            *subresource = sub.into();
        }
        self
    }

    pub fn verb(&self) -> &str {
        match self {
            Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
        }
    }

    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn resource_path(&self) -> String {
        match self {
            Attributes::Resource {
                resource,
                subresource,
                ..
            } if !subresource.is_empty() => format!("{resource}/{subresource}"),
            Attributes::Resource { resource, .. } => resource.clone(),
            Attributes::NonResource { path, .. } => path.clone(),
        }
    }

    /// Parses a request as the apiserver does: `/api/v1/...` and `/apis/{g}/{v}/...` with a
    /// resource are resource requests; everything else (discovery, `/healthz`, `/openapi`) is a
    /// non-resource request.
    pub fn from_request(method: &Method, path: &str, query: &crate::kube::http::Query) -> Self {
        let lower = method.as_str().to_ascii_lowercase();
        let non_resource = || Attributes::NonResource {
            verb: lower.clone(),
            path: path.to_string(),
        };
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, mut rest): (&str, &[&str]) = match parts.as_slice() {
            ["api", _v, rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", g, _v, rest @ ..] if !rest.is_empty() => (g, rest),
            _ => return non_resource(),
        };
        let mut verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .to_string();
        if rest.first() == Some(&"watch") {
            verb = "watch".into();
            rest = &rest[1..];
        }
        let mut namespace = "";
        if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            namespace = rest[1];
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest = &rest[2..];
            }
        }
        let resource = rest.first().copied().unwrap_or("");
        let mut name = rest.get(1).copied().unwrap_or("").to_string();
        let subresource = rest.get(2).copied().unwrap_or("");
        if name.is_empty() && verb == "get" {
            let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
            verb = if watch { "watch" } else { "list" }.into();
        }
        if name.is_empty() && verb == "delete" {
            verb = "deletecollection".into();
        }
        if verb == "list" || verb == "watch" {
            // A list or watch of one object by field selector is authorized for that name.
            if let Some(n) = query.get("fieldSelector").and_then(|s| exact_name(s)) {
                name = n;
            }
        }
        Attributes::Resource {
            verb,
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name,
        }
    }

    /// 403 as the apiserver words it: `secrets "x" is forbidden: User "u" cannot get resource
    /// "secrets" in API group "" in the namespace "ns"`.
    pub fn forbidden(&self, user: &UserInfo) -> ApiError {
        self.forbidden_because(user, "")
    }

    pub fn forbidden_because(&self, user: &UserInfo, reason: &str) -> ApiError {
        let mut why = match self {
            Attributes::NonResource { verb, path } => {
                format!("User {:?} cannot {verb} path {path:?}", user.name)
            }
            Attributes::Resource {
                verb,
                group,
                namespace,
                ..
            } => {
                let scope = if namespace.is_empty() {
                    "at the cluster scope".to_string()
                } else {
                    format!("in the namespace {namespace:?}")
                };
                format!(
                    "User {:?} cannot {verb} resource {:?} in API group {group:?} {scope}",
                    user.name,
                    self.resource_path()
                )
            }
        };
        if !reason.is_empty() {
            why = format!("{why}: {reason}");
        }
        match self {
            Attributes::NonResource { .. } => {
                forbidden_status(format!("forbidden: {why}"), json!({}))
            }
            Attributes::Resource {
                group,
                resource,
                name,
                ..
            } => {
                let gr = crate::kube::error::GroupResource::new(group, resource);
                let message = if name.is_empty() {
                    format!("{gr} is forbidden: {why}")
                } else {
                    format!("{gr} {name:?} is forbidden: {why}")
                };
                let mut details = json!({"kind": resource});
                if !name.is_empty() {
                    details["name"] = json!(name);
                }
                if !group.is_empty() {
                    details["group"] = json!(group);
                }
                forbidden_status(message, details)
            }
        }
    }
}

/// `metadata.name=x` (or `==`) as the only requirement on the name in a field selector.
fn exact_name(sel: &str) -> Option<String> {
    sel.split(',').find_map(|req| {
        let req = req.trim();
        let v = req
            .strip_prefix("metadata.name==")
            .or_else(|| req.strip_prefix("metadata.name="))?;
        Some(v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, q: &[(&str, &str)]) -> Attributes {
        let q = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Attributes::from_request(&method, path, &q)
    }

    #[test]
    fn verbs_scopes_and_subresources_follow_the_apiserver() {
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces/shop/secrets", &[]),
            Attributes::resource("list", "", "secrets", Some("shop"), None)
        );
        assert_eq!(
            attrs(
                Method::GET,
                "/api/v1/namespaces/shop/secrets",
                &[("watch", "true")]
            ),
            Attributes::resource("watch", "", "secrets", Some("shop"), None)
        );
        assert_eq!(
            attrs(
                Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/d/leases",
                &[("fieldSelector", "metadata.name=lead")]
            ),
            Attributes::resource(
                "list",
                "coordination.k8s.io",
                "leases",
                Some("d"),
                Some("lead")
            )
        );
        assert_eq!(
            attrs(
                Method::PATCH,
                "/apis/tokenrotator.io/v1alpha1/namespaces/shop/tokenrotations/a/status",
                &[]
            ),
            Attributes::resource(
                "patch",
                "tokenrotator.io",
                "tokenrotations",
                Some("shop"),
                Some("a")
            )
            .with_subresource("status")
        );
        assert_eq!(
            attrs(Method::DELETE, "/api/v1/namespaces/shop/pods", &[]),
            Attributes::resource("deletecollection", "", "pods", Some("shop"), None)
        );
        // A namespace itself, and its finalize subresource.
        assert_eq!(
            attrs(Method::PUT, "/api/v1/namespaces/shop/finalize", &[]),
            Attributes::resource("update", "", "namespaces", Some("shop"), Some("shop"))
                .with_subresource("finalize")
        );
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces", &[]),
            Attributes::resource("list", "", "namespaces", None, None)
        );
        assert_eq!(
            attrs(Method::GET, "/apis/apps/v1", &[]),
            Attributes::NonResource {
                verb: "get".into(),
                path: "/apis/apps/v1".into()
            }
        );
    }

    #[test]
    fn forbidden_messages_read_like_the_apiserver() {
        let u = UserInfo::service_account("ops", "token-rotator", "");
        let a = Attributes::resource("list", "", "secrets", Some("shop"), None);
        let e = a.forbidden(&u);
        assert_eq!(
            e.message,
            "secrets is forbidden: User \"system:serviceaccount:ops:token-rotator\" cannot list resource \"secrets\" in API group \"\" in the namespace \"shop\""
        );
        let a = Attributes::resource("patch", "apps", "deployments", None, Some("api"));
        assert_eq!(
            a.forbidden(&u).message,
            "deployments.apps \"api\" is forbidden: User \"system:serviceaccount:ops:token-rotator\" cannot patch resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
        let a = Attributes::NonResource {
            verb: "get".into(),
            path: "/healthz".into(),
        };
        assert_eq!(
            a.forbidden(&UserInfo::anonymous()).message,
            "forbidden: User \"system:anonymous\" cannot get path \"/healthz\""
        );
    }
}
