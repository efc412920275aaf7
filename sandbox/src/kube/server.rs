//! The in-process API server: shared state, listener, background controllers, test hooks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

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
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_window: 100_000,
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_secs(1800),
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
    /// Every write request, in arrival order (see [`AuditRecord`]).
    pub audit: Mutex<Vec<AuditRecord>>,
}

/// One write request (POST, PUT, PATCH, DELETE) as the server saw it: who sent it (the bearer
/// token of the request, "system:anonymous" without one), what, and the response status. Lets
/// tests prove which client wrote, e.g. that only the elected leader of several replicas acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub user: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl Shared {
    pub fn record_write(&self, record: AuditRecord) {
        match self.audit.lock() {
            Ok(mut g) => g.push(record),
            Err(p) => p.into_inner().push(record),
        }
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
        let rv = st.current_rv();
        let shared = Arc::new(Shared {
            state: Mutex::new(st),
            rv_tx: watch::channel(rv).0,
            kill_tx: watch::channel(0).0,
            ctrl: Notify::new(),
            opts,
            addr: Mutex::new(addr),
            audit: Mutex::new(Vec::new()),
        });
        let app = crate::kube::http::router(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let serve = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "sandbox API server stopped");
            }
        });
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
            stop: Some(stop_tx),
            serve: Some(serve),
            ctrl: Some(ctrl),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kubeconfig with cluster, user and context named `sandbox` (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> kube::config::Kubeconfig {
        kubeconfig_for(&self.url())
    }

    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml_for(&self.url())
    }

    /// Kubeconfig whose user sends `Authorization: Bearer <user>`, so that the
    /// [`ApiServer::audit_log`] tells this client's writes apart (no authentication is enforced).
    pub fn kubeconfig_yaml_as(&self, user: &str) -> String {
        kubeconfig_yaml_for(&self.url())
            .replace("  user: {}", &format!("  user:\n    token: {user}"))
    }

    /// Every write request so far, oldest first.
    pub fn audit_log(&self) -> Vec<AuditRecord> {
        match self.shared.audit.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
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
