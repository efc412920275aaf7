//! WATCH: chunked JSON lines replayed from the event log, live events, bookmarks, streaming
//! lists (sendInitialEvents) and 410 handling.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch as tokio_watch;
use tokio::time::Instant;

use crate::kube::engine;
use crate::kube::error::{ApiError, ApiResult, FieldError};
use crate::kube::http::Query;
use crate::kube::list::Filter;
use crate::kube::negotiate::Format;
use crate::kube::registry::ResourceDef;
use crate::kube::server::Shared;
use crate::kube::store::{EventType, LogEvent};
use crate::kube::table::{self, Include, Printer};
use crate::kube::views;

struct Watcher {
    sh: Arc<Shared>,
    def: Arc<ResourceDef>,
    filter: Filter,
    fmt: Format,
    include: Include,
    printer: Option<Printer>,
    columns_sent: bool,
    cursor: u64,
    queue: VecDeque<Bytes>,
    rv_rx: tokio_watch::Receiver<u64>,
    kill_rx: tokio_watch::Receiver<u64>,
    deadline: Instant,
    bookmark_every: Option<Duration>,
    next_bookmark: Instant,
    done: bool,
}

fn line(etype: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": etype, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn forbidden_opt(field: &str, msg: &str) -> ApiError {
    ApiError::invalid(
        "ListOptions",
        "meta.k8s.io",
        "",
        &[FieldError::forbidden(field, msg)],
    )
}

impl Watcher {
    fn render_obj(&mut self, obj: &Value) -> Value {
        match self.fmt {
            Format::Meta => table::partial_meta(obj),
            Format::Table => {
                let p = self
                    .printer
                    .get_or_insert_with(|| Printer::for_def(&self.def));
                let rv = crate::kube::meta::resource_version(obj)
                    .unwrap_or("")
                    .to_string();
                let t = p.table(
                    std::slice::from_ref(obj),
                    self.include,
                    &rv,
                    None,
                    !self.columns_sent,
                );
                self.columns_sent = true;
                t
            }
            _ => obj.clone(),
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut md = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = match self.fmt {
            Format::Meta => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md})
            }
            Format::Table => {
                json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md, "columnDefinitions": null, "rows": null})
            }
            _ => {
                json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": md})
            }
        };
        line("BOOKMARK", &obj)
    }

    fn render_event(&mut self, ev: &LogEvent) -> Option<Bytes> {
        if *ev.storage != *self.def.storage {
            return None;
        }
        let new_m = self.filter.matches(&ev.obj);
        let old_m = ev.old.as_ref().is_some_and(|o| self.filter.matches(o));
        let etype = match ev.etype {
            EventType::Added if new_m => "ADDED",
            EventType::Modified => match (old_m, new_m) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                _ => return None,
            },
            EventType::Deleted if old_m || new_m => "DELETED",
            _ => return None,
        };
        let plain = self.fmt == Format::Json || self.fmt == Format::Yaml;
        let crd_defaults = self.def.crd.as_ref().is_some_and(|c| c.has_schema);
        if plain && etype == ev.etype.as_str() && views::is_identity(&self.def) && !crd_defaults {
            return Some(ev.line.get_or_init(|| line(etype, &ev.obj)).clone());
        }
        let obj = engine::present(&self.def, &ev.obj);
        let rendered = self.render_obj(&obj);
        Some(line(etype, &rendered))
    }

    fn pull(&mut self) {
        self.rv_rx.borrow_and_update();
        let evs = {
            let st = self.sh.lock();
            st.events_after(self.cursor)
                .ok_or((self.cursor, st.oldest_watchable()))
        };
        match evs {
            Ok(evs) => {
                for ev in evs {
                    self.cursor = ev.rv;
                    if let Some(b) = self.render_event(&ev) {
                        self.queue.push_back(b);
                    }
                }
            }
            Err((cursor, oldest)) => {
                let e = ApiError::expired(format!("too old resource version: {cursor} ({oldest})"));
                self.queue.push_back(line("ERROR", &e.to_status()));
                self.done = true;
            }
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if let Some(b) = self.queue.pop_front() {
                return Some((Ok(b), self));
            }
            if self.done {
                return None;
            }
            self.pull();
            if !self.queue.is_empty() || self.done {
                continue;
            }
            let bookmark_at = self.next_bookmark;
            let bookmarks = self.bookmark_every.is_some();
            tokio::select! {
                r = self.rv_rx.changed() => {
                    if r.is_err() {
                        return None;
                    }
                }
                _ = self.kill_rx.changed() => return None,
                _ = tokio::time::sleep_until(self.deadline) => return None,
                _ = tokio::time::sleep_until(bookmark_at), if bookmarks => {
                    self.pull();
                    if !self.done {
                        let b = self.bookmark(self.cursor, false);
                        self.queue.push_back(b);
                    }
                    self.next_bookmark = Instant::now() + self.bookmark_every.unwrap_or(Duration::from_secs(60));
                }
            }
        }
    }
}

pub fn start(
    sh: Arc<Shared>,
    def: Arc<ResourceDef>,
    filter: Filter,
    q: &Query,
    fmt: Format,
    include: Include,
) -> ApiResult<Response> {
    let rv = q.get("resourceVersion").filter(|r| !r.is_empty()).cloned();
    let send_initial = match q.get("sendInitialEvents").map(String::as_str) {
        Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        _ => None,
    };
    let rv_match = q
        .get("resourceVersionMatch")
        .filter(|r| !r.is_empty())
        .cloned();
    let bookmarks = q
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    match (send_initial, rv_match.as_deref()) {
        (None, Some(_)) => {
            return Err(forbidden_opt(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ))
        }
        (Some(_), m) if m != Some("NotOlderThan") => {
            return Err(forbidden_opt(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ))
        }
        (Some(_), _) if !bookmarks => {
            return Err(forbidden_opt(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ))
        }
        _ => {}
    }
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(sh.opts.default_watch_timeout);
    let mut rv_rx = sh.rv_tx.subscribe();
    rv_rx.borrow_and_update();
    let mut kill_rx = sh.kill_tx.subscribe();
    kill_rx.borrow_and_update();
    let mut w = Watcher {
        sh: sh.clone(),
        def: def.clone(),
        filter,
        fmt,
        include,
        printer: None,
        columns_sent: false,
        cursor: 0,
        queue: VecDeque::new(),
        rv_rx,
        kill_rx,
        deadline: Instant::now() + timeout,
        bookmark_every: if bookmarks {
            Some(sh.opts.bookmark_interval)
        } else {
            None
        },
        next_bookmark: Instant::now() + sh.opts.bookmark_interval,
        done: false,
    };
    {
        let st = sh.lock();
        let initial = send_initial == Some(true) || rv.as_deref().is_none_or(|r| r == "0");
        if initial {
            w.cursor = st.current_rv();
            let objs: Vec<Arc<Value>> = st
                .list(&def.storage, w.filter.ns.as_deref())
                .into_iter()
                .filter(|o| w.filter.matches(o))
                .collect();
            drop(st);
            for o in objs {
                let v = engine::present(&def, &o);
                let r = w.render_obj(&v);
                w.queue.push_back(line("ADDED", &r));
            }
            if send_initial == Some(true) {
                let b = w.bookmark(w.cursor, true);
                w.queue.push_back(b);
            }
        } else {
            let n: u64 = rv.as_deref().unwrap_or("0").parse().map_err(|_| {
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
            if n < st.oldest_watchable() {
                let e = ApiError::expired(format!(
                    "too old resource version: {n} ({})",
                    st.oldest_watchable()
                ));
                w.queue.push_back(line("ERROR", &e.to_status()));
                w.done = true;
            }
            w.cursor = n;
        }
    }
    let stream = futures::stream::unfold(w, |w| w.next());
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}
