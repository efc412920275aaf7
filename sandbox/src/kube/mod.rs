//! In-memory Kubernetes API server for tests, benchmarks and demos.
//!
//! Serves built-in kinds and CRD-defined custom resources over plain HTTP with the semantics
//! real clients (kubectl, helm, client-go, kube-rs, the Python client) depend on: one global
//! resourceVersion, optimistic concurrency, watches with bookmarks and 410s, paging, selectors,
//! all four patch types including server-side apply, status/scale subresources, finalizers,
//! garbage collection, CRD schemas and CEL rules, Tables, discovery and OpenAPI v3.
//! See sandbox/README.md for what is and is not emulated.

mod builtin;
pub mod cel;
mod controllers;
pub mod crd;
mod discovery;
mod engine;
pub mod error;
mod http;
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
mod views;
mod watch;

pub use cel::{cel_rule_report, CelRuleReport};
pub use server::{
    ensure_crypto_provider, kubeconfig_for, kubeconfig_yaml_for, ApiServer, ApiServerOptions,
    AuditRecord,
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
}

/// Runs the API server until the process is killed.
pub async fn run(args: KubeArgs) -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let server = ApiServer::start_with(ApiServerOptions {
        listen: args.listen,
        watch_window: args.watch_window,
        ..Default::default()
    })
    .await?;
    if let Some(path) = &args.kubeconfig {
        std::fs::write(path, server.kubeconfig_yaml())?;
    }
    println!("sandbox kube API server listening on {}", server.url());
    std::future::pending::<()>().await;
    Ok(())
}
