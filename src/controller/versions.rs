//! The resourceVersion of each object as this process last read it fresh or wrote it. A watch
//! cache holding exactly that version has caught up with our own writes, so it can be read
//! instead of the API server: a change by anyone else since is as unseen as it would be had it
//! come just after a GET.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

pub struct KnownVersions<K>(Mutex<HashMap<K, String>>);

impl<K> Default for KnownVersions<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash> KnownVersions<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the version just read or written (`None`: not known, or deleted).
    pub fn record(&self, key: K, version: Option<String>) {
        let mut known = self.lock();
        match version {
            Some(v) => known.insert(key, v),
            None => known.remove(&key),
        };
    }

    /// Whether a cached object at `version` is the one last read or written.
    pub fn is_current(&self, key: &K, version: Option<&str>) -> bool {
        version.is_some_and(|v| self.lock().get(key).is_some_and(|k| k == v))
    }
}
