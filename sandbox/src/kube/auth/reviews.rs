//! Create-only APIs that answer about the caller instead of storing anything:
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview (`can-i --list`),
//! SelfSubjectReview (`kubectl auth whoami`), and TokenRequest (`kubectl create token`).

use serde_json::{json, Value};

use super::{rbac, user_json, Attributes, Authenticator, UserInfo};
use crate::kube::error::{ApiError, ApiResult};
use crate::kube::store::State;

/// (group, version, kind, plural) of each review resource, for discovery.
pub const REVIEWS: &[(&str, &str, &str, &str)] = &[
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
    ),
    (
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
    ),
];

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(|s| s.as_str()).unwrap_or("")
}

fn echo(kind: &str, group: &str, body: &Value) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{group}/v1"),
        "metadata": {"creationTimestamp": null},
        "spec": body.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// Serves a POST to one of [`REVIEWS`]; `user` is None when authorization is off (everything
/// is allowed, as with the AlwaysAllow authorizer).
pub fn review(
    st: &State,
    user: Option<&UserInfo>,
    caller_token: &str,
    plural: &str,
    body: &Value,
) -> ApiResult<Value> {
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    match plural {
        "selfsubjectaccessreviews" => {
            let attrs = if let Some(r) = spec.get("resourceAttributes") {
                Attributes::resource(
                    str_at(r, "verb"),
                    str_at(r, "group"),
                    str_at(r, "resource"),
                    Some(str_at(r, "namespace")),
                    Some(str_at(r, "name")),
                )
                .with_subresource(str_at(r, "subresource"))
            } else if let Some(n) = spec.get("nonResourceAttributes") {
                Attributes::NonResource {
                    verb: str_at(n, "verb").into(),
                    path: str_at(n, "path").into(),
                }
            } else {
                return Err(ApiError::invalid(
                    "SelfSubjectAccessReview",
                    "authorization.k8s.io",
                    "",
                    &[crate::kube::error::FieldError::required(
                        "spec.resourceAttributes",
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    )],
                ));
            };
            let decision = match user {
                Some(u) => rbac::authorize(st, u, &attrs),
                None => rbac::Decision {
                    allowed: true,
                    reason: String::new(),
                },
            };
            let mut out = echo("SelfSubjectAccessReview", "authorization.k8s.io", body);
            out["status"] = json!({"allowed": decision.allowed});
            if !decision.reason.is_empty() {
                out["status"]["reason"] = json!(decision.reason);
            }
            Ok(out)
        }
        "selfsubjectrulesreviews" => {
            let ns = str_at(&spec, "namespace");
            let (resource, non_resource) = match user {
                Some(u) => rbac::rules_for(st, u, ns),
                None => (
                    vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
                    vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
                ),
            };
            let mut out = echo("SelfSubjectRulesReview", "authorization.k8s.io", body);
            out["status"] = json!({
                "resourceRules": resource,
                "nonResourceRules": non_resource,
                "incomplete": false,
            });
            Ok(out)
        }
        "selfsubjectreviews" => {
            let who = match user {
                Some(u) => user_json(u),
                None => {
                    json!({"username": if caller_token.is_empty() { "system:anonymous" } else { caller_token }})
                }
            };
            let mut out = echo("SelfSubjectReview", "authentication.k8s.io", body);
            out.as_object_mut().map(|o| o.remove("spec"));
            out["status"] = json!({"userInfo": who});
            Ok(out)
        }
        _ => Err(ApiError::no_route()),
    }
}

/// `POST .../serviceaccounts/{name}/token`: a TokenRequest answered with a minted token.
pub fn token_request(
    st: &State,
    auth: Option<&Authenticator>,
    ns: &str,
    name: &str,
    body: &Value,
) -> ApiResult<Value> {
    let token = match auth {
        Some(a) => a.mint(st, ns, name)?,
        None => {
            if st.get("/serviceaccounts", ns, name).is_none() {
                return Err(ApiError::not_found(
                    &crate::kube::error::GroupResource::new("", "serviceaccounts"),
                    name,
                ));
            }
            format!("system:serviceaccount:{ns}:{name}")
        }
    };
    let seconds = body
        .get("spec")
        .and_then(|s| s.get("expirationSeconds"))
        .and_then(|e| e.as_i64())
        .unwrap_or(3600);
    let expires = chrono::Utc::now() + chrono::Duration::seconds(seconds);
    let mut spec = body.get("spec").cloned().unwrap_or(json!({}));
    spec["expirationSeconds"] = json!(seconds);
    if spec.get("audiences").is_none() {
        spec["audiences"] = json!(["https://kubernetes.default.svc"]);
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    }))
}
