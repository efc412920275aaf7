//! Pure Deployment controller logic: the rollout decision and the status it writes, following
//! `pkg/controller/deployment` (rolling.go, recreate.go, sync.go, progress.go).
//!
//! ReplicaSets are not materialised: the pods of one template hash stand for one ReplicaSet, and
//! a ReplicaSet's replica count is its pod count (pods are created and deleted instantly).

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::hash::template_hash;
use super::intstr::deployment_fenceposts;
use super::plan::{deletion_order, Action, PodSummary};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Recreate,
    /// Resolved fenceposts.
    RollingUpdate {
        max_surge: i32,
        max_unavailable: i32,
    },
}

/// What the controller reads of a Deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentInput {
    pub name: String,
    pub generation: i64,
    pub replicas: i32,
    pub paused: bool,
    pub strategy: Strategy,
    pub min_ready_seconds: i32,
    /// `None` (or `i32::MAX`) means no deadline.
    pub progress_deadline_seconds: Option<i32>,
    /// Hash of the current pod template.
    pub revision: String,
}

impl DeploymentInput {
    pub fn from_object(d: &Deployment, default_progress_deadline_seconds: i32) -> Self {
        let spec = d.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let strategy = match spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => Strategy::Recreate,
            _ => {
                let ru = spec
                    .strategy
                    .as_ref()
                    .and_then(|s| s.rolling_update.as_ref());
                let (max_surge, max_unavailable) = deployment_fenceposts(
                    ru.and_then(|r| r.max_surge.as_ref()),
                    ru.and_then(|r| r.max_unavailable.as_ref()),
                    replicas,
                );
                Strategy::RollingUpdate {
                    max_surge,
                    max_unavailable,
                }
            }
        };
        Self {
            name: d.metadata.name.clone().unwrap_or_default(),
            generation: d.metadata.generation.unwrap_or(0),
            replicas,
            paused: spec.paused.unwrap_or(false),
            strategy,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            progress_deadline_seconds: Some(
                spec.progress_deadline_seconds
                    .unwrap_or(default_progress_deadline_seconds),
            ),
            revision: template_hash(&spec.template),
        }
    }

    fn has_progress_deadline(&self) -> bool {
        matches!(self.progress_deadline_seconds, Some(s) if s != i32::MAX)
    }

    /// `deploymentutil.MaxUnavailable`: what the Available condition tolerates.
    pub fn max_unavailable(&self) -> i32 {
        match self.strategy {
            Strategy::RollingUpdate {
                max_unavailable, ..
            } if self.replicas > 0 => max_unavailable.min(self.replicas),
            _ => 0,
        }
    }

    fn replica_set_name(&self) -> String {
        format!("{}-{}", self.name, self.revision)
    }
}

/// One sync's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// This sync creates the ReplicaSet of the current template.
    pub creates_new_rs: bool,
}

/// One sync's scaling decision for the pods of all revisions (`rolloutRolling`,
/// `rolloutRecreate`, or `sync` when paused): either scale the new ReplicaSet or the old ones.
/// `new_rs_exists` tells whether the ReplicaSet of `d.revision` was created before.
pub fn plan(d: &DeploymentInput, pods: &[PodSummary], new_rs_exists: bool) -> Plan {
    let (new, old): (Vec<&PodSummary>, Vec<&PodSummary>) =
        pods.iter().partition(|p| p.revision == d.revision);
    if d.paused {
        return Plan {
            actions: plan_paused(d, pods, new_rs_exists),
            creates_new_rs: false,
        };
    }
    match d.strategy {
        Strategy::Recreate => {
            if !old.is_empty() {
                // The new ReplicaSet is created only once the old pods are gone.
                return Plan {
                    actions: old.into_iter().map(Action::delete).collect(),
                    creates_new_rs: false,
                };
            }
            Plan {
                actions: scale_to(&d.revision, new, d.replicas),
                creates_new_rs: !new_rs_exists,
            }
        }
        Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => Plan {
            actions: plan_rolling(d, pods, new, old, max_surge, max_unavailable),
            creates_new_rs: !new_rs_exists,
        },
    }
}

fn plan_rolling(
    d: &DeploymentInput,
    pods: &[PodSummary],
    new: Vec<&PodSummary>,
    old: Vec<&PodSummary>,
    max_surge: i32,
    max_unavailable: i32,
) -> Vec<Action> {
    if old.is_empty() {
        return scale_to(&d.revision, new, d.replicas);
    }
    let replicas = d.replicas as usize;
    // reconcileNewReplicaSet
    if new.len() > replicas {
        return scale_to(&d.revision, new, d.replicas);
    }
    if new.len() < replicas {
        let max_total = replicas + max_surge as usize;
        if pods.len() < max_total {
            let up = (max_total - pods.len()).min(replicas - new.len());
            return (0..up).map(|_| Action::create(&d.revision)).collect();
        }
    }
    // reconcileOldReplicaSets
    let min_available = d.replicas - max_unavailable;
    let new_unavailable = new.iter().filter(|p| !p.available).count() as i32;
    let max_scaled_down = pods.len() as i32 - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut old = old;
    deletion_order(&mut old);
    // cleanupUnhealthyReplicas: unavailable old pods go first, within the budget.
    let unhealthy: Vec<&PodSummary> = old
        .iter()
        .copied()
        .filter(|p| !p.available)
        .take(max_scaled_down as usize)
        .collect();
    let mut actions: Vec<Action> = unhealthy.iter().map(|p| Action::delete(p)).collect();
    // scaleDownOldReplicaSetsForRollingUpdate: keep minAvailable available pods.
    let available = pods.iter().filter(|p| p.available).count() as i32;
    if available > min_available {
        let budget = (available - min_available) as usize;
        actions.extend(
            old.iter()
                .filter(|p| !unhealthy.iter().any(|u| u.name == p.name))
                .take(budget)
                .map(|p| Action::delete(p)),
        );
    }
    actions
}

/// A paused Deployment still scales, but only when a single ReplicaSet is active; no new
/// ReplicaSet is created.
fn plan_paused(d: &DeploymentInput, pods: &[PodSummary], new_rs_exists: bool) -> Vec<Action> {
    let Some(first) = pods.first() else {
        return if new_rs_exists {
            scale_to(&d.revision, Vec::new(), d.replicas)
        } else {
            Vec::new()
        };
    };
    if pods.iter().any(|p| p.revision != first.revision) {
        return Vec::new();
    }
    scale_to(&first.revision, pods.iter().collect(), d.replicas)
}

fn scale_to(revision: &str, mut pods: Vec<&PodSummary>, replicas: i32) -> Vec<Action> {
    let want = replicas.max(0) as usize;
    if pods.len() < want {
        return (pods.len()..want)
            .map(|_| Action::create(revision))
            .collect();
    }
    let excess = pods.len() - want;
    deletion_order(&mut pods);
    pods.into_iter().take(excess).map(Action::delete).collect()
}

/// The status the controller writes after this sync. `old` is the previous status (the
/// Deployment's `.status`), `pods` the pods after the sync's actions, `new_rs_created` whether
/// this sync created the ReplicaSet of `d.revision`, `new_rs_exists` whether it exists (created
/// now or before).
pub fn status(
    d: &DeploymentInput,
    pods: &[PodSummary],
    old: &DeploymentStatus,
    new_rs_created: bool,
    new_rs_exists: bool,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let has_deadline = d.has_progress_deadline();
    let mut working = old.clone();
    // checkPausedConditions
    if has_deadline {
        let current = condition(&working, PROGRESSING).and_then(|c| c.reason.clone());
        if current.as_deref() != Some(TIMED_OUT) {
            let paused_cond = current.as_deref() == Some(PAUSED);
            if d.paused && !paused_cond {
                set_condition(
                    &mut working,
                    new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now),
                );
            } else if !d.paused && paused_cond {
                set_condition(
                    &mut working,
                    new_condition(
                        PROGRESSING,
                        "Unknown",
                        RESUMED,
                        "Deployment is resumed",
                        now,
                    ),
                );
            }
        }
    }
    if d.paused {
        return calculate(d, pods, new_rs_exists, &working, now);
    }
    let rs = d.replica_set_name();
    // Messages name the new ReplicaSet, or the Deployment while it has none.
    let subject = if new_rs_exists {
        format!("ReplicaSet {rs:?}")
    } else {
        format!("Deployment {:?}", d.name)
    };
    if has_deadline {
        if new_rs_created {
            let msg = format!("Created new replica set {rs:?}");
            set_condition(
                &mut working,
                new_condition(PROGRESSING, "True", NEW_RS_CREATED, &msg, now),
            );
        } else if new_rs_exists && condition(&working, PROGRESSING).is_none() {
            let msg = format!("Found new replica set {rs:?}");
            set_condition(
                &mut working,
                new_condition(PROGRESSING, "True", FOUND_NEW_RS, &msg, now),
            );
        }
    }
    // syncRolloutStatus
    let mut new = calculate(d, pods, new_rs_exists, &working, now);
    if !has_deadline {
        remove_condition(&mut new, PROGRESSING);
    }
    let current = condition(&working, PROGRESSING).cloned();
    let complete_already = n(new.replicas) == n(new.updated_replicas)
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if has_deadline && !complete_already {
        if is_complete(d, &new) {
            let msg = format!("{subject} has successfully progressed.");
            set_condition(
                &mut new,
                new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, now),
            );
        } else if is_progressing(&working, &new) {
            let msg = format!("{subject} is progressing.");
            let mut cond = new_condition(PROGRESSING, "True", RS_UPDATED, &msg, now);
            if let Some(cur) = &current {
                if cur.status == "True" {
                    cond.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut new, PROGRESSING);
            }
            set_condition(&mut new, cond);
        } else if timed_out(d, &new, now) {
            let msg = format!("{subject} has timed out progressing.");
            set_condition(
                &mut new,
                new_condition(PROGRESSING, "False", TIMED_OUT, &msg, now),
            );
        }
    }
    new
}

/// `calculateStatus`: counts from the pods, conditions carried over, Available recomputed.
fn calculate(
    d: &DeploymentInput,
    pods: &[PodSummary],
    new_rs_exists: bool,
    working: &DeploymentStatus,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let total = pods.len() as i32;
    let available = pods.iter().filter(|p| p.available).count() as i32;
    let ready = pods.iter().filter(|p| p.ready).count() as i32;
    let updated = if new_rs_exists {
        pods.iter().filter(|p| p.revision == d.revision).count() as i32
    } else {
        0
    };
    let mut status = DeploymentStatus {
        observed_generation: Some(d.generation),
        replicas: omit_zero(total),
        updated_replicas: omit_zero(updated),
        ready_replicas: omit_zero(ready),
        available_replicas: omit_zero(available),
        unavailable_replicas: omit_zero((total - available).max(0)),
        collision_count: working.collision_count,
        conditions: working.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= d.replicas - d.max_unavailable() {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.",
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.",
                now,
            ),
        );
    }
    status
}

/// `deploymentutil.DeploymentComplete`.
fn is_complete(d: &DeploymentInput, s: &DeploymentStatus) -> bool {
    n(s.updated_replicas) == d.replicas
        && n(s.replicas) == d.replicas
        && n(s.available_replicas) == d.replicas
        && s.observed_generation.unwrap_or(0) >= d.generation
}

/// `deploymentutil.DeploymentProgressing`.
fn is_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// `deploymentutil.DeploymentTimedOut`.
fn timed_out(d: &DeploymentInput, s: &DeploymentStatus, now: DateTime<Utc>) -> bool {
    let Some(deadline) = d
        .progress_deadline_seconds
        .filter(|_| d.has_progress_deadline())
    else {
        return false;
    };
    let Some(cond) = condition(s, PROGRESSING) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => match &cond.last_update_time {
            Some(from) => {
                (from.0.as_second() + i64::from(deadline)) * 1000 < now.timestamp_millis()
            }
            None => false,
        },
    }
}

pub fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Mirrors `omitempty` on int32 status fields.
pub fn omit_zero(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

/// A condition timestamp at the API's one-second precision.
pub fn time(now: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(now.timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_update_time: Some(time(now)),
        last_transition_time: Some(time(now)),
    }
}

pub fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

/// `SetDeploymentCondition`: no-op for the same status and reason; keeps lastTransitionTime when
/// only the reason changes; the condition moves to the end.
fn set_condition(s: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(cur) = condition(s, &cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &cond.type_);
    s.conditions.get_or_insert_with(Vec::new).push(cond);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::plan::test_support::{apply, make_all_ready, pods, t};
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn input(replicas: i32, max_surge: i32, max_unavailable: i32) -> DeploymentInput {
        DeploymentInput {
            name: "web".into(),
            generation: 2,
            replicas,
            paused: false,
            strategy: Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            },
            min_ready_seconds: 0,
            progress_deadline_seconds: Some(600),
            revision: "new".into(),
        }
    }

    fn counts(pods: &[PodSummary], rev: &str) -> (usize, usize, usize) {
        let new = pods.iter().filter(|p| p.revision == rev).count();
        let available = pods.iter().filter(|p| p.available).count();
        (pods.len(), new, available)
    }

    /// Drives a rollout to completion, making at most `ready_per_step` pods ready per sync, and
    /// checks the surge/availability bounds after every sync.
    fn drive(d: &DeploymentInput, mut pods: Vec<PodSummary>, ready_per_step: usize) -> usize {
        let (surge, unavailable) = match d.strategy {
            Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            } => (max_surge, max_unavailable),
            Strategy::Recreate => unreachable!(),
        };
        let min_available = (d.replicas - unavailable).max(0) as usize;
        let max_total = (d.replicas + surge) as usize;
        for step in 0..1000 {
            let plan = plan(d, &pods, step > 0);
            apply(&mut pods, &plan.actions, t(step as i64));
            let (total, new, available) = counts(&pods, &d.revision);
            assert!(
                available >= min_available,
                "step {step}: {available} available < {min_available}: {d:?}"
            );
            assert!(
                total <= max_total.max(d.replicas as usize),
                "step {step}: {total} pods > {max_total}: {d:?}"
            );
            if new == d.replicas as usize && total == new && available == total {
                return step;
            }
            for p in pods.iter_mut().filter(|p| !p.ready).take(ready_per_step) {
                p.ready = true;
                p.available = true;
            }
        }
        panic!("rollout did not finish: {d:?}");
    }

    #[test]
    fn rolling_update_respects_bounds_for_many_shapes() {
        for replicas in 0..=10 {
            for (surge, unav) in [
                (None, None),
                (Some(IntOrString::Int(0)), Some(IntOrString::Int(1))),
                (Some(IntOrString::Int(1)), Some(IntOrString::Int(0))),
                (Some(IntOrString::Int(3)), Some(IntOrString::Int(2))),
                (
                    Some(IntOrString::String("50%".into())),
                    Some(IntOrString::String("50%".into())),
                ),
                (
                    Some(IntOrString::String("10%".into())),
                    Some(IntOrString::String("10%".into())),
                ),
                (Some(IntOrString::Int(0)), Some(IntOrString::Int(0))),
                (
                    Some(IntOrString::String("100%".into())),
                    Some(IntOrString::Int(0)),
                ),
            ] {
                let (s, u) = deployment_fenceposts(surge.as_ref(), unav.as_ref(), replicas);
                let d = input(replicas, s, u);
                for ready_per_step in [1, 100] {
                    let steps = drive(&d, pods("old", replicas as usize, 0), ready_per_step);
                    assert!(steps < 1000);
                }
            }
        }
    }

    #[test]
    fn defaults_surge_one_then_scale_down_one() {
        let d = input(4, 1, 1);
        let mut ps = pods("old", 4, 0);
        let p = plan(&d, &ps, false);
        assert!(p.creates_new_rs);
        assert_eq!(p.actions, vec![Action::create("new")]);
        apply(&mut ps, &p.actions, t(1));
        // New pod not ready: one old pod may go (5 pods - min 3 - 1 unavailable new).
        let p = plan(&d, &ps, true);
        assert!(!p.creates_new_rs);
        assert_eq!(p.actions.len(), 1);
        assert!(matches!(&p.actions[0], Action::Delete { pod } if pod.starts_with("old")));
    }

    #[test]
    fn failing_new_pods_stall_the_rollout_without_dropping_below_min_available() {
        let d = input(4, 1, 1);
        let mut ps = pods("old", 4, 0);
        for step in 0..20 {
            let p = plan(&d, &ps, step > 0);
            apply(&mut ps, &p.actions, t(step));
        }
        let (total, new, available) = counts(&ps, "new");
        assert_eq!((total, new, available), (5, 2, 3));
        assert!(plan(&d, &ps, true).actions.is_empty());
    }

    #[test]
    fn unavailable_old_pods_are_removed_first() {
        let d = input(3, 1, 0);
        let mut ps = pods("old", 2, 1);
        ps.push(PodSummary {
            available: true,
            ready: true,
            ..pods("new", 1, 0)[0].clone()
        });
        // 4 pods, min available 3, no unavailable new pod: budget 1, spent on the unready old pod.
        let p = plan(&d, &ps, true);
        assert_eq!(
            p.actions,
            vec![Action::Delete {
                pod: "old-2".into()
            }]
        );
    }

    #[test]
    fn scaling_without_rollout_is_direct() {
        let d = input(5, 1, 1);
        let ps = pods("new", 2, 0);
        assert_eq!(plan(&d, &ps, true).actions.len(), 3);
        let d = input(1, 1, 1);
        let ps = pods("new", 2, 1);
        let actions = plan(&d, &ps, true).actions;
        assert_eq!(actions.len(), 2);
        assert!(
            actions.contains(&Action::Delete {
                pod: "new-2".into()
            }),
            "unready goes first: {actions:?}"
        );
    }

    #[test]
    fn paused_does_not_roll_but_scales_a_single_revision() {
        let mut d = input(3, 1, 1);
        d.paused = true;
        let ps = pods("old", 3, 0);
        let p = plan(&d, &ps, false);
        assert_eq!(
            p,
            Plan {
                actions: vec![],
                creates_new_rs: false
            }
        );
        d.replicas = 4;
        assert_eq!(plan(&d, &ps, false).actions, vec![Action::create("old")]);
        assert!(
            plan(&d, &[], false).actions.is_empty(),
            "paused at creation: no ReplicaSet, no pods"
        );
    }

    #[test]
    fn recreate_deletes_everything_first() {
        let mut d = input(3, 0, 0);
        d.strategy = Strategy::Recreate;
        let mut ps = pods("old", 3, 0);
        let p = plan(&d, &ps, false);
        assert!(!p.creates_new_rs);
        assert_eq!(p.actions.len(), 3);
        assert!(p.actions.iter().all(|a| matches!(a, Action::Delete { .. })));
        apply(&mut ps, &p.actions, t(1));
        let p = plan(&d, &ps, false);
        assert!(p.creates_new_rs);
        assert_eq!(p.actions, vec![Action::create("new"); 3]);
    }

    #[test]
    fn from_object_defaults() {
        let d = Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(10),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::String("30%".into())),
                        max_unavailable: None,
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let i = DeploymentInput::from_object(&d, 600);
        assert_eq!(
            i.strategy,
            Strategy::RollingUpdate {
                max_surge: 3,
                max_unavailable: 2
            }
        );
        assert_eq!(i.generation, 3);
        assert_eq!(i.progress_deadline_seconds, Some(600));
        assert_eq!(i.max_unavailable(), 2);
        let empty = DeploymentInput::from_object(&Deployment::default(), 600);
        assert_eq!(empty.replicas, 1);
        assert_eq!(
            empty.strategy,
            Strategy::RollingUpdate {
                max_surge: 1,
                max_unavailable: 0
            }
        );
    }

    fn reason(s: &DeploymentStatus, type_: &str) -> (String, String) {
        let c = condition(s, type_).unwrap_or_else(|| panic!("no {type_} condition in {s:?}"));
        (c.status.clone(), c.reason.clone().unwrap_or_default())
    }

    #[test]
    fn status_walks_through_the_progressing_reasons() {
        let d = input(2, 1, 0);
        let mut ps = pods("old", 2, 0);
        let complete_old = DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(2),
            updated_replicas: Some(2),
            ready_replicas: Some(2),
            available_replicas: Some(2),
            conditions: Some(vec![
                new_condition(AVAILABLE, "True", MIN_AVAILABLE, "", t(0)),
                new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, "", t(0)),
            ]),
            ..Default::default()
        };
        let p = plan(&d, &ps, false);
        apply(&mut ps, &p.actions, t(10));
        let s1 = status(&d, &ps, &complete_old, true, true, t(10));
        assert_eq!(s1.observed_generation, Some(2));
        assert_eq!(
            (s1.replicas, s1.updated_replicas, s1.available_replicas),
            (Some(3), Some(1), Some(2))
        );
        assert_eq!(s1.unavailable_replicas, Some(1));
        // The old status counted the old pods only: no progress yet, just the new ReplicaSet.
        assert_eq!(
            reason(&s1, PROGRESSING),
            ("True".into(), NEW_RS_CREATED.into())
        );
        assert_eq!(
            condition(&s1, PROGRESSING).unwrap().message.as_deref(),
            Some("Created new replica set \"web-new\"")
        );
        assert_eq!(
            reason(&s1, AVAILABLE),
            ("True".into(), MIN_AVAILABLE.into())
        );
        // The new pod turning ready is progress; lastTransitionTime stays, lastUpdateTime moves.
        make_all_ready(&mut ps);
        let s1b = status(&d, &ps, &s1, false, true, t(11));
        assert_eq!(
            reason(&s1b, PROGRESSING),
            ("True".into(), RS_UPDATED.into())
        );
        let c = condition(&s1b, PROGRESSING).unwrap();
        assert_eq!(
            c.message.as_deref(),
            Some("ReplicaSet \"web-new\" is progressing.")
        );
        assert_eq!(
            c.last_transition_time,
            Some(time(t(0))),
            "status stayed True since t(0)"
        );
        assert_eq!(c.last_update_time, Some(time(t(11))));
        let s1 = s1b;

        for step in 0..10 {
            make_all_ready(&mut ps);
            let p = plan(&d, &ps, true);
            apply(&mut ps, &p.actions, t(11 + step));
        }
        make_all_ready(&mut ps);
        let s2 = status(&d, &ps, &s1, false, true, t(30));
        assert_eq!(
            (
                s2.replicas,
                s2.updated_replicas,
                s2.ready_replicas,
                s2.available_replicas
            ),
            (Some(2), Some(2), Some(2), Some(2))
        );
        assert_eq!(s2.unavailable_replicas, None, "omitempty");
        assert_eq!(
            reason(&s2, PROGRESSING),
            ("True".into(), NEW_RS_AVAILABLE.into())
        );
        assert_eq!(
            condition(&s2, PROGRESSING).unwrap().message.as_deref(),
            Some("ReplicaSet \"web-new\" has successfully progressed.")
        );
        // Stable afterwards.
        assert_eq!(status(&d, &ps, &s2, false, true, t(40)), s2);
    }

    #[test]
    fn no_progress_past_the_deadline_times_out() {
        let mut d = input(1, 1, 0);
        d.progress_deadline_seconds = Some(5);
        let mut ps = pods("old", 1, 0);
        let settled_old = DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(1),
            updated_replicas: Some(1),
            ready_replicas: Some(1),
            available_replicas: Some(1),
            ..Default::default()
        };
        let p = plan(&d, &ps, false);
        apply(&mut ps, &p.actions, t(0));
        let s0 = status(&d, &ps, &settled_old, true, true, t(0));
        assert_eq!(
            reason(&s0, PROGRESSING),
            ("True".into(), NEW_RS_CREATED.into())
        );
        let s1 = status(&d, &ps, &s0, false, true, t(5));
        assert_eq!(
            reason(&s1, PROGRESSING),
            ("True".into(), NEW_RS_CREATED.into()),
            "deadline not passed yet"
        );
        let s2 = status(&d, &ps, &s1, false, true, t(6));
        assert_eq!(reason(&s2, PROGRESSING), ("False".into(), TIMED_OUT.into()));
        assert_eq!(
            condition(&s2, PROGRESSING).unwrap().message.as_deref(),
            Some("ReplicaSet \"web-new\" has timed out progressing.")
        );
        // It stays timed out, and the old pod keeps the Deployment available.
        let s3 = status(&d, &ps, &s2, false, true, t(60));
        assert_eq!(reason(&s3, PROGRESSING), ("False".into(), TIMED_OUT.into()));
        assert_eq!(
            reason(&s3, AVAILABLE),
            ("True".into(), MIN_AVAILABLE.into())
        );
        // A pod turning ready is progress again.
        make_all_ready(&mut ps);
        let s4 = status(&d, &ps, &s3, false, true, t(61));
        assert_eq!(reason(&s4, PROGRESSING), ("True".into(), RS_UPDATED.into()));
    }

    #[test]
    fn paused_and_resumed_conditions() {
        let mut d = input(2, 1, 0);
        d.paused = true;
        let ps = pods("old", 2, 0);
        let old = DeploymentStatus {
            conditions: Some(vec![new_condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE,
                "",
                t(0),
            )]),
            ..Default::default()
        };
        let s = status(&d, &ps, &old, false, false, t(1));
        assert_eq!(reason(&s, PROGRESSING), ("Unknown".into(), PAUSED.into()));
        assert_eq!(
            s.updated_replicas, None,
            "no ReplicaSet for the paused template"
        );
        assert_eq!(s.observed_generation, Some(2));
        d.paused = false;
        let s2 = status(&d, &ps, &s, false, false, t(2));
        assert_eq!(reason(&s2, PROGRESSING), ("Unknown".into(), RESUMED.into()));
        let s3 = status(&d, &ps, &s2, true, true, t(3));
        assert_eq!(
            reason(&s3, PROGRESSING),
            ("True".into(), NEW_RS_CREATED.into())
        );
    }

    #[test]
    fn available_condition_tracks_min_availability() {
        let d = input(4, 1, 1);
        let ps = pods("new", 2, 2);
        let s = status(&d, &ps, &DeploymentStatus::default(), false, true, t(0));
        assert_eq!(
            reason(&s, AVAILABLE),
            ("False".into(), MIN_UNAVAILABLE.into())
        );
        let ps = pods("new", 3, 1);
        let s = status(&d, &ps, &s, false, true, t(1));
        assert_eq!(reason(&s, AVAILABLE), ("True".into(), MIN_AVAILABLE.into()));
        let c = condition(&s, AVAILABLE).unwrap();
        assert_eq!(c.last_transition_time, Some(time(t(1))));
    }

    #[test]
    fn no_deadline_means_no_progressing_condition() {
        let mut d = input(1, 1, 0);
        d.progress_deadline_seconds = Some(i32::MAX);
        let s = status(
            &d,
            &pods("new", 1, 0),
            &DeploymentStatus::default(),
            true,
            true,
            t(0),
        );
        assert!(condition(&s, PROGRESSING).is_none());
        assert!(condition(&s, AVAILABLE).is_some());
    }
}
