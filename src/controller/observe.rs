//! What a reconcile sees: the resource, its staging Secret, the dependent workloads, the
//! target Secrets before the steps towards promotion, and the other resources on its account.

use super::locks::{account_key, AccountUse, Replaces};
use super::pods::Dependent;
use super::secrets::{self, Staged};
use super::subject::{Rotated, Subject};
use super::{Context, Error};
use crate::api::{
    AbortStep, CopiesPolicy, Phase, RestartPolicy, WorkloadProgress, ABORT_ANNOTATION,
    DELETE_SECONDARY_ANNOTATION, ROTATE_NOW_ANNOTATION, SCHEDULE_ANNOTATION,
};
use crate::providers::CredentialKind;
use crate::rotation::{
    self, Holder, Observation, Plan, RevertedKey, RolloutView, StagedKeys, WorkloadAt,
};
use crate::time::from_k8s;
use crate::workloads;
use chrono::Utc;
use kube::ResourceExt;
use std::collections::BTreeSet;

/// The observation, and the staging Secret's content as read for it: the step acts on that
/// read rather than reading the Secret again.
pub(super) async fn observe<K: Rotated>(
    obj: &K,
    tr: &Subject,
    ctx: &Context,
) -> Result<(Observation, Option<Staged>), Error> {
    let now = Utc::now();
    let annotations = obj.annotations();
    let status = obj.rotation_status().cloned().unwrap_or_default();
    let mut plan = Plan::new(
        &tr.spec,
        annotations.get(SCHEDULE_ANNOTATION).map(String::as_str),
    );
    // Suspending acts at once, whatever spec the rotation in flight runs with.
    // So do the answers to a consumer hold (what to do with unmanaged pods, whether no
    // consumers is fine): the message of such a hold tells the user to change them.
    if let Ok(p) = plan.as_mut() {
        let live = obj.rotation_spec();
        p.suspend = live.suspend;
        let w = live.workloads.clone().unwrap_or_default();
        p.unmanaged_pods = w.unmanaged_pods;
        p.no_consumers = w.no_consumers;
    }
    let staging = match &status.rotation {
        Some(r) => {
            ctx.staging
                .read(&ctx.client, &tr.home, &r.staging_secret)
                .await?
        }
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
    let (rollout, dependents) = match &stamp {
        Some(stamp) => {
            let (view, deps) = observe_rollout(ctx, tr, stamp).await?;
            (Some(view), deps)
        }
        None => (None, BTreeSet::new()),
    };
    let through = rollout.as_ref().is_some_and(RolloutView::through);
    // Before each step towards promotion (once the rollout is through): do the targets still
    // hold the new credential?
    let towards_promotion = match status.phase {
        Some(Phase::RollingOut) => {
            tr.spec.workloads.as_ref().map(|w| w.restart) == Some(RestartPolicy::Never) || through
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
    // The Pod-level barrier, once the workloads are through (with restart: Never, every poll:
    // the wait is the kubelet's sync delay).
    let never = tr.spec.workloads.as_ref().map(|w| w.restart) == Some(RestartPolicy::Never);
    let pods_matter = match status.phase {
        Some(Phase::RollingOut) => through || never,
        // Only while rolling back (the one abort step with a stamp).
        Some(Phase::Aborting) => stamp.is_some() && (through || never),
        _ => false,
    };
    let pods = if pods_matter && !ctx.config.safety.skip_pod_barrier {
        // The stamp of the rollout (or rollback) in progress: pods carrying it read the
        // credential being served.
        Some(super::pods::observe(&ctx.client, tr, &dependents, stamp.as_deref()).await?)
    } else {
        None
    };
    // Copies of the old credential outside the rotation, once, right before promotion.
    let live_copies = obj
        .rotation_spec()
        .uncovered_copies
        .clone()
        .unwrap_or_default();
    let retains_old = plan.as_ref().is_ok_and(|p| p.retain_previous > 0);
    let old = staging
        .as_ref()
        .filter(current)
        .and_then(|s| s.previous.as_ref())
        .map(|p| &p.secret);
    let copies = match (status.phase, old, live_copies.policy) {
        (Some(Phase::Verifying), Some(old), CopiesPolicy::Hold) if !retains_old => {
            super::copies::scan(&ctx.client, tr, old, &live_copies.except).await?
        }
        _ => Vec::new(),
    };
    let staged_for = staging.as_ref().map(|s| s.rotation_id.clone());
    let obs = Observation {
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
        at_capacity: None,
        account_conflict: account_conflict(obj, tr, ctx),
        staged_for,
        staged_keys,
        rollout,
        reverted,
        pods,
        copies,
    };
    Ok((obs, staging))
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
    if CredentialKind::of(&tr.spec).is_some_and(CredentialKind::rotates_operator_credential) {
        let c = &tr.spec.twilio.credentials_secret_ref;
        wanted.push((&tr.home, &c.name, &c.key));
    }
    secrets::lacking(
        &ctx.client,
        &tr.field_manager,
        wanted,
        &staged.new.secret,
        false,
    )
    .await
    .map_err(|(_, e)| e.into())
}

/// Rollout progress of the dependent workloads in every target namespace. In a matched
/// namespace that is being deleted nothing is restarted, but its dependent workloads that
/// still exist count as not done: their pods may still run the old token.
async fn observe_rollout(
    ctx: &Context,
    tr: &Subject,
    stamp: &str,
) -> Result<(RolloutView, BTreeSet<Dependent>), Error> {
    let targets: BTreeSet<String> = tr.spec.secrets.iter().map(|s| s.name.clone()).collect();
    let mut view = RolloutView::default();
    let mut dependents = BTreeSet::new();
    let covered: BTreeSet<String> = tr.targets.iter().chain(&tr.terminating).cloned().collect();
    let mut lists = ctx.workloads.list_in(&ctx.client, &covered).await?;
    for ns in &tr.terminating {
        let all = lists.remove(ns).unwrap_or_default();
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
        let all = lists.remove(ns).unwrap_or_default();
        let (deps, missing) = workloads::dependents(tr.spec.workloads.as_ref(), &targets, &all);
        let start = view.workloads.len();
        dependents.extend(deps.iter().map(|w| (ns.clone(), w.kind, w.name.clone())));
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
    Ok((view, dependents))
}

/// What the account checks need of one resource, whichever kind it is.
struct Claim {
    holder: Holder,
    /// Its credential has one owner per account (the Auth Token).
    owns_account: bool,
    /// What its rotation takes of the account.
    uses: AccountUse,
    created: chrono::DateTime<Utc>,
    deleting: bool,
    credentials_refused: bool,
}

impl Claim {
    fn of<K: Rotated>(o: &K) -> Self {
        let spec = o.effective_spec();
        let status = o.rotation_status();
        Self {
            holder: o.identity().1,
            owns_account: CredentialKind::of(spec)
                .is_some_and(CredentialKind::one_owner_per_account),
            uses: AccountUse::of(
                spec,
                o.namespace().as_deref(),
                Replaces::from_status(status),
            ),
            created: o
                .meta()
                .creation_timestamp
                .as_ref()
                .map_or(chrono::DateTime::<Utc>::MAX_UTC, from_k8s),
            deleting: o.meta().deletion_timestamp.is_some(),
            credentials_refused: status.is_some_and(|s| s.credentials_refused),
        }
    }
}

/// Which of an account's resources to make a [`Claim`] of.
#[derive(Clone, Copy)]
enum Among {
    All,
    /// Those with a rotation in flight (status says so): the others are skipped before a
    /// claim is built (with 1,000 resources, ten per account, building one for each at every
    /// reconcile was 7 % of the operator's CPU).
    InFlight,
}

impl Among {
    fn admits<K: Rotated>(self, o: &K) -> bool {
        match self {
            Among::All => true,
            Among::InFlight => o.flying(),
        }
    }
}

/// The resources in this process's caches (both kinds) rotating on the account of `spec`,
/// by the spec each rotates with now (from the caches' account index).
fn claims_on<'a>(
    ctx: &'a Context,
    spec: &'a crate::api::TokenRotationSpec,
    among: Among,
) -> impl Iterator<Item = Claim> + 'a {
    let namespaced = ctx.stores.iter().flat_map(|s| s.on_account(spec));
    let cluster = ctx.cluster_store.iter().flat_map(|s| s.on_account(spec));
    namespaced
        .filter(move |o| among.admits(o.as_ref()))
        .map(|o| Claim::of(o.as_ref()))
        .chain(
            cluster
                .filter(move |o| among.admits(o.as_ref()))
                .map(|o| Claim::of(o.as_ref())),
        )
}

/// Every resource with a rotation in flight, from status (both kinds).
pub(super) fn in_flight(ctx: &Context) -> BTreeSet<Holder> {
    let namespaced = ctx.stores.iter().flat_map(|s| s.state());
    let cluster = ctx.cluster_store.iter().flat_map(|s| s.state());
    namespaced
        .filter(|o| o.flying())
        .map(|o| o.identity().1)
        .chain(cluster.filter(|o| o.flying()).map(|o| o.identity().1))
        .collect()
}

/// Another resource rotating on the same account in a way that excludes this rotation (see
/// [`AccountUse`]), from this process's locks or from status. The key an API key rotation
/// replaces is not known here (it takes a read): the reconcile checks it when the rotation
/// would start ([`account_holder_for`]).
fn account_holder(tr: &Subject, ctx: &Context) -> Option<Holder> {
    account_holder_for(
        tr,
        ctx,
        &tr.account_use(&ctx.config.safety, Replaces::Nothing),
    )
}

/// Another resource rotating on the same account in a way that excludes `wants`.
pub(super) fn account_holder_for(
    tr: &Subject,
    ctx: &Context,
    wants: &AccountUse,
) -> Option<Holder> {
    let key = account_key(
        &tr.spec.twilio.account_sid,
        tr.spec.twilio.region.as_deref(),
    );
    if let Some(h) = ctx.locks.blocker(&key, &tr.holder, wants) {
        return Some(h);
    }
    // Status covers the rotations this process holds no lock for (started by another
    // replica); for the others the lock says more (status tells the replaced key only once
    // the new one is distributed).
    claims_on(ctx, &tr.spec, Among::InFlight)
        .filter(|c| c.holder != tr.holder && !ctx.locks.holds(&key, &c.holder))
        .find(|c| c.uses.excludes(wants))
        .map(|c| c.holder)
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
    let me = Claim::of(obj);
    if !me.owns_account || ctx.config.safety.skip_account_conflict {
        return None;
    }
    let mut others: Vec<(chrono::DateTime<Utc>, Holder)> =
        claims_on(ctx, obj.effective_spec(), Among::All)
            .filter(|c| c.owns_account && c.holder != tr.holder)
            .filter(|c| !c.deleting && !c.credentials_refused)
            .map(|c| (c.created, c.holder))
            .collect();
    others.sort();
    let first = others.first()?.clone();
    Some(if (me.created, me.holder) < first {
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
