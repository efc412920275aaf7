//! A TokenRotation's spec and annotations, parsed and checked once per reconcile.

use crate::api::{NoConsumers, RestartPolicy, TokenRotationSpec, UnmanagedPods};
use crate::schedule::{parse_duration, Schedule, ScheduleError, Window};
use std::time::Duration;

/// Default wait for `restart: Never`: the kubelet's sync period (1m) plus its Secret cache TTL.
pub const DEFAULT_KUBELET_SYNC_DELAY: Duration = Duration::from_secs(120);

pub use crate::providers::CredentialKind;

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub credential: CredentialKind,
    /// API keys: how many previous keys stay valid after a rotation.
    pub retain_previous: usize,
    pub rollout_timeout: Duration,
    pub propagation_delay: Duration,
    pub overlap: Duration,
    pub kubelet_sync_delay: Duration,
    pub restart: RestartPolicy,
    pub unmanaged_pods: UnmanagedPods,
    pub no_consumers: NoConsumers,
    pub suspend: bool,
    /// `Ok(None)`: no schedule annotation. An invalid schedule blocks only scheduled runs.
    pub schedule: Result<Option<Schedule>, ScheduleError>,
    /// When scheduled runs may start; empty: any time.
    pub windows: Vec<Window>,
}

impl Plan {
    /// What a rotation waits for whatever its workloads do: a window must have room for it.
    pub fn mandatory_waits(&self) -> Duration {
        let sync = match self.restart {
            RestartPolicy::Always => Duration::ZERO,
            RestartPolicy::Never => self.kubelet_sync_delay,
        };
        self.propagation_delay + self.overlap + sync
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("set exactly one of spec.authToken and spec.apiKey")]
    NoCredentialKind,
    #[error("spec.windows[{index}].start {value:?} is not a 5-field cron expression ({reason})")]
    InvalidWindow {
        index: usize,
        value: String,
        reason: String,
    },
    #[error("spec.windows[{index}] is open {window:?}, shorter than the rotation's mandatory waits ({needs:?}: propagationDelay + overlap, and kubeletSyncDelay with restart: Never): lengthen the window or shorten the waits")]
    WindowTooShort {
        index: usize,
        window: Duration,
        needs: Duration,
    },
    #[error("spec.{field} {value:?} is not a duration ({reason}); write it like 90s, 15m or 1h")]
    InvalidDuration {
        field: &'static str,
        value: String,
        reason: String,
    },
}

impl Plan {
    pub fn new(spec: &TokenRotationSpec, schedule: Option<&str>) -> Result<Self, PlanError> {
        let dur = |field: &'static str, value: &str| {
            parse_duration(value).map_err(|reason| PlanError::InvalidDuration {
                field,
                value: value.to_owned(),
                reason,
            })
        };
        let workloads = spec.workloads.clone().unwrap_or_default();
        let mut plan = Self {
            credential: CredentialKind::of(spec).ok_or(PlanError::NoCredentialKind)?,
            retain_previous: spec
                .api_key
                .as_ref()
                .map_or(0, |k| usize::try_from(k.retain_previous).unwrap_or(0)),
            rollout_timeout: dur("rolloutTimeout", &spec.rollout_timeout)?,
            propagation_delay: dur("propagationDelay", &spec.propagation_delay)?,
            overlap: dur("overlap", &spec.overlap)?,
            kubelet_sync_delay: match &workloads.kubelet_sync_delay {
                Some(v) => dur("workloads.kubeletSyncDelay", v)?,
                None => DEFAULT_KUBELET_SYNC_DELAY,
            },
            restart: workloads.restart,
            unmanaged_pods: workloads.unmanaged_pods,
            no_consumers: workloads.no_consumers,
            suspend: spec.suspend,
            schedule: schedule.map(Schedule::parse).transpose(),
            windows: Vec::new(),
        };
        for (index, w) in spec.windows.iter().enumerate() {
            let start = match Schedule::parse(&w.start) {
                Ok(s @ Schedule::Cron(_)) => s,
                Ok(Schedule::Every(_)) => {
                    return Err(PlanError::InvalidWindow {
                        index,
                        value: w.start.clone(),
                        reason: "@every has no start time".into(),
                    })
                }
                Err(ScheduleError::Invalid { reason, .. }) => {
                    return Err(PlanError::InvalidWindow {
                        index,
                        value: w.start.clone(),
                        reason,
                    })
                }
            };
            let length = dur("windows[].duration", &w.duration)?;
            let needs = plan.mandatory_waits();
            if length < needs {
                return Err(PlanError::WindowTooShort {
                    index,
                    window: length,
                    needs,
                });
            }
            plan.windows.push(Window { start, length });
        }
        Ok(plan)
    }
}
