//! Dependent workloads: which Deployments, StatefulSets and DaemonSets consume the target
//! Secrets, and whether each one fully runs a given restart stamp.
//!
//! Discovery and progress are pure functions over the API objects; the I/O at the bottom only
//! lists workloads and applies the restart stamp.

use crate::api::{WorkloadKind, WorkloadProgress, WorkloadRef, WorkloadsSpec};
use crate::rotation::consumers::Reads;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};

/// The parts of a workload that discovery and progress need, whatever its kind: small, since
/// the operator keeps one per workload of the cluster in its cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// Secrets its pod template reads ([`secrets_referenced`]).
    pub secrets: BTreeSet<String>,
    /// Its pod-template annotations that are restart stamps (`tokenrotator.io/rotation...`).
    pub stamps: BTreeMap<String, String>,
    pub generation: i64,
    pub observed_generation: i64,
    pub desired: i32,
    /// Pods of any revision that exist (status.replicas; currentNumberScheduled for DaemonSets).
    pub current: i32,
    pub updated: i32,
    pub available: i32,
    pub paused: bool,
    pub deadline_exceeded: bool,
    /// StatefulSets: the update has not reached every pod while revisions differ.
    pub revisions_differ: bool,
}

#[cfg(test)]
impl Workload {
    /// A test Deployment `name` (uid `uid-{name}`) with one replica, fully rolled out, reading
    /// nothing: tests override the fields they are about.
    pub fn settled(name: &str) -> Self {
        Workload {
            kind: WorkloadKind::Deployment,
            name: name.into(),
            uid: format!("uid-{name}"),
            labels: BTreeMap::new(),
            secrets: BTreeSet::new(),
            stamps: BTreeMap::new(),
            generation: 1,
            observed_generation: 1,
            desired: 1,
            current: 1,
            updated: 1,
            available: 1,
            paused: false,
            deadline_exceeded: false,
            revisions_differ: false,
        }
    }
}

impl Workload {
    /// The value of pod-template annotation `key` (a resource's restart stamp).
    pub fn stamp(&self, key: &str) -> Option<&str> {
        self.stamps.get(key).map(String::as_str)
    }

    /// What of `template` the workload keeps: the Secrets it reads and its restart stamps.
    fn template_parts(template: &PodTemplateSpec) -> (BTreeSet<String>, BTreeMap<String, String>) {
        let stamps = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .map(|a| {
                a.iter()
                    .filter(|(k, _)| k.starts_with(crate::api::RESTART_ANNOTATION))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        (secrets_referenced(template), stamps)
    }

    pub fn from_deployment(d: &Deployment) -> Option<Self> {
        let spec = d.spec.as_ref()?;
        let (secrets, stamps) = Self::template_parts(&spec.template);
        let st = d.status.clone().unwrap_or_default();
        let conds: &[k8s_openapi::api::apps::v1::DeploymentCondition] =
            st.conditions.as_deref().unwrap_or(&[]);
        Some(Self {
            kind: WorkloadKind::Deployment,
            name: d.name_any(),
            uid: d.uid().unwrap_or_default(),
            labels: d.labels().clone(),
            secrets,
            stamps,
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: st.observed_generation.unwrap_or(0),
            desired: spec.replicas.unwrap_or(1),
            current: st.replicas.unwrap_or(0),
            updated: st.updated_replicas.unwrap_or(0),
            available: st.available_replicas.unwrap_or(0),
            paused: spec.paused.unwrap_or(false),
            deadline_exceeded: conds.iter().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            }),
            revisions_differ: false,
        })
    }

    pub fn from_stateful_set(s: &StatefulSet) -> Option<Self> {
        let spec = s.spec.as_ref()?;
        let (secrets, stamps) = Self::template_parts(&spec.template);
        let st = s.status.clone().unwrap_or_default();
        Some(Self {
            kind: WorkloadKind::StatefulSet,
            name: s.name_any(),
            uid: s.uid().unwrap_or_default(),
            labels: s.labels().clone(),
            secrets,
            stamps,
            generation: s.metadata.generation.unwrap_or(0),
            observed_generation: st.observed_generation.unwrap_or(0),
            desired: spec.replicas.unwrap_or(1),
            current: st.replicas,
            updated: st.updated_replicas.unwrap_or(0),
            available: st
                .available_replicas
                .unwrap_or(st.ready_replicas.unwrap_or(0)),
            paused: false,
            deadline_exceeded: false,
            revisions_differ: match (&st.current_revision, &st.update_revision) {
                (Some(c), Some(u)) => c != u,
                _ => false,
            },
        })
    }

    pub fn from_daemon_set(d: &DaemonSet) -> Option<Self> {
        let spec = d.spec.as_ref()?;
        let (secrets, stamps) = Self::template_parts(&spec.template);
        let st = d.status.clone().unwrap_or_default();
        Some(Self {
            kind: WorkloadKind::DaemonSet,
            name: d.name_any(),
            uid: d.uid().unwrap_or_default(),
            labels: d.labels().clone(),
            secrets,
            stamps,
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: st.observed_generation.unwrap_or(0),
            desired: st.desired_number_scheduled,
            current: st.current_number_scheduled,
            updated: st.updated_number_scheduled.unwrap_or(0),
            available: st.number_available.unwrap_or(0),
            paused: false,
            deadline_exceeded: false,
            revisions_differ: false,
        })
    }
}

/// Secret names a pod template reads: env `secretKeyRef`, `envFrom`, `secret` and projected
/// volumes, in containers and init containers alike.
pub fn secrets_referenced(template: &PodTemplateSpec) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(spec) = &template.spec else {
        return out;
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                out.insert(r.name.clone());
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.secret_ref {
                out.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            out.insert(name);
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                out.insert(s.name.clone());
            }
        }
    }
    out
}

/// How a pod reads the token key of the target Secrets (`targets`: Secret name to token key):
/// env `secretKeyRef` of that key, `envFrom`, and `subPath` mounts are read at container
/// start; other mounts of a `secret` or projected volume holding the key are files the
/// kubelet refreshes. Init containers count: what they read may be handed on.
pub fn reads(spec: &PodSpec, targets: &BTreeMap<String, String>) -> Reads {
    let mut out = Reads::default();
    let containers = || {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
    };
    for c in containers() {
        for e in c.env.iter().flatten() {
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            if r.is_some_and(|r| targets.get(&r.name) == Some(&r.key)) {
                out.at_start = true;
            }
        }
        for f in c.env_from.iter().flatten() {
            if f.secret_ref
                .as_ref()
                .is_some_and(|r| targets.contains_key(&r.name))
            {
                out.at_start = true;
            }
        }
    }
    // Volumes whose files include a target's token key.
    let holds = |name: &str, items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>| {
        targets.get(name).is_some_and(|key| {
            items.is_none_or(|items| items.is_empty() || items.iter().any(|i| &i.key == key))
        })
    };
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| {
            let secret = v.secret.as_ref().is_some_and(|s| {
                s.secret_name
                    .as_deref()
                    .is_some_and(|n| holds(n, s.items.as_ref()))
            });
            let projected = v
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .filter_map(|src| src.secret.as_ref())
                .any(|s| holds(&s.name, s.items.as_ref()));
            secret || projected
        })
        .map(|v| v.name.as_str())
        .collect();
    for c in containers() {
        for m in c.volume_mounts.iter().flatten() {
            if !volumes.contains(m.name.as_str()) {
                continue;
            }
            match m.sub_path.as_deref() {
                Some(p) if !p.is_empty() => out.at_start = true,
                _ => out.files = true,
            }
        }
    }
    out
}

fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    match Selector::try_from(selector.clone()) {
        Ok(sel) => sel.matches(labels),
        Err(_) => false,
    }
}

/// Which workloads must run the new token before promotion, plus named ones that do not exist.
/// `all` may be owned workloads or the cache's shared ones: only those chosen are copied.
pub fn dependents<W: std::borrow::Borrow<Workload>>(
    spec: Option<&WorkloadsSpec>,
    secrets: &BTreeSet<String>,
    all: &[W],
) -> (Vec<Workload>, Vec<WorkloadRef>) {
    let mut missing = Vec::new();
    let all = all.iter().map(W::borrow);
    let mut chosen: Vec<Workload> = match spec {
        Some(WorkloadsSpec {
            names: Some(names), ..
        }) => {
            let all: Vec<&Workload> = all.collect();
            let mut v = Vec::new();
            for r in names {
                match all.iter().find(|w| w.kind == r.kind && w.name == r.name) {
                    Some(w) => v.push((*w).clone()),
                    None => missing.push(r.clone()),
                }
            }
            v
        }
        _ => all
            .filter(|w| depends_on(spec, secrets.iter().map(String::as_str), w))
            .cloned()
            .collect(),
    };
    chosen.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    chosen.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
    (chosen, missing)
}

/// Whether `w` is a dependent [`dependents`] would choose: named in `spec`, selected by it, or
/// (when it names or selects none) reading one of the `targets`.
pub fn depends_on<'a>(
    spec: Option<&WorkloadsSpec>,
    mut targets: impl Iterator<Item = &'a str>,
    w: &Workload,
) -> bool {
    match spec {
        Some(WorkloadsSpec {
            names: Some(names), ..
        }) => names.iter().any(|r| r.kind == w.kind && r.name == w.name),
        Some(WorkloadsSpec {
            selector: Some(sel),
            ..
        }) => selector_matches(sel, &w.labels),
        _ => targets.any(|t| w.secrets.contains(t)),
    }
}

/// How far a workload is with running `stamp` (under annotation `key`). Done means: the stamp
/// is on the template, the controller observed it, every wanted pod is updated and available,
/// and no old pod is left.
pub fn progress(w: &Workload, key: &str, stamp: &str) -> WorkloadProgress {
    let stamped = w.stamp(key) == Some(stamp);
    let observed = w.observed_generation >= w.generation;
    let done = stamped
        && observed
        && w.updated >= w.desired
        && w.available >= w.desired
        && w.current <= w.desired
        && !w.revisions_differ;
    let reason = if done {
        None
    } else if w.paused {
        Some(RolloutReason::Paused)
    } else if w.deadline_exceeded && observed && stamped {
        Some(RolloutReason::ProgressDeadlineExceeded)
    } else if !stamped {
        Some(RolloutReason::NotRestarted)
    } else if !observed {
        Some(RolloutReason::WaitingForController)
    } else {
        Some(RolloutReason::RollingOut)
    }
    .map(|r| r.as_str().to_owned());
    WorkloadProgress {
        namespace: None,
        kind: w.kind,
        name: w.name.clone(),
        desired: w.desired,
        updated: if stamped && observed { w.updated } else { 0 },
        available: w.available,
        done,
        reason,
    }
}

/// Why a workload is not done rolling out (`WorkloadProgress.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutReason {
    /// Paused by its owner: it will not roll out until resumed.
    Paused,
    /// Past its progress deadline: the new pods do not become available.
    ProgressDeadlineExceeded,
    /// Not stamped with this rotation yet.
    NotRestarted,
    /// Its controller has not observed the stamp yet.
    WaitingForController,
    RollingOut,
    /// A named workload that does not exist.
    NotFound,
    /// In a namespace being deleted: it is waited on until it is gone, never restarted.
    NamespaceTerminating,
}

impl RolloutReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paused => "Paused",
            Self::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            Self::NotRestarted => "NotRestarted",
            Self::WaitingForController => "WaitingForController",
            Self::RollingOut => "RollingOut",
            Self::NotFound => "NotFound",
            Self::NamespaceTerminating => "NamespaceTerminating",
        }
    }

    /// The reason a progress entry in status carries, if it is one of ours.
    pub fn of(p: &WorkloadProgress) -> Option<Self> {
        const ALL: [RolloutReason; 7] = [
            RolloutReason::Paused,
            RolloutReason::ProgressDeadlineExceeded,
            RolloutReason::NotRestarted,
            RolloutReason::WaitingForController,
            RolloutReason::RollingOut,
            RolloutReason::NotFound,
            RolloutReason::NamespaceTerminating,
        ];
        let r = p.reason.as_deref()?;
        ALL.into_iter().find(|x| x.as_str() == r)
    }
}

/// Missing named workloads count as not done, so the rotation waits (and is held at timeout).
pub fn missing_progress(r: &WorkloadRef) -> WorkloadProgress {
    WorkloadProgress {
        namespace: None,
        kind: r.kind,
        name: r.name.clone(),
        desired: 0,
        updated: 0,
        available: 0,
        done: false,
        reason: Some(RolloutReason::NotFound.as_str().to_owned()),
    }
}

/// Lists every workload in a namespace.
pub async fn list(client: &Client, namespace: &str) -> Result<Vec<Workload>, kube::Error> {
    let lp = ListParams::default();
    let mut out = Vec::new();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    out.extend(
        deployments
            .list(&lp)
            .await?
            .items
            .iter()
            .filter_map(Workload::from_deployment),
    );
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    out.extend(
        sets.list(&lp)
            .await?
            .items
            .iter()
            .filter_map(Workload::from_stateful_set),
    );
    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    out.extend(
        daemons
            .list(&lp)
            .await?
            .items
            .iter()
            .filter_map(Workload::from_daemon_set),
    );
    Ok(out)
}

/// Above this many namespaces, workloads are read with one paged LIST per kind across the
/// cluster instead of one LIST per kind per namespace (3 LISTs and their pages for 300
/// namespaces, not 900). The controller reads its shared cache and LISTs only until the cache
/// has its first list; `token-rotator plan` always LISTs.
pub const LIST_ACROSS_ABOVE: usize = 10;

/// Every workload of these namespaces, by namespace: per namespace for a few, across the
/// cluster (paged, filtered here) for many.
pub async fn list_in(
    client: &Client,
    namespaces: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<Workload>>, kube::Error> {
    let mut out: BTreeMap<String, Vec<Workload>> = BTreeMap::new();
    if namespaces.len() <= LIST_ACROSS_ABOVE {
        for ns in namespaces {
            out.insert(ns.clone(), list(client, ns).await?);
        }
        return Ok(out);
    }
    for ns in namespaces {
        out.insert(ns.clone(), Vec::new());
    }
    across::<Deployment>(client, &mut out, Workload::from_deployment).await?;
    across::<StatefulSet>(client, &mut out, Workload::from_stateful_set).await?;
    across::<DaemonSet>(client, &mut out, Workload::from_daemon_set).await?;
    Ok(out)
}

/// One kind across the cluster, a page at a time, keeping the namespaces in `out`.
async fn across<K>(
    client: &Client,
    out: &mut BTreeMap<String, Vec<Workload>>,
    convert: fn(&K) -> Option<Workload>,
) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = api.list(&lp).await?;
        for o in &page.items {
            let ns = o.namespace().unwrap_or_default();
            if let (Some(v), Some(w)) = (out.get_mut(&ns), convert(o)) {
                v.push(w);
            }
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    Ok(())
}

/// The restart annotation a resource stamps with, and the field manager that owns it.
#[derive(Debug, Clone, Copy)]
pub struct Stamper<'a> {
    pub key: &'a str,
    pub field_manager: &'a str,
}

/// Stamps the pod template with the restart annotation by server-side apply: each resource owns
/// only its own annotation, so GitOps tools that own the rest of the template keep it, and a
/// second resource restarting the same workload keeps its own.
pub async fn stamp(
    client: &Client,
    namespace: &str,
    w: &WorkloadRef,
    by: Stamper<'_>,
    stamp: &str,
) -> Result<Option<Workload>, kube::Error> {
    let body = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": w.kind.as_str(),
        "metadata": {"name": w.name, "namespace": namespace},
        "spec": {"template": {"metadata": {"annotations": {by.key: stamp}}}}
    });
    let pp = PatchParams::apply(by.field_manager).force();
    let patch = Patch::Apply(&body);
    // The workload as written, so the cache need not wait for the watch to see the stamp.
    Ok(match w.kind {
        WorkloadKind::Deployment => Workload::from_deployment(
            &Api::<Deployment>::namespaced(client.clone(), namespace)
                .patch(&w.name, &pp, &patch)
                .await?,
        ),
        WorkloadKind::StatefulSet => Workload::from_stateful_set(
            &Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .patch(&w.name, &pp, &patch)
                .await?,
        ),
        WorkloadKind::DaemonSet => Workload::from_daemon_set(
            &Api::<DaemonSet>::namespaced(client.clone(), namespace)
                .patch(&w.name, &pp, &patch)
                .await?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, EnvFromSource, EnvVar, EnvVarSource, PodSpec, ProjectedVolumeSource,
        SecretEnvSource, SecretKeySelector, SecretProjection, SecretVolumeSource, Volume,
        VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const RESTART_ANNOTATION: &str = "tokenrotator.io/rotation-0123abcd";

    fn template(spec: PodSpec, stamp: Option<&str>) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                annotations: stamp
                    .map(|s| BTreeMap::from([(RESTART_ANNOTATION.to_string(), s.to_string())])),
                ..Default::default()
            }),
            spec: Some(spec),
        }
    }

    fn workload(name: &str, spec: PodSpec) -> Workload {
        Workload {
            labels: BTreeMap::from([("app".into(), name.into())]),
            secrets: secrets_referenced(&template(spec, None)),
            desired: 3,
            current: 3,
            updated: 3,
            available: 3,
            ..Workload::settled(name)
        }
    }

    fn env_ref(secret: &str) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "c".into(),
                env: Some(vec![EnvVar {
                    name: "T".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.into(),
                            key: "k".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    value: None,
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn finds_every_kind_of_secret_reference() {
        let env_from = PodSpec {
            init_containers: Some(vec![Container {
                name: "init".into(),
                env_from: Some(vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: "from-init".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            volumes: Some(vec![
                Volume {
                    name: "v".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("vol".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "p".into(),
                    projected: Some(ProjectedVolumeSource {
                        sources: Some(vec![VolumeProjection {
                            secret: Some(SecretProjection {
                                name: "proj".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..env_ref("env")
        };
        let got = secrets_referenced(&template(env_from, None));
        let want: BTreeSet<String> = ["env", "from-init", "vol", "proj"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn default_discovery_picks_only_consumers() {
        let all = vec![
            workload("api", env_ref("twilio")),
            workload("web", env_ref("other")),
        ];
        let secrets = BTreeSet::from(["twilio".to_string()]);
        let (deps, missing) = dependents(None, &secrets, &all);
        assert_eq!(
            deps.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            vec!["api"]
        );
        assert!(missing.is_empty());
    }

    #[test]
    fn named_and_selected_workloads() {
        let all = vec![workload("api", env_ref("x")), workload("web", env_ref("y"))];
        let secrets = BTreeSet::new();
        let spec = WorkloadsSpec {
            names: Some(vec![
                WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    name: "web".into(),
                },
                WorkloadRef {
                    kind: WorkloadKind::StatefulSet,
                    name: "db".into(),
                },
            ]),
            ..Default::default()
        };
        let (deps, missing) = dependents(Some(&spec), &secrets, &all);
        assert_eq!(deps[0].name, "web");
        assert_eq!(missing[0].name, "db");
        let spec = WorkloadsSpec {
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "api".into())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (deps, _) = dependents(Some(&spec), &secrets, &all);
        assert_eq!(deps.len(), 1);
        assert_eq!(deps[0].name, "api");
    }

    #[test]
    fn progress_requires_stamp_observation_and_no_old_pods() {
        let mut w = workload("api", env_ref("t"));
        assert_eq!(
            progress(&w, RESTART_ANNOTATION, "r1").reason.as_deref(),
            Some("NotRestarted")
        );
        w.stamps = BTreeMap::from([(RESTART_ANNOTATION.into(), "r1".into())]);
        w.generation = 2;
        assert_eq!(
            progress(&w, RESTART_ANNOTATION, "r1").reason.as_deref(),
            Some("WaitingForController")
        );
        w.observed_generation = 2;
        w.updated = 2;
        w.current = 4; // one surge pod, old pods still around
        let p = progress(&w, RESTART_ANNOTATION, "r1");
        assert!(!p.done);
        assert_eq!(p.reason.as_deref(), Some("RollingOut"));
        w.updated = 3;
        w.available = 3;
        assert!(
            !progress(&w, RESTART_ANNOTATION, "r1").done,
            "an old pod remains"
        );
        w.current = 3;
        assert!(progress(&w, RESTART_ANNOTATION, "r1").done);
        assert!(
            !progress(&w, RESTART_ANNOTATION, "r2").done,
            "another stamp is another rollout"
        );
    }

    #[test]
    fn paused_and_deadline_are_reported() {
        let mut w = workload("api", env_ref("t"));
        w.stamps = BTreeMap::from([(RESTART_ANNOTATION.into(), "r1".into())]);
        w.updated = 0;
        w.paused = true;
        assert_eq!(
            progress(&w, RESTART_ANNOTATION, "r1").reason.as_deref(),
            Some("Paused")
        );
        w.paused = false;
        w.deadline_exceeded = true;
        assert_eq!(
            progress(&w, RESTART_ANNOTATION, "r1").reason.as_deref(),
            Some("ProgressDeadlineExceeded")
        );
    }

    #[test]
    fn a_workload_keeps_only_the_secrets_it_reads_and_its_restart_stamps() {
        let mut template = template(env_ref("twilio"), Some("r1"));
        if let Some(a) = template
            .metadata
            .as_mut()
            .and_then(|m| m.annotations.as_mut())
        {
            a.insert("kubectl.kubernetes.io/restartedAt".into(), "x".into());
        }
        let d = Deployment {
            metadata: ObjectMeta {
                name: Some("api".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
                template,
                ..Default::default()
            }),
            status: None,
        };
        let w = Workload::from_deployment(&d).unwrap();
        assert_eq!(w.secrets, BTreeSet::from(["twilio".to_string()]));
        assert_eq!(
            w.stamps,
            BTreeMap::from([(RESTART_ANNOTATION.to_string(), "r1".to_string())]),
            "other annotations are not kept"
        );
        assert_eq!(w.stamp(RESTART_ANNOTATION), Some("r1"));
    }

    #[test]
    fn statefulset_waits_for_revisions_to_converge() {
        let mut w = workload("db", env_ref("t"));
        w.kind = WorkloadKind::StatefulSet;
        w.stamps = BTreeMap::from([(RESTART_ANNOTATION.into(), "r1".into())]);
        w.revisions_differ = true;
        assert!(!progress(&w, RESTART_ANNOTATION, "r1").done);
        w.revisions_differ = false;
        assert!(progress(&w, RESTART_ANNOTATION, "r1").done);
    }
}
