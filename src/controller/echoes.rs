//! The watch events of our own status writes that need no reconcile. A reconcile that took
//! no step but wrote a status (a start, a wait: propagation, overlap, a rollout's progress)
//! already asked to run again when there is something to do: at once after a start, when a
//! wait ends. The event its own write comes back as carries only what it decided: a
//! reconcile on it either came when the requeue comes anyway (after a start) or, before the
//! wait ended, took no step. Changes of anything else it waits on (workloads, staging
//! Secrets, other resources) wake it by their own triggers. With a thousand rotations in
//! flight those echoes were more than a fifth of the reconciles.
//!
//! Only an event at exactly the version our write returned is let go; anything else (anyone
//! else's change, or ours after theirs) wakes the resource as before. A reconcile that took a
//! step never marks its writes: the step's effects are for the next reconcile to see.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::subject::ResourceKey as Key;

/// At most this many expected echoes per resource (a reconcile writes at most four times).
const PER_RESOURCE: usize = 4;

#[derive(Default)]
pub struct Echoes(Mutex<HashMap<Key, Vec<String>>>);

impl Echoes {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Vec<String>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Expects the watch event of our write that returned `version`.
    pub fn expect(&self, key: Key, version: String) {
        let mut all = self.lock();
        let versions = all.entry(key).or_default();
        versions.push(version);
        if versions.len() > PER_RESOURCE {
            versions.remove(0);
        }
    }

    /// Whether a watch event at `version` is an expected echo (then it is let go). Any other
    /// version is newer than the echoes expected before it: they are forgotten.
    pub fn is_echo(&self, key: &Key, version: Option<&str>) -> bool {
        let mut all = self.lock();
        let Some(versions) = all.get_mut(key) else {
            return false;
        };
        let echo = version.and_then(|v| versions.iter().position(|e| e == v));
        match echo {
            Some(i) => {
                versions.drain(..=i);
            }
            None => versions.clear(),
        }
        if versions.is_empty() {
            all.remove(key);
        }
        echo.is_some()
    }

    /// Forgets a deleted resource.
    pub fn forget(&self, key: &Key) {
        self.lock().remove(key);
    }

    /// Keeps only the resources `live` keeps.
    pub fn retain(&self, live: impl Fn(&Key) -> bool) {
        self.lock().retain(|k, _| live(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        (Some("shop".into()), "twilio".into())
    }

    #[test]
    fn only_the_versions_our_writes_returned_are_let_go() {
        let echoes = Echoes::default();
        assert!(!echoes.is_echo(&key(), Some("1")), "nothing expected");
        // A status write and the finalizer's removal.
        echoes.expect(key(), "5".into());
        echoes.expect(key(), "6".into());
        assert!(echoes.is_echo(&key(), Some("5")));
        assert!(echoes.is_echo(&key(), Some("6")));
        assert!(
            !echoes.is_echo(&key(), Some("6")),
            "each echo is let go once"
        );
        // Someone else's change after our write: it wakes the resource, and the echo
        // expected before it is forgotten.
        echoes.expect(key(), "7".into());
        assert!(!echoes.is_echo(&key(), Some("8")));
        assert!(!echoes.is_echo(&key(), Some("7")));
        assert!(!echoes.is_echo(&key(), None));
        // Another resource is another key; a deleted one is forgotten.
        echoes.expect(key(), "9".into());
        assert!(!echoes.is_echo(&(Some("shop".into()), "other".into()), Some("9")));
        echoes.forget(&key());
        assert!(!echoes.is_echo(&key(), Some("9")));
    }
}
