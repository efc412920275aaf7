//! Before a rotation creates anything at Twilio, the operator asks the API server whether it
//! may do every write the rotation will need (SelfSubjectAccessReview, which every
//! authenticated user may create). A missing permission found here costs nothing: no token is
//! created, so none can be stranded when the write that needs it is refused half-way. Without
//! this, a 403 on the staging Secret would come after the create call, and every retry would
//! create (and clean up) another secondary.
//!
//! A granted permission is remembered for [`GRANT_TTL`]: rotations of one namespace due at
//! once (a schedule, a burst) ask the same questions, and an answer seconds old is as good as
//! one taken just before the API server changed its mind. A refusal is never remembered (the
//! fix acts at once), and any 403 mid-step forgets every grant, so a retry asks again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::subject::Subject;
use super::Context;
use crate::api::{RestartPolicy, UnmanagedPods, WorkloadKind};
use crate::rotation::{Failure, FailureClass};
use crate::workloads;

/// One permission: a verb on a resource in a namespace (in every one when it is empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub namespace: String,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resource = match self.group {
            "" => self.resource.to_string(),
            g => format!("{}.{g}", self.resource),
        };
        match self.namespace.as_str() {
            "" => write!(f, "{} {resource} across the cluster", self.verb),
            ns => write!(f, "{} {resource} in {ns:?}", self.verb),
        }
    }
}

fn secrets(verbs: &[&'static str], namespace: &str, out: &mut BTreeSet<Need>) {
    for verb in verbs {
        out.insert(Need {
            verb,
            group: "",
            resource: "secrets",
            namespace: namespace.to_owned(),
        });
    }
}

fn workload_resource(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "deployments",
        WorkloadKind::StatefulSet => "statefulsets",
        WorkloadKind::DaemonSet => "daemonsets",
    }
}

/// What a rotation of `tr` writes: the staging and credentials Secrets in its home namespace
/// (server-side apply creates missing ones), the target Secrets, and the pod templates of the
/// dependent workloads it restarts.
pub async fn needs(ctx: &Context, tr: &Subject) -> Result<BTreeSet<Need>, kube::Error> {
    let mut out = BTreeSet::new();
    // list: the copy check before promotion reads every Secret where the rotation writes.
    secrets(
        &["get", "list", "create", "patch", "delete"],
        &tr.home,
        &mut out,
    );
    let pod_lists = super::pods::pod_lists(tr);
    for ns in &tr.targets {
        secrets(&["get", "list", "create", "patch"], ns, &mut out);
        // The Pod-level barrier lists the consumer pods and finds their owners.
        out.insert(Need {
            verb: "list",
            group: "",
            resource: "pods",
            namespace: match pod_lists {
                super::pods::PodLists::PerNamespace => ns.clone(),
                // An empty namespace asks for all of them.
                super::pods::PodLists::ClusterWide => String::new(),
            },
        });
        out.insert(Need {
            verb: "get",
            group: "apps",
            resource: "replicasets",
            namespace: ns.clone(),
        });
        if tr.spec.workloads.as_ref().map(|w| w.unmanaged_pods) == Some(UnmanagedPods::Delete) {
            out.insert(Need {
                verb: "delete",
                group: "",
                resource: "pods",
                namespace: ns.clone(),
            });
        }
    }
    let restarts = tr
        .spec
        .workloads
        .as_ref()
        .is_none_or(|w| w.restart != RestartPolicy::Never);
    if restarts {
        let names: BTreeSet<String> = tr.spec.secrets.iter().map(|s| s.name.clone()).collect();
        let covered: BTreeSet<String> = tr.targets.iter().cloned().collect();
        for (ns, all) in ctx.workloads.list_in(&ctx.client, &covered).await? {
            let (deps, _) = workloads::dependents(tr.spec.workloads.as_ref(), &names, &all);
            for w in deps {
                out.insert(Need {
                    verb: "patch",
                    group: "apps",
                    resource: workload_resource(w.kind),
                    namespace: ns.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// How long a granted permission is taken as still granted.
pub const GRANT_TTL: Duration = Duration::from_secs(10);

/// Permissions granted recently (see the module comment).
#[derive(Default)]
pub struct Grants(Mutex<BTreeMap<Need, Instant>>);

impl Grants {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Need, Instant>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, need: &Need, now: Instant) -> bool {
        self.lock()
            .get(need)
            .is_some_and(|at| now.duration_since(*at) < GRANT_TTL)
    }

    fn granted(&self, need: &Need, now: Instant) {
        let mut map = self.lock();
        map.retain(|_, at| now.duration_since(*at) < GRANT_TTL);
        map.insert(need.clone(), now);
    }

    /// The API server refused a request: what it granted before no longer counts.
    pub fn forget(&self) {
        self.lock().clear();
    }
}

/// Whether the API server says (or said within [`GRANT_TTL`]) the operator may; None when it
/// could not answer (then the write itself will tell).
async fn allowed(ctx: &Context, need: &Need) -> Option<bool> {
    if ctx.grants.fresh(need, Instant::now()) {
        return Some(true);
    }
    let answer = review(ctx, need).await;
    if answer == Some(true) {
        ctx.grants.granted(need, Instant::now());
    }
    answer
}

/// One SelfSubjectAccessReview.
async fn review(ctx: &Context, need: &Need) -> Option<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(need.verb.to_owned()),
                group: Some(need.group.to_owned()),
                resource: Some(need.resource.to_owned()),
                namespace: Some(need.namespace.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => r.status.map(|s| s.allowed),
        Err(e) => {
            tracing::debug!(error = %crate::kube_errors::describe(&e), "SelfSubjectAccessReview failed; the write will tell");
            None
        }
    }
}

/// Fails with [`FailureClass::MissingPermissions`], naming each one, when the operator lacks
/// any permission the rotation needs.
pub async fn preflight(ctx: &Context, tr: &Subject) -> Result<(), Failure> {
    let needs = needs(ctx, tr).await.map_err(|e| Failure {
        class: FailureClass::Kubernetes,
        message: format!(
            "listing the workloads to restart: {}",
            crate::kube_errors::describe(&e)
        ),
    })?;
    let answers = futures::future::join_all(needs.iter().map(|n| allowed(ctx, n))).await;
    let missing: Vec<String> = needs
        .iter()
        .zip(answers)
        .filter(|(_, a)| *a == Some(false))
        .map(|(n, _)| n.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure {
        class: FailureClass::MissingPermissions,
        message: format!(
            "the operator may not {} (nothing was created)",
            missing.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(namespace: &str) -> Need {
        Need {
            verb: "patch",
            group: "",
            resource: "secrets",
            namespace: namespace.to_owned(),
        }
    }

    #[test]
    fn a_grant_counts_for_its_ttl_and_a_refusal_forgets_every_grant() {
        let grants = Grants::default();
        let t0 = Instant::now();
        assert!(!grants.fresh(&need("shop"), t0));
        grants.granted(&need("shop"), t0);
        assert!(grants.fresh(&need("shop"), t0 + GRANT_TTL / 2));
        assert!(!grants.fresh(&need("shop"), t0 + GRANT_TTL));
        assert!(!grants.fresh(&need("billing"), t0));
        grants.granted(&need("billing"), t0);
        grants.forget();
        assert!(!grants.fresh(&need("billing"), t0));
        // Expired grants do not pile up.
        grants.granted(&need("shop"), t0);
        grants.granted(&need("billing"), t0 + GRANT_TTL);
        assert_eq!(grants.lock().len(), 1);
    }
}
