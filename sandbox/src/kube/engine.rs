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

mod delete;
mod hooks;
mod scale;
mod validate;

pub use delete::delete;
use hooks::hooks;
pub use scale::scale_of;
use scale::{scale_write, ScaleInput};
use validate::{
    apply_defaults, check_finalizers_while_deleting, check_namespace, check_type_meta,
    handle_unknown_fields, validate,
};

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
    /// The authenticated caller when authorization is on: writes run the checks that need the
    /// object ([`crate::kube::auth::admission`]).
    pub user: Option<Arc<crate::kube::auth::UserInfo>>,
}

impl Default for WriteOpts {
    fn default() -> Self {
        WriteOpts {
            dry_run: false,
            field_manager: None,
            user_agent: String::new(),
            validation: FieldValidation::Warn,
            force: None,
            user: None,
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
            let keep_status = hooks(def).keeps_status_on_create;
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

pub const CRD_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Who records a write's managedFields.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fields {
    /// A create, update or non-apply patch: [`commit`] records the manager's fields.
    Update,
    /// A server-side apply, which recorded them itself.
    Applied,
}

/// Commits a prepared object (create when `old` is None) and returns the served result.
fn commit(
    st: &mut State,
    def: &ResourceDef,
    old: Option<&Arc<Value>>,
    mut new: Value,
    sub: Sub,
    opts: &WriteOpts,
    fields: Fields,
) -> ApiResult<Outcome> {
    let mut warnings = Vec::new();
    let creating = old.is_none();
    let old_view = old.map(|o| present(def, o));
    apply_defaults(def, &mut new);
    warnings.extend(handle_unknown_fields(def, &mut new, opts.validation)?);
    if let Some(on_write) = hooks(def).on_write {
        on_write(st, old_view.as_ref(), &mut new);
    }
    validate(def, &new, old_view.as_ref(), creating)?;
    if let Some(user) = &opts.user {
        let mut made = Vec::new();
        let res =
            crate::kube::auth::admission::check(st, user, def, old_view.as_ref(), &new, &mut made);
        st.admission_checks
            .extend(made.into_iter().map(|(a, ok)| (user.name.clone(), a, ok)));
        res?;
    }
    if let Some(o) = &old_view {
        check_finalizers_while_deleting(def, o, &new)?;
        // Only the main resource's strategy bumps the generation.
        if sub == Sub::Main {
            bump_generation(def, o, &mut new);
        }
    } else if def.generation != Generation::None {
        meta::metadata_mut(&mut new).insert("generation".into(), json!(1));
    }
    if fields == Fields::Update {
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
    hooks(def).namespace_lifecycle
        && meta::get_path(obj, "spec.finalizers")
            .and_then(|f| f.as_array())
            .is_some_and(|a| !a.is_empty())
}

/// Registry changes after a write.
fn after_write(st: &mut State, def: &ResourceDef, saved: &Value) {
    if let Some(f) = hooks(def).after_write {
        f(st, saved);
    }
}

/// Cleanup after an object is gone for good.
pub fn after_remove(st: &mut State, def: &ResourceDef, gone: &Value) {
    if let Some(f) = hooks(def).after_remove {
        f(st, gone);
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
    commit(st, def, None, new, Sub::Main, opts, Fields::Update)
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
            // The Deployment and ReplicaSet status strategies reset only spec (and labels):
            // their controllers write the revision annotation through /status.
            if def.builtin
                && def.group == "apps"
                && matches!(def.kind.as_str(), "Deployment" | "ReplicaSet")
            {
                match meta::metadata(&new)
                    .and_then(|m| m.get("annotations"))
                    .cloned()
                {
                    Some(a) => {
                        meta::metadata_mut(&mut out).insert("annotations".into(), a);
                    }
                    None => {
                        meta::metadata_mut(&mut out).remove("annotations");
                    }
                }
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
    hooks(def).create_on_update
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
    commit(st, def, Some(&old), new, sub, opts, Fields::Update)
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
    commit(st, def, Some(&old), new, sub, opts, Fields::Update)
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
            commit(st, def, None, new, Sub::Main, opts, Fields::Applied)
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
            commit(st, def, Some(&old), new, sub, opts, Fields::Applied)
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
