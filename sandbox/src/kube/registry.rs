//! The resource registry: every served group/version/resource and how it behaves.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::kube::crd::CrdVersionInfo;
use crate::kube::error::GroupResource;

/// When `metadata.generation` is bumped on writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Generation {
    /// Never set (Secrets, ConfigMaps, ...).
    None,
    /// Bumped when `spec` changes.
    Spec,
    /// Bumped when `spec` or `metadata.annotations` change (Deployments).
    SpecOrAnnotations,
    /// Bumped on any change outside `metadata` (custom resources without a status subresource).
    NonMetadata,
    /// Bumped on any change outside `metadata` and `status` (custom resources with status).
    NonMetadataStatus,
}

/// How stored objects are presented through this resource.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum View {
    /// Stored as served (apart from apiVersion for other CRD versions).
    Plain,
    /// events.k8s.io/v1 view of core/v1 Events.
    EventsV1,
}

/// Every verb a stored resource serves (discovery lists them; RBAC rules name them).
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Store key; several views may share one (core and events.k8s.io Events, CRD versions).
    pub storage: String,
    pub view: View,
    pub status: bool,
    pub scale: bool,
    pub generation: Generation,
    /// Built-in types accept strategic merge patches and unconditional PUTs.
    pub builtin: bool,
    /// OpenAPI component name of the root type (built-ins).
    pub schema_name: Option<String>,
    /// Custom resources: schema, columns, validation rules of this version.
    pub crd: Option<Arc<CrdVersionInfo>>,
    /// Field selectors supported besides metadata.name / metadata.namespace.
    pub field_selectors: Vec<String>,
    /// The served version is the storage version (preferred in discovery).
    pub storage_version: bool,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn gr(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        ALL_VERBS.to_vec()
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }
}

/// All resources served right now; CRDs add and remove entries.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    defs: Vec<Arc<ResourceDef>>,
    /// (group, version, plural) -> index into defs.
    index: BTreeMap<(String, String, String), usize>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for d in builtin_defs() {
            r.insert(d);
        }
        r
    }

    pub fn insert(&mut self, d: ResourceDef) {
        let key = (d.group.clone(), d.version.clone(), d.plural.clone());
        if let Some(&i) = self.index.get(&key) {
            self.defs[i] = Arc::new(d);
        } else {
            self.index.insert(key, self.defs.len());
            self.defs.push(Arc::new(d));
        }
    }

    /// Removes every version served from a storage key (CRD deletion).
    pub fn remove_storage(&mut self, storage: &str) {
        self.defs.retain(|d| d.storage != storage);
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index = self
            .defs
            .iter()
            .enumerate()
            .map(|(i, d)| ((d.group.clone(), d.version.clone(), d.plural.clone()), i))
            .collect();
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.index
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .map(|&i| self.defs[i].clone())
    }

    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.kind == kind)
            .cloned()
    }

    pub fn all(&self) -> &[Arc<ResourceDef>] {
        &self.defs
    }

    pub fn for_storage(&self, storage: &str) -> Vec<Arc<ResourceDef>> {
        self.defs
            .iter()
            .filter(|d| d.storage == storage)
            .cloned()
            .collect()
    }

    /// The definition whose view equals the stored form (storage version, plain view).
    pub fn storage_def(&self, storage: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .iter()
            .find(|d| d.storage == storage && d.storage_version && d.view == View::Plain)
            .cloned()
    }

    /// Groups with their versions, preferred (storage) version first; core group excluded.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in &self.defs {
            if d.group.is_empty() {
                continue;
            }
            let pos = match out.iter().position(|(g, _)| *g == d.group) {
                Some(p) => p,
                None => {
                    out.push((d.group.clone(), Vec::new()));
                    out.len() - 1
                }
            };
            let versions = &mut out[pos].1;
            if !versions.contains(&d.version) {
                if d.storage_version {
                    versions.insert(0, d.version.clone());
                } else {
                    versions.push(d.version.clone());
                }
            }
        }
        out
    }

    pub fn resources_in(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.defs
            .iter()
            .filter(|d| d.group == group && d.version == version)
            .cloned()
            .collect()
    }
}

struct B {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    generation: Generation,
    schema: &'static str,
    fields: &'static [&'static str],
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    schema: &'static str,
) -> B {
    B {
        group,
        version,
        kind,
        plural,
        namespaced,
        short: NONE,
        categories: NONE,
        status: false,
        scale: false,
        generation: Generation::None,
        schema,
        fields: NONE,
    }
}

impl B {
    fn short(mut self, s: &'static [&'static str]) -> Self {
        self.short = s;
        self
    }
    fn all(mut self) -> Self {
        self.categories = ALL;
        self
    }
    fn status(mut self) -> Self {
        self.status = true;
        self
    }
    fn scale(mut self) -> Self {
        self.scale = true;
        self
    }
    fn gen(mut self, g: Generation) -> Self {
        self.generation = g;
        self
    }
    fn fields(mut self, f: &'static [&'static str]) -> Self {
        self.fields = f;
        self
    }
}

fn builtin_defs() -> Vec<ResourceDef> {
    use Generation::*;
    let core = "";
    let table = vec![
        b(
            core,
            "v1",
            "Namespace",
            "namespaces",
            false,
            "io.k8s.api.core.v1.Namespace",
        )
        .short(&["ns"])
        .status()
        .fields(&["status.phase"]),
        b(
            core,
            "v1",
            "Secret",
            "secrets",
            true,
            "io.k8s.api.core.v1.Secret",
        )
        .fields(&["type"]),
        b(
            core,
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            "io.k8s.api.core.v1.ConfigMap",
        )
        .short(&["cm"]),
        b(
            core,
            "v1",
            "Event",
            "events",
            true,
            "io.k8s.api.core.v1.Event",
        )
        .short(&["ev"])
        .fields(&[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]),
        b(core, "v1", "Pod", "pods", true, "io.k8s.api.core.v1.Pod")
            .short(&["po"])
            .all()
            .status()
            .gen(Spec)
            .fields(&[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ]),
        b(
            core,
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            "io.k8s.api.core.v1.ServiceAccount",
        )
        .short(&["sa"]),
        b(
            core,
            "v1",
            "Service",
            "services",
            true,
            "io.k8s.api.core.v1.Service",
        )
        .short(&["svc"])
        .all()
        .status(),
        b(
            core,
            "v1",
            "Endpoints",
            "endpoints",
            true,
            "io.k8s.api.core.v1.Endpoints",
        )
        .short(&["ep"]),
        b(
            core,
            "v1",
            "Node",
            "nodes",
            false,
            "io.k8s.api.core.v1.Node",
        )
        .short(&["no"])
        .status(),
        b(
            core,
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            "io.k8s.api.core.v1.PersistentVolumeClaim",
        )
        .short(&["pvc"])
        .status(),
        b(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            "io.k8s.api.events.v1.Event",
        )
        .short(&["ev"]),
        b(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            "io.k8s.api.coordination.v1.Lease",
        ),
        b(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            "io.k8s.api.apps.v1.Deployment",
        )
        .short(&["deploy"])
        .all()
        .status()
        .scale()
        .gen(SpecOrAnnotations),
        b(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            "io.k8s.api.apps.v1.StatefulSet",
        )
        .short(&["sts"])
        .all()
        .status()
        .scale()
        .gen(Spec),
        b(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            true,
            "io.k8s.api.apps.v1.DaemonSet",
        )
        .short(&["ds"])
        .all()
        .status()
        .gen(Spec),
        b(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            "io.k8s.api.apps.v1.ReplicaSet",
        )
        .short(&["rs"])
        .all()
        .status()
        .scale()
        .gen(Spec)
        .fields(&["status.replicas"]),
        b(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            "io.k8s.api.apps.v1.ControllerRevision",
        ),
        b(
            "batch",
            "v1",
            "Job",
            "jobs",
            true,
            "io.k8s.api.batch.v1.Job",
        )
        .all()
        .status()
        .gen(Spec),
        b(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            true,
            "io.k8s.api.batch.v1.CronJob",
        )
        .short(&["cj"])
        .all()
        .status()
        .gen(Spec),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            "io.k8s.api.rbac.v1.Role",
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            "io.k8s.api.rbac.v1.RoleBinding",
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            "io.k8s.api.rbac.v1.ClusterRole",
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            "io.k8s.api.rbac.v1.ClusterRoleBinding",
        ),
        b(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            "io.k8s.api.policy.v1.PodDisruptionBudget",
        )
        .short(&["pdb"])
        .status()
        .gen(Spec),
        b(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        )
        .short(&["crd", "crds"])
        .status()
        .gen(Spec),
        b(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            "io.k8s.api.networking.v1.NetworkPolicy",
        )
        .short(&["netpol"])
        .gen(Spec),
        b(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            "io.k8s.api.networking.v1.Ingress",
        )
        .short(&["ing"])
        .status()
        .gen(Spec),
        b(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        )
        .short(&["hpa"])
        .all()
        .status(),
    ];
    table
        .into_iter()
        .map(|t| {
            let (storage, view) = if t.kind == "Event" {
                (
                    "events".to_string(),
                    if t.group.is_empty() {
                        View::Plain
                    } else {
                        View::EventsV1
                    },
                )
            } else {
                (format!("{}/{}", t.group, t.plural), View::Plain)
            };
            ResourceDef {
                group: t.group.into(),
                version: t.version.into(),
                kind: t.kind.into(),
                plural: t.plural.into(),
                singular: t.kind.to_lowercase(),
                list_kind: format!("{}List", t.kind),
                namespaced: t.namespaced,
                short_names: t.short.iter().map(|s| s.to_string()).collect(),
                categories: t.categories.iter().map(|s| s.to_string()).collect(),
                storage,
                view,
                status: t.status,
                scale: t.scale,
                generation: t.generation,
                builtin: true,
                schema_name: Some(t.schema.to_string()),
                crd: Option::None,
                field_selectors: t.fields.iter().map(|s| s.to_string()).collect(),
                storage_version: true,
            }
        })
        .collect()
}
