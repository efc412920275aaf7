//! Request semantics on top of the store: create/update/patch/delete with metadata rules,
//! defaults, validation, status/scale subresources, managedFields and finalizers.
//! Every function runs under the state lock, so a request is applied whole or not at all.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::kube::builtin;
use crate::kube::crd;
use crate::kube::error::{ApiError, ApiResult, FieldError};
use crate::kube::meta;
use crate::kube::patch::managed::{self, Scope};
use crate::kube::patch::{self, jsonpatch, strategic, PatchType};
use crate::kube::registry::{Generation, ResourceDef};
use crate::kube::schema::Schema;
use crate::kube::store::State;
use crate::kube::structural;
use crate::kube::views;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Main,
    Status,
    Scale,
}

impl Sub {
    pub fn name(self) -> &'static str {
        match self {
            Sub::Main => "",
            Sub::Status => "status",
            Sub::Scale => "scale",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

#[derive(Clone, Debug)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub user_agent: String,
    pub validation: FieldValidation,
    pub force: Option<bool>,
}

impl Default for WriteOpts {
    fn default() -> Self {
        WriteOpts {
            dry_run: false,
            field_manager: None,
            user_agent: String::new(),
            validation: FieldValidation::Warn,
            force: None,
        }
    }
}

impl WriteOpts {
    fn manager(&self) -> String {
        match &self.field_manager {
            Some(m) if !m.is_empty() => m.clone(),
            _ => managed::manager_from_user_agent(&self.user_agent),
        }
    }
}

/// A successful write: status code, served object, warnings for the `Warning` header.
#[derive(Debug)]
pub struct Outcome {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub grace_period: Option<i64>,
    pub dry_run: bool,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

pub fn schema_of(def: &ResourceDef) -> Schema {
    if let Some(info) = &def.crd {
        return info.schema.clone();
    }
    match &def.schema_name {
        Some(n) => Schema::builtin(n),
        None => Schema::for_crd(None),
    }
}

fn scope_of(def: &ResourceDef, sub: Sub) -> Scope {
    match sub {
        Sub::Status => Scope::StatusOnly,
        _ if def.status => Scope::NoStatus,
        _ => Scope::All,
    }
}

fn storage_ids(st: &State, def: &ResourceDef) -> (String, String) {
    match st.registry.storage_def(&def.storage) {
        Some(s) => (s.api_version(), s.kind.clone()),
        None => (def.api_version(), def.kind.clone()),
    }
}

fn ns_key(def: &ResourceDef, ns: Option<&str>) -> String {
    if def.namespaced {
        ns.unwrap_or("").to_string()
    } else {
        String::new()
    }
}

/// Reads an object as served by `def`.
pub fn get(st: &State, def: &ResourceDef, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    let ns = ns_key(def, ns);
    let obj = st
        .get(&def.storage, &ns, name)
        .ok_or_else(|| ApiError::not_found(&def.gr(), name))?;
    Ok(present(def, &obj))
}

/// Stored form to served form, with read-time schema defaults for custom resources.
pub fn present(def: &ResourceDef, stored: &Value) -> Value {
    let mut v = views::to_view(def, stored);
    if let Some(info) = &def.crd {
        if info.has_schema {
            structural::apply_defaults(&mut v, info.schema.node());
        }
    }
    v
}

fn check_type_meta(def: &ResourceDef, body: &Value) -> ApiResult<()> {
    let av = body
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let kind = body.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    if def.is_custom() && (kind.is_empty() || av.is_empty()) {
        let what = if kind.is_empty() { "Kind" } else { "Version" };
        let shown = serde_json::to_string(body).unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): Object '{what}' is missing in '{shown}'",
            def.kind
        )));
    }
    if !av.is_empty() && av != def.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            def.api_version()
        )));
    }
    if !kind.is_empty() && kind != def.kind {
        if def.is_custom() {
            return Err(ApiError::invalid(
                kind,
                &def.group,
                meta::name(body),
                &[FieldError::invalid(
                    "kind",
                    json!(kind),
                    format!("must be {}", def.kind),
                )],
            ));
        }
        return Err(ApiError::bad_request(format!(
            "{kind} in version {:?} cannot be handled as a {}: the kind in the data ({kind}) does not match the expected kind ({})",
            def.version, def.kind, def.kind
        )));
    }
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): expected an object",
            def.kind
        )));
    }
    Ok(())
}

fn check_namespace(st: &State, def: &ResourceDef, ns: &str, creating: bool) -> ApiResult<()> {
    if !def.namespaced {
        return Ok(());
    }
    let Some(n) = st.get("/namespaces", "", ns) else {
        return Err(ApiError::not_found(
            &crate::kube::error::GroupResource::new("", "namespaces"),
            ns,
        ));
    };
    if creating && meta::deletion_timestamp(&n).is_some() {
        return Err(ApiError::forbidden(
            &def.gr(),
            "",
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )
        .with_details(
            json!({"name": "", "group": def.group, "kind": def.plural, "causes": [{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {ns} is being terminated"),
                "field": "metadata.namespace"
            }]}),
        ));
    }
    Ok(())
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn clear_system_meta(obj: &mut Value) {
    let md = meta::metadata_mut(obj);
    for k in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
    ] {
        md.remove(k);
    }
}

/// Builds the create-time object: names, namespace, system metadata, initial status.
fn prepare_new(
    st: &State,
    def: &ResourceDef,
    ns: Option<&str>,
    mut obj: Value,
) -> ApiResult<Value> {
    {
        let body_ns = meta::namespace(&obj).to_string();
        let md = meta::metadata_mut(&mut obj);
        if def.namespaced {
            let url_ns = ns.unwrap_or("");
            if !body_ns.is_empty() && !url_ns.is_empty() && body_ns != url_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let eff = if url_ns.is_empty() {
                body_ns
            } else {
                url_ns.to_string()
            };
            md.insert("namespace".into(), json!(eff));
        } else {
            md.remove("namespace");
        }
    }
    clear_system_meta(&mut obj);
    if meta::name(&obj).is_empty() {
        let gen = meta::metadata(&obj)
            .and_then(|m| m.get("generateName"))
            .and_then(|g| g.as_str())
            .unwrap_or("")
            .to_string();
        if gen.is_empty() {
            return Err(ApiError::invalid(
                &def.kind,
                &def.group,
                "",
                &[FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        // Retry on the (unlikely) collision like the real server's generator.
        let ns_k = ns_key(def, Some(meta::namespace(&obj)));
        let mut name = format!("{gen}{}", random_suffix());
        for _ in 0..8 {
            if st.get(&def.storage, &ns_k, &name).is_none() {
                break;
            }
            name = format!("{gen}{}", random_suffix());
        }
        meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
    }
    let m = obj.as_object_mut().expect("object");
    m.insert("apiVersion".into(), json!(def.api_version()));
    m.insert("kind".into(), json!(def.kind));
    if def.status {
        if def.builtin {
            let keep_status = def.kind == "Node";
            if !keep_status {
                match builtin::initial_status(&def.group, &def.kind) {
                    Some(s) => {
                        m.insert("status".into(), s);
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
        } else {
            m.remove("status");
        }
    }
    Ok(obj)
}

/// Unknown-field handling for fieldValidation; returns warnings.
fn handle_unknown_fields(
    def: &ResourceDef,
    obj: &mut Value,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    let schema = schema_of(def);
    let mut unknown = Vec::new();
    if def.builtin || def.crd.as_ref().is_some_and(|c| c.has_schema) {
        structural::prune(obj, schema.node(), "", true, &mut unknown);
    }
    if def.builtin {
        let mut type_errs = Vec::new();
        structural::builtin_type_errors(obj, schema.node(), "", &mut type_errs);
        if let Some(e) = type_errs.first() {
            return Err(ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: {e}",
                def.kind, def.version, def.kind
            )));
        }
    }
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = unknown
        .iter()
        .map(|u| format!("unknown field {u:?}"))
        .collect();
    match fv {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        ))),
        FieldValidation::Warn => Ok(msgs),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

fn apply_defaults(def: &ResourceDef, obj: &mut Value) {
    if def.builtin {
        builtin::apply_defaults(&def.group, &def.kind, obj);
    } else if let Some(info) = &def.crd {
        if info.has_schema {
            structural::apply_defaults(obj, info.schema.node());
        }
    }
}

fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>, creating: bool) -> ApiResult<()> {
    let mut errs = Vec::new();
    let name = meta::name(obj).to_string();
    if creating {
        builtin::validate_name(&def.group, &def.kind, def.builtin, &name, &mut errs);
    }
    if let Some(gn) = meta::metadata(obj)
        .and_then(|m| m.get("generateName"))
        .and_then(|g| g.as_str())
    {
        let _ = gn;
    }
    validate_meta(obj, &mut errs);
    if def.builtin {
        builtin::validate(&def.group, &def.kind, obj, old, &mut errs);
        if def.kind == "CustomResourceDefinition" {
            errs.extend(crd::validate_crd(obj));
        }
    } else if let Some(info) = &def.crd {
        if info.has_schema {
            structural::validate(obj, info.schema.node(), "", &mut errs);
        }
        if let Some(cel) = &info.cel {
            if !cel.failed.is_empty() {
                for f in &cel.failed {
                    errs.push(FieldError::invalid(
                        if f.path.is_empty() {
                            "<root>".to_string()
                        } else {
                            f.path.clone()
                        },
                        json!("object"),
                        format!("rule could not be compiled, object rejected: {}", f.rule),
                    ));
                }
            } else {
                errs.extend(cel.validate(obj, old));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&def.kind, &def.group, &name, &errs))
    }
}

fn validate_meta(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(md) = meta::metadata(obj) else {
        return;
    };
    for key in ["labels", "annotations"] {
        if let Some(m) = md.get(key) {
            match m.as_object() {
                None if !m.is_null() => errs.push(FieldError::invalid(
                    format!("metadata.{key}"),
                    m.clone(),
                    "must be a map",
                )),
                Some(m) => {
                    for (k, v) in m {
                        if !v.is_string() {
                            errs.push(FieldError::invalid(
                                format!("metadata.{key}"),
                                v.clone(),
                                "values must be strings",
                            ));
                        }
                        if key == "labels" {
                            let val = v.as_str().unwrap_or("");
                            if val.len() > 63
                                || !val.bytes().all(|b| {
                                    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
                                })
                            {
                                errs.push(FieldError::invalid(
                                    "metadata.labels",
                                    json!(val),
                                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                                ));
                            }
                            let name = k.rsplit('/').next().unwrap_or("");
                            if name.is_empty() || name.len() > 63 {
                                errs.push(FieldError::invalid(
                                    "metadata.labels",
                                    json!(k),
                                    "name part must be non-empty and no more than 63 characters",
                                ));
                            }
                        }
                    }
                }
                None => {}
            }
        }
    }
}

fn check_finalizers_while_deleting(def: &ResourceDef, old: &Value, new: &Value) -> ApiResult<()> {
    if meta::deletion_timestamp(old).is_none() {
        return Ok(());
    }
    let old_f = meta::finalizers(old);
    let added: Vec<String> = meta::finalizers(new)
        .into_iter()
        .filter(|f| !old_f.contains(f))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
    Err(ApiError::invalid(
        &def.kind,
        &def.group,
        meta::name(new),
        &[FieldError::forbidden(
            "metadata.finalizers",
            format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}", shown.join(", ")),
        )],
    ))
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    v
}

fn bump_generation(def: &ResourceDef, old: &Value, new: &mut Value) {
    let g = meta::generation(old);
    let changed = match def.generation {
        Generation::None => false,
        Generation::Spec => old.get("spec") != new.get("spec"),
        Generation::SpecOrAnnotations => {
            old.get("spec") != new.get("spec")
                || meta::metadata(old).and_then(|m| m.get("annotations"))
                    != meta::metadata(new).and_then(|m| m.get("annotations"))
        }
        Generation::NonMetadata => without(old, &["metadata"]) != without(new, &["metadata"]),
        Generation::NonMetadataStatus => {
            without(old, &["metadata", "status"]) != without(new, &["metadata", "status"])
        }
    };
    let md = meta::metadata_mut(new);
    if g > 0 {
        md.insert("generation".into(), json!(if changed { g + 1 } else { g }));
    } else if def.generation != Generation::None {
        md.insert("generation".into(), json!(1));
    }
}

/// Equality ignoring resourceVersion and managedFields timestamps (a no-op write).
fn same_content(a: &Value, b: &Value) -> bool {
    fn norm(v: &Value) -> Value {
        let mut v = v.clone();
        let md = meta::metadata_mut(&mut v);
        md.remove("resourceVersion");
        if let Some(Value::Array(mf)) = md.get_mut("managedFields") {
            for e in mf.iter_mut().filter_map(|e| e.as_object_mut()) {
                e.remove("time");
            }
        }
        v
    }
    norm(a) == norm(b)
}

fn now_time() -> String {
    meta::now_rfc3339()
}

/// Post-processing of kinds with server-side behaviour on write.
fn kind_hooks(st: &State, def: &ResourceDef, old: Option<&Value>, obj: &mut Value) {
    if !def.builtin {
        return;
    }
    match (def.group.as_str(), def.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
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
        ("", "Service") => {
            let spec = obj.get_mut("spec").and_then(|s| s.as_object_mut());
            if let Some(spec) = spec {
                let t = spec
                    .get("type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("ClusterIP")
                    .to_string();
                if t != "ExternalName"
                    && spec.get("clusterIP").is_none_or(|c| c.as_str() == Some(""))
                {
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
        _ => {}
    }
}

pub const CRD_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Commits a prepared object (create when `old` is None) and returns the served result.
#[allow(clippy::too_many_arguments)]
fn commit(
    st: &mut State,
    def: &ResourceDef,
    old: Option<&Arc<Value>>,
    mut new: Value,
    sub: Sub,
    opts: &WriteOpts,
    apply_done: bool,
    mut warnings: Vec<String>,
) -> ApiResult<Outcome> {
    let creating = old.is_none();
    let old_view = old.map(|o| present(def, o));
    apply_defaults(def, &mut new);
    warnings.extend(handle_unknown_fields(def, &mut new, opts.validation)?);
    kind_hooks(st, def, old_view.as_ref(), &mut new);
    validate(def, &new, old_view.as_ref(), creating)?;
    if let Some(o) = &old_view {
        check_finalizers_while_deleting(def, o, &new)?;
        bump_generation(def, o, &mut new);
    } else if def.generation != Generation::None {
        meta::metadata_mut(&mut new).insert("generation".into(), json!(1));
    }
    if !apply_done {
        managed::record_update(
            old_view.as_ref(),
            &mut new,
            &opts.manager(),
            sub.name(),
            &def.api_version(),
            scope_of(def, sub),
            schema_of(def).node(),
        );
    }
    if let Some(o) = &old_view {
        if same_content(o, &new) {
            return Ok(Outcome {
                code: 200,
                body: o.clone(),
                warnings,
            });
        }
    }
    let (sav, skind) = storage_ids(st, def);
    let ns = meta::namespace(&new).to_string();
    let name = meta::name(&new).to_string();
    let grace_zero = old_view
        .as_ref()
        .and_then(|o| meta::metadata(o))
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(|g| g.as_i64())
        == Some(0);
    if !creating
        && grace_zero
        && meta::deletion_timestamp(&new).is_some()
        && meta::finalizers(&new).is_empty()
        && !blocked_by_spec_finalizers(def, &new)
    {
        if opts.dry_run {
            return Ok(Outcome {
                code: 200,
                body: new,
                warnings,
            });
        }
        let stored = views::from_view(def, new, &sav, &skind);
        st.put(&def.storage, stored);
        let gone = st.remove(&def.storage, &ns, &name).expect("just stored");
        after_remove(st, def, &gone);
        return Ok(Outcome {
            code: 200,
            body: present(def, &gone),
            warnings,
        });
    }
    if opts.dry_run {
        return Ok(Outcome {
            code: if creating { 201 } else { 200 },
            body: new,
            warnings,
        });
    }
    let stored = views::from_view(def, new, &sav, &skind);
    let saved = st.put(&def.storage, stored);
    after_write(st, def, &saved);
    Ok(Outcome {
        code: if creating { 201 } else { 200 },
        body: present(def, &saved),
        warnings,
    })
}

fn blocked_by_spec_finalizers(def: &ResourceDef, obj: &Value) -> bool {
    def.builtin
        && def.kind == "Namespace"
        && meta::get_path(obj, "spec.finalizers")
            .and_then(|f| f.as_array())
            .is_some_and(|a| !a.is_empty())
}

/// Registry changes after a CRD write.
fn after_write(st: &mut State, def: &ResourceDef, saved: &Value) {
    if def.builtin && def.kind == "CustomResourceDefinition" {
        let storage = format!(
            "{}/{}",
            meta::get_path(saved, "spec.group")
                .and_then(|g| g.as_str())
                .unwrap_or(""),
            meta::get_path(saved, "spec.names.plural")
                .and_then(|g| g.as_str())
                .unwrap_or("")
        );
        if meta::deletion_timestamp(saved).is_none() {
            st.registry.remove_storage(&storage);
            for d in crd::defs_from_crd(saved) {
                st.registry.insert(d);
            }
        }
    }
}

/// Cleanup after an object is gone for good.
pub fn after_remove(st: &mut State, def: &ResourceDef, gone: &Value) {
    if def.builtin && def.kind == "CustomResourceDefinition" {
        let storage = format!(
            "{}/{}",
            meta::get_path(gone, "spec.group")
                .and_then(|g| g.as_str())
                .unwrap_or(""),
            meta::get_path(gone, "spec.names.plural")
                .and_then(|g| g.as_str())
                .unwrap_or("")
        );
        st.registry.remove_storage(&storage);
        st.drop_storage(&storage);
    }
}

pub fn create(
    st: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    check_type_meta(def, &body)?;
    let mut new = prepare_new(st, def, ns, body)?;
    let ns_k = ns_key(def, Some(meta::namespace(&new)));
    let name = meta::name(&new).to_string();
    check_namespace(st, def, &ns_k, true)?;
    if st.get(&def.storage, &ns_k, &name).is_some() {
        return Err(ApiError::already_exists(&def.gr(), &name));
    }
    {
        let md = meta::metadata_mut(&mut new);
        md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        md.insert("creationTimestamp".into(), json!(now_time()));
        md.remove("managedFields");
    }
    commit(st, def, None, new, Sub::Main, opts, false, Vec::new())
}

/// Merges what a write may change into the old object, per subresource.
fn restrict_to_sub(def: &ResourceDef, old: &Value, mut new: Value, sub: Sub) -> Value {
    match sub {
        Sub::Status => {
            let mut out = old.clone();
            match new.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(m) = out.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(mf) = meta::metadata(&new)
                .and_then(|m| m.get("managedFields"))
                .cloned()
            {
                meta::metadata_mut(&mut out).insert("managedFields".into(), mf);
            }
            out
        }
        _ => {
            if def.status {
                let m = new.as_object_mut().expect("object");
                match old.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
            new
        }
    }
}

/// Keeps the fields clients cannot change on update.
fn keep_system_meta(old: &Value, new: &mut Value) {
    let old_md = meta::metadata(old).cloned().unwrap_or_default();
    let md = meta::metadata_mut(new);
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match old_md.get(k) {
            Some(v) => {
                md.insert(k.to_string(), v.clone());
            }
            None => {
                md.remove(k);
            }
        }
    }
    md.remove("selfLink");
}

fn allow_create_on_update(def: &ResourceDef) -> bool {
    def.builtin && matches!(def.kind.as_str(), "Event" | "Lease" | "Endpoints")
}

pub fn update(
    st: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    sub: Sub,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    if sub == Sub::Scale {
        return scale_write(st, def, ns, name, ScaleInput::Put(body), opts);
    }
    check_type_meta(def, &body)?;
    let body_name = meta::name(&body).to_string();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if def.namespaced {
        let bns = meta::namespace(&body);
        if !bns.is_empty() && Some(bns) != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let ns_k = ns_key(def, ns);
    let Some(old) = st.get(&def.storage, &ns_k, name) else {
        if allow_create_on_update(def) && sub == Sub::Main {
            return create(st, def, ns, body, opts);
        }
        return Err(ApiError::not_found(&def.gr(), name));
    };
    match meta::resource_version(&body) {
        Some(rv) if Some(rv) != meta::resource_version(&old) => {
            return Err(ApiError::stale(&def.gr(), name))
        }
        Some(_) => {}
        None => {
            if def.is_custom() {
                return Err(ApiError::invalid(
                    &def.kind,
                    &def.group,
                    name,
                    &[FieldError::invalid_raw(
                        "metadata.resourceVersion",
                        "0x0",
                        "must be specified for an update",
                    )],
                ));
            }
        }
    }
    let old_view = present(def, &old);
    let mut new = body;
    new["apiVersion"] = json!(def.api_version());
    new["kind"] = json!(def.kind);
    let mut new = restrict_to_sub(def, &old_view, std::mem::take(&mut new), sub);
    keep_system_meta(&old_view, &mut new);
    commit(st, def, Some(&old), new, sub, opts, false, Vec::new())
}

fn decode_patch_body(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Parses an apply body (YAML or JSON).
pub fn decode_yaml_or_json(body: &[u8]) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let y: serde_yaml::Value = serde_yaml::from_slice(body).map_err(|e| e.to_string())?;
    serde_json::to_value(y).map_err(|e| e.to_string())
}

#[allow(clippy::too_many_arguments)]
pub fn patch(
    st: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    sub: Sub,
    ptype: PatchType,
    body: &[u8],
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    if ptype == PatchType::Apply {
        if opts.field_manager.as_deref().is_none_or(|m| m.is_empty()) {
            return Err(ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                &[FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
    } else if opts.force.is_some() {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    if ptype == PatchType::Strategic && !def.builtin {
        return Err(ApiError::unsupported_media_type(
            patch::STRATEGIC_PATCH,
            &[
                patch::JSON_PATCH,
                patch::MERGE_PATCH,
                patch::APPLY_PATCH,
                patch::APPLY_PATCH_CBOR,
            ],
        ));
    }
    if sub == Sub::Scale {
        return scale_write(
            st,
            def,
            ns,
            name,
            ScaleInput::Patch(ptype, body.to_vec()),
            opts,
        );
    }
    let ns_k = ns_key(def, ns);
    let old = st.get(&def.storage, &ns_k, name);
    if ptype == PatchType::Apply {
        return apply_patch(st, def, ns, name, sub, body, opts, old);
    }
    let Some(old) = old else {
        return Err(ApiError::not_found(&def.gr(), name));
    };
    let old_view = present(def, &old);
    let patched = match ptype {
        PatchType::Merge => {
            let p = decode_patch_body(body)?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: merge patch must be a JSON object",
                ));
            }
            patch::merge_patch(&old_view, &p)
        }
        PatchType::Json => match jsonpatch::apply(&old_view, body) {
            Ok(v) => v,
            Err(jsonpatch::JsonPatchError::Decode(e)) => return Err(ApiError::bad_request(e)),
            Err(jsonpatch::JsonPatchError::Apply(e)) => {
                return Err(ApiError::new(422, "Invalid", e))
            }
        },
        PatchType::Strategic => {
            let p = decode_patch_body(body)?;
            strategic::apply(&old_view, &p, schema_of(def).node())
                .map_err(|e| ApiError::new(422, "Invalid", e))?
        }
        PatchType::Apply => unreachable!("handled above"),
    };
    if !patched.is_object() {
        return Err(ApiError::bad_request(
            "the patched object is not a JSON object",
        ));
    }
    // A patch may carry a resourceVersion precondition.
    if let Some(rv) = meta::resource_version(&patched) {
        if Some(rv) != meta::resource_version(&old) {
            return Err(ApiError::stale(&def.gr(), name));
        }
    }
    if meta::name(&patched) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta::name(&patched)
        )));
    }
    let mut new = restrict_to_sub(def, &old_view, patched, sub);
    new["apiVersion"] = json!(def.api_version());
    new["kind"] = json!(def.kind);
    keep_system_meta(&old_view, &mut new);
    commit(st, def, Some(&old), new, sub, opts, false, Vec::new())
}

#[allow(clippy::too_many_arguments)]
fn apply_patch(
    st: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    sub: Sub,
    body: &[u8],
    opts: &WriteOpts,
    old: Option<Arc<Value>>,
) -> ApiResult<Outcome> {
    let applied = decode_yaml_or_json(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    }
    let av = applied
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let kind = applied.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    if av.is_empty() || kind.is_empty() {
        let what = if kind.is_empty() { "Kind" } else { "Version" };
        return Err(ApiError::bad_request(format!(
            "Object '{what}' is missing in '{}'",
            serde_json::to_string(&applied).unwrap_or_default()
        )));
    }
    check_type_meta(def, &applied)?;
    let an = meta::name(&applied);
    if !an.is_empty() && an != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({an}) does not match the name on the URL ({name})"
        )));
    }
    if def.namespaced {
        let bns = meta::namespace(&applied);
        if !bns.is_empty() && Some(bns) != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let manager = opts.manager();
    let force = opts.force.unwrap_or(false);
    let schema = schema_of(def);
    let scope = scope_of(def, sub);
    let mut applied_clean = applied.clone();
    clear_system_meta(&mut applied_clean);
    meta::metadata_mut(&mut applied_clean).remove("managedFields");
    match old {
        None => {
            if sub != Sub::Main {
                return Err(ApiError::not_found(&def.gr(), name));
            }
            let mut base = json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": {"name": name}});
            if def.namespaced {
                base["metadata"]["namespace"] = json!(ns.unwrap_or(""));
            }
            let merged = managed::apply(
                &base,
                &applied_clean,
                &manager,
                "",
                &def.api_version(),
                force,
                scope,
                schema.node(),
            )
            .map_err(|c| conflict_error(def, name, &c))?;
            let mut new = prepare_new(st, def, ns, merged)?;
            let mf = meta::metadata(&new)
                .and_then(|m| m.get("managedFields"))
                .cloned();
            let ns_k = ns_key(def, Some(meta::namespace(&new)));
            check_namespace(st, def, &ns_k, true)?;
            {
                let md = meta::metadata_mut(&mut new);
                md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                md.insert("creationTimestamp".into(), json!(now_time()));
                if let Some(mf) = mf {
                    md.insert("managedFields".into(), mf);
                }
            }
            commit(st, def, None, new, Sub::Main, opts, true, Vec::new())
        }
        Some(old) => {
            let old_view = present(def, &old);
            if let Some(rv) = meta::resource_version(&applied) {
                if Some(rv) != meta::resource_version(&old) {
                    return Err(ApiError::stale(&def.gr(), name));
                }
            }
            let merged = managed::apply(
                &old_view,
                &applied_clean,
                &manager,
                sub.name(),
                &def.api_version(),
                force,
                scope,
                schema.node(),
            )
            .map_err(|c| conflict_error(def, name, &c))?;
            let mut new = restrict_to_sub(def, &old_view, merged, sub);
            keep_system_meta(&old_view, &mut new);
            commit(st, def, Some(&old), new, sub, opts, true, Vec::new())
        }
    }
}

fn conflict_error(def: &ResourceDef, name: &str, c: &[managed::Conflict]) -> ApiError {
    let mut details =
        json!({"name": name, "kind": def.plural, "causes": managed::conflict_causes(c)});
    if !def.group.is_empty() {
        details["group"] = json!(def.group);
    }
    ApiError::new(409, "Conflict", managed::conflict_message(c)).with_details(details)
}

enum ScaleInput {
    Put(Value),
    Patch(PatchType, Vec<u8>),
}

fn scale_paths(def: &ResourceDef) -> (String, String, Option<String>) {
    match def.crd.as_ref().and_then(|c| c.scale.clone()) {
        Some(s) => (
            s.spec_replicas.trim_start_matches('.').to_string(),
            s.status_replicas.trim_start_matches('.').to_string(),
            s.label_selector
                .map(|l| l.trim_start_matches('.').to_string()),
        ),
        None => ("spec.replicas".into(), "status.replicas".into(), None),
    }
}

fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(|m| m.as_object()) {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(ex) = sel.get("matchExpressions").and_then(|m| m.as_array()) {
        for e in ex {
            let key = e.get("key").and_then(|k| k.as_str()).unwrap_or("");
            let vals: Vec<&str> = e
                .get("values")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(|o| o.as_str()).unwrap_or("") {
                "In" => parts.push(format!("{key} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.sort();
    parts.join(",")
}

/// The autoscaling/v1 Scale view of an object.
pub fn scale_of(def: &ResourceDef, obj: &Value) -> Value {
    let (spec_p, status_p, sel_p) = scale_paths(def);
    let md = meta::metadata(obj).cloned().unwrap_or_default();
    let mut smd = Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = md.get(k) {
            smd.insert(k.into(), v.clone());
        }
    }
    let selector = match sel_p {
        Some(p) => meta::get_path(obj, &p)
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_string(),
        None => meta::get_path(obj, "spec.selector")
            .map(selector_string)
            .unwrap_or_default(),
    };
    let mut status =
        json!({"replicas": meta::get_path(obj, &status_p).and_then(|r| r.as_i64()).unwrap_or(0)});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": smd,
        "spec": {"replicas": meta::get_path(obj, &spec_p).and_then(|r| r.as_i64()).unwrap_or(0)},
        "status": status,
    })
}

fn set_path(obj: &mut Value, path: &str, v: Value) {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let mut cur = obj;
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().expect("object");
        if i + 1 == parts.len() {
            m.insert(p.to_string(), v);
            return;
        }
        cur = m.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

fn scale_write(
    st: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    input: ScaleInput,
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    let ns_k = ns_key(def, ns);
    let old = st
        .get(&def.storage, &ns_k, name)
        .ok_or_else(|| ApiError::not_found(&def.gr(), name))?;
    let old_view = present(def, &old);
    let cur_scale = scale_of(def, &old_view);
    let new_scale = match input {
        ScaleInput::Put(v) => v,
        ScaleInput::Patch(PatchType::Merge, b) => {
            patch::merge_patch(&cur_scale, &decode_patch_body(&b)?)
        }
        ScaleInput::Patch(PatchType::Json, b) => match jsonpatch::apply(&cur_scale, &b) {
            Ok(v) => v,
            Err(jsonpatch::JsonPatchError::Decode(e)) => return Err(ApiError::bad_request(e)),
            Err(jsonpatch::JsonPatchError::Apply(e)) => {
                return Err(ApiError::new(422, "Invalid", e))
            }
        },
        ScaleInput::Patch(PatchType::Strategic, b) => {
            let p = decode_patch_body(&b)?;
            strategic::apply(
                &cur_scale,
                &p,
                Schema::builtin("io.k8s.api.autoscaling.v1.Scale").node(),
            )
            .map_err(|e| ApiError::new(422, "Invalid", e))?
        }
        ScaleInput::Patch(PatchType::Apply, b) => {
            let a = decode_yaml_or_json(&b).map_err(ApiError::bad_request)?;
            patch::merge_patch(&cur_scale, &a)
        }
    };
    if let Some(rv) = meta::resource_version(&new_scale) {
        if Some(rv) != meta::resource_version(&old) {
            return Err(ApiError::stale(&def.gr(), name));
        }
    }
    let replicas = meta::get_path(&new_scale, "spec.replicas")
        .cloned()
        .unwrap_or(json!(0));
    if replicas.as_i64().is_none_or(|r| r < 0) {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            name,
            &[FieldError::invalid(
                "spec.replicas",
                replicas.clone(),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let (spec_p, _, _) = scale_paths(def);
    let mut new = old_view.clone();
    set_path(&mut new, &spec_p, replicas);
    let out = commit(
        st,
        def,
        Some(&old),
        new,
        Sub::Scale,
        opts,
        false,
        Vec::new(),
    )?;
    Ok(Outcome {
        code: 200,
        body: scale_of(def, &out.body),
        warnings: out.warnings,
    })
}

/// Pods bound to a node are deleted gracefully: the kubelet finishes the deletion.
fn graceful_period(def: &ResourceDef, obj: &Value, opts: &DeleteOpts) -> i64 {
    if !(def.builtin && def.kind == "Pod") {
        return 0;
    }
    let bound = meta::get_path(obj, "spec.nodeName")
        .and_then(|n| n.as_str())
        .is_some_and(|n| !n.is_empty());
    let phase = meta::get_path(obj, "status.phase")
        .and_then(|p| p.as_str())
        .unwrap_or("");
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    opts.grace_period
        .unwrap_or_else(|| {
            meta::get_path(obj, "spec.terminationGracePeriodSeconds")
                .and_then(|g| g.as_i64())
                .unwrap_or(30)
        })
        .max(0)
}

pub fn delete(
    st: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOpts,
) -> ApiResult<Outcome> {
    let ns_k = ns_key(def, ns);
    let old = st
        .get(&def.storage, &ns_k, name)
        .ok_or_else(|| ApiError::not_found(&def.gr(), name))?;
    if let Some(uid) = &opts.uid {
        let actual = meta::uid(&old).unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict(
                &def.gr(),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            ));
        }
    }
    if let Some(rv) = &opts.resource_version {
        let actual = meta::resource_version(&old).unwrap_or("");
        if rv != actual {
            return Err(ApiError::conflict(
                &def.gr(),
                name,
                &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"),
            ));
        }
    }
    let mut obj = (*old).clone();
    let mut fins = meta::finalizers(&obj);
    match opts.propagation.as_deref() {
        Some("Foreground") => {
            fins.retain(|f| f != "orphan");
            if !fins.iter().any(|f| f == "foregroundDeletion") {
                fins.push("foregroundDeletion".into());
            }
        }
        Some("Orphan") => {
            fins.retain(|f| f != "foregroundDeletion");
            if !fins.iter().any(|f| f == "orphan") {
                fins.push("orphan".into());
            }
        }
        Some("Background") | None => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                &[FieldError::new(
                    crate::kube::error::FieldErrorType::NotSupported(vec![
                        "Foreground".into(),
                        "Background".into(),
                        "Orphan".into(),
                    ]),
                    "propagationPolicy",
                    Some(json!(other)),
                    "",
                )],
            ));
        }
    }
    let grace = graceful_period(def, &obj, opts);
    let spec_fins = blocked_by_spec_finalizers(def, &obj);
    let deleting = meta::deletion_timestamp(&obj).is_some();
    if fins.is_empty() && grace == 0 && !spec_fins {
        if opts.dry_run {
            return Ok(Outcome {
                code: 200,
                body: present(def, &old),
                warnings: Vec::new(),
            });
        }
        let gone = st.remove(&def.storage, &ns_k, name).expect("present");
        after_remove(st, def, &gone);
        let mut details =
            json!({"name": name, "kind": def.plural, "uid": meta::uid(&gone).unwrap_or("")});
        if !def.group.is_empty() {
            details["group"] = json!(def.group);
        }
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details});
        return Ok(Outcome {
            code: 200,
            body,
            warnings: Vec::new(),
        });
    }
    // Deletion is pending: finalizers, graceful pod termination, or namespace cleanup.
    if !deleting {
        let md = meta::metadata_mut(&mut obj);
        let ts = chrono::Utc::now() + chrono::Duration::seconds(grace);
        md.insert(
            "deletionTimestamp".into(),
            json!(ts.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        md.insert("deletionGracePeriodSeconds".into(), json!(grace));
        let g = meta::generation(&obj);
        if g > 0 {
            meta::metadata_mut(&mut obj).insert("generation".into(), json!(g + 1));
        }
        if def.builtin && def.kind == "Namespace" {
            obj["status"]["phase"] = json!("Terminating");
        }
    }
    meta::set_finalizers(&mut obj, &fins);
    if !opts.dry_run {
        st.pending
            .insert((def.storage.clone(), ns_k.clone(), name.to_string()));
    }
    if same_content(&obj, &old) || opts.dry_run {
        return Ok(Outcome {
            code: 200,
            body: present(def, &obj),
            warnings: Vec::new(),
        });
    }
    let saved = st.put(&def.storage, obj);
    Ok(Outcome {
        code: 200,
        body: present(def, &saved),
        warnings: Vec::new(),
    })
}
