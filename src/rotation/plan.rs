//! A TokenRotation's spec and annotations, parsed and checked once per reconcile.

use crate::api::{RestartPolicy, TokenRotationSpec};
use crate::schedule::{parse_duration, Schedule, ScheduleError};
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
    pub suspend: bool,
    /// `Ok(None)`: no schedule annotation. An invalid schedule blocks only scheduled runs.
    pub schedule: Result<Option<Schedule>, ScheduleError>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("set exactly one of spec.authToken and spec.apiKey")]
    NoCredentialKind,
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
        Ok(Self {
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
            suspend: spec.suspend,
            schedule: schedule.map(Schedule::parse).transpose(),
        })
    }
}
