//! The in-process API server: shared state, listener, background controllers, test hooks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::kube::auth::{self, Attributes, AuthOptions, Authenticator};
use crate::kube::controllers;
use crate::kube::engine::{self, WriteOpts};
use crate::kube::registry::Registry;
use crate::kube::store::State;

/// Tunables for [`ApiServer::start_with`].
#[derive(Clone, Debug)]
pub struct ApiServerOptions {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// How many events the watch log keeps; older resourceVersions get 410 Expired.
    pub watch_window: usize,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Watch duration when the client gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// Authentication and RBAC authorization; None lets every request through.
    pub auth: Option<AuthOptions>,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_window: 100_000,
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_secs(1800),
            auth: None,
        }
    }
}

pub struct Shared {
    state: Mutex<State>,
    pub rv_tx: watch::Sender<u64>,
    pub kill_tx: watch::Sender<u64>,
    pub ctrl: Notify,
    pub opts: ApiServerOptions,
    pub addr: Mutex<SocketAddr>,
    /// Every request, in arrival order (see [`AuditRecord`]), and counts per kind of request.
    pub audit: Mutex<RequestLog>,
    pub auth: Option<Authenticator>,
    /// What `GET /sandbox/v1/traffic` serves, once consumer traffic runs.
    pub traffic: Mutex<Option<TrafficSource>>,
}

/// Produces the consumer traffic summary ([`crate::Traffic::summary_source`]).
pub type TrafficSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Records kept in full before only the counts go on (memory stays bounded in long runs).
const LOG_CAP: usize = 500_000;

#[derive(Default)]
pub struct RequestLog {
    pub records: Vec<AuditRecord>,
    /// (user, verb, group, resource[/subresource], namespace, status) → requests.
    pub counts: std::collections::BTreeMap<(String, String, String, String, String, u16), u64>,
    /// Authorization checks made inside writes, beyond the request's own.
    pub admission: Vec<AdmissionCheck>,
}

/// A permission checked inside a write (see [`crate::kube::auth::admission`]): a create hidden
/// in an apply or update of a missing object, `delete` for changing owner references,
/// `update` on an owner's `finalizers` for `blockOwnerDeletion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionCheck {
    pub user: String,
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub allowed: bool,
}

/// One request as the server saw it: who sent it (the authenticated user; without
/// authorization the bearer token, or "system:anonymous"), what it asked for in the
/// authorizer's terms, and the response status. Lets tests prove which client did what, e.g.
/// that only the elected leader acts, or that the operator never got a 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub user: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// get, list, watch, create, update, patch, delete, deletecollection; for non-resource
    /// requests the lower-case HTTP method.
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`; empty for non-resource requests.
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl AuditRecord {
    pub fn new(
        user: String,
        method: &http::Method,
        path: String,
        attrs: &Attributes,
        status: u16,
    ) -> Self {
        let (group, resource, namespace, name) = match attrs {
            Attributes::Resource {
                group,
                namespace,
                name,
                ..
            } => (
                group.clone(),
                attrs.resource_path(),
                namespace.clone(),
                name.clone(),
            ),
            Attributes::NonResource { .. } => Default::default(),
        };
        AuditRecord {
            user,
            method: method.to_string(),
            path,
            status,
            verb: attrs.verb().to_string(),
            group,
            resource,
            namespace,
            name,
        }
    }

    /// POST, PUT, PATCH or DELETE.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

impl Shared {
    pub fn record(&self, record: AuditRecord) {
        let checks = std::mem::take(&mut self.lock().admission_checks);
        let mut log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        for (user, a, allowed) in checks {
            if let Attributes::Resource {
                verb,
                group,
                namespace,
                name,
                ..
            } = &a
            {
                let check = AdmissionCheck {
                    user,
                    verb: verb.clone(),
                    group: group.clone(),
                    resource: a.resource_path(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    allowed,
                };
                if log.admission.len() < LOG_CAP {
                    log.admission.push(check);
                }
            }
        }
        let key = (
            record.user.clone(),
            record.verb.clone(),
            record.group.clone(),
            record.resource.clone(),
            record.namespace.clone(),
            record.status,
        );
        *log.counts.entry(key).or_default() += 1;
        if log.records.len() < LOG_CAP {
            log.records.push(record);
        }
    }

    /// `GET /sandbox/v1/requests`: request counts by user, verb, resource, namespace, status.
    pub fn request_summary(&self) -> serde_json::Value {
        let log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let items: Vec<serde_json::Value> = log
            .counts
            .iter()
            .map(|((user, verb, group, resource, ns, status), n)| {
                json!({"user": user, "verb": verb, "group": group, "resource": resource,
                       "namespace": ns, "status": status, "count": n})
            })
            .collect();
        let total: u64 = log.counts.values().sum();
        json!({"kind": "RequestSummary", "total": total, "items": items})
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Wakes watchers (and controllers when deletions are pending) after a write.
    pub fn notify(&self, st: &State) {
        self.notify_watchers(st);
        if !st.gc_queue.is_empty() || !st.pending.is_empty() {
            self.ctrl.notify_one();
        }
    }

    pub fn notify_watchers(&self, st: &State) {
        self.rv_tx.send_if_modified(|v| {
            if *v != st.current_rv() {
                *v = st.current_rv();
                true
            } else {
                false
            }
        });
    }

    pub fn server_addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An in-memory Kubernetes API server on a local port; runs until dropped or [`shutdown`](Self::shutdown).
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// With authentication on, the server speaks HTTPS: the CA's `certificate-authority-data`.
    ca_data: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    serve: Option<JoinHandle<()>>,
    ctrl: Option<JoinHandle<()>>,
}

fn bootstrap(st: &mut State) {
    let ns_def = st
        .registry
        .get("", "v1", "namespaces")
        .expect("namespaces are built in");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let opts = WriteOpts {
            field_manager: Some("kube-apiserver".into()),
            ..Default::default()
        };
        let _ = engine::create(st, &ns_def, None, body, &opts);
    }
    let sa_def = st
        .registry
        .get("", "v1", "serviceaccounts")
        .expect("serviceaccounts are built in");
    let opts = WriteOpts {
        field_manager: Some("kube-controller-manager".into()),
        ..Default::default()
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
        let _ = engine::create(st, &sa_def, Some(ns), body, &opts);
    }
    let svc_def = st
        .registry
        .get("", "v1", "services")
        .expect("services are built in");
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}});
    let _ = engine::create(st, &svc_def, Some("default"), body, &opts);
}

impl ApiServer {
    /// Starts on 127.0.0.1 with a free port and default options.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(ApiServerOptions::default()).await
    }

    pub async fn start_with(opts: ApiServerOptions) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let mut st = State::new(Registry::with_builtins(), opts.watch_window);
        bootstrap(&mut st);
        let auth = opts.auth.as_ref().map(|a| {
            auth::bootstrap::install(&mut st);
            Authenticator::new(a)
        });
        let rv = st.current_rv();
        let shared = Arc::new(Shared {
            state: Mutex::new(st),
            rv_tx: watch::channel(rv).0,
            kill_tx: watch::channel(0).0,
            ctrl: Notify::new(),
            opts,
            addr: Mutex::new(addr),
            audit: Mutex::new(RequestLog::default()),
            auth,
            traffic: Mutex::new(None),
        });
        let app = crate::kube::http::router(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stop_rx.await;
        };
        let (serve, ca_data) = if shared.auth.is_some() {
            let tls = crate::kube::tls::Tls::new(addr)?;
            let ca_data = tls.ca_data();
            let listener = crate::kube::tls::TlsListener::new(listener, tls.acceptor)?;
            let serve = tokio::spawn(async move {
                let server = axum::serve(listener, app).with_graceful_shutdown(stopped);
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "sandbox API server stopped");
                }
            });
            (serve, Some(ca_data))
        } else {
            let serve = tokio::spawn(async move {
                let server = axum::serve(listener, app).with_graceful_shutdown(stopped);
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "sandbox API server stopped");
                }
            });
            (serve, None)
        };
        let ctrl_shared = shared.clone();
        let ctrl = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = ctrl_shared.ctrl.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                {
                    let mut st = ctrl_shared.lock();
                    if !st.gc_queue.is_empty() || !st.pending.is_empty() {
                        for _ in 0..16 {
                            if !controllers::reconcile(&mut st) {
                                break;
                            }
                        }
                        ctrl_shared.notify_watchers(&st);
                    }
                }
                tokio::task::yield_now().await;
            }
        });
        Ok(ApiServer {
            shared,
            addr,
            ca_data,
            stop: Some(stop_tx),
            serve: Some(serve),
            ctrl: Some(ctrl),
        })
    }

    /// `http://ADDR`, or `https://ADDR` when authentication is on.
    pub fn url(&self) -> String {
        match self.ca_data {
            Some(_) => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The server CA's PEM when the server speaks HTTPS.
    pub fn ca_pem(&self) -> Option<String> {
        use base64::Engine;
        let data = self.ca_data.as_ref()?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?;
        String::from_utf8(pem).ok()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kubeconfig with cluster, user and context named `sandbox` (plain HTTP; with
    /// authorization on, the user is the bootstrap administrator, group `system:masters`).
    pub fn kubeconfig(&self) -> kube::config::Kubeconfig {
        kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .expect("static kubeconfig parses")
    }

    pub fn kubeconfig_yaml(&self) -> String {
        match self.shared.auth {
            Some(_) => self.kubeconfig_yaml_as(auth::ADMIN_TOKEN),
            None => self.base_kubeconfig(),
        }
    }

    fn base_kubeconfig(&self) -> String {
        let yaml = kubeconfig_yaml_for(&self.url());
        match &self.ca_data {
            Some(ca) => yaml.replace(
                &format!("    server: {}\n", self.url()),
                &format!(
                    "    server: {}\n    certificate-authority-data: {ca}\n",
                    self.url()
                ),
            ),
            None => yaml,
        }
    }

    /// Kubeconfig whose user sends `Authorization: Bearer <token>`. With authorization on, the
    /// token must be known (static, or minted by [`ApiServer::service_account_token`]);
    /// without, any token is accepted and names the caller in [`ApiServer::audit_log`].
    pub fn kubeconfig_yaml_as(&self, token: &str) -> String {
        self.base_kubeconfig()
            .replace("  user: {}", &format!("  user:\n    token: {token}"))
    }

    /// A token for ServiceAccount `ns/name` (which must exist), as `kubectl create token` mints;
    /// valid while that ServiceAccount exists. Without authorization: its user name.
    pub fn service_account_token(&self, ns: &str, name: &str) -> anyhow::Result<String> {
        let st = self.shared.lock();
        match &self.shared.auth {
            Some(a) => Ok(a.mint(&st, ns, name)?),
            None => Ok(format!("system:serviceaccount:{ns}:{name}")),
        }
    }

    /// A kube Client that authenticates with `token`.
    pub async fn client_with_token(&self, token: &str) -> kube::Client {
        ensure_crypto_provider();
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml_as(token))
            .expect("static kubeconfig parses");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("sandbox kubeconfig is valid");
        kube::Client::try_from(cfg).expect("client from sandbox kubeconfig")
    }

    /// Every request so far (reads too), oldest first; writes are [`AuditRecord::is_write`].
    pub fn audit_log(&self) -> Vec<AuditRecord> {
        let log = self.shared.audit.lock().unwrap_or_else(|p| p.into_inner());
        log.records.clone()
    }

    /// Serves `source` at `GET /sandbox/v1/traffic`.
    pub fn serve_traffic(&self, source: TrafficSource) {
        *self
            .shared
            .traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Permissions checked inside writes (admission), oldest first.
    pub fn admission_checks(&self) -> Vec<AdmissionCheck> {
        let log = self.shared.audit.lock().unwrap_or_else(|p| p.into_inner());
        log.admission.clone()
    }

    /// Request counts by user, verb, resource, namespace and status (also served at
    /// `GET /sandbox/v1/requests`).
    pub fn request_summary(&self) -> serde_json::Value {
        self.shared.request_summary()
    }

    /// A kube Client talking to this server.
    pub async fn client(&self) -> kube::Client {
        ensure_crypto_provider();
        let cfg = kube::Config::from_custom_kubeconfig(
            self.kubeconfig(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("sandbox kubeconfig is valid");
        kube::Client::try_from(cfg).expect("client from sandbox kubeconfig")
    }

    /// Test hook: closes every open watch connection (clients must re-watch).
    pub fn drop_watches(&self) {
        self.shared.kill_tx.send_modify(|g| *g += 1);
    }

    /// Test hook: forgets the watch event log and continue tokens, so every older
    /// resourceVersion gets 410 Expired (and open watches get an ERROR event).
    pub fn compact(&self) {
        let mut st = self.shared.lock();
        st.compact();
        drop(st);
        // Wake watchers so they notice their position is gone.
        self.shared.rv_tx.send_modify(|_| {});
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().current_rv()
    }

    /// Number of stored objects (all kinds).
    pub fn object_count(&self) -> usize {
        self.shared.lock().total_objects()
    }

    pub async fn shutdown(mut self) {
        self.stop_all().await;
    }

    async fn stop_all(&mut self) {
        self.drop_watches();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(c) = self.ctrl.take() {
            c.abort();
        }
        if let Some(t) = self.serve.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.drop_watches();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(c) = self.ctrl.take() {
            c.abort();
        }
        if let Some(t) = self.serve.take() {
            t.abort();
        }
    }
}

/// Installs rustls' ring provider when several are compiled in (tests pull in aws-lc-rs via
/// reqwest) and none was chosen; kube's client would otherwise panic building its TLS config.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

pub fn kubeconfig_yaml_for(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sandbox
  cluster:
    server: {url}
users:
- name: sandbox
  user: {{}}
contexts:
- name: sandbox
  context:
    cluster: sandbox
    user: sandbox
    namespace: default
current-context: sandbox
preferences: {{}}
"
    )
}

pub fn kubeconfig_for(url: &str) -> kube::config::Kubeconfig {
    kube::config::Kubeconfig::from_yaml(&kubeconfig_yaml_for(url))
        .expect("static kubeconfig parses")
}
