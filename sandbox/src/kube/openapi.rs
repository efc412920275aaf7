//! OpenAPI v3 documents generated from the registry: per group-version paths whose PATCH
//! operations carry `x-kubernetes-group-version-kind` and a `fieldValidation` parameter (what
//! kubectl and helm check before server-side validation), and component schemas with the
//! list/patch extensions kubectl's strategic merge reads.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::kube::registry::{Registry, ResourceDef};
use crate::kube::schema::{builtin_components, OBJECT_META};

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Stable short hash for `?hash=` (clients cache documents by it).
fn hash(v: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}{:016X}", h.finish(), h.finish().rotate_left(17))
}

pub fn root(reg: &Registry) -> Value {
    let mut gvs: BTreeSet<(String, String)> = BTreeSet::new();
    for d in reg.all() {
        gvs.insert((d.group.clone(), d.version.clone()));
    }
    let mut paths = Map::new();
    for (g, v) in gvs {
        let key = gv_key(&g, &v);
        paths.insert(key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash(&fingerprint(reg, &g, &v)))}));
    }
    json!({"paths": paths})
}

/// Cheap stand-in for the document's content: changes whenever its resources change.
fn fingerprint(reg: &Registry, group: &str, version: &str) -> Value {
    let parts: Vec<Value> = reg
        .resources_in(group, version)
        .iter()
        .map(|d| {
            json!([
                d.kind,
                d.plural,
                d.namespaced,
                d.status,
                d.scale,
                d.crd.as_ref().map(|c| (*c.schema.root).clone())
            ])
        })
        .collect();
    Value::Array(parts)
}

fn component_name(def: &ResourceDef) -> String {
    if let Some(n) = &def.schema_name {
        return n.clone();
    }
    let rev: Vec<&str> = def.group.split('.').rev().collect();
    format!("{}.{}.{}", rev.join("."), def.version, def.kind)
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                out.insert(r.rsplit('/').next().unwrap_or(r).to_string());
            }
            for x in m.values() {
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn param(name: &str, typ: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": typ, "uniqueItems": true}})
}

fn op(
    action: &str,
    def: &ResourceDef,
    schema_ref: &str,
    id: &str,
    with_body: bool,
    patch: bool,
) -> Value {
    let mut params = vec![param("dryRun", "string"), param("fieldManager", "string")];
    if with_body {
        params.push(param("fieldValidation", "string"));
    }
    if patch {
        params.push(param("force", "boolean"));
    }
    if action == "list" || action == "watchlist" {
        params = [
            "allowWatchBookmarks",
            "continue",
            "fieldSelector",
            "labelSelector",
            "limit",
            "resourceVersion",
            "resourceVersionMatch",
            "sendInitialEvents",
            "timeoutSeconds",
            "watch",
        ]
        .iter()
        .map(|n| param(n, "string"))
        .collect();
    }
    let content = |r: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{r}")}}});
    let mut o = json!({
        "operationId": id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": content(schema_ref)}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": def.group, "version": def.version, "kind": def.kind},
    });
    if with_body {
        // kubectl computes strategic merge patches only when the PATCH operation lists the type.
        let types: Vec<&str> = if patch {
            let mut t = vec![
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
            ];
            if def.builtin {
                t.push("application/strategic-merge-patch+json");
            }
            t
        } else {
            vec!["*/*"]
        };
        let mut c = Map::new();
        for t in types {
            let s = if patch {
                json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"})
            } else {
                json!({"$ref": format!("#/components/schemas/{schema_ref}")})
            };
            c.insert(t.to_string(), json!({"schema": s}));
        }
        o["requestBody"] = json!({"content": c, "required": true});
    }
    o
}

fn paths_for(def: &ResourceDef, name: &str, paths: &mut Map<String, Value>) {
    let prefix = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let coll = if def.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{prefix}/{}", def.plural)
    };
    let list_name = format!("{name}List");
    let k = &def.kind;
    paths.insert(coll.clone(), json!({
        "get": op("list", def, &list_name, &format!("list{k}"), false, false),
        "post": op("post", def, name, &format!("create{k}"), true, false),
        "delete": op("deletecollection", def, "io.k8s.apimachinery.pkg.apis.meta.v1.Status", &format!("deletecollection{k}"), false, false),
    }));
    let item = format!("{coll}/{{name}}");
    paths.insert(item.clone(), json!({
        "get": op("get", def, name, &format!("read{k}"), false, false),
        "put": op("put", def, name, &format!("replace{k}"), true, false),
        "patch": op("patch", def, name, &format!("patch{k}"), true, true),
        "delete": op("delete", def, "io.k8s.apimachinery.pkg.apis.meta.v1.Status", &format!("delete{k}"), false, false),
    }));
    if def.status {
        paths.insert(
            format!("{item}/status"),
            json!({
                "get": op("get", def, name, &format!("read{k}Status"), false, false),
                "put": op("put", def, name, &format!("replace{k}Status"), true, false),
                "patch": op("patch", def, name, &format!("patch{k}Status"), true, true),
            }),
        );
    }
    if def.scale {
        let scale = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
        let mut get = op(
            "get",
            def,
            "io.k8s.api.autoscaling.v1.Scale",
            &format!("read{k}Scale"),
            false,
            false,
        );
        let mut put = op(
            "put",
            def,
            "io.k8s.api.autoscaling.v1.Scale",
            &format!("replace{k}Scale"),
            true,
            false,
        );
        let mut patch = op(
            "patch",
            def,
            "io.k8s.api.autoscaling.v1.Scale",
            &format!("patch{k}Scale"),
            true,
            true,
        );
        for o in [&mut get, &mut put, &mut patch] {
            o["x-kubernetes-group-version-kind"] = scale.clone();
        }
        paths.insert(
            format!("{item}/scale"),
            json!({"get": get, "put": put, "patch": patch}),
        );
    }
    if def.namespaced {
        paths.insert(format!("{prefix}/{}", def.plural), json!({"get": op("list", def, &list_name, &format!("list{k}ForAllNamespaces"), false, false)}));
    }
}

/// Schema of a custom resource as published: metadata as ObjectMeta, GVK extension.
fn crd_component(def: &ResourceDef) -> Value {
    let info = def.crd.as_ref().expect("custom resource");
    let mut root = (*info.schema.root).clone();
    if let Some(p) = root.get_mut("properties").and_then(|p| p.as_object_mut()) {
        p.insert("metadata".into(), json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
        p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
    }
    root
}

pub fn group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs = reg.resources_in(group, version);
    if defs.is_empty() {
        return None;
    }
    let comps = builtin_components();
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    let mut paths = Map::new();
    let mut roots = Vec::new();
    for def in &defs {
        let name = component_name(def);
        let mut schema = if def.crd.is_some() {
            crd_component(def)
        } else {
            comps
                .get(&name)
                .cloned()
                .unwrap_or(json!({"type": "object"}))
        };
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": def.group, "version": def.version, "kind": def.kind}]);
        let list = json!({
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "items": {"type": "array", "items": {"allOf": [{"$ref": format!("#/components/schemas/{name}")}], "default": {}}},
                "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"}], "default": {}},
            },
            "x-kubernetes-group-version-kind": [{"group": def.group, "version": def.version, "kind": def.list_kind}],
        });
        paths_for(def, &name, &mut paths);
        roots.push(schema.clone());
        roots.push(list.clone());
        schemas.insert(name.clone(), schema);
        schemas.insert(format!("{name}List"), list);
    }
    // Pull in every referenced component transitively.
    let mut pending: BTreeSet<String> = BTreeSet::new();
    for r in &roots {
        collect_refs(r, &mut pending);
    }
    for extra in [
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.api.autoscaling.v1.Scale",
    ] {
        pending.insert(extra.to_string());
    }
    while let Some(n) = pending.pop_first() {
        if schemas.contains_key(&n) {
            continue;
        }
        let Some(s) = comps.get(&n) else { continue };
        let mut refs = BTreeSet::new();
        collect_refs(s, &mut refs);
        schemas.insert(n, s.clone());
        pending.extend(refs.into_iter().filter(|r| !schemas.contains_key(r)));
    }
    schemas.insert("io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(), json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}));
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
