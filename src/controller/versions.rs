//! The resourceVersion of each object as this process last read it fresh or wrote it. A watch
//! cache holding exactly that version has caught up with our own writes, so it can be read
//! instead of the API server: a change by anyone else since is as unseen as it would be had it
//! come just after a GET.
//!
//! A cache that still holds a version one of our own writes replaced (the write's watch event
//! is on the way) is behind only by our writes, when those writes form an unbroken chain from
//! the version last read: each write carries the version it replaces, so no one else's write
//! fits between two links. The object as our last write returned it is then as fresh as the
//! cache will be once caught up, and is read instead of a GET.
//!
//! Only a write that happened and starts from the version last known extends the chain; any
//! other version (a no-op "write" handing back an older object, a concurrent path, a lost
//! track) starts over as a fresh read would, so a stale copy can never be taken for ours.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

/// How many replaced versions of one object are remembered (a reconcile writes at most four
/// times: finalizer, status before the step, status after it, finalizer removed).
const REPLACED: usize = 8;

pub struct KnownVersions<K, V = ()>(Mutex<HashMap<K, Known<V>>>);

struct Known<V> {
    version: String,
    /// The object at `version`, when our write returned it and the cache has not caught up.
    written: Option<V>,
    /// The versions our chain of writes replaced since the last fresh read, oldest first.
    replaced: Vec<String>,
}

impl<V> Known<V> {
    fn read(version: String) -> Self {
        Self {
            version,
            written: None,
            replaced: Vec::new(),
        }
    }
}

/// What a cache read of an object is worth.
#[derive(Debug, PartialEq)]
pub enum Lookup<V> {
    /// The cache holds the version last read fresh or written.
    Current,
    /// The cache is behind only by our own chain of writes: the object as last written.
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

    /// Remembers the version just read fresh (`None`: not known, or deleted). Reading the
    /// version last known keeps the chain; any other starts over.
    pub fn record(&self, key: K, version: Option<String>) {
        let mut known = self.lock();
        match version {
            Some(v) => {
                if known.get(&key).is_none_or(|k| k.version != v) {
                    known.insert(key, Known::read(v));
                }
            }
            None => {
                known.remove(&key);
            }
        }
    }

    /// Remembers our write that turned version `from` into `to`, returning `object`. Only a
    /// write from the version last known extends the chain; `from == to` is no write at all.
    pub fn wrote(&self, key: K, from: Option<&str>, to: String, object: V) {
        if from == Some(to.as_str()) {
            return;
        }
        let mut known = self.lock();
        match known.get_mut(&key) {
            Some(k) if Some(k.version.as_str()) == from => {
                let before = std::mem::replace(&mut k.version, to);
                k.replaced.push(before);
                if k.replaced.len() > REPLACED {
                    k.replaced.remove(0);
                }
                k.written = Some(object);
            }
            // The chain is broken: `to` is known as a fresh read would know it.
            _ => {
                known.insert(key, Known::read(to));
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

    /// Keeps only the objects `live` keeps.
    pub fn retain(&self, live: impl Fn(&K) -> bool) {
        self.lock().retain(|k, _| live(k));
    }

    /// Whether a cached object at `version` is the one last read or written.
    pub fn is_current(&self, key: &K, version: Option<&str>) -> bool {
        matches!(self.lookup(key, version), Lookup::Current)
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
        known.wrote(key(), Some("1"), "2".into(), "at 2");
        known.wrote(key(), Some("2"), "3".into(), "at 3");
        assert_eq!(known.lookup(&key(), Some("1")), Lookup::Written("at 3"));
        assert_eq!(known.lookup(&key(), Some("2")), Lookup::Written("at 3"));
        // A version we never wrote (someone else's, after ours): read it fresh.
        assert_eq!(known.lookup(&key(), Some("4")), Lookup::Unknown);
        assert_eq!(known.lookup(&key(), None), Lookup::Unknown);
        // Caught up: the cache is read, and the copy and old versions are let go.
        assert_eq!(known.lookup(&key(), Some("3")), Lookup::Current);
        assert_eq!(known.lookup(&key(), Some("2")), Lookup::Unknown);
        // Reading the version we hold changes nothing; a fresh read of another starts over.
        known.wrote(key(), Some("3"), "5".into(), "at 5");
        known.record(key(), Some("5".into()));
        assert_eq!(known.lookup(&key(), Some("3")), Lookup::Written("at 5"));
        known.record(key(), Some("6".into()));
        assert_eq!(known.lookup(&key(), Some("3")), Lookup::Unknown);
        assert_eq!(known.lookup(&key(), Some("5")), Lookup::Unknown);
        // Deleted.
        known.record(key(), None);
        assert_eq!(known.lookup(&key(), Some("6")), Lookup::Unknown);
    }

    /// The failure that had this reverted once: an object handed back unchanged by a no-op
    /// "write" (an older version, read before our last write) was taken for our newest copy,
    /// and every later lookup returned that stale copy.
    #[test]
    fn only_a_write_from_the_version_last_known_extends_the_chain() {
        let known = KnownVersions::<_, &str>::default();
        known.record(key(), Some("70".into()));
        known.wrote(key(), Some("70"), "72".into(), "at 72");
        // No write: the same version handed back.
        known.wrote(key(), Some("70"), "70".into(), "stale at 70");
        assert_eq!(known.lookup(&key(), Some("70")), Lookup::Written("at 72"));
        // A write from a version that is not the one last known (the chain is broken).
        known.wrote(key(), Some("71"), "74".into(), "at 74, chain broken");
        assert_eq!(
            known.lookup(&key(), Some("70")),
            Lookup::Unknown,
            "an older cached version is no longer known to be ours alone"
        );
        assert_eq!(known.lookup(&key(), Some("72")), Lookup::Unknown);
        assert_eq!(known.lookup(&key(), Some("74")), Lookup::Current);
    }
}
