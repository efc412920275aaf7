//! The resourceVersion of each object as this process last read it fresh or wrote it. A watch
//! cache holding exactly that version has caught up with our own writes, so it can be read
//! instead of the API server: a change by anyone else since is as unseen as it would be had it
//! come just after a GET.
//!
//! A cache that still holds one of the versions our own writes replaced (their watch events
//! are on the way) is behind only by those writes: the object as we last wrote it is then as
//! fresh as the cache would be once caught up, and is read instead of a GET. Our writes carry
//! the version they replace, so the versions we wrote in a row have no one else's in between.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

/// How many replaced versions of one object are remembered (a reconcile writes at most four
/// times: finalizer, status before the step, status after it, finalizer removed).
const REPLACED: usize = 8;

pub struct KnownVersions<K, V>(Mutex<HashMap<K, Known<V>>>);

struct Known<V> {
    version: String,
    /// The object at `version`, when we wrote it and the cache has not caught up yet.
    written: Option<V>,
    /// Versions our writes replaced since the cache last caught up, oldest first.
    replaced: Vec<String>,
}

/// What a cache read of an object is worth.
#[derive(Debug, PartialEq)]
pub enum Lookup<V> {
    /// The cache holds the version last read fresh or written.
    Current,
    /// The cache is behind only by our own writes: the object as last written.
    Written(V),
    /// Anything else: read it fresh.
    Unknown,
}

impl<K, V> Default for KnownVersions<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash, V: Clone> KnownVersions<K, V> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Known<V>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the version just read fresh (`None`: not known, or deleted).
    pub fn record(&self, key: K, version: Option<String>) {
        let mut known = self.lock();
        match version {
            Some(v) => {
                if known.get(&key).is_none_or(|k| k.version != v) {
                    known.insert(
                        key,
                        Known {
                            version: v,
                            written: None,
                            replaced: Vec::new(),
                        },
                    );
                }
            }
            None => {
                known.remove(&key);
            }
        }
    }

    /// Remembers an object as our write of it just returned it, at `version`.
    pub fn wrote(&self, key: K, version: String, object: V) {
        let mut known = self.lock();
        match known.get_mut(&key) {
            Some(k) if k.version == version => {}
            Some(k) => {
                let before = std::mem::replace(&mut k.version, version);
                k.replaced.push(before);
                if k.replaced.len() > REPLACED {
                    k.replaced.remove(0);
                }
                k.written = Some(object);
            }
            None => {
                known.insert(
                    key,
                    Known {
                        version,
                        written: Some(object),
                        replaced: Vec::new(),
                    },
                );
            }
        }
    }

    /// What a cached object at `version` is worth (see [`Lookup`]). Once the cache holds the
    /// version last known, the written copy and the replaced versions are let go.
    pub fn lookup(&self, key: &K, version: Option<&str>) -> Lookup<V> {
        let Some(version) = version else {
            return Lookup::Unknown;
        };
        let mut known = self.lock();
        let Some(k) = known.get_mut(key) else {
            return Lookup::Unknown;
        };
        if k.version == version {
            k.written = None;
            k.replaced = Vec::new();
            return Lookup::Current;
        }
        match &k.written {
            Some(obj) if k.replaced.iter().any(|r| r == version) => Lookup::Written(obj.clone()),
            _ => Lookup::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (Option<String>, String) {
        (Some("shop".into()), "twilio".into())
    }

    #[test]
    fn a_cache_behind_only_our_own_writes_reads_what_we_wrote() {
        let known = KnownVersions::<_, &str>::default();
        assert_eq!(
            known.lookup(&key(), Some("1")),
            Lookup::Unknown,
            "never read"
        );
        known.record(key(), Some("1".into()));
        assert_eq!(known.lookup(&key(), Some("1")), Lookup::Current);
        // Two writes in a row (finalizer, status); the cache still holds 1, then 2.
        known.wrote(key(), "2".into(), "at 2");
        known.wrote(key(), "3".into(), "at 3");
        assert_eq!(known.lookup(&key(), Some("1")), Lookup::Written("at 3"));
        assert_eq!(known.lookup(&key(), Some("2")), Lookup::Written("at 3"));
        // A version we never wrote (someone else's, after ours): read it fresh.
        assert_eq!(known.lookup(&key(), Some("4")), Lookup::Unknown);
        assert_eq!(known.lookup(&key(), None), Lookup::Unknown);
        // Caught up: the cache is read, and the copy and old versions are let go.
        assert_eq!(known.lookup(&key(), Some("3")), Lookup::Current);
        assert_eq!(known.lookup(&key(), Some("2")), Lookup::Unknown);
        // Reading the version we hold changes nothing; a fresh read starts a new chain.
        known.wrote(key(), "5".into(), "at 5");
        known.record(key(), Some("5".into()));
        assert_eq!(known.lookup(&key(), Some("3")), Lookup::Written("at 5"));
        known.record(key(), Some("6".into()));
        assert_eq!(known.lookup(&key(), Some("3")), Lookup::Unknown);
        assert_eq!(known.lookup(&key(), Some("5")), Lookup::Unknown);
        // Deleted.
        known.record(key(), None);
        assert_eq!(known.lookup(&key(), Some("6")), Lookup::Unknown);
    }
}
