//! Argo Rollouts (`argoproj.io/v1alpha1 Rollout`), as far as a credential rotation meets them:
//! the Rollout's ReplicaSets and pods roll like a Deployment's (a canary's `maxSurge` and
//! `maxUnavailable`, default 25% each; blue-green as a full surge), `spec.restartAt` replaces
//! the pods started before it one at a time, and a canary `pause` step holds a new template:
//! `pause: {}` until promoted (`status.pauseConditions` cleared, as `kubectl argo rollouts
//! promote` does), `pause: {duration: 30s}` for that long. Status carries the fields the Argo
//! controller sets: `phase`, `replicas`, `updatedReplicas`, `readyReplicas`,
//! `availableReplicas`, `currentPodHash`, `stableRS`, `restartedAt`, `pauseConditions`,
//! `observedGeneration` (a string, as Argo writes it) and `conditions`. Setting traffic weights,
//! analysis and experiments are not simulated: the steps before and after a pause roll at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use kube::api::{ApiResource, DynamicObject};
use serde_json::{json, Value};

/// The CRD a test (or a user) installs so that Rollouts can be stored.
pub const ROLLOUT_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: rollouts.argoproj.io}
spec:
  group: argoproj.io
  names: {kind: Rollout, listKind: RolloutList, plural: rollouts, singular: rollout, shortNames: [ro]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

pub fn api_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// Where a Rollout's update stands with its pause steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Pause {
    #[default]
    None,
    /// Held by `pause: {}` since then, until promoted.
    Indefinite { since: DateTime<Utc> },
    /// Held by `pause: {duration}` until then.
    Until {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// The pause of this template is over.
    Done,
}

/// The pause the canary steps ask for at the start of an update (the first pause step).
pub fn first_pause(spec: &Value) -> Option<Option<Duration>> {
    spec.pointer("/strategy/canary/steps")?
        .as_array()?
        .iter()
        .find_map(|s| s.get("pause"))
        .map(|p| {
            p.get("duration").and_then(|d| match d {
                Value::Number(n) => n.as_f64().map(Duration::from_secs_f64),
                Value::String(s) => super::simulator::parse_seconds(s),
                _ => None,
            })
        })
}

/// The Rollout as the Deployment the rolling logic works on (`paused` while a pause holds).
pub fn as_deployment(o: &DynamicObject, paused: bool) -> Option<Deployment> {
    let spec = o.data.get("spec")?;
    let strategy = if let Some(c) = spec.pointer("/strategy/canary") {
        json!({"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": c.get("maxSurge").cloned().unwrap_or(json!("25%")),
            "maxUnavailable": c.get("maxUnavailable").cloned().unwrap_or(json!("25%")),
        }})
    } else {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}})
    };
    let d = json!({
        "metadata": serde_json::to_value(&o.metadata).ok()?,
        "spec": {
            "replicas": spec.get("replicas").cloned().unwrap_or(json!(1)),
            "selector": spec.get("selector").cloned().unwrap_or(json!({})),
            "template": spec.get("template").cloned().unwrap_or(json!({})),
            "minReadySeconds": spec.get("minReadySeconds").cloned().unwrap_or(json!(0)),
            "progressDeadlineSeconds": spec.get("progressDeadlineSeconds").cloned().unwrap_or(json!(600)),
            "paused": paused || spec.get("paused").and_then(|p| p.as_bool()).unwrap_or(false),
            "strategy": strategy,
        }
    });
    serde_json::from_value(d).ok()
}

/// `spec.restartAt`, if set.
pub fn restart_at(o: &DynamicObject) -> Option<DateTime<Utc>> {
    o.data
        .pointer("/spec/restartAt")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
}

/// Whether the user promoted past the pause we wrote (our pauseConditions are gone).
pub fn promoted(o: &DynamicObject) -> bool {
    o.data
        .pointer("/status/pauseConditions")
        .is_none_or(|p| p.is_null() || p.as_array().is_some_and(|a| a.is_empty()))
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The Rollout's status from the rolling logic's Deployment status.
#[allow(clippy::too_many_arguments)]
pub fn status(
    o: &DynamicObject,
    d: &DeploymentStatus,
    current_hash: &str,
    stable_hash: &str,
    pause: &Pause,
    restarted_at: Option<DateTime<Utc>>,
    selector: &str,
    now: DateTime<Utc>,
) -> Value {
    let want = o
        .data
        .pointer("/spec/replicas")
        .and_then(|r| r.as_i64())
        .unwrap_or(1) as i32;
    let replicas = d.replicas.unwrap_or(0);
    let updated = d.updated_replicas.unwrap_or(0);
    let available = d.available_replicas.unwrap_or(0);
    let healthy = updated == want && replicas == want && available == want;
    let (phase, message) = match pause {
        Pause::Indefinite { .. } | Pause::Until { .. } => ("Paused", "CanaryPauseStep"),
        _ if healthy => ("Healthy", ""),
        _ => ("Progressing", "more replicas need to be updated"),
    };
    let pause_conditions = match pause {
        Pause::Indefinite { since } | Pause::Until { since, .. } => {
            json!([{"reason": "CanaryPauseStep", "startTime": time(*since)}])
        }
        _ => Value::Null,
    };
    let generation = o.metadata.generation.unwrap_or(0);
    let cond = |t: &str, ok: bool, reason: &str| {
        json!({"type": t, "status": if ok { "True" } else { "False" }, "reason": reason,
               "message": reason, "lastUpdateTime": time(now), "lastTransitionTime": time(now)})
    };
    json!({
        "observedGeneration": generation.to_string(),
        "replicas": replicas, "updatedReplicas": updated,
        "readyReplicas": d.ready_replicas.unwrap_or(0), "availableReplicas": available,
        "HPAReplicas": replicas,
        "currentPodHash": current_hash, "stableRS": stable_hash,
        "selector": selector,
        "phase": phase, "message": if message.is_empty() { Value::Null } else { json!(message) },
        "pauseConditions": pause_conditions,
        "controllerPause": !pause_conditions.is_null(),
        "restartedAt": restarted_at.map(time),
        "conditions": [
            cond("Available", available >= want, "AvailableReason"),
            cond("Progressing", true, if healthy { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }),
            cond("Healthy", healthy, if healthy { "RolloutHealthy" } else { "RolloutNotHealthy" }),
        ],
    })
}
