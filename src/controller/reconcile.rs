//! One reconcile: read fresh, observe, decide, act once, write status, send Events.

use super::locks::account_key;
use super::secrets::{self, Credential, Distribution, Staged};
use super::subject::{Rotated, Subject};
use super::{Context, Error};
use crate::api::{
    AbortStep, Phase, RestartPolicy, TokenRotationSpec, TokenRotationStatus, WorkloadProgress,
    WorkloadRef, ABORT_ANNOTATION, DELETE_SECONDARY_ANNOTATION, FINALIZER, ROTATE_NOW_ANNOTATION,
    SCHEDULE_ANNOTATION,
};
use crate::providers::{api_key, auth_token};
use crate::rotation::{
    self, Action, Decision, Failure, FailureClass, Holder, Observation, Plan, RevertedKey,
    RolloutView, Serve, StagedKeys, WorkloadAt,
};
use crate::secret::SecretString;
use crate::time::from_k8s;
use crate::twilio::{Credentials, TwilioClient};
use crate::workloads;
use chrono::Utc;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::ResourceExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

pub async fn reconcile<K: Rotated>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let name = obj.name_any();
    let ns = obj.namespace();
    let span =
        tracing::info_span!("reconcile", namespace = %ns.as_deref().unwrap_or(""), name = %name);
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
    // Read fresh rather than from the cache: the cache can lag our own last status write, and
    // acting on a stale phase could repeat a step that must not be repeated.
    let Some(mut obj) = api.get_opt(&name).await? else {
        // Deleted: free its account for the other rotations waiting on it.
        let (metrics_ns, holder) = K::identity_of(ns.as_deref(), &name);
        ctx.locks.release_holder(&holder);
        ctx.config.metrics.forget(&metrics_ns, &name);
        return Ok(Requeue::await_change());
    };
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
    let mut obs = observe(&obj, &tr, &ctx).await?;
    let mut decision = rotation::decide(&obs);

    let starting = obs.status.rotation.is_none() && decision.status.rotation.is_some();
    if decision.status.rotation.is_some() {
        if let Err(holder) = ctx.locks.try_acquire(&lock_key, &me) {
            if starting {
                obs.account_holder = Some(holder);
                decision = rotation::decide(&obs);
            } else {
                tracing::warn!(holder = %holder, "two rotations in flight on one account; continuing this one");
            }
        }
    }

    let action = decision.action.clone();
    let step = action.name();
    if let Some(r) = &obs.status.rotation {
        if action != Action::None {
            tracing::info!(rotation = %r.id, phase = ?obs.status.phase, action = step, "performing step");
        }
    }
    // A rotation in flight holds the finalizer, so that deleting the resource first rolls the
    // rotation back or finishes it; it is there before the first step that creates anything.
    if decision.status.rotation.is_some() && !obs.deleting && !ctx.config.safety.skip_finalizer {
        obj = set_finalizer(&api, obj, true).await?;
    }
    if let Some(before) = &decision.before {
        obj = write_status(&api, obj, before).await?;
    }
    ctx.config.failpoints.hit(&format!("before:{step}")).await;
    let result = execute(&ctx, &tr, &obs, &action).await;
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
            rotation::on_failure(&obs, &action, &failure)
        }
    };
    if tr.cluster {
        status.namespaces = tr.targets.clone();
    }
    let idle = status.rotation.is_none();
    let obj = write_status(&api, obj, &status).await?;
    let metrics = &ctx.config.metrics;
    metrics.reconciled(&metrics_ns, &name);
    metrics.status_written(&metrics_ns, &name, &obs.status, &status, Utc::now());
    ctx.config.failpoints.hit(&format!("status:{step}")).await;
    if idle {
        ctx.locks.release(&lock_key, &me);
        // Nothing in flight: nothing for a deletion to wait on (and a deletion goes on now).
        set_finalizer(&api, obj, false).await?;
    }
    publish(&ctx, &tr, events).await;
    Ok(match requeue_after {
        Some(d) => Requeue::requeue(d.max(Duration::from_millis(50))),
        None => Requeue::await_change(),
    })
}

/// Adds or removes this operator's finalizer; the patch carries the resourceVersion the
/// decision was made on, so it fails (409) if anything changed meanwhile.
async fn set_finalizer<K: Rotated>(api: &Api<K>, obj: K, present: bool) -> Result<K, Error> {
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
        Ok(updated) => Ok(updated),
        // Removing the last finalizer of a deleted resource: it is gone now.
        Err(kube::Error::Api(e)) if e.code == 404 && !present => Ok(obj),
        Err(e) => Err(e.into()),
    }
}

async fn observe<K: Rotated>(obj: &K, tr: &Subject, ctx: &Context) -> Result<Observation, Error> {
    let now = Utc::now();
    let annotations = obj.annotations();
    let status = obj.rotation_status().cloned().unwrap_or_default();
    let mut plan = Plan::new(
        &tr.spec,
        annotations.get(SCHEDULE_ANNOTATION).map(String::as_str),
    );
    // Suspending acts at once, whatever spec the rotation in flight runs with.
    if let Ok(p) = plan.as_mut() {
        p.suspend = obj.rotation_spec().suspend;
    }
    let staging = match &status.rotation {
        Some(r) => secrets::read_staging(&ctx.client, &tr.home, &r.staging_secret).await?,
        None => None,
    };
    let staged_keys = staging.as_ref().and_then(|s| {
        let current = status
            .rotation
            .as_ref()
            .is_some_and(|r| r.id == s.rotation_id);
        let new = s.new.key_sid.clone().filter(|_| current)?;
        Some(StagedKeys {
            new,
            previous: s.previous.as_ref().and_then(|p| p.key_sid.clone()),
        })
    });
    let stamp = match (status.phase, status.rotation.as_ref()) {
        (Some(Phase::RollingOut), Some(r)) => Some(r.rollout_stamp()),
        (Some(Phase::Aborting), Some(r)) if r.abort_step == Some(AbortStep::RollBack) => {
            Some(r.rollback_stamp())
        }
        _ => None,
    };
    let rollout = match stamp {
        Some(stamp) => Some(observe_rollout(ctx, tr, &stamp).await?),
        None => None,
    };
    // Before each step towards promotion (once the rollout is through): do the targets still
    // hold the new credential?
    let towards_promotion = match status.phase {
        Some(Phase::RollingOut) => {
            tr.spec.workloads.as_ref().map(|w| w.restart) == Some(RestartPolicy::Never)
                || rollout
                    .as_ref()
                    .is_some_and(|v| v.unstamped.is_empty() && v.workloads.iter().all(|w| w.done))
        }
        Some(Phase::Verifying | Phase::Promoting) => true,
        _ => false,
    };
    let current = |s: &&Staged| {
        status
            .rotation
            .as_ref()
            .is_some_and(|r| r.id == s.rotation_id)
    };
    let reverted = match staging.as_ref().filter(current) {
        Some(s) if towards_promotion && !ctx.config.safety.skip_target_recheck => {
            reverted_targets(ctx, tr, s).await?
        }
        _ => Vec::new(),
    };
    let staged_for = staging.map(|s| s.rotation_id);
    Ok(Observation {
        now,
        generation: obj.meta().generation,
        staging_secret: tr.staging_secret.clone(),
        uid: tr.uid.clone(),
        created: obj
            .meta()
            .creation_timestamp
            .as_ref()
            .map(from_k8s)
            .unwrap_or(now),
        spec: tr.spec.clone(),
        spec_changed: tr.spec_changed,
        plan,
        rotate_now: annotations.get(ROTATE_NOW_ANNOTATION).cloned(),
        abort: annotations.get(ABORT_ANNOTATION).cloned(),
        delete_secondary: annotations.get(DELETE_SECONDARY_ANNOTATION).cloned(),
        deleting: obj.meta().deletion_timestamp.is_some(),
        status,
        account_holder: account_holder(tr, ctx),
        account_conflict: account_conflict(obj, tr, ctx),
        staged_for,
        staged_keys,
        rollout,
        reverted,
    })
}

/// Keys of the target Secrets (and, for an Auth Token, the credentials Secret) that do not
/// hold the new credential. Compared in memory; only names reach the result.
async fn reverted_targets(
    ctx: &Context,
    tr: &Subject,
    staged: &Staged,
) -> Result<Vec<RevertedKey>, Error> {
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    for ns in &tr.targets {
        for t in &tr.spec.secrets {
            wanted.push((ns, &t.name, &t.token_key));
        }
    }
    if tr.spec.auth_token.is_some() {
        let c = &tr.spec.twilio.credentials_secret_ref;
        wanted.push((&tr.home, &c.name, &c.key));
    }
    let mut out = Vec::new();
    for (ns, name, key) in wanted {
        let state = secrets::key_writer(
            &ctx.client,
            &tr.field_manager,
            ns,
            name,
            key,
            &staged.new.secret,
        )
        .await;
        match state {
            Ok(secrets::KeyState::Holds) => {}
            Ok(secrets::KeyState::Differs { manager }) => out.push(RevertedKey {
                namespace: ns.to_owned(),
                secret: name.to_owned(),
                key: key.to_owned(),
                manager,
            }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Rollout progress of the dependent workloads in every target namespace. In a matched
/// namespace that is being deleted nothing is restarted, but its dependent workloads that
/// still exist count as not done: their pods may still run the old token.
async fn observe_rollout(ctx: &Context, tr: &Subject, stamp: &str) -> Result<RolloutView, Error> {
    let targets: BTreeSet<String> = tr.spec.secrets.iter().map(|s| s.name.clone()).collect();
    let mut view = RolloutView::default();
    for ns in &tr.terminating {
        let all = workloads::list(&ctx.client, ns).await?;
        let (deps, _) = workloads::dependents(tr.spec.workloads.as_ref(), &targets, &all);
        view.workloads.extend(deps.iter().map(|w| {
            WorkloadProgress {
                namespace: Some(ns.clone()),
                kind: w.kind,
                name: w.name.clone(),
                desired: w.desired,
                updated: 0,
                available: w.available,
                done: false,
                reason: Some(
                    workloads::RolloutReason::NamespaceTerminating
                        .as_str()
                        .to_owned(),
                ),
            }
        }));
    }
    for ns in &tr.targets {
        let all = workloads::list(&ctx.client, ns).await?;
        let (deps, missing) = workloads::dependents(tr.spec.workloads.as_ref(), &targets, &all);
        let start = view.workloads.len();
        for w in &deps {
            view.workloads
                .push(workloads::progress(w, &tr.stamp_key, stamp));
            if w.stamp(&tr.stamp_key) != Some(stamp) {
                view.unstamped.push(WorkloadAt {
                    namespace: ns.clone(),
                    kind: w.kind,
                    name: w.name.clone(),
                });
            }
        }
        view.workloads
            .extend(missing.iter().map(workloads::missing_progress));
        if tr.cluster {
            for p in &mut view.workloads[start..] {
                p.namespace = Some(ns.clone());
            }
        }
    }
    Ok(view)
}

/// Another resource rotating the same account, from this process's locks or from status.
fn account_holder(tr: &Subject, ctx: &Context) -> Option<Holder> {
    let key = account_key(
        &tr.spec.twilio.account_sid,
        tr.spec.twilio.region.as_deref(),
    );
    if let Some(h) = ctx.locks.holder(&key).filter(|h| *h != tr.holder) {
        return Some(h);
    }
    let busy_on_key = |spec: &TokenRotationSpec, st: Option<&TokenRotationStatus>| {
        account_key(&spec.twilio.account_sid, spec.twilio.region.as_deref()) == key
            && st.is_some_and(|s| s.rotation.is_some())
    };
    let namespaced = ctx
        .stores
        .iter()
        .flat_map(|s| s.state())
        .filter(|o| busy_on_key(&o.spec, o.status.as_ref()))
        .map(|o| o.identity().1);
    let cluster = ctx
        .cluster_store
        .iter()
        .flat_map(|s| s.state())
        .filter(|o| busy_on_key(&o.spec.rotation, o.status.as_ref()))
        .map(|o| o.identity().1);
    namespaced.chain(cluster).find(|h| *h != tr.holder)
}

/// The spec a resource rotates with now: the one pinned by its rotation in flight, else its own.
fn effective<'a>(
    live: &'a TokenRotationSpec,
    st: Option<&'a TokenRotationStatus>,
) -> &'a TokenRotationSpec {
    st.and_then(|s| s.rotation.as_ref())
        .and_then(|r| r.spec.as_ref())
        .unwrap_or(live)
}

/// Auth Token rotation: another resource rotating the same account's Auth Token. The oldest
/// (by creation time, then name) owns it. Not counted: one being deleted (while it finishes,
/// the account lock keeps the others waiting), and one whose credentials were refused, so a
/// junk resource cannot stall the account.
fn account_conflict<K: Rotated>(
    obj: &K,
    tr: &Subject,
    ctx: &Context,
) -> Option<rotation::AccountConflict> {
    tr.spec.auth_token.as_ref()?;
    if ctx.config.safety.skip_account_conflict {
        return None;
    }
    let key = account_key(
        &tr.spec.twilio.account_sid,
        tr.spec.twilio.region.as_deref(),
    );
    let claims = |meta: &kube::api::ObjectMeta,
                  spec: &TokenRotationSpec,
                  st: Option<&TokenRotationStatus>| {
        let spec = effective(spec, st);
        meta.deletion_timestamp.is_none()
            && spec.auth_token.is_some()
            && account_key(&spec.twilio.account_sid, spec.twilio.region.as_deref()) == key
            && !st.is_some_and(credentials_refused)
    };
    let age = |m: &kube::api::ObjectMeta| {
        m.creation_timestamp
            .as_ref()
            .map_or(chrono::DateTime::<Utc>::MAX_UTC, from_k8s)
    };
    let namespaced = ctx
        .stores
        .iter()
        .flat_map(|s| s.state())
        .filter(|o| claims(&o.metadata, &o.spec, o.status.as_ref()))
        .map(|o| (age(&o.metadata), o.identity().1));
    let cluster = ctx
        .cluster_store
        .iter()
        .flat_map(|s| s.state())
        .filter(|o| claims(&o.metadata, &o.spec.rotation, o.status.as_ref()))
        .map(|o| (age(&o.metadata), o.identity().1));
    let me = (age(obj.meta()), tr.holder.clone());
    let mut others: Vec<_> = namespaced
        .chain(cluster)
        .filter(|(_, h)| *h != tr.holder)
        .collect();
    others.sort();
    let first = others.first()?.clone();
    Some(if me < first {
        rotation::AccountConflict {
            other: others.last().map_or(first.1.clone(), |o| o.1.clone()),
            owner: true,
        }
    } else {
        rotation::AccountConflict {
            other: first.1,
            owner: false,
        }
    })
}

/// Twilio refused the resource's credentials at its last check.
fn credentials_refused(st: &TokenRotationStatus) -> bool {
    st.credentials_refused
}

/// Writes `status` and returns the resource as written.
async fn write_status<K: Rotated>(
    api: &Api<K>,
    obj: K,
    status: &TokenRotationStatus,
) -> Result<K, Error> {
    if obj.rotation_status() == Some(status) {
        return Ok(obj);
    }
    let mut updated = obj;
    updated.set_rotation_status(status.clone());
    // A replace carrying the resourceVersion we decided on: if anything changed meanwhile the
    // write fails with 409 and the next round decides again on fresh state.
    Ok(api
        .replace_status(&updated.name_any(), &PostParams::default(), &updated)
        .await?)
}

async fn publish(ctx: &Context, tr: &Subject, events: Vec<rotation::EventNote>) {
    for e in events {
        let ev = Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.to_owned(),
            note: Some(e.note),
            action: "Rotate".to_owned(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&ev, &tr.reference).await {
            tracing::warn!(reason = e.reason, error = %err, "could not publish Event");
        }
    }
}

fn kube_failure(what: &str, e: kube::Error) -> Failure {
    Failure {
        class: FailureClass::Kubernetes,
        message: format!("{what}: {e}"),
    }
}

fn twilio_client(ctx: &Context, tr: &Subject) -> Result<TwilioClient, Failure> {
    let suppress = tr
        .spec
        .auth_token
        .as_ref()
        .and_then(|a| a.suppress_email_notification)
        .unwrap_or(true);
    ctx.twilio(
        tr.spec.twilio.region.as_deref(),
        tr.spec.twilio.edge.as_deref(),
        suppress,
    )
    .map_err(|e| Failure {
        class: FailureClass::TwilioRejected,
        message: format!("building the Twilio client: {e}"),
    })
}

/// The token the operator authenticates with, from `credentialsSecretRef`.
async fn operator_token(ctx: &Context, tr: &Subject) -> Result<SecretString, Failure> {
    let r = &tr.spec.twilio.credentials_secret_ref;
    let [token] = read_required(ctx, &tr.home, &r.name, [&r.key]).await?;
    Ok(token)
}

/// Keys of the credentials Secret, each of which must be there and not empty.
async fn read_required<const N: usize>(
    ctx: &Context,
    ns: &str,
    name: &str,
    keys: [&str; N],
) -> Result<[SecretString; N], Failure> {
    let values = secrets::read_keys(&ctx.client, ns, name, keys)
        .await
        .map_err(|e| kube_failure("reading the credentials Secret", e))?;
    if let Some(i) = values
        .iter()
        .position(|v| v.as_ref().is_none_or(SecretString::is_empty))
    {
        return Err(Failure {
            class: FailureClass::CredentialsMissing,
            message: format!(
                "Secret {ns}/{name} does not exist or has no key {:?}",
                keys[i]
            ),
        });
    }
    Ok(values.map(Option::unwrap_or_default))
}

/// The credential the operator manages API keys with: the Auth Token, or a Main key when
/// `keySidKey` names its SID.
async fn operator_credentials(ctx: &Context, tr: &Subject) -> Result<Credentials, Failure> {
    let sid = tr.spec.twilio.account_sid.as_str();
    let r = &tr.spec.twilio.credentials_secret_ref;
    match &r.key_sid_key {
        None => {
            let [secret] = read_required(ctx, &tr.home, &r.name, [&r.key]).await?;
            Ok(Credentials::auth_token(sid, secret))
        }
        Some(k) => {
            let [secret, key_sid] = read_required(ctx, &tr.home, &r.name, [&r.key, k]).await?;
            Ok(Credentials::api_key(sid, key_sid.expose(), secret))
        }
    }
}

/// The API key the target Secrets hold now (the first Secret's, in the first target
/// namespace), if any: the key a rotation replaces.
async fn current_key(ctx: &Context, tr: &Subject) -> Result<Option<Credential>, Failure> {
    let (Some(t), Some(ns)) = (tr.spec.secrets.first(), tr.targets.first()) else {
        return Ok(None);
    };
    let Some(sid_key) = &t.key_sid_key else {
        return Ok(None);
    };
    let [sid, secret] = secrets::read_keys(&ctx.client, ns, &t.name, [sid_key, &t.token_key])
        .await
        .map_err(|e| kube_failure("reading the current API key", e))?;
    Ok(match (sid, secret) {
        (Some(sid), Some(secret)) if sid.expose().starts_with("SK") && !secret.is_empty() => {
            Some(Credential {
                key_sid: Some(sid.expose().to_owned()),
                secret,
            })
        }
        _ => None,
    })
}

/// The friendly name of the key this rotation creates.
fn key_name(tr: &Subject, obs: &Observation) -> String {
    let prefix = tr
        .spec
        .api_key
        .as_ref()
        .map(|k| k.friendly_name_prefix.as_str())
        .unwrap_or("token-rotator");
    let id = obs.status.rotation.as_ref().map(|r| r.id.as_str());
    // A cluster rotation is named like a resource in no namespace.
    let ns = if tr.cluster { "" } else { tr.home.as_str() };
    api_key::friendly_name(prefix, ns, &tr.name, &obs.uid, id.unwrap_or_default())
}

fn key_credentials(tr: &Subject, c: &Credential) -> Credentials {
    let sid = tr.spec.twilio.account_sid.as_str();
    match &c.key_sid {
        Some(k) => Credentials::api_key(sid, k.as_str(), c.secret.clone()),
        None => Credentials::auth_token(sid, c.secret.clone()),
    }
}

async fn staged(ctx: &Context, obs: &Observation, tr: &Subject) -> Result<Staged, Failure> {
    let ns = tr.home.as_str();
    let Some(r) = &obs.status.rotation else {
        return Err(Failure {
            class: FailureClass::StagingLost,
            message: "no rotation in flight".into(),
        });
    };
    match secrets::read_staging(&ctx.client, ns, &r.staging_secret).await {
        Ok(Some(s)) if s.rotation_id == r.id => Ok(s),
        Ok(_) => Err(Failure {
            class: FailureClass::StagingLost,
            message: format!(
                "the staging Secret {ns}/{} holding rotation {}'s tokens is missing",
                r.staging_secret, r.id
            ),
        }),
        Err(e) => Err(kube_failure("reading the staging Secret", e)),
    }
}

/// Applies what `d` asks for into the target Secrets of every target namespace and, for Auth
/// Token rotation, the credentials Secret.
async fn distribute(ctx: &Context, tr: &Subject, d: Distribution<'_>) -> Result<(), Failure> {
    let mut namespaces = tr.targets.clone();
    if !namespaces.contains(&tr.home) {
        namespaces.push(tr.home.clone());
    }
    for ns in &namespaces {
        let (targets, credentials) = (tr.targets.contains(ns), *ns == tr.home);
        for (name, data) in secrets::desired(&tr.spec, d, targets, credentials) {
            match secrets::apply(&ctx.client, &tr.field_manager, ns, &name, &data).await {
                Ok(()) => {}
                // A namespace being deleted takes no new Secret, and nobody there will read it.
                Err(e) if secrets::namespace_terminating(&e) => {
                    tracing::info!(namespace = %ns, secret = %name, "namespace is being deleted; not writing there");
                }
                Err(e) => return Err(kube_failure(&format!("applying Secret {ns}/{name}"), e)),
            }
        }
    }
    Ok(())
}

async fn execute(
    ctx: &Context,
    tr: &Subject,
    obs: &Observation,
    action: &Action,
) -> Result<(), Failure> {
    let sid = tr.spec.twilio.account_sid.as_str();
    let keys = tr.spec.api_key.is_some();
    match action {
        Action::None => Ok(()),
        Action::Stage { clear_existing } => {
            let staged = if keys {
                stage_api_key(ctx, tr, obs).await?
            } else {
                let old = operator_token(ctx, tr).await?;
                let twilio = twilio_client(ctx, tr)?;
                let new = auth_token::create_secondary(
                    &twilio,
                    &Credentials::auth_token(sid, old.clone()),
                    *clear_existing,
                )
                .await?;
                Staged {
                    rotation_id: String::new(),
                    new: Credential::auth_token(new),
                    previous: Some(Credential::auth_token(old)),
                }
            };
            ctx.config.failpoints.hit("stage:created").await;
            store_staged(ctx, tr, obs, staged).await
        }
        Action::Distribute => {
            let s = staged(ctx, obs, tr).await?;
            distribute(
                ctx,
                tr,
                Distribution::New {
                    new: &s.new,
                    old: s.previous.as_ref(),
                },
            )
            .await
        }
        Action::Restart {
            stamp,
            workloads: refs,
            serve,
        } => {
            if tr.cluster {
                // A namespace may have started matching since distribution: its Secret gets
                // the credential the restarted pods must read before they restart.
                match serve {
                    Serve::Old => {
                        let old = old_credential(ctx, tr, obs).await?;
                        distribute(ctx, tr, Distribution::Restore { old: old.as_ref() }).await?;
                    }
                    Serve::New => {
                        let s = staged(ctx, obs, tr).await?;
                        let d = Distribution::New {
                            new: &s.new,
                            old: s.previous.as_ref(),
                        };
                        distribute(ctx, tr, d).await?;
                    }
                }
            }
            for w in refs {
                let r = WorkloadRef {
                    kind: w.kind,
                    name: w.name.clone(),
                };
                let by = workloads::Stamper {
                    key: &tr.stamp_key,
                    field_manager: &tr.field_manager,
                };
                match workloads::stamp(&ctx.client, &w.namespace, &r, by, stamp).await {
                    Ok(()) => {}
                    // Deleted meanwhile: nothing of it runs to restart.
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(kube_failure(&format!("restarting {w}"), e)),
                }
            }
            Ok(())
        }
        Action::Verify => {
            let s = staged(ctx, obs, tr).await?;
            let twilio = twilio_client(ctx, tr)?;
            let new = key_credentials(tr, &s.new);
            if keys {
                api_key::verify(&twilio, &new).await
            } else {
                auth_token::verify(&twilio, &new).await
            }
        }
        // An API key has nothing to promote: the new key is current once consumers run it.
        Action::Promote if keys => Ok(()),
        Action::Promote => {
            let s = staged(ctx, obs, tr).await?;
            let Some(old) = &s.previous else {
                return Err(Failure {
                    class: FailureClass::StagingLost,
                    message: "the staging Secret lacks the previous Auth Token".into(),
                });
            };
            let twilio = twilio_client(ctx, tr)?;
            auth_token::promote(
                &twilio,
                &key_credentials(tr, &s.new),
                &key_credentials(tr, old),
            )
            .await?;
            // Twilio now signs webhooks with the new token: list it first. Both tokens were in
            // the webhook key since distribution, so validators never missed the signer; if
            // this write fails the step is repeated, which confirms the promotion and writes
            // again.
            distribute(
                ctx,
                tr,
                Distribution::Promoted {
                    new: &s.new,
                    old: Some(old),
                },
            )
            .await
        }
        Action::Retire { delete_keys } => {
            // The Secrets get the rotation's own new credential alone, from the staging
            // Secret (never whatever the credentials Secret holds by now: another writer may
            // have put a dead token there). The staging Secret goes last, so it is gone only if
            // an earlier attempt of this step already wrote the Secrets; a repeat then deletes
            // the same keys again (already gone is fine).
            match staged(ctx, obs, tr).await {
                Ok(s) => distribute(ctx, tr, Distribution::Final { new: &s.new }).await?,
                Err(f) if f.class == FailureClass::StagingLost => {}
                Err(f) => return Err(f),
            }
            if keys {
                let op = operator_credentials(ctx, tr).await?;
                let twilio = twilio_client(ctx, tr)?;
                // Never the Main key the operator itself manages keys with.
                for k in delete_keys.iter().filter(|k| k.as_str() != op.username()) {
                    api_key::delete(&twilio, &op, k).await?;
                }
            }
            delete_staging(ctx, obs, tr).await
        }
        Action::RestoreSecrets => {
            let old = old_credential(ctx, tr, obs).await?;
            distribute(ctx, tr, Distribution::Restore { old: old.as_ref() }).await
        }
        Action::CheckCredentials => {
            let token = operator_token(ctx, tr).await?;
            let twilio = twilio_client(ctx, tr)?;
            twilio
                .fetch_account(&Credentials::auth_token(sid, token))
                .await
                .map(|_| ())
                .map_err(|e| auth_token::failure(&e, FailureClass::AuthenticationFailed))
        }
        Action::Recover => {
            let s = if keys {
                recover_api_key(ctx, tr, obs).await?
            } else {
                recover_auth_token(ctx, tr).await?
            };
            store_staged(ctx, tr, obs, s).await
        }
        Action::DeleteSecondary { at_twilio: false } => delete_staging(ctx, obs, tr).await,
        Action::DeleteSecondary { at_twilio: true } => {
            let twilio = twilio_client(ctx, tr)?;
            if keys {
                let op = operator_credentials(ctx, tr).await?;
                api_key::delete_named(&twilio, &op, &key_name(tr, obs)).await?;
            } else {
                // Before promotion the old token is the primary: the staging Secret's copy
                // still works when the credentials Secret is gone (a namespace being deleted).
                let op = match staged(ctx, obs, tr).await {
                    Ok(Staged {
                        previous: Some(old),
                        ..
                    }) => key_credentials(tr, &old),
                    _ => operator_credentials(ctx, tr).await?,
                };
                auth_token::delete_secondary(&twilio, &op).await?;
            }
            delete_staging(ctx, obs, tr).await
        }
    }
}

/// The credential an abort restores: the staging Secret's previous one; for an Auth Token whose
/// staging Secret is gone, the account's primary (the old token until promotion), as Twilio
/// names it to whoever authenticates.
async fn old_credential(
    ctx: &Context,
    tr: &Subject,
    obs: &Observation,
) -> Result<Option<Credential>, Failure> {
    match staged(ctx, obs, tr).await {
        Ok(s) => Ok(s.previous),
        Err(f) if f.class == FailureClass::StagingLost && tr.spec.auth_token.is_some() => {
            let held = operator_token(ctx, tr).await?;
            let twilio = twilio_client(ctx, tr)?;
            let creds = Credentials::auth_token(&tr.spec.twilio.account_sid, held);
            let account = twilio
                .fetch_account(&creds)
                .await
                .map_err(|e| auth_token::failure(&e, FailureClass::AuthenticationFailed))?;
            match account.auth_token {
                Some(primary) => Ok(Some(Credential::auth_token(primary))),
                None => Err(f),
            }
        }
        Err(f) => Err(f),
    }
}

/// The staging Secret of an Auth Token rotation, rebuilt after distribution: the credentials
/// Secret holds the new token since then, and Twilio names the primary (the old token until
/// promotion) to anyone who authenticates.
async fn recover_auth_token(ctx: &Context, tr: &Subject) -> Result<Staged, Failure> {
    let held = operator_token(ctx, tr).await?;
    let twilio = twilio_client(ctx, tr)?;
    let creds = Credentials::auth_token(&tr.spec.twilio.account_sid, held.clone());
    let account = twilio
        .fetch_account(&creds)
        .await
        .map_err(|e| auth_token::failure(&e, FailureClass::AuthenticationFailed))?;
    let lost = |why: &str| {
        Failure {
        class: FailureClass::StagingLost,
        message: format!("the staging Secret was deleted and cannot be rebuilt: {why}; set tokenrotator.io/abort to roll back"),
    }
    };
    let Some(primary) = account.auth_token else {
        return Err(lost(
            "Twilio did not return the account's primary Auth Token",
        ));
    };
    if primary == held {
        return Err(lost(
            "the credentials Secret holds the primary Auth Token, not the new one",
        ));
    }
    Ok(Staged {
        rotation_id: String::new(),
        new: Credential::auth_token(held),
        previous: Some(Credential::auth_token(primary)),
    })
}

/// The staging Secret of an API key rotation, rebuilt after distribution from the first target
/// Secret, when it holds the key this rotation made (its SID is in status). The previous key's
/// secret is gone with it: the rotation can only go forward.
async fn recover_api_key(
    ctx: &Context,
    tr: &Subject,
    obs: &Observation,
) -> Result<Staged, Failure> {
    let want = obs.status.rotation.as_ref().and_then(|r| r.key_sid.clone());
    let held = current_key(ctx, tr).await?;
    match (want, held) {
        (Some(want), Some(held)) if held.key_sid.as_deref() == Some(want.as_str()) => Ok(Staged {
            rotation_id: String::new(),
            new: held,
            previous: None,
        }),
        _ => Err(Failure {
            class: FailureClass::StagingLost,
            message: "the staging Secret was deleted and the target Secrets no longer hold this rotation's new API key, so it cannot be rebuilt".into(),
        }),
    }
}

/// Stage for an API key: the key the Secrets hold now is the one replaced; a restricted key's
/// successor gets the spec's policy, or else the policy of the key it replaces.
async fn stage_api_key(ctx: &Context, tr: &Subject, obs: &Observation) -> Result<Staged, Failure> {
    let op = operator_credentials(ctx, tr).await?;
    let twilio = twilio_client(ctx, tr)?;
    let previous = current_key(ctx, tr).await?;
    let policy = match tr.spec.api_key.as_ref().and_then(|k| k.policy.clone()) {
        Some(p) => Some(p),
        None => match previous.as_ref().and_then(|p| p.key_sid.as_deref()) {
            Some(k) => api_key::policy_of(&twilio, &op, k).await?,
            None => None,
        },
    };
    let new = api_key::create(&twilio, &op, &key_name(tr, obs), policy.as_ref()).await?;
    Ok(Staged {
        rotation_id: String::new(),
        new,
        previous,
    })
}

/// The new credential exists only in this process now: insist on storing it.
async fn store_staged(
    ctx: &Context,
    tr: &Subject,
    obs: &Observation,
    mut staged: Staged,
) -> Result<(), Failure> {
    let Some(r) = &obs.status.rotation else {
        return Err(Failure {
            class: FailureClass::StagingLost,
            message: "no rotation in flight".into(),
        });
    };
    staged.rotation_id = r.id.clone();
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=6 {
        match secrets::write_staging(
            &ctx.client,
            &tr.field_manager,
            &tr.home,
            tr.owner.as_ref(),
            &r.staging_secret,
            &staged,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 6 => {
                tracing::warn!(attempt, error = %e, "storing the new credential failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                return Err(kube_failure(
                    "storing the new credential in the staging Secret",
                    e,
                ))
            }
        }
    }
    Ok(())
}

async fn delete_staging(ctx: &Context, obs: &Observation, tr: &Subject) -> Result<(), Failure> {
    if let Some(r) = &obs.status.rotation {
        secrets::delete(&ctx.client, &tr.home, &r.staging_secret)
            .await
            .map_err(|e| kube_failure("deleting the staging Secret", e))?;
    }
    Ok(())
}
