//! The `token-rotator` binary: the controller (`run`), the CRDs (`crd`) and a small CLI
//! (`rotate`, `abort`, `status`) that works against any kubeconfig.

use clap::{Args, Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::CustomResourceExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use token_rotator::api::{ClusterTokenRotation, TokenRotation};
use token_rotator::cli;
use token_rotator::controller::{self, Config};
use token_rotator::leader::{self, LeaseConfig};
use token_rotator::metrics::Metrics;
use token_rotator::notify::{Delivery, Notifier, Sink, SinkKind};
use token_rotator::server::{self, Health};
use token_rotator::telemetry::{self, LogFormat};
use token_rotator::twilio::{AccountLimiter, TwilioConfig};

/// mimalloc, not the C library's allocator: the image's binary is static, on musl, and with
/// musl's allocator the operator needed 37-42 % more CPU with 1,000 rotating (scale bench,
/// README), for 13 MiB less peak memory. Built without transparent huge pages (`no_thp`):
/// with them it held 70 MiB idle.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(
    name = "token-rotator",
    version,
    about = "Rotates Twilio credentials in Kubernetes Secrets with zero downtime"
)]
struct Cli {
    #[command(flatten)]
    kube: KubeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct KubeArgs {
    /// Kubeconfig file (default: in-cluster config, else $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Start a rotation now (sets the tokenrotator.io/rotate-now annotation).
    Rotate(TargetArgs),
    /// Abort the rotation in flight and roll back onto the old token (before promotion only).
    Abort(TargetArgs),
    /// Show TokenRotations: phase, workload rollout progress, last and next rotation.
    Status(StatusArgs),
    /// Show what a rotation would do if it started now (read-only): target Secrets, the
    /// workloads and pods it would restart or wait on, unmanaged consumers, copies of the
    /// credential outside it, the account's other resources, and whether it would hold.
    Plan(TargetArgs),
}

#[derive(Args)]
struct TargetArgs {
    /// NAME or tr/NAME (a TokenRotation), ctr/NAME (a ClusterTokenRotation).
    name: String,
    /// Namespace of a TokenRotation (default: the kubeconfig context's namespace).
    #[arg(short, long)]
    namespace: Option<String>,
}

#[derive(Args)]
struct StatusArgs {
    /// One resource: NAME or tr/NAME (a TokenRotation), ctr/NAME (a ClusterTokenRotation).
    /// Default: the TokenRotations of the namespace.
    name: Option<String>,
    /// Namespace (default: the kubeconfig context's namespace).
    #[arg(short, long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// TokenRotations across all namespaces, and the ClusterTokenRotations.
    #[arg(short = 'A', long, conflicts_with = "name")]
    all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    output: cli::Output,
}

#[derive(Args)]
struct RunArgs {
    /// Watch only these namespaces (repeat or comma-separate; default: all namespaces).
    #[arg(long, env = "TOKEN_ROTATOR_NAMESPACES", value_delimiter = ',')]
    namespace: Vec<String>,
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
    /// This replica's name, for Events and the leader lease (default: $POD_NAME).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "TOKEN_ROTATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Elect a leader on a Lease so that only one replica acts.
    #[arg(long, env = "TOKEN_ROTATOR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "TOKEN_ROTATOR_LEASE_NAME",
        default_value = "token-rotator"
    )]
    lease_name: String,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else the kubeconfig namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a leader lease outlives its last renewal: how long a standby waits after a crash.
    #[arg(
        long,
        env = "TOKEN_ROTATOR_LEASE_DURATION_SECONDS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(2..=3600)
    )]
    lease_duration_seconds: u64,
    /// At most this many rotations in flight at once; the others wait (Pending,
    /// WaitingForCapacity). 0: no limit.
    #[arg(
        long,
        env = "TOKEN_ROTATOR_MAX_CONCURRENT_ROTATIONS",
        default_value_t = 0
    )]
    max_concurrent_rotations: usize,
    /// Reconciles run at once (per watched namespace scope). 0: no limit. Bounded by default:
    /// a thousand reconciles at once (every resource at start) left the process ~65 MiB
    /// larger for good, for no speed (see the scale bench).
    #[arg(
        long,
        env = "TOKEN_ROTATOR_RECONCILE_CONCURRENCY",
        default_value_t = 32
    )]
    reconcile_concurrency: u16,
    /// At most this many Twilio requests in flight per account, across every rotation of the
    /// operator; the rest queue. The account's applications share Twilio's concurrency limit
    /// (beyond it Twilio answers 429). 0: no limit.
    #[arg(
        long,
        env = "TOKEN_ROTATOR_TWILIO_CONCURRENCY_PER_ACCOUNT",
        default_value_t = 4
    )]
    twilio_concurrency_per_account: usize,
    /// Announce rotations that succeeded, held, were aborted or failed to a JSON webhook whose
    /// URL is in a Secret: NAMESPACE/SECRET:KEY (repeat or comma-separate).
    #[arg(long, env = "TOKEN_ROTATOR_NOTIFY_WEBHOOK", value_delimiter = ',')]
    notify_webhook: Vec<String>,
    /// The same to a Slack-compatible incoming webhook: NAMESPACE/SECRET:KEY.
    #[arg(long, env = "TOKEN_ROTATOR_NOTIFY_SLACK", value_delimiter = ',')]
    notify_slack: Vec<String>,
}

async fn kube_client(args: &KubeArgs) -> Result<kube::Client, BoxError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

async fn run(kube: KubeArgs, args: RunArgs) -> Result<(), BoxError> {
    telemetry::init(args.log_format);
    let client = kube_client(&kube).await?;
    let metrics = Metrics::new();
    let health = Health::default();
    let (addr, http) = server::serve(args.http_addr, metrics.clone(), health.clone()).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        if let Err(e) = http.await {
            tracing::error!(error = %e, "HTTP endpoint failed");
        }
    });

    let namespaces: Vec<String> = args
        .namespace
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    let instance = args
        .instance
        .unwrap_or_else(|| format!("token-rotator-{}", uuid::Uuid::new_v4().simple()));
    let mut sinks = Vec::new();
    for (kind, specs) in [
        (SinkKind::Webhook, &args.notify_webhook),
        (SinkKind::Slack, &args.notify_slack),
    ] {
        for spec in specs.iter().filter(|s| !s.is_empty()) {
            sinks.push(Sink::parse(kind, spec)?);
        }
    }
    let notifier = Notifier::start(client.clone(), sinks, Delivery::default());
    let config = Config {
        notifier,
        twilio: TwilioConfig {
            base_url: args.twilio_base_url,
            ..TwilioConfig::default()
        },
        namespaces,
        instance: Some(instance.clone()),
        metrics: metrics.clone(),
        max_concurrent_rotations: args.max_concurrent_rotations,
        reconcile_concurrency: args.reconcile_concurrency,
        twilio_limiter: AccountLimiter::new(args.twilio_concurrency_per_account),
        ..Config::default()
    };
    client.apiserver_version().await.map_err(|e| {
        format!(
            "cannot reach the Kubernetes API server: {}",
            token_rotator::kube_errors::describe(&e)
        )
    })?;
    health.set_ready(true);
    tracing::info!(namespaces = ?config.namespaces, %instance, "starting token-rotator");

    if !args.leader_elect {
        metrics.set_leader(true);
        tokio::select! {
            r = controller::run(client, config) => r?,
            () = shutdown_signal() => {},
        }
        return Ok(());
    }
    let lease = LeaseConfig {
        name: args.lease_name,
        namespace: args
            .lease_namespace
            .unwrap_or_else(|| client.default_namespace().to_owned()),
        identity: instance,
        duration_seconds: args.lease_duration_seconds,
    };
    leader::run_as_leader(
        client.clone(),
        lease,
        metrics,
        shutdown_signal(),
        move || controller::run(client, config),
    )
    .await?;
    Ok(())
}

/// The namespace a CLI command addresses: the flag, else the kubeconfig context's.
fn namespace_or_default(client: &kube::Client, ns: Option<String>) -> String {
    ns.unwrap_or_else(|| client.default_namespace().to_owned())
}

/// `plan`: the dry run of one resource.
async fn plan(kube: KubeArgs, target: TargetArgs) -> Result<(), BoxError> {
    use token_rotator::controller::preview;
    let client = kube_client(&kube).await?;
    // Every resource on the same account: the TokenRotations this user may list (all
    // namespaces, else the target's), and the ClusterTokenRotations if allowed.
    let ns = namespace_or_default(&client, target.namespace.clone());
    let trs = match cli::list::<TokenRotation>(client.clone(), None, None).await {
        Ok(v) => v,
        Err(_) => cli::list::<TokenRotation>(client.clone(), Some(&ns), None).await?,
    };
    let ctrs = cli::list::<ClusterTokenRotation>(client.clone(), None, None)
        .await
        .unwrap_or_default();
    let in_flight = |s: Option<&token_rotator::api::TokenRotationStatus>| {
        s.is_some_and(|s| s.rotation.is_some())
    };
    let mut others = Vec::new();
    for t in &trs {
        use token_rotator::controller::subject::Rotated;
        others.push((
            cli::display_name(t),
            t.effective_spec().clone(),
            in_flight(t.rotation_status()),
        ));
    }
    for t in &ctrs {
        use token_rotator::controller::subject::Rotated;
        others.push((
            cli::display_name(t),
            t.effective_spec().clone(),
            in_flight(t.rotation_status()),
        ));
    }
    let p = match cli::Target::parse(&target.name)? {
        cli::Target::TokenRotation(name) => {
            let obj = cli::list::<TokenRotation>(client.clone(), Some(&ns), Some(&name)).await?;
            match obj.first() {
                Some(o) => preview::preview(&client, o, &others).await?,
                None => return Err(format!("tokenrotation {ns}/{name} not found").into()),
            }
        }
        cli::Target::ClusterTokenRotation(name) => {
            let obj = cli::list::<ClusterTokenRotation>(client.clone(), None, Some(&name)).await?;
            match obj.first() {
                Some(o) => preview::preview(&client, o, &others).await?,
                None => return Err(format!("clustertokenrotation {name} not found").into()),
            }
        }
    };
    print!("{}", p.render());
    Ok(())
}

/// `rotate` and `abort`: one annotation request, then what happens next.
async fn request(
    kube: KubeArgs,
    target: TargetArgs,
    request: cli::Request,
) -> Result<(), BoxError> {
    let client = kube_client(&kube).await?;
    let (value, shown, follow) = match cli::Target::parse(&target.name)? {
        cli::Target::TokenRotation(name) => {
            let ns = namespace_or_default(&client, target.namespace);
            let value = cli::request::<TokenRotation>(client, Some(&ns), &name, request).await?;
            (
                value,
                format!("tokenrotation {ns}/{name}"),
                format!("{name} -n {ns}"),
            )
        }
        cli::Target::ClusterTokenRotation(name) => {
            let value = cli::request::<ClusterTokenRotation>(client, None, &name, request).await?;
            (
                value,
                format!("clustertokenrotation {name}"),
                format!("ctr/{name}"),
            )
        }
    };
    match request {
        cli::Request::Rotate => println!(
            "{shown} rotation requested (rotate-now={value}); follow it with `token-rotator status {follow}`"
        ),
        cli::Request::Abort => println!(
            "{shown} abort requested (abort={value}); the old token is restored and the new one deleted"
        ),
    }
    Ok(())
}

/// How `status` shows one kind's resources.
struct Show<'a> {
    output: cli::Output,
    now: chrono::DateTime<chrono::Utc>,
    /// Objects collected for `-o json|yaml`, printed at the end.
    objects: &'a mut Vec<serde_json::Value>,
}

/// Rows of one kind: a table (and, for one named resource, its history), or the objects.
fn show<K: token_rotator::controller::subject::Rotated>(
    items: &[K],
    with_namespace: bool,
    named: bool,
    to: &mut Show<'_>,
) -> Result<(), BoxError> {
    let (output, now) = (to.output, to.now);
    let objects = &mut *to.objects;
    match output {
        cli::Output::Table => {
            print!("{}", cli::status_table(items, now, with_namespace));
            if let ([one], true) = (items, named) {
                print!("\n{}", cli::history_table(one, now));
            }
        }
        cli::Output::Json | cli::Output::Yaml => {
            for item in items {
                objects.push(serde_json::to_value(item)?);
            }
        }
    }
    Ok(())
}

async fn status(kube: KubeArgs, args: StatusArgs) -> Result<(), BoxError> {
    let client = kube_client(&kube).await?;
    let mut objects = Vec::new();
    let mut to = Show {
        output: args.output,
        now: chrono::Utc::now(),
        objects: &mut objects,
    };
    let target = args.name.as_deref().map(cli::Target::parse).transpose()?;
    match target {
        Some(cli::Target::TokenRotation(name)) => {
            let ns = namespace_or_default(&client, args.namespace);
            let items = cli::list::<TokenRotation>(client, Some(&ns), Some(&name)).await?;
            show(&items, false, true, &mut to)?;
        }
        Some(cli::Target::ClusterTokenRotation(name)) => {
            let items = cli::list::<ClusterTokenRotation>(client, None, Some(&name)).await?;
            show(&items, false, true, &mut to)?;
        }
        None => {
            let ns = (!args.all_namespaces).then(|| namespace_or_default(&client, args.namespace));
            let items = cli::list::<TokenRotation>(client.clone(), ns.as_deref(), None).await?;
            // All namespaces: the cluster kind too, when this user may list it.
            let clusters = match ns {
                Some(_) => Vec::new(),
                None => match cli::list::<ClusterTokenRotation>(client, None, None).await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("token-rotator: not showing ClusterTokenRotations: {e}");
                        Vec::new()
                    }
                },
            };
            if items.is_empty() && clusters.is_empty() && args.output == cli::Output::Table {
                match &ns {
                    Some(ns) => eprintln!("No TokenRotations found in {ns} namespace."),
                    None => eprintln!("No TokenRotations or ClusterTokenRotations found."),
                }
                return Ok(());
            }
            if !items.is_empty() || args.output != cli::Output::Table {
                show(&items, ns.is_none(), false, &mut to)?;
            }
            if !clusters.is_empty() {
                if args.output == cli::Output::Table && !items.is_empty() {
                    println!();
                }
                show(&clusters, false, false, &mut to)?;
            }
        }
    }
    if args.output != cli::Output::Table {
        print!("{}", cli::render_objects(objects, args.output)?);
    }
    Ok(())
}

/// Every CRD as multi-document YAML.
fn print_crds() -> Result<(), BoxError> {
    let docs = [
        serde_yaml::to_string(&TokenRotation::crd())?,
        serde_yaml::to_string(&token_rotator::api::ClusterTokenRotation::crd())?,
    ];
    print!("{}", docs.join("---\n"));
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { kube, command } = Cli::parse();
    token_rotator::tls::install_crypto_provider();
    let result = match command {
        Command::Crd => print_crds(),
        Command::Run(args) => run(kube, *args).await,
        Command::Rotate(t) => request(kube, t, cli::Request::Rotate).await,
        Command::Abort(t) => request(kube, t, cli::Request::Abort).await,
        Command::Status(s) => status(kube, s).await,
        Command::Plan(t) => plan(kube, t).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token-rotator: {e}");
            ExitCode::FAILURE
        }
    }
}
