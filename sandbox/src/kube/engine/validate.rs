//! Checks a write must pass: type metadata, the namespace, unknown fields, defaults, schema
//! and CEL validation, metadata rules, finalizers while deleting.

use super::*;

pub(super) fn check_type_meta(def: &ResourceDef, body: &Value) -> ApiResult<()> {
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

pub(super) fn check_namespace(
    st: &State,
    def: &ResourceDef,
    ns: &str,
    creating: bool,
) -> ApiResult<()> {
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

/// Unknown-field handling for fieldValidation; returns warnings.
pub(super) fn handle_unknown_fields(
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

pub(super) fn apply_defaults(def: &ResourceDef, obj: &mut Value) {
    if def.builtin {
        builtin::apply_defaults(&def.group, &def.kind, obj);
    } else if let Some(info) = &def.crd {
        if info.has_schema {
            structural::apply_defaults(obj, info.schema.node());
        }
    }
}

pub(super) fn validate(
    def: &ResourceDef,
    obj: &Value,
    old: Option<&Value>,
    creating: bool,
) -> ApiResult<()> {
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
        if let Some(extra) = hooks(def).validate {
            errs.extend(extra(obj));
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

pub(super) fn check_finalizers_while_deleting(
    def: &ResourceDef,
    old: &Value,
    new: &Value,
) -> ApiResult<()> {
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
