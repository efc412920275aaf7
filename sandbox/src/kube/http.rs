//! HTTP layer: URL parsing, query options, content types, and dispatch to the engine.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State as AxState};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use crate::kube::auth::{self, reviews, Attributes};
use crate::kube::discovery;
use crate::kube::engine::{self, DeleteOpts, FieldValidation, Sub, WriteOpts};
use crate::kube::error::{ApiError, ApiResult};
use crate::kube::list::{self, Filter, ListOpts};
use crate::kube::meta;
use crate::kube::negotiate::{self, Format};
use crate::kube::openapi;
use crate::kube::patch::PatchType;
use crate::kube::registry::ResourceDef;
use crate::kube::server::{AuditRecord, Shared};
use crate::kube::table::{self, Include, Printer};
use crate::kube::watch;

const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

pub type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    let mut out = HashMap::new();
    if let Some(q) = q {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
    }
    out
}

pub fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_warnings(r.headers_mut(), warnings);
    r
}

fn add_warnings(h: &mut HeaderMap, warnings: &[String]) {
    for w in warnings {
        let v = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(header::WARNING, v);
        }
    }
}

fn formatted(code: u16, body: &Value, fmt: Format, warnings: &[String]) -> Response {
    if fmt == Format::Yaml {
        let mut r = Response::new(Body::from(serde_yaml::to_string(body).unwrap_or_default()));
        *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        add_warnings(r.headers_mut(), warnings);
        return r;
    }
    json_response(code, body, warnings)
}

pub fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status(), &[])
}

async fn handle(AxState(sh): AxState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let q = parse_query(parts.uri.query());
    let attrs = Attributes::from_request(&method, &path, &q);
    let identified = {
        let st = sh.lock();
        auth::identify(sh.auth.as_ref(), &st, &parts.headers, &attrs)
    };
    let (label, resp) = match identified {
        Err((label, e)) => (label, error_response(&e)),
        Ok(caller) => {
            let resp = match to_bytes(body, MAX_BODY).await {
                Err(_) => error_response(&ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    "Request entity too large: limit is 3145728",
                )),
                Ok(bytes) => {
                    match dispatch(&sh, &caller, &method, &path, q, &parts.headers, bytes).await {
                        Ok(r) => r,
                        Err(e) => error_response(&e),
                    }
                }
            };
            (caller.label, resp)
        }
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "kube api request");
    sh.record(AuditRecord::new(
        label,
        &method,
        path,
        &attrs,
        resp.status().as_u16(),
    ));
    resp
}

/// A JSON, YAML or protobuf (what kubectl's typed clients send) body of a create-only API.
fn decode_json(body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    if body.starts_with(crate::kube::protobuf::MAGIC) {
        return crate::kube::protobuf::decode(body).map_err(ApiError::bad_request);
    }
    engine::decode_yaml_or_json(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized: couldn't get version/kind; json parse error: {e}"
        ))
    })
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn dispatch(
    sh: &Arc<Shared>,
    caller: &auth::Caller,
    method: &Method,
    path: &str,
    q: Query,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => return Ok(json_response(200, &discovery::version(), &[])),
        ["sandbox", "v1", "requests"] => {
            return Ok(json_response(200, &sh.request_summary(), &[]));
        }
        ["sandbox", "v1", "traffic"] => {
            let source = sh.traffic.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return match source {
                Some(f) => Ok(json_response(200, &f(), &[])),
                None => Err(ApiError::no_route()),
            };
        }
        ["apis", g @ ("authorization.k8s.io" | "authentication.k8s.io"), "v1", plural]
            if reviews::REVIEWS.iter().any(|r| r.0 == *g && r.3 == *plural) =>
        {
            if *method != Method::POST {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
            let body = decode_json(&body)?;
            let st = sh.lock();
            let out = reviews::review(&st, caller.user.as_deref(), &caller.token, plural, &body)?;
            return Ok(json_response(201, &out, &[]));
        }
        ["api", "v1", "namespaces", ns, "serviceaccounts", name, "token"] => {
            if *method != Method::POST {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
            let body = decode_json(&body)?;
            let st = sh.lock();
            let out = reviews::token_request(&st, sh.auth.as_ref(), ns, name, &body)?;
            return Ok(json_response(201, &out, &[]));
        }
        ["healthz"] | ["livez"] | ["readyz"] => {
            let mut r = Response::new(Body::from("ok"));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Ok(r);
        }
        ["api"] => {
            return Ok(json_response(
                200,
                &discovery::api_versions(&sh.server_addr().to_string()),
                &[],
            ))
        }
        ["apis"] => {
            let st = sh.lock();
            return Ok(json_response(
                200,
                &discovery::api_group_list(&st.registry),
                &[],
            ));
        }
        ["openapi", "v3"] => {
            let st = sh.lock();
            return Ok(json_response(200, &openapi::root(&st.registry), &[]));
        }
        ["openapi", "v3", "api", v] => {
            let doc = {
                let st = sh.lock();
                openapi::group_version(&st.registry, "", v)
            };
            return doc
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(ApiError::no_route);
        }
        ["openapi", "v3", "apis", g, v] => {
            let reg = sh.lock().registry.clone();
            return openapi::group_version(&reg, g, v)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(ApiError::no_route);
        }
        ["api", "v1"] => {
            let st = sh.lock();
            return discovery::resource_list(&st.registry, "", "v1")
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(ApiError::no_route);
        }
        ["apis", g] => {
            let st = sh.lock();
            return discovery::api_group(&st.registry, g)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(ApiError::no_route);
        }
        ["apis", g, v] => {
            let st = sh.lock();
            return discovery::resource_list(&st.registry, g, v)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(ApiError::no_route);
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let (ns, res, name, sub): (Option<&str>, &str, Option<&str>, Option<&str>) = match rest {
        ["namespaces", ns, res, tail @ ..] if *res != "status" && *res != "finalize" => {
            match tail {
                [] => (Some(*ns), *res, None, None),
                [n] => (Some(*ns), *res, Some(*n), None),
                [n, s] => (Some(*ns), *res, Some(*n), Some(*s)),
                _ => return Err(ApiError::no_route()),
            }
        }
        [res] => (None, *res, None, None),
        [res, n] => (None, *res, Some(*n), None),
        [res, n, s] => (None, *res, Some(*n), Some(*s)),
        _ => return Err(ApiError::no_route()),
    };
    let def = sh
        .lock()
        .registry
        .get(group, version, res)
        .ok_or_else(ApiError::no_route)?;
    if ns.is_some() && !def.namespaced {
        return Err(ApiError::no_route());
    }
    let sub = match sub {
        None => Sub::Main,
        Some("status") if def.status => Sub::Status,
        Some("scale") if def.scale => Sub::Scale,
        Some("finalize") if def.builtin && def.kind == "Namespace" => Sub::Main,
        Some(_) => return Err(ApiError::no_route()),
    };
    let req = Req {
        sh,
        user: caller.user.clone(),
        def: &def,
        ns,
        sub,
        q: &q,
        headers,
        body: &body,
    };
    let is_watch = legacy_watch || q.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method, name) {
        (&Method::GET, None) if is_watch => req.watch(None),
        (&Method::GET, Some(n)) if is_watch => req.watch(Some(n)),
        (&Method::GET, None) => req.list(),
        (&Method::GET, Some(n)) => req.get(n),
        (&Method::POST, None) => req.create(),
        (&Method::PUT, Some(n)) => req.update(n),
        (&Method::PATCH, Some(n)) => req.patch(n),
        (&Method::DELETE, Some(n)) => req.delete(n),
        (&Method::DELETE, None) => req.delete_collection(),
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

struct Req<'a> {
    sh: &'a Arc<Shared>,
    user: Option<Arc<auth::UserInfo>>,
    def: &'a Arc<ResourceDef>,
    ns: Option<&'a str>,
    sub: Sub,
    q: &'a Query,
    headers: &'a HeaderMap,
    body: &'a Bytes,
}

fn summarize(body: &[u8]) -> String {
    let n = body.len().min(30);
    let mut s = hex::encode(&body[..n]);
    if body.len() > 30 {
        s.push_str(" ...");
    }
    s
}

impl Req<'_> {
    fn format(&self) -> ApiResult<Format> {
        negotiate::negotiate(header_str(self.headers, header::ACCEPT))
    }

    fn include(&self) -> Include {
        negotiate::include_object(self.q.get("includeObject").map(String::as_str))
    }

    fn write_opts(&self) -> ApiResult<WriteOpts> {
        let dry_run = match self.q.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dryRun value: {other:?}; supported values: \"All\""
                )))
            }
        };
        let validation = match self.q.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                )))
            }
        };
        let force = match self.q.get("force").map(String::as_str) {
            None => None,
            Some("true") | Some("1") => Some(true),
            Some(_) => Some(false),
        };
        Ok(WriteOpts {
            dry_run,
            field_manager: self.q.get("fieldManager").cloned(),
            user_agent: header_str(self.headers, header::USER_AGENT)
                .unwrap_or("")
                .to_string(),
            validation,
            force,
            user: self.user.clone(),
        })
    }

    /// Decodes a create/update body (JSON or YAML).
    fn decode_body(&self) -> ApiResult<Value> {
        let ct = header_str(self.headers, header::CONTENT_TYPE).unwrap_or("application/json");
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let parsed = match base.as_str() {
            "application/json" | "" | "*/*" => {
                serde_json::from_slice::<Value>(self.body).map_err(|e| e.to_string())
            }
            "application/yaml" => engine::decode_yaml_or_json(self.body),
            crate::kube::protobuf::CONTENT_TYPE if self.def.builtin => {
                crate::kube::protobuf::decode(self.body)
                    .map_err(|_| {
                        ApiError::unsupported_media_type(
                            ct,
                            &["application/json", "application/yaml"],
                        )
                    })
                    .map(Ok)?
            }
            _ => {
                return Err(ApiError::unsupported_media_type(
                    ct,
                    &["application/json", "application/yaml"],
                ))
            }
        };
        parsed.map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e} ({})",
                self.def.kind,
                summarize(self.body)
            ))
        })
    }

    fn out(&self, code: u16, obj: &Value, warnings: &[String]) -> ApiResult<Response> {
        let fmt = self.format()?;
        let body = match fmt {
            Format::Meta if obj.get("kind") != Some(&json!("Status")) => table::partial_meta(obj),
            Format::Table if obj.get("kind") != Some(&json!("Status")) && self.sub == Sub::Main => {
                let rv = meta::resource_version(obj).unwrap_or("").to_string();
                Printer::for_def(self.def).table(
                    std::slice::from_ref(obj),
                    self.include(),
                    &rv,
                    None,
                    true,
                )
            }
            _ => obj.clone(),
        };
        Ok(formatted(code, &body, fmt, warnings))
    }

    fn finish(&self, res: ApiResult<engine::Outcome>) -> ApiResult<Response> {
        let st = self.sh.lock();
        self.sh.notify(&st);
        drop(st);
        let o = res?;
        self.out(o.code, &o.body, &o.warnings)
    }

    fn get(&self, name: &str) -> ApiResult<Response> {
        let fmt = self.format()?;
        let obj = {
            let st = self.sh.lock();
            engine::get(&st, self.def, self.ns, name)?
        };
        if self.sub == Sub::Scale {
            return Ok(formatted(200, &engine::scale_of(self.def, &obj), fmt, &[]));
        }
        self.out(200, &obj, &[])
    }

    fn list_opts(&self) -> ListOpts {
        ListOpts {
            label: self.q.get("labelSelector").cloned(),
            field: self.q.get("fieldSelector").cloned(),
            limit: self.q.get("limit").and_then(|l| l.parse().ok()),
            continue_token: self.q.get("continue").cloned(),
            resource_version: self.q.get("resourceVersion").cloned(),
            resource_version_match: self.q.get("resourceVersionMatch").cloned(),
        }
    }

    fn list(&self) -> ApiResult<Response> {
        let fmt = self.format()?;
        let opts = self.list_opts();
        let filter = Filter::new(
            self.def,
            self.ns,
            opts.label.as_deref(),
            opts.field.as_deref(),
        )?;
        let res = {
            let mut st = self.sh.lock();
            list::list(&mut st, self.def, &filter, &opts)?
        };
        let items: Vec<Value> = res
            .items
            .iter()
            .map(|o| engine::present(self.def, o))
            .collect();
        let rv = res.rv.to_string();
        let body = match fmt {
            Format::Table => Printer::for_def(self.def).table(
                &items,
                self.include(),
                &rv,
                res.continue_token.as_deref(),
                true,
            ),
            _ => {
                let mut md = json!({"resourceVersion": rv});
                if let Some(c) = &res.continue_token {
                    md["continue"] = json!(c);
                }
                if let Some(r) = res.remaining {
                    md["remainingItemCount"] = json!(r);
                }
                if fmt == Format::Meta {
                    json!({
                        "kind": "PartialObjectMetadataList",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": md,
                        "items": items.iter().map(table::partial_meta).collect::<Vec<_>>(),
                    })
                } else {
                    json!({"kind": self.def.list_kind, "apiVersion": self.def.api_version(), "metadata": md, "items": items})
                }
            }
        };
        Ok(formatted(200, &body, fmt, &[]))
    }

    fn watch(&self, name: Option<&str>) -> ApiResult<Response> {
        let fmt = self.format()?;
        let mut field = self.q.get("fieldSelector").cloned().unwrap_or_default();
        if let Some(n) = name {
            if !field.is_empty() {
                field.push(',');
            }
            field.push_str(&format!("metadata.name={n}"));
        }
        let filter = Filter::new(
            self.def,
            self.ns,
            self.q.get("labelSelector").map(String::as_str),
            Some(&field),
        )?;
        watch::start(
            self.sh.clone(),
            self.def.clone(),
            filter,
            self.q,
            fmt,
            self.include(),
        )
    }

    fn create(&self) -> ApiResult<Response> {
        if self.sub != Sub::Main {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let opts = self.write_opts()?;
        let body = self.decode_body()?;
        let res = {
            let mut st = self.sh.lock();
            engine::create(&mut st, self.def, self.ns, body, &opts)
        };
        self.finish(res)
    }

    fn update(&self, name: &str) -> ApiResult<Response> {
        let opts = self.write_opts()?;
        let body = self.decode_body()?;
        let res = {
            let mut st = self.sh.lock();
            engine::update(&mut st, self.def, self.ns, name, self.sub, body, &opts)
        };
        self.finish(res)
    }

    fn patch(&self, name: &str) -> ApiResult<Response> {
        let opts = self.write_opts()?;
        let ct = header_str(self.headers, header::CONTENT_TYPE).unwrap_or("");
        let Some(ptype) = PatchType::from_content_type(ct) else {
            let mut accepted = vec![
                crate::kube::patch::JSON_PATCH,
                crate::kube::patch::MERGE_PATCH,
            ];
            if self.def.builtin {
                accepted.push(crate::kube::patch::STRATEGIC_PATCH);
            }
            accepted.push(crate::kube::patch::APPLY_PATCH);
            accepted.push(crate::kube::patch::APPLY_PATCH_CBOR);
            return Err(ApiError::unsupported_media_type(ct, &accepted));
        };
        let res = {
            let mut st = self.sh.lock();
            engine::patch(
                &mut st, self.def, self.ns, name, self.sub, ptype, self.body, &opts,
            )
        };
        self.finish(res)
    }

    fn delete_opts(&self) -> ApiResult<DeleteOpts> {
        let mut o = DeleteOpts {
            propagation: self.q.get("propagationPolicy").cloned(),
            grace_period: self
                .q
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse().ok()),
            dry_run: self.q.get("dryRun").is_some_and(|d| d == "All"),
            ..Default::default()
        };
        if !self.body.is_empty() {
            let ct = header_str(self.headers, header::CONTENT_TYPE).unwrap_or("");
            let b: Value = if ct.starts_with(crate::kube::protobuf::CONTENT_TYPE) {
                crate::kube::protobuf::decode(self.body).map_err(ApiError::bad_request)?
            } else {
                serde_json::from_slice(self.body).map_err(|e| {
                    ApiError::bad_request(format!(
                        "the object provided is unrecognized (must be of type DeleteOptions): {e}"
                    ))
                })?
            };
            if let Some(p) = b.get("propagationPolicy").and_then(|p| p.as_str()) {
                o.propagation = Some(p.to_string());
            }
            if let Some(orphan) = b.get("orphanDependents").and_then(|p| p.as_bool()) {
                if o.propagation.is_none() {
                    o.propagation = Some(if orphan { "Orphan" } else { "Background" }.into());
                }
            }
            if let Some(g) = b.get("gracePeriodSeconds").and_then(|g| g.as_i64()) {
                o.grace_period = Some(g);
            }
            if let Some(d) = b.get("dryRun").and_then(|d| d.as_array()) {
                o.dry_run |= d.iter().any(|x| x == "All");
            }
            if let Some(p) = b.get("preconditions") {
                o.uid = p.get("uid").and_then(|u| u.as_str()).map(String::from);
                o.resource_version = p
                    .get("resourceVersion")
                    .and_then(|u| u.as_str())
                    .map(String::from);
            }
        }
        Ok(o)
    }

    fn delete(&self, name: &str) -> ApiResult<Response> {
        if self.sub != Sub::Main {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let opts = self.delete_opts()?;
        let res = {
            let mut st = self.sh.lock();
            engine::delete(&mut st, self.def, self.ns, name, &opts)
        };
        self.finish(res)
    }

    fn delete_collection(&self) -> ApiResult<Response> {
        let opts = self.delete_opts()?;
        let lopts = self.list_opts();
        let filter = Filter::new(
            self.def,
            self.ns,
            lopts.label.as_deref(),
            lopts.field.as_deref(),
        )?;
        let mut items = Vec::new();
        let rv;
        {
            let mut st = self.sh.lock();
            let found = list::list(
                &mut st,
                self.def,
                &filter,
                &ListOpts {
                    limit: None,
                    continue_token: None,
                    ..lopts
                },
            )?;
            for o in found.items {
                let ns = meta::namespace(&o).to_string();
                let name = meta::name(&o).to_string();
                let nsopt = if self.def.namespaced {
                    Some(ns.as_str())
                } else {
                    None
                };
                if engine::delete(&mut st, self.def, nsopt, &name, &opts).is_ok() {
                    items.push(engine::present(self.def, &o));
                }
            }
            rv = st.current_rv();
            self.sh.notify(&st);
        }
        let body = json!({"kind": self.def.list_kind, "apiVersion": self.def.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items});
        Ok(formatted(200, &body, self.format()?, &[]))
    }
}
