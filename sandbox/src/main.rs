//! `sandbox` binary: runs the test doubles as standalone processes.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sandbox", about = "token-rotator test doubles")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stateful Twilio emulator (Auth Tokens, API keys, accounts).
    Twilio(sandbox::twilio::cli::TwilioArgs),
    /// In-memory Kubernetes API server; writes a kubeconfig for it.
    Kube(sandbox::kube::KubeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Twilio(args) => sandbox::twilio::cli::run(args).await,
        Command::Kube(args) => sandbox::kube::run(args).await,
    }
}
