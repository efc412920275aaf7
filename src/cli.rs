//! The `rotate`, `abort` and `status` subcommands, for TokenRotations and ClusterTokenRotations
//! alike: thin Kubernetes calls around pure checks and a pure table renderer. They only set the
//! annotations the controller already honours, so anything that can patch the resource
//! (kubectl, a GitOps tool) can do the same.

use crate::api::{Phase, ABORT_ANNOTATION, ROTATE_NOW_ANNOTATION};
use crate::controller::subject::Rotated;
use crate::time::from_k8s;
use chrono::{DateTime, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;

/// Field manager of the CLI's annotation patches (distinct from the controller's).
pub const CLI_FIELD_MANAGER: &str = "token-rotator-cli";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Every `String` naming a resource reads like kubectl's `tokenrotation shop/twilio` or
    /// `clustertokenrotation shared`.
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} is suspended (spec.suspend: true): set it to false to rotate")]
    Suspended(String),
    #[error(
        "{name} is already rotating (rotation {id}, phase {phase}); wait for it to finish, or abort it"
    )]
    InFlight {
        name: String,
        id: String,
        phase: String,
    },
    #[error("{0} has no rotation in flight: nothing to abort")]
    NothingToAbort(String),
    #[error(
        "{name} is past promotion (phase {phase}): the old token no longer works, so there is nothing to roll back to; the rotation will complete"
    )]
    PastPromotion { name: String, phase: String },
    #[error("{0} changed while it was being checked: run the command again")]
    Changed(String),
    #[error("Kubernetes API request failed: {}{}", crate::kube_errors::describe(.0), forbidden_hint(.0))]
    Kube(#[from] kube::Error),
    #[error("cannot list {plural}: {}. {}", crate::kube_errors::describe(.source), crate::kube_errors::INSTALL_CRDS)]
    CrdMissing { plural: String, source: kube::Error },
    #[error("{0:?} is not a resource name: write NAME or tr/NAME for a TokenRotation, ctr/NAME for a ClusterTokenRotation")]
    BadTarget(String),
}

/// What to ask for when the API server refused the user.
fn forbidden_hint(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            ". rotate and abort need patch on the resource: the edit role in the namespace (the Helm chart aggregates token-rotator-edit into it), or cluster-wide rights for a ClusterTokenRotation"
        }
        _ => "",
    }
}

/// What a command addresses, written like kubectl's `TYPE/NAME`: `NAME` or `tr/NAME` is a
/// TokenRotation, `ctr/NAME` a ClusterTokenRotation (the long and plural names work too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    TokenRotation(String),
    ClusterTokenRotation(String),
}

impl Target {
    pub fn parse(s: &str) -> Result<Self, CliError> {
        let bad = || CliError::BadTarget(s.to_owned());
        let (kind, name) = match s.split_once('/') {
            Some((kind, name)) => (Some(kind), name),
            None => (None, s),
        };
        if name.is_empty() || name.contains('/') {
            return Err(bad());
        }
        match kind.map(str::to_ascii_lowercase).as_deref() {
            None | Some("tr" | "tokenrotation" | "tokenrotations") => {
                Ok(Self::TokenRotation(name.to_owned()))
            }
            Some("ctr" | "clustertokenrotation" | "clustertokenrotations") => {
                Ok(Self::ClusterTokenRotation(name.to_owned()))
            }
            Some(_) => Err(bad()),
        }
    }
}

/// `tokenrotation shop/twilio`, `clustertokenrotation shared`.
pub fn display_name<K: Rotated>(obj: &K) -> String {
    let kind = K::kind(&()).to_ascii_lowercase();
    match obj.namespace() {
        Some(ns) => format!("{kind} {ns}/{}", obj.name_any()),
        None => format!("{kind} {}", obj.name_any()),
    }
}

/// Whether `rotate` may start a rotation now.
pub fn check_rotate<K: Rotated>(tr: &K) -> Result<(), CliError> {
    let name = display_name(tr);
    if tr.rotation_spec().suspend {
        return Err(CliError::Suspended(name));
    }
    let status = tr.rotation_status().cloned().unwrap_or_default();
    match status.rotation {
        Some(r) => Err(CliError::InFlight {
            name,
            id: r.id,
            phase: phase_str(status.phase).to_owned(),
        }),
        None => Ok(()),
    }
}

/// Whether `abort` can still roll the rotation back (only before promotion).
pub fn check_abort<K: Rotated>(tr: &K) -> Result<(), CliError> {
    let name = display_name(tr);
    let status = tr.rotation_status().cloned().unwrap_or_default();
    let Some(rotation) = status.rotation else {
        return Err(CliError::NothingToAbort(name));
    };
    let promoted = rotation.promoted_time.is_some()
        || matches!(status.phase, Some(Phase::Promoting | Phase::Retiring));
    if promoted {
        return Err(CliError::PastPromotion {
            name,
            phase: phase_str(status.phase).to_owned(),
        });
    }
    Ok(())
}

fn phase_str(p: Option<Phase>) -> &'static str {
    p.map(|p| p.as_str()).unwrap_or("Pending")
}

async fn get<K: Rotated>(api: &Api<K>, ns: Option<&str>, name: &str) -> Result<K, CliError> {
    api.get_opt(name).await?.ok_or_else(|| {
        let kind = K::kind(&()).to_ascii_lowercase();
        CliError::NotFound(match ns {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        })
    })
}

/// What `rotate` and `abort` ask of the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Rotate,
    Abort,
}

impl Request {
    fn annotation(self) -> &'static str {
        match self {
            Request::Rotate => ROTATE_NOW_ANNOTATION,
            Request::Abort => ABORT_ANNOTATION,
        }
    }

    fn check<K: Rotated>(self, tr: &K) -> Result<(), CliError> {
        match self {
            Request::Rotate => check_rotate(tr),
            Request::Abort => check_abort(tr),
        }
    }
}

/// Checks the resource, then sets the request's annotation to a fresh timestamp (any new value
/// is one request); returns the value written. The patch carries the resourceVersion that was
/// checked, so if the rotation moved on in between the API server refuses it (409) instead of
/// acting on a stale check.
pub async fn request<K: Rotated>(
    client: kube::Client,
    ns: Option<&str>,
    name: &str,
    request: Request,
) -> Result<String, CliError> {
    let ns = ns.filter(|_| K::NAMESPACED);
    let api = K::api_for(&client, ns);
    let tr: K = get(&api, ns, name).await?;
    request.check(&tr)?;
    let value = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": tr.resource_version(), "annotations": {request.annotation(): &value}}
    });
    let params = PatchParams {
        field_manager: Some(CLI_FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.patch(name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(value),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(CliError::Changed(display_name(&tr))),
        Err(e) => Err(e.into()),
    }
}

/// Lists resources of kind `K` (one, a namespace's, or all) for [`status_table`].
pub async fn list<K: Rotated>(
    client: kube::Client,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<K>, CliError> {
    let ns = ns.filter(|_| K::NAMESPACED);
    let api = K::listing(&client, ns);
    match name {
        Some(name) => Ok(vec![get(&api, ns, name).await?]),
        None => {
            let mut items = match api.list(&Default::default()).await {
                Ok(l) => l.items,
                Err(e) if crate::kube_errors::resource_missing(&e) => {
                    return Err(CliError::CrdMissing {
                        plural: K::plural(&()).into_owned(),
                        source: e,
                    })
                }
                Err(e) => return Err(e.into()),
            };
            items.sort_by_key(|t| (t.namespace(), t.name_any()));
            Ok(items)
        }
    }
}

/// `5s`, `3m`, `2h`, `4d`, like kubectl's ages (largest unit only).
pub fn short_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().abs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A `kubectl get`-style table: phase, workload rollout progress, last and next rotation.
pub fn status_table<K: Rotated>(items: &[K], now: DateTime<Utc>, with_namespace: bool) -> String {
    let mut rows: Vec<Vec<String>> = vec![];
    let mut header = vec![
        "NAME",
        "PHASE",
        "WORKLOADS",
        "LAST ROTATION",
        "NEXT ROTATION",
        "MESSAGE",
    ];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    rows.push(header.into_iter().map(str::to_owned).collect());
    for tr in items {
        let status = tr.rotation_status().cloned().unwrap_or_default();
        let workloads = match &status.rotation {
            Some(r) if r.workloads_total > 0 => {
                format!("{}/{}", r.workloads_done, r.workloads_total)
            }
            Some(r) if !r.workloads.is_empty() => {
                let done = r.workloads.iter().filter(|w| w.done).count();
                format!("{done}/{}", r.workloads.len())
            }
            _ => "-".into(),
        };
        let last = status
            .last_rotation_time
            .as_ref()
            .map(|t| format!("{} ago", short_duration(now - from_k8s(t))))
            .unwrap_or_else(|| "never".into());
        let next = if tr.rotation_spec().suspend {
            "suspended".into()
        } else {
            match status.next_rotation_time.as_ref().map(from_k8s) {
                Some(t) if t > now => format!("in {}", short_duration(t - now)),
                Some(_) => "due".into(),
                None => "-".into(),
            }
        };
        let mut row = vec![
            tr.name_any(),
            phase_str(status.phase).to_owned(),
            workloads,
            last,
            next,
            status.message.unwrap_or_default(),
        ];
        if with_namespace {
            row.insert(0, tr.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    render(&rows)
}

/// The rotations of one resource that ended, newest first (`status NAME`).
pub fn history_table<K: Rotated>(tr: &K, now: DateTime<Utc>) -> String {
    let history = tr
        .rotation_status()
        .map(|s| s.history.as_slice())
        .unwrap_or_default();
    if history.is_empty() {
        return "No rotation has ended yet.\n".to_owned();
    }
    let mut rows: Vec<Vec<String>> = vec![[
        "ROTATION", "TRIGGER", "STARTED", "TOOK", "RESULT", "REASON", "KEY",
    ]
    .map(str::to_owned)
    .to_vec()];
    for h in history {
        let (start, end) = (from_k8s(&h.start_time), from_k8s(&h.end_time));
        rows.push(vec![
            h.id.clone(),
            format!("{:?}", h.trigger),
            format!("{} ago", short_duration(now - start)),
            short_duration(end - start),
            format!("{:?}", h.result),
            h.reason.clone().unwrap_or_else(|| "-".into()),
            h.key_sid.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    render(&rows)
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

/// The objects as kubectl prints them with `-o json|yaml`: one object alone, several as a
/// `List`.
pub fn render_objects(objects: Vec<serde_json::Value>, output: Output) -> Result<String, String> {
    let doc = match <[serde_json::Value; 1]>::try_from(objects) {
        Ok([one]) => one,
        Err(items) => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
    };
    match output {
        Output::Json => serde_json::to_string_pretty(&doc)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Output::Yaml => serde_yaml::to_string(&doc).map_err(|e| e.to_string()),
        Output::Table => Err("a table is not an object format".into()),
    }
}

/// Left-aligned columns separated by three spaces, like kubectl; the last column is not padded.
fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
