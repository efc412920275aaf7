//! LIST semantics: selectors, resourceVersion options, and paging with snapshot continue tokens.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use crate::kube::error::{ApiError, ApiResult, FieldError};
use crate::kube::meta;
use crate::kube::registry::ResourceDef;
use crate::kube::selector::{FieldSelector, LabelSelector};
use crate::kube::store::{ListSnapshot, State};

#[derive(Debug, Default, Clone)]
pub struct ListOpts {
    pub label: Option<String>,
    pub field: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// Parsed selectors, checked against what the resource supports.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub ns: Option<String>,
}

impl Filter {
    pub fn new(
        def: &ResourceDef,
        ns: Option<&str>,
        label: Option<&str>,
        field: Option<&str>,
    ) -> ApiResult<Self> {
        let label = LabelSelector::parse(label.unwrap_or("")).map_err(ApiError::bad_request)?;
        let field = FieldSelector::parse(field.unwrap_or("")).map_err(ApiError::bad_request)?;
        for f in field.fields() {
            let ok = f == "metadata.name"
                || f == "metadata.namespace"
                || def.field_selectors.iter().any(|x| x == f);
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {f}"
                )));
            }
        }
        Ok(Filter {
            label,
            field,
            ns: if def.namespaced {
                ns.map(String::from)
            } else {
                None
            },
        })
    }

    /// Matches a stored object.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.ns {
            if meta::namespace(obj) != ns {
                return false;
            }
        }
        if !self.label.is_empty() && !self.label.matches(meta::labels(obj)) {
            return false;
        }
        if !self.field.is_empty() {
            return self.field.matches(|k| match k {
                "metadata.name" => meta::name(obj).to_string(),
                "metadata.namespace" => meta::namespace(obj).to_string(),
                other => meta::field_string(obj, other),
            });
        }
        true
    }

    pub fn is_trivial(&self) -> bool {
        self.label.is_empty() && self.field.is_empty()
    }
}

pub struct ListResult {
    pub items: Vec<Arc<Value>>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

fn expired_continue() -> ApiError {
    ApiError::expired(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the 410 response.",
    )
}

fn encode_token(rv: u64, id: u64, start: usize) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "id": id, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_token(t: &str) -> ApiResult<(u64, u64, usize)> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let v: Value =
        serde_json::from_slice(&raw).map_err(|_| bad("server rejected malformed continue key"))?;
    let get = |k: &str| v.get(k).and_then(|x| x.as_u64());
    match (get("rv"), get("id"), get("start")) {
        (Some(rv), Some(id), Some(start)) => Ok((rv, id, start as usize)),
        _ => Err(bad("server rejected malformed continue key")),
    }
}

pub fn validate_rv_match(opts: &ListOpts) -> ApiResult<()> {
    if let Some(m) = opts
        .resource_version_match
        .as_deref()
        .filter(|m| !m.is_empty())
    {
        if opts
            .resource_version
            .as_deref()
            .is_none_or(|r| r.is_empty())
        {
            return Err(ApiError::invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                &[FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )],
            ));
        }
        if m != "NotOlderThan" && m != "Exact" {
            return Err(ApiError::invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                &[FieldError::new(
                    crate::kube::error::FieldErrorType::NotSupported(vec![
                        "Exact".into(),
                        "NotOlderThan".into(),
                    ]),
                    "resourceVersionMatch",
                    Some(json!(m)),
                    "",
                )],
            ));
        }
    }
    Ok(())
}

pub fn list(
    st: &mut State,
    def: &ResourceDef,
    filter: &Filter,
    opts: &ListOpts,
) -> ApiResult<ListResult> {
    validate_rv_match(opts)?;
    let limit = opts.limit.filter(|l| *l > 0);
    if let Some(tok) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
        if opts
            .resource_version
            .as_deref()
            .is_some_and(|r| !r.is_empty() && r != "0")
        {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (rv, id, start) = decode_token(tok)?;
        if rv < st.compacted_rv() {
            return Err(expired_continue());
        }
        let snap = st.snapshot(id).ok_or_else(expired_continue)?;
        return Ok(page(
            st,
            &snap.items,
            snap.rv,
            start,
            limit,
            Some(id),
            filter.is_trivial(),
        ));
    }
    if let Some(rv) = opts
        .resource_version
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "0")
    {
        let n: u64 = rv.parse().map_err(|_| {
            ApiError::invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                &[FieldError::invalid(
                    "resourceVersion",
                    json!(rv),
                    "must be a valid resource version",
                )],
            )
        })?;
        if opts.resource_version_match.as_deref() == Some("Exact") && n < st.current_rv() {
            {
                return Err(ApiError::expired(format!(
                    "too old resource version: {n} ({})",
                    st.current_rv()
                )));
            }
        }
        if n > st.current_rv() {
            return Err(ApiError::new(504, "Timeout", format!("Too large resource version: {n}, current: {}", st.current_rv()))
                .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1})));
        }
    }
    let ns = filter.ns.as_deref();
    let items: Vec<Arc<Value>> = match filter.field.required_name() {
        Some(name) if ns.is_some() || !def.namespaced => st
            .get(&def.storage, ns.unwrap_or(""), name)
            .into_iter()
            .filter(|o| filter.matches(o))
            .collect(),
        _ => st
            .list(&def.storage, ns)
            .into_iter()
            .filter(|o| filter.matches(o))
            .collect(),
    };
    let rv = st.current_rv();
    Ok(page(st, &items, rv, 0, limit, None, filter.is_trivial()))
}

fn page(
    st: &mut State,
    items: &[Arc<Value>],
    rv: u64,
    start: usize,
    limit: Option<usize>,
    snapshot_id: Option<u64>,
    trivial: bool,
) -> ListResult {
    let start = start.min(items.len());
    let end = match limit {
        Some(l) => (start + l).min(items.len()),
        None => items.len(),
    };
    let page_items = items[start..end].to_vec();
    let (continue_token, remaining) = if end < items.len() {
        let id = match snapshot_id {
            Some(id) => id,
            None => st.save_snapshot(ListSnapshot {
                rv,
                items: items.to_vec(),
            }),
        };
        (
            Some(encode_token(rv, id, end)),
            if trivial {
                Some(items.len() - end)
            } else {
                None
            },
        )
    } else {
        (None, None)
    };
    ListResult {
        items: page_items,
        rv,
        continue_token,
        remaining,
    }
}
