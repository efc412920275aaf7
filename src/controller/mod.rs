//! The controller: Kubernetes and Twilio I/O around the pure state machine in
//! [`crate::rotation`]. One reconcile observes, decides, performs one action, writes status.

pub mod failpoints;
pub mod locks;
mod reconcile;
pub mod secrets;

use crate::api::{TokenRotation, STAGING_LABEL};
use crate::twilio::{TwilioClient, TwilioConfig, TwilioError};
use failpoints::Failpoints;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use locks::AccountLocks;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// (region, edge) of a Twilio client.
type RegionEdge = (Option<String>, Option<String>);

pub const CONTROLLER_NAME: &str = "token-rotator";

/// Errors that stop a reconcile before its action (observing the world, writing status). Action
/// failures are not errors: they become status conditions and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("TokenRotation {0} has no namespace")]
    MissingNamespace(String),
    #[error("encoding status: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("Twilio client configuration: {0}")]
    TwilioConfig(#[from] TwilioError),
    #[error("the TokenRotation CRD is not installed (run `token-rotator crd | kubectl apply -f -`): {0}")]
    CrdMissing(kube::Error),
}

/// Operator-wide settings.
#[derive(Clone, Default)]
pub struct Config {
    pub twilio: TwilioConfig,
    /// Watch one namespace only; all namespaces when unset.
    pub namespace: Option<String>,
    /// Reporting instance for Events (the pod name).
    pub instance: Option<String>,
    pub failpoints: Failpoints,
}

pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    pub store: Store<TokenRotation>,
    pub locks: AccountLocks,
    /// One HTTP client per (region, edge), built on first use.
    twilio_clients: Mutex<HashMap<RegionEdge, TwilioClient>>,
}

impl Context {
    pub fn twilio(
        &self,
        region: Option<&str>,
        edge: Option<&str>,
    ) -> Result<TwilioClient, TwilioError> {
        let key = (region.map(str::to_owned), edge.map(str::to_owned));
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
        let client = TwilioClient::new(cfg)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Runs the controller until the stream ends (a shutdown signal, or the task is dropped).
pub async fn run(client: Client, config: Config) -> Result<(), Error> {
    let trs: Api<TokenRotation> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    trs.list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(Error::CrdMissing)?;
    let secrets: Api<Secret> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(trs, watcher::Config::default());
    let reporter = Reporter {
        controller: CONTROLLER_NAME.into(),
        instance: config.instance.clone(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        store: controller.store(),
        client,
        config,
        locks: AccountLocks::default(),
        twilio_clients: Mutex::new(HashMap::new()),
    });
    controller
        // Staging Secrets carry an owner reference: their changes wake their TokenRotation.
        .owns(secrets, watcher::Config::default().labels(STAGING_LABEL))
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(resource = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
    Ok(())
}
