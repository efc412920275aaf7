//! `sandbox up`: the whole world in one process, for trying the operator by hand as on a
//! cluster. The API server (with the workload simulator, so Deployments roll out and pods run),
//! the Twilio emulator with the given accounts, and consumer traffic: every pod whose env or
//! mounted files hold Twilio credentials calls the emulator on its own timer. Counts per
//! namespace, pod and credential fingerprint are at `GET /sandbox/v1/traffic` on the API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::kube::auth::AuthOptions;
use crate::kube::ApiServerOptions;
use crate::twilio::{AccountSeed, TwilioConfig};
use crate::workloads::SimulatorOptions;
use crate::{Sandbox, Traffic};

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Where to write the kubeconfig (cluster, user and context `sandbox`).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// API server address.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Twilio emulator address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub twilio_listen: SocketAddr,
    /// Twilio account to create: `SID:AUTH_TOKEN[:REGION]`. Repeatable.
    #[arg(long = "account", value_name = "SID:AUTH_TOKEN", value_parser = crate::twilio::cli::parse_account)]
    pub accounts: Vec<AccountSeed>,
    /// How often each consumer pod calls Twilio, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub call_every_ms: u64,
    /// Authenticate and enforce RBAC (HTTPS; the kubeconfig is the administrator's).
    #[arg(long)]
    pub authz: bool,
    /// A deleted pod drains for its terminationGracePeriodSeconds times this factor (0: at
    /// once). 1 is what a cluster does.
    #[arg(long, default_value_t = 0.0)]
    pub termination_grace_scale: f64,
}

/// A running world; stops when dropped.
pub struct Up {
    pub sandbox: Sandbox,
    pub traffic: Traffic,
}

impl Up {
    pub async fn start(args: &UpArgs) -> anyhow::Result<Self> {
        let sandbox = Sandbox::start_world(
            ApiServerOptions {
                listen: args.listen,
                auth: args.authz.then(AuthOptions::default),
                ..Default::default()
            },
            SimulatorOptions {
                termination_grace_scale: args.termination_grace_scale,
                ..Default::default()
            },
            TwilioConfig {
                listen: args.twilio_listen,
                accounts: args.accounts.clone(),
                ..Default::default()
            },
        )
        .await?;
        std::fs::write(&args.kubeconfig, sandbox.api.kubeconfig_yaml())?;
        let traffic =
            sandbox.start_detected_traffic(Duration::from_millis(args.call_every_ms.max(1)));
        sandbox.api.serve_traffic(traffic.summary_source());
        Ok(Up { sandbox, traffic })
    }

    /// What a user needs to know, one `key: value` per line.
    pub fn banner(&self, args: &UpArgs) -> String {
        let api = self.sandbox.api.url();
        format!(
            "kubeconfig: {}\napi server: {api}\ntwilio base url: {}\ntraffic: {api}/sandbox/v1/traffic\nrequests: {api}/sandbox/v1/requests\n",
            args.kubeconfig.display(),
            self.sandbox.twilio.base_url(),
        )
    }
}

/// Runs until Ctrl-C / SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let up = Up::start(&args).await?;
    print!("{}", up.banner(&args));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let (served, refused) = up.traffic.stop().await;
    println!("consumer calls: {served} served, {refused} refused");
    Ok(())
}
