//! The controller: Kubernetes and Twilio I/O around the pure state machine in
//! [`crate::rotation`]. One reconcile observes, decides, performs one action, writes status.

mod accounts;
mod copies;
mod echoes;
pub mod events;
mod execute;
pub mod failpoints;
mod listed_pod;
mod listed_secrets;
pub mod locks;
mod observe;
mod permissions;
mod pods;
pub mod preview;
mod reconcile;
mod running;
pub mod secrets;
mod staging;
pub mod subject;
mod versions;
mod workload_cache;

use crate::api::{ClusterTokenRotation, TokenRotation, STAGING_LABEL};
use crate::metrics::Metrics;
use crate::providers::CredentialKind;
use crate::twilio::{AccountLimiter, TwilioClient, TwilioConfig, TwilioError};
use accounts::Indexed;
use failpoints::Failpoints;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use locks::AccountLocks;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use subject::ResourceKey;
use workload_cache::{Change, WorkloadCache};

/// (region, edge, suppress e-mail notification) of a Twilio client.
type ClientKey = (Option<String>, Option<String>, bool);

/// A resource as our last write of it returned it (a `TokenRotation` or a
/// `ClusterTokenRotation`; the lookup downcasts to the kind asked for).
type Written = Arc<dyn std::any::Any + Send + Sync>;

/// What the reconciles know of their own writes of the resources (by namespace and name),
/// shared with the watches that see those writes come back.
#[derive(Default)]
struct OwnWrites {
    /// The resourceVersion of each resource as a reconcile last read it from the API server
    /// or wrote it, and the resource as our last write returned it.
    versions: versions::KnownVersions<ResourceKey, Written>,
    /// The watch events of our own writes that need no reconcile.
    echoes: echoes::Echoes,
}

impl OwnWrites {
    /// A watch event of a resource at `version`, already in the cache: once the cache holds
    /// our last write, the copy of it is let go; whether the event is an echo to let go too.
    fn seen(&self, key: &ResourceKey, version: Option<&str>) -> bool {
        let _ = self.versions.lookup(key, version);
        self.echoes.is_echo(key, version)
    }

    /// Keeps only what concerns the resources `live` keeps (forgetting one is always safe:
    /// its next read is a GET, its next event wakes it).
    fn retain(&self, live: impl Fn(&ResourceKey) -> bool) {
        self.versions.retain(&live);
        self.echoes.retain(&live);
    }
}

pub const CONTROLLER_NAME: &str = "token-rotator";

/// Errors that stop a reconcile before its action (observing the world, writing status). Action
/// failures are not errors: they become status conditions and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {}", crate::kube_errors::describe(.0))]
    Kube(#[from] kube::Error),
    #[error("cannot list {resource}: {}. {}", crate::kube_errors::describe(.source), crate::kube_errors::INSTALL_CRDS)]
    CrdMissing {
        resource: String,
        source: kube::Error,
    },
}

impl Error {
    /// CamelCase reason for the `reconcile_errors_total` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "Conflict",
            Error::Kube(_) => "KubernetesApiError",
            Error::CrdMissing { .. } => "CrdMissing",
        }
    }
}

/// Operator-wide settings.
#[derive(Clone, Default)]
pub struct Config {
    pub twilio: TwilioConfig,
    /// At most this many Twilio requests in flight per account, shared by every rotation
    /// (`--twilio-concurrency-per-account`; the default `Config` has no limit).
    pub twilio_limiter: AccountLimiter,
    /// Watch only these namespaces; all namespaces when empty.
    pub namespaces: Vec<String>,
    /// Reporting instance for Events (the pod name).
    pub instance: Option<String>,
    pub failpoints: Failpoints,
    pub metrics: Metrics,
    /// Where rotations that ended, held or failed are announced (nowhere by default).
    pub notifier: crate::notify::Notifier,
    /// At most this many rotations in flight at once (0: no limit); the others wait in
    /// `Pending` with `WaitingForCapacity`. Rotations in flight always go on.
    pub max_concurrent_rotations: usize,
    /// Reconciles run at once per controller (0: no limit).
    pub reconcile_concurrency: u16,
    /// Safety checks switched off, for the negative controls of the tests only.
    #[doc(hidden)]
    pub safety: SafetyOverrides,
}

/// Each field switches one safety check off. Only tests set them, to show that the same
/// scenario refuses consumer calls without the check.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SafetyOverrides {
    /// Do not re-check the target Secrets before verification and promotion.
    pub skip_target_recheck: bool,
    /// Let two resources rotate one account's Auth Token.
    pub skip_account_conflict: bool,
    /// Never hold a finalizer: deleting a resource mid-rotation orphans the rotation.
    pub skip_finalizer: bool,
    /// One field manager and one restart annotation for every resource, as before they were
    /// per resource.
    pub shared_field_manager: bool,
    /// Delete any secondary Auth Token found at Staging, as before foreign ones were kept.
    pub skip_foreign_secondary_check: bool,
    /// No Pod-level barrier: promote once the workloads rolled out, whatever pods (draining,
    /// bare, of Jobs or Rollouts, env readers under `restart: Never`) still hold the old token.
    pub skip_pod_barrier: bool,
    /// Create at Twilio without first asking whether the rotation's writes are allowed.
    pub skip_permission_preflight: bool,
    /// Let two API key rotations of one account write one Secret, or replace one key, at once
    /// (as if each wrote Secrets of its own and replaced a key of its own).
    pub skip_key_turns: bool,
    /// Wake a staging Secret's owner as kube's `owns` does: under the Secret's namespace, also
    /// a ClusterTokenRotation (a second reference to it).
    pub kube_owner_refs: bool,
    /// Let a reconcile run beside another of the same resource.
    pub skip_reconcile_guard: bool,
}

pub struct Context {
    pub client: Client,
    pub config: Config,
    pub events: events::Events,
    /// The TokenRotation caches of every watched namespace (one when watching all).
    pub stores: Vec<Indexed<TokenRotation>>,
    /// The ClusterTokenRotation cache, when the operator watches the whole cluster.
    pub cluster_store: Option<Indexed<ClusterTokenRotation>>,
    pub locks: AccountLocks,
    /// The workloads in scope, trimmed (read by rotations in flight).
    pub workloads: WorkloadCache,
    /// Wake-ups a reconcile sends to the resources its resource's change concerns.
    pub related: Related,
    /// The resources a reconcile runs for now.
    running: running::Running,
    /// One HTTP client per (region, edge, e-mail notification), built on first use.
    twilio_clients: Mutex<HashMap<ClientKey, TwilioClient>>,
    /// What the reconciles know of their own writes of the resources.
    own: Arc<OwnWrites>,
    /// Permissions the API server granted in the last seconds (the pre-Stage check).
    grants: permissions::Grants,
    /// The staging Secrets as the watch shows them.
    staging: staging::StagingCache,
}

impl Context {
    /// Waits until every resource cache has its first full list (at once afterwards).
    pub async fn caches_synced(&self) {
        for store in &self.stores {
            ready(store).await;
        }
        if let Some(store) = &self.cluster_store {
            ready(store).await;
        }
    }

    /// The resource from the cache when the cache holds exactly the version a reconcile last
    /// read fresh or wrote: then it has caught up with our own writes and the GET can be
    /// skipped. A change by anyone else since is as unseen as it would be had it come just
    /// after a GET, and the status write, which carries the version decided on, fails on it.
    /// A cache behind only by our own chain of writes gives the resource as we last wrote it
    /// (see [`versions`]).
    pub fn up_to_date<K: subject::Rotated>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<K> {
        let cached = K::cached(self, namespace, name)?;
        let key = (namespace.map(str::to_owned), name.to_owned());
        match self
            .own
            .versions
            .lookup(&key, cached.resource_version().as_deref())
        {
            versions::Lookup::Current => Some((*cached).clone()),
            versions::Lookup::Written(obj) => obj.downcast_ref::<K>().cloned(),
            versions::Lookup::Unknown => None,
        }
    }

    /// Remembers the version of a resource just read fresh.
    pub fn saw<K: subject::Rotated>(&self, obj: &K) {
        self.own
            .versions
            .record(obj.resource_key(), obj.resource_version());
    }

    /// Remembers our write that turned version `from` into `obj` (as the API server returned
    /// it). Only a write that happened, from the version last known, is kept as ours.
    pub fn wrote<K: subject::Rotated>(&self, from: Option<&str>, obj: &K) {
        let Some(to) = obj.resource_version() else {
            return;
        };
        // Kept as the cache keeps it: without the field managers, half of what a write returns.
        let mut copy = obj.clone();
        copy.meta_mut().managed_fields = None;
        self.own
            .versions
            .wrote(obj.resource_key(), from, to, Arc::new(copy));
    }

    /// Forgets a deleted resource's version.
    pub fn forget(&self, namespace: Option<&str>, name: &str) {
        let key = (namespace.map(str::to_owned), name.to_owned());
        self.own.echoes.forget(&key);
        self.own.versions.record(key, None);
    }

    /// Lets the watch event of our write of `obj` go without a reconcile (see `echoes`).
    pub fn expect_echo<K: subject::Rotated>(&self, obj: &K) {
        if let Some(version) = obj.resource_version() {
            self.own.echoes.expect(obj.resource_key(), version);
        }
    }

    /// The Twilio client for a resource: its region and edge, and whether its Auth Token
    /// changes e-mail the account's owners (`spec.authToken.suppressEmailNotification`).
    pub fn twilio(
        &self,
        region: Option<&str>,
        edge: Option<&str>,
        suppress_email_notification: bool,
    ) -> Result<TwilioClient, TwilioError> {
        let key = (
            region.map(str::to_owned),
            edge.map(str::to_owned),
            suppress_email_notification,
        );
        let mut clients = self
            .twilio_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut cfg = self.config.twilio.clone();
        cfg.region = key.0.clone().or(cfg.region);
        cfg.edge = key.1.clone().or(cfg.edge);
        cfg.suppress_email_notification = suppress_email_notification;
        let client = TwilioClient::with_limiter(
            cfg,
            self.config.metrics.twilio_observer(),
            self.config.twilio_limiter.clone(),
        )?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Waits for a store's first full list. Polled again and again: a waiter of
/// `Store::wait_until_ready` can miss its wake-up when several tasks wait on one store.
async fn ready<K>(store: &Store<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let poll = std::time::Duration::from_millis(50);
    while tokio::time::timeout(poll, store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Runs the controller until the stream ends (a shutdown signal, or the task is dropped): one
/// kube-rs Controller per watched namespace (or one for all), sharing the account locks so two
/// rotations of one Twilio account never run at once even across namespaces.
pub async fn run(client: Client, config: Config) -> Result<(), Error> {
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let workloads = WorkloadCache::new(&scopes);
    let related = Related::default();
    let own = Arc::new(OwnWrites::default());
    let wakes = Wakes {
        workloads: &workloads,
        related: &related,
        own: &own,
        kube_owner_refs: config.safety.kube_owner_refs,
    };
    let mut controllers = Vec::new();
    let mut stores = Vec::new();
    let mut staging_stores = Vec::new();
    for scope in &scopes {
        let trs: Api<TokenRotation> = scoped_api(&client, scope);
        // This controller's watch of the staging Secrets also keeps the cache they are read
        // from (it covers the cluster resources' too: same label, same scope).
        let (store, writer) = kube::runtime::reflector::store();
        staging_stores.push((scope.clone(), store));
        let staging = Staging::Cached(writer);
        let (controller, store) = controller_for(&client, trs, scope, staging, &wakes).await?;
        controllers.push(controller);
        stores.push(store);
    }
    // ClusterTokenRotations write into many namespaces: only an operator that watches the
    // whole cluster (and has the cluster-wide RBAC for it) reconciles them.
    let (cluster, cluster_store) = if config.namespaces.is_empty() {
        let all = Api::all(client.clone());
        let (controller, store) =
            controller_for(&client, all, &None, Staging::Watched, &wakes).await?;
        (Some(controller), Some(store))
    } else {
        (None, None)
    };
    let ctx = Arc::new(Context {
        events: events::Events::new(
            client.clone(),
            CONTROLLER_NAME.into(),
            config.instance.clone(),
        ),
        stores,
        cluster_store,
        client,
        config,
        locks: AccountLocks::default(),
        workloads,
        related,
        running: running::Running::default(),
        twilio_clients: Mutex::new(HashMap::new()),
        own,
        grants: permissions::Grants::default(),
        staging: staging::StagingCache::new(staging_stores),
    });
    let runs = controllers
        .into_iter()
        .map(|controller| drive(controller, ctx.clone()));
    let cluster_run = async {
        if let Some(controller) = cluster {
            drive(controller, ctx.clone()).await;
        }
    };
    tokio::select! {
        _ = futures::future::join(futures::future::join_all(runs), cluster_run) => {},
        () = prune_deleted(&ctx) => {},
        () = ctx.workloads.run(ctx.client.clone()) => {},
    }
    Ok(())
}

fn scoped_api<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// How a controller watches the staging Secrets: keeping a cache of them, or only to be woken.
enum Staging {
    Cached(kube::runtime::reflector::store::Writer<Secret>),
    Watched,
}

/// What wakes (or does not wake) the reconciles of every controller.
struct Wakes<'a> {
    workloads: &'a WorkloadCache,
    related: &'a Related,
    own: &'a Arc<OwnWrites>,
    /// Staging Secrets name their owner as kube's `owns` does (the negative control).
    kube_owner_refs: bool,
}

/// A controller for `K` (after checking its CRD is installed), also woken by changes to its
/// staging Secrets, to the workloads that its in-flight rotations wait on, and to the other
/// resources that concern it (announced by their reconciles, see [`Related`]), but not by the
/// echoes of its own waits; and the cache of `K` it keeps.
async fn controller_for<K: subject::Rotated>(
    client: &Client,
    api: Api<K>,
    scope: &Option<String>,
    staging: Staging,
    wakes: &Wakes<'_>,
) -> Result<(Controller<K>, Indexed<K>), Error> {
    let Wakes {
        workloads,
        related,
        own,
        kube_owner_refs,
    } = *wakes;
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(|source| match source {
            e if crate::kube_errors::resource_missing(&e) => Error::CrdMissing {
                resource: K::plural(&()).into_owned(),
                source: e,
            },
            e => Error::Kube(e),
        })?;
    // The field managers (a tree naming every field of spec and status) are never read: the
    // cache keeps none. Absent, not empty, in what a status write sends back, they stay as
    // they are (an API server ignores an absent or empty list).
    let events = {
        use kube::runtime::WatchStreamExt;
        watcher(api, watcher::Config::default())
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
    };
    let (cache, applied) = Indexed::of(events);
    // The echoes of our own waits' status writes wake nothing (see `echoes`).
    let applied = {
        let own = own.clone();
        applied.filter(move |o| {
            let echo = o
                .as_ref()
                .is_ok_and(|o| own.seen(&o.resource_key(), o.resource_version().as_deref()));
            futures::future::ready(!echo)
        })
    };
    let store = (*cache).clone();
    let controller = Controller::for_stream(applied, store.clone());
    let controller = controller.reconcile_on(woken_by_related(related, store.clone()));
    // Staging Secrets carry an owner reference: their changes wake their rotation.
    let secrets = scoped_api::<Secret>(client, scope);
    let labelled = watcher::Config::default().labels(STAGING_LABEL);
    let controller = match staging {
        Staging::Cached(writer) => {
            use kube::runtime::WatchStreamExt;
            // The cache is read for the data and checked by the version: the field managers,
            // half of each object, are not kept.
            let trimmed =
                watcher(secrets, labelled).modify(|s: &mut Secret| s.managed_fields_mut().clear());
            let changes = kube::runtime::reflector(writer, trimmed)
                .default_backoff()
                .touched_objects();
            controller.watches_stream(changes, move |s| owners::<K>(&s, kube_owner_refs))
        }
        Staging::Watched => {
            controller.watches(secrets, labelled, move |s| owners::<K>(&s, kube_owner_refs))
        }
    };
    // Workload changes (rollout progress) wake the rotations waiting on that namespace at
    // once, instead of at the next poll; the shared cache watches them.
    Ok((
        controller.reconcile_on(woken_by_workloads(workloads, store)),
        cache,
    ))
}

/// The resources of kind `K` that own `secret` (its staging Secret). Not kube's `owns`: that
/// gives a cluster-scoped owner the Secret's namespace, its store still finds the owner by
/// that reference, and its runner, taking `shop/shared` and `shared` for two objects, then
/// reconciled one ClusterTokenRotation twice at once.
/// (`kube_owner_refs`: as kube's `owns` does, for the negative control.)
fn owners<K: subject::Rotated>(secret: &Secret, kube_owner_refs: bool) -> Vec<ObjectRef<K>> {
    let ns = if K::NAMESPACED || kube_owner_refs {
        secret.namespace()
    } else {
        None
    };
    secret
        .owner_references()
        .iter()
        .filter_map(|o| ObjectRef::from_owner_ref(ns.as_deref(), o, ()))
        .collect()
}

/// The rotations in flight that each workload change concerns (all of them when the receiver
/// fell behind and changes were lost).
fn woken_by_workloads<K: subject::Rotated>(
    workloads: &WorkloadCache,
    store: Store<K>,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static {
    use tokio::sync::broadcast::error::RecvError;
    let changes = futures::stream::unfold(workloads.subscribe(), |mut rx| async move {
        match rx.recv().await {
            Ok(change) => Some((Some(change), rx)),
            Err(RecvError::Lagged(_)) => Some((None, rx)),
            Err(RecvError::Closed) => None,
        }
    });
    changes.flat_map(move |c| futures::stream::iter(in_flight_over(&store, c.as_ref())))
}

/// The rotations in flight that `change` concerns (every one in flight for `None`); idle ones
/// ignore workload churn, and so do those in flight over other workloads: with ten rotations
/// in a namespace, each rollout step woke all ten.
fn in_flight_over<K: subject::Rotated>(
    store: &Store<K>,
    change: Option<&Change>,
) -> Vec<ObjectRef<K>> {
    store
        .state()
        .iter()
        .filter(|r| r.flying())
        .filter(|r| change.is_none_or(|c| concerns(r.as_ref(), c)))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Whether a workload change concerns rotation `r`: in a namespace it covers, the workload,
/// before or after the change, is one of its dependents or reads one of its Secrets (its pods
/// count at the Pod-level barrier even when `spec.workloads` names others). A dependent that
/// stops reading the Secret, or is deleted, ends a wait as much as one that rolls out. After
/// a relist, any workload may have changed.
fn concerns<K: subject::Rotated>(r: &K, change: &Change) -> bool {
    if !r.covers(change.namespace()) {
        return false;
    }
    match change {
        Change::Namespace(_) => true,
        Change::One { before, after, .. } => {
            let spec = r.effective_spec();
            [before, after].into_iter().flatten().any(|w| {
                spec.secrets.iter().any(|t| w.secrets.contains(&t.name))
                    || spec.workloads.as_ref().is_some_and(|ws| {
                        crate::workloads::depends_on(Some(ws), std::iter::empty(), w)
                    })
            })
        }
    }
}

/// Runs one controller's reconciles until its stream ends.
async fn drive<K: subject::Rotated>(controller: Controller<K>, ctx: Arc<Context>) {
    let config =
        kube::runtime::controller::Config::default().concurrency(ctx.config.reconcile_concurrency);
    controller
        .with_config(config)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(resource = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

/// The resources of kind `K` a change of `changed` concerns: the others rotating the same
/// account's Auth Token (one owner per account: a conflict is seen, and a junk claimant's
/// credentials checked, at once), and the ones waiting for a place it may have freed.
fn concerned<K: subject::Rotated, W: subject::Rotated>(
    store: &Indexed<K>,
    changed: &W,
) -> Vec<ObjectRef<K>> {
    // Whose credential has one owner per account, by the spec it rotates with now.
    let owns = |spec: &crate::api::TokenRotationSpec| {
        CredentialKind::of(spec).is_some_and(CredentialKind::one_owner_per_account)
    };
    let spec = changed.effective_spec();
    let mut woken: Vec<ObjectRef<K>> = if owns(spec) {
        store
            .on_account(spec)
            .iter()
            .filter(|r| r.uid() != changed.uid())
            .filter(|r| owns(r.effective_spec()))
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect()
    } else {
        Vec::new()
    };
    woken.extend(waiters_woken_by(store, changed));
    woken
}

/// A resource to reconcile: (kind, namespace, name).
type Woken = (&'static str, Option<String>, String);

/// Wake-ups between resources. Each controller watches only its own kind; the reconcile of a
/// resource that changed announces the resources its change concerns ([`concerned`]), once
/// per version, and each controller reconciles those of its kind. One watch per kind then
/// serves every controller, instead of a watch per kind per controller.
#[derive(Clone)]
pub struct Related {
    tx: tokio::sync::broadcast::Sender<Woken>,
    /// The version of each resource whose change was last announced, by (kind, ns, name).
    announced: Arc<Mutex<HashMap<Woken, String>>>,
}

impl Default for Related {
    fn default() -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(1024).0,
            announced: Arc::default(),
        }
    }
}

impl Related {
    /// Wakes the resources the current version of `changed` concerns, unless this version was
    /// announced already (two resources on one account would otherwise wake each other for
    /// ever).
    pub fn announce<W: subject::Rotated>(
        &self,
        stores: &[Indexed<TokenRotation>],
        cluster_store: Option<&Indexed<ClusterTokenRotation>>,
        changed: &W,
    ) {
        let key: Woken = (W::KIND_NAME, changed.namespace(), changed.name_any());
        let version = changed.resource_version().unwrap_or_default();
        {
            let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            if announced.get(&key) == Some(&version) {
                return;
            }
            announced.insert(key, version);
        }
        let mut woken: Vec<Woken> = Vec::new();
        for store in stores {
            woken.extend(concerned(store, changed).into_iter().map(woken_ref));
        }
        if let Some(store) = cluster_store {
            woken.extend(concerned(store, changed).into_iter().map(woken_ref));
        }
        for w in woken {
            // No receiver: no controller runs (shutting down).
            let _ = self.tx.send(w);
        }
    }

    /// Forgets a deleted resource.
    pub fn forget<W: subject::Rotated>(&self, namespace: Option<&str>, name: &str) {
        let key: Woken = (W::KIND_NAME, namespace.map(str::to_owned), name.to_owned());
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        announced.remove(&key);
    }
}

fn woken_ref<K: subject::Rotated>(r: ObjectRef<K>) -> Woken {
    (K::KIND_NAME, r.namespace, r.name)
}

/// The resources of kind `K` that other reconciles announced (see [`Related`]).
fn woken_by_related<K: subject::Rotated>(
    related: &Related,
    store: Store<K>,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static {
    let announced = futures::stream::unfold(related.tx.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(w) => return Some((w, rx)),
                // Lost wake-ups are made up by each resource's own poll.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    announced.filter_map(move |(kind, ns, name)| {
        let r = (kind == K::KIND_NAME).then(|| {
            let r = ObjectRef::<K>::new(&name);
            match ns {
                Some(ns) => r.within(&ns),
                None => r,
            }
        });
        // Only resources this controller holds (a namespace-scoped controller sees its own).
        futures::future::ready(r.filter(|r| store.get(r).is_some()))
    })
}

/// A resource that is idle and not itself waiting may have just ended a rotation: that frees
/// its account and a place under `--max-concurrent-rotations`, so the resources waiting for
/// either start now rather than at their next poll.
fn waiters_woken_by<K: subject::Rotated, W: subject::Rotated>(
    store: &Indexed<K>,
    changed: &W,
) -> Vec<ObjectRef<K>> {
    use crate::rotation::reasons::WAITING_FOR_ACCOUNT;
    let status = changed.rotation_status();
    let idle = status.is_none_or(|s| s.rotation.is_none());
    if !idle || waiting_for(status).is_some() {
        return Vec::new();
    }
    let same_account = store
        .on_account(changed.effective_spec())
        .into_iter()
        .filter(|r| waiting_for(r.rotation_status()) == Some(WAITING_FOR_ACCOUNT));
    same_account
        .chain(store.waiting_for_capacity())
        .filter(|r| r.uid() != changed.uid())
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// What a resource that is due waits for before it starts, by its `Rotating` condition: its
/// account (`WaitingForAccount`) or a place (`WaitingForCapacity`).
fn waiting_for(s: Option<&crate::api::TokenRotationStatus>) -> Option<&str> {
    use crate::rotation::reasons::{WAITING_FOR_ACCOUNT, WAITING_FOR_CAPACITY};
    s.and_then(|s| {
        crate::rotation::conditions::get(&s.conditions, crate::api::conditions::ROTATING)
    })
    .map(|c| c.reason.as_str())
    .filter(|r| *r == WAITING_FOR_ACCOUNT || *r == WAITING_FOR_CAPACITY)
}

/// Forgets deleted TokenRotations: their metric series and any account lock they held. Only a
/// rotation in flight holds a finalizer, so the deletion of an idle resource triggers no
/// reconcile: the caches tell.
async fn prune_deleted(ctx: &Context) {
    ctx.caches_synced().await;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        // One walk of the caches: (metrics series, lock holder, resource key) of every live
        // resource.
        let live: Vec<(String, crate::rotation::Holder, ResourceKey)> = ctx
            .stores
            .iter()
            .flat_map(|s| s.state())
            .map(|o| live_entry(o.as_ref()))
            .chain(
                ctx.cluster_store
                    .iter()
                    .flat_map(|s| s.state())
                    .map(|o| live_entry(o.as_ref())),
            )
            .collect();
        let series: std::collections::HashSet<&str> =
            live.iter().map(|(s, _, _)| s.as_str()).collect();
        let holders: std::collections::HashSet<&crate::rotation::Holder> =
            live.iter().map(|(_, h, _)| h).collect();
        let keys: std::collections::HashSet<&ResourceKey> =
            live.iter().map(|(_, _, k)| k).collect();
        ctx.config
            .metrics
            .retain(|ns, name| series.contains(format!("{ns}/{name}").as_str()));
        ctx.locks.retain_holders(|holder| holders.contains(holder));
        // What we know of our writes of deleted resources (no reconcile may see them go).
        ctx.own.retain(|key| keys.contains(key));
    }
}

/// A live resource's metrics series (`namespace/name`), lock holder and key.
fn live_entry<K: subject::Rotated>(o: &K) -> (String, crate::rotation::Holder, ResourceKey) {
    let ((ns, holder), key) = (o.identity(), o.resource_key());
    (format!("{ns}/{}", key.1), holder, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;

    /// Our write's watch event lets the copy of the write go (the cache holds it now), and,
    /// when a waiting reconcile expected it, wakes nothing; anyone else's event wakes.
    #[test]
    fn the_watch_event_of_our_write_lets_its_copy_go() {
        let own = OwnWrites::default();
        let key = (Some("shop".to_owned()), "twilio".to_owned());
        let copy: Written = Arc::new(7_u8);
        own.versions.record(key.clone(), Some("1".into()));
        own.versions.wrote(key.clone(), Some("1"), "2".into(), copy);
        own.echoes.expect(key.clone(), "2".into());
        assert!(matches!(
            own.versions.lookup(&key, Some("1")),
            versions::Lookup::Written(_)
        ));
        assert!(own.seen(&key, Some("2")), "the expected echo");
        assert!(
            matches!(
                own.versions.lookup(&key, Some("1")),
                versions::Lookup::Unknown
            ),
            "the copy is let go once the cache holds the write"
        );
        assert!(!own.seen(&key, Some("3")), "someone else's change");
        // Deleted (no longer in the cache): forgotten.
        own.echoes.expect(key.clone(), "4".into());
        own.retain(|_| false);
        assert!(matches!(
            own.versions.lookup(&key, Some("3")),
            versions::Lookup::Unknown
        ));
        assert!(!own.seen(&key, Some("4")));
    }

    fn tr(ns: &str, name: &str, in_flight: bool) -> TokenRotation {
        let mut status = serde_json::json!({"phase": "Ready"});
        if in_flight {
            status = serde_json::json!({"phase": "RollingOut", "rotation": {
                "id": "r", "trigger": "Manual", "startTime": "2026-11-23T10:00:00Z",
                "phaseStartTime": "2026-11-23T10:00:00Z", "stagingSecret": "s"}});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tokenrotator.io/v1alpha1", "kind": "TokenRotation",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"twilio": {"accountSid": format!("AC{}", "0".repeat(32)),
                                "credentialsSecretRef": {"name": "a", "key": "k"}},
                     "authToken": {}, "secrets": [{"name": "c", "tokenKey": "T"}]},
            "status": status
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_change_wakes_the_same_accounts_resources_once_per_version() {
        let (mut a, mut b) = (tr("shop", "a", true), tr("billing", "b", false));
        a.metadata.uid = Some("uid-a".into());
        b.metadata.uid = Some("uid-b".into());
        let related = Related::default();
        let mut rx = related.tx.subscribe();
        let stores = [accounts::filled(vec![a.clone(), b]).await];
        a.metadata.resource_version = Some("1".into());
        related.announce(&stores, None, &a);
        let woken = rx.try_recv().unwrap();
        assert_eq!(woken, ("TokenRotation", Some("billing".into()), "b".into()));
        assert!(
            rx.try_recv().is_err(),
            "only the other resource on the account"
        );
        // Reconciled again at the same version (a wake-up, a poll): nothing new to tell, so
        // two resources on one account do not wake each other for ever.
        related.announce(&stores, None, &a);
        assert!(rx.try_recv().is_err());
        a.metadata.resource_version = Some("2".into());
        related.announce(&stores, None, &a);
        assert!(rx.try_recv().is_ok(), "a new version is announced");
    }

    /// A Deployment named `name` whose pod template reads the Secrets `reads`.
    fn deployment(name: &str, reads: &[&str]) -> Arc<crate::workloads::Workload> {
        Arc::new(crate::workloads::Workload {
            secrets: reads.iter().map(|s| s.to_string()).collect(),
            ..crate::workloads::Workload::settled(name)
        })
    }

    fn one(
        ns: &str,
        before: Option<Arc<crate::workloads::Workload>>,
        after: Option<Arc<crate::workloads::Workload>>,
    ) -> Change {
        Change::One {
            namespace: ns.into(),
            before,
            after,
        }
    }

    #[test]
    fn workload_events_wake_only_in_flight_rotations_they_concern() {
        let (store, mut writer) = reflector::store::<TokenRotation>();
        // `tr` rotates Secret "c"; "other-secret" rotates Secret "d" in the same namespace.
        let mut other = tr("shop", "other-secret", true);
        other.spec.secrets[0].name = "d".into();
        for obj in [
            tr("shop", "rotating", true),
            tr("shop", "idle", false),
            other,
            tr("billing", "rotating-elsewhere", true),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }
        let names = |change: Option<Change>| -> Vec<String> {
            let mut v: Vec<String> = in_flight_over(&store, change.as_ref())
                .into_iter()
                .map(|r| r.name)
                .collect();
            v.sort();
            v
        };
        let reads_c = deployment("api", &["c"]);
        let reads_nothing = deployment("api", &[]);
        // A dependent rolls out: only the rotation of the Secret it reads.
        assert_eq!(
            names(Some(one(
                "shop",
                Some(reads_c.clone()),
                Some(reads_c.clone())
            ))),
            ["rotating"]
        );
        // Created, deleted, or no longer reading it: the wait it was part of changes.
        assert_eq!(
            names(Some(one("shop", None, Some(reads_c.clone())))),
            ["rotating"]
        );
        assert_eq!(
            names(Some(one("shop", Some(reads_c.clone()), None))),
            ["rotating"]
        );
        assert_eq!(
            names(Some(one(
                "shop",
                Some(reads_c.clone()),
                Some(reads_nothing.clone())
            ))),
            ["rotating"]
        );
        // A workload no rotation depends on wakes none; nor one in another namespace.
        assert!(names(Some(one("shop", None, Some(reads_nothing)))).is_empty());
        assert!(names(Some(one("quiet", None, Some(reads_c)))).is_empty());
        // A relist of the namespace: every rotation in flight there looks again.
        assert_eq!(
            names(Some(Change::Namespace("shop".into()))),
            ["other-secret", "rotating"]
        );
        // Changes were lost (a lagging receiver): every rotation in flight looks again.
        assert_eq!(
            names(None),
            ["other-secret", "rotating", "rotating-elsewhere"]
        );
    }

    #[test]
    fn workload_events_follow_the_named_or_selected_dependents() {
        let (store, mut writer) = reflector::store::<TokenRotation>();
        let mut named = tr("shop", "named", true);
        named.spec.workloads = serde_json::from_value(serde_json::json!(
            {"names": [{"kind": "Deployment", "name": "api"}]}
        ))
        .unwrap();
        let mut selected = tr("shop", "selected", true);
        selected.spec.workloads = serde_json::from_value(serde_json::json!(
            {"selector": {"matchLabels": {"app": "web"}}}
        ))
        .unwrap();
        for obj in [named, selected] {
            writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }
        let names = |w: Arc<crate::workloads::Workload>| -> Vec<String> {
            in_flight_over(&store, Some(&one("shop", None, Some(w))))
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        // Named: by kind and name, whatever it reads.
        assert_eq!(names(deployment("api", &[])), ["named"]);
        assert!(names(deployment("worker", &[])).is_empty());
        // Reading the Secret, named or not: its pods count at the Pod-level barrier.
        let mut both = names(deployment("worker", &["c"]));
        both.sort();
        assert_eq!(both, ["named", "selected"]);
        // Selected: by its labels.
        let mut web = crate::workloads::Workload::clone(&deployment("web", &[]));
        web.labels.insert("app".into(), "web".into());
        assert_eq!(names(Arc::new(web)), ["selected"]);
    }

    #[test]
    fn workload_events_wake_cluster_rotations_covering_their_namespace() {
        let (store, mut writer) = reflector::store::<ClusterTokenRotation>();
        let ctr = |name: &str, namespaces: &[&str], rotating: bool| -> ClusterTokenRotation {
            let inner = tr("x", name, rotating);
            let mut status = inner.status.unwrap_or_default();
            status.namespaces = namespaces.iter().map(|n| n.to_string()).collect();
            serde_json::from_value(serde_json::json!({
                "apiVersion": "tokenrotator.io/v1alpha1", "kind": "ClusterTokenRotation",
                "metadata": {"name": name},
                "spec": {"namespaces": {"names": namespaces}, "credentialsNamespace": "ops",
                         "rotation": inner.spec},
                "status": status
            }))
            .unwrap()
        };
        for obj in [
            ctr("covers-shop", &["shop", "billing"], true),
            ctr("idle", &["shop"], false),
            ctr("elsewhere", &["billing"], true),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }
        let woken: Vec<String> = in_flight_over(&store, Some(&Change::Namespace("shop".into())))
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(woken, ["covers-shop"]);
    }

    /// A staging Secret wakes its owner under the owner's own reference: for a
    /// ClusterTokenRotation with no namespace, so the runner never holds it under two keys.
    #[test]
    fn a_staging_secret_wakes_its_owner_under_the_owners_own_reference() {
        use kube::Resource;
        let ctr: ClusterTokenRotation = serde_json::from_value(serde_json::json!({
            "apiVersion": "tokenrotator.io/v1alpha1", "kind": "ClusterTokenRotation",
            "metadata": {"name": "shared", "uid": "u-ctr"},
            "spec": {"namespaces": {"names": ["shop"]}, "credentialsNamespace": "shop",
                     "rotation": tr("x", "x", false).spec}
        }))
        .unwrap();
        let mut namespaced = tr("shop", "twilio", false);
        namespaced.metadata.uid = Some("u-tr".into());
        let mut secret = Secret::default();
        secret.metadata.namespace = Some("shop".into());
        secret.metadata.owner_references = Some(vec![
            ctr.controller_owner_ref(&()).unwrap(),
            namespaced.controller_owner_ref(&()).unwrap(),
        ]);
        let of_ctr = owners::<ClusterTokenRotation>(&secret, false);
        assert_eq!(of_ctr, [ObjectRef::from_obj(&ctr)]);
        assert_eq!(of_ctr[0].namespace, None);
        assert_eq!(
            owners::<TokenRotation>(&secret, false),
            [ObjectRef::from_obj(&namespaced)]
        );

        // What kube's `owns` builds: another key for the runner, the same object for the store.
        let (store, mut writer) = reflector::store::<ClusterTokenRotation>();
        writer.apply_watcher_event(&watcher::Event::Apply(ctr.clone()));
        let owns = owners::<ClusterTokenRotation>(&secret, true).remove(0);
        assert_eq!(owns.namespace.as_deref(), Some("shop"));
        assert_ne!(owns, ObjectRef::from_obj(&ctr));
        assert!(store.get(&owns).is_some());
    }
}
