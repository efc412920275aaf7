//! Test-control API under `/_sandbox/` (JSON): stats, request log, accounts, faults, switches.

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::entry::Shared;
use super::ids;
use super::model::{default_region, Endpoint, Fault, Switches};

pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/requests", get(requests))
        .route(
            "/_sandbox/accounts",
            post(create_account).get(list_accounts),
        )
        .route("/_sandbox/faults", post(set_fault).delete(clear_faults))
        .route("/_sandbox/switches", post(set_switches).get(get_switches))
}

fn bad_request(msg: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": msg.to_string() })),
    )
        .into_response()
}

/// Parses an optional JSON body (empty body = default).
fn optional_json<T: for<'de> Deserialize<'de> + Default>(
    body: &Bytes,
) -> Result<T, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
}

async fn stats(AxState(shared): AxState<Shared>) -> Response {
    Json(shared.lock().unwrap().stats()).into_response()
}

async fn requests(AxState(shared): AxState<Shared>) -> Response {
    Json(shared.lock().unwrap().log.clone()).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NewAccount {
    sid: Option<String>,
    auth_token: Option<String>,
    region: Option<String>,
    parent_sid: Option<String>,
}

async fn create_account(AxState(shared): AxState<Shared>, body: Bytes) -> Response {
    let req: NewAccount = match optional_json(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let mut st = shared.lock().unwrap();
    let region = match (&req.parent_sid, &req.region) {
        (Some(parent), _) => match st.accounts.get(parent) {
            Some(p) => p.region.clone(),
            None => return bad_request(format!("unknown parent account {parent}")),
        },
        (None, Some(r)) => r.clone(),
        (None, None) => default_region(),
    };
    let sid = req.sid.unwrap_or_else(ids::account_sid);
    if !ids::is_account_sid(&sid) {
        return bad_request("sid must match ^AC[0-9a-fA-F]{32}$");
    }
    if st.accounts.contains_key(&sid) {
        return bad_request(format!("account {sid} exists"));
    }
    let token = req.auth_token.unwrap_or_else(ids::auth_token);
    st.add_account(&sid, &token, &region, req.parent_sid.as_deref());
    (
        StatusCode::CREATED,
        Json(json!({
            "sid": sid,
            "auth_token": token,
            "region": region,
            "parent_sid": req.parent_sid,
        })),
    )
        .into_response()
}

/// Full state of every account, secrets included (this is a test tool).
async fn list_accounts(AxState(shared): AxState<Shared>) -> Response {
    let st = shared.lock().unwrap();
    let accounts: Vec<Value> = st
        .accounts
        .values()
        .map(|a| {
            json!({
                "sid": a.sid,
                "region": a.region,
                "parent_sid": a.parent,
                "primary_token": a.primary().value,
                "secondary_token": a.secondary().map(|t| t.value.clone()),
                "keys": a.live_keys().map(|k| k.info()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(accounts).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FaultRequest {
    endpoint: Option<Endpoint>,
    fault: Option<Fault>,
    propagation_delay_ms: Option<u64>,
}

async fn set_fault(AxState(shared): AxState<Shared>, body: Bytes) -> Response {
    let req: FaultRequest = match optional_json(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let mut st = shared.lock().unwrap();
    if let Some(ms) = req.propagation_delay_ms {
        st.propagation_delay = std::time::Duration::from_millis(ms);
    }
    if let Some(fault) = req.fault {
        st.faults.set(req.endpoint.unwrap_or(Endpoint::Any), fault);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(AxState(shared): AxState<Shared>) -> Response {
    let mut st = shared.lock().unwrap();
    st.faults.clear();
    st.propagation_delay = std::time::Duration::ZERO;
    StatusCode::NO_CONTENT.into_response()
}

async fn set_switches(AxState(shared): AxState<Shared>, body: Bytes) -> Response {
    match optional_json::<Switches>(&body) {
        Ok(s) => {
            shared.lock().unwrap().switches = s;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(e),
    }
}

async fn get_switches(AxState(shared): AxState<Shared>) -> Response {
    Json(shared.lock().unwrap().switches.clone()).into_response()
}
