//! The whole sandbox in one value: API server, workload simulator and Twilio emulator, plus
//! consumer traffic (every ready simulated pod calling Twilio with the credentials its env holds).

use crate::kube::{ApiServer, ApiServerOptions};
use crate::twilio::TwilioSandbox;
use crate::workloads::{SimulatorOptions, WorkloadSimulator};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Sandbox {
    pub api: ApiServer,
    pub workloads: WorkloadSimulator,
    pub twilio: TwilioSandbox,
    client: ::kube::Client,
}

impl Sandbox {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(SimulatorOptions::default()).await
    }

    pub async fn start_with(opts: SimulatorOptions) -> anyhow::Result<Self> {
        Self::start_full(ApiServerOptions::default(), opts).await
    }

    /// With API server options, e.g. authorization on (the simulator and [`Sandbox::client`]
    /// then act as the bootstrap administrator).
    pub async fn start_full(
        api_opts: ApiServerOptions,
        opts: SimulatorOptions,
    ) -> anyhow::Result<Self> {
        let api = ApiServer::start_with(api_opts).await?;
        let client = api.client().await;
        let workloads = WorkloadSimulator::start(client.clone(), opts).await?;
        let twilio = TwilioSandbox::start().await?;
        Ok(Self {
            api,
            workloads,
            twilio,
            client,
        })
    }

    pub fn client(&self) -> ::kube::Client {
        self.client.clone()
    }

    pub fn kubeconfig_yaml(&self) -> String {
        self.api.kubeconfig_yaml()
    }

    /// Starts consumer traffic: every `every`, each ready pod calls
    /// `GET /2010-04-01/Accounts/{sid}.json` with `sid_env`/`token_env` from its env snapshot.
    pub fn start_traffic(&self, sid_env: &str, token_env: &str, every: Duration) -> Traffic {
        self.traffic(
            TrafficAuth::AuthToken {
                sid_env: sid_env.to_owned(),
                token_env: token_env.to_owned(),
            },
            every,
        )
    }

    /// Starts consumer traffic with an API key: every `every`, each ready pod calls
    /// `GET /2010-04-01/Accounts/{sid}/Balance.json` (readable by every key kind) as
    /// `key_env:secret_env`, with the account from `sid_env`.
    pub fn start_key_traffic(
        &self,
        sid_env: &str,
        key_env: &str,
        secret_env: &str,
        every: Duration,
    ) -> Traffic {
        self.traffic(
            TrafficAuth::ApiKey {
                sid_env: sid_env.to_owned(),
                key_env: key_env.to_owned(),
                secret_env: secret_env.to_owned(),
            },
            every,
        )
    }

    fn traffic(&self, auth: TrafficAuth, every: Duration) -> Traffic {
        let counts = Arc::new(TrafficCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let sim = self.workloads.clone_handle();
        let base = self.twilio.base_url();
        let (c, s) = (counts.clone(), stop.clone());
        let task = tokio::spawn(async move {
            crate::kube::ensure_crypto_provider();
            let http = reqwest::Client::new();
            while !s.load(Ordering::Relaxed) {
                for pod in sim.all_pods().into_iter().filter(|p| p.ready) {
                    let Some((url, user, password)) = auth.request(&base, &pod.env) else {
                        continue;
                    };
                    // The sweep's snapshot ages while it calls: a pod deleted since then no
                    // longer runs, so it makes no call (it would count a refusal nobody had).
                    if !sim.is_ready(&pod.name) {
                        continue;
                    }
                    let res = http
                        .get(url)
                        .basic_auth(user, Some(password))
                        .header("User-Agent", format!("sim-pod/{}", pod.name))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => c.ok.fetch_add(1, Ordering::Relaxed),
                        _ => c.refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
                tokio::time::sleep(every).await;
            }
        });
        Traffic { counts, stop, task }
    }
}

/// Which env variables a simulated consumer authenticates with.
enum TrafficAuth {
    AuthToken {
        sid_env: String,
        token_env: String,
    },
    ApiKey {
        sid_env: String,
        key_env: String,
        secret_env: String,
    },
}

impl TrafficAuth {
    /// URL, user and password of one consumer call; `None` when the pod lacks the variables.
    fn request(
        &self,
        base: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Option<(String, String, String)> {
        match self {
            Self::AuthToken { sid_env, token_env } => {
                let (sid, token) = (env.get(sid_env)?, env.get(token_env)?);
                Some((
                    format!("{base}/2010-04-01/Accounts/{sid}.json"),
                    sid.clone(),
                    token.clone(),
                ))
            }
            Self::ApiKey {
                sid_env,
                key_env,
                secret_env,
            } => {
                let (sid, key, secret) =
                    (env.get(sid_env)?, env.get(key_env)?, env.get(secret_env)?);
                Some((
                    format!("{base}/2010-04-01/Accounts/{sid}/Balance.json"),
                    key.clone(),
                    secret.clone(),
                ))
            }
        }
    }
}

#[derive(Default)]
pub struct TrafficCounts {
    pub ok: AtomicU64,
    pub refused: AtomicU64,
}

/// Consumer traffic in the background; [`Traffic::stop`] returns (served, refused).
pub struct Traffic {
    counts: Arc<TrafficCounts>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    pub fn served(&self) -> u64 {
        self.counts.ok.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::Relaxed)
    }

    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let counts = self.counts.clone();
        let _ = self.task.await;
        (
            counts.ok.load(Ordering::Relaxed),
            counts.refused.load(Ordering::Relaxed),
        )
    }
}
