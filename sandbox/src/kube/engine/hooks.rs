//! What built-in kinds do on the server beyond the generic write rules, as one table instead
//! of kind-name checks spread over the engine.

use super::*;

/// Server-side behaviour of one built-in kind.
pub(super) struct KindHooks {
    /// Fills server-set fields on every write (`old` is the object before it, if any).
    pub on_write: Option<fn(&State, Option<&Value>, &mut Value)>,
    /// Validation beyond the built-in schema.
    pub validate: Option<fn(&Value) -> Vec<FieldError>>,
    /// Registry changes once the object is stored, and once it is gone for good.
    pub after_write: Option<fn(&mut State, &Value)>,
    pub after_remove: Option<fn(&mut State, &Value)>,
    /// The status a client sends on create is kept, not replaced by the initial one.
    pub keeps_status_on_create: bool,
    /// An update of a missing object creates it.
    pub create_on_update: bool,
    /// Deleting one bound to a node is graceful: the kubelet finishes it.
    pub graceful_delete: bool,
    /// `spec.finalizers` hold the final removal, and deletion marks it `Terminating`.
    pub namespace_lifecycle: bool,
}

const PLAIN: KindHooks = KindHooks {
    on_write: None,
    validate: None,
    after_write: None,
    after_remove: None,
    keeps_status_on_create: false,
    create_on_update: false,
    graceful_delete: false,
    namespace_lifecycle: false,
};

/// (group, kind) of each built-in kind with behaviour of its own.
const TABLE: &[((&str, &str), KindHooks)] = &[
    (
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        KindHooks {
            on_write: Some(crd_on_write),
            validate: Some(crd::validate_crd),
            after_write: Some(crd_after_write),
            after_remove: Some(crd_after_remove),
            ..PLAIN
        },
    ),
    (
        ("rbac.authorization.k8s.io", "ClusterRole"),
        KindHooks {
            after_write: Some(aggregate_roles),
            after_remove: Some(aggregate_roles),
            ..PLAIN
        },
    ),
    (
        ("", "Service"),
        KindHooks {
            on_write: Some(service_on_write),
            ..PLAIN
        },
    ),
    (
        ("", "Node"),
        KindHooks {
            keeps_status_on_create: true,
            ..PLAIN
        },
    ),
    (
        ("", "Pod"),
        KindHooks {
            graceful_delete: true,
            ..PLAIN
        },
    ),
    (
        ("", "Namespace"),
        KindHooks {
            namespace_lifecycle: true,
            ..PLAIN
        },
    ),
    (
        ("", "Event"),
        KindHooks {
            create_on_update: true,
            ..PLAIN
        },
    ),
    (
        ("events.k8s.io", "Event"),
        KindHooks {
            create_on_update: true,
            ..PLAIN
        },
    ),
    (
        ("coordination.k8s.io", "Lease"),
        KindHooks {
            create_on_update: true,
            ..PLAIN
        },
    ),
    (
        ("", "Endpoints"),
        KindHooks {
            create_on_update: true,
            ..PLAIN
        },
    ),
];

/// The hooks of `def`'s kind; custom resources have none.
pub(super) fn hooks(def: &ResourceDef) -> &'static KindHooks {
    if !def.builtin {
        return &PLAIN;
    }
    TABLE
        .iter()
        .find(|((g, k), _)| *g == def.group && *k == def.kind)
        .map_or(&PLAIN, |(_, h)| h)
}

/// Aggregated ClusterRoles follow the roles their selectors match (a controller on a real
/// cluster; here at once, in the same write).
fn aggregate_roles(st: &mut State, _: &Value) {
    crate::kube::auth::rbac::aggregate(st);
}

/// A CRD's status follows its spec; a new one gets the cleanup finalizer.
fn crd_on_write(_: &State, old: Option<&Value>, obj: &mut Value) {
    let status = crd::crd_status(obj, old.and_then(|o| o.get("status")));
    obj["status"] = status;
    if old.is_none() {
        let mut f = meta::finalizers(obj);
        if !f.iter().any(|x| x == CRD_FINALIZER) {
            f.push(CRD_FINALIZER.into());
        }
        meta::set_finalizers(obj, &f);
    }
}

/// A Service gets a cluster IP, and node ports where its type has them.
fn service_on_write(st: &State, old: Option<&Value>, obj: &mut Value) {
    let spec = obj.get_mut("spec").and_then(|s| s.as_object_mut());
    if let Some(spec) = spec {
        let t = spec
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("ClusterIP")
            .to_string();
        if t != "ExternalName" && spec.get("clusterIP").is_none_or(|c| c.as_str() == Some("")) {
            let ip = match old.and_then(|o| meta::get_path(o, "spec.clusterIP")) {
                Some(ip) => ip.clone(),
                None => {
                    let n = st.current_rv();
                    json!(format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 2))
                }
            };
            spec.insert("clusterIP".into(), ip.clone());
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        if t == "NodePort" || t == "LoadBalancer" {
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for (i, p) in ports.iter_mut().enumerate() {
                    if let Some(p) = p.as_object_mut() {
                        if !p.contains_key("nodePort") {
                            p.insert(
                                "nodePort".into(),
                                json!(30000 + (st.current_rv() as usize * 7 + i) % 2767),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The storage a CRD defines (`group/plural`).
fn crd_storage(crd: &Value) -> String {
    format!(
        "{}/{}",
        meta::get_path(crd, "spec.group")
            .and_then(|g| g.as_str())
            .unwrap_or(""),
        meta::get_path(crd, "spec.names.plural")
            .and_then(|g| g.as_str())
            .unwrap_or("")
    )
}

/// A CRD written (not being deleted) serves its versions from now on.
fn crd_after_write(st: &mut State, saved: &Value) {
    if meta::deletion_timestamp(saved).is_none() {
        st.registry.remove_storage(&crd_storage(saved));
        for d in crd::defs_from_crd(saved) {
            st.registry.insert(d);
        }
    }
}

/// A CRD gone for good takes its resources with it.
fn crd_after_remove(st: &mut State, gone: &Value) {
    let storage = crd_storage(gone);
    st.registry.remove_storage(&storage);
    st.drop_storage(&storage);
}
