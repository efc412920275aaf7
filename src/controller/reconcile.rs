//! One reconcile: read fresh (or from a cache that caught up), observe, decide, act once,
//! write status, send Events.

use super::execute::execute;
use super::locks::{account_key, Busy, Replaces};
use super::observe::observe;
use super::subject::{Rotated, Subject};
use super::{Context, Error};
use crate::api::{TokenRotationStatus, FINALIZER};
use crate::rotation::{self, Action, Decision};
use chrono::Utc;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How soon a reconcile put off by another of the same resource is tried again.
const PUT_OFF: Duration = Duration::from_millis(200);

pub async fn reconcile<K: Rotated>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let name = obj.name_any();
    let ns = obj.namespace();
    let span =
        tracing::info_span!("reconcile", namespace = %ns.as_deref().unwrap_or(""), name = %name);
    let _running = if ctx.config.safety.skip_reconcile_guard {
        None
    } else {
        match ctx.running.start((K::KIND_NAME, ns.clone(), name.clone())) {
            Some(held) => Some(held),
            None => {
                let _enter = span.enter();
                tracing::debug!("another reconcile of this resource is running; put off");
                ctx.config.metrics.reconcile_put_off(K::KIND_NAME);
                return Ok(Requeue::requeue(PUT_OFF));
            }
        }
    };
    reconcile_one::<K>(ctx, ns, name).instrument(span).await
}

pub fn error_policy<K: Rotated>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Requeue {
    let (metrics_ns, _) = obj.identity();
    ctx.config
        .metrics
        .reconcile_error(&metrics_ns, &obj.name_any(), err.reason());
    let conflict = matches!(err, Error::Kube(kube::Error::Api(s)) if s.code == 409);
    if conflict {
        tracing::debug!(resource = %obj.name_any(), "status write raced a change; retrying");
        Requeue::requeue(Duration::from_millis(200))
    } else {
        tracing::warn!(resource = %obj.name_any(), error = %err, "reconcile failed");
        Requeue::requeue(Duration::from_secs(5))
    }
}

async fn reconcile_one<K: Rotated>(
    ctx: Arc<Context>,
    ns: Option<String>,
    name: String,
) -> Result<Requeue, Error> {
    // The account claims read every resource's cache: decide only once they are all synced,
    // or an unsynced cache could hide the resource that owns the account.
    ctx.caches_synced().await;
    let api = K::api_for(&ctx.client, ns.as_deref());
    // The cache can lag our own last status write, and acting on a stale phase could repeat a
    // step that must not be repeated: read fresh unless the cache holds the very version we
    // last read fresh or wrote, or is behind only by our own writes (then what we wrote).
    let current = match ctx.up_to_date::<K>(ns.as_deref(), &name) {
        Some(obj) => Some(obj),
        None => api.get_opt(&name).await?,
    };
    let Some(mut obj) = current else {
        ctx.forget(ns.as_deref(), &name);
        ctx.related.forget::<K>(ns.as_deref(), &name);
        // Deleted: free its account for the other rotations waiting on it.
        let (metrics_ns, holder) = K::identity_of(ns.as_deref(), &name);
        ctx.locks.release_holder(&holder);
        ctx.config.metrics.forget(&metrics_ns, &name);
        return Ok(Requeue::await_change());
    };
    ctx.saw(&obj);
    // What changed in it may concern others: the same account's, those waiting for a place.
    ctx.related
        .announce(&ctx.stores, ctx.cluster_store.as_ref(), &obj);
    let mut tr = Subject::of(&ctx.client, &obj).await?;
    if ctx.config.safety.shared_field_manager {
        tr.field_manager = crate::api::FIELD_MANAGER.to_owned();
        tr.stamp_key = crate::api::RESTART_ANNOTATION.to_owned();
    }
    let me = tr.holder.clone();
    let metrics_ns = tr.metrics_namespace.clone();
    let lock_key = account_key(
        &tr.spec.twilio.account_sid,
        tr.spec.twilio.region.as_deref(),
    );
    let (mut obs, staging) = observe(&obj, &tr, &ctx).await?;
    let mut decision = rotation::decide(&obs);

    let mut starting = obs.status.rotation.is_none() && decision.status.rotation.is_some();
    // What the rotation takes of its account. An API key rotation about to start reads the key
    // it replaces (one GET): another rotation in flight replacing the same key excludes it,
    // which the observation (from specs and status) could not tell.
    let wants = if starting {
        let replaces = super::execute::replaced_key(&ctx, &tr, obj.rotation_status()).await;
        let wants = tr.account_use(&ctx.config.safety, replaces);
        if let Some(holder) = super::observe::account_holder_for(&tr, &ctx, &wants) {
            obs.account_holder = Some(holder);
            decision = rotation::decide(&obs);
            starting = decision.status.rotation.is_some();
        }
        wants
    } else {
        tr.account_use(
            &ctx.config.safety,
            Replaces::from_status(obj.rotation_status()),
        )
    };
    if decision.status.rotation.is_some() {
        // Only a start waits for capacity; a rotation in flight always goes on.
        let limit = if starting {
            ctx.config.max_concurrent_rotations
        } else {
            0
        };
        // Only a limit needs the count (a scan of every resource).
        let in_flight = if limit > 0 {
            super::observe::in_flight(&ctx)
        } else {
            Default::default()
        };
        match ctx
            .locks
            .try_start(&lock_key, &me, &wants, starting, limit, &in_flight)
        {
            Ok(()) => {}
            Err(Busy::Account(holder)) if starting => {
                obs.account_holder = Some(holder);
                decision = rotation::decide(&obs);
            }
            Err(Busy::Account(holder)) => {
                tracing::warn!(holder = %holder, "two rotations in flight on one account; continuing this one");
            }
            Err(Busy::Capacity(limit)) => {
                obs.at_capacity = Some(limit);
                decision = rotation::decide(&obs);
            }
        }
    }

    // Due but kept waiting by the account's other rotations: ask for the next turn.
    if obs.account_holder.is_some()
        && decision.status.rotation.is_none()
        && decision.waits_for_account()
    {
        ctx.locks.reserve(&lock_key, &me, &wants);
    }
    let action = decision.action.clone();
    let step = action.name();
    if let Some(r) = &obs.status.rotation {
        if action != Action::None {
            tracing::info!(rotation = %r.id, phase = ?obs.status.phase, action = step, "performing step");
        }
    }
    // A reconcile that takes no step has asked to run again when there is something to do
    // (its requeue); its own writes' watch events carry only what it decided, so they wake
    // nothing (see `echoes`).
    let quiet = action == Action::None;
    // A rotation in flight holds the finalizer, so that deleting the resource first rolls the
    // rotation back or finishes it; it is there before the first step that creates anything.
    if decision.status.rotation.is_some() && !obs.deleting && !ctx.config.safety.skip_finalizer {
        obj = set_finalizer(&ctx, &api, obj, true, quiet).await?;
    }
    if let Some(before) = &decision.before {
        obj = write_status(&ctx, &api, obj, before, quiet).await?;
    }
    ctx.config.failpoints.hit(&format!("before:{step}")).await;
    let result = execute(&ctx, &tr, &obs, staging.as_ref(), &action).await;
    ctx.config.failpoints.hit(&format!("after:{step}")).await;

    let Decision {
        mut status,
        events,
        requeue_after,
        ..
    } = match result {
        Ok(()) => decision,
        Err(failure) => {
            tracing::warn!(action = step, reason = failure.class.reason(), message = %failure.message, "step failed");
            ctx.config
                .metrics
                .reconcile_error(&metrics_ns, &name, failure.class.reason());
            if failure.class == rotation::FailureClass::Forbidden {
                // The next pre-Stage check asks the API server again.
                ctx.grants.forget();
            }
            rotation::on_failure(&obs, &action, &failure)
        }
    };
    if tr.cluster {
        status.namespaces = tr.targets.clone();
    }
    let idle = status.rotation.is_none();
    let mut obj = write_status(&ctx, &api, obj, &status, quiet).await?;
    let metrics = &ctx.config.metrics;
    metrics.reconciled(&metrics_ns, &name);
    metrics.status_written(&metrics_ns, &name, &obs.status, &status, Utc::now());
    ctx.config.failpoints.hit(&format!("status:{step}")).await;
    if idle {
        ctx.locks.release(&lock_key, &me);
        // Nothing in flight: nothing for a deletion to wait on (and a deletion goes on now).
        obj = set_finalizer(&ctx, &api, obj, false, quiet).await?;
    }
    if quiet {
        // No reconcile on its echo announces it: what changed here may concern others.
        ctx.related
            .announce(&ctx.stores, ctx.cluster_store.as_ref(), &obj);
    }
    publish(&ctx, &tr, events).await;
    Ok(match requeue_after {
        Some(d) => Requeue::requeue(d.max(Duration::from_millis(50))),
        None => Requeue::await_change(),
    })
}

/// Adds or removes this operator's finalizer; the patch carries the resourceVersion the
/// decision was made on, so it fails (409) if anything changed meanwhile. A write made is
/// remembered as ours ([`Context::wrote`]), and by a `quiet` reconcile, its echo expected.
async fn set_finalizer<K: Rotated>(
    ctx: &Context,
    api: &Api<K>,
    obj: K,
    present: bool,
    quiet: bool,
) -> Result<K, Error> {
    let mut finalizers = obj.finalizers().to_vec();
    if finalizers.iter().any(|f| f == FINALIZER) == present {
        return Ok(obj);
    }
    if present {
        finalizers.push(FINALIZER.to_owned());
    } else {
        finalizers.retain(|f| f != FINALIZER);
    }
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": obj.resource_version(),
        "finalizers": finalizers,
    }});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(updated) => {
            ctx.wrote(obj.resource_version().as_deref(), &updated);
            if quiet {
                ctx.expect_echo(&updated);
            }
            Ok(updated)
        }
        // Removing the last finalizer of a deleted resource: it is gone now.
        Err(kube::Error::Api(e)) if e.code == 404 && !present => Ok(obj),
        Err(e) => Err(e.into()),
    }
}

/// Writes `status` and returns the resource as written (remembered as ours,
/// [`Context::wrote`], and by a `quiet` reconcile, its echo expected); unchanged, nothing is
/// written.
async fn write_status<K: Rotated>(
    ctx: &Context,
    api: &Api<K>,
    obj: K,
    status: &TokenRotationStatus,
    quiet: bool,
) -> Result<K, Error> {
    if obj.rotation_status() == Some(status) {
        return Ok(obj);
    }
    let from = obj.resource_version();
    let mut updated = obj;
    updated.set_rotation_status(status.clone());
    // A replace carrying the resourceVersion we decided on: if anything changed meanwhile the
    // write fails with 409 and the next round decides again on fresh state.
    let written = api
        .replace_status(&updated.name_any(), &PostParams::default(), &updated)
        .await?;
    ctx.wrote(from.as_deref(), &written);
    if quiet {
        ctx.expect_echo(&written);
    }
    Ok(written)
}

/// API servers refuse an Event whose note exceeds 1 KiB (many workloads, many namespaces):
/// longer notes are cut on a character boundary, saying so.
const MAX_NOTE_BYTES: usize = 1024;

fn bounded_note(note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    const MORE: &str = " … (cut; see the resource's status)";
    let mut end = MAX_NOTE_BYTES - MORE.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &note[..end])
}

/// An Event counts as a repeat (a series: count and time patched, note kept) by
/// type, reason, action and object, not by note: with one action for all, a second rotation's
/// `RotationStarted` showed the first one's rotation ID. The action carries a hash of the
/// note, so only an identical Event is a repeat.
fn event_action(note: &str) -> String {
    format!("Rotate-{:08x}", crate::hash::fnv1a32(note.bytes()))
}

async fn publish(ctx: &Context, tr: &Subject, events: Vec<rotation::EventNote>) {
    for e in events {
        if crate::notify::worth_notifying(e.reason, e.warning) {
            ctx.config.notifier.notify(crate::notify::Notice {
                resource: tr.holder.to_string(),
                reason: e.reason,
                message: bounded_note(e.note.clone()),
                warning: e.warning,
            });
        }
        let note = bounded_note(e.note);
        let ev = super::events::Note {
            warning: e.warning,
            reason: e.reason,
            action: &event_action(&note),
            note: &note,
        };
        ctx.events.send(&ev, &tr.reference).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identical_events_share_an_action() {
        let a = event_action("rotation r1 started: creating the new token");
        let b = event_action("rotation r2 started: creating the new token");
        assert_ne!(a, b);
        assert_eq!(
            a,
            event_action("rotation r1 started: creating the new token")
        );
        assert!(a.starts_with("Rotate-") && a.len() <= 128);
    }

    #[test]
    fn event_notes_stay_under_a_kibibyte() {
        let short = "restarting Deployment shop/api".to_owned();
        assert_eq!(bounded_note(short.clone()), short);
        let many: Vec<String> = (0..300)
            .map(|i| format!("Deployment team-{i}/api-é"))
            .collect();
        let long = format!("restarting {}", many.join(", "));
        assert!(long.len() > 5000);
        let cut = bounded_note(long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.starts_with("restarting Deployment team-0/api-é"));
        assert!(cut.ends_with("(cut; see the resource's status)"));
    }
}
