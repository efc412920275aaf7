//! Deletion: finalizers, graceful pod termination, namespace cleanup.

use super::*;

/// Pods bound to a node are deleted gracefully: the kubelet finishes the deletion.
fn graceful_period(def: &ResourceDef, obj: &Value, opts: &DeleteOpts) -> i64 {
    if !hooks(def).graceful_delete {
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
        if hooks(def).namespace_lifecycle {
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
