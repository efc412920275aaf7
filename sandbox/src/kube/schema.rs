//! OpenAPI schemas of built-in kinds (generated from k8s-openapi and annotated with the list and
//! patch extensions the real documents carry) and a navigator used by strategic merge,
//! server-side apply, pruning and unknown-field detection.

use std::sync::{Arc, OnceLock};

use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

pub type Components = Map<String, Value>;

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Every component schema of the built-in kinds, keyed by the Kubernetes definition name.
pub fn builtin_components() -> Arc<Components> {
    static C: OnceLock<Arc<Components>> = OnceLock::new();
    C.get_or_init(|| Arc::new(generate())).clone()
}

macro_rules! gen_all {
    ($g:ident, $($t:ty),* $(,)?) => { $( $g.subschema_for::<$t>(); )* };
}

fn generate() -> Components {
    use k8s_openapi::api::{
        apps, autoscaling, batch, coordination, core, events, networking, policy, rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut g = SchemaSettings::openapi3().into_generator();
    gen_all!(
        g,
        core::v1::Namespace,
        core::v1::Secret,
        core::v1::ConfigMap,
        core::v1::Event,
        core::v1::Pod,
        core::v1::ServiceAccount,
        core::v1::Service,
        core::v1::Endpoints,
        core::v1::Node,
        core::v1::PersistentVolumeClaim,
        events::v1::Event,
        coordination::v1::Lease,
        apps::v1::Deployment,
        apps::v1::StatefulSet,
        apps::v1::DaemonSet,
        apps::v1::ReplicaSet,
        apps::v1::ControllerRevision,
        batch::v1::Job,
        batch::v1::CronJob,
        rbac::v1::Role,
        rbac::v1::RoleBinding,
        rbac::v1::ClusterRole,
        rbac::v1::ClusterRoleBinding,
        policy::v1::PodDisruptionBudget,
        apiext::CustomResourceDefinition,
        networking::v1::NetworkPolicy,
        networking::v1::Ingress,
        autoscaling::v2::HorizontalPodAutoscaler,
        autoscaling::v1::Scale,
        meta::Status,
        meta::DeleteOptions,
        meta::APIResourceList,
    );
    let mut defs = g.take_definitions(true);
    annotate(&mut defs);
    defs
}

/// (definition, property, extensions) as in the v1.35 OpenAPI documents.
fn list_annotations() -> Vec<(&'static str, &'static str, Value)> {
    let merge_map = |key: &str, keys: &[&str]| {
        json!({
            "x-kubernetes-patch-merge-key": key,
            "x-kubernetes-patch-strategy": "merge",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": keys,
        })
    };
    let merge_retain = |key: &str| {
        json!({
            "x-kubernetes-patch-merge-key": key,
            "x-kubernetes-patch-strategy": "merge,retainKeys",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": [key],
        })
    };
    let atomic = || json!({"x-kubernetes-list-type": "atomic"});
    let cond = || merge_map("type", &["type"]);
    let mut v = vec![
        (
            "io.k8s.api.core.v1.PodSpec",
            "containers",
            merge_map("name", &["name"]),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "initContainers",
            merge_map("name", &["name"]),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "ephemeralContainers",
            merge_map("name", &["name"]),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "volumes",
            merge_retain("name"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "imagePullSecrets",
            merge_map("name", &["name"]),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "hostAliases",
            merge_map("ip", &["ip"]),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "resourceClaims",
            merge_retain("name"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "schedulingGates",
            merge_map("name", &["name"]),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "topologySpreadConstraints",
            merge_map("topologyKey", &["topologyKey", "whenUnsatisfiable"]),
        ),
        ("io.k8s.api.core.v1.PodSpec", "tolerations", atomic()),
        ("io.k8s.api.core.v1.PodSpec", "readinessGates", atomic()),
        (
            "io.k8s.api.core.v1.ServiceSpec",
            "ports",
            merge_map("port", &["port", "protocol"]),
        ),
        ("io.k8s.api.core.v1.PodStatus", "conditions", cond()),
        ("io.k8s.api.core.v1.NodeStatus", "conditions", cond()),
        (
            "io.k8s.api.core.v1.NodeStatus",
            "addresses",
            merge_map("type", &["type"]),
        ),
        ("io.k8s.api.core.v1.NamespaceStatus", "conditions", cond()),
        (
            "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
            "conditions",
            cond(),
        ),
        ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", cond()),
        ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", cond()),
        ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", cond()),
        ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", cond()),
        ("io.k8s.api.batch.v1.JobStatus", "conditions", atomic()),
        (
            "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
            "conditions",
            cond(),
        ),
        (
            "io.k8s.api.apps.v1.StatefulSetSpec",
            "volumeClaimTemplates",
            atomic(),
        ),
        ("io.k8s.api.rbac.v1.Role", "rules", atomic()),
        ("io.k8s.api.rbac.v1.ClusterRole", "rules", atomic()),
        ("io.k8s.api.rbac.v1.RoleBinding", "subjects", atomic()),
        (
            "io.k8s.api.rbac.v1.ClusterRoleBinding",
            "subjects",
            atomic(),
        ),
        (
            OBJECT_META,
            "finalizers",
            json!({"x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "set"}),
        ),
        (OBJECT_META, "ownerReferences", merge_map("uid", &["uid"])),
        (OBJECT_META, "managedFields", atomic()),
        (
            "io.k8s.api.apps.v1.DeploymentSpec",
            "strategy",
            json!({"x-kubernetes-patch-strategy": "retainKeys"}),
        ),
    ];
    for c in [
        "io.k8s.api.core.v1.Container",
        "io.k8s.api.core.v1.EphemeralContainer",
    ] {
        v.push((
            c,
            "ports",
            merge_map("containerPort", &["containerPort", "protocol"]),
        ));
        v.push((c, "env", merge_map("name", &["name"])));
        v.push((c, "volumeMounts", merge_map("mountPath", &["mountPath"])));
        v.push((c, "volumeDevices", merge_map("devicePath", &["devicePath"])));
        v.push((c, "envFrom", atomic()));
        v.push((c, "args", atomic()));
        v.push((c, "command", atomic()));
        v.push((c, "resizePolicy", atomic()));
    }
    v
}

fn annotate(defs: &mut Components) {
    for (def, prop, ext) in list_annotations() {
        let Some(p) = defs
            .get_mut(def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(prop))
        else {
            continue;
        };
        if let (Some(p), Some(ext)) = (p.as_object_mut(), ext.as_object()) {
            for (k, v) in ext {
                p.insert(k.clone(), v.clone());
            }
        }
    }
    for def in [
        "io.k8s.api.core.v1.ContainerPort",
        "io.k8s.api.core.v1.ServicePort",
    ] {
        if let Some(p) = defs
            .get_mut(def)
            .and_then(|d| d.pointer_mut("/properties/protocol"))
            .and_then(|p| p.as_object_mut())
        {
            p.insert("default".into(), json!("TCP"));
        }
    }
    for atomic_struct in [
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "io.k8s.api.core.v1.LocalObjectReference",
        "io.k8s.api.core.v1.ObjectReference",
    ] {
        if let Some(d) = defs.get_mut(atomic_struct).and_then(|d| d.as_object_mut()) {
            d.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
    }
    // Values that are any JSON (a bool or a schema, a number or an object, ...).
    for (name, d) in defs.iter_mut() {
        let any = [
            ".JSON",
            ".JSONSchemaPropsOrBool",
            ".JSONSchemaPropsOrArray",
            ".JSONSchemaPropsOrStringArray",
        ];
        if name.starts_with("io.k8s.apiextensions-apiserver.")
            && any.iter().any(|s| name.ends_with(s))
        {
            let desc = d.get("description").cloned().unwrap_or(json!(""));
            *d = json!({"description": desc, "x-kubernetes-preserve-unknown-fields": true});
        }
    }
    // Free-form objects (FieldsV1, RawExtension, JSON) have no properties: keep what they hold.
    for d in defs.values_mut() {
        mark_free_form(d);
    }
    // k8s-openapi marks `metadata` of every kind as required; the real documents do not.
    for (name, d) in defs.iter_mut() {
        if name.starts_with(META) {
            continue;
        }
        let strip = d
            .get("required")
            .and_then(|r| r.as_array())
            .is_some_and(|r| r.iter().any(|x| x == "metadata"));
        if strip {
            if let Some(o) = d.as_object_mut() {
                let kept: Vec<Value> = o["required"]
                    .as_array()
                    .map(|a| a.iter().filter(|x| *x != "metadata").cloned().collect())
                    .unwrap_or_default();
                if kept.is_empty() {
                    o.remove("required");
                } else {
                    o.insert("required".into(), Value::Array(kept));
                }
            }
        }
    }
}

fn mark_free_form(v: &mut Value) {
    let Some(m) = v.as_object_mut() else { return };
    let is_obj = m.get("type").and_then(|t| t.as_str()) == Some("object");
    if is_obj && !m.contains_key("properties") && !m.contains_key("additionalProperties") {
        m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    for key in ["properties", "additionalProperties", "items"] {
        match m.get_mut(key) {
            Some(Value::Object(o)) if key == "properties" => {
                o.values_mut().for_each(mark_free_form)
            }
            Some(x) => mark_free_form(x),
            None => {}
        }
    }
}

/// How a list is merged by apply and strategic merge.
#[derive(Debug, Clone, PartialEq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// A schema tree plus the components its `$ref`s point into.
#[derive(Clone, Debug)]
pub struct Schema {
    pub root: Arc<Value>,
    pub comps: Arc<Components>,
}

/// A position in a schema; `None` means "no schema here": anything goes, lists are atomic.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub v: Option<&'a Value>,
    comps: &'a Components,
}

impl Schema {
    pub fn builtin(def_name: &str) -> Self {
        Schema {
            root: Arc::new(json!({"$ref": format!("#/components/schemas/{def_name}")})),
            comps: builtin_components(),
        }
    }

    /// A CRD version schema; `metadata` is always ObjectMeta and apiVersion/kind are strings.
    pub fn for_crd(open_api_v3: Option<&Value>) -> Self {
        let mut root = open_api_v3.cloned().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        if let Some(o) = root.as_object_mut() {
            let props = o.entry("properties").or_insert_with(|| json!({}));
            if let Some(p) = props.as_object_mut() {
                p.insert(
                    "metadata".into(),
                    json!({"$ref": format!("#/components/schemas/{OBJECT_META}")}),
                );
                p.insert("apiVersion".into(), json!({"type": "string"}));
                p.insert("kind".into(), json!({"type": "string"}));
            }
            o.entry("type").or_insert(json!("object"));
        }
        Schema {
            root: Arc::new(root),
            comps: builtin_components(),
        }
    }

    pub fn node(&self) -> Node<'_> {
        Node {
            v: Some(&self.root),
            comps: &self.comps,
        }
        .resolve()
    }
}

impl<'a> Node<'a> {
    pub fn none(comps: &'a Components) -> Self {
        Node { v: None, comps }
    }

    fn resolve(self) -> Self {
        let mut v = match self.v {
            Some(v) => v,
            None => return self,
        };
        for _ in 0..16 {
            if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
                let name = r.rsplit('/').next().unwrap_or(r);
                match self.comps.get(name) {
                    Some(t) => v = t,
                    None => {
                        return Node {
                            v: None,
                            comps: self.comps,
                        }
                    }
                }
                continue;
            }
            if v.get("properties").is_none() && v.get("type").is_none() {
                if let Some(all) = v.get("allOf").and_then(|a| a.as_array()) {
                    if all.len() == 1 {
                        v = &all[0];
                        continue;
                    }
                }
            }
            break;
        }
        Node {
            v: Some(v),
            comps: self.comps,
        }
    }

    fn raw(&self, key: &str) -> Option<&'a Value> {
        self.v?.get(key)
    }

    pub fn is_known(&self) -> bool {
        self.v.is_some()
    }

    pub fn type_name(&self) -> Option<&'a str> {
        self.raw("type")?.as_str()
    }

    pub fn preserve_unknown(&self) -> bool {
        self.v.is_none()
            || self
                .raw("x-kubernetes-preserve-unknown-fields")
                .and_then(|v| v.as_bool())
                == Some(true)
    }

    pub fn int_or_string(&self) -> bool {
        self.raw("x-kubernetes-int-or-string")
            .and_then(|v| v.as_bool())
            == Some(true)
    }

    pub fn embedded_resource(&self) -> bool {
        self.raw("x-kubernetes-embedded-resource")
            .and_then(|v| v.as_bool())
            == Some(true)
    }

    pub fn properties(&self) -> Option<&'a Map<String, Value>> {
        self.raw("properties")?.as_object()
    }

    /// Schema of `additionalProperties`, if the node is a map.
    pub fn additional(&self) -> Option<Node<'a>> {
        match self.raw("additionalProperties")? {
            Value::Bool(true) => Some(Node {
                v: None,
                comps: self.comps,
            }),
            Value::Bool(false) => None,
            v => Some(
                Node {
                    v: Some(v),
                    comps: self.comps,
                }
                .resolve(),
            ),
        }
    }

    /// Child schema for a field: a declared property, else additionalProperties; `None` if unknown.
    pub fn field(&self, key: &str) -> Option<Node<'a>> {
        if self.v.is_none() {
            return Some(*self);
        }
        if let Some(p) = self.properties().and_then(|p| p.get(key)) {
            return Some(
                Node {
                    v: Some(p),
                    comps: self.comps,
                }
                .resolve_keep_ext(),
            );
        }
        if let Some(a) = self.additional() {
            return Some(a);
        }
        if self.preserve_unknown() {
            return Some(Node {
                v: None,
                comps: self.comps,
            });
        }
        None
    }

    /// Property nodes keep their own extensions (list type, patch strategy) while resolving `$ref`.
    fn resolve_keep_ext(self) -> Node<'a> {
        self.resolve()
    }

    /// Raw (unresolved) property node, to read extensions set next to a `$ref`.
    pub fn prop_raw(&self, key: &str) -> Option<&'a Value> {
        self.properties()?.get(key)
    }

    pub fn items(&self) -> Node<'a> {
        match self.raw("items") {
            Some(v) => Node {
                v: Some(v),
                comps: self.comps,
            }
            .resolve(),
            None => Node {
                v: None,
                comps: self.comps,
            },
        }
    }

    pub fn ext_str(&self, key: &str) -> Option<&'a str> {
        self.raw(key)?.as_str()
    }

    pub fn list_type(&self) -> ListType {
        match self.ext_str("x-kubernetes-list-type") {
            Some("set") => ListType::Set,
            Some("map") => {
                let keys = self
                    .raw("x-kubernetes-list-map-keys")
                    .and_then(|k| k.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                ListType::Map(keys)
            }
            _ => ListType::Atomic,
        }
    }

    pub fn map_atomic(&self) -> bool {
        matches!(self.ext_str("x-kubernetes-map-type"), Some("atomic"))
    }

    /// (merge key, strategies) from x-kubernetes-patch-*.
    pub fn patch_meta(&self) -> (Option<&'a str>, Vec<&'a str>) {
        let strat = self
            .ext_str("x-kubernetes-patch-strategy")
            .map(|s| s.split(',').collect())
            .unwrap_or_default();
        (self.ext_str("x-kubernetes-patch-merge-key"), strat)
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.raw(key)
    }

    pub fn comps(&self) -> &'a Components {
        self.comps
    }
}
