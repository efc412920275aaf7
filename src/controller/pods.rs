//! The Pod-level barrier's I/O:
//! - the pods that read a target Secret: paged, uncached LISTs, only once the workloads are
//!   through, per namespace or across the cluster ([`PodLists`]), each page decoded down to
//!   what is read ([`super::listed_pod`]);
//! - who owns each: one GET per ReplicaSet met (of its metadata only) and per Rollout met;
//! - the two writes the barrier may ask for: an Argo Rollout's `spec.restartAt`, and deleting
//!   an unmanaged pod by UID.

use super::subject::Subject;
use super::Context;
use crate::api::WorkloadKind;
use crate::rotation::consumers::{ConsumerPod, PodAt, PodOwner, PodView};
use crate::time::from_k8s;
use crate::workloads;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
};
use kube::Client;
use std::collections::{BTreeMap, BTreeSet};

/// Argo Rollouts, `argoproj.io/v1alpha1`.
fn rollouts() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// A dependent workload: namespace, kind, name.
pub(super) type Dependent = (String, WorkloadKind, String);

/// How the consumer pods are listed. A LIST per namespace reads only the pods there but costs
/// a request per namespace at every look; one paged LIST across the cluster costs the same
/// however many namespaces a rotation covers, but reads every pod of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PodLists {
    PerNamespace,
    ClusterWide,
}

/// A cluster rotation over more namespaces than this lists pods across the cluster.
const PER_NAMESPACE_MAX: usize = 8;

pub(super) fn pod_lists(tr: &Subject) -> PodLists {
    lists_for(tr.cluster, tr.targets.len())
}

fn lists_for(cluster: bool, namespaces: usize) -> PodLists {
    match (cluster, namespaces) {
        (true, n) if n > PER_NAMESPACE_MAX => PodLists::ClusterWide,
        _ => PodLists::PerNamespace,
    }
}

/// The consumer pods in the rotation's target namespaces. `dependents` are the workloads this
/// rotation restarts; `stamp`, the restart stamp of the rollout onto the new credential.
pub(super) async fn observe(
    client: &Client,
    tr: &Subject,
    dependents: &BTreeSet<Dependent>,
    stamp: Option<&str>,
) -> Result<PodView, kube::Error> {
    let targets: BTreeMap<String, String> = tr
        .spec
        .secrets
        .iter()
        .map(|s| (s.name.clone(), s.token_key.clone()))
        .collect();
    let mut view = PodView {
        dependents: dependents.len(),
        ..PodView::default()
    };
    let in_scope: BTreeSet<&str> = tr.targets.iter().map(String::as_str).collect();
    let lists: Vec<Option<&str>> = match pod_lists(tr) {
        PodLists::PerNamespace => in_scope.iter().map(|ns| Some(*ns)).collect(),
        PodLists::ClusterWide => vec![None],
    };
    let mut owners: BTreeMap<&str, Owners<'_>> = BTreeMap::new();
    for list in lists {
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = super::listed_pod::list(client, list, &lp).await?;
            for p in &page.pods {
                // A page across the cluster holds every namespace's pods.
                let listed_in = list.or(p.metadata.namespace.as_deref());
                let Some(ns) = listed_in.and_then(|n| in_scope.get(n).copied()) else {
                    continue;
                };
                let Some(spec) = &p.spec else { continue };
                let reads = workloads::reads(spec, &targets);
                if !reads.at_start && !reads.files {
                    continue;
                }
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                if matches!(phase, Some("Succeeded" | "Failed")) {
                    view.finished += 1;
                    continue;
                }
                let owner = owners
                    .entry(ns)
                    .or_insert_with(|| Owners::new(client, ns))
                    .of(p, dependents)
                    .await?;
                view.pods.push(ConsumerPod {
                    namespace: ns.to_owned(),
                    name: p.metadata.name.clone().unwrap_or_default(),
                    uid: p.metadata.uid.clone().unwrap_or_default(),
                    owner,
                    reads,
                    started: started(p),
                    terminating: p.metadata.deletion_timestamp.is_some(),
                    stamped: stamp.is_some_and(|s| {
                        p.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(&tr.stamp_key))
                            .is_some_and(|v| v == s)
                    }),
                });
            }
            match page.next {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
    }
    tracing::debug!(
        pods = view.pods.len(),
        finished = view.finished,
        "consumer pods of the target Secrets"
    );
    Ok(view)
}

/// When the earliest running container started: what it read then, the pod still holds.
/// `None` when none runs (it reads the Secret when one starts). Falls back to the pod's start
/// for a running pod without container statuses.
fn started(p: &Pod) -> Option<DateTime<Utc>> {
    let status = p.status.as_ref()?;
    let containers = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(from_k8s)
        .min();
    match containers {
        Some(t) => Some(t),
        None if status.phase.as_deref() == Some("Running") => {
            status.start_time.as_ref().map(from_k8s)
        }
        None => None,
    }
}

fn controller_of(refs: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs?.iter().find(|r| r.controller == Some(true))
}

/// Owner lookups of one namespace, each ReplicaSet and Rollout read once.
struct Owners<'a> {
    client: &'a Client,
    namespace: &'a str,
    replica_sets: BTreeMap<String, Option<OwnerReference>>,
    rollouts: BTreeMap<String, Option<DateTime<Utc>>>,
}

impl<'a> Owners<'a> {
    fn new(client: &'a Client, namespace: &'a str) -> Self {
        Self {
            client,
            namespace,
            replica_sets: BTreeMap::new(),
            rollouts: BTreeMap::new(),
        }
    }

    async fn of(
        &mut self,
        p: &Pod,
        dependents: &BTreeSet<Dependent>,
    ) -> Result<PodOwner, kube::Error> {
        let Some(r) = controller_of(p.metadata.owner_references.as_ref()) else {
            return Ok(PodOwner::Other {
                kind: "Pod".into(),
                name: p.metadata.name.clone().unwrap_or_default(),
            });
        };
        let workload = |kind: WorkloadKind, name: &str| PodOwner::Workload {
            kind,
            name: name.to_owned(),
            dependent: dependents.contains(&(self.namespace.to_owned(), kind, name.to_owned())),
        };
        Ok(match (r.api_version.as_str(), r.kind.as_str()) {
            ("apps/v1", "StatefulSet") => workload(WorkloadKind::StatefulSet, &r.name),
            ("apps/v1", "DaemonSet") => workload(WorkloadKind::DaemonSet, &r.name),
            ("batch/v1", "Job") => PodOwner::Job {
                name: r.name.clone(),
            },
            ("apps/v1", "ReplicaSet") => match self.replica_set_owner(&r.name).await? {
                Some(o) if o.api_version == "apps/v1" && o.kind == "Deployment" => {
                    workload(WorkloadKind::Deployment, &o.name)
                }
                Some(o) if o.api_version.starts_with("argoproj.io/") && o.kind == "Rollout" => {
                    PodOwner::Rollout {
                        restart_at: self.rollout_restart_at(&o.name).await?,
                        name: o.name,
                    }
                }
                Some(o) => PodOwner::Other {
                    kind: o.kind,
                    name: o.name,
                },
                None => PodOwner::Other {
                    kind: "ReplicaSet".into(),
                    name: r.name.clone(),
                },
            },
            (_, kind) => PodOwner::Other {
                kind: kind.to_owned(),
                name: r.name.clone(),
            },
        })
    }

    async fn replica_set_owner(
        &mut self,
        name: &str,
    ) -> Result<Option<OwnerReference>, kube::Error> {
        if let Some(o) = self.replica_sets.get(name) {
            return Ok(o.clone());
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), self.namespace);
        let owner = api
            .get_metadata_opt(name)
            .await?
            .and_then(|rs| controller_of(rs.metadata.owner_references.as_ref()).cloned());
        self.replica_sets.insert(name.to_owned(), owner.clone());
        Ok(owner)
    }

    async fn rollout_restart_at(
        &mut self,
        name: &str,
    ) -> Result<Option<DateTime<Utc>>, kube::Error> {
        if let Some(t) = self.rollouts.get(name) {
            return Ok(*t);
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), self.namespace, &rollouts());
        let at = api.get_opt(name).await?.and_then(|o| {
            let v = o.data.pointer("/spec/restartAt")?.as_str()?.to_owned();
            DateTime::parse_from_rfc3339(&v)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        });
        self.rollouts.insert(name.to_owned(), at);
        Ok(at)
    }
}

/// Sets the Rollout's `spec.restartAt` to now (server-side apply, this resource's field
/// manager): Argo replaces every pod started before it, a few at a time.
pub(super) async fn restart_rollout(
    ctx: &Context,
    tr: &Subject,
    namespace: &str,
    name: &str,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &rollouts());
    // Second precision: one second ahead, so it falls after the distribution seen this second.
    let now = (Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"restartAt": now},
    });
    let pp = PatchParams::apply(&tr.field_manager).force();
    api.patch(name, &pp, &Patch::Apply(&body)).await?;
    Ok(())
}

/// Deletes the pod if it is still the one seen (same UID); gone or replaced is fine.
pub(super) async fn delete(ctx: &Context, p: &PodAt) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &p.namespace);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(p.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&p.name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TokenRotation covers its own namespace; a cluster rotation lists across the cluster
    /// only once per-namespace LISTs would be more than a few.
    #[test]
    fn pods_are_listed_across_the_cluster_only_for_a_wide_cluster_rotation() {
        assert_eq!(lists_for(false, 1), PodLists::PerNamespace);
        assert_eq!(lists_for(true, 1), PodLists::PerNamespace);
        assert_eq!(lists_for(true, PER_NAMESPACE_MAX), PodLists::PerNamespace);
        assert_eq!(
            lists_for(true, PER_NAMESPACE_MAX + 1),
            PodLists::ClusterWide
        );
        assert_eq!(lists_for(true, 300), PodLists::ClusterWide);
    }
}
