//! The object store: objects by storage key, the cluster-wide resourceVersion counter, the
//! bounded event log that watches replay from, and list snapshots for continue tokens.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use crate::kube::meta;
use crate::kube::registry::Registry;

/// (namespace, name); namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change. `obj` is the stored form; `old` the previous state (for selectors).
#[derive(Debug)]
pub struct LogEvent {
    pub rv: u64,
    pub storage: Arc<str>,
    pub etype: EventType,
    pub obj: Arc<Value>,
    pub old: Option<Arc<Value>>,
    /// The `{"type":..,"object":..}\n` line for plain JSON watchers, built once for all of them.
    pub line: OnceLock<Bytes>,
}

/// A consistent list result kept for `continue` tokens.
#[derive(Debug)]
pub struct ListSnapshot {
    pub rv: u64,
    pub items: Vec<Arc<Value>>,
}

#[derive(Debug)]
pub struct State {
    pub registry: Registry,
    objects: HashMap<String, BTreeMap<ObjKey, Arc<Value>>>,
    rv: u64,
    log: VecDeque<Arc<LogEvent>>,
    log_cap: usize,
    /// Events with rv <= compacted_rv are gone from the log.
    compacted_rv: u64,
    snapshots: BTreeMap<u64, Arc<ListSnapshot>>,
    next_snapshot: u64,
    /// owner uid -> dependents (storage, ns, name).
    owners: HashMap<String, HashSet<(String, String, String)>>,
    /// uids of removed objects whose dependents the garbage collector must look at.
    pub gc_queue: Vec<String>,
    /// Objects whose deletion waits on a server-side controller (storage, ns, name).
    pub pending: std::collections::BTreeSet<(String, String, String)>,
    /// Authorization checks made inside writes (user, attributes, allowed), until the HTTP
    /// layer moves them to the request log.
    pub admission_checks: Vec<(String, crate::kube::auth::Attributes, bool)>,
}

const MAX_SNAPSHOTS: usize = 256;

impl State {
    pub fn new(registry: Registry, log_cap: usize) -> Self {
        State {
            registry,
            objects: HashMap::new(),
            rv: 1,
            log: VecDeque::new(),
            log_cap: log_cap.max(1),
            compacted_rv: 0,
            snapshots: BTreeMap::new(),
            next_snapshot: 1,
            owners: HashMap::new(),
            gc_queue: Vec::new(),
            pending: std::collections::BTreeSet::new(),
            admission_checks: Vec::new(),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    /// The oldest resourceVersion a watch may still start from.
    pub fn oldest_watchable(&self) -> u64 {
        self.compacted_rv
    }

    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(storage)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a storage key in key order, optionally restricted to one namespace.
    pub fn list(&self, storage: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(m) = self.objects.get(storage) else {
            return Vec::new();
        };
        match ns {
            Some(ns) => m
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => m.values().cloned().collect(),
        }
    }

    pub fn count(&self, storage: &str) -> usize {
        self.objects.get(storage).map(|m| m.len()).unwrap_or(0)
    }

    pub fn storages(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }

    pub fn total_objects(&self) -> usize {
        self.objects.values().map(|m| m.len()).sum()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn append(&mut self, ev: LogEvent) {
        self.log.push_back(Arc::new(ev));
        while self.log.len() > self.log_cap {
            if let Some(old) = self.log.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
    }

    fn index_owners(&mut self, storage: &str, obj: &Value, add: bool) {
        let ns = meta::namespace(obj).to_string();
        let name = meta::name(obj).to_string();
        for uid in meta::owner_uids(obj) {
            let key = (storage.to_string(), ns.clone(), name.clone());
            if add {
                self.owners.entry(uid).or_default().insert(key);
            } else if let Some(set) = self.owners.get_mut(&uid) {
                set.remove(&key);
                if set.is_empty() {
                    self.owners.remove(&uid);
                }
            }
        }
    }

    /// Stores `obj` under a new resourceVersion and logs ADDED or MODIFIED.
    pub fn put(&mut self, storage: &str, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        meta::set_resource_version(&mut obj, rv);
        let key = (
            meta::namespace(&obj).to_string(),
            meta::name(&obj).to_string(),
        );
        let obj = Arc::new(obj);
        let old = self
            .objects
            .entry(storage.to_string())
            .or_default()
            .insert(key, obj.clone());
        if let Some(o) = &old {
            self.index_owners(storage, o, false);
        }
        self.index_owners(storage, &obj, true);
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.append(LogEvent {
            rv,
            storage: Arc::from(storage),
            etype,
            obj: obj.clone(),
            old,
            line: OnceLock::new(),
        });
        obj
    }

    /// Removes an object; the DELETED event carries the deletion's own resourceVersion.
    pub fn remove(&mut self, storage: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let old = self
            .objects
            .get_mut(storage)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.index_owners(storage, &old, false);
        let rv = self.next_rv();
        let mut gone = (*old).clone();
        meta::set_resource_version(&mut gone, rv);
        let gone = Arc::new(gone);
        if let Some(uid) = meta::uid(&old) {
            self.gc_queue.push(uid.to_string());
        }
        self.append(LogEvent {
            rv,
            storage: Arc::from(storage),
            etype: EventType::Deleted,
            obj: gone.clone(),
            old: Some(old),
            line: OnceLock::new(),
        });
        Some(gone)
    }

    /// Drops a whole storage key without events (used after a CRD's objects are all deleted).
    pub fn drop_storage(&mut self, storage: &str) {
        self.objects.remove(storage);
    }

    pub fn dependents(&self, owner_uid: &str) -> Vec<(String, String, String)> {
        self.owners
            .get(owner_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Events with rv > after, or None if some of them were compacted away.
    pub fn events_after(&self, after: u64) -> Option<Vec<Arc<LogEvent>>> {
        if after < self.compacted_rv {
            return None;
        }
        let start = self.log.partition_point(|e| e.rv <= after);
        Some(self.log.range(start..).cloned().collect())
    }

    /// Forgets the whole event log and every continue token (test hook for 410 handling).
    pub fn compact(&mut self) {
        self.compacted_rv = self.rv;
        self.log.clear();
        self.snapshots.clear();
    }

    pub fn save_snapshot(&mut self, snap: ListSnapshot) -> u64 {
        let id = self.next_snapshot;
        self.next_snapshot += 1;
        self.snapshots.insert(id, Arc::new(snap));
        while self.snapshots.len() > MAX_SNAPSHOTS {
            let first = *self.snapshots.keys().next().unwrap_or(&0);
            self.snapshots.remove(&first);
        }
        id
    }

    pub fn snapshot(&self, id: u64) -> Option<Arc<ListSnapshot>> {
        self.snapshots.get(&id).cloned()
    }
}
