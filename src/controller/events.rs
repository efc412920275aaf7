//! Publishes Events (`events.k8s.io/v1`) the way kube's `Recorder` does: the same Event on the
//! same object again within six minutes is a repeat, counted in the first one's `series`
//! (count and time patched) rather than a new object. Unlike the `Recorder`, it remembers of
//! each recent Event only a digest of what makes it the same, its creation time (which gives
//! its name back) and its count, not the whole Event, and sweeps the expired ones at most once
//! a minute instead of at every publish: with 1,000 rotations in flight the `Recorder` held
//! ~8,000 whole Events and walked all of them 8,000 times.
//!
//! A reconcile does not wait for its Events ([`Events::send`]): like client-go's broadcaster,
//! they are queued (timed when queued) and posted by workers, one lane per object so that an
//! object's Events keep their order. The queues are bounded: a slow API server slows the
//! reconciles that send, and no Event is dropped. Events still queued when the process stops
//! are lost, as one not yet sent at a crash always was; after a lost Lease the lanes still
//! post what was queued (it tells of steps already taken).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// How long an Event counts for repeats (kube's `Recorder` and client-go use six minutes).
const REPEAT_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// How often expired entries are swept.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_mins(1);
/// Workers posting queued Events, and how many Events each may hold queued.
const LANES: usize = 8;
const LANE_DEPTH: usize = 256;

/// One Event to publish.
pub struct Note<'a> {
    pub warning: bool,
    /// CamelCase and stable: one of a fixed set.
    pub reason: &'static str,
    pub action: &'a str,
    pub note: &'a str,
}

/// A recent Event: enough to count a repeat into its series. Its name is not kept: it is
/// made from the object's name and `created` ([`Publisher::name`]). At ~48 bytes and no
/// allocation an entry is a fifth of the name-and-key strings it replaced (8,000 of them
/// per round of 1,000 rotations, each kept six minutes).
struct Recent {
    created: Timestamp,
    count: i32,
    last: Timestamp,
}

/// What makes two Events the same ([`key`]), digested: 128 bits of SHA-256, so that two
/// different Events sharing a key is not a case to handle.
type Key = [u8; 16];

/// An Event waiting in a lane, timed when it was sent.
struct Queued {
    warning: bool,
    reason: &'static str,
    action: String,
    note: String,
    regarding: ObjectReference,
    at: Timestamp,
}

impl Queued {
    fn note(&self) -> Note<'_> {
        Note {
            warning: self.warning,
            reason: self.reason,
            action: &self.action,
            note: &self.note,
        }
    }
}

pub struct Events {
    publisher: Arc<Publisher>,
    lanes: [mpsc::Sender<Queued>; LANES],
}

struct Publisher {
    client: Client,
    controller: String,
    instance: Option<String>,
    recent: Mutex<(HashMap<Key, Recent>, Timestamp)>,
}

impl Events {
    /// Starts the lanes' workers (on the current Tokio runtime); they end once this is dropped
    /// and their queues are empty.
    pub fn new(client: Client, controller: String, instance: Option<String>) -> Self {
        let publisher = Arc::new(Publisher {
            client,
            controller,
            instance,
            recent: Mutex::new((HashMap::new(), Timestamp::now())),
        });
        let lanes = std::array::from_fn(|_| {
            let (tx, mut rx) = mpsc::channel::<Queued>(LANE_DEPTH);
            let publisher = publisher.clone();
            tokio::spawn(async move {
                while let Some(q) = rx.recv().await {
                    publisher.post(&q).await;
                }
            });
            tx
        });
        Self { publisher, lanes }
    }

    /// Creates the Event, or counts it into the series of the same recent Event (same type,
    /// reason, action and object), and returns once that is done.
    pub async fn publish(
        &self,
        n: &Note<'_>,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        self.publisher.publish(n, regarding, Timestamp::now()).await
    }

    /// Queues the Event, timed now, behind the Events already queued for the same object;
    /// waits only while its lane is full. A failure to post it is logged.
    pub async fn send(&self, n: &Note<'_>, regarding: &ObjectReference) {
        let q = Queued {
            warning: n.warning,
            reason: n.reason,
            action: n.action.to_owned(),
            note: n.note.to_owned(),
            regarding: regarding.clone(),
            at: Timestamp::now(),
        };
        if let Err(mpsc::error::SendError(q)) = self.lanes[lane_of(regarding)].send(q).await {
            // The lane's worker is gone (its runtime is shutting down): post it here.
            self.publisher.post(&q).await;
        }
    }
}

/// The lane of an object's Events: by its UID (its name when it has none).
fn lane_of(regarding: &ObjectReference) -> usize {
    let id = regarding.uid.as_ref().or(regarding.name.as_ref());
    let h = crate::hash::fnv1a32(id.map(String::as_bytes).unwrap_or_default().iter().copied());
    h as usize % LANES
}

impl Publisher {
    async fn post(&self, q: &Queued) {
        if let Err(err) = self.publish(&q.note(), &q.regarding, q.at).await {
            tracing::warn!(reason = %q.reason, error = %err, "could not publish Event");
        }
    }

    async fn publish(
        &self,
        n: &Note<'_>,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let key = key(n, regarding);
        let repeat = {
            let mut guard = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let (recent, swept) = &mut *guard;
            if *swept + SWEEP_EVERY < now {
                recent.retain(|_, r| r.last + REPEAT_WINDOW > now);
                *swept = now;
            }
            recent
                .get(&key)
                .filter(|r| r.last + REPEAT_WINDOW > now)
                .map(|r| (r.created, r.count + 1))
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let repeated = match repeat {
            Some((created, count)) => {
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                };
                let patch = serde_json::json!({ "series": series });
                let name = self.name(regarding, created);
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Some((created, count)),
                    // Deleted meanwhile (by hand, or its time to live ran out): a new one.
                    Err(kube::Error::Api(e)) if e.code == 404 => None,
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        let (created, count) = match repeated {
            Some(r) => r,
            None => {
                let ev = self.event(n, regarding, now);
                api.create(&PostParams::default(), &ev).await?;
                (now, 1)
            }
        };
        let mut guard = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.insert(
            key,
            Recent {
                created,
                count,
                last: now,
            },
        );
        Ok(())
    }

    fn event(&self, n: &Note<'_>, regarding: &ObjectReference, now: Timestamp) -> Event {
        Event {
            action: Some(n.action.to_owned()),
            reason: Some(n.reason.to_owned()),
            note: Some(n.note.to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(self.name(regarding, now)),
                ..Default::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(
                self.instance
                    .clone()
                    .unwrap_or_else(|| self.controller.clone()),
            ),
            type_: Some(if n.warning { "Warning" } else { "Normal" }.to_owned()),
            ..Default::default()
        }
    }

    /// The name of the Event created at `created` about `regarding` (as client-go names
    /// them: the object's name and the time). It is set, not generated, so it is known
    /// without keeping the created Event.
    fn name(&self, regarding: &ObjectReference, created: Timestamp) -> String {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        format!("{object}.{:x}", created.as_nanosecond())
    }
}

/// What makes two Events the same: type, reason, action and the object (by UID too, so a
/// re-created object starts afresh).
fn key(n: &Note<'_>, r: &ObjectReference) -> Key {
    fn f(s: &Option<String>) -> &str {
        s.as_deref().unwrap_or_default()
    }
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    let warning = if n.warning { "Warning" } else { "Normal" };
    let fields = [
        warning,
        n.reason,
        n.action,
        f(&r.api_version),
        f(&r.kind),
        f(&r.namespace),
        f(&r.name),
        f(&r.uid),
    ];
    for field in fields {
        // Length-prefixed, so that no two lists of fields give the same bytes.
        d.update(&(field.len() as u64).to_le_bytes());
        d.update(field.as_bytes());
    }
    let mut key = [0; 16];
    key.copy_from_slice(&d.finish().as_ref()[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note<'a>(reason: &'static str, action: &'a str) -> Note<'a> {
        Note {
            warning: false,
            reason,
            action,
            note: "n",
        }
    }

    #[test]
    fn the_same_event_on_the_same_object_has_one_key() {
        let r = ObjectReference {
            kind: Some("TokenRotation".into()),
            namespace: Some("shop".into()),
            name: Some("twilio".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let again = ObjectReference {
            uid: Some("u2".into()),
            ..r.clone()
        };
        assert_eq!(key(&note("A", "x"), &r), key(&note("A", "x"), &r));
        assert_ne!(key(&note("A", "x"), &r), key(&note("B", "x"), &r));
        assert_ne!(key(&note("A", "x"), &r), key(&note("A", "y"), &r));
        assert_ne!(
            key(&note("A", "x"), &r),
            key(&note("A", "x"), &again),
            "a re-created object"
        );
        let split = |action| ObjectReference {
            name: Some(format!("{action}x")),
            ..r.clone()
        };
        assert_ne!(
            key(&note("A", "x"), &split("y")),
            key(&note("A", "xy"), &split("")),
            "the same bytes split otherwise between fields"
        );
    }
}
