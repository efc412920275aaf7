//! Stateful Twilio emulator: Auth Tokens (accounts v1), API keys (2010 and IAM v1) and
//! accounts, with fault injection, per-credential stats and a request log.
//!
//! [`TwilioSandbox::sign_webhook`] signs webhook requests the way Twilio does, with whichever
//! token is primary at that moment.
//!
//! All products share one port. Paths may carry a leading Twilio host segment that selects
//! product and region (`/api.dublin.ie1.twilio.com/2010-04-01/...`); without one, us1. A `Host`
//! header naming a `*.twilio.com` host works the same. Region-only hosts other than us1
//! (`api.ie1.twilio.com`) get 421 / code 20421 (emulator-specific: Twilio stopped serving those
//! names on 2026-04-28). Credentials only authenticate in their account's region.
//!
//! Besides the spec's endpoints, `GET /2010-04-01/Accounts/{Sid}/Balance.json` answers for every
//! credential kind, so a Standard key (which may not read `/Accounts/{Sid}.json`) can be probed.
//! Restricted keys' policies are stored and returned but not evaluated: they get the same access
//! as Standard keys.
//!
//! Control over HTTP (JSON) under `/_sandbox/`:
//! - `GET stats`, `GET requests` (the request log),
//! - `POST accounts` `{sid?, auth_token?, region?, parent_sid?}` → `{sid, auth_token, region, ..}`,
//!   `GET accounts` (full state, tokens included),
//! - `POST faults` `{"endpoint": "promote", "fault": {"kind": "status", "status": 429,
//!   "times": 2}}` (kinds: `latency` + `delay_ms`, `status`, `drop_before_apply`,
//!   `drop_after_apply` + `times`; endpoint defaults to `any`) and/or `{"propagation_delay_ms": N}`;
//!   `DELETE faults` clears faults and the propagation delay,
//! - `GET`/`POST switches` (see [`Switches`]; omitted fields take their defaults).

pub mod cli;
mod entry;
mod errors;
mod faults;
mod handlers;
mod ids;
mod inspect;
mod model;
mod pagination;
mod route;
mod server;
mod signature;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use model::{
    AccountSeed, CredentialStats, Endpoint, Fault, KeyInfo, KeyKind, RequestRecord, Stats,
    Switches, TwilioConfig,
};

pub use signature::webhook_signature;

use entry::Shared;
use state::State;

/// A running emulator; the server stops when this is dropped or `shutdown()` is awaited.
pub struct TwilioSandbox {
    addr: SocketAddr,
    state: Shared,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl TwilioSandbox {
    /// Starts on 127.0.0.1 with a free port and no accounts.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(TwilioConfig::default()).await
    }

    pub async fn start_with(cfg: TwilioConfig) -> anyhow::Result<Self> {
        let mut st = State::new(cfg.switches, cfg.propagation_delay);
        st.latency = cfg.latency;
        st.max_concurrent_per_account = cfg.max_concurrent_per_account;
        for a in &cfg.accounts {
            anyhow::ensure!(
                ids::is_account_sid(&a.sid),
                "account sid {} does not match ^AC[0-9a-fA-F]{{32}}$",
                a.sid
            );
            st.add_account(&a.sid, &a.auth_token, &a.region, None);
        }
        let state: Shared = Arc::new(Mutex::new(st));
        let app = Router::new()
            .merge(inspect::router())
            .fallback(entry::twilio)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, app, rx));
        Ok(TwilioSandbox {
            addr,
            state,
            shutdown: tx,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// New us1 account with random sid and primary token.
    pub fn create_account(&self) -> (String, String) {
        let (sid, token) = (ids::account_sid(), ids::auth_token());
        self.lock().add_account(&sid, &token, "us1", None);
        (sid, token)
    }

    /// Adds (or replaces) an account with a given sid, primary token and region.
    pub fn add_account(&self, sid: &str, primary_token: &str, region: &str) {
        self.lock().add_account(sid, primary_token, region, None);
    }

    /// New subaccount of `parent_sid` in the parent's region. Panics if the parent is unknown.
    pub fn add_subaccount(&self, parent_sid: &str) -> (String, String) {
        let (sid, token) = (ids::account_sid(), ids::auth_token());
        let mut st = self.lock();
        let region = st
            .accounts
            .get(parent_sid)
            .unwrap_or_else(|| panic!("unknown parent account {parent_sid}"))
            .region
            .clone();
        st.add_account(&sid, &token, &region, Some(parent_sid));
        (sid, token)
    }

    pub fn primary_token(&self, sid: &str) -> Option<String> {
        self.lock()
            .accounts
            .get(sid)
            .map(|a| a.primary().value.clone())
    }

    pub fn secondary_token(&self, sid: &str) -> Option<String> {
        self.lock()
            .accounts
            .get(sid)
            .and_then(|a| a.secondary().map(|t| t.value.clone()))
    }

    /// `X-Twilio-Signature` for a webhook request to `url` with form `params`, signed as Twilio
    /// does with the account's primary Auth Token at this moment (a secondary never signs).
    /// `None` if the account is unknown.
    pub fn sign_webhook(
        &self,
        account_sid: &str,
        url: &str,
        params: &[(&str, &str)],
    ) -> Option<String> {
        let st = self.lock();
        let primary = &st.accounts.get(account_sid)?.primary().value;
        Some(webhook_signature(primary, url, params))
    }

    /// Live (not deleted) keys of an account, in creation order.
    pub fn keys(&self, sid: &str) -> Vec<KeyInfo> {
        self.lock()
            .accounts
            .get(sid)
            .map(|a| a.live_keys().map(|k| k.info()).collect())
            .unwrap_or_default()
    }

    /// Seeds a key (any kind, Main included) that works at once. Returns `(SK sid, secret)`.
    /// Panics if the account is unknown.
    pub fn create_key(&self, sid: &str, kind: KeyKind, name: &str) -> (String, String) {
        let policy = (kind == KeyKind::Restricted).then(|| serde_json::json!({ "allow": [] }));
        let key = self
            .lock()
            .add_key(sid, kind, Some(name.to_string()), policy, None)
            .unwrap_or_else(|| panic!("unknown account {sid}"));
        (key.sid, key.secret)
    }

    /// Sets a fault on one endpoint (`Endpoint::Any`: all). Replaces an earlier fault of the same
    /// variant there.
    pub fn set_fault(&self, ep: Endpoint, fault: Fault) {
        self.lock().faults.set(ep, fault);
    }

    /// Clears every endpoint fault and the propagation delay.
    pub fn clear_faults(&self) {
        let mut st = self.lock();
        st.faults.clear();
        st.propagation_delay = Duration::ZERO;
    }

    /// Newly created secondary tokens, promoted tokens and API-created keys are refused
    /// (401 / 20003) until this long after their creation or promotion.
    pub fn set_propagation_delay(&self, d: Duration) {
        self.lock().propagation_delay = d;
    }

    pub fn switches(&self) -> Switches {
        self.lock().switches.clone()
    }

    pub fn set_switches(&self, switches: Switches) {
        self.lock().switches = switches;
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats()
    }

    /// Stats of the credential whose token/secret value is `secret` (zeros if never presented;
    /// id `(unknown)` if the value is not known at all).
    pub fn stats_for_secret(&self, secret: &str) -> CredentialStats {
        let st = self.lock();
        match st.id_for_secret(secret) {
            Some(id) => st.stats().get(&id),
            None => CredentialStats {
                id: "(unknown)".into(),
                role: "unknown".into(),
                ..CredentialStats::default()
            },
        }
    }

    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    /// Requests refused by `max_concurrent_per_account` so far.
    pub fn concurrency_refusals(&self) -> u64 {
        self.lock().concurrency_refusals
    }

    /// Requests answered so far.
    pub fn request_count(&self) -> usize {
        self.lock().log.len()
    }

    /// Stops accepting and closes open connections.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
