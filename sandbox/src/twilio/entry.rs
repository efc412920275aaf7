//! The single entry point for every Twilio path: route, inject faults, authenticate and apply,
//! log, and answer with Twilio's headers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::response::Response;
use base64::Engine;
use chrono::Utc;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::errors::ApiError;
use super::handlers::{self, Ctx, Reply};
use super::ids;
use super::model::RequestRecord;
use super::route;
use super::server::ConnCtx;
use super::state::State;

pub(crate) type Shared = Arc<Mutex<State>>;

/// Counts a request as in flight until dropped (also when its connection is dropped).
struct Inflight(Shared);

impl Inflight {
    fn enter(shared: &Shared) -> Self {
        shared.lock().unwrap().inflight += 1;
        Inflight(shared.clone())
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.lock() {
            st.inflight -= 1;
        }
    }
}

/// One of a user's requests in flight, under the per-account concurrency limit.
struct UserSlot(Shared, String);

impl UserSlot {
    /// A slot for `user`, or `None` when the limit is reached (the request is refused).
    fn take(shared: &Shared, user: &str) -> Option<Option<Self>> {
        let mut st = shared.lock().unwrap();
        let Some(limit) = st.max_concurrent_per_account else {
            return Some(None);
        };
        let n = st.inflight_by_user.entry(user.to_owned()).or_default();
        if *n >= limit {
            st.concurrency_refusals += 1;
            return None;
        }
        *n += 1;
        Some(Some(UserSlot(shared.clone(), user.to_owned())))
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.lock() {
            if let Some(n) = st.inflight_by_user.get_mut(&self.1) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) async fn twilio(AxState(shared): AxState<Shared>, req: Request) -> Response {
    let started = Instant::now();
    let _inflight = Inflight::enter(&shared);
    let conn = req.extensions().get::<ConnCtx>().cloned();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let creds = basic_credentials(&parts.headers);
    let host_header = header_str(&parts.headers, header::HOST);
    let path = parts.uri.path().to_string();

    let mut record = RequestRecord {
        time: Utc::now(),
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or(path.clone(), |pq| pq.to_string()),
        host: None,
        region: "us1".into(),
        product: None,
        endpoint: None,
        auth_user: creds.as_ref().map(|(u, _)| u.clone()),
        credential_id: None,
        credential_role: None,
        authenticated: None,
        status: None,
        twilio_code: None,
        user_agent: header_str(&parts.headers, header::USER_AGENT),
        fault: None,
        email_notification: None,
        note: None,
    };

    // Route and take the fault plan under one short lock.
    let routed = {
        let mut st = shared.lock().unwrap();
        let presented = st.identify(creds.as_ref());
        record.credential_id = presented.id;
        record.credential_role = presented.role;
        let refuse_region_only = st.switches.refuse_region_only_hosts;
        // Known even when the host is refused below.
        record.host = route::requested_host(&path, host_header.as_deref());
        route::target(&path, host_header.as_deref(), refuse_region_only).and_then(|target| {
            record.host = target.host.clone();
            record.region = target.region.clone();
            let matched = route::match_endpoint(&parts.method, &target)?;
            record.endpoint = Some(matched.endpoint);
            record.product = matched.endpoint.product().map(str::to_string);
            let plan = st.faults.take(matched.endpoint);
            Ok((target, matched, plan))
        })
    };
    let (target, matched, plan) = match routed {
        Ok(r) => r,
        Err(e) => return finish(&shared, record, Err(e), started),
    };
    record.fault = plan.label();
    // Twilio's concurrency limit, counted per authenticating user, then its latency.
    let user = creds.as_ref().map(|(u, _)| u.clone()).unwrap_or_default();
    let Some(_slot) = UserSlot::take(&shared, &user) else {
        record.note = Some("concurrency limit".into());
        return finish(&shared, record, Err(ApiError::injected(429)), started);
    };
    let latency = shared.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    if let Some(delay) = plan.latency {
        tokio::time::sleep(delay).await;
    }
    if plan.drop_before {
        if let Some(conn) = conn {
            log(&shared, record);
            conn.drop_connection().await;
        }
    }
    if let Some(status) = plan.status {
        return finish(&shared, record, Err(ApiError::injected(status)), started);
    }

    let origin = match (&target.host, target.prefix.is_empty()) {
        // Addressed by a Twilio Host header: URLs lead back to that host.
        (Some(host), true) => format!("https://{host}"),
        _ => format!("http://{}", host_header.as_deref().unwrap_or("127.0.0.1")),
    };
    let handled = {
        let mut st = shared.lock().unwrap();
        let ctx = Ctx {
            matched: &matched,
            target: &target,
            query: &query,
            form: &form,
            origin: &origin,
        };
        handlers::handle(&mut st, &ctx, creds.as_ref())
    };
    record.authenticated = Some(handled.authenticated);

    if plan.drop_after {
        if let Some(conn) = conn {
            record.note = Some(match &handled.result {
                Ok(r) => format!("applied; would have answered {}", r.status),
                Err(e) => format!("would have answered {} / {}", e.status, e.code),
            });
            if let Ok(r) = &handled.result {
                record.email_notification = r.email;
            }
            log(&shared, record);
            conn.drop_connection().await;
        }
    }
    finish(&shared, record, handled.result, started)
}

fn log(shared: &Shared, record: RequestRecord) {
    shared.lock().unwrap().log.push(record);
}

fn finish(
    shared: &Shared,
    mut record: RequestRecord,
    result: Result<Reply, ApiError>,
    started: Instant,
) -> Response {
    let (status, body, code) = match result {
        Ok(reply) => {
            record.email_notification = reply.email;
            (reply.status, reply.body, None)
        }
        Err(e) => {
            if record.note.is_none() {
                record.note = e.note.clone();
            }
            (e.status, Some(e.body()), Some(e.code))
        }
    };
    record.status = Some(status);
    record.twilio_code = code;
    let concurrent = {
        let mut st = shared.lock().unwrap();
        let n = st.inflight;
        st.log.push(record);
        n
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Twilio-Request-Id", ids::request_id())
        .header("Twilio-Concurrent-Requests", concurrent.to_string())
        .header(
            "Twilio-Request-Duration",
            format!("{:.3}", started.elapsed().as_secs_f64()),
        );
    if status == 401 {
        builder = builder.header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
    }
    match body {
        Some(json) => builder
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from(json.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("valid response parts")
}
