//! Pure DaemonSet controller logic (`pkg/controller/daemon`): one pod per simulated node, and
//! RollingUpdate with `maxUnavailable` (delete first) or `maxSurge` (create first).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};

use super::deployment::omit_zero;
use super::hash::template_hash;
use super::intstr::daemonset_limits;
use super::plan::{Action, PodSummary};

/// What the controller reads of a DaemonSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSetInput {
    pub name: String,
    pub generation: i64,
    /// `RollingUpdate` (the default) rather than `OnDelete`.
    pub rolling: bool,
    pub max_surge: i32,
    pub max_unavailable: i32,
    pub min_ready_seconds: i32,
    /// Template hash.
    pub update_revision: String,
}

impl DaemonSetInput {
    pub fn from_object(d: &DaemonSet, nodes: usize) -> Self {
        let spec = d.spec.clone().unwrap_or_default();
        let strategy = spec.update_strategy.as_ref();
        let ru = strategy.and_then(|s| s.rolling_update.as_ref());
        let (max_surge, max_unavailable) = daemonset_limits(
            ru.and_then(|r| r.max_surge.as_ref()),
            ru.and_then(|r| r.max_unavailable.as_ref()),
            nodes as i32,
        );
        Self {
            name: d.metadata.name.clone().unwrap_or_default(),
            generation: d.metadata.generation.unwrap_or(0),
            rolling: strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete"),
            max_surge,
            max_unavailable,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            update_revision: template_hash(&spec.template),
        }
    }
}

fn by_node<'a>(
    nodes: &'a [String],
    pods: &'a [PodSummary],
) -> BTreeMap<&'a str, Vec<&'a PodSummary>> {
    let mut map: BTreeMap<&str, Vec<&PodSummary>> =
        nodes.iter().map(|n| (n.as_str(), Vec::new())).collect();
    for p in pods {
        map.entry(p.node.as_str()).or_default().push(p);
    }
    for list in map.values_mut() {
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
    }
    map
}

/// `findUpdatedPodsOnNode`: `None` when a node has two pods of the same kind.
fn split<'a>(
    d: &DaemonSetInput,
    pods: &[&'a PodSummary],
) -> Option<(Option<&'a PodSummary>, Option<&'a PodSummary>)> {
    let (mut new, mut old) = (None, None);
    for p in pods {
        let slot = if p.revision == d.update_revision {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*p);
    }
    Some((new, old))
}

/// One sync: `manage` (a pod on every node, none elsewhere), then, if that changed nothing, the
/// rolling update.
pub fn plan(d: &DaemonSetInput, nodes: &[String], pods: &[PodSummary]) -> Vec<Action> {
    let placed = by_node(nodes, pods);
    let mut actions = Vec::new();
    for (node, list) in &placed {
        if !nodes.iter().any(|n| n == node) {
            actions.extend(list.iter().map(|p| Action::delete(p)));
            continue;
        }
        if list.is_empty() {
            actions.push(Action::Create {
                revision: d.update_revision.clone(),
                ordinal: None,
                node: Some((*node).to_owned()),
            });
            continue;
        }
        // Two pods are fine only mid-surge: one old, one new.
        let surging = d.rolling && d.max_surge > 0 && list.len() == 2 && split(d, list).is_some();
        if list.len() > 1 && !surging {
            actions.extend(list.iter().skip(1).map(|p| Action::delete(p)));
        }
    }
    if !actions.is_empty() || !d.rolling {
        return actions;
    }
    if d.max_surge == 0 {
        rolling_delete_first(d, &placed)
    } else {
        rolling_surge(d, &placed)
    }
}

fn rolling_delete_first(
    d: &DaemonSetInput,
    placed: &BTreeMap<&str, Vec<&PodSummary>>,
) -> Vec<Action> {
    let mut unavailable = 0;
    let mut replacements = Vec::new();
    let mut candidates = Vec::new();
    for list in placed.values() {
        let Some((new, old)) = split(d, list) else {
            continue;
        };
        match (new, old) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !new.available {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !old.available {
                    replacements.push(Action::delete(old));
                    unavailable += 1;
                } else if unavailable < d.max_unavailable {
                    candidates.push(Action::delete(old));
                }
            }
        }
    }
    let remaining = (d.max_unavailable - unavailable).max(0) as usize;
    replacements.extend(candidates.into_iter().take(remaining));
    replacements
}

fn rolling_surge(d: &DaemonSetInput, placed: &BTreeMap<&str, Vec<&PodSummary>>) -> Vec<Action> {
    let mut deletes = Vec::new();
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    let mut surging = 0;
    for (node, list) in placed {
        let Some((new, old)) = split(d, list) else {
            surging += 1;
            continue;
        };
        let create = || Action::Create {
            revision: d.update_revision.clone(),
            ordinal: None,
            node: Some((*node).to_owned()),
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !old.available {
                    allowed.push(create());
                } else if surging < d.max_surge {
                    candidates.push(create());
                }
            }
            (Some(new), Some(old)) => {
                if new.available {
                    deletes.push(Action::delete(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    let remaining = (d.max_surge - surging).max(0) as usize;
    deletes.extend(allowed);
    deletes.extend(candidates.into_iter().take(remaining));
    deletes
}

/// `updateDaemonSetStatus`: per node, the oldest pod decides readiness and whether it is updated.
pub fn status(d: &DaemonSetInput, nodes: &[String], pods: &[PodSummary]) -> DaemonSetStatus {
    let placed = by_node(nodes, pods);
    let (mut scheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0);
    for node in nodes {
        let Some(oldest) = placed.get(node.as_str()).and_then(|l| l.first()) else {
            continue;
        };
        scheduled += 1;
        if oldest.ready {
            ready += 1;
            if oldest.available {
                available += 1;
            }
        }
        if oldest.revision == d.update_revision {
            updated += 1;
        }
    }
    let desired = nodes.len() as i32;
    DaemonSetStatus {
        observed_generation: Some(d.generation),
        desired_number_scheduled: desired,
        current_number_scheduled: scheduled,
        number_misscheduled: 0,
        number_ready: ready,
        updated_number_scheduled: omit_zero(updated),
        number_available: omit_zero(available),
        number_unavailable: omit_zero(desired - available),
        collision_count: None,
        conditions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::plan::test_support::{apply, make_all_ready, t};

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("sim-node-{i}")).collect()
    }

    fn input(max_surge: i32, max_unavailable: i32) -> DaemonSetInput {
        DaemonSetInput {
            name: "ds".into(),
            generation: 1,
            rolling: true,
            max_surge,
            max_unavailable,
            min_ready_seconds: 0,
            update_revision: "new".into(),
        }
    }

    fn running(revision: &str, nodes: &[String]) -> Vec<PodSummary> {
        nodes
            .iter()
            .map(|n| PodSummary {
                name: format!("ds-{revision}-{n}"),
                revision: revision.into(),
                ordinal: None,
                node: n.clone(),
                created_at: t(0),
                ready: true,
                available: true,
            })
            .collect()
    }

    /// Rolls to completion; checks per sync that at most `max_unavailable` nodes lack an available
    /// pod and at most `max_surge` nodes run two pods.
    fn roll(d: &DaemonSetInput, nodes: &[String], pods: &mut Vec<PodSummary>) -> usize {
        for step in 0..100 {
            let actions = plan(d, nodes, pods);
            apply(pods, &actions, t(step as i64 + 1));
            let placed = by_node(nodes, pods);
            let without = placed
                .values()
                .filter(|l| !l.iter().any(|p| p.available))
                .count();
            let doubled = placed.values().filter(|l| l.len() > 1).count();
            assert!(
                without as i32 <= d.max_unavailable,
                "step {step}: {without} nodes unavailable"
            );
            assert!(
                doubled as i32 <= d.max_surge,
                "step {step}: {doubled} nodes surged"
            );
            let st = status(d, nodes, pods);
            if actions.is_empty()
                && st.updated_number_scheduled == Some(nodes.len() as i32)
                && pods.len() == nodes.len()
            {
                assert_eq!(st.number_available, Some(nodes.len() as i32));
                return step;
            }
            make_all_ready(pods);
        }
        panic!("no convergence");
    }

    #[test]
    fn creates_one_pod_per_node() {
        let n = nodes(3);
        let d = input(0, 1);
        let actions = plan(&d, &n, &[]);
        assert_eq!(actions.len(), 3);
        let mut pods = Vec::new();
        apply(&mut pods, &actions, t(0));
        let st = status(&d, &n, &pods);
        assert_eq!(
            (
                st.desired_number_scheduled,
                st.current_number_scheduled,
                st.number_ready
            ),
            (3, 3, 0)
        );
        assert_eq!(st.number_unavailable, Some(3));
        make_all_ready(&mut pods);
        let st = status(&d, &n, &pods);
        assert_eq!(
            (
                st.number_ready,
                st.number_available,
                st.updated_number_scheduled
            ),
            (3, Some(3), Some(3))
        );
        assert_eq!(st.number_unavailable, None);
    }

    #[test]
    fn delete_first_rollouts_respect_max_unavailable() {
        for (nodes_n, unav) in [(1, 1), (2, 1), (5, 2), (4, 4)] {
            let n = nodes(nodes_n);
            let d = input(0, unav);
            let mut pods = running("old", &n);
            let first = plan(&d, &n, &pods);
            assert_eq!(first.len(), unav.min(nodes_n as i32) as usize);
            assert!(first.iter().all(|a| matches!(a, Action::Delete { .. })));
            roll(&d, &n, &mut pods);
            assert!(pods.iter().all(|p| p.revision == "new"));
        }
    }

    #[test]
    fn surge_rollouts_create_before_deleting() {
        let n = nodes(3);
        let d = input(1, 0);
        let mut pods = running("old", &n);
        let first = plan(&d, &n, &pods);
        assert_eq!(first.len(), 1);
        assert!(matches!(&first[0], Action::Create { node: Some(_), .. }));
        // While the surge pod is unready, the old one stays and the count shows it as not updated.
        apply(&mut pods, &first, t(1));
        assert_eq!(plan(&d, &n, &pods), vec![]);
        let st = status(&d, &n, &pods);
        assert_eq!(st.updated_number_scheduled, None);
        assert_eq!(st.number_available, Some(3));
        roll(&d, &n, &mut pods);
    }

    #[test]
    fn unavailable_old_pods_are_replaced_regardless_of_budget() {
        let n = nodes(2);
        let d = input(0, 1);
        let mut pods = running("old", &n);
        pods[0].ready = false;
        pods[0].available = false;
        // Node 0 is already unavailable: it is replaced, node 1 must wait.
        assert_eq!(plan(&d, &n, &pods), vec![Action::delete(&pods[0])]);
    }

    #[test]
    fn on_delete_only_fills_empty_nodes() {
        let n = nodes(2);
        let mut d = input(0, 1);
        d.rolling = false;
        let pods = running("old", &n);
        assert_eq!(plan(&d, &n, &pods), vec![]);
        let actions = plan(&d, &n, &pods[..1]);
        assert_eq!(
            actions,
            vec![Action::Create {
                revision: "new".into(),
                ordinal: None,
                node: Some("sim-node-1".into())
            }]
        );
    }
}
