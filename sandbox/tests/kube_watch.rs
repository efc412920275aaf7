//! Watch and list semantics: event replay, bookmarks, 410 handling, streaming lists, paging,
//! selectors, metadata-only requests, kube-rs watcher/reflector/Controller recovery, and event
//! ordering under 10,000 concurrent writes.

mod kube_common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube_common::{assert_status, Raw};
use sandbox::kube::{ApiServer, ApiServerOptions};
use serde_json::{json, Value};

/// Reads newline-delimited watch events until `n` arrived, the stream ended, or `wait` passed.
async fn watch_lines(base: &str, path: &str, n: usize, wait: Duration) -> (Vec<Value>, bool) {
    sandbox::kube::ensure_crypto_provider();
    sandbox::kube::ensure_crypto_provider();
    let mut resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut ended = false;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => {
                buf.extend_from_slice(&c);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    out.push(serde_json::from_slice(&line).unwrap());
                }
            }
            Ok(_) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    (out, ended)
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"v": "0"}})
}

fn rv_of(e: &Value) -> u64 {
    e["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_reports_deletions() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let base = "/api/v1/namespaces/default/configmaps";
    let a = raw.post(base, cm("a", json!({}))).await.body;
    let start = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    raw.post(base, cm("b", json!({}))).await;
    raw.patch(
        &format!("{base}/a"),
        "application/merge-patch+json",
        r#"{"data":{"v":"1"}}"#,
    )
    .await;
    let del = raw.delete(&format!("{base}/b")).await;
    assert_eq!(del.status, 200);
    let (evs, _) = watch_lines(
        &s.url(),
        &format!("{base}?watch=true&resourceVersion={start}"),
        3,
        Duration::from_secs(5),
    )
    .await;
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(evs[2]["object"]["metadata"]["name"], "b");
    assert!(
        rv_of(&evs[2]) > rv_of(&evs[1]),
        "DELETED carries the deletion's own resourceVersion"
    );
    assert!(evs.windows(2).all(|w| rv_of(&w[0]) < rv_of(&w[1])));

    // No resourceVersion: synthetic ADDED for everything first, then live events.
    let (evs, _) = watch_lines(
        &s.url(),
        &format!("{base}?watch=1"),
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(evs[0]["type"], "ADDED");
    assert_eq!(evs[0]["object"]["metadata"]["name"], "a");

    // Label selectors: leaving the selector is a DELETED, entering an ADDED.
    raw.post(base, cm("sel", json!({"team": "x"}))).await;
    let rv0 = raw.get(base).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    raw.patch(
        &format!("{base}/sel"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"team":"y"}}}"#,
    )
    .await;
    raw.patch(
        &format!("{base}/sel"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"team":"x"}}}"#,
    )
    .await;
    let (evs, _) = watch_lines(
        &s.url(),
        &format!("{base}?watch=1&labelSelector=team%3Dx&resourceVersion={rv0}"),
        2,
        Duration::from_secs(5),
    )
    .await;
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["DELETED", "ADDED"]);
}

#[tokio::test]
async fn watch_timeout_bookmarks_and_expired_resource_versions() {
    let s = ApiServer::start_with(ApiServerOptions {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let raw = Raw::new(&s.url());
    let base = "/api/v1/namespaces/default/configmaps";
    let now = raw.get(base).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = std::time::Instant::now();
    let (evs, ended) = watch_lines(
        &s.url(),
        &format!("{base}?watch=1&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion={now}"),
        100,
        Duration::from_secs(10),
    )
    .await;
    assert!(ended, "closed at timeoutSeconds");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let bm = evs
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark");
    assert_eq!(bm["object"]["kind"], "ConfigMap");
    assert_eq!(bm["object"]["apiVersion"], "v1");
    assert!(bm["object"]["metadata"]["resourceVersion"].is_string());

    raw.post(base, cm("x", json!({}))).await;
    s.compact();
    let (evs, ended) = watch_lines(
        &s.url(),
        &format!("{base}?watch=1&resourceVersion={now}"),
        2,
        Duration::from_secs(5),
    )
    .await;
    assert!(ended, "closed after the ERROR");
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["type"], "ERROR");
    assert_eq!(evs[0]["object"]["code"], 410);
    assert_eq!(evs[0]["object"]["reason"], "Expired");
    assert!(evs[0]["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("too old resource version: {now} (")));
}

#[tokio::test]
async fn streaming_lists_end_with_an_annotated_bookmark() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let base = "/api/v1/namespaces/default/configmaps";
    raw.post(base, cm("one", json!({}))).await;
    raw.post(base, cm("two", json!({}))).await;
    let (evs, _) = watch_lines(
        &s.url(),
        &format!("{base}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion="),
        3,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(evs[0]["type"], "ADDED");
    assert_eq!(evs[1]["type"], "ADDED");
    assert_eq!(evs[2]["type"], "BOOKMARK");
    assert_eq!(
        evs[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let r = raw
        .get(&format!(
            "{base}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
        ))
        .await;
    assert_status(&r, 422, "Invalid");
    let r = raw
        .get(&format!("{base}?resourceVersionMatch=NotOlderThan"))
        .await;
    let st = assert_status(&r, 422, "Invalid");
    assert!(st["message"]
        .as_str()
        .unwrap()
        .contains("resourceVersionMatch is forbidden unless resourceVersion is provided"));
}

#[tokio::test]
async fn paging_is_a_snapshot_and_metadata_only_requests_work() {
    let s = ApiServer::start().await.unwrap();
    let raw = Raw::new(&s.url());
    let base = "/api/v1/namespaces/default/configmaps";
    for i in 0..5 {
        raw.post(base, cm(&format!("c{i}"), json!({"i": i.to_string()})))
            .await;
    }
    let p1 = raw.get(&format!("{base}?limit=2")).await.body;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    assert_eq!(p1["metadata"]["remainingItemCount"], 3);
    raw.post(base, cm("c9", json!({}))).await;
    let mut names: Vec<String> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let mut cont = p1["metadata"]["continue"].as_str().unwrap().to_string();
    loop {
        let p = raw
            .get(&format!("{base}?limit=2&continue={cont}"))
            .await
            .body;
        assert_eq!(
            p["metadata"]["resourceVersion"], p1["metadata"]["resourceVersion"],
            "pages share the first page's RV"
        );
        names.extend(
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match p["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => break,
        }
    }
    assert_eq!(
        names,
        ["c0", "c1", "c2", "c3", "c4"],
        "created-after-first-page objects are not in the snapshot"
    );

    let r = raw
        .send_h(
            "GET",
            &format!("{base}?labelSelector=i%20in%20(1,3)"),
            None,
            None,
            &[(
                "accept",
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            )],
        )
        .await;
    assert_eq!(r.body["kind"], "PartialObjectMetadataList");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["items"][0]["kind"], "PartialObjectMetadata");
    assert!(r.body["items"][0].get("data").is_none());
    let one = raw
        .send_h(
            "GET",
            &format!("{base}/c1"),
            None,
            None,
            &[(
                "accept",
                "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            )],
        )
        .await;
    assert_eq!(one.body["kind"], "PartialObjectMetadata");
    assert_eq!(one.body["metadata"]["name"], "c1");

    // kube-rs metadata watcher
    let client = s.client().await;
    let api: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::namespaced(client, "default");
    let mut stream = Box::pin(watcher(api, watcher::Config::default()).applied_objects());
    let first = stream.try_next().await.unwrap().unwrap();
    assert!(first.metadata.name.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_reflector_and_controller_survive_disconnects_and_410() {
    use kube::runtime::controller::{Action, Controller};
    let s = ApiServer::start().await.unwrap();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let mk =
        |n: &str| serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": n}})).unwrap();
    api.create(&pp, &mk("pre")).await.unwrap();

    for streaming in [false, true] {
        let (reader, writer) = reflector::store::<ConfigMap>();
        let cfg = if streaming {
            watcher::Config::default().streaming_lists()
        } else {
            watcher::Config::default()
        };
        let stream = reflector(writer, watcher(api.clone(), cfg))
            .default_backoff()
            .applied_objects();
        let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
        reader.wait_until_ready().await.unwrap();
        let wait_for = |name: String| {
            let reader = reader.clone();
            async move {
                for _ in 0..300 {
                    if reader
                        .state()
                        .iter()
                        .any(|o| o.metadata.name.as_deref() == Some(name.as_str()))
                    {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            }
        };
        let tag = if streaming { "s" } else { "l" };
        api.create(&pp, &mk(&format!("{tag}1"))).await.unwrap();
        assert!(wait_for(format!("{tag}1")).await);
        s.drop_watches();
        api.create(&pp, &mk(&format!("{tag}2"))).await.unwrap();
        assert!(
            wait_for(format!("{tag}2")).await,
            "re-watched after a dropped connection"
        );
        s.drop_watches();
        api.create(&pp, &mk(&format!("{tag}3"))).await.unwrap();
        s.compact();
        api.create(&pp, &mk(&format!("{tag}4"))).await.unwrap();
        assert!(wait_for(format!("{tag}4")).await, "relisted after 410");
        assert!(wait_for(format!("{tag}3")).await);
        task.abort();
    }

    let seen = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let seen2 = seen.clone();
    let ctrl = Controller::new(api.clone(), watcher::Config::default())
        .run(
            move |o: Arc<ConfigMap>, _ctx: Arc<()>| {
                let seen = seen2.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .insert(o.metadata.name.clone().unwrap());
                    Ok::<_, kube::Error>(Action::await_change())
                }
            },
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            Arc::new(()),
        )
        .for_each(|_| async {});
    let task = tokio::spawn(ctrl);
    let has = |n: &'static str| {
        let seen = seen.clone();
        async move {
            for _ in 0..300 {
                if seen.lock().unwrap().contains(n) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    };
    api.create(&pp, &mk("c1")).await.unwrap();
    assert!(has("c1").await);
    s.drop_watches();
    s.compact();
    api.create(&pp, &mk("c2")).await.unwrap();
    assert!(
        has("c2").await,
        "controller reconciles after disconnect + 410"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_lost_or_reordered_under_10000_concurrent_writes() {
    let s = ApiServer::start().await.unwrap();
    let url = s.url();
    let base = "/api/v1/namespaces/default/configmaps";
    let start = Raw::new(&url).get(base).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    const WRITERS: usize = 8;
    const PER: usize = 1250;
    let watch_url = url.clone();
    let watcher = tokio::spawn(async move {
        watch_lines(
            &watch_url,
            &format!("{base}?watch=1&resourceVersion={start}"),
            WRITERS * PER,
            Duration::from_secs(60),
        )
        .await
        .0
    });
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let raw = Raw::new(&url);
            let mut rvs = Vec::new();
            for i in 0..PER {
                // Creates and updates interleave: every 5th write updates the writer's first object.
                let r = if i % 5 == 4 {
                    raw.patch(
                        &format!("{base}/w{w}-0"),
                        "application/merge-patch+json",
                        &format!(r#"{{"data":{{"v":"{i}"}}}}"#),
                    )
                    .await
                } else {
                    raw.post(base, cm(&format!("w{w}-{i}"), json!({}))).await
                };
                assert!(r.status == 200 || r.status == 201, "{}", r.text);
                rvs.push(
                    r.body["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
            }
            rvs
        }));
    }
    let mut written = HashSet::new();
    for w in writers {
        for rv in w.await.unwrap() {
            assert!(written.insert(rv), "resourceVersions are unique");
        }
    }
    let events = watcher.await.unwrap();
    assert_eq!(
        events.len(),
        WRITERS * PER,
        "every write observed exactly once"
    );
    let seen: Vec<u64> = events.iter().map(rv_of).collect();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing resourceVersions"
    );
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), written);
}
