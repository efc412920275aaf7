//! Pure StatefulSet controller logic (`pkg/controller/statefulset/stateful_set_control.go`):
//! ordered creation, scale-down from the highest ordinal, and RollingUpdate one pod at a time in
//! reverse ordinal order down to `partition`. `OnDelete` never replaces pods by itself.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};

use super::deployment::omit_zero;
use super::hash::template_hash;
use super::plan::{Action, PodSummary};

/// What the controller reads of a StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatefulSetInput {
    pub name: String,
    pub generation: i64,
    pub replicas: i32,
    /// `RollingUpdate` (the default) rather than `OnDelete`.
    pub rolling: bool,
    pub partition: i32,
    /// `OrderedReady` (the default) rather than `Parallel`.
    pub monotonic: bool,
    pub min_ready_seconds: i32,
    /// `<name>-<template hash>`, as `status.updateRevision`.
    pub update_revision: String,
}

impl StatefulSetInput {
    pub fn from_object(s: &StatefulSet) -> Self {
        let spec = s.spec.clone().unwrap_or_default();
        let name = s.metadata.name.clone().unwrap_or_default();
        let strategy = spec.update_strategy.as_ref();
        Self {
            update_revision: format!("{name}-{}", template_hash(&spec.template)),
            name,
            generation: s.metadata.generation.unwrap_or(0),
            replicas: spec.replicas.unwrap_or(1).max(0),
            rolling: strategy.and_then(|u| u.type_.as_deref()) != Some("OnDelete"),
            partition: strategy
                .and_then(|u| u.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0)
                .max(0),
            monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        }
    }
}

/// One sync. `current_revision` is the revision pods below the partition keep.
pub fn plan(s: &StatefulSetInput, current_revision: &str, pods: &[PodSummary]) -> Vec<Action> {
    let replicas = s.replicas.max(0) as u32;
    let by_ordinal: BTreeMap<u32, &PodSummary> =
        pods.iter().filter_map(|p| Some((p.ordinal?, p))).collect();
    let mut actions = Vec::new();
    for ordinal in 0..replicas {
        match by_ordinal.get(&ordinal) {
            None => {
                let revision = if s.rolling && (ordinal as i64) < i64::from(s.partition) {
                    current_revision
                } else {
                    &s.update_revision
                };
                actions.push(Action::Create {
                    revision: revision.to_owned(),
                    ordinal: Some(ordinal),
                    node: None,
                });
                if s.monotonic {
                    return actions;
                }
            }
            // OrderedReady: every predecessor must be running and available.
            Some(p) if s.monotonic && !p.available => return actions,
            Some(_) => {}
        }
    }
    for (_, p) in by_ordinal.range(replicas..).rev() {
        actions.push(Action::delete(p));
        if s.monotonic {
            return actions;
        }
    }
    if !actions.is_empty() || !s.rolling {
        return actions;
    }
    let floor = s.partition.max(0) as u32;
    for target in (floor..replicas).rev() {
        let Some(p) = by_ordinal.get(&target) else {
            return actions;
        };
        if p.revision != s.update_revision {
            actions.push(Action::delete(p));
            return actions;
        }
        if !p.ready {
            return actions;
        }
    }
    actions
}

/// The status after a sync, and the current revision it implies (it becomes the update
/// revision once every pod runs it and is ready: `completeRollingUpdate`).
pub fn status(
    s: &StatefulSetInput,
    current_revision: &str,
    pods: &[PodSummary],
) -> (StatefulSetStatus, String) {
    let count = |f: &dyn Fn(&PodSummary) -> bool| pods.iter().filter(|p| f(p)).count() as i32;
    let replicas = pods.len() as i32;
    let ready = count(&|p| p.ready);
    let available = count(&|p| p.available);
    let updated = count(&|p| p.revision == s.update_revision);
    let mut current = count(&|p| p.revision == current_revision);
    let mut current_revision = current_revision.to_owned();
    if s.rolling && updated == replicas && ready == replicas {
        current = updated;
        current_revision = s.update_revision.clone();
    }
    let status = StatefulSetStatus {
        observed_generation: Some(s.generation),
        replicas,
        ready_replicas: omit_zero(ready),
        current_replicas: omit_zero(current),
        updated_replicas: omit_zero(updated),
        available_replicas: Some(available),
        current_revision: Some(current_revision.clone()),
        update_revision: Some(s.update_revision.clone()),
        collision_count: Some(0),
        conditions: None,
    };
    (status, current_revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::plan::test_support::{apply, make_all_ready, t};

    fn input(replicas: i32) -> StatefulSetInput {
        StatefulSetInput {
            name: "sts".into(),
            generation: 1,
            replicas,
            rolling: true,
            partition: 0,
            monotonic: true,
            min_ready_seconds: 0,
            update_revision: "sts-new".into(),
        }
    }

    fn ordinals(actions: &[Action]) -> Vec<(bool, String)> {
        actions
            .iter()
            .map(|a| match a {
                Action::Create {
                    ordinal, revision, ..
                } => (true, format!("{}@{revision}", ordinal.unwrap())),
                Action::Delete { pod } => (false, pod.clone()),
            })
            .collect()
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = input(3);
        let mut pods = Vec::new();
        let mut created = Vec::new();
        for step in 0..10 {
            let actions = plan(&s, "sts-new", &pods);
            assert!(actions.len() <= 1);
            if let Some(Action::Create { ordinal, .. }) = actions.first() {
                created.push(ordinal.unwrap());
            }
            apply(&mut pods, &actions, t(step));
            // Nothing else happens until the newest pod is ready.
            assert_eq!(plan(&s, "sts-new", &pods), vec![]);
            make_all_ready(&mut pods);
        }
        assert_eq!(created, vec![0, 1, 2]);
        let (st, cur) = status(&s, "sts-new", &pods);
        assert_eq!(
            (
                st.replicas,
                st.ready_replicas,
                st.updated_replicas,
                st.current_replicas
            ),
            (3, Some(3), Some(3), Some(3))
        );
        assert_eq!(cur, "sts-new");
    }

    #[test]
    fn parallel_creates_all_at_once() {
        let mut s = input(3);
        s.monotonic = false;
        assert_eq!(plan(&s, "sts-new", &[]).len(), 3);
    }

    fn running(revision: &str, n: u32) -> Vec<PodSummary> {
        (0..n)
            .map(|o| PodSummary {
                name: format!("sts-{o}"),
                revision: revision.into(),
                ordinal: Some(o),
                node: "sim-node-0".into(),
                created_at: t(0),
                ready: true,
                available: true,
            })
            .collect()
    }

    /// Runs syncs until nothing changes, making pods ready between syncs; returns the deletion order.
    fn roll(s: &StatefulSetInput, pods: &mut Vec<PodSummary>, current: &mut String) -> Vec<String> {
        let mut deleted = Vec::new();
        for step in 0..100 {
            let actions = plan(s, current, pods);
            let (st, cur) = status(s, current, pods);
            *current = cur;
            if actions.is_empty() && pods.iter().all(|p| p.ready) {
                assert_eq!(st.current_revision.as_deref(), Some(current.as_str()));
                return deleted;
            }
            for a in &actions {
                if let Action::Delete { pod } = a {
                    deleted.push(pod.clone());
                    // Never more than one pod missing or unready at a time.
                    assert!(
                        pods.iter().all(|p| p.ready),
                        "deleted {pod} while another pod was unready"
                    );
                }
            }
            apply(pods, &actions, t(step));
            make_all_ready(pods);
        }
        panic!("no convergence");
    }

    #[test]
    fn rolling_update_goes_in_reverse_ordinal_order() {
        let s = input(3);
        let mut pods = running("sts-old", 3);
        let mut current = "sts-old".to_owned();
        let (st, _) = status(&s, &current, &pods);
        assert_eq!((st.current_replicas, st.updated_replicas), (Some(3), None));
        assert_eq!(st.update_revision.as_deref(), Some("sts-new"));
        let order = roll(&s, &mut pods, &mut current);
        assert_eq!(order, vec!["sts-2", "sts-1", "sts-0"]);
        assert!(pods.iter().all(|p| p.revision == "sts-new"));
        assert_eq!(current, "sts-new");
    }

    #[test]
    fn partition_keeps_lower_ordinals_on_the_current_revision() {
        let mut s = input(4);
        s.partition = 2;
        let mut pods = running("sts-old", 4);
        let mut current = "sts-old".to_owned();
        let order = roll(&s, &mut pods, &mut current);
        assert_eq!(order, vec!["sts-3", "sts-2"]);
        let revs: Vec<_> = pods
            .iter()
            .map(|p| (p.ordinal.unwrap(), p.revision.as_str()))
            .collect();
        assert!(revs.contains(&(0, "sts-old")) && revs.contains(&(1, "sts-old")));
        assert!(revs.contains(&(2, "sts-new")) && revs.contains(&(3, "sts-new")));
        let (st, cur) = status(&s, &current, &pods);
        assert_eq!(cur, "sts-old", "a partitioned rollout is not complete");
        assert_eq!(
            (st.current_replicas, st.updated_replicas),
            (Some(2), Some(2))
        );
        // A recreated low ordinal comes back at the current revision.
        pods.retain(|p| p.ordinal != Some(0));
        assert_eq!(
            ordinals(&plan(&s, &current, &pods)),
            vec![(true, "0@sts-old".to_owned())]
        );
    }

    #[test]
    fn unready_pod_blocks_the_update() {
        let s = input(3);
        let mut pods = running("sts-old", 3);
        pods[2] = PodSummary {
            revision: "sts-new".into(),
            ready: false,
            available: false,
            ..pods[2].clone()
        };
        assert_eq!(plan(&s, "sts-old", &pods), vec![]);
    }

    #[test]
    fn on_delete_never_replaces_pods() {
        let mut s = input(2);
        s.rolling = false;
        let pods = running("sts-old", 2);
        assert_eq!(plan(&s, "sts-old", &pods), vec![]);
        let (st, cur) = status(&s, "sts-old", &pods);
        assert_eq!(cur, "sts-old");
        assert_eq!(st.updated_replicas, None);
        // A deleted pod comes back at the update revision.
        assert_eq!(
            ordinals(&plan(&s, "sts-old", &pods[..1])),
            vec![(true, "1@sts-new".to_owned())]
        );
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first() {
        let s = input(1);
        let pods = running("sts-new", 3);
        assert_eq!(
            ordinals(&plan(&s, "sts-new", &pods)),
            vec![(false, "sts-2".to_owned())]
        );
        let mut par = input(1);
        par.monotonic = false;
        assert_eq!(
            ordinals(&plan(&par, "sts-new", &pods)),
            vec![(false, "sts-2".to_owned()), (false, "sts-1".to_owned())]
        );
    }
}
