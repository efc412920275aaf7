//! The two resource kinds one reconcile can act on. A `TokenRotation` rotates into its own
//! namespace; a `ClusterTokenRotation` into every namespace it matches, with its credentials
//! and staging Secret in `credentialsNamespace`. Everything past fetching and writing status
//! works on a [`Subject`], whichever kind it came from.

use crate::api::{
    ClusterTokenRotation, NamespaceTargets, TokenRotation, TokenRotationSpec, TokenRotationStatus,
};
use crate::rotation::{staging_secret_name, Holder};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams};
use kube::core::Selector;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// (namespace, name) of a TokenRotation or ClusterTokenRotation: how what the controller
/// keeps per resource (account index, our writes, their echoes) is keyed.
pub type ResourceKey = (Option<String>, String);

/// What the reconciler needs from either kind.
pub trait Rotated:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn rotation_spec(&self) -> &TokenRotationSpec;
    fn rotation_status(&self) -> Option<&TokenRotationStatus>;
    fn set_rotation_status(&mut self, status: TokenRotationStatus);
    /// The API for this kind: namespaced for a TokenRotation, cluster-wide otherwise.
    fn api_for(client: &Client, namespace: Option<&str>) -> Api<Self>;
    /// The API listing this kind in `namespace`, or everywhere with `None`.
    fn listing(client: &Client, namespace: Option<&str>) -> Api<Self>;
    /// Whether resources of this kind live in a namespace.
    const NAMESPACED: bool;
    /// Its kind, as a constant.
    const KIND_NAME: &'static str;
    /// `None` for a TokenRotation (its own namespace).
    fn namespace_targets(&self) -> Option<&NamespaceTargets>;
    /// Whether its Secrets and workloads include namespace `ns` (for a cluster rotation: as
    /// last resolved into status).
    fn covers(&self, ns: &str) -> bool;
    /// Where the credentials and the staging Secret live.
    fn home(&self) -> String;
    /// Identity in account locks and metrics, (`namespace` label, lock holder), of the
    /// resource of this kind at `namespace`/`name`; also used once it is deleted.
    fn identity_of(namespace: Option<&str>, name: &str) -> (String, Holder);
    fn identity(&self) -> (String, Holder) {
        Self::identity_of(self.namespace().as_deref(), &self.name_any())
    }
    fn resource_key(&self) -> ResourceKey {
        (self.namespace(), self.name_any())
    }
    /// A rotation is in flight: status names it.
    fn flying(&self) -> bool {
        self.rotation_status().is_some_and(|s| s.rotation.is_some())
    }
    /// The spec it rotates with now: the one pinned when the rotation in flight started (edits
    /// apply to the next rotation), else its own.
    fn effective_spec(&self) -> &TokenRotationSpec {
        self.rotation_status()
            .and_then(|s| s.rotation.as_ref())
            .and_then(|r| r.spec.as_ref())
            .unwrap_or(self.rotation_spec())
    }
    /// The name a new rotation gives its staging Secret: the two kinds use suffixes that can
    /// never produce the same name, so a ClusterTokenRotation cannot share a staging Secret
    /// with a TokenRotation in its credentials namespace.
    fn staging_secret(&self) -> String;
    /// The resource at `namespace`/`name` in the controller's cache of this kind.
    fn cached(ctx: &super::Context, namespace: Option<&str>, name: &str) -> Option<Arc<Self>>;
}

impl Rotated for TokenRotation {
    fn rotation_spec(&self) -> &TokenRotationSpec {
        &self.spec
    }
    fn rotation_status(&self) -> Option<&TokenRotationStatus> {
        self.status.as_ref()
    }
    fn set_rotation_status(&mut self, status: TokenRotationStatus) {
        self.status = Some(status);
    }
    fn api_for(client: &Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client.clone(), namespace.unwrap_or_default())
    }
    fn listing(client: &Client, namespace: Option<&str>) -> Api<Self> {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    const NAMESPACED: bool = true;
    const KIND_NAME: &'static str = "TokenRotation";
    fn namespace_targets(&self) -> Option<&NamespaceTargets> {
        None
    }
    fn covers(&self, ns: &str) -> bool {
        self.namespace().as_deref() == Some(ns)
    }
    fn home(&self) -> String {
        self.namespace().unwrap_or_default()
    }
    fn identity_of(namespace: Option<&str>, name: &str) -> (String, Holder) {
        let ns = namespace.unwrap_or_default();
        (
            ns.to_owned(),
            Holder::TokenRotation {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            },
        )
    }
    fn staging_secret(&self) -> String {
        staging_secret_name(&self.name_any(), "-rotation-staging")
    }
    fn cached(ctx: &super::Context, namespace: Option<&str>, name: &str) -> Option<Arc<Self>> {
        let key = ObjectRef::new(name).within(namespace.unwrap_or_default());
        ctx.stores.iter().find_map(|s| s.get(&key))
    }
}

impl Rotated for ClusterTokenRotation {
    fn rotation_spec(&self) -> &TokenRotationSpec {
        &self.spec.rotation
    }
    fn rotation_status(&self) -> Option<&TokenRotationStatus> {
        self.status.as_ref()
    }
    fn set_rotation_status(&mut self, status: TokenRotationStatus) {
        self.status = Some(status);
    }
    fn api_for(client: &Client, _: Option<&str>) -> Api<Self> {
        Api::all(client.clone())
    }
    fn listing(client: &Client, _: Option<&str>) -> Api<Self> {
        Api::all(client.clone())
    }
    const NAMESPACED: bool = false;
    const KIND_NAME: &'static str = "ClusterTokenRotation";
    fn namespace_targets(&self) -> Option<&NamespaceTargets> {
        Some(&self.spec.namespaces)
    }
    fn covers(&self, ns: &str) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.namespaces.iter().any(|n| n == ns))
    }
    fn home(&self) -> String {
        self.spec.credentials_namespace.clone()
    }
    fn identity_of(_: Option<&str>, name: &str) -> (String, Holder) {
        (
            String::new(),
            Holder::ClusterTokenRotation {
                name: name.to_owned(),
            },
        )
    }
    fn staging_secret(&self) -> String {
        staging_secret_name(&self.name_any(), "-clusterrotation-staging")
    }
    fn cached(ctx: &super::Context, _: Option<&str>, name: &str) -> Option<Arc<Self>> {
        ctx.cluster_store.as_ref()?.get(&ObjectRef::new(name))
    }
}

/// One resource as a reconcile acts on it.
#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    /// `namespace` label of its metrics ("" for a cluster rotation).
    pub metrics_namespace: String,
    /// Account lock holder.
    pub holder: Holder,
    /// Field manager of every write it makes (its own, see [`Holder::field_manager`]).
    pub field_manager: String,
    /// The pod-template annotation it restarts workloads with.
    pub stamp_key: String,
    /// The spec the rotation runs with: the one recorded when the rotation in flight started
    /// (edits apply to the next rotation), else the resource's own.
    pub spec: TokenRotationSpec,
    /// The resource's spec differs from `spec`.
    pub spec_changed: bool,
    /// Namespace of the credentials and staging Secrets.
    pub home: String,
    /// Namespaces of the target Secrets and workloads, sorted.
    pub targets: Vec<String>,
    /// Matched namespaces that are being deleted: nothing is written there any more, but
    /// promotion waits until their dependent workloads are gone.
    pub terminating: Vec<String>,
    /// Whether it spans namespaces (status names namespaces then).
    pub cluster: bool,
    pub owner: Option<OwnerReference>,
    pub reference: ObjectReference,
    pub staging_secret: String,
    pub uid: String,
}

impl Subject {
    /// What its rotation takes of its Twilio account (see [`super::locks::AccountUse`]),
    /// replacing `replaces` if it is an API key rotation.
    pub fn account_use(
        &self,
        safety: &super::SafetyOverrides,
        replaces: super::locks::Replaces,
    ) -> super::locks::AccountUse {
        use super::locks::{AccountUse, Replaces};
        let namespace = (!self.cluster).then_some(self.home.as_str());
        match AccountUse::of(&self.spec, namespace, replaces) {
            AccountUse::Shared { .. } if safety.skip_key_turns => AccountUse::Shared {
                secrets: Default::default(),
                replaces: Replaces::Nothing,
            },
            uses => uses,
        }
    }

    pub async fn of<K: Rotated>(client: &Client, obj: &K) -> Result<Self, kube::Error> {
        let (metrics_namespace, holder) = obj.identity();
        let live = obj.rotation_spec();
        let spec = obj.effective_spec().clone();
        let home = obj.home();
        let (targets, terminating) = match obj.namespace_targets() {
            None => (vec![home.clone()], Vec::new()),
            Some(t) => resolve(client, t).await?,
        };
        Ok(Self {
            name: obj.name_any(),
            metrics_namespace,
            field_manager: holder.field_manager(),
            stamp_key: holder.stamp_key(),
            holder,
            spec_changed: spec != *live,
            spec,
            home,
            targets,
            terminating,
            cluster: obj.namespace_targets().is_some(),
            owner: obj.controller_owner_ref(&()),
            reference: obj.object_ref(&()),
            staging_secret: obj.staging_secret(),
            uid: obj.uid().unwrap_or_default(),
        })
    }
}

/// The namespaces a cluster rotation covers now: the named ones that exist, or those whose
/// labels match the selector; (live, terminating), each sorted.
async fn resolve(
    client: &Client,
    t: &NamespaceTargets,
) -> Result<(Vec<String>, Vec<String>), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut found: Vec<Namespace> = Vec::new();
    if let Some(names) = &t.names {
        for n in names {
            found.extend(api.get_opt(n).await?);
        }
    } else if let Some(sel) = &t.selector {
        // A selector the API server could not parse matches nothing rather than everything.
        let Ok(selector) = Selector::try_from(sel.clone()) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let lp = ListParams::default().labels_from(&selector);
        found.extend(api.list(&lp).await?.items);
    }
    let (mut live, mut terminating) = (Vec::new(), Vec::new());
    for n in found {
        let name = n.name_any();
        if n.metadata.deletion_timestamp.is_some() {
            terminating.push(name);
        } else {
            live.push(name);
        }
    }
    for v in [&mut live, &mut terminating] {
        v.sort();
        v.dedup();
    }
    Ok((live, terminating))
}
