//! One reconcile of a resource at a time. kube's runner runs one reconcile per `ObjectRef`,
//! but two references can name one resource: kube's `owns` gives a cluster-scoped owner its
//! child's namespace, and the store resolves both. A reconcile woken under a second reference
//! while one runs is put off (the caller requeues it), never run beside it: two would decide
//! on the same status and could take one step twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// A resource: its kind, its namespace (none for a cluster-scoped one) and its name.
pub type Key = (&'static str, Option<String>, String);

type Set = Arc<Mutex<HashSet<Key>>>;

#[derive(Default)]
pub struct Running(Set);

/// Held while a reconcile of its resource runs; dropping it (the reconcile ends, fails or is
/// cancelled) lets the next one start.
#[derive(Debug)]
pub struct Held {
    set: Set,
    key: Key,
}

fn lock(set: &Set) -> MutexGuard<'_, HashSet<Key>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

impl Running {
    /// `None` while another reconcile of `key` runs.
    pub fn start(&self, key: Key) -> Option<Held> {
        lock(&self.0).insert(key.clone()).then(|| Held {
            set: self.0.clone(),
            key,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: Option<&str>, name: &str) -> Key {
        (
            "ClusterTokenRotation",
            ns.map(str::to_owned),
            name.to_owned(),
        )
    }

    #[test]
    fn a_second_reconcile_of_one_resource_waits_for_the_first() {
        let running = Running::default();
        let first = running.start(key(None, "shared"));
        assert!(first.is_some());
        assert!(running.start(key(None, "shared")).is_none());
        // Others are not held up.
        assert!(running.start(key(None, "other")).is_some());
        assert!(running.start(key(Some("shop"), "shared")).is_some());
        drop(first);
        assert!(running.start(key(None, "shared")).is_some());
    }
}
