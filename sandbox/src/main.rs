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
    /// In-memory Kubernetes API server with the workload simulator; writes a kubeconfig.
    Kube(sandbox::kube::KubeArgs),
    /// The whole world: API server, workload simulator, Twilio emulator, and every pod holding
    /// Twilio credentials calling it.
    Up(sandbox::up::UpArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Twilio(args) => sandbox::twilio::cli::run(args).await,
        Command::Kube(args) => sandbox::kube::run(args).await,
        Command::Up(args) => sandbox::up::run(args).await,
    }
}
