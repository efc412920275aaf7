//! One shared, trimmed cache of the Deployments, StatefulSets and DaemonSets in the operator's
//! scope: a watch per kind and scope (not per controller), each object cut down to a
//! [`Workload`] (its labels, the Secrets its pod template reads, its restart stamps and rollout
//! counts) as it arrives. A rotation in flight reads its workloads here instead of LISTing them
//! at every reconcile, and a change of a workload wakes the rotations in flight that depend on
//! it (before or after the change).
//!
//! Until a kind's first full list has arrived (or while its watch is refused, e.g. RBAC), reads
//! fall back to a LIST, so the error a reconcile reports is the API server's own.

use crate::api::WorkloadKind;
use crate::workloads::{self, Workload};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// The kinds the cache holds (those a rotation restarts by its stamp).
const KINDS: [WorkloadKind; 3] = [
    WorkloadKind::Deployment,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
];

/// Workloads per page of a (re)list. A page arrives whole, every workload in full (pod
/// template, managed fields) until it is cut down: with kube's default of 500, the first list
/// of 5,000 small Deployments held 12 MB at once (scale bench, heaptrack), more with real pod
/// specs. 100 costs 4 more LISTs per 500 workloads, once per relist.
const LIST_PAGE: u32 = 100;

/// Workloads of one kind in one namespace, by name; shared, so a read copies no workload.
type Named = BTreeMap<String, Arc<Workload>>;

/// The cache of one kind in one watched scope (a namespace, or the whole cluster).
struct Part {
    kind: WorkloadKind,
    scope: Option<String>,
    state: RwLock<PartState>,
}

#[derive(Default)]
struct PartState {
    /// Its first full list has arrived.
    ready: bool,
    by_namespace: BTreeMap<String, Named>,
}

impl Part {
    fn covers(&self, namespace: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == namespace)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, PartState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, PartState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps `w` unless the cache holds a newer generation of the same object: what we wrote
/// ourselves ([`WorkloadCache::wrote`]) must not be undone by a watch event from before it.
/// Returns the workload held before and the one held now.
fn upsert(
    st: &mut PartState,
    namespace: String,
    w: Workload,
) -> (Option<Arc<Workload>>, Arc<Workload>) {
    let named = st.by_namespace.entry(namespace).or_default();
    let before = named.get(&w.name).cloned();
    match &before {
        Some(held) if held.uid == w.uid && held.generation > w.generation => {
            (before.clone(), held.clone())
        }
        _ => {
            let now = Arc::new(w);
            named.insert(now.name.clone(), now.clone());
            (before, now)
        }
    }
}

/// What the cache saw change, for waking the rotations it concerns.
#[derive(Clone, Debug)]
pub enum Change {
    /// One workload: as held before (`None`: new) and after (`None`: deleted).
    One {
        namespace: String,
        before: Option<Arc<Workload>>,
        after: Option<Arc<Workload>>,
    },
    /// Any workload of the namespace may have changed (a relist replaced it).
    Namespace(String),
}

impl Change {
    pub fn namespace(&self) -> &str {
        match self {
            Change::One { namespace, .. } | Change::Namespace(namespace) => namespace,
        }
    }
}

/// Shared by every controller of the operator (cheap to clone).
#[derive(Clone)]
pub struct WorkloadCache {
    parts: Arc<Vec<Part>>,
    /// Workloads that changed.
    changed: broadcast::Sender<Change>,
}

impl WorkloadCache {
    /// A cache for these scopes (`None`: the whole cluster); empty until [`Self::run`] runs.
    pub fn new(scopes: &[Option<String>]) -> Self {
        let parts = scopes
            .iter()
            .flat_map(|scope| {
                KINDS.into_iter().map(|kind| Part {
                    kind,
                    scope: scope.clone(),
                    state: RwLock::default(),
                })
            })
            .collect();
        Self {
            parts: Arc::new(parts),
            changed: broadcast::channel(1024).0,
        }
    }

    /// Workloads that change from now on. A receiver that falls behind gets `Lagged` and must
    /// treat every workload as changed.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changed.subscribe()
    }

    /// Watches every part until the process ends.
    pub async fn run(&self, client: Client) {
        let watches = self.parts.iter().map(|part| {
            let client = client.clone();
            async move {
                match part.kind {
                    WorkloadKind::Deployment => {
                        self.watch::<Deployment>(client, part, Workload::from_deployment)
                            .await
                    }
                    WorkloadKind::StatefulSet => {
                        self.watch::<StatefulSet>(client, part, Workload::from_stateful_set)
                            .await
                    }
                    WorkloadKind::DaemonSet => {
                        self.watch::<DaemonSet>(client, part, Workload::from_daemon_set)
                            .await
                    }
                }
            }
        });
        futures::future::join_all(watches).await;
    }

    async fn watch<K>(&self, client: Client, part: &Part, convert: fn(&K) -> Option<Workload>)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        let api: Api<K> = match &part.scope {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let mut events = watcher::watcher(api, watcher::Config::default().page_size(LIST_PAGE))
            .default_backoff()
            .boxed();
        // A relist builds here and replaces the part at once when complete.
        let mut relist: Option<BTreeMap<String, Named>> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => relist = Some(BTreeMap::new()),
                Ok(Event::InitApply(o)) => {
                    if let (Some(list), Some(w)) = (relist.as_mut(), convert(&o)) {
                        let ns = o.namespace().unwrap_or_default();
                        list.entry(ns)
                            .or_default()
                            .insert(w.name.clone(), Arc::new(w));
                    }
                }
                Ok(Event::InitDone) => {
                    let list = relist.take().unwrap_or_default();
                    let mut touched: BTreeSet<String> = list.keys().cloned().collect();
                    {
                        let mut st = part.write();
                        touched.extend(st.by_namespace.keys().cloned());
                        st.by_namespace = list;
                        st.ready = true;
                    }
                    for ns in touched {
                        let _ = self.changed.send(Change::Namespace(ns));
                    }
                }
                Ok(Event::Apply(o)) => {
                    let ns = o.namespace().unwrap_or_default();
                    if let Some(w) = convert(&o) {
                        let (before, after) = upsert(&mut part.write(), ns.clone(), w);
                        let _ = self.changed.send(Change::One {
                            namespace: ns,
                            before,
                            after: Some(after),
                        });
                    }
                }
                Ok(Event::Delete(o)) => {
                    let ns = o.namespace().unwrap_or_default();
                    let before = part
                        .write()
                        .by_namespace
                        .get_mut(&ns)
                        .and_then(|named| named.remove(&o.name_any()));
                    let _ = self.changed.send(Change::One {
                        namespace: ns,
                        before,
                        after: None,
                    });
                }
                Err(e) => {
                    tracing::debug!(kind = part.kind.as_str(), error = %e, "workload watch failed; retrying")
                }
            }
        }
    }

    /// A workload as the operator just wrote it (the answer to its own PATCH).
    pub fn wrote(&self, namespace: &str, w: Workload) {
        if let Some(part) = self
            .parts
            .iter()
            .find(|p| p.kind == w.kind && p.covers(namespace))
        {
            let mut st = part.write();
            if st.ready {
                upsert(&mut st, namespace.to_owned(), w);
            }
        }
    }

    /// Every workload of these namespaces, from the cache once each kind covering them has
    /// its first full list, else by LIST.
    pub async fn list_in(
        &self,
        client: &Client,
        namespaces: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Vec<Arc<Workload>>>, kube::Error> {
        match self.cached(namespaces) {
            Some(out) => Ok(out),
            None => Ok(workloads::list_in(client, namespaces)
                .await?
                .into_iter()
                .map(|(ns, all)| (ns, all.into_iter().map(Arc::new).collect()))
                .collect()),
        }
    }

    fn cached(
        &self,
        namespaces: &BTreeSet<String>,
    ) -> Option<BTreeMap<String, Vec<Arc<Workload>>>> {
        let mut out = BTreeMap::new();
        for ns in namespaces {
            let mut all = Vec::new();
            for kind in KINDS {
                let part = self.parts.iter().find(|p| p.kind == kind && p.covers(ns))?;
                let st = part.read();
                if !st.ready {
                    return None;
                }
                all.extend(
                    st.by_namespace
                        .get(ns)
                        .into_iter()
                        .flat_map(|n| n.values().cloned()),
                );
            }
            out.insert(ns.clone(), all);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(uid: &str, generation: i64, stamp: Option<&str>) -> Workload {
        Workload {
            uid: uid.into(),
            stamps: stamp
                .map(|s| BTreeMap::from([("tokenrotator.io/rotation-x".into(), s.into())]))
                .unwrap_or_default(),
            generation,
            observed_generation: generation,
            ..Workload::settled("api")
        }
    }

    fn ready(cache: &WorkloadCache) {
        for p in cache.parts.iter() {
            p.write().ready = true;
        }
    }

    fn api(cache: &WorkloadCache) -> Workload {
        let ns = BTreeSet::from(["shop".to_string()]);
        Workload::clone(&cache.cached(&ns).unwrap()["shop"][0])
    }

    #[test]
    fn a_late_watch_event_does_not_undo_our_own_write() {
        let cache = WorkloadCache::new(&[None]);
        assert!(
            cache.cached(&BTreeSet::from(["shop".into()])).is_none(),
            "not listed yet: the caller LISTs"
        );
        ready(&cache);
        cache.wrote("shop", workload("u1", 2, Some("r1")));
        // The watch delivers the version before our stamp after we wrote.
        let (before, after) = upsert(
            &mut cache.parts[0].write(),
            "shop".into(),
            workload("u1", 1, None),
        );
        assert_eq!(api(&cache).stamp("tokenrotator.io/rotation-x"), Some("r1"));
        // What it tells: the version held before and after (both ours).
        assert_eq!(before.as_deref(), Some(&api(&cache)));
        assert_eq!(*after, api(&cache));
        // Status updates of our version and later ones replace it.
        let mut later = workload("u1", 2, Some("r1"));
        later.available = 0;
        upsert(&mut cache.parts[0].write(), "shop".into(), later.clone());
        assert_eq!(api(&cache), later);
        // Deleted and re-created under the same name: a new object, whatever its generation.
        upsert(
            &mut cache.parts[0].write(),
            "shop".into(),
            workload("u2", 1, None),
        );
        assert_eq!(api(&cache).uid, "u2");
    }

    #[test]
    fn a_namespace_outside_every_scope_is_listed_instead() {
        let cache = WorkloadCache::new(&[Some("shop".into())]);
        ready(&cache);
        assert!(cache.cached(&BTreeSet::from(["shop".into()])).is_some());
        assert!(cache.cached(&BTreeSet::from(["other".into()])).is_none());
    }
}
