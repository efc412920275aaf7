//! Consumer traffic: every simulated pod that holds Twilio credentials calls the emulator on its
//! own timer, as an application would, and every call is counted honestly. A pod calls while it
//! exists and has served (been ready), Terminating included (a draining worker still works),
//! and never after it is gone: each call looks the pod up first. Refused calls are kept with the
//! pod, its phase and how long after its deletion they happened, so a test can tell an outage
//! from noise. Counts are per namespace, pod and credential fingerprint, never the credential.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::workloads::{PodPhase, PodsView, SimPod};

/// Which credentials a simulated consumer authenticates with.
pub(crate) enum TrafficAuth {
    AuthToken {
        sid_env: String,
        token_env: String,
    },
    ApiKey {
        sid_env: String,
        key_env: String,
        secret_env: String,
    },
    /// Whatever Twilio credentials the pod holds (env or mounted files).
    Detect,
}

fn is_sid(v: &str, prefix: &str) -> bool {
    v.len() == 34 && v.starts_with(prefix) && v[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_secret(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl TrafficAuth {
    /// URL, user and password of one consumer call; `None` when the pod lacks the credentials.
    fn request(&self, base: &str, pod: &SimPod) -> Option<(String, String, String)> {
        let env = &pod.env;
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
            Self::Detect => detect(base, pod),
        }
    }
}

/// Twilio credentials in a pod's env, then its mounted files; values under names that say
/// TOKEN or SECRET win over others of the same shape, and a PREVIOUS one loses.
fn detect(base: &str, pod: &SimPod) -> Option<(String, String, String)> {
    let values: Vec<(&String, &String)> = pod
        .env
        .iter()
        .chain(pod.mounted.values().flat_map(|files| files.iter()))
        .collect();
    let find = |pred: &dyn Fn(&str) -> bool| {
        values
            .iter()
            .filter(|(_, v)| pred(v.trim()))
            .max_by_key(|(k, _)| {
                // An app reads its current credential, not the previous one kept beside it.
                let k = k.to_ascii_uppercase();
                (
                    k.contains("TOKEN") || k.contains("SECRET"),
                    !k.contains("PREVIOUS"),
                )
            })
            .map(|(_, v)| v.trim().to_string())
    };
    let sid = find(&|v| is_sid(v, "AC"))?;
    match find(&|v| is_sid(v, "SK")) {
        Some(key) => {
            let secret = find(&is_secret)?;
            Some((
                format!("{base}/2010-04-01/Accounts/{sid}/Balance.json"),
                key,
                secret,
            ))
        }
        None => {
            let token = find(&is_secret)?;
            Some((format!("{base}/2010-04-01/Accounts/{sid}.json"), sid, token))
        }
    }
}

/// Eight hex digits naming a credential without showing it.
pub fn fingerprint(secret: &str) -> String {
    use sha1::Digest;
    let d = sha1::Sha1::digest(secret.as_bytes());
    hex::encode(&d[..4])
}

/// A refused consumer call, with what tells an outage from noise.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refusal {
    pub at: DateTime<Utc>,
    pub namespace: String,
    pub pod: String,
    /// "running" or "terminating".
    pub phase: &'static str,
    /// For a Terminating pod: milliseconds since its deletion began.
    pub after_deletion_ms: Option<i64>,
    /// [`fingerprint`] of the refused credential.
    pub credential: String,
}

/// Refusals kept in full (the counts go on).
const REFUSALS_KEPT: usize = 10_000;

/// (namespace, pod, credential fingerprint)
type PodKey = (String, String, String);

#[derive(Default)]
struct TrafficLog {
    ok: AtomicU64,
    refused: AtomicU64,
    /// (namespace, pod, fingerprint) -> (served, refused)
    per_pod: Mutex<BTreeMap<PodKey, (u64, u64)>>,
    refusals: Mutex<Vec<Refusal>>,
}

impl TrafficLog {
    fn record(&self, pod: &SimPod, secret: &str, ok: bool) {
        let fp = fingerprint(secret);
        let counter = if ok { &self.ok } else { &self.refused };
        counter.fetch_add(1, Ordering::Relaxed);
        {
            let mut m = self.per_pod.lock().unwrap_or_else(|p| p.into_inner());
            let e = m
                .entry((pod.workload.namespace.clone(), pod.name.clone(), fp.clone()))
                .or_default();
            if ok {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        if ok {
            return;
        }
        let now = Utc::now();
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() < REFUSALS_KEPT {
            r.push(Refusal {
                at: now,
                namespace: pod.workload.namespace.clone(),
                pod: pod.name.clone(),
                phase: match pod.terminating_since {
                    Some(_) => "terminating",
                    None => "running",
                },
                after_deletion_ms: pod.terminating_since.map(|t| (now - t).num_milliseconds()),
                credential: fp,
            });
        }
    }

    fn summary(&self) -> Value {
        let pods: Vec<Value> = self
            .per_pod
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((ns, pod, fp), (ok, refused))| {
                json!({"namespace": ns, "pod": pod, "credential": fp, "served": ok, "refused": refused})
            })
            .collect();
        json!({
            "served": self.ok.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "pods": pods,
            "refusals": *self.refusals.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }
}

/// A pod calls once it has served (been ready): while ready, and while draining after.
fn calls(pod: &SimPod) -> bool {
    pod.phase == PodPhase::Running
        && (pod.ready || (pod.terminating_since.is_some() && pod.ready_at.is_some()))
}

/// One pod's calls.
struct Consumer {
    uid: String,
    pods: PodsView,
    auth: Arc<TrafficAuth>,
    base: String,
    http: reqwest::Client,
    log: Arc<TrafficLog>,
    stop: Arc<AtomicBool>,
    every: Duration,
}

impl Consumer {
    /// Calls until the pod is gone (or traffic stops); returns the pod's uid.
    async fn run(self) -> String {
        while !self.stop.load(Ordering::Relaxed) {
            // Looked up at each call: a pod that is gone makes no call, and mounted files are
            // read as they are now.
            let Some(pod) = self.pods.live(&self.uid) else {
                break;
            };
            if calls(&pod) {
                if let Some((url, user, password)) = self.auth.request(&self.base, &pod) {
                    let res = self
                        .http
                        .get(url)
                        .basic_auth(&user, Some(&password))
                        .header("User-Agent", format!("sim-pod/{}", pod.name))
                        .send()
                        .await;
                    let ok = matches!(&res, Ok(r) if r.status().is_success());
                    self.log.record(&pod, &password, ok);
                }
            }
            tokio::time::sleep(self.every).await;
        }
        self.uid
    }
}

/// Starts the traffic: a new pod joins within one period.
pub(crate) fn start(pods: PodsView, base: String, auth: TrafficAuth, every: Duration) -> Traffic {
    let log = Arc::new(TrafficLog::default());
    let stop = Arc::new(AtomicBool::new(false));
    let auth = Arc::new(auth);
    let (l, s) = (log.clone(), stop.clone());
    let task = tokio::spawn(async move {
        crate::kube::ensure_crypto_provider();
        let http = reqwest::Client::new();
        let mut calling: HashSet<String> = HashSet::new();
        let mut consumers = tokio::task::JoinSet::new();
        while !s.load(Ordering::Relaxed) {
            while let Some(done) = consumers.try_join_next() {
                if let Ok(uid) = done {
                    calling.remove(&uid);
                }
            }
            for pod in pods.live_pods() {
                if calling.contains(&pod.uid) || auth.request(&base, &pod).is_none() {
                    continue;
                }
                calling.insert(pod.uid.clone());
                consumers.spawn(
                    Consumer {
                        uid: pod.uid.clone(),
                        pods: pods.clone(),
                        auth: auth.clone(),
                        base: base.clone(),
                        http: http.clone(),
                        log: l.clone(),
                        stop: s.clone(),
                        every,
                    }
                    .run(),
                );
            }
            tokio::time::sleep(every).await;
        }
        while consumers.join_next().await.is_some() {}
    });
    Traffic { log, stop, task }
}

/// Consumer traffic in the background; [`Traffic::stop`] returns (served, refused).
pub struct Traffic {
    log: Arc<TrafficLog>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    pub fn served(&self) -> u64 {
        self.log.ok.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.log.refused.load(Ordering::Relaxed)
    }

    /// Refused calls so far, oldest first (the first 10,000).
    pub fn refusals(&self) -> Vec<Refusal> {
        self.log
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Served and refused calls per namespace, pod and credential fingerprint (never the
    /// credential), with the refusals: what `GET /sandbox/v1/traffic` serves.
    pub fn summary(&self) -> Value {
        self.log.summary()
    }

    /// A handle that serves [`Traffic::summary`] from elsewhere (the API server's
    /// `/sandbox/v1/traffic`).
    pub fn summary_source(&self) -> Arc<dyn Fn() -> Value + Send + Sync> {
        let log = self.log.clone();
        Arc::new(move || log.summary())
    }

    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let log = self.log.clone();
        let _ = self.task.await;
        (
            log.ok.load(Ordering::Relaxed),
            log.refused.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(env: &[(&str, &str)], files: &[(&str, &str)]) -> SimPod {
        SimPod::for_test(env, "/etc/twilio", files)
    }

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn credentials_are_found_in_env_or_files() {
        let (url, user, pw) = detect(
            "http://t",
            &pod(&[("SID", SID), ("AUTH_TOKEN", TOKEN)], &[]),
        )
        .unwrap();
        assert_eq!((user.as_str(), pw.as_str()), (SID, TOKEN));
        assert!(url.ends_with(&format!("/Accounts/{SID}.json")));
        let (_, user, pw) =
            detect("http://t", &pod(&[], &[("sid", SID), ("token", TOKEN)])).unwrap();
        assert_eq!((user.as_str(), pw.as_str()), (SID, TOKEN));
        let key = "SK0123456789abcdef0123456789abcdef";
        let (url, user, pw) = detect(
            "http://t",
            &pod(&[("SID", SID), ("KEY", key), ("API_SECRET", TOKEN)], &[]),
        )
        .unwrap();
        assert_eq!((user.as_str(), pw.as_str()), (key, TOKEN));
        assert!(url.ends_with("/Balance.json"));
        assert!(detect("http://t", &pod(&[("SID", SID)], &[])).is_none());
    }

    #[test]
    fn a_draining_pod_calls_only_if_it_served() {
        let mut p = pod(&[], &[]);
        p.ready = false;
        assert!(!calls(&p), "never ready");
        p.terminating_since = Some(Utc::now());
        assert!(!calls(&p), "never served");
        p.ready_at = Some(Utc::now());
        assert!(calls(&p), "draining after serving");
    }
}
