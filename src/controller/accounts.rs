//! Each resource cache with an index by Twilio account, both kept by one watch. The checks
//! that compare a resource with the others on its account (claims, conflicts, wake-ups) read
//! those few instead of every cached resource: with 1,000 resources those scans were a seventh
//! of the operator's CPU while rotating, and they grow with the square of the number.
//!
//! The index mirrors the store: it takes the same watch events, each just before the store
//! does (a relist replaces it whole at its end, as it does the store), and a lookup checks each
//! candidate against the store's current object, so it never answers with a resource the store
//! does not show on the account.

use super::locks::{account_key, same_account};
use super::subject::Rotated;
use crate::api::TokenRotationSpec;
use futures::{Stream, TryStreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::subject::ResourceKey as Key;

/// A resource cache and its index by account.
pub struct Indexed<K: Rotated> {
    store: Store<K>,
    index: Arc<Mutex<Index>>,
}

impl<K: Rotated> std::ops::Deref for Indexed<K> {
    type Target = Store<K>;
    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

impl<K: Rotated> Indexed<K> {
    /// A cache of `K` filled by `events` (a watch), and the stream of the objects it applied,
    /// for a controller to be triggered by.
    pub fn of(
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ) -> (
        Self,
        impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    ) {
        use kube::runtime::WatchStreamExt;
        let (store, writer) = reflector::store();
        let index: Arc<Mutex<Index>> = Arc::default();
        let kept = index.clone();
        // The index takes each event before the store: once the store says it is ready (what
        // reconciles wait for), the index holds the whole list too.
        let events = events.inspect_ok(move |event| lock(&kept).apply(event));
        let applied = reflector::reflector(writer, events).applied_objects();
        (Self { store, index }, applied)
    }

    /// The cached resources rotating on the account of `spec`, by the spec each rotates with
    /// now ([`Rotated::effective_spec`]).
    pub fn on_account(&self, spec: &TokenRotationSpec) -> Vec<Arc<K>> {
        let account = account_key(&spec.twilio.account_sid, spec.twilio.region.as_deref());
        let candidates: Vec<Key> = lock(&self.index)
            .current
            .by_account
            .get(&account)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default();
        self.confirmed(candidates, |o| same_account(o.effective_spec(), spec))
    }

    /// The cached resources that wait for a place under `--max-concurrent-rotations`.
    pub fn waiting_for_capacity(&self) -> Vec<Arc<K>> {
        let candidates: Vec<Key> = lock(&self.index)
            .current
            .waiting_for_capacity
            .iter()
            .cloned()
            .collect();
        self.confirmed(candidates, |o| waits_for_capacity(o))
    }

    /// The candidates the index named whose object in the store, as it is now, still qualifies
    /// (the index is updated just before the store).
    fn confirmed(&self, candidates: Vec<Key>, qualifies: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        candidates
            .into_iter()
            .filter_map(|key| self.store.get(&object_ref(key)))
            .filter(|o| qualifies(o.as_ref()))
            .collect()
    }
}

/// A cache filled with `objects`, for tests.
#[cfg(test)]
pub async fn filled<K: Rotated>(objects: Vec<K>) -> Indexed<K> {
    use futures::StreamExt;
    let events = std::iter::once(watcher::Event::Init)
        .chain(objects.into_iter().map(watcher::Event::InitApply))
        .chain(std::iter::once(watcher::Event::InitDone));
    let (cache, applied) = Indexed::of(futures::stream::iter(events.map(Ok)));
    applied.for_each(|_| async {}).await;
    cache
}

fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(|e| e.into_inner())
}

fn object_ref<K: Rotated>((namespace, name): Key) -> ObjectRef<K> {
    let r = ObjectRef::new(&name);
    match namespace {
        Some(ns) => r.within(&ns),
        None => r,
    }
}

fn waits_for_capacity<K: Rotated>(o: &K) -> bool {
    super::waiting_for(o.rotation_status()) == Some(crate::rotation::reasons::WAITING_FOR_CAPACITY)
}

#[derive(Default)]
struct Index {
    current: Entries,
    /// Filled by a relist under way; replaces `current` at its end.
    relisted: Option<Entries>,
}

#[derive(Default)]
struct Entries {
    by_account: HashMap<String, HashSet<Key>>,
    account_of: HashMap<Key, String>,
    waiting_for_capacity: HashSet<Key>,
}

impl Index {
    fn apply<K: Rotated>(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(o) => self.current.place(o),
            watcher::Event::Delete(o) => self.current.remove(&o.resource_key()),
            watcher::Event::Init => self.relisted = Some(Entries::default()),
            watcher::Event::InitApply(o) => self.relisted.get_or_insert_default().place(o),
            watcher::Event::InitDone => self.current = self.relisted.take().unwrap_or_default(),
        }
    }
}

impl Entries {
    fn place<K: Rotated>(&mut self, o: &K) {
        let key = o.resource_key();
        let spec = o.effective_spec();
        let account = account_key(&spec.twilio.account_sid, spec.twilio.region.as_deref());
        if waits_for_capacity(o) {
            self.waiting_for_capacity.insert(key.clone());
        } else {
            self.waiting_for_capacity.remove(&key);
        }
        if self.account_of.get(&key) == Some(&account) {
            return;
        }
        self.remove_from_account(&key);
        self.by_account
            .entry(account.clone())
            .or_default()
            .insert(key.clone());
        self.account_of.insert(key, account);
    }

    fn remove(&mut self, key: &Key) {
        self.waiting_for_capacity.remove(key);
        self.remove_from_account(key);
    }

    fn remove_from_account(&mut self, key: &Key) {
        let Some(account) = self.account_of.remove(key) else {
            return;
        };
        if let Some(keys) = self.by_account.get_mut(&account) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_account.remove(&account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TokenRotation;
    use futures::StreamExt;
    use kube::ResourceExt;

    fn tr(ns: &str, name: &str, account: &str, waiting: bool) -> TokenRotation {
        let status = if waiting {
            serde_json::json!({"conditions": [{"type": "Rotating", "status": "False",
                "reason": "WaitingForCapacity", "message": "", "lastTransitionTime": "2026-11-23T10:00:00Z"}]})
        } else {
            serde_json::json!({})
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tokenrotator.io/v1alpha1", "kind": "TokenRotation",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"twilio": {"accountSid": account,
                                "credentialsSecretRef": {"name": "a", "key": "k"}},
                     "authToken": {}, "secrets": [{"name": "c", "tokenKey": "T"}]},
            "status": status
        }))
        .unwrap()
    }

    fn names(found: Vec<Arc<TokenRotation>>) -> Vec<String> {
        let mut n: Vec<String> = found.iter().map(|o| o.name_any()).collect();
        n.sort();
        n
    }

    fn spec(account: &str) -> TokenRotationSpec {
        tr("x", "x", account, false).spec
    }

    #[tokio::test]
    async fn the_index_follows_the_watch_and_a_relist_replaces_it() {
        use watcher::Event::*;
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let (cache, applied) = Indexed::<TokenRotation>::of(rx.map(Ok));
        let mut applied = Box::pin(applied);
        let send = |e| {
            tx.unbounded_send(e).unwrap();
        };
        send(Init);
        send(InitApply(tr("shop", "a", "AC1", false)));
        send(InitApply(tr("shop", "b", "ac1", true)));
        send(InitApply(tr("billing", "c", "AC2", false)));
        send(InitDone);
        send(Apply(tr("billing", "d", "AC1", false)));
        for _ in 0..4 {
            applied.next().await;
        }
        // The account SID is compared without case, as the locks do.
        assert_eq!(names(cache.on_account(&spec("AC1"))), ["a", "b", "d"]);
        assert_eq!(names(cache.waiting_for_capacity()), ["b"]);
        // A resource moves to another account; one is deleted; one stops waiting.
        send(Apply(tr("shop", "a", "AC2", false)));
        send(Delete(tr("billing", "d", "AC1", false)));
        send(Apply(tr("shop", "b", "AC1", false)));
        for _ in 0..2 {
            applied.next().await;
        }
        assert_eq!(names(cache.on_account(&spec("AC1"))), ["b"]);
        assert_eq!(names(cache.on_account(&spec("AC2"))), ["a", "c"]);
        assert!(cache.waiting_for_capacity().is_empty());
        // A relist (the watch was lost): what it does not show is gone, from both.
        send(Init);
        send(InitApply(tr("shop", "a", "AC2", false)));
        send(InitDone);
        drop(tx);
        while applied.next().await.is_some() {}
        assert_eq!(names(cache.on_account(&spec("AC2"))), ["a"]);
        assert!(cache.on_account(&spec("AC1")).is_empty());
        assert!(lock(&cache.index).current.account_of.len() == 1);
    }
}
