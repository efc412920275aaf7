//! Public value types of the workload simulator.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The workload kinds the simulator drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// batch/v1 Job: pods run for a while, then succeed.
    Job,
    /// argoproj.io/v1alpha1 Rollout (Argo Rollouts).
    Rollout,
    /// A ReplicaSet created directly (not by a Deployment or Rollout).
    ReplicaSet,
    /// A Pod no simulated controller owns (made with `kubectl run` or `apply`, or owned by a
    /// kind nothing here drives): the kubelet runs it, nothing replaces it.
    Pod,
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::Rollout => "Rollout",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Pod => "Pod",
        })
    }
}

/// Identifies one workload object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl WorkloadRef {
    pub fn new(kind: WorkloadKind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Lifecycle phase of a simulated pod (a subset of the real pod phases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PodPhase {
    /// Created but its containers have not started: a referenced Secret/ConfigMap is missing
    /// (see [`SimPod::waiting_reason`]).
    Pending,
    /// Containers started: env and mounts are resolved.
    Running,
    /// A Job's pod that finished its work (its containers exited 0).
    Succeeded,
}

/// One simulated pod, as the kubelet would run it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimPod {
    pub name: String,
    /// The simulator's own id of this pod (a StatefulSet's replacement has a new one).
    pub uid: String,
    pub workload: WorkloadRef,
    /// `pod-template-hash` for Deployment and DaemonSet pods, the ControllerRevision name
    /// (`<statefulset>-<hash>`, as in `status.updateRevision`) for StatefulSet pods.
    pub revision: String,
    /// StatefulSet ordinal.
    pub ordinal: Option<u32>,
    /// Simulated node the pod runs on (`sim-node-<i>`).
    pub node: String,
    pub phase: PodPhase,
    pub ready: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    /// `CreateContainerConfigError` (env source missing) or `ContainerCreating` (volume source
    /// missing) while the pod cannot start.
    pub waiting_reason: Option<String>,
    pub waiting_message: Option<String>,
    /// Environment of all containers merged (the first container wins on name clashes):
    /// a snapshot taken when the containers started, like the kubelet's.
    pub env: BTreeMap<String, String>,
    /// Environment per container name (snapshot at start).
    pub container_env: BTreeMap<String, BTreeMap<String, String>>,
    /// Mounted Secret/ConfigMap/projected volumes by mount path: file name -> content. Updated
    /// live after the sync delay, except `subPath` mounts (a snapshot, as with the kubelet).
    pub mounted: BTreeMap<String, BTreeMap<String, String>>,
    /// When its deletion began: the pod is Terminating (not ready, still running its
    /// containers, as a draining worker does) until its grace period ends.
    pub terminating_since: Option<DateTime<Utc>>,
}

impl SimPod {
    /// Whether the pod holds `value`: some env value or mounted file content contains it.
    /// An empty `value` matches only an empty env value or file.
    pub fn holds(&self, value: &str) -> bool {
        let matches = |v: &String| {
            if value.is_empty() {
                v.is_empty()
            } else {
                v.contains(value)
            }
        };
        self.env.values().any(matches)
            || self
                .container_env
                .values()
                .flat_map(|e| e.values())
                .any(matches)
            || self.mounted.values().flat_map(|f| f.values()).any(matches)
    }
}

#[cfg(test)]
impl SimPod {
    /// A ready, running pod of Deployment `ns/web` with this env and these files mounted at
    /// `mount`, for unit tests.
    pub(crate) fn for_test(env: &[(&str, &str)], mount: &str, files: &[(&str, &str)]) -> Self {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        SimPod {
            name: "p".into(),
            uid: "u".into(),
            workload: WorkloadRef::new(WorkloadKind::Deployment, "ns", "web"),
            revision: "h".into(),
            ordinal: None,
            node: "sim-node-0".into(),
            phase: PodPhase::Running,
            ready: true,
            created_at: Utc::now(),
            started_at: None,
            ready_at: None,
            waiting_reason: None,
            waiting_message: None,
            env: map(env),
            container_env: BTreeMap::new(),
            mounted: BTreeMap::from([(mount.to_string(), map(files))]),
            terminating_since: None,
        }
    }
}

/// Pod counts of one workload at one moment; the simulator records one whenever they change,
/// so tests can check invariants over a whole rollout without sampling gaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountSample {
    pub at: DateTime<Utc>,
    pub total: usize,
    pub ready: usize,
    pub available: usize,
    /// Pods at the workload's current template revision.
    pub updated: usize,
}

/// Tunables of the simulator.
#[derive(Clone, Debug)]
pub struct SimulatorOptions {
    /// Time from container start to readiness, unless overridden per workload.
    pub readiness_delay: Duration,
    /// Time after a Secret/ConfigMap change until mounted volumes show it.
    pub secret_sync_delay: Duration,
    /// Reconcile period (watch events also trigger a pass at once).
    pub tick_interval: Duration,
    /// The least time from one pass's start to the next: changes meanwhile are handled
    /// together by the next pass. A pass walks every workload, so with thousands of them and a
    /// stream of changes, passes back to back take a core where a real controller's work per
    /// change is one object. 0 (the default) answers each change at once.
    pub min_pass_gap: Duration,
    /// Writes a pass makes at once (kube-controller-manager syncs 5 Deployments and 5
    /// ReplicaSets at once, and every node's kubelet writes its own pods). Writes to one object
    /// keep their order, and a pass's pod and ReplicaSet writes end before its workload status
    /// writes start. 1 (the default) makes them one after another, in the pass's order.
    pub concurrent_writes: usize,
    /// Used when a Deployment has no `spec.progressDeadlineSeconds` (the API server default is 600).
    pub default_progress_deadline_seconds: i32,
    /// Number of simulated nodes (DaemonSets run one pod per node).
    pub nodes: usize,
    /// How long `start` waits for the initial list of every watched kind.
    pub initial_sync_timeout: Duration,
    /// Field manager used for `/status` patches.
    pub field_manager: String,
    /// Also keep Pod and ReplicaSet objects in the API, mirroring the simulated ones (owner
    /// references, labels, the template's spec, phase, conditions, container states), and
    /// honour Pod deletions made through the API (`kubectl delete pod`).
    pub api_objects: bool,
    /// A deleted pod stays Terminating for its `terminationGracePeriodSeconds` times this
    /// factor. 0 (the default) ends it at once, which keeps most tests fast.
    pub termination_grace_scale: f64,
    /// How long a Job's pod works once ready before it succeeds (a Job may say otherwise with
    /// the annotation `sandbox.tokenrotator.io/run-for`, e.g. `30s`).
    pub job_run_time: Duration,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        Self {
            readiness_delay: Duration::from_millis(200),
            secret_sync_delay: Duration::from_millis(500),
            tick_interval: Duration::from_millis(50),
            min_pass_gap: Duration::ZERO,
            concurrent_writes: 1,
            default_progress_deadline_seconds: 600,
            nodes: 2,
            initial_sync_timeout: Duration::from_secs(10),
            field_manager: "sandbox-workload-simulator".to_owned(),
            api_objects: true,
            termination_grace_scale: 0.0,
            job_run_time: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_looks_at_env_and_mounted_files() {
        let mut p = SimPod::for_test(
            &[("URL", "https://AC1:tok-a@api")],
            "/etc/tw",
            &[("token", "tok-b")],
        );
        assert!(p.holds("tok-a"), "substring of an env value");
        assert!(p.holds("tok-b"), "mounted file");
        assert!(!p.holds("tok-c"));
        assert!(!p.holds(""), "empty matches only empty values");
        p.env.insert("EMPTY".into(), String::new());
        assert!(p.holds(""));
    }
}
