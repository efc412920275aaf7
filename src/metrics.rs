//! Prometheus metrics, in the style of cert-manager's: per-resource gauges rebuilt from each
//! status written, counters and histograms for what happened, Twilio calls by endpoint and outcome.
//!
//! Per-resource state is kept as plain data and encoded at scrape time (a [`Collector`]), so the
//! token age is exact at the moment of the scrape and a deleted resource's series vanish at once.

use crate::api::{Phase, RotationResult, TokenRotationStatus};
use crate::time::from_k8s;
use crate::twilio::{CallObserver, CallRecord};
use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Every phase, for the one-hot `phase` gauge (a missing series reads as "not in this phase").
const PHASES: [Phase; 11] = [
    Phase::Pending,
    Phase::Ready,
    Phase::Staging,
    Phase::Distributing,
    Phase::RollingOut,
    Phase::Verifying,
    Phase::Promoting,
    Phase::Retiring,
    Phase::Aborting,
    Phase::Aborted,
    Phase::Failed,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    namespace: String,
    name: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

/// The phase histogram's: per namespace, not per resource. A histogram is 13 series, so per
/// resource and phase the exposition grew to ~9.5 MB (and the operator's peak by ~11 MiB at
/// each scrape) once 1,000 resources had rotated. Each resource's own state is in its gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespacePhaseLabels {
    namespace: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    namespace: String,
    name: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    endpoint: String,
    outcome: String,
}

/// What the gauges of one TokenRotation show, taken from its last written status.
#[derive(Clone, Debug, Default, PartialEq)]
struct ResourceState {
    phase: Option<Phase>,
    last_rotation: Option<DateTime<Utc>>,
    next_rotation: Option<DateTime<Utc>>,
    held: bool,
}

#[derive(Debug, Default)]
struct ResourceGauges {
    resources: Mutex<BTreeMap<(String, String), ResourceState>>,
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

impl Collector for ResourceGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = Utc::now();
        let labels = |(ns, name): &(String, String)| ResourceLabels {
            namespace: ns.clone(),
            name: name.clone(),
        };
        // One family at a time: the text format wants all samples of a family together.
        let mut gauge_family = |name: &str,
                                help: &str,
                                value: &dyn Fn(&ResourceState) -> Option<f64>|
         -> Result<(), std::fmt::Error> {
            let example = ConstGauge::new(0.0f64);
            let mut family = encoder.encode_descriptor(name, help, None, example.metric_type())?;
            for (key, state) in &snapshot {
                if let Some(v) = value(state) {
                    ConstGauge::new(v).encode(family.encode_family(&labels(key))?)?;
                }
            }
            Ok(())
        };
        gauge_family(
            "token_rotator_token_age_seconds",
            "Seconds since the token was last rotated (promoted).",
            &|s| {
                s.last_rotation
                    .map(|t| (now - t).num_milliseconds() as f64 / 1000.0)
            },
        )?;
        gauge_family(
            "token_rotator_last_rotation_timestamp_seconds",
            "Unix time the token was last rotated (promoted).",
            &|s| s.last_rotation.map(seconds),
        )?;
        gauge_family(
            "token_rotator_next_rotation_timestamp_seconds",
            "Unix time the schedule runs next (absent without a schedule).",
            &|s| s.next_rotation.map(seconds),
        )?;
        gauge_family(
            "token_rotator_rotation_held",
            "1 while a rotation is held before promotion (rollout timeout, paused or failing workload, a reverted target Secret, an account conflict).",
            &|s| Some(if s.held { 1.0 } else { 0.0 }),
        )?;

        let example = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "token_rotator_phase",
            "Current phase of each TokenRotation (1 for the current phase, 0 for the others).",
            None,
            example.metric_type(),
        )?;
        for ((ns, name), state) in &snapshot {
            for phase in PHASES {
                let labels = PhaseLabels {
                    namespace: ns.clone(),
                    name: name.clone(),
                    phase: phase.as_str().to_owned(),
                };
                let v = i64::from(state.phase == Some(phase));
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The operator's metrics. Cheap to clone; all clones update one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    resources: Arc<ResourceGauges>,
    rotations: Family<ResultLabels, Counter>,
    phase_seconds: Family<NamespacePhaseLabels, Histogram>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconciles: Family<ResourceLabels, Counter>,
    twilio_calls: Family<CallLabels, Counter>,
    put_off: Family<KindLabels, Counter>,
    leader: Gauge,
    /// The label values each resource's counters and histograms have, so its series can be
    /// dropped with it (the families cannot be listed).
    series: Mutex<BTreeMap<(String, String), BTreeSet<Series>>>,
}

/// One labelled series of a resource beyond the gauges.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Series {
    Reconciles,
    Result(String),
    Error(String),
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let resources = Arc::new(ResourceGauges::default());
        registry.register_collector(Box::new(resources.clone()));

        let rotations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "token_rotator_rotations",
            "Finished rotations by result (Succeeded, Aborted).",
            rotations.clone(),
        );
        let phase_seconds = Family::<NamespacePhaseLabels, Histogram>::new_with_constructor(|| {
            // 50 ms to ~14 h: steps take milliseconds, rollouts minutes, held rotations hours.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.05, 4.0, 10,
            ))
        });
        registry.register(
            "token_rotator_phase_duration_seconds",
            "Time spent in each rotation phase, observed when the phase ends, per namespace.",
            phase_seconds.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "token_rotator_reconcile_errors",
            "Failed reconciles and failed rotation steps, by reason.",
            reconcile_errors.clone(),
        );
        let reconciles = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "token_rotator_reconciles",
            "Reconciles performed.",
            reconciles.clone(),
        );
        let twilio_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "token_rotator_twilio_requests",
            "Twilio API calls (retries included in one call) by endpoint and outcome.",
            twilio_calls.clone(),
        );
        let put_off = Family::<KindLabels, Counter>::default();
        registry.register(
            "token_rotator_reconciles_put_off",
            "Reconciles put off because another of the same resource was running, by kind.",
            put_off.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "token_rotator_leader",
            "1 while this replica holds the leader lease and runs the controller.",
            leader.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                resources,
                rotations,
                phase_seconds,
                reconcile_errors,
                reconciles,
                twilio_calls,
                put_off,
                leader,
                series: Mutex::default(),
            }),
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }

    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    fn note(&self, namespace: &str, name: &str, series: Series) {
        self.inner
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .insert(series);
    }

    /// Drops every counter and histogram series of one resource.
    fn drop_series(&self, namespace: &str, name: &str, series: &BTreeSet<Series>) {
        let (ns, n) = (namespace.to_owned(), name.to_owned());
        for s in series {
            match s {
                Series::Reconciles => {
                    self.inner.reconciles.remove(&ResourceLabels {
                        namespace: ns.clone(),
                        name: n.clone(),
                    });
                }
                Series::Result(result) => {
                    self.inner.rotations.remove(&ResultLabels {
                        namespace: ns.clone(),
                        name: n.clone(),
                        result: result.clone(),
                    });
                }
                Series::Error(reason) => {
                    self.inner.reconcile_errors.remove(&ErrorLabels {
                        namespace: ns.clone(),
                        name: n.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
    }

    pub fn reconciled(&self, namespace: &str, name: &str) {
        self.note(namespace, name, Series::Reconciles);
        self.inner
            .reconciles
            .get_or_create(&ResourceLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .inc();
    }

    /// A reconcile put off: another of the same resource was running.
    pub fn reconcile_put_off(&self, kind: &str) {
        self.inner
            .put_off
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Reconciles of `kind` put off so far.
    pub fn reconciles_put_off(&self, kind: &str) -> u64 {
        self.inner
            .put_off
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .get()
    }

    pub fn reconcile_error(&self, namespace: &str, name: &str, reason: &str) {
        self.note(namespace, name, Series::Error(reason.to_owned()));
        self.inner
            .reconcile_errors
            .get_or_create(&ErrorLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records a status write: gauges from the new status, a phase duration when the phase
    /// ended, a finished rotation when one ended.
    pub fn status_written(
        &self,
        namespace: &str,
        name: &str,
        old: &TokenRotationStatus,
        new: &TokenRotationStatus,
        now: DateTime<Utc>,
    ) {
        if old.phase != new.phase {
            let started = old.rotation.as_ref().map(|r| from_k8s(&r.phase_start_time));
            if let (Some(phase), Some(started)) = (old.phase, started) {
                let secs = (now - started).num_milliseconds().max(0) as f64 / 1000.0;
                self.inner
                    .phase_seconds
                    .get_or_create(&NamespacePhaseLabels {
                        namespace: namespace.to_owned(),
                        phase: phase.as_str().to_owned(),
                    })
                    .observe(secs);
            }
        }
        if old.rotation.is_some() && new.rotation.is_none() {
            if let Some(result) = new.last_result {
                let result = match result {
                    RotationResult::Succeeded => "Succeeded",
                    RotationResult::Aborted => "Aborted",
                    RotationResult::Failed => "Failed",
                };
                self.note(namespace, name, Series::Result(result.to_owned()));
                self.inner
                    .rotations
                    .get_or_create(&ResultLabels {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        result: result.to_owned(),
                    })
                    .inc();
            }
        }
        self.observe(namespace, name, new);
    }

    /// Sets the gauges of one resource from its status.
    pub fn observe(&self, namespace: &str, name: &str, status: &TokenRotationStatus) {
        let state = ResourceState {
            phase: status.phase,
            last_rotation: status.last_rotation_time.as_ref().map(from_k8s),
            next_rotation: status.next_rotation_time.as_ref().map(from_k8s),
            held: status
                .rotation
                .as_ref()
                .is_some_and(|r| r.held_reason.is_some()),
        };
        self.inner
            .resources
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_owned(), name.to_owned()), state);
    }

    /// Drops a deleted resource's per-resource series: gauges, counters and histograms.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.retain(|ns, n| !(ns == namespace && n == name));
    }

    /// Keeps the per-resource series of the resources for which `live` holds.
    pub fn retain(&self, live: impl Fn(&str, &str) -> bool) {
        self.inner
            .resources
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(ns, name), _| live(ns, name));
        let gone: Vec<((String, String), BTreeSet<Series>)> = {
            let mut series = self.inner.series.lock().unwrap_or_else(|e| e.into_inner());
            let dead: Vec<(String, String)> = series
                .keys()
                .filter(|(ns, name)| !live(ns, name))
                .cloned()
                .collect();
            dead.into_iter()
                .filter_map(|k| series.remove(&k).map(|v| (k, v)))
                .collect()
        };
        for ((ns, name), s) in gone {
            self.drop_series(&ns, &name, &s);
        }
    }

    /// A Twilio call observer feeding `token_rotator_twilio_requests_total`.
    pub fn twilio_observer(&self) -> Arc<dyn CallObserver> {
        let calls = self.inner.twilio_calls.clone();
        Arc::new(move |record: &CallRecord| {
            calls
                .get_or_create(&CallLabels {
                    endpoint: record.endpoint.as_str().to_owned(),
                    outcome: record.outcome.as_str().to_owned(),
                })
                .inc();
        })
    }
}

#[cfg(test)]
mod tests;
