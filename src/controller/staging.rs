//! The staging Secrets, read through the watch that wakes their rotations: a reconcile in
//! flight reads its staging Secret each time (a dozen times per rotation), and a GET each time
//! was a sixth of the operator's requests.
//!
//! The cache is used only when it holds exactly the version this process last wrote or read
//! fresh, as for the resources themselves ([`super::Context::up_to_date`]): it has then caught
//! up with our own writes, so a step is never decided on a Secret older than one we wrote (a
//! missing new credential would make another one). A change by anyone else since is as
//! unseen as it would be had it come just after a GET. Otherwise, or after a restart, a GET.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use std::sync::Arc;

use super::secrets::{self, Staged};
use super::versions::KnownVersions;

#[derive(Default)]
pub struct StagingCache {
    /// One store per watched scope (`None`: every namespace).
    stores: Vec<(Option<String>, Store<Secret>)>,
    /// The version of each staging Secret as this process last wrote or read it.
    known: KnownVersions<(String, String)>,
}

impl StagingCache {
    pub fn new(stores: Vec<(Option<String>, Store<Secret>)>) -> Self {
        Self {
            stores,
            known: KnownVersions::default(),
        }
    }

    /// The cached Secret, when it is the version last written or read fresh.
    fn cached(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        let store = self
            .stores
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))?;
        let cached = store.1.get(&ObjectRef::new(name).within(namespace))?;
        let key = (namespace.to_owned(), name.to_owned());
        self.known
            .is_current(&key, cached.resource_version().as_deref())
            .then_some(cached)
    }

    /// Remembers the version just written or read (`None`: not known, or deleted).
    pub fn saw(&self, namespace: &str, name: &str, version: Option<String>) {
        self.known
            .record((namespace.to_owned(), name.to_owned()), version);
    }

    /// The staging Secret's content: from the cache when it caught up, else a GET.
    pub async fn read(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Staged>, kube::Error> {
        if let Some(secret) = self.cached(namespace, name) {
            return Ok(secrets::staged_in(&secret));
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = api.get_opt(name).await?;
        self.saw(
            namespace,
            name,
            secret.as_ref().and_then(|s| s.resource_version()),
        );
        Ok(secret.as_ref().and_then(secrets::staged_in))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn staging(version: &str, token: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "shop", "resourceVersion": version},
            "data": {"rotationId": "cnIx", "token": token}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn the_cache_is_read_only_when_it_caught_up_with_our_own_last_write() {
        let (store, mut writer) = kube::runtime::reflector::store::<Secret>();
        let cache = StagingCache::new(vec![(None, store)]);
        writer.apply_watcher_event(&Event::Apply(staging("1", "b2xk")));
        // Nothing known (a restart): read fresh.
        assert!(cache.cached("shop", "s").is_none());
        cache.saw("shop", "s", Some("1".into()));
        assert!(cache.cached("shop", "s").is_some());
        // We wrote version 2; the watch still shows 1: read fresh, never the older one.
        cache.saw("shop", "s", Some("2".into()));
        assert!(cache.cached("shop", "s").is_none());
        writer.apply_watcher_event(&Event::Apply(staging("2", "bmV3")));
        assert!(cache.cached("shop", "s").is_some());
        // Deleted by us: read fresh.
        cache.saw("shop", "s", None);
        assert!(cache.cached("shop", "s").is_none());
    }

    #[test]
    fn a_namespace_outside_every_scope_is_read_fresh() {
        let (store, mut writer) = kube::runtime::reflector::store::<Secret>();
        let cache = StagingCache::new(vec![(Some("other".into()), store)]);
        writer.apply_watcher_event(&Event::Apply(staging("1", "b2xk")));
        cache.saw("shop", "s", Some("1".into()));
        assert!(cache.cached("shop", "s").is_none());
    }
}
