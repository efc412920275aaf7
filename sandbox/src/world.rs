//! The whole sandbox in one value: API server, workload simulator and Twilio emulator, plus
//! consumer traffic (every simulated pod calling Twilio with the credentials it holds, see
//! [`crate::traffic`]).

use crate::kube::{ApiServer, ApiServerOptions};
use crate::traffic::{Traffic, TrafficAuth};
use crate::twilio::{TwilioConfig, TwilioSandbox};
use crate::workloads::{SimulatorOptions, WorkloadSimulator};
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
        Self::start_world(api_opts, opts, TwilioConfig::default()).await
    }

    /// Every part configured (what `sandbox up` starts).
    pub async fn start_world(
        api_opts: ApiServerOptions,
        opts: SimulatorOptions,
        twilio: TwilioConfig,
    ) -> anyhow::Result<Self> {
        let api = ApiServer::start_with(api_opts).await?;
        let client = api.client().await;
        let workloads = WorkloadSimulator::start(client.clone(), opts).await?;
        let twilio = TwilioSandbox::start_with(twilio).await?;
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

    /// Starts consumer traffic: every `every`, each pod that has served calls
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

    /// Starts consumer traffic with an API key: every `every`, each pod that has served calls
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

    /// Every pod that holds Twilio credentials in its env or mounted files (an account SID
    /// `AC…` with an Auth Token, or an API key `SK…` with its secret) calls Twilio with them
    /// every `every`: what `sandbox up` runs.
    pub fn start_detected_traffic(&self, every: Duration) -> Traffic {
        self.traffic(TrafficAuth::Detect, every)
    }

    fn traffic(&self, auth: TrafficAuth, every: Duration) -> Traffic {
        crate::traffic::start(
            self.workloads.clone_handle(),
            self.twilio.base_url(),
            auth,
            every,
        )
    }
}
