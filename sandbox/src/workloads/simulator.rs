//! The running simulator: watches the API through kube-rs reflectors, runs the pure controller
//! logic for every workload on each tick, keeps the simulated pods, and writes `/status`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta, Patch, PatchParams};
use ::kube::runtime::reflector::{self, Store};
use ::kube::runtime::{watcher, WatchStreamExt};
use ::kube::{Client, Resource, ResourceExt};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, DeploymentStatus, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, PodTemplateSpec, Secret};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::cronjob;
use super::daemonset::{self, DaemonSetInput};
use super::deployment::{self, DeploymentInput};
use super::hash::random_suffix;
use super::mirror::{self, Desired, MirrorState, ObjKind, Op};
use super::plan::{Action, PodSummary};
use super::pod::{Kubelet, PodRecord};
use super::resolve::{Data, Sources};
use super::rollout;
use super::statefulset::{self, StatefulSetInput};
use super::status_patch;
use super::types::{CountSample, PodPhase, SimPod, SimulatorOptions, WorkloadKind, WorkloadRef};

/// Samples kept per workload by [`WorkloadSimulator::timeline`].
const TIMELINE_CAP: usize = 100_000;

/// Stand-in for the Deployment, StatefulSet and DaemonSet controllers and the kubelet; a plain
/// kube-rs client of whatever API server `client` talks to. Runs until [`shutdown`](Self::shutdown)
/// or drop.
pub struct WorkloadSimulator {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    opts: SimulatorOptions,
    nodes: Vec<String>,
    state: Mutex<State>,
    wake: Notify,
    /// Changes to what pods read, decoded by the Secret and ConfigMap watches as they come;
    /// the next pass applies them to `sources`.
    source_changes: Mutex<Vec<SourceChange>>,
    /// What pods read, by namespace and name. Only a pass locks it: kept up to date change by
    /// change, instead of rebuilt from 10,000 Secrets whenever one changed.
    sources: Mutex<Sources>,
}

#[derive(Clone, Copy, Debug)]
enum SourceKind {
    Secret,
    ConfigMap,
}

enum SourceChange {
    Put(SourceKind, (String, String), Arc<Data>),
    Gone(SourceKind, (String, String)),
    /// The watch listed again (or for the first time): the store holds every object.
    Relisted(SourceKind),
}

/// How a source watch turns an object into what pods read.
type Decode<K> = (SourceKind, fn(&K) -> Data);

#[derive(Default)]
struct State {
    workloads: BTreeMap<WorkloadRef, Tracked>,
    knobs: HashMap<WorkloadRef, Knobs>,
    timelines: HashMap<WorkloadRef, Vec<CountSample>>,
    mirror: MirrorState,
    /// Every pod that exists now (Terminating ones too), by its uid; rebuilt by each pass, so a
    /// pod is absent from the moment the pass that removed it ends.
    live: HashMap<String, Arc<SimPod>>,
    /// Writes decided outside the mirror (binding bare pods, CronJobs), for the next round.
    to_bind: Vec<Op>,
    /// CronJob uid -> the last firing handled.
    cron_last: HashMap<String, DateTime<Utc>>,
    /// Bare pods being read in full before they run (their uids).
    adopting: HashSet<String>,
    /// Settled workloads (see [`Settled`]) by uid: a pass finds them here before it builds
    /// anything for them, and leaves their objects in the API as they are.
    quiet: HashMap<String, Quiet>,
    /// Passes so far.
    pass: u64,
}

/// A settled workload: the resourceVersion it settled at, the pass that settled it and the
/// last pass that met it. Knob changes forget them all.
struct Quiet {
    resource_version: String,
    since: u64,
    seen: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Knobs {
    readiness_delay: Option<Duration>,
    fail_new_pods: bool,
}

/// What the simulator keeps per workload object (reset when the uid changes).
struct Tracked {
    uid: String,
    /// Unique for this object: names it as the owner of its mirror entries.
    id: u64,
    /// This pass skipped it: settled and unchanged (see [`Quiet`]).
    skipped: bool,
    /// The last mirror pass over this workload found every object of it written as it is.
    mirror_current: bool,
    pods: Vec<PodRecord>,
    /// Revision -> pod template (ReplicaSets / ControllerRevisions).
    templates: HashMap<String, Arc<PodTemplateSpec>>,
    /// Deployment revisions whose ReplicaSet has been created.
    replica_sets: BTreeSet<String>,
    /// StatefulSet `status.currentRevision`.
    current_revision: Option<String>,
    /// Last computed Deployment status: the controller's "old status" for the next sync.
    deployment_status: Option<DeploymentStatus>,
    /// Last successfully written patch and the resourceVersion the write returned.
    written: Option<(Value, String)>,
    next_node: usize,
    /// Deployments: `deployment.kubernetes.io/revision` of each ReplicaSet (by hash), and the
    /// highest given; a template that returns (rollout undo) gets a new number.
    rs_revision: HashMap<String, u64>,
    max_revision: u64,
    /// Deployments: `spec.selector`, for the ReplicaSets.
    selector: Value,
    /// Deployments: the current template's hash, and the revision last written into the
    /// Deployment's `deployment.kubernetes.io/revision` annotation.
    current_hash: String,
    annotated: Option<u64>,
    /// Rollouts: where the update stands with its pause step, the template that last
    /// completed (`stableRS`), and the `restartAt` that has been carried out.
    pause: rollout::Pause,
    /// Our pause conditions have been seen stored (so their absence means a promote).
    pause_seen: bool,
    paused_hash: String,
    stable_hash: String,
    restarted_at: Option<DateTime<Utc>>,
    /// The last sync of a workload without pods (see [`Settled`]).
    settled: Option<Settled>,
}

/// A workload without pods whose object has not changed: nothing moves it on but a change
/// (no kubelet, no rollout, nothing time-driven), so once two syncs of the same object in a
/// row computed the status last written, the next ones are skipped until the object or its
/// knobs change, and so is its mirror while that holds what was last written ([`Quiet`]).
/// It keeps a pass over thousands of scaled-to-zero workloads from costing a core.
struct Settled {
    resource_version: String,
    knobs: Knobs,
    /// Syncs in a row of this object and knobs that needed no status write: each computed the
    /// status last written (at most 2, which is settled).
    quiet: u8,
}

impl Tracked {
    /// One kubelet pass: each pod advances, and Terminating pods whose grace period ended are
    /// gone.
    fn kubelet_pass(&mut self, kubelet: Kubelet<'_>) {
        for p in &mut self.pods {
            p.advance(kubelet);
        }
        self.pods
            .retain(|p| p.gone_at.is_none_or(|g| g > kubelet.now));
    }

    /// Pods created in this sync start at once (their env snapshot is taken now).
    fn start_new(&mut self, kubelet: Kubelet<'_>) {
        for p in self.pods.iter_mut().filter(|p| p.pod.started_at.is_none()) {
            p.advance(kubelet);
        }
    }

    fn new(uid: String) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Self {
            uid,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            skipped: false,
            mirror_current: false,
            pods: Vec::new(),
            templates: HashMap::new(),
            replica_sets: BTreeSet::new(),
            current_revision: None,
            deployment_status: None,
            written: None,
            next_node: 0,
            rs_revision: HashMap::new(),
            max_revision: 0,
            selector: Value::Null,
            current_hash: String::new(),
            annotated: None,
            pause: rollout::Pause::None,
            pause_seen: false,
            paused_hash: String::new(),
            stable_hash: String::new(),
            restarted_at: None,
            settled: None,
        }
    }
}

struct Stores {
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    daemonsets: Store<DaemonSet>,
    jobs: Store<Job>,
    cronjobs: Store<CronJob>,
    replicasets: Store<ReplicaSet>,
    /// Argo Rollouts, once their CRD is installed (the watch retries until then).
    rollouts: Store<DynamicObject>,
    secrets: Store<Secret>,
    config_maps: Store<ConfigMap>,
    namespaces: Store<Namespace>,
    /// When pods are API objects: their deletions (and removals) made by others, and pods no
    /// simulated controller owns. Metadata only: a full copy of every pod would cost more than
    /// the simulated pods themselves.
    pods: Option<Store<PartialObjectMeta<Pod>>>,
}

/// A pending `/status` write.
struct Write {
    workload: WorkloadRef,
    uid: String,
    patch: Value,
}

/// Per-tick inputs shared by all workloads.
struct Tick<'a> {
    sources: &'a Sources,
    now: DateTime<Utc>,
}

fn spawn_reflector<K>(api: Api<K>, inner: &Arc<Inner>, tasks: &mut Vec<JoinHandle<()>>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    spawn_reflector_with(api, reflector::store::Writer::default(), inner, tasks, None)
}

/// A reflector of what pods read (Secrets, ConfigMaps), queueing each change decoded.
fn spawn_source_reflector<K>(
    client: &Client,
    decode: Decode<K>,
    inner: &Arc<Inner>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let api = Api::all(client.clone());
    spawn_reflector_with(
        api,
        reflector::store::Writer::default(),
        inner,
        tasks,
        Some(decode),
    )
}

/// A reflector of a kind known at run time (a CRD that may not be installed yet: the watch
/// retries until it is).
fn spawn_dynamic_reflector(
    client: &Client,
    ar: ApiResource,
    inner: &Arc<Inner>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<DynamicObject> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    spawn_reflector_with(api, reflector::store::Writer::new(ar), inner, tasks, None)
}

/// Keeps `writer`'s store in sync with `api` and wakes the simulator on every change; with
/// `decode`, also queues each change of what pods read.
fn spawn_reflector_with<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    inner: &Arc<Inner>,
    tasks: &mut Vec<JoinHandle<()>>,
    decode: Option<Decode<K>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let reader = writer.as_reader();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let inner = inner.clone();
    tasks.push(tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::debug!(error = %e, "workload simulator watch error");
                    continue;
                }
            };
            if let Some((kind, decode)) = decode {
                let change = match &event {
                    watcher::Event::Apply(o) => {
                        Some(SourceChange::Put(kind, key_of(o), Arc::new(decode(o))))
                    }
                    watcher::Event::Delete(o) => Some(SourceChange::Gone(kind, key_of(o))),
                    watcher::Event::InitDone => Some(SourceChange::Relisted(kind)),
                    watcher::Event::Init | watcher::Event::InitApply(_) => None,
                };
                if let Some(change) = change {
                    lock(&inner.source_changes).push(change);
                }
            }
            inner.wake.notify_one();
        }
    }));
    reader
}

impl WorkloadSimulator {
    /// Starts watching and simulating; returns once every watched kind has been listed.
    pub async fn start(client: Client, opts: SimulatorOptions) -> anyhow::Result<Self> {
        let nodes = (0..opts.nodes.max(1))
            .map(|i| format!("sim-node-{i}"))
            .collect();
        let inner = Arc::new(Inner {
            opts,
            nodes,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            source_changes: Mutex::default(),
            sources: Mutex::default(),
        });
        let mut tasks = Vec::new();
        let stores = Stores {
            deployments: spawn_reflector(Api::all(client.clone()), &inner, &mut tasks),
            statefulsets: spawn_reflector(Api::all(client.clone()), &inner, &mut tasks),
            daemonsets: spawn_reflector(Api::all(client.clone()), &inner, &mut tasks),
            jobs: spawn_reflector(Api::all(client.clone()), &inner, &mut tasks),
            cronjobs: spawn_reflector(Api::all(client.clone()), &inner, &mut tasks),
            replicasets: spawn_reflector(Api::all(client.clone()), &inner, &mut tasks),
            rollouts: spawn_dynamic_reflector(&client, rollout::api_resource(), &inner, &mut tasks),
            secrets: spawn_source_reflector(
                &client,
                (SourceKind::Secret, data_of_secret),
                &inner,
                &mut tasks,
            ),
            config_maps: spawn_source_reflector(
                &client,
                (SourceKind::ConfigMap, data_of_config_map),
                &inner,
                &mut tasks,
            ),
            namespaces: spawn_reflector(Api::all(client.clone()), &inner, &mut tasks),
            pods: inner.opts.api_objects.then(|| {
                // PartialObjectMeta makes the watch metadata-only.
                spawn_reflector(
                    Api::<PartialObjectMeta<Pod>>::all(client.clone()),
                    &inner,
                    &mut tasks,
                )
            }),
        };
        let ready = async {
            stores.deployments.wait_until_ready().await?;
            stores.statefulsets.wait_until_ready().await?;
            stores.daemonsets.wait_until_ready().await?;
            stores.jobs.wait_until_ready().await?;
            stores.cronjobs.wait_until_ready().await?;
            stores.replicasets.wait_until_ready().await?;
            stores.secrets.wait_until_ready().await?;
            stores.config_maps.wait_until_ready().await?;
            if let Some(p) = &stores.pods {
                p.wait_until_ready().await?;
            }
            stores.namespaces.wait_until_ready().await
        };
        let synced = tokio::time::timeout(inner.opts.initial_sync_timeout, ready).await;
        if !matches!(synced, Ok(Ok(()))) {
            for t in &tasks {
                t.abort();
            }
            anyhow::bail!(
                "workload simulator: initial list of workloads/Secrets/ConfigMaps/Namespaces did not complete within {:?}",
                inner.opts.initial_sync_timeout
            );
        }
        let loop_inner = inner.clone();
        tasks.push(tokio::spawn(async move {
            run(loop_inner, stores, client).await
        }));
        Ok(Self { inner, tasks })
    }

    /// Stops all background tasks; pods vanish with the simulator.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }

    pub fn options(&self) -> &SimulatorOptions {
        &self.inner.opts
    }

    /// Names of the simulated nodes (`sim-node-0` ...).
    pub fn nodes(&self) -> Vec<String> {
        self.inner.nodes.clone()
    }

    /// Readiness delay for the pods of one workload (also pods already started but not yet
    /// ready). May be set before the workload exists.
    pub fn set_readiness_delay(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        delay: Duration,
    ) {
        let mut st = self.inner.lock();
        st.knobs_mut(WorkloadRef::new(kind, namespace, name))
            .readiness_delay = Some(delay);
        drop(st);
        self.inner.wake.notify_one();
    }

    /// While on, pods created for this workload never become ready (their readiness probe never
    /// passes). Pods keep the setting they were created with. May be set before the workload exists.
    pub fn fail_new_pods(&self, kind: WorkloadKind, namespace: &str, name: &str, fail: bool) {
        self.inner
            .lock()
            .knobs_mut(WorkloadRef::new(kind, namespace, name))
            .fail_new_pods = fail;
    }

    /// Pods of one workload, by ordinal then creation time.
    pub fn pods(&self, kind: WorkloadKind, namespace: &str, name: &str) -> Vec<SimPod> {
        let st = self.inner.lock();
        let mut pods: Vec<SimPod> = st
            .workloads
            .get(&WorkloadRef::new(kind, namespace, name))
            .map(|t| t.pods.iter().map(|p| p.pod.clone()).collect())
            .unwrap_or_default();
        sort_pods(&mut pods);
        pods
    }

    /// Pods of every workload.
    pub fn all_pods(&self) -> Vec<SimPod> {
        self.clone_handle().all_pods()
    }

    /// A cheap handle that reads the pods from another task.
    pub fn clone_handle(&self) -> PodsView {
        PodsView {
            inner: self.inner.clone(),
        }
    }
}

/// Read access to the simulated pods, cloneable into background tasks.
#[derive(Clone)]
pub struct PodsView {
    inner: Arc<Inner>,
}

impl PodsView {
    /// Whether pod `name` exists and is ready now.
    pub fn is_ready(&self, name: &str) -> bool {
        let st = self.inner.lock();
        st.workloads
            .values()
            .flat_map(|t| t.pods.iter())
            .any(|p| p.pod.name == name && p.pod.ready)
    }

    pub fn all_pods(&self) -> Vec<SimPod> {
        let st = self.inner.lock();
        let mut pods: Vec<SimPod> = st
            .workloads
            .values()
            .flat_map(|t| t.pods.iter().map(|p| p.pod.clone()))
            .collect();
        sort_pods(&mut pods);
        pods
    }

    /// The pod with simulator uid `uid`, as it is now, if it still exists (Terminating too).
    pub fn live(&self, uid: &str) -> Option<Arc<SimPod>> {
        self.inner.lock().live.get(uid).cloned()
    }

    /// Every pod that exists now.
    pub fn live_pods(&self) -> Vec<Arc<SimPod>> {
        self.inner.lock().live.values().cloned().collect()
    }
}

impl WorkloadSimulator {
    /// Pods (of any workload) that hold `value` in an env var or mounted file ([`SimPod::holds`]).
    pub fn pods_holding(&self, value: &str) -> Vec<SimPod> {
        self.all_pods()
            .into_iter()
            .filter(|p| p.holds(value))
            .collect()
    }

    /// Pods (of any workload) that do not hold `value`.
    pub fn pods_not_holding(&self, value: &str) -> Vec<SimPod> {
        self.all_pods()
            .into_iter()
            .filter(|p| !p.holds(value))
            .collect()
    }

    /// Deletes one pod, as `kubectl delete pod` would; its controller replaces it. This is how
    /// `OnDelete` StatefulSets/DaemonSets pick up a new template.
    pub fn delete_pod(&self, kind: WorkloadKind, namespace: &str, name: &str, pod: &str) -> bool {
        let mut st = self.inner.lock();
        let Some(t) = st
            .workloads
            .get_mut(&WorkloadRef::new(kind, namespace, name))
        else {
            return false;
        };
        let before = t.pods.len();
        t.pods.retain(|p| p.pod.name != pod);
        let deleted = t.pods.len() != before;
        st.reindex();
        drop(st);
        self.inner.wake.notify_one();
        deleted
    }

    /// Every change of the workload's pod counts since it appeared (exact, not sampled).
    pub fn timeline(&self, kind: WorkloadKind, namespace: &str, name: &str) -> Vec<CountSample> {
        self.inner
            .lock()
            .timelines
            .get(&WorkloadRef::new(kind, namespace, name))
            .cloned()
            .unwrap_or_default()
    }

    /// Polls until `pred` holds for the workload's pods; returns them, or fails after `timeout`.
    pub async fn wait_for_pods(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&[SimPod]) -> bool,
    ) -> anyhow::Result<Vec<SimPod>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pods = self.pods(kind, namespace, name);
            if pred(&pods) {
                return Ok(pods);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for pods of {}; last seen: {:#?}",
                    WorkloadRef::new(kind, namespace, name),
                    pods.iter()
                        .map(|p| (&p.name, &p.revision, p.phase, p.ready, &p.waiting_reason))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(self.inner.opts.tick_interval.min(Duration::from_millis(20))).await;
        }
    }
}

impl Drop for WorkloadSimulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn sort_pods(pods: &mut [SimPod]) {
    pods.sort_by(|a, b| {
        (&a.workload, a.ordinal, a.created_at, &a.name).cmp(&(
            &b.workload,
            b.ordinal,
            b.created_at,
            &b.name,
        ))
    });
}

async fn run(inner: Arc<Inner>, stores: Stores, client: Client) {
    let params = PatchParams {
        field_manager: Some(inner.opts.field_manager.clone()),
        ..Default::default()
    };
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.opts.tick_interval) => {}
            _ = inner.wake.notified() => {}
        }
        // A wake stores its permit, so changes during this sleep are not lost.
        if !inner.opts.min_pass_gap.is_zero() {
            tokio::time::sleep_until(last + inner.opts.min_pass_gap).await;
        }
        last = tokio::time::Instant::now();
        let (writes, ops) = inner.tick(&stores, Utc::now());
        // Pods first, as the controllers do: a pod is marked for deletion before a workload's
        // status stops counting it.
        let n = inner.opts.concurrent_writes;
        in_lanes(ops, op_lane, n, |op| {
            mirror_write(&client, &inner, &params, op)
        })
        .await;
        in_lanes(
            writes,
            |w| Some(Lane::Workload(w.workload.clone())),
            n,
            |w| status_write(&client, &inner, &params, w),
        )
        .await;
    }
}

/// What keeps writes in order: those of one lane are made one after another.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Lane {
    Object(mirror::Key),
    Workload(WorkloadRef),
    CronJobs(String),
}

/// The lane of a mirror write: its object's (None: a lane of its own).
fn op_lane(op: &Op) -> Option<Lane> {
    match op {
        Op::Create { key, .. }
        | Op::Status { key, .. }
        | Op::Spec { key, .. }
        | Op::Delete { key, .. }
        | Op::Bind { key, .. } => Some(Lane::Object(key.clone())),
        Op::AdoptPod {
            namespace, name, ..
        } => Some(Lane::Object((
            ObjKind::Pod,
            namespace.clone(),
            name.clone(),
        ))),
        Op::AnnotateDeployment {
            namespace, name, ..
        } => Some(Lane::Workload(WorkloadRef::new(
            WorkloadKind::Deployment,
            namespace,
            name,
        ))),
        // A CronJob's Job writes and its status, in the order its controller made them.
        Op::CreateJob { namespace, .. }
        | Op::DeleteJob { namespace, .. }
        | Op::CronJobStatus { namespace, .. } => Some(Lane::CronJobs(namespace.clone())),
        Op::Event { .. } => None,
    }
}

/// Makes `items` with `write`, `n` lanes at once, each lane's items in their order; with
/// `n` <= 1 one after another in the given order.
async fn in_lanes<T, Fut>(
    items: Vec<T>,
    lane: impl Fn(&T) -> Option<Lane>,
    n: usize,
    write: impl Fn(T) -> Fut,
) where
    Fut: std::future::Future<Output = ()>,
{
    if n <= 1 {
        for item in items {
            write(item).await;
        }
        return;
    }
    let mut lanes: Vec<Vec<T>> = Vec::new();
    let mut index: HashMap<Lane, usize> = HashMap::new();
    for item in items {
        match lane(&item) {
            Some(l) => match index.get(&l) {
                Some(&i) => lanes[i].push(item),
                None => {
                    index.insert(l, lanes.len());
                    lanes.push(vec![item]);
                }
            },
            None => lanes.push(vec![item]),
        }
    }
    let write = &write;
    futures::stream::iter(lanes.into_iter().map(|items| async move {
        for item in items {
            write(item).await;
        }
    }))
    .buffer_unordered(n)
    .collect::<Vec<()>>()
    .await;
}

/// A workload's status write; the version written goes back into its state.
async fn status_write(client: &Client, inner: &Inner, params: &PatchParams, w: Write) {
    let r = &w.workload;
    let result = match r.kind {
        WorkloadKind::Deployment => patch::<Deployment>(client, r, params, &w.patch).await,
        WorkloadKind::StatefulSet => patch::<StatefulSet>(client, r, params, &w.patch).await,
        WorkloadKind::DaemonSet => patch::<DaemonSet>(client, r, params, &w.patch).await,
        WorkloadKind::Job => patch::<Job>(client, r, params, &w.patch).await,
        WorkloadKind::ReplicaSet => patch::<ReplicaSet>(client, r, params, &w.patch).await,
        WorkloadKind::Rollout => Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &r.namespace,
            &rollout::api_resource(),
        )
        .patch_status(&r.name, params, &Patch::Merge(&w.patch))
        .await
        .map(|o| o.metadata.resource_version.unwrap_or_default())
        .map_err(anyhow::Error::from),
        // A bare pod's status goes through the mirror.
        WorkloadKind::Pod => return,
    };
    match result {
        Ok(rv) => {
            let mut st = inner.lock();
            if let Some(t) = st.workloads.get_mut(r).filter(|t| t.uid == w.uid) {
                t.written = Some((w.patch, rv));
            }
        }
        Err(e) => {
            tracing::debug!(workload = %r, error = %e, "workload simulator status write failed")
        }
    }
}

fn api_error_code(e: &::kube::Error) -> Option<u16> {
    match e {
        ::kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The API of a mirrored object's kind.
fn mirror_api(client: &Client, key: &mirror::Key) -> Api<DynamicObject> {
    let ar = match key.0 {
        ObjKind::Pod => ApiResource::erase::<Pod>(&()),
        ObjKind::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
    };
    Api::namespaced_with(client.clone(), &key.1, &ar)
}

/// One write of the Pod/ReplicaSet mirror; its outcome goes back into the mirror's state.
async fn mirror_write(client: &Client, inner: &Inner, params: &PatchParams, op: Op) {
    match op {
        Op::Create { key, body } => {
            let uid = match key.0 {
                ObjKind::Pod => create_object::<Pod>(client, &key, body, params).await,
                ObjKind::ReplicaSet => {
                    create_object::<ReplicaSet>(client, &key, body, params).await
                }
            };
            inner.lock().mirror.created(&key, uid);
        }
        Op::Status { key, status } => {
            let body = serde_json::json!({ "status": status });
            let res = mirror_api(client, &key)
                .patch_status(&key.2, params, &Patch::Merge(&body))
                .await;
            if let Err(e) = res {
                tracing::debug!(object = ?key, error = %e, "workload simulator mirror write failed");
                inner.lock().mirror.forget_write(&key);
            }
        }
        Op::Spec { key, patch } => {
            let res = Api::<ReplicaSet>::namespaced(client.clone(), &key.1)
                .patch(&key.2, params, &Patch::Merge(&patch))
                .await;
            if let Err(e) = res {
                tracing::debug!(object = ?key, error = %e, "workload simulator mirror write failed");
                inner.lock().mirror.forget_write(&key);
            }
        }
        Op::AdoptPod {
            namespace,
            name,
            uid,
        } => {
            let got = Api::<Pod>::namespaced(client.clone(), &namespace)
                .get(&name)
                .await;
            let mut st = inner.lock();
            match got {
                Ok(p) if p.metadata.uid.as_deref() == Some(uid.as_str()) => {
                    inner.adopt_bare(&mut st, &p, Utc::now());
                }
                _ => {
                    st.adopting.remove(&uid);
                }
            }
        }
        Op::Bind { key, node } => {
            let body = serde_json::json!({"spec": {"nodeName": node}});
            if let Err(e) = Api::<Pod>::namespaced(client.clone(), &key.1)
                .patch(&key.2, params, &Patch::Merge(&body))
                .await
            {
                tracing::debug!(object = ?key, error = %e, "workload simulator bind failed");
            }
        }
        Op::Event { namespace, body } => {
            let ev: Option<k8s_openapi::api::core::v1::Event> = serde_json::from_value(body).ok();
            if let Some(ev) = ev {
                if let Err(e) =
                    Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &namespace)
                        .create(&Default::default(), &ev)
                        .await
                {
                    tracing::debug!(error = %e, "workload simulator event failed");
                }
            }
        }
        Op::CreateJob { namespace, body } => {
            let key = (ObjKind::Pod, namespace.clone(), String::new());
            if create_object::<Job>(client, &key, body, params)
                .await
                .is_none()
            {
                tracing::debug!(namespace = %namespace, "workload simulator could not create a CronJob's Job");
            }
        }
        Op::DeleteJob { namespace, name } => {
            let dp = ::kube::api::DeleteParams::background();
            if let Err(e) = Api::<Job>::namespaced(client.clone(), &namespace)
                .delete(&name, &dp)
                .await
            {
                tracing::debug!(job = %name, error = %e, "workload simulator job delete failed");
            }
        }
        Op::CronJobStatus {
            namespace,
            name,
            status,
        } => {
            let body = serde_json::json!({ "status": status });
            if let Err(e) = Api::<CronJob>::namespaced(client.clone(), &namespace)
                .patch_status(&name, params, &Patch::Merge(&body))
                .await
            {
                tracing::debug!(cronjob = %name, error = %e, "workload simulator cronjob status failed");
            }
        }
        Op::AnnotateDeployment {
            namespace,
            name,
            revision,
        } => {
            // Through /status, as the Deployment controller does (no generation bump).
            let body = serde_json::json!({"metadata": {"annotations": {
                "deployment.kubernetes.io/revision": revision.to_string()}}});
            let res = Api::<Deployment>::namespaced(client.clone(), &namespace)
                .patch_status(&name, params, &Patch::Merge(&body))
                .await;
            if let Err(e) = res {
                tracing::debug!(deployment = %name, error = %e, "workload simulator revision annotation failed");
                let r = WorkloadRef::new(WorkloadKind::Deployment, &namespace, &name);
                if let Some(t) = inner.lock().workloads.get_mut(&r) {
                    t.annotated = None;
                }
            }
        }
        Op::Delete { key, grace } => {
            let dp = ::kube::api::DeleteParams {
                grace_period_seconds: grace.map(|g| g.max(0) as u32),
                ..Default::default()
            };
            let res = mirror_api(client, &key).delete(&key.2, &dp).await;
            match res {
                Ok(_) => inner.lock().mirror.deleted(&key),
                Err(e) if api_error_code(&e) == Some(404) => inner.lock().mirror.deleted(&key),
                Err(e) => {
                    tracing::debug!(object = ?key, error = %e, "workload simulator mirror delete failed");
                    inner.lock().mirror.delete_failed(&key);
                }
            }
        }
    }
}

/// Creates a mirrored object; its uid, or None to try again next tick. An object left by an
/// earlier run is adopted.
async fn create_object<K>(
    client: &Client,
    key: &mirror::Key,
    body: Value,
    params: &PatchParams,
) -> Option<String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), &key.1);
    let obj: K = serde_json::from_value(body).ok()?;
    let pp = ::kube::api::PostParams {
        field_manager: params.field_manager.clone(),
        ..Default::default()
    };
    match api.create(&pp, &obj).await {
        Ok(o) => o.meta().uid.clone(),
        Err(e) if api_error_code(&e) == Some(409) => api.get(&key.2).await.ok()?.meta().uid.clone(),
        Err(e) => {
            tracing::debug!(object = ?key, error = %e, "workload simulator mirror create failed");
            None
        }
    }
}

async fn patch<K>(
    client: &Client,
    r: &WorkloadRef,
    params: &PatchParams,
    body: &Value,
) -> anyhow::Result<String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), &r.namespace);
    let obj = api
        .patch_status(&r.name, params, &Patch::Merge(body))
        .await
        .with_context(|| format!("patch status of {r}"))?;
    Ok(obj.resource_version().unwrap_or_default())
}

fn data_of_secret(s: &Secret) -> Data {
    let mut data: Data = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    // An API server that does not fold stringData into data still means it.
    data.extend(s.string_data.clone().unwrap_or_default());
    data
}

fn data_of_config_map(c: &ConfigMap) -> Data {
    let mut data: Data = c
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    data.extend(c.data.clone().unwrap_or_default());
    data
}

/// What pods read of one kind.
fn of_kind(sources: &mut Sources, kind: SourceKind) -> &mut HashMap<(String, String), Arc<Data>> {
    match kind {
        SourceKind::Secret => &mut sources.secrets,
        SourceKind::ConfigMap => &mut sources.config_maps,
    }
}

/// Every object of a source store, decoded.
fn decoded<K>(store: &Store<K>, decode: fn(&K) -> Data) -> HashMap<(String, String), Arc<Data>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .state()
        .iter()
        .map(|o| (key_of(o.as_ref()), Arc::new(decode(o))))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key_of<K: Resource>(o: &K) -> (String, String) {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

fn rv_number(rv: Option<&str>) -> Option<u64> {
    rv?.parse().ok()
}

impl State {
    /// The knobs of `r`, to change: every settled workload is synced again (a knob can move
    /// one on, and settled ones are known by uid, not by name).
    fn knobs_mut(&mut self, r: WorkloadRef) -> &mut Knobs {
        self.quiet.clear();
        self.knobs.entry(r).or_default()
    }

    fn reindex(&mut self) {
        self.live = self
            .workloads
            .values()
            .flat_map(|t| t.pods.iter())
            .map(|p| (p.pod.uid.clone(), Arc::new(p.pod.clone())))
            .collect();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// What pods read, with the changes the watches queued since the last pass applied.
    fn sources(&self, stores: &Stores) -> MutexGuard<'_, Sources> {
        let changes = std::mem::take(&mut *lock(&self.source_changes));
        let mut sources = lock(&self.sources);
        for change in changes {
            match change {
                SourceChange::Put(kind, key, data) => {
                    of_kind(&mut sources, kind).insert(key, data);
                }
                SourceChange::Gone(kind, key) => {
                    of_kind(&mut sources, kind).remove(&key);
                }
                // Later changes in the queue are in the store already; applied again after
                // this, they change nothing.
                SourceChange::Relisted(kind) => {
                    *of_kind(&mut sources, kind) = match kind {
                        SourceKind::Secret => decoded(&stores.secrets, data_of_secret),
                        SourceKind::ConfigMap => decoded(&stores.config_maps, data_of_config_map),
                    };
                }
            }
        }
        sources
    }

    fn tick(&self, stores: &Stores, now: DateTime<Utc>) -> (Vec<Write>, Vec<Op>) {
        let sources = self.sources(stores);
        let sources = &*sources;
        let terminating: HashSet<String> = stores
            .namespaces
            .state()
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .map(|n| n.name_any())
            .collect();
        let tick = Tick { sources, now };
        let mut st = self.lock();
        st.pass += 1;
        if let Some(pods) = &stores.pods {
            self.observe_pods(&mut st, pods, now);
        }
        let mut live = BTreeSet::new();
        let mut writes = Vec::new();
        for d in stores.deployments.state() {
            if let Some(w) = self.sync_one(
                &mut st,
                &mut live,
                &terminating,
                d.as_ref(),
                &tick,
                Self::sync_deployment,
            ) {
                writes.push(w);
            }
        }
        for s in stores.statefulsets.state() {
            if let Some(w) = self.sync_one(
                &mut st,
                &mut live,
                &terminating,
                s.as_ref(),
                &tick,
                Self::sync_statefulset,
            ) {
                writes.push(w);
            }
        }
        for d in stores.daemonsets.state() {
            if let Some(w) = self.sync_one(
                &mut st,
                &mut live,
                &terminating,
                d.as_ref(),
                &tick,
                Self::sync_daemonset,
            ) {
                writes.push(w);
            }
        }
        for j in stores.jobs.state() {
            if let Some(w) = self.sync_one(
                &mut st,
                &mut live,
                &terminating,
                j.as_ref(),
                &tick,
                Self::sync_job,
            ) {
                writes.push(w);
            }
        }
        if let Some(pods) = &stores.pods {
            self.sync_bare_pods(&mut st, &mut live, &terminating, pods, &tick);
        }
        Self::sync_cronjobs(&mut st, stores, &terminating, now);
        for rs in stores.replicasets.state() {
            // A Deployment's or Rollout's ReplicaSets are the simulator's own.
            let owned = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true));
            if owned {
                continue;
            }
            if let Some(w) = self.sync_one(
                &mut st,
                &mut live,
                &terminating,
                rs.as_ref(),
                &tick,
                Self::sync_replicaset,
            ) {
                writes.push(w);
            }
        }
        for o in stores.rollouts.state() {
            if let Some(w) = self.sync_rollout(&mut st, &mut live, &terminating, o.as_ref(), &tick)
            {
                writes.push(w);
            }
        }
        let State {
            workloads,
            quiet,
            pass,
            ..
        } = &mut *st;
        quiet.retain(|_, q| q.seen == *pass);
        workloads.retain(|r, t| {
            let q = quiet.get(&t.uid);
            t.skipped = q.is_some_and(|q| q.since < *pass);
            q.is_some() || live.contains(r)
        });
        st.reindex();
        let ops = if self.opts.api_objects {
            Self::mirror_ops(&mut st, now)
        } else {
            Vec::new()
        };
        (writes, ops)
    }

    /// Pods no simulated controller owns: the kubelet runs them as they are, nothing replaces
    /// them. Each is tracked as a workload of kind Pod with the API object's uid.
    fn sync_bare_pods(
        &self,
        st: &mut State,
        live: &mut BTreeSet<WorkloadRef>,
        terminating: &HashSet<String>,
        pods: &Store<PartialObjectMeta<Pod>>,
        tick: &Tick<'_>,
    ) {
        for p in pods.state() {
            let (ns, name) = key_of(p.as_ref());
            if terminating.contains(&ns) || controlled_here(&p.metadata) {
                continue;
            }
            let Some(uid) = p.metadata.uid.clone() else {
                continue;
            };
            let r = WorkloadRef::new(WorkloadKind::Pod, &ns, &name);
            if st.workloads.get(&r).is_some_and(|t| t.uid == uid) {
                live.insert(r);
            } else if p.metadata.deletion_timestamp.is_none() && st.adopting.insert(uid.clone()) {
                // Its spec is read once, by a GET (the watch holds metadata only).
                st.to_bind.push(Op::AdoptPod {
                    namespace: ns,
                    name,
                    uid,
                });
            }
        }
        let kubelet = self.kubelet(Knobs::default(), tick);
        for (r, t) in st.workloads.iter_mut() {
            if r.kind != WorkloadKind::Pod {
                continue;
            }
            t.kubelet_pass(kubelet);
            if t.pods.is_empty() {
                live.remove(r);
            } else {
                live.insert(r.clone());
            }
        }
    }

    /// An Argo Rollout: its pause step, `restartAt`, then the rolling logic; status as Argo
    /// writes it.
    fn sync_rollout(
        &self,
        st: &mut State,
        live: &mut BTreeSet<WorkloadRef>,
        terminating: &HashSet<String>,
        o: &DynamicObject,
        tick: &Tick<'_>,
    ) -> Option<Write> {
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let name = o.metadata.name.clone().unwrap_or_default();
        if o.metadata.deletion_timestamp.is_some() || terminating.contains(&ns) {
            return None;
        }
        let r = WorkloadRef::new(WorkloadKind::Rollout, &ns, &name);
        live.insert(r.clone());
        let uid = o.metadata.uid.clone().unwrap_or_default();
        let knobs = st.knobs.get(&r).copied().unwrap_or_default();
        let t = st
            .workloads
            .entry(r.clone())
            .or_insert_with(|| Tracked::new(uid.clone()));
        if t.uid != uid {
            *t = Tracked::new(uid.clone());
        }
        let kubelet = self.kubelet(knobs, tick);
        t.kubelet_pass(kubelet);
        let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
        let plain = rollout::as_deployment(o, false)?;
        let hash = DeploymentInput::from_object(&plain, 600).revision;
        // A new template (not the first, not a restart) meets the canary's pause step first.
        if t.paused_hash != hash {
            t.paused_hash = hash.clone();
            t.pause_seen = false;
            t.pause = match (t.stable_hash.is_empty(), rollout::first_pause(&spec)) {
                (false, Some(None)) => rollout::Pause::Indefinite { since: tick.now },
                (false, Some(Some(d))) => rollout::Pause::Until {
                    since: tick.now,
                    until: tick.now + chrono::Duration::from_std(d).unwrap_or_default(),
                },
                _ => rollout::Pause::Done,
            };
        }
        // Promoted: the pause conditions we wrote were stored, and are gone now.
        if matches!(t.pause, rollout::Pause::Indefinite { .. }) && !rollout::promoted(o) {
            t.pause_seen = true;
        }
        t.pause = match std::mem::take(&mut t.pause) {
            rollout::Pause::Indefinite { .. } if t.pause_seen && rollout::promoted(o) => {
                rollout::Pause::Done
            }
            rollout::Pause::Until { until, .. } if tick.now >= until => rollout::Pause::Done,
            p => p,
        };
        let holding = matches!(
            t.pause,
            rollout::Pause::Indefinite { .. } | rollout::Pause::Until { .. }
        );
        let d = rollout::as_deployment(o, holding)?;
        // restartAt: one pod started before it goes at a time, while the rest are available.
        let restart = rollout::restart_at(o).filter(|at| *at <= tick.now);
        if let Some(at) = restart {
            let old: Vec<String> = t
                .pods
                .iter()
                .filter(|p| !p.terminating() && p.pod.created_at < at)
                .map(|p| p.pod.name.clone())
                .collect();
            let all_ready = t.pods.iter().all(|p| p.pod.ready && !p.terminating());
            match old.first() {
                Some(victim) if all_ready => {
                    let del = Action::Delete {
                        pod: victim.clone(),
                    };
                    self.apply(t, &r, &[del], knobs, &hash, tick.now);
                }
                Some(_) => {}
                None => t.restarted_at = Some(at),
            }
        }
        let (_, current) = self.sync_rolling(WorkloadKind::Rollout, &d, t, knobs, tick);
        t.start_new(kubelet);
        let dstatus = t.deployment_status.clone().unwrap_or_default();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if dstatus.updated_replicas.unwrap_or(0) == want
            && dstatus.available_replicas.unwrap_or(0) == want
            && dstatus.replicas.unwrap_or(0) == want
        {
            t.stable_hash = current.clone();
        }
        let selector = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let status = rollout::status(
            o,
            &dstatus,
            &current,
            &t.stable_hash,
            &t.pause,
            t.restarted_at,
            &selector,
            tick.now,
        );
        let patch = serde_json::json!({ "status": status });
        // Conditions carry times that change every pass: compare without them.
        let comparable = |v: &Value| {
            let mut v = v.clone();
            if let Some(c) = v.pointer_mut("/status/conditions") {
                *c = Value::Null;
            }
            v
        };
        let changed = t
            .written
            .as_ref()
            .is_none_or(|(last, _)| comparable(last) != comparable(&patch));
        // Ours changed, or nobody's is stored (a simulator restart).
        if !changed && o.data.get("status").is_some() {
            return None;
        }
        Some(Write {
            workload: r,
            uid,
            patch,
        })
    }

    /// The CronJob controller: Jobs when schedules fire, history trimmed, status written.
    fn sync_cronjobs(
        st: &mut State,
        stores: &Stores,
        terminating: &HashSet<String>,
        now: DateTime<Utc>,
    ) {
        let jobs = stores.jobs.state();
        for c in stores.cronjobs.state() {
            let (ns, name) = key_of(c.as_ref());
            if c.metadata.deletion_timestamp.is_some() || terminating.contains(&ns) {
                continue;
            }
            let Some(uid) = c.metadata.uid.clone() else {
                continue;
            };
            let owned: Vec<&Job> = jobs
                .iter()
                .filter(|j| {
                    j.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid && o.controller == Some(true))
                })
                .map(|j| j.as_ref())
                .collect();
            let last = st.cron_last.get(&uid).copied().or_else(|| {
                c.status
                    .as_ref()
                    .and_then(|s| s.last_schedule_time.as_ref())
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
            });
            let plan = cronjob::plan(c.as_ref(), &owned, last, now);
            for body in plan.create {
                st.to_bind.push(Op::CreateJob {
                    namespace: ns.clone(),
                    body,
                });
            }
            for job in plan.delete {
                st.to_bind.push(Op::DeleteJob {
                    namespace: ns.clone(),
                    name: job,
                });
            }
            if let Some(at) = plan.scheduled {
                st.cron_last.insert(uid.clone(), at);
                let active: Vec<Value> = owned
                    .iter()
                    .filter(|j| {
                        !j.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter()
                                    .any(|c| c.type_ == "Complete" && c.status == "True")
                            })
                    })
                    .map(|j| {
                        serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
                            "name": j.metadata.name, "namespace": ns, "uid": j.metadata.uid})
                    })
                    .collect();
                st.to_bind.push(Op::CronJobStatus {
                    namespace: ns.clone(),
                    name: name.clone(),
                    status: serde_json::json!({
                        "lastScheduleTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "active": if active.is_empty() { Value::Null } else { Value::Array(active) },
                    }),
                });
            }
        }
    }

    /// A bare pod read in full: run it from now on.
    fn adopt_bare(&self, st: &mut State, p: &Pod, now: DateTime<Utc>) {
        let (ns, name) = key_of(p);
        let Some(uid) = p.metadata.uid.clone() else {
            return;
        };
        st.adopting.remove(&uid);
        if p.metadata.deletion_timestamp.is_some() {
            return;
        }
        let r = WorkloadRef::new(WorkloadKind::Pod, &ns, &name);
        let template = Arc::new(PodTemplateSpec {
            metadata: Some(::kube::api::ObjectMeta {
                labels: p.metadata.labels.clone(),
                annotations: p.metadata.annotations.clone(),
                ..Default::default()
            }),
            spec: p.spec.clone(),
        });
        let node = match p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            Some(n) => n,
            None => {
                let n = self.nodes[st.workloads.len() % self.nodes.len()].clone();
                st.to_bind.push(Op::Bind {
                    key: (ObjKind::Pod, ns.clone(), name.clone()),
                    node: n.clone(),
                });
                n
            }
        };
        let rec = PodRecord::new(
            name.clone(),
            r.clone(),
            String::new(),
            None,
            node,
            template,
            false,
            now,
        );
        let mut t = Tracked::new(uid.clone());
        st.mirror
            .adopt(&(ObjKind::Pod, ns, name), &uid, rec.uid(), t.id);
        t.pods.push(rec);
        st.workloads.insert(r, t);
        self.wake.notify_one();
    }

    /// The kubelet's inputs for one workload's pods this pass.
    fn kubelet<'a>(&self, knobs: Knobs, tick: &Tick<'a>) -> Kubelet<'a> {
        Kubelet {
            sources: tick.sources,
            readiness_delay: knobs.readiness_delay.unwrap_or(self.opts.readiness_delay),
            sync_delay: self.opts.secret_sync_delay,
            now: tick.now,
        }
    }

    /// How long a deletion with `grace` seconds takes here.
    fn grace(&self, seconds: i64) -> Duration {
        let scaled = seconds.max(0) as f64 * self.opts.termination_grace_scale.max(0.0);
        Duration::from_secs_f64(scaled.min(1e9))
    }

    /// Pod deletions made through the API: a pod marked for deletion starts terminating; a pod
    /// the watch showed and no longer shows was removed (forced, or garbage-collected).
    fn observe_pods(
        &self,
        st: &mut State,
        pods: &Store<PartialObjectMeta<Pod>>,
        now: DateTime<Utc>,
    ) {
        let api: HashMap<(String, String), Arc<PartialObjectMeta<Pod>>> = pods
            .state()
            .into_iter()
            .map(|p| (key_of(p.as_ref()), p))
            .collect();
        let State {
            workloads, mirror, ..
        } = st;
        for t in workloads.values_mut() {
            t.pods.retain_mut(|rec| {
                let ns = rec.pod.workload.namespace.clone();
                let key = (ObjKind::Pod, ns.clone(), rec.pod.name.clone());
                match api.get(&(ns, rec.pod.name.clone())) {
                    // Only the object written for this very pod counts (a StatefulSet's new pod
                    // may meet its predecessor's object, still being removed).
                    Some(obj)
                        if obj.metadata.uid.is_some()
                            && mirror.object_of(&key, rec.uid()) == obj.metadata.uid.as_deref() =>
                    {
                        if let Some(uid) = obj.metadata.uid.as_deref() {
                            mirror.mark_seen(&key, uid);
                        }
                        if obj.metadata.deletion_timestamp.is_some() && !rec.terminating() {
                            let secs = obj
                                .metadata
                                .deletion_grace_period_seconds
                                .unwrap_or_else(|| rec.grace_period_seconds());
                            rec.begin_termination(now, self.grace(secs));
                        }
                        true
                    }
                    None if mirror.was_seen(&key, rec.uid()) => {
                        mirror.vanished(&key);
                        false
                    }
                    _ => true,
                }
            });
        }
    }

    /// The Pod and ReplicaSet objects the simulator's state calls for, diffed against what it
    /// wrote: the writes to make.
    fn mirror_ops(st: &mut State, now: DateTime<Utc>) -> Vec<Op> {
        let mut desired = Vec::new();
        let mut draining = HashSet::new();
        // Writes besides the mirror's diff: revision annotations, Events.
        let mut extra = Vec::new();
        let State {
            workloads,
            mirror,
            to_bind,
            ..
        } = &mut *st;
        // Workloads this pass skipped whose objects are written as they are: their entries
        // are kept as they stand, with nothing built or compared.
        let changed = mirror.take_changed();
        let mut kept = HashSet::new();
        for (r, t) in workloads.iter_mut() {
            if t.skipped && t.mirror_current && !changed.contains(&t.id) {
                kept.insert(t.id);
                continue;
            }
            // Whether every object of this workload is written as it is.
            let mut as_written = true;
            let id = t.id;
            if matches!(r.kind, WorkloadKind::Deployment | WorkloadKind::Rollout) {
                // As the Deployment controller does: the Deployment names its current revision
                // (kubectl rollout undo patches this annotation).
                let current = t.rs_revision.get(&t.current_hash).copied();
                if r.kind == WorkloadKind::Deployment && current.is_some() && t.annotated != current
                {
                    t.annotated = current;
                    if let Some(n) = current {
                        as_written = false;
                        extra.push(Op::AnnotateDeployment {
                            namespace: r.namespace.clone(),
                            name: r.name.clone(),
                            revision: n,
                        });
                    }
                }
                for (hash, revision) in &t.rs_revision {
                    let Some(template) = t.templates.get(hash) else {
                        continue;
                    };
                    let live: Vec<_> = t
                        .pods
                        .iter()
                        .filter(|p| &p.pod.revision == hash && !p.terminating())
                        .collect();
                    let ready = live.iter().filter(|p| p.pod.ready).count();
                    let view = mirror::ReplicaSetView {
                        owner_kind: r.kind,
                        deployment: &r.name,
                        namespace: &r.namespace,
                        deployment_uid: &t.uid,
                        hash,
                        revision: *revision,
                        template,
                        selector: &t.selector,
                        replicas: live.len(),
                        ready,
                        available: ready,
                    };
                    let key = (
                        ObjKind::ReplicaSet,
                        r.namespace.clone(),
                        format!("{}-{hash}", r.name),
                    );
                    let fingerprint = mirror::replica_set_fingerprint(&view);
                    let (body, status, spec) = if mirror.is_current(&key, "", fingerprint) {
                        (Value::Null, Value::Null, None)
                    } else {
                        as_written = false;
                        let (body, status, patch) = mirror::replica_set_object(&view);
                        (body, status, Some(patch))
                    };
                    desired.push(Desired {
                        owner: id,
                        sim_uid: String::new(),
                        fingerprint,
                        key,
                        body,
                        status,
                        spec,
                    });
                }
            }
            for rec in t.pods.iter_mut() {
                let key = (ObjKind::Pod, r.namespace.clone(), rec.pod.name.clone());
                // Events once the object exists, as the scheduler and kubelet write them.
                if let Some(uid) = mirror.object_of(&key, rec.uid()).map(str::to_owned) {
                    for e in rec.due_events() {
                        as_written = false;
                        extra.push(Op::Event {
                            namespace: r.namespace.clone(),
                            body: mirror::pod_event(rec, &uid, e, now),
                        });
                    }
                }
                let rec = &*rec;
                let owner = match r.kind {
                    WorkloadKind::Deployment | WorkloadKind::Rollout => mirror.uid_of(&(
                        ObjKind::ReplicaSet,
                        r.namespace.clone(),
                        format!("{}-{}", r.name, rec.pod.revision),
                    )),
                    WorkloadKind::StatefulSet
                    | WorkloadKind::DaemonSet
                    | WorkloadKind::Job
                    | WorkloadKind::ReplicaSet
                    | WorkloadKind::Pod => Some(t.uid.clone()),
                };
                let Some(owner) = owner else {
                    as_written = false;
                    continue;
                };
                let key = (ObjKind::Pod, r.namespace.clone(), rec.pod.name.clone());
                if rec.terminating() {
                    draining.insert(key.clone());
                }
                let fingerprint = mirror::pod_fingerprint(rec, &owner);
                let (body, status) = if mirror.is_current(&key, rec.uid(), fingerprint) {
                    (Value::Null, Value::Null)
                } else {
                    as_written = false;
                    mirror::pod_object(rec, &owner)
                };
                desired.push(Desired {
                    owner: id,
                    key,
                    sim_uid: rec.uid().to_owned(),
                    fingerprint,
                    body,
                    status,
                    spec: None,
                });
            }
            t.mirror_current = as_written;
        }
        let mut ops = std::mem::take(to_bind);
        ops.extend(mirror.plan(desired, &draining, &kept));
        ops.extend(extra);
        ops
    }

    /// Common part of a workload sync: identity, deletion, kubelet pass, timeline, write decision.
    fn sync_one<K>(
        &self,
        st: &mut State,
        live: &mut BTreeSet<WorkloadRef>,
        terminating: &HashSet<String>,
        obj: &K,
        tick: &Tick<'_>,
        sync: fn(&Self, &K, &mut Tracked, Knobs, &Tick<'_>) -> (Value, String),
    ) -> Option<Write>
    where
        K: Resource<DynamicType = ()> + StatusOf,
    {
        let meta = obj.meta();
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        // Deleting objects and terminating namespaces lose their pods and get no status.
        if meta.deletion_timestamp.is_some() || terminating.contains(namespace) {
            return None;
        }
        let uid = meta.uid.as_deref().unwrap_or_default();
        let rv = meta.resource_version.as_deref().unwrap_or_default();
        // Settled and unchanged: nothing to do, nothing built (a pass meets thousands).
        let pass = st.pass;
        if let Some(q) = st.quiet.get_mut(uid).filter(|q| q.resource_version == rv) {
            q.seen = pass;
            return None;
        }
        let r = WorkloadRef::new(K::KIND, namespace, meta.name.as_deref().unwrap_or_default());
        let knobs = st.knobs.get(&r).copied().unwrap_or_default();
        let unchanged = |s: &Settled| s.resource_version == rv && s.knobs == knobs;
        live.insert(r.clone());
        let uid = uid.to_owned();
        let rv = rv.to_owned();
        let tracked = st
            .workloads
            .entry(r.clone())
            .or_insert_with(|| Tracked::new(uid.clone()));
        if tracked.uid != uid {
            *tracked = Tracked::new(uid.clone());
        }
        let kubelet = self.kubelet(knobs, tick);
        tracked.kubelet_pass(kubelet);
        let podless = tracked.pods.is_empty();
        let (patch, update_revision) = sync(self, obj, tracked, knobs, tick);
        tracked.start_new(kubelet);
        // A write still to make (or to retry) is not settled.
        let needs_write = self.needs_write(obj, tracked, &patch);
        tracked.settled = (podless && tracked.pods.is_empty() && !rv.is_empty()).then(|| {
            let before = tracked
                .settled
                .as_ref()
                .filter(|s| unchanged(s))
                .map_or(0, |s| s.quiet);
            Settled {
                resource_version: rv.clone(),
                knobs,
                quiet: if needs_write { 0 } else { (before + 1).min(2) },
            }
        });
        if tracked.settled.as_ref().is_some_and(|s| s.quiet >= 2) {
            st.quiet.insert(
                uid.clone(),
                Quiet {
                    resource_version: rv.clone(),
                    since: pass,
                    seen: pass,
                },
            );
        } else {
            st.quiet.remove(&uid);
        }
        let counted = || tracked.pods.iter().filter(|p| !p.terminating());
        let sample = CountSample {
            at: tick.now,
            total: counted().count(),
            ready: counted().filter(|p| p.pod.ready).count(),
            available: counted()
                .filter(|p| p.is_available(K::min_ready_seconds(obj), tick.now))
                .count(),
            updated: counted()
                .filter(|p| p.pod.revision == update_revision)
                .count(),
        };
        let write = needs_write.then(|| Write {
            workload: r.clone(),
            uid,
            patch,
        });
        let timeline = st.timelines.entry(r).or_default();
        let changed = timeline.last().is_none_or(|l| {
            (l.total, l.ready, l.available, l.updated)
                != (sample.total, sample.ready, sample.available, sample.updated)
        });
        if changed && timeline.len() < TIMELINE_CAP {
            timeline.push(sample);
        }
        write
    }

    /// Write when the status differs from our last write, or when someone else changed the
    /// stored status after it.
    fn needs_write<K: Resource + StatusOf>(
        &self,
        obj: &K,
        tracked: &Tracked,
        patch: &Value,
    ) -> bool {
        match &tracked.written {
            None => true,
            Some((last, _)) if last != patch => true,
            Some((_, rv)) => {
                let newer = match (
                    rv_number(obj.meta().resource_version.as_deref()),
                    rv_number(Some(rv)),
                ) {
                    (Some(seen), Some(ours)) => seen > ours,
                    _ => false,
                };
                newer && !obj.status_matches(patch)
            }
        }
    }

    fn create_pod(
        &self,
        tracked: &mut Tracked,
        r: &WorkloadRef,
        action: &Action,
        knobs: Knobs,
        fallback: &str,
        now: DateTime<Utc>,
    ) {
        let Action::Create {
            revision,
            ordinal,
            node,
        } = action
        else {
            return;
        };
        // A revision whose template is unknown (e.g. from before a simulator restart) falls back
        // to the current template.
        let (revision, template) = match tracked.templates.get(revision) {
            Some(t) => (revision.clone(), t.clone()),
            None => match tracked.templates.get(fallback) {
                Some(t) => (fallback.to_owned(), t.clone()),
                None => return,
            },
        };
        let name = match (r.kind, ordinal) {
            (_, Some(o)) => format!("{}-{o}", r.name),
            (WorkloadKind::Deployment | WorkloadKind::Rollout, None) => {
                format!("{}-{revision}-{}", r.name, random_suffix(5))
            }
            _ => format!("{}-{}", r.name, random_suffix(5)),
        };
        let node = node.clone().unwrap_or_else(|| {
            let n = self.nodes[tracked.next_node % self.nodes.len()].clone();
            tracked.next_node += 1;
            n
        });
        tracked.pods.push(PodRecord::new(
            name,
            r.clone(),
            revision,
            *ordinal,
            node,
            template,
            knobs.fail_new_pods,
            now,
        ));
    }

    fn apply(
        &self,
        tracked: &mut Tracked,
        r: &WorkloadRef,
        actions: &[Action],
        knobs: Knobs,
        fallback: &str,
        now: DateTime<Utc>,
    ) {
        for a in actions {
            match a {
                Action::Delete { pod } => {
                    let grace = tracked
                        .pods
                        .iter()
                        .find(|p| &p.pod.name == pod)
                        .map(|p| self.grace(p.grace_period_seconds()));
                    match grace {
                        Some(g) if !g.is_zero() => {
                            if let Some(p) = tracked.pods.iter_mut().find(|p| &p.pod.name == pod) {
                                p.begin_termination(now, g);
                            }
                        }
                        _ => tracked.pods.retain(|p| &p.pod.name != pod),
                    }
                }
                Action::Create { .. } => self.create_pod(tracked, r, a, knobs, fallback, now),
            }
        }
    }

    /// What the controllers plan with: Terminating pods no longer count, as with the real ones.
    fn summaries(tracked: &Tracked, min_ready_seconds: i32, now: DateTime<Utc>) -> Vec<PodSummary> {
        tracked
            .pods
            .iter()
            .filter(|p| !p.terminating())
            .map(|p| p.summary(min_ready_seconds, now))
            .collect()
    }

    fn sync_deployment(
        &self,
        d: &Deployment,
        tracked: &mut Tracked,
        knobs: Knobs,
        tick: &Tick<'_>,
    ) -> (Value, String) {
        self.sync_rolling(WorkloadKind::Deployment, d, tracked, knobs, tick)
    }

    /// The Deployment controller's logic, for Deployments and Rollouts (`kind` owns the pods).
    fn sync_rolling(
        &self,
        kind: WorkloadKind,
        d: &Deployment,
        tracked: &mut Tracked,
        knobs: Knobs,
        tick: &Tick<'_>,
    ) -> (Value, String) {
        let r = WorkloadRef::new(kind, &key_of(d).0, &key_of(d).1);
        let input = DeploymentInput::from_object(d, self.opts.default_progress_deadline_seconds);
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        tracked
            .templates
            .entry(input.revision.clone())
            .or_insert_with(|| Arc::new(template));
        let before = Self::summaries(tracked, input.min_ready_seconds, tick.now);
        let exists = tracked.replica_sets.contains(&input.revision);
        let plan = deployment::plan(&input, &before, exists);
        if plan.creates_new_rs {
            tracked.replica_sets.insert(input.revision.clone());
        }
        if exists || plan.creates_new_rs {
            // The newest template's ReplicaSet carries the highest revision, also when an old
            // one is adopted again (rollout undo).
            if tracked.rs_revision.get(&input.revision) != Some(&tracked.max_revision) {
                tracked.max_revision += 1;
                tracked
                    .rs_revision
                    .insert(input.revision.clone(), tracked.max_revision);
            }
        }
        tracked.current_hash = input.revision.clone();
        tracked.selector = d
            .spec
            .as_ref()
            .and_then(|s| serde_json::to_value(&s.selector).ok())
            .unwrap_or(Value::Null);
        self.apply(tracked, &r, &plan.actions, knobs, &input.revision, tick.now);
        let after = Self::summaries(tracked, input.min_ready_seconds, tick.now);
        let old = tracked
            .deployment_status
            .clone()
            .unwrap_or_else(|| d.status.clone().unwrap_or_default());
        let status = deployment::status(
            &input,
            &after,
            &old,
            plan.creates_new_rs,
            exists || plan.creates_new_rs,
            tick.now,
        );
        let patch = status_patch::merge_patch(WorkloadKind::Deployment, &status);
        tracked.deployment_status = Some(status);
        (patch, input.revision)
    }

    fn sync_statefulset(
        &self,
        s: &StatefulSet,
        tracked: &mut Tracked,
        knobs: Knobs,
        tick: &Tick<'_>,
    ) -> (Value, String) {
        let r = WorkloadRef::new(WorkloadKind::StatefulSet, &key_of(s).0, &key_of(s).1);
        let input = StatefulSetInput::from_object(s);
        let template = s
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        tracked
            .templates
            .entry(input.update_revision.clone())
            .or_insert_with(|| Arc::new(template));
        let current = tracked
            .current_revision
            .clone()
            .unwrap_or_else(|| input.update_revision.clone());
        let before = Self::summaries(tracked, input.min_ready_seconds, tick.now);
        let mut actions = statefulset::plan(&input, &current, &before);
        // A pod's name is its ordinal's: the replacement waits until the old one is gone.
        let draining: HashSet<u32> = tracked
            .pods
            .iter()
            .filter(|p| p.terminating())
            .filter_map(|p| p.pod.ordinal)
            .collect();
        actions.retain(
            |a| !matches!(a, Action::Create { ordinal: Some(o), .. } if draining.contains(o)),
        );
        self.apply(
            tracked,
            &r,
            &actions,
            knobs,
            &input.update_revision,
            tick.now,
        );
        let after = Self::summaries(tracked, input.min_ready_seconds, tick.now);
        let (status, current) = statefulset::status(&input, &current, &after);
        tracked.current_revision = Some(current);
        (
            status_patch::merge_patch(WorkloadKind::StatefulSet, &status),
            input.update_revision,
        )
    }

    fn sync_daemonset(
        &self,
        d: &DaemonSet,
        tracked: &mut Tracked,
        knobs: Knobs,
        tick: &Tick<'_>,
    ) -> (Value, String) {
        let r = WorkloadRef::new(WorkloadKind::DaemonSet, &key_of(d).0, &key_of(d).1);
        let input = DaemonSetInput::from_object(d, self.nodes.len());
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        tracked
            .templates
            .entry(input.update_revision.clone())
            .or_insert_with(|| Arc::new(template));
        let before = Self::summaries(tracked, input.min_ready_seconds, tick.now);
        let actions = daemonset::plan(&input, &self.nodes, &before);
        self.apply(
            tracked,
            &r,
            &actions,
            knobs,
            &input.update_revision,
            tick.now,
        );
        let after = Self::summaries(tracked, input.min_ready_seconds, tick.now);
        let status = daemonset::status(&input, &self.nodes, &after);
        (
            status_patch::merge_patch(WorkloadKind::DaemonSet, &status),
            input.update_revision,
        )
    }
}

impl Inner {
    /// The Job controller: up to `parallelism` pods at a time until `completions` succeeded;
    /// each pod works for the run time once ready, then succeeds (and stays, as on a cluster).
    fn sync_job(
        &self,
        j: &Job,
        tracked: &mut Tracked,
        knobs: Knobs,
        tick: &Tick<'_>,
    ) -> (Value, String) {
        let r = WorkloadRef::new(WorkloadKind::Job, &key_of(j).0, &key_of(j).1);
        let spec = j.spec.clone().unwrap_or_default();
        tracked
            .templates
            .entry(JOB_REVISION.to_owned())
            .or_insert_with(|| Arc::new(spec.template.clone()));
        let run_for = j
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RUN_FOR_ANNOTATION))
            .and_then(|v| parse_seconds(v))
            .unwrap_or(self.opts.job_run_time);
        for p in &mut tracked.pods {
            p.finish_if_done(run_for, tick.now);
        }
        let completions = spec.completions.unwrap_or(1).max(0) as usize;
        let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
        fn count(t: &Tracked, pred: impl Fn(&PodRecord) -> bool) -> usize {
            t.pods.iter().filter(|p| pred(p)).count()
        }
        let is_active = |p: &PodRecord| p.pod.phase != PodPhase::Succeeded && !p.terminating();
        let succeeded = count(tracked, |p| p.pod.phase == PodPhase::Succeeded);
        let active = count(tracked, is_active);
        let want = parallelism.min(completions.saturating_sub(succeeded));
        for _ in active..want {
            let create = Action::Create {
                revision: JOB_REVISION.to_owned(),
                ordinal: None,
                node: None,
            };
            self.create_pod(tracked, &r, &create, knobs, JOB_REVISION, tick.now);
        }
        let ready = count(tracked, |p| p.pod.ready);
        let active = count(tracked, is_active);
        let terminating = count(tracked, |p| p.terminating());
        let start = j
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(|| deployment::time(tick.now));
        let done = succeeded >= completions;
        let completion = done.then(|| {
            j.status
                .as_ref()
                .and_then(|s| s.completion_time.clone())
                .unwrap_or_else(|| deployment::time(tick.now))
        });
        let conditions = completion.as_ref().map(|at| {
            ["SuccessCriteriaMet", "Complete"]
                .iter()
                .map(|t| JobCondition {
                    type_: (*t).to_owned(),
                    status: "True".into(),
                    reason: Some("CompletionsReached".into()),
                    message: Some("Reached expected number of succeeded pods".into()),
                    last_probe_time: Some(at.clone()),
                    last_transition_time: Some(at.clone()),
                })
                .collect::<Vec<_>>()
        });
        let nonzero = |n: usize| (n > 0).then_some(n as i32);
        let status = JobStatus {
            active: nonzero(active),
            ready: Some(ready as i32),
            succeeded: nonzero(succeeded),
            terminating: Some(terminating as i32),
            start_time: Some(start),
            completion_time: completion,
            conditions,
            ..Default::default()
        };
        (
            status_patch::merge_patch(WorkloadKind::Job, &status),
            JOB_REVISION.to_owned(),
        )
    }
}

impl Inner {
    /// The ReplicaSet controller for a ReplicaSet made directly: `spec.replicas` pods of its
    /// current template (a template change alters only pods made after it); the not-ready and
    /// newest go first on a scale-down.
    fn sync_replicaset(
        &self,
        rs: &ReplicaSet,
        tracked: &mut Tracked,
        knobs: Knobs,
        tick: &Tick<'_>,
    ) -> (Value, String) {
        let r = WorkloadRef::new(WorkloadKind::ReplicaSet, &key_of(rs).0, &key_of(rs).1);
        let spec = rs.spec.clone().unwrap_or_default();
        let template = spec.template.clone().unwrap_or_default();
        let revision = super::hash::template_hash(&template);
        tracked
            .templates
            .entry(revision.clone())
            .or_insert_with(|| Arc::new(template));
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        let mut alive: Vec<(bool, DateTime<Utc>, String)> = tracked
            .pods
            .iter()
            .filter(|p| !p.terminating())
            .map(|p| (p.pod.ready, p.pod.created_at, p.pod.name.clone()))
            .collect();
        let mut actions = Vec::new();
        if alive.len() < want {
            for _ in alive.len()..want {
                actions.push(Action::Create {
                    revision: revision.clone(),
                    ordinal: None,
                    node: None,
                });
            }
        } else {
            // Not ready first, then the newest.
            alive.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            for (_, _, name) in alive.iter().take(alive.len() - want) {
                actions.push(Action::Delete { pod: name.clone() });
            }
        }
        self.apply(tracked, &r, &actions, knobs, &revision, tick.now);
        let counted = || tracked.pods.iter().filter(|p| !p.terminating());
        let ready = counted().filter(|p| p.pod.ready).count() as i32;
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let available = counted()
            .filter(|p| p.is_available(min_ready, tick.now))
            .count() as i32;
        let replicas = counted().count() as i32;
        let nonzero = |n: i32| (n > 0).then_some(n);
        let status = k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas,
            fully_labeled_replicas: nonzero(replicas),
            ready_replicas: nonzero(ready),
            available_replicas: nonzero(available),
            observed_generation: rs.metadata.generation,
            ..Default::default()
        };
        (
            status_patch::merge_patch(WorkloadKind::ReplicaSet, &status),
            revision,
        )
    }
}

/// The one "revision" of a Job's pods.
const JOB_REVISION: &str = "job";

/// How long a Job's pods work (`30s`, `2m`), instead of [`SimulatorOptions::job_run_time`].
pub const RUN_FOR_ANNOTATION: &str = "sandbox.tokenrotator.io/run-for";

pub(super) fn parse_seconds(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (n, unit) = v.split_at(
        v.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(v.len()),
    );
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Whether a controller the simulator drives owns this pod (else it runs as a bare pod).
fn controlled_here(meta: &::kube::api::ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && matches!(
                (o.api_version.as_str(), o.kind.as_str()),
                ("apps/v1", "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch/v1", "Job")
            )
    })
}

/// Per-kind access the generic sync needs.
trait StatusOf {
    const KIND: WorkloadKind;
    fn min_ready_seconds(&self) -> i32;
    fn status_matches(&self, patch: &Value) -> bool;
}

/// `StatusOf` for a kind whose status is `K::status` and whose `spec.minReadySeconds` (if it
/// has one) gates availability.
macro_rules! status_of {
    ($k:ty, $kind:ident, min_ready) => {
        status_of!($k, $kind, |o: &$k| o
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0));
    };
    ($k:ty, $kind:ident, $min_ready:expr) => {
        impl StatusOf for $k {
            const KIND: WorkloadKind = WorkloadKind::$kind;
            fn min_ready_seconds(&self) -> i32 {
                let f: fn(&$k) -> i32 = $min_ready;
                f(self)
            }
            fn status_matches(&self, patch: &Value) -> bool {
                status_patch::matches(patch, self.status.as_ref())
            }
        }
    };
}

status_of!(Deployment, Deployment, min_ready);
status_of!(StatefulSet, StatefulSet, min_ready);
status_of!(DaemonSet, DaemonSet, min_ready);
status_of!(ReplicaSet, ReplicaSet, min_ready);
status_of!(Job, Job, |_: &Job| 0);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Option<Lane> {
        Some(Lane::Object((ObjKind::Pod, "ns".into(), name.into())))
    }

    /// Writes to one object keep their order at any concurrency; one at a time keeps the
    /// pass's order across objects too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_of_one_lane_keep_their_order() {
        let items: Vec<(&str, usize)> = (0..40).map(|i| (["a", "b", "c"][i % 3], i)).collect();
        for n in [1, 2, 10] {
            let done = Mutex::new(Vec::new());
            in_lanes(
                items.clone(),
                |(lane, _)| key(lane),
                n,
                |(lane, i)| {
                    let done = &done;
                    async move {
                        // Later items of a lane finish sooner if nothing held them back.
                        tokio::time::sleep(Duration::from_millis(40 - i as u64)).await;
                        lock(done).push((lane, i));
                    }
                },
            )
            .await;
            let done = done.into_inner().unwrap();
            assert_eq!(done.len(), items.len());
            for lane in ["a", "b", "c"] {
                let order: Vec<usize> = done.iter().filter(|d| d.0 == lane).map(|d| d.1).collect();
                let mut sorted = order.clone();
                sorted.sort();
                assert_eq!(order, sorted, "n={n}, lane {lane}");
            }
            if n == 1 {
                assert_eq!(done, items);
            } else {
                assert_ne!(done, items, "n={n}: the lanes ran at once");
            }
        }
    }
}
