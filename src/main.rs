//! The `token-rotator` binary.

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use std::process::ExitCode;
use token_rotator::api::TokenRotation;
use token_rotator::controller::{self, Config};
use token_rotator::telemetry::{self, LogFormat};
use token_rotator::twilio::TwilioConfig;

#[derive(Parser)]
#[command(
    name = "token-rotator",
    version,
    about = "Rotates Twilio credentials in Kubernetes Secrets with zero downtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster (in-cluster config, else KUBECONFIG).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "TOKEN_ROTATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Send every Twilio request to this base URL (an emulator or a proxy).
    #[arg(long, env = "TOKEN_ROTATOR_TWILIO_BASE_URL")]
    twilio_base_url: Option<url::Url>,
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "TOKEN_ROTATOR_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Event reporting instance (defaults to the pod name from POD_NAME).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
}

/// All CRDs, as a multi-document YAML stream.
fn crds_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&TokenRotation::crd())
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init(args.log_format);
    let client = kube::Client::try_default().await?;
    let config = Config {
        twilio: TwilioConfig {
            base_url: args.twilio_base_url,
            ..TwilioConfig::default()
        },
        namespace: args.namespace,
        instance: args.instance,
        ..Config::default()
    };
    tracing::info!(namespace = ?config.namespace, "starting token-rotator controller");
    controller::run(client, config).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => crds_yaml().map(|y| print!("{y}")).map_err(Into::into),
        Command::Run(args) => run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token-rotator: {e}");
            ExitCode::FAILURE
        }
    }
}
