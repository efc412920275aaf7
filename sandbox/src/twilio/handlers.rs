//! Endpoint behaviour on the locked state: authenticate, authorise, apply, shape the response.

use std::time::Instant;

use chrono::Utc;
use serde_json::{json, Value};

use super::errors::ApiError;
use super::ids::{self, iso8601, rfc2822};
use super::model::{Endpoint, KeyKind};
use super::pagination::{self, Slice};
use super::route::{Matched, Target};
use super::state::{Account, Key, Principal, State, TokenRole};

/// What a request carries besides its credentials.
pub(crate) struct Ctx<'a> {
    pub matched: &'a Matched,
    pub target: &'a Target,
    pub query: &'a [(String, String)],
    pub form: &'a [(String, String)],
    /// `scheme://authority` for absolute URLs (IAM `meta`, accounts `url`).
    pub origin: &'a str,
}

impl Ctx<'_> {
    fn query(&self, name: &str) -> Option<&str> {
        find(self.query, name)
    }
    fn form(&self, name: &str) -> Option<&str> {
        find(self.form, name)
    }
    /// Absolute URL on the host the request came to.
    fn abs_url(&self, path_and_query: &str) -> String {
        format!("{}{}{}", self.origin, self.target.prefix, path_and_query)
    }
    fn suppress_email(&self) -> bool {
        self.form("SuppressEmailNotification")
            .or_else(|| self.query("SuppressEmailNotification"))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    /// For AuthTokens changes: whether Twilio would have sent its notification e-mail.
    pub email: Option<bool>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: Some(body),
            email: None,
        }
    }
    fn no_content() -> Self {
        Reply {
            status: 204,
            body: None,
            email: None,
        }
    }
    fn emailing(mut self, ctx: &Ctx) -> Self {
        self.email = Some(!ctx.suppress_email());
        self
    }
}

/// Result of handling: whether authentication succeeded (for the log) and the reply.
pub(crate) struct Handled {
    pub authenticated: bool,
    pub result: Result<Reply, ApiError>,
}

pub(crate) fn handle(state: &mut State, ctx: &Ctx, creds: Option<&(String, String)>) -> Handled {
    let principal = match state.authenticate(&ctx.target.region, creds) {
        Ok(p) => p,
        Err(e) => {
            return Handled {
                authenticated: false,
                result: Err(e),
            }
        }
    };
    let result = match ctx.matched.endpoint {
        Endpoint::SecondaryCreate => secondary_create(state, ctx, &principal),
        Endpoint::SecondaryDelete => secondary_delete(state, ctx, &principal),
        Endpoint::Promote => promote(state, ctx, &principal),
        Endpoint::AccountFetch => account_fetch(state, ctx, &principal),
        Endpoint::BalanceFetch => balance_fetch(state, ctx, &principal),
        Endpoint::KeysList => keys_list(state, ctx, &principal),
        Endpoint::KeyCreate => key_create(state, ctx, &principal),
        Endpoint::KeyFetch | Endpoint::KeyUpdate | Endpoint::KeyDelete => {
            key_instance(state, ctx, &principal)
        }
        Endpoint::IamKeysList => iam_keys_list(state, ctx, &principal),
        Endpoint::IamKeyCreate => iam_key_create(state, ctx, &principal),
        Endpoint::IamKeyFetch | Endpoint::IamKeyUpdate | Endpoint::IamKeyDelete => {
            iam_key_instance(state, ctx, &principal)
        }
        Endpoint::Any => Err(ApiError::not_found(&ctx.target.rest)),
    };
    Handled {
        authenticated: true,
        result,
    }
}

// ---- accounts.twilio.com /v1/AuthTokens ------------------------------------------------------

/// The AuthTokens endpoints act on the authenticated account; only its own auth token may call
/// them (a Main key only when the switch allows it).
fn auth_tokens_account(state: &State, p: &Principal) -> Result<String, ApiError> {
    match p {
        Principal::Token { account } => Ok(account.clone()),
        Principal::Key {
            account,
            kind: KeyKind::Main,
        } if state.switches.main_key_manages_auth_tokens => Ok(account.clone()),
        Principal::Key { .. } => Err(ApiError::authenticate(
            "API keys may not call the AuthTokens endpoints",
        )),
    }
}

fn secondary_create(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let sid = auth_tokens_account(state, p)?;
    let reject = state.switches.reject_second_secondary;
    let acct = account_mut(state, &sid)?;
    if acct.secondary().is_some() && reject {
        return Err(ApiError::new(
            400,
            70002,
            "Secondary Auth Token already exists for this account",
        ));
    }
    let tok = acct.new_secondary(Instant::now());
    let body = json!({
        "account_sid": sid,
        "secondary_auth_token": tok.value,
        "date_created": iso8601(tok.created),
        "date_updated": iso8601(tok.created),
        "url": ctx.abs_url("/v1/AuthTokens/Secondary"),
    });
    Ok(Reply::json(201, body).emailing(ctx))
}

fn secondary_delete(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let sid = auth_tokens_account(state, p)?;
    let missing_is_404 = state.switches.delete_missing_secondary_is_404;
    let acct = account_mut(state, &sid)?;
    let Some(sec) = acct
        .tokens
        .iter_mut()
        .find(|t| t.role == TokenRole::Secondary)
    else {
        if missing_is_404 {
            return Err(ApiError::not_found("/AuthTokens/Secondary"));
        }
        return Ok(Reply::no_content());
    };
    sec.role = TokenRole::Retired;
    acct.updated = Utc::now();
    Ok(Reply::no_content().emailing(ctx))
}

fn promote(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let sid = auth_tokens_account(state, p)?;
    let acct = account_mut(state, &sid)?;
    if acct.secondary().is_none() {
        return Err(ApiError::not_found("/AuthTokens/Promote"));
    }
    let now = Utc::now();
    for t in &mut acct.tokens {
        match t.role {
            // The old primary dies at once.
            TokenRole::Primary => t.role = TokenRole::Retired,
            TokenRole::Secondary => {
                t.role = TokenRole::Primary;
                t.issued_at = Some(Instant::now());
            }
            TokenRole::Retired => {}
        }
    }
    acct.updated = now;
    let tok = acct.primary();
    let body = json!({
        "account_sid": sid,
        "auth_token": tok.value,
        "date_created": iso8601(tok.created),
        "date_updated": iso8601(now),
        "url": ctx.abs_url("/v1/AuthTokens/Promote"),
    });
    Ok(Reply::json(200, body).emailing(ctx))
}

fn account_mut<'a>(state: &'a mut State, sid: &str) -> Result<&'a mut Account, ApiError> {
    state
        .accounts
        .get_mut(sid)
        .ok_or_else(|| ApiError::authenticate("account vanished"))
}

// ---- api.twilio.com /2010-04-01 ----------------------------------------------------------------

fn require_account_level(p: &Principal) -> Result<(), ApiError> {
    if p.is_account_level() {
        Ok(())
    } else {
        Err(ApiError::authenticate(
            "standard and restricted API keys cannot manage keys or accounts",
        ))
    }
}

/// The path's account, if the principal reaches it (404 otherwise, as Twilio answers for an
/// account the credentials do not own).
fn path_account<'a>(state: &'a State, ctx: &Ctx, p: &Principal) -> Result<&'a Account, ApiError> {
    require_account_level(p)?;
    let sid = ctx.matched.account_sid.as_deref().unwrap_or_default();
    if !state.reaches(p.account(), sid) {
        return Err(ApiError::not_found(&ctx.target.rest)
            .with_note("credentials do not reach this account"));
    }
    Ok(&state.accounts[sid])
}

fn account_fetch(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let a = path_account(state, ctx, p)?;
    let base = format!("/2010-04-01/Accounts/{}", a.sid);
    let body = json!({
        "auth_token": a.primary().value,
        "date_created": rfc2822(a.created),
        "date_updated": rfc2822(a.updated),
        "friendly_name": a.friendly_name,
        "owner_account_sid": a.parent.clone().unwrap_or_else(|| a.sid.clone()),
        "sid": a.sid,
        "status": "active",
        "subresource_uris": {
            "keys": format!("{base}/Keys.json"),
            "signing_keys": format!("{base}/SigningKeys.json"),
            "balance": format!("{base}/Balance.json"),
        },
        "type": "Full",
        "uri": format!("{base}.json"),
    });
    Ok(Reply::json(200, body))
}

/// Every credential kind may read the balance of an account it reaches.
fn balance_fetch(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let sid = ctx.matched.account_sid.as_deref().unwrap_or_default();
    if !state.reaches(p.account(), sid) {
        return Err(ApiError::not_found(&ctx.target.rest)
            .with_note("credentials do not reach this account"));
    }
    let body = json!({
        "account_sid": sid,
        "balance": "20.00",
        "currency": "USD",
    });
    Ok(Reply::json(200, body))
}

fn key_2010(k: &Key) -> Value {
    json!({
        "sid": k.sid,
        "friendly_name": k.friendly_name,
        "date_created": rfc2822(k.created),
        "date_updated": rfc2822(k.updated),
    })
}

fn key_iam(k: &Key) -> Value {
    json!({
        "sid": k.sid,
        "friendly_name": k.friendly_name,
        "date_created": rfc2822(k.created),
        "date_updated": rfc2822(k.updated),
        "policy": k.policy,
    })
}

fn friendly_name(ctx: &Ctx) -> Result<Option<String>, ApiError> {
    match ctx.form("FriendlyName") {
        Some(n) if n.chars().count() > 64 => Err(ApiError::invalid_param(
            "FriendlyName must be at most 64 characters long",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

fn page_of(acct: &Account, ctx: &Ctx) -> Result<(pagination::PageParams, Slice), ApiError> {
    let params = pagination::params(ctx.query)?;
    let all: Vec<(String, bool)> = acct
        .keys
        .iter()
        .map(|k| (k.sid.clone(), !k.deleted))
        .collect();
    let slice = pagination::slice(&all, &params)?;
    Ok((params, slice))
}

fn keys_list(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let acct = path_account(state, ctx, p)?;
    let (params, slice) = page_of(acct, ctx)?;
    let keys: Vec<Value> = slice
        .sids
        .iter()
        .filter_map(|s| acct.key(s))
        .map(key_2010)
        .collect();
    let base = format!("/2010-04-01/Accounts/{}/Keys.json", acct.sid);
    let size = params.page_size;
    let page_uri = |page: usize, token: Option<String>| match token {
        Some(t) => format!("{base}?PageSize={size}&Page={page}&PageToken={t}"),
        None => format!("{base}?PageSize={size}&Page={page}"),
    };
    let n = keys.len();
    let body = json!({
        "keys": keys,
        "start": slice.start,
        "end": if n == 0 { slice.start } else { slice.start + n - 1 },
        "page": params.page,
        "page_size": size,
        "uri": page_uri(params.page, params.token.as_ref().map(|t| t.encode())),
        "first_page_uri": page_uri(0, None),
        "next_page_uri": slice.next.map(|t| page_uri(params.page + 1, Some(t.encode()))),
        "previous_page_uri": slice
            .previous
            .map(|t| page_uri(params.page.saturating_sub(1), Some(t.encode()))),
    });
    Ok(Reply::json(200, body))
}

fn key_create(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let sid = path_account(state, ctx, p)?.sid.clone();
    let name = friendly_name(ctx)?;
    let key = state
        .add_key(&sid, KeyKind::Standard, name, None, Some(Instant::now()))
        .ok_or_else(|| ApiError::not_found(&ctx.target.rest))?;
    let mut body = key_2010(&key);
    body["secret"] = json!(key.secret);
    Ok(Reply::json(201, body))
}

fn key_instance(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let sid = path_account(state, ctx, p)?.sid.clone();
    let key_sid = ctx.matched.key_sid.clone().unwrap_or_default();
    let name = match ctx.matched.endpoint {
        Endpoint::KeyUpdate => friendly_name(ctx)?,
        _ => None,
    };
    let acct = state
        .accounts
        .get_mut(&sid)
        .expect("reached account exists");
    let key = acct
        .key_mut(&key_sid)
        .ok_or_else(|| ApiError::not_found(&ctx.target.rest))?;
    match ctx.matched.endpoint {
        Endpoint::KeyDelete => {
            key.deleted = true;
            Ok(Reply::no_content())
        }
        Endpoint::KeyUpdate => {
            if name.is_some() {
                key.friendly_name = name;
            }
            key.updated = Utc::now();
            Ok(Reply::json(200, key_2010(key)))
        }
        _ => Ok(Reply::json(200, key_2010(key))),
    }
}

// ---- iam.twilio.com /v1/Keys -------------------------------------------------------------------

/// `AccountSid` parameter of the IAM list/create calls, checked against the principal.
fn iam_account(state: &State, p: &Principal, sid: Option<&str>) -> Result<String, ApiError> {
    require_account_level(p)?;
    let sid = sid
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid_param("Missing required parameter AccountSid"))?;
    if !ids::is_account_sid(sid) {
        return Err(ApiError::invalid_param("Invalid AccountSid"));
    }
    // The account is a parameter, not the path: a foreign one is an authorisation failure.
    if !state.reaches(p.account(), sid) {
        return Err(ApiError::authenticate(
            "credentials do not reach the AccountSid parameter",
        ));
    }
    Ok(sid.to_string())
}

fn iam_keys_list(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let sid = iam_account(state, p, ctx.query("AccountSid"))?;
    let acct = &state.accounts[&sid];
    let (params, slice) = page_of(acct, ctx)?;
    let keys: Vec<Value> = slice
        .sids
        .iter()
        .filter_map(|s| acct.key(s))
        .map(|k| {
            let mut v = key_2010(k);
            v["flags"] = json!(["rest_api", "signing"]);
            v
        })
        .collect();
    let size = params.page_size;
    let page_url = |page: usize, token: Option<String>| {
        let mut q = format!("/v1/Keys?AccountSid={sid}&PageSize={size}&Page={page}");
        if let Some(t) = token {
            q.push_str(&format!("&PageToken={t}"));
        }
        ctx.abs_url(&q)
    };
    let body = json!({
        "keys": keys,
        "meta": {
            "page": params.page,
            "page_size": size,
            "first_page_url": page_url(0, None),
            "previous_page_url": slice
                .previous
                .map(|t| page_url(params.page.saturating_sub(1), Some(t.encode()))),
            "url": page_url(params.page, params.token.as_ref().map(|t| t.encode())),
            "next_page_url": slice.next.map(|t| page_url(params.page + 1, Some(t.encode()))),
            "key": "keys",
        },
    });
    Ok(Reply::json(200, body))
}

fn parse_policy(raw: &str) -> Result<Value, ApiError> {
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::invalid_param("Policy must be a JSON object")),
    }
}

fn iam_key_create(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    let sid = iam_account(state, p, ctx.form("AccountSid"))?;
    let name = friendly_name(ctx)?;
    let (kind, policy) = match (ctx.form("KeyType"), ctx.form("Policy")) {
        (None, None) => (KeyKind::Standard, None),
        (None, Some(_)) => {
            return Err(ApiError::invalid_param(
                "Policy is only allowed with KeyType=restricted",
            ))
        }
        (Some("restricted"), Some(raw)) => (KeyKind::Restricted, Some(parse_policy(raw)?)),
        (Some("restricted"), None) => {
            return Err(ApiError::invalid_param(
                "Policy is required with KeyType=restricted",
            ))
        }
        (Some(_), _) => return Err(ApiError::invalid_param("KeyType must be 'restricted'")),
    };
    let key = state
        .add_key(&sid, kind, name, policy, Some(Instant::now()))
        .ok_or_else(|| ApiError::not_found("/Keys"))?;
    let mut body = key_iam(&key);
    body["secret"] = json!(key.secret);
    Ok(Reply::json(201, body))
}

fn iam_key_instance(state: &mut State, ctx: &Ctx, p: &Principal) -> Result<Reply, ApiError> {
    require_account_level(p)?;
    let key_sid = ctx.matched.key_sid.clone().unwrap_or_default();
    let not_found = || ApiError::not_found(&format!("/Keys/{key_sid}"));
    let owner = state
        .key_owner(&key_sid)
        .filter(|owner| state.reaches(p.account(), owner))
        .ok_or_else(not_found)?
        .to_string();
    let name = match ctx.matched.endpoint {
        Endpoint::IamKeyUpdate => friendly_name(ctx)?,
        _ => None,
    };
    let policy = match (ctx.matched.endpoint, ctx.form("Policy")) {
        (Endpoint::IamKeyUpdate, Some(raw)) => Some(parse_policy(raw)?),
        _ => None,
    };
    let acct = state.accounts.get_mut(&owner).expect("owner exists");
    let key = acct.key_mut(&key_sid).ok_or_else(not_found)?;
    match ctx.matched.endpoint {
        Endpoint::IamKeyDelete => {
            key.deleted = true;
            Ok(Reply::no_content())
        }
        Endpoint::IamKeyUpdate => {
            if policy.is_some() && key.kind != KeyKind::Restricted {
                return Err(ApiError::invalid_param(
                    "Policy can only be set on restricted keys",
                ));
            }
            if name.is_some() {
                key.friendly_name = name;
            }
            if policy.is_some() {
                key.policy = policy;
            }
            key.updated = Utc::now();
            Ok(Reply::json(200, key_iam(key)))
        }
        _ => Ok(Reply::json(200, key_iam(key))),
    }
}
