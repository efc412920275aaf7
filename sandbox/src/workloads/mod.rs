//! Workload simulator: a stand-in for the Deployment, StatefulSet and DaemonSet controllers and
//! the kubelet, for tests of an operator that triggers rollouts and waits for them.
//!
//! [`WorkloadSimulator`] is a plain kube-rs client: it watches Deployments, StatefulSets,
//! DaemonSets, Jobs, Pods, Secrets, ConfigMaps and Namespaces, keeps simulated pods in memory,
//! and writes each workload's `/status` with merge patches, so it works against any API server.
//!
//! * Pods read Secret/ConfigMap-backed env vars and `envFrom` once, when they start (a
//!   snapshot); mounted Secret/ConfigMap/projected volumes follow changes after
//!   [`SimulatorOptions::secret_sync_delay`] (`subPath` mounts never do). A pod whose
//!   non-optional source is missing stays Pending (`CreateContainerConfigError` for env,
//!   `ContainerCreating` for volumes) until it appears.
//! * Deployments: RollingUpdate with `maxSurge`/`maxUnavailable` (ints or percentages, rounded
//!   as Kubernetes does) and Recreate, `minReadySeconds`, `paused`, `progressDeadlineSeconds`
//!   and the `Available`/`Progressing` conditions with the controller's reasons.
//! * StatefulSets: OrderedReady or Parallel creation, RollingUpdate one pod at a time in
//!   reverse ordinal order down to `partition`; OnDelete replaces nothing by itself (use
//!   [`WorkloadSimulator::delete_pod`]).
//! * DaemonSets: one pod per simulated node, RollingUpdate with `maxUnavailable` or `maxSurge`.
//!
//! * Pods and Deployment ReplicaSets are also API objects ([`SimulatorOptions::api_objects`],
//!   on by default): owner references, labels (`pod-template-hash`, `controller-revision-hash`),
//!   the template's spec with `nodeName`, phase, `Ready`/`ContainersReady`, container states,
//!   pod IPs; `deployment.kubernetes.io/revision` on ReplicaSets and the Deployment (written
//!   through `/status`, as the controller does), so `kubectl rollout history/undo` work. A pod
//!   deleted through the API (or by its controller) is Terminating for its
//!   `terminationGracePeriodSeconds` times [`SimulatorOptions::termination_grace_scale`] (0 by
//!   default: at once), not ready, still running with what it read; then it is gone and its
//!   controller replaces it.
//!
//! * Jobs: `parallelism` pods at a time until `completions` succeeded, each working for a run
//!   time once ready. CronJobs make Jobs when their schedule fires. ReplicaSets made directly
//!   keep their replicas. Argo Rollouts roll like Deployments, restart by `spec.restartAt`, and
//!   hold a new template at a canary pause step ([`rollout`]). Bare pods (no simulated controller owns them) are bound and run; deleted,
//!   nothing replaces them.
//!
//! Not simulated: ControllerRevision objects, revisionHistoryLimit (old ReplicaSets stay),
//! proportional scaling of a paused Deployment with several active ReplicaSets, container
//! restarts, Job failures, CronJob time zones, Argo traffic weights and analysis, and the
//! MaxUnavailableStatefulSet feature.

mod cronjob;
mod daemonset;
mod deployment;
mod hash;
mod intstr;
mod mirror;
mod plan;
mod pod;
mod resolve;
pub mod rollout;
mod simulator;
mod statefulset;
mod status_patch;
mod types;

pub use simulator::{PodsView, WorkloadSimulator};
pub use types::{CountSample, PodPhase, SimPod, SimulatorOptions, WorkloadKind, WorkloadRef};
