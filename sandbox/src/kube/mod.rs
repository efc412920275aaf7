//! In-memory Kubernetes API server for tests, benchmarks and demos.
//!
//! Serves built-in kinds and CRD-defined custom resources over plain HTTP with the semantics
//! real clients (kubectl, helm, client-go, kube-rs, the Python client) depend on: one global
//! resourceVersion, optimistic concurrency, watches with bookmarks and 410s, paging, selectors,
//! all four patch types including server-side apply, status/scale subresources, finalizers,
//! garbage collection, CRD schemas and CEL rules, Tables, discovery and OpenAPI v3.
//! See sandbox/README.md for what is and is not emulated.

pub mod auth;
mod builtin;
pub mod cel;
mod controllers;
pub mod crd;
mod discovery;
mod engine;
pub mod error;
pub(crate) mod http;
mod list;
pub mod meta;
mod negotiate;
mod openapi;
pub mod patch;
mod protobuf;
pub mod registry;
pub mod schema;
pub mod selector;
mod server;
mod store;
mod structural;
mod table;
mod tls;
mod views;
mod watch;

pub use cel::{cel_rule_report, CelRuleReport};
pub use server::{
    ensure_crypto_provider, kubeconfig_for, kubeconfig_yaml_for, AdmissionCheck, ApiServer,
    ApiServerOptions, AuditRecord,
};

use std::net::SocketAddr;
use std::path::PathBuf;

/// `sandbox kube --listen 127.0.0.1:PORT --kubeconfig PATH`
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where to write a kubeconfig for this server.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Events kept for watches; older resourceVersions get 410 Expired.
    #[arg(long, default_value_t = 100_000)]
    pub watch_window: usize,
    /// Authenticate bearer tokens and enforce RBAC. The kubeconfig written is then the
    /// bootstrap administrator's (group system:masters).
    #[arg(long)]
    pub authz: bool,
    /// Serve the API only: no workload simulator (Deployments then never roll out).
    #[arg(long)]
    pub no_workloads: bool,
    /// More bearer tokens, in kube-apiserver's --token-auth-file format
    /// (`token,user,uid,"group1,group2"`). Implies --authz.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
}

/// Runs the API server until the process is killed.
pub async fn run(args: KubeArgs) -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let auth = match &args.token_auth_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let tokens = auth::AuthOptions::parse_token_file(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(auth::AuthOptions { tokens })
        }
        None if args.authz => Some(auth::AuthOptions::default()),
        None => None,
    };
    let authz = auth.is_some();
    let server = ApiServer::start_with(ApiServerOptions {
        listen: args.listen,
        watch_window: args.watch_window,
        auth,
        ..Default::default()
    })
    .await?;
    if let Some(path) = &args.kubeconfig {
        std::fs::write(path, server.kubeconfig_yaml())?;
    }
    // Deployments, StatefulSets and DaemonSets roll out and their pods run, as on a cluster.
    let _simulator = if args.no_workloads {
        None
    } else {
        Some(
            crate::workloads::WorkloadSimulator::start(server.client().await, Default::default())
                .await?,
        )
    };
    println!("sandbox kube API server listening on {}", server.url());
    if authz {
        println!(
            "authorization: RBAC (kubeconfig user is {})",
            auth::ADMIN_USER
        );
    }
    std::future::pending::<()>().await;
    Ok(())
}
