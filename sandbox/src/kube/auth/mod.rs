//! Authentication and authorization, when the server is started with [`AuthOptions`]: bearer
//! tokens from a static list (kube-apiserver's `--token-auth-file`) and minted ServiceAccount
//! tokens, impersonation (`kubectl --as`), the RBAC authorizer, the
//! OwnerReferencesPermissionEnforcement admission rule, and the self-review APIs behind
//! `kubectl auth can-i` and `kubectl auth whoami`. Without options every request is allowed, as
//! before, and the bearer token itself names the caller in the request log.

pub mod admission;
mod attributes;
pub mod bootstrap;
pub mod rbac;
pub mod reviews;

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;
use serde_json::{json, Value};

pub use attributes::Attributes;

use crate::kube::error::ApiError;
use crate::kube::store::State;

/// The token of the bootstrap administrator (group `system:masters`) that
/// [`ApiServer::kubeconfig_yaml`](crate::kube::ApiServer::kubeconfig_yaml) carries when
/// authorization is on.
pub const ADMIN_TOKEN: &str = "sandbox-admin-token";
pub const ADMIN_USER: &str = "sandbox-admin";

/// Who sent a request, after authentication and impersonation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// The identity of a ServiceAccount's tokens.
    pub fn service_account(ns: &str, name: &str, uid: &str) -> Self {
        UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            uid: uid.into(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// (namespace, name) when this is a ServiceAccount's user name.
    pub fn service_account_of(user: &str) -> Option<(&str, &str)> {
        user.strip_prefix("system:serviceaccount:")?.split_once(':')
    }

    fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// One line of a token file: `token,user,uid,"group1,group2"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticToken {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl StaticToken {
    pub fn new(token: &str, user: &str, groups: &[&str]) -> Self {
        StaticToken {
            token: token.into(),
            user: user.into(),
            uid: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// Turns authentication and RBAC authorization on ([`ApiServerOptions::auth`](crate::kube::ApiServerOptions)).
#[derive(Clone, Debug, Default)]
pub struct AuthOptions {
    /// Accepted bearer tokens besides [`ADMIN_TOKEN`] and minted ServiceAccount tokens.
    pub tokens: Vec<StaticToken>,
}

impl AuthOptions {
    /// Parses kube-apiserver's `--token-auth-file` format: CSV lines `token,user,uid` with an
    /// optional fourth column of comma-separated groups (quoted when there are several).
    pub fn parse_token_file(text: &str) -> Result<Vec<StaticToken>, String> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            fields.push(cur);
            if fields.len() < 3 {
                return Err(format!(
                    "token file line {}: expected token,user,uid[,\"groups\"], got {} fields",
                    i + 1,
                    fields.len()
                ));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            out.push(StaticToken {
                token: fields[0].trim().into(),
                user: fields[1].trim().into(),
                uid: fields[2].trim().into(),
                groups,
            });
        }
        Ok(out)
    }
}

/// A minted ServiceAccount token: valid while the ServiceAccount with this uid exists.
#[derive(Clone, Debug)]
struct BoundToken {
    namespace: String,
    name: String,
    uid: String,
}

/// Token → user. Static tokens are fixed at start; ServiceAccount tokens are minted by
/// TokenRequest (`kubectl create token`) or [`ApiServer::service_account_token`](crate::kube::ApiServer::service_account_token).
pub struct Authenticator {
    tokens: HashMap<String, UserInfo>,
    minted: Mutex<HashMap<String, BoundToken>>,
}

impl Authenticator {
    pub fn new(opts: &AuthOptions) -> Self {
        let mut tokens = HashMap::new();
        tokens.insert(
            ADMIN_TOKEN.to_string(),
            UserInfo {
                name: ADMIN_USER.into(),
                uid: ADMIN_USER.into(),
                groups: vec!["system:masters".into()],
            }
            .authenticated(),
        );
        for t in &opts.tokens {
            tokens.insert(
                t.token.clone(),
                UserInfo {
                    name: t.user.clone(),
                    uid: t.uid.clone(),
                    groups: t.groups.clone(),
                }
                .authenticated(),
            );
        }
        Authenticator {
            tokens,
            minted: Mutex::new(HashMap::new()),
        }
    }

    /// Mints a token for ServiceAccount `ns/name` (which must exist).
    pub fn mint(&self, st: &State, ns: &str, name: &str) -> Result<String, ApiError> {
        let sa = st.get("/serviceaccounts", ns, name).ok_or_else(|| {
            ApiError::not_found(
                &crate::kube::error::GroupResource::new("", "serviceaccounts"),
                name,
            )
        })?;
        let uid = crate::kube::meta::uid(&sa).unwrap_or("").to_string();
        let token = format!("sa.{ns}.{name}.{}", uuid::Uuid::new_v4().simple());
        let mut m = self.minted.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(
            token.clone(),
            BoundToken {
                namespace: ns.into(),
                name: name.into(),
                uid,
            },
        );
        Ok(token)
    }

    /// The user a bearer token stands for; `None` for an unknown token or one whose
    /// ServiceAccount is gone (a 401).
    fn user_of(&self, st: &State, token: &str) -> Option<UserInfo> {
        if let Some(u) = self.tokens.get(token) {
            return Some(u.clone());
        }
        let bound = self
            .minted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()?;
        let sa = st.get("/serviceaccounts", &bound.namespace, &bound.name)?;
        if crate::kube::meta::uid(&sa) != Some(bound.uid.as_str()) {
            return None;
        }
        Some(UserInfo::service_account(
            &bound.namespace,
            &bound.name,
            &bound.uid,
        ))
    }

    /// Authenticates a request, then applies `Impersonate-*` headers if the caller may
    /// impersonate.
    pub fn authenticate(&self, st: &State, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let user = match bearer(headers) {
            Some(token) => self.user_of(st, token).ok_or_else(unauthorized)?,
            None => UserInfo::anonymous(),
        };
        impersonate(st, user, headers)
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`: each needs the `impersonate`
/// verb on users, groups, uids, or (for a ServiceAccount user) the ServiceAccount.
fn impersonate(st: &State, caller: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let users = header_values(headers, "impersonate-user");
    let groups = header_values(headers, "impersonate-group");
    let uids = header_values(headers, "impersonate-uid");
    let Some(name) = users.first().copied() else {
        if groups.is_empty() && uids.is_empty() {
            return Ok(caller);
        }
        return Err(ApiError::internal(
            "requested [{Group ...}] without impersonating a user",
        ));
    };
    let mut checks: Vec<Attributes> = Vec::new();
    match UserInfo::service_account_of(name) {
        Some((ns, sa)) => checks.push(Attributes::resource(
            "impersonate",
            "",
            "serviceaccounts",
            Some(ns),
            Some(sa),
        )),
        None => checks.push(Attributes::resource(
            "impersonate",
            "",
            "users",
            None,
            Some(name),
        )),
    }
    for g in &groups {
        checks.push(Attributes::resource(
            "impersonate",
            "",
            "groups",
            None,
            Some(g),
        ));
    }
    for u in &uids {
        checks.push(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "uids",
            None,
            Some(u),
        ));
    }
    for a in &checks {
        if !rbac::authorize(st, &caller, a).allowed {
            return Err(a.forbidden(&caller));
        }
    }
    let mut user = match UserInfo::service_account_of(name) {
        Some((ns, sa)) => {
            let mut u = UserInfo::service_account(ns, sa, "");
            u.groups.retain(|g| g != "system:authenticated");
            u
        }
        None => UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: vec![],
        },
    };
    user.uid = uids.first().map(|u| u.to_string()).unwrap_or_default();
    user.groups.extend(groups.iter().map(|g| g.to_string()));
    if name != "system:anonymous" {
        user = user.authenticated();
    }
    Ok(user)
}

/// The `Status` of a request the authorizer refused.
pub fn forbidden_status(message: String, details: Value) -> ApiError {
    ApiError::new(403, "Forbidden", message).with_details(details)
}

/// `userInfo` as the review APIs report it.
pub fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    v
}

/// The caller of one request: the name the request log shows, and the user the authorizer
/// checked (None when authorization is off).
#[derive(Clone, Debug)]
pub struct Caller {
    pub label: String,
    pub token: String,
    pub user: Option<std::sync::Arc<UserInfo>>,
}

/// Authenticates and authorizes a request. Without an authenticator everything is allowed and
/// the bearer token (or `system:anonymous`) labels the caller, as the tests that tell clients
/// apart by token expect.
pub fn identify(
    auth: Option<&Authenticator>,
    st: &State,
    headers: &HeaderMap,
    attrs: &Attributes,
) -> Result<Caller, (String, ApiError)> {
    let token = bearer(headers).unwrap_or("").to_string();
    let Some(auth) = auth else {
        let label = if token.is_empty() {
            "system:anonymous".to_string()
        } else {
            token.clone()
        };
        return Ok(Caller {
            label,
            token,
            user: None,
        });
    };
    let user = auth
        .authenticate(st, headers)
        .map_err(|e| (String::new(), e))?;
    if !rbac::authorize(st, &user, attrs).allowed {
        return Err((user.name.clone(), attrs.forbidden(&user)));
    }
    Ok(Caller {
        label: user.name.clone(),
        token,
        user: Some(std::sync::Arc::new(user)),
    })
}
