//! Status subresource merge patches that mirror the controllers' `omitempty` fields.
//!
//! A merge patch leaves absent keys alone, so every field the real controller would omit (a zero
//! count, say) is sent as `null` to clear a value written earlier.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};

use super::types::WorkloadKind;

fn fields(kind: WorkloadKind) -> &'static [&'static str] {
    match kind {
        WorkloadKind::Deployment => &[
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "terminatingReplicas",
            "collisionCount",
            "conditions",
        ],
        WorkloadKind::StatefulSet => &[
            "observedGeneration",
            "replicas",
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
            "currentRevision",
            "updateRevision",
            "collisionCount",
            "conditions",
            "availableReplicas",
        ],
        WorkloadKind::DaemonSet => &[
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "observedGeneration",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
            "collisionCount",
            "conditions",
        ],
        WorkloadKind::Job => &[
            "active",
            "ready",
            "succeeded",
            "failed",
            "terminating",
            "startTime",
            "completionTime",
            "conditions",
        ],
        WorkloadKind::ReplicaSet => &[
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
            "conditions",
        ],
        // A bare pod's status is written by the mirror; a Rollout's whole.
        WorkloadKind::Pod | WorkloadKind::Rollout => &[],
    }
}

/// `{"status": {...}}` with `null` for every known field the status leaves out.
pub fn merge_patch<S: Serialize>(kind: WorkloadKind, status: &S) -> Value {
    let mut map = match serde_json::to_value(status) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for f in fields(kind) {
        map.entry(f.to_string()).or_insert(Value::Null);
    }
    serde_json::json!({ "status": Value::Object(map) })
}

/// Whether the status stored on the object already equals what the patch would produce.
pub fn matches<S: DeserializeOwned + PartialEq>(patch: &Value, stored: Option<&S>) -> bool {
    let Some(Value::Object(map)) = patch.get("status") else {
        return false;
    };
    let stripped: Map<String, Value> = map
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match (serde_json::from_value::<S>(Value::Object(stripped)), stored) {
        (Ok(want), Some(have)) => &want == have,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    #[test]
    fn omitted_fields_are_cleared_and_matching_ignores_them() {
        let s = DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(3),
            ..Default::default()
        };
        let p = merge_patch(WorkloadKind::Deployment, &s);
        assert_eq!(p["status"]["replicas"], 3);
        assert!(p["status"]["unavailableReplicas"].is_null());
        assert!(p["status"]
            .as_object()
            .unwrap()
            .contains_key("unavailableReplicas"));
        assert!(matches(&p, Some(&s)));
        let other = DeploymentStatus {
            unavailable_replicas: Some(1),
            ..s.clone()
        };
        assert!(!matches(&p, Some(&other)));
        assert!(!matches::<DeploymentStatus>(&p, None));
    }
}
