//! The Pod-level promotion barrier (pure): which pods that read a target Secret still hold the
//! credential being replaced, and what to do about each before promotion kills it.
//!
//! A pod holds the new credential when its containers started after the new one was in every
//! target Secret (env, `envFrom` and `subPath` are read once, at container start), or when it
//! reads the Secret only through mounted files and the kubelet has had `kubeletSyncDelay` to
//! refresh them. Anything else is waited on (its owner restarts it, its Job finishes, it
//! drains), restarted (Argo Rollouts), or, when nothing will replace it, handled by
//! `workloads.unmanagedPods`.

use super::plan::Plan;
use crate::api::{NoConsumers, PodGroup, RestartPolicy, UnmanagedPods, WorkloadKind};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// How many owner groups status lists; the message counts the rest.
pub const MAX_GROUPS: usize = 20;

/// A pod that reads a target Secret, as the barrier needs it. Never the credential itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub owner: PodOwner,
    pub reads: Reads,
    /// When its earliest running container started (what it read then, it still holds);
    /// `None` when no container runs yet: it reads the Secret as it is when one starts.
    pub started: Option<DateTime<Utc>>,
    /// It has a deletion timestamp: it drains, still working, for its grace period.
    pub terminating: bool,
    /// It carries this rotation's restart stamp: made from the template stamped after the
    /// distribution, so it read the new credential (exact, where start times have one-second
    /// precision).
    pub stamped: bool,
}

/// Who replaces a pod, if anyone.
#[derive(Debug, Clone, PartialEq)]
pub enum PodOwner {
    /// A Deployment (through its ReplicaSet), StatefulSet or DaemonSet; `dependent` when this
    /// rotation restarts it.
    Workload {
        kind: WorkloadKind,
        name: String,
        dependent: bool,
    },
    /// An Argo Rollout (through its ReplicaSet): restarted with `spec.restartAt`.
    Rollout {
        name: String,
        restart_at: Option<DateTime<Utc>>,
    },
    /// A Job (a CronJob's included): its pods run to completion; new ones read the Secret anew.
    Job { name: String },
    /// A bare Pod (`kind` "Pod"), or an owner this operator does not restart.
    Other { kind: String, name: String },
}

impl PodOwner {
    fn kind(&self) -> &str {
        match self {
            Self::Workload { kind, .. } => kind.as_str(),
            Self::Rollout { .. } => "Rollout",
            Self::Job { .. } => "Job",
            Self::Other { kind, .. } => kind,
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Workload { name, .. }
            | Self::Rollout { name, .. }
            | Self::Job { name }
            | Self::Other { name, .. } => name,
        }
    }
}

/// How a pod reads the target Secrets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// Read once at container start: env `secretKeyRef`, `envFrom`, a `subPath` mount.
    pub at_start: bool,
    /// Mounted files the kubelet refreshes.
    pub files: bool,
}

/// The pods in the rotation's scope that read a target Secret.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    /// Pods not finished (finished Job pods call nobody).
    pub pods: Vec<ConsumerPod>,
    /// Finished pods that read a target (a Job's): consumers exist even when none runs now.
    pub finished: usize,
    /// Dependent workloads found (one scaled to zero has no pods but is a consumer).
    pub dependents: usize,
}

/// A pod to delete, by UID so a pod re-created under the same name is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAt {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Why a pod still holds the old credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Waiting {
    /// Its owner restarts it (the rollout has not replaced it yet).
    Restarting,
    /// Being deleted, still working for its grace period.
    Draining,
    /// A Job's pod: it runs to completion.
    JobRunning,
    /// Nothing this rotation does replaces it.
    Unmanaged,
}

impl Waiting {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restarting => "Restarting",
            Self::Draining => "Draining",
            Self::JobRunning => "JobRunning",
            Self::Unmanaged => "Unmanaged",
        }
    }
}

/// What the barrier asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Barrier {
    /// Every consumer holds the new credential. `ignored` names the unmanaged pods promotion
    /// will break (`unmanagedPods: Ignore`); `none_found` when there are no consumers at all.
    Clear {
        ignored: Vec<String>,
        none_found: bool,
    },
    /// Argo Rollouts to restart (namespace, name).
    RestartRollouts(Vec<(String, String)>),
    /// Unmanaged pods to delete (`unmanagedPods: Delete`).
    DeletePods(Vec<PodAt>),
    /// Wait for these pods: restarting, draining, Jobs finishing.
    Wait {
        groups: Vec<PodGroup>,
        summary: String,
    },
    /// Hold: unmanaged consumers (`unmanagedPods: Hold`).
    Unmanaged {
        groups: Vec<PodGroup>,
        summary: String,
    },
    /// Hold: nothing reads the targets, and the spec does not say that is expected.
    NoConsumers,
}

/// Whether `p` holds the credential distributed at `distributed`. Start times have one-second
/// precision: a pod of the same second counts as old, unless it carries the restart stamp.
pub fn holds_new(p: &ConsumerPod, window: Window, now: DateTime<Utc>, plan: &Plan) -> bool {
    let Some(started) = p.started else {
        return true;
    };
    if p.stamped {
        return true;
    }
    let distributed = window.distributed;
    // Strictly before the rotation's start second: a pod of that second may have read either.
    if started > distributed || window.earlier.is_some_and(|e| started < e) {
        return true;
    }
    let refreshed = now >= distributed + super::machine::to_chrono(plan.kubelet_sync_delay);
    !p.reads.at_start && p.reads.files && !p.terminating && refreshed
}

/// Why `p` (which holds the old credential) is not done, given the restart policy.
fn waiting(p: &ConsumerPod, plan: &Plan) -> Waiting {
    if p.terminating {
        return Waiting::Draining;
    }
    let restarts = plan.restart == RestartPolicy::Always;
    match &p.owner {
        PodOwner::Workload {
            dependent: true, ..
        }
        | PodOwner::Rollout { .. }
            if restarts =>
        {
            Waiting::Restarting
        }
        PodOwner::Job { .. } => Waiting::JobRunning,
        PodOwner::Workload { .. } | PodOwner::Rollout { .. } | PodOwner::Other { .. } => {
            Waiting::Unmanaged
        }
    }
}

/// When the credential a barrier waits for was put into the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Pods started after this read it.
    pub distributed: DateTime<Utc>,
    /// Rolling back: pods started before this (the rotation's start) never read the new
    /// credential, so they hold the old one too.
    pub earlier: Option<DateTime<Utc>>,
}

impl Window {
    pub fn since(distributed: DateTime<Utc>) -> Self {
        Self {
            distributed,
            earlier: None,
        }
    }
}

/// No Pod reads a target (not even a finished one) and no dependent workload exists.
pub fn none_found(view: &PodView) -> bool {
    view.pods.is_empty() && view.finished == 0 && view.dependents == 0
}

/// The pods that do not hold the credential distributed at `distributed`, each with why.
pub fn old_pods<'a>(
    view: &'a PodView,
    window: Window,
    now: DateTime<Utc>,
    plan: &Plan,
) -> Vec<(&'a ConsumerPod, Waiting)> {
    view.pods
        .iter()
        .filter(|p| !holds_new(p, window, now, plan))
        .map(|p| (p, waiting(p, plan)))
        .collect()
}

/// The barrier before promotion, for the credential distributed at `distributed`.
pub fn barrier(view: &PodView, window: Window, now: DateTime<Utc>, plan: &Plan) -> Barrier {
    let distributed = window.distributed;
    if none_found(view) {
        return match (plan.restart, plan.no_consumers) {
            (RestartPolicy::Never, _) | (_, NoConsumers::Proceed) => Barrier::Clear {
                ignored: Vec::new(),
                none_found: true,
            },
            (RestartPolicy::Always, NoConsumers::Hold) => Barrier::NoConsumers,
        };
    }
    let old = old_pods(view, window, now, plan);
    // Rollouts not yet restarted since the distribution (a restart before it does not count).
    let mut restart: Vec<(String, String)> = old
        .iter()
        .filter(|(_, w)| *w == Waiting::Restarting)
        .filter_map(|(p, _)| match &p.owner {
            PodOwner::Rollout { name, restart_at }
                if restart_at.is_none_or(|t| t <= distributed) =>
            {
                Some((p.namespace.clone(), name.clone()))
            }
            _ => None,
        })
        .collect();
    restart.sort();
    restart.dedup();
    if !restart.is_empty() {
        return Barrier::RestartRollouts(restart);
    }
    let unmanaged: Vec<&ConsumerPod> = old
        .iter()
        .filter(|(_, w)| *w == Waiting::Unmanaged)
        .map(|(p, _)| *p)
        .collect();
    let mut ignored = Vec::new();
    if !unmanaged.is_empty() {
        match plan.unmanaged_pods {
            UnmanagedPods::Hold => {
                let (groups, summary) = group(unmanaged.iter().map(|p| (*p, Waiting::Unmanaged)));
                return Barrier::Unmanaged { groups, summary };
            }
            UnmanagedPods::Delete => {
                return Barrier::DeletePods(
                    unmanaged
                        .iter()
                        .map(|p| PodAt {
                            namespace: p.namespace.clone(),
                            name: p.name.clone(),
                            uid: p.uid.clone(),
                        })
                        .collect(),
                );
            }
            UnmanagedPods::Ignore => {
                ignored = unmanaged
                    .iter()
                    .map(|p| format!("{}/{}", p.namespace, p.name))
                    .collect();
            }
        }
    }
    let waits: Vec<(&ConsumerPod, Waiting)> = old
        .iter()
        .filter(|(_, w)| *w != Waiting::Unmanaged)
        .cloned()
        .collect();
    if waits.is_empty() {
        return Barrier::Clear {
            ignored,
            none_found: false,
        };
    }
    let (groups, summary) = group(waits.into_iter());
    Barrier::Wait { groups, summary }
}

/// Pods grouped by owner and reason (at most [`MAX_GROUPS`]), and a one-line summary that
/// names the first few groups and counts the rest.
pub fn group<'a>(
    pods: impl Iterator<Item = (&'a ConsumerPod, Waiting)>,
) -> (Vec<PodGroup>, String) {
    let mut by: BTreeMap<(Waiting, String, String, String), u32> = BTreeMap::new();
    let mut total = 0u32;
    for (p, w) in pods {
        total += 1;
        *by.entry((
            w,
            p.namespace.clone(),
            p.owner.kind().to_owned(),
            p.owner.name().to_owned(),
        ))
        .or_default() += 1;
    }
    let all: Vec<PodGroup> = by
        .into_iter()
        .map(|((w, namespace, kind, name), pods)| PodGroup {
            namespace,
            kind,
            name,
            pods,
            reason: w.as_str().to_owned(),
        })
        .collect();
    let shown: Vec<String> = all
        .iter()
        .take(5)
        .map(|g| {
            format!(
                "{} {}/{} ({} pod{}, {})",
                g.kind,
                g.namespace,
                g.name,
                g.pods,
                if g.pods == 1 { "" } else { "s" },
                g.reason
            )
        })
        .collect();
    let more = all.len().saturating_sub(5);
    let mut summary = format!(
        "{total} pod{} on the old credential: {}",
        if total == 1 { "" } else { "s" },
        shown.join(", ")
    );
    if more > 0 {
        summary.push_str(&format!(" and {more} more owners"));
    }
    let groups = all.into_iter().take(MAX_GROUPS).collect();
    (groups, summary)
}
