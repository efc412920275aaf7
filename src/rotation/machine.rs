//! Decisions: from what was observed to the one action to take and the status that follows.

use super::conditions;
use super::plan::{CredentialKind, Plan, PlanError};
use crate::api::{
    conditions::{DEGRADED, READY, ROTATING},
    AbortStep, ApiKeyStatus, Phase, RestartPolicy, RotationResult, RotationStatus,
    TokenRotationStatus, Trigger, WorkloadKind, WorkloadProgress,
};
use crate::schedule;
use crate::time::{from_k8s, to_k8s};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::time::Duration;

/// How often a rollout or a hold is re-checked (watches on workloads also wake the controller).
const POLL: Duration = Duration::from_secs(2);
const HOLD_POLL: Duration = Duration::from_secs(10);
const VERIFY_POLL: Duration = Duration::from_secs(3);
/// An idle resource is re-checked at least this often, so a clock jump cannot hide a schedule.
const IDLE_MAX: Duration = Duration::from_secs(3600);

/// Everything the decision needs, gathered by the controller.
#[derive(Debug, Clone)]
pub struct Observation {
    pub now: DateTime<Utc>,
    pub generation: Option<i64>,
    /// What the staging Secret is named after: the resource's name (prefixed for a
    /// ClusterTokenRotation, so it cannot collide with a TokenRotation's).
    pub staging_base: String,
    pub uid: String,
    pub created: DateTime<Utc>,
    pub plan: Result<Plan, PlanError>,
    /// `tokenrotator.io/rotate-now` annotation value.
    pub rotate_now: Option<String>,
    /// `tokenrotator.io/abort` annotation value.
    pub abort: Option<String>,
    pub status: TokenRotationStatus,
    /// Another TokenRotation (namespace/name) with a rotation in flight on the same account.
    pub account_holder: Option<String>,
    /// The rotation ID whose new token the staging Secret holds, if it exists.
    pub staged_for: Option<String>,
    /// API key rotation: the key SIDs the staging Secret holds for the current rotation.
    pub staged_keys: Option<StagedKeys>,
    /// Rollout state of the dependent workloads for the current restart stamp; the controller
    /// fills it in the phases that wait on workloads.
    pub rollout: Option<RolloutView>,
}

/// A workload in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadAt {
    pub namespace: String,
    pub kind: WorkloadKind,
    pub name: String,
}

impl std::fmt::Display for WorkloadAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The SIDs (not secret) of an API key rotation's new and previous key.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedKeys {
    pub new: String,
    /// `None` when the rotation creates the first key.
    pub previous: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutView {
    pub workloads: Vec<WorkloadProgress>,
    /// Workloads whose pod template does not carry the stamp yet.
    pub unstamped: Vec<WorkloadAt>,
}

/// The single effect the controller performs this round.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the status only.
    None,
    /// Delete a secondary token nobody holds (a crash between creating and storing one), create
    /// a new secondary, store it at once in the staging Secret.
    Stage,
    /// Apply the new token (and the previous one under `previousTokenKey`) into every target
    /// Secret and the new token into the operator's credentials Secret.
    Distribute,
    /// Stamp these workloads' pod templates with `stamp`, which restarts them once.
    Restart {
        stamp: String,
        workloads: Vec<WorkloadAt>,
    },
    /// Authenticate with the new token.
    Verify,
    /// Promote the secondary (a repeat after a crash confirms the promotion instead), then
    /// re-apply the target Secrets with the new token first in the webhook key.
    Promote,
    /// Remove the previous-token keys, delete these API keys (previous keys beyond
    /// `retainPrevious`) and the staging Secret.
    Retire { delete_keys: Vec<String> },
    /// Put the old token back into every target Secret and the credentials Secret.
    RestoreSecrets,
    /// Delete the unused secondary token (or the new API key) and the staging Secret.
    DeleteSecondary,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventNote {
    pub warning: bool,
    /// CamelCase, stable: users alert on these.
    pub reason: &'static str,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    /// The status to write once the action succeeded (at once for [`Action::None`]).
    pub status: TokenRotationStatus,
    pub events: Vec<EventNote>,
    pub requeue_after: Option<Duration>,
}

/// Why an action failed, as far as the decision cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The credentials Secret or its key is missing.
    CredentialsMissing,
    /// Twilio refused the operator's credential.
    AuthenticationFailed,
    /// Twilio refused the new token (it may still be propagating).
    NewTokenRefused,
    /// Twilio answered 5xx, timed out or could not be reached.
    TwilioUnavailable,
    TwilioRateLimited,
    /// A non-idempotent call's outcome is unknown; the next round re-reads the state.
    OutcomeUnknown,
    /// The staging Secret holding the new token is gone.
    StagingLost,
    /// The Kubernetes API refused or failed a request.
    Kubernetes,
    /// Anything else Twilio refused.
    TwilioRejected,
    /// The operator was given a Standard or restricted API key, which may not manage keys.
    StandardKeyCredentials,
}

impl FailureClass {
    pub fn reason(self) -> &'static str {
        match self {
            Self::CredentialsMissing => "CredentialsSecretNotFound",
            Self::AuthenticationFailed => "AuthenticationFailed",
            Self::NewTokenRefused => "VerificationFailed",
            Self::TwilioUnavailable => "TwilioUnavailable",
            Self::TwilioRateLimited => "TwilioRateLimited",
            Self::OutcomeUnknown => "TwilioOutcomeUnknown",
            Self::StagingLost => "StagingSecretLost",
            Self::Kubernetes => "KubernetesError",
            Self::TwilioRejected => "TwilioRejected",
            Self::StandardKeyCredentials => "StandardKeyCredentials",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: FailureClass,
    /// What went wrong and what to fix; never holds a token.
    pub message: String,
}

fn in_flight(phase: Option<Phase>) -> bool {
    matches!(
        phase,
        Some(
            Phase::Staging
                | Phase::Distributing
                | Phase::RollingOut
                | Phase::Verifying
                | Phase::Promoting
                | Phase::Retiring
                | Phase::Aborting
        )
    )
}

fn to_chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

fn remaining(until: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (until - now).to_std().unwrap_or(Duration::ZERO)
}

struct Builder<'a> {
    obs: &'a Observation,
    status: TokenRotationStatus,
    events: Vec<EventNote>,
}

impl<'a> Builder<'a> {
    fn new(obs: &'a Observation) -> Self {
        let mut status = obs.status.clone();
        status.observed_generation = obs.generation;
        Self {
            obs,
            status,
            events: Vec::new(),
        }
    }

    fn event(&mut self, warning: bool, reason: &'static str, note: impl Into<String>) {
        self.events.push(EventNote {
            warning,
            reason,
            note: note.into(),
        });
    }

    fn cond(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            status,
            reason,
            message,
            self.obs.generation,
            self.obs.now,
        );
    }

    /// Marks Degraded and sends a Warning Event only when the reason is new, so a long hold
    /// does not flood the Event stream.
    fn degrade(&mut self, reason: &'static str, message: impl Into<String>) {
        let message = message.into();
        let already = conditions::get(&self.status.conditions, DEGRADED)
            .is_some_and(|c| c.status == "True" && c.reason == reason);
        if !already {
            self.event(true, reason, message.clone());
        }
        self.cond(DEGRADED, true, reason, message.clone());
        self.status.message = Some(message);
    }

    fn healthy(&mut self) {
        self.cond(DEGRADED, false, "AsExpected", "");
    }

    fn rotation(&mut self) -> Option<&mut RotationStatus> {
        self.status.rotation.as_mut()
    }

    /// Moves the rotation to `phase`, restarting the phase clock.
    fn enter(&mut self, phase: Phase, message: impl Into<String>) {
        let now = self.obs.now;
        self.status.phase = Some(phase);
        if let Some(r) = self.rotation() {
            r.phase_start_time = to_k8s(now);
            r.held_reason = None;
        }
        let message = message.into();
        self.cond(ROTATING, true, phase.as_str(), message.clone());
        self.cond(READY, false, "Rotating", "a rotation is in flight");
        self.status.message = Some(message);
    }

    fn finish(self, action: Action, requeue_after: Option<Duration>) -> Decision {
        Decision {
            action,
            status: self.status,
            events: self.events,
            requeue_after,
        }
    }
}

/// A rotation ID: sortable by start time, unique per resource and rotation count.
fn rotation_id(obs: &Observation) -> String {
    let h = crate::hash::fnv1a32(obs.uid.bytes().chain(obs.status.rotations.to_le_bytes()));
    format!("{}-{:04x}", obs.now.format("%Y%m%d-%H%M%S"), h & 0xffff)
}

pub fn staging_secret_name(resource: &str) -> String {
    const SUFFIX: &str = "-rotation-staging";
    let keep = 253 - SUFFIX.len();
    let base: String = resource.chars().take(keep).collect();
    format!("{}{}", base.trim_end_matches(['-', '.']), SUFFIX)
}

/// Decides the next step.
pub fn decide(obs: &Observation) -> Decision {
    let mut b = Builder::new(obs);
    let plan = match &obs.plan {
        Ok(p) => p,
        Err(e) => {
            // Only reachable if the CRD schema was bypassed: hold everything as it is.
            b.degrade("InvalidSpec", e.to_string());
            return b.finish(Action::None, None);
        }
    };
    update_schedule(&mut b, plan);

    if !in_flight(obs.status.phase) || obs.status.rotation.is_none() {
        return decide_idle(b, plan);
    }

    // An abort request that arrives in flight.
    let abort_requested = obs.abort.is_some() && obs.abort != obs.status.last_abort;
    if abort_requested {
        b.status.last_abort = obs.abort.clone();
        match obs.status.phase {
            Some(Phase::Staging | Phase::Distributing | Phase::RollingOut | Phase::Verifying) => {
                let staged = obs.status.rotation.as_ref().is_some_and(|r| r.staged);
                let first = if staged {
                    AbortStep::RestoreSecrets
                } else {
                    AbortStep::DeleteSecondary
                };
                b.enter(
                    Phase::Aborting,
                    "abort requested: rolling back onto the old token",
                );
                if let Some(r) = b.rotation() {
                    r.abort_step = Some(first);
                }
                b.event(
                    true,
                    "RotationAborting",
                    "abort requested: restoring the old token and rolling workloads back before deleting the new one",
                );
                return b.finish(Action::None, Some(Duration::ZERO));
            }
            Some(Phase::Promoting | Phase::Retiring) => {
                let note = match plan.credential {
                    CredentialKind::AuthToken => "the new token is being or has been promoted and the old token no longer works: there is nothing to roll back to, the rotation completes",
                    CredentialKind::ApiKey => "every consumer already runs the new API key and it is verified: the rotation completes",
                };
                b.event(true, "AbortRefused", note);
            }
            _ => {}
        }
    }

    if plan.suspend && obs.status.phase != Some(Phase::Aborting) {
        let msg = format!(
            "suspended in phase {}: both tokens stay valid until promotion; set spec.suspend=false to resume",
            obs.status.phase.map(|p| p.as_str()).unwrap_or("?")
        );
        b.cond(ROTATING, true, "Suspended", msg.clone());
        b.status.message = Some(msg);
        return b.finish(Action::None, None);
    }

    match obs.status.phase {
        Some(Phase::Staging) => decide_staging(b, plan),
        Some(Phase::Distributing) => decide_distributing(b),
        Some(Phase::RollingOut) => decide_rolling_out(b, plan),
        Some(Phase::Verifying) => {
            // On failure, on_failure keeps Verifying and its clock (the propagation window).
            let (message, note) = match plan.credential {
                CredentialKind::AuthToken => (
                    "the new token works; promoting it to primary",
                    "Twilio accepts the new token",
                ),
                CredentialKind::ApiKey => (
                    "the new API key works; making it current",
                    "Twilio accepts the new API key",
                ),
            };
            b.enter(Phase::Promoting, message);
            b.healthy();
            b.event(false, "TokenVerified", note);
            b.finish(Action::Verify, Some(Duration::ZERO))
        }
        Some(Phase::Promoting) => {
            let (message, reason, note) = match plan.credential {
                CredentialKind::AuthToken => (
                    "promoted; waiting out propagation and overlap before retiring the previous token",
                    "TokenPromoted",
                    "the new token is now the primary Auth Token; the old token no longer works",
                ),
                CredentialKind::ApiKey => (
                    "the new API key is current; waiting out propagation and overlap before deleting the previous key",
                    "ApiKeyCurrent",
                    "every consumer runs the new API key; the previous key stays valid until it is retired",
                ),
            };
            b.enter(Phase::Retiring, message);
            b.healthy();
            if let Some(r) = b.rotation() {
                r.promoted_time = Some(to_k8s(obs.now));
            }
            b.event(false, reason, note);
            let wait = plan.propagation_delay + plan.overlap;
            b.finish(Action::Promote, Some(wait))
        }
        Some(Phase::Retiring) => decide_retiring(b, plan),
        Some(Phase::Aborting) => decide_aborting(b, plan),
        _ => decide_idle(b, plan),
    }
}

impl Builder<'_> {
    fn healthy_if_not_held(&mut self) {
        let held = self
            .status
            .rotation
            .as_ref()
            .is_some_and(|r| r.held_reason.is_some());
        if !held {
            self.healthy();
        }
    }
}

fn update_schedule(b: &mut Builder<'_>, plan: &Plan) {
    let obs = b.obs;
    match &plan.schedule {
        Ok(Some(s)) => {
            let last = obs.status.last_rotation_time.as_ref().map(from_k8s);
            b.status.next_rotation_time =
                schedule::next_run(s, last, obs.created, &obs.uid).map(to_k8s);
            if conditions::get(&b.status.conditions, DEGRADED)
                .is_some_and(|c| c.status == "True" && c.reason == "InvalidSchedule")
            {
                b.healthy();
            }
        }
        Ok(None) => b.status.next_rotation_time = None,
        Err(e) => {
            b.status.next_rotation_time = None;
            b.degrade("InvalidSchedule", e.to_string());
        }
    }
}

fn decide_idle(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let obs = b.obs;
    let manual = obs.rotate_now.is_some() && obs.rotate_now != obs.status.last_rotate_now;
    let due = b
        .status
        .next_rotation_time
        .as_ref()
        .is_some_and(|t| from_k8s(t) <= obs.now);
    // An abort annotation with nothing in flight is recorded so it cannot abort a later run.
    if obs.abort.is_some() && obs.abort != obs.status.last_abort {
        b.status.last_abort = obs.abort.clone();
        b.event(
            true,
            "AbortIgnored",
            "abort requested but no rotation is in flight",
        );
    }
    let schedule_broken = plan.schedule.is_err();

    if (manual || due) && !plan.suspend {
        if let Some(holder) = &obs.account_holder {
            let who = match holder.strip_prefix("ClusterTokenRotation/") {
                Some(name) => format!("ClusterTokenRotation {name}"),
                None => format!("TokenRotation {holder}"),
            };
            let msg = format!(
                "waiting for {who}, which is rotating the same Twilio account (one secondary token per account)"
            );
            let waiting_already = conditions::get(&b.status.conditions, ROTATING)
                .is_some_and(|c| c.reason == "WaitingForAccount");
            if !waiting_already {
                b.event(false, "WaitingForAccount", msg.clone());
            }
            b.status.phase = Some(Phase::Pending);
            b.cond(ROTATING, false, "WaitingForAccount", msg.clone());
            b.status.message = Some(msg);
            return b.finish(Action::None, Some(HOLD_POLL));
        }
        let trigger = if manual {
            Trigger::Manual
        } else {
            Trigger::Schedule
        };
        if manual {
            b.status.last_rotate_now = obs.rotate_now.clone();
        }
        let id = rotation_id(obs);
        b.status.rotation = Some(RotationStatus {
            id: id.clone(),
            trigger,
            start_time: to_k8s(obs.now),
            phase_start_time: to_k8s(obs.now),
            staging_secret: staging_secret_name(&obs.staging_base),
            staged: false,
            promoted_time: None,
            key_sid: None,
            previous_key_sid: None,
            workloads: Vec::new(),
            abort_step: None,
            held_reason: None,
        });
        b.enter(
            Phase::Staging,
            format!("rotation {id} started: creating the new token"),
        );
        if !schedule_broken {
            b.healthy();
        }
        b.event(
            false,
            "RotationStarted",
            format!(
                "rotation {id} started ({})",
                if manual {
                    "rotate-now annotation"
                } else {
                    "schedule"
                }
            ),
        );
        // The rotation ID reaches status before Twilio is called.
        return b.finish(Action::None, Some(Duration::ZERO));
    }

    // Nothing to do: report the resting state.
    b.status.rotation = None;
    let aborted = b.status.last_result == Some(RotationResult::Aborted);
    let (phase, ready_reason, ready_msg) = if aborted {
        (
            Phase::Aborted,
            "RotationAborted",
            "the last rotation was aborted; the old token is in use",
        )
    } else if b.status.last_result == Some(RotationResult::Succeeded) {
        (
            Phase::Ready,
            "RotationSucceeded",
            "the last rotation succeeded",
        )
    } else {
        (
            Phase::Ready,
            "NoRotationNeeded",
            "no rotation has been needed yet",
        )
    };
    b.status.phase = Some(phase);
    b.cond(READY, !aborted, ready_reason, ready_msg);
    b.cond(ROTATING, false, "Idle", "no rotation in flight");
    if !schedule_broken {
        b.healthy();
        let msg = match (&b.status.next_rotation_time, plan.suspend) {
            (_, true) => "suspended: no rotation starts until spec.suspend is false".to_string(),
            (Some(t), false) => format!("next rotation at {}", from_k8s(t).to_rfc3339()),
            (None, false) => format!(
                "{ready_msg}; annotate with tokenrotator.io/rotate-now or tokenrotator.io/schedule to rotate"
            ),
        };
        b.status.message = Some(msg);
    }
    let requeue = b
        .status
        .next_rotation_time
        .as_ref()
        .map(|t| remaining(from_k8s(t), obs.now).min(IDLE_MAX))
        .or(Some(IDLE_MAX));
    b.finish(Action::None, requeue)
}

fn current_id(b: &Builder<'_>) -> String {
    b.status
        .rotation
        .as_ref()
        .map(|r| r.id.clone())
        .unwrap_or_default()
}

fn decide_staging(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let id = current_id(&b);
    let already_stored = b.obs.staged_for.as_deref() == Some(id.as_str());
    // Next: distribute. The token is in the staging Secret before any status says so.
    if let Some(r) = b.rotation() {
        r.staged = true;
    }
    b.enter(
        Phase::Distributing,
        "writing the new token into the target Secrets",
    );
    b.healthy();
    if already_stored {
        // A crash after storing the token but before this status write: nothing to redo.
        return b.finish(Action::None, Some(Duration::ZERO));
    }
    let (reason, what) = match plan.credential {
        CredentialKind::AuthToken => ("SecondaryTokenCreated", "the secondary Auth Token"),
        CredentialKind::ApiKey => ("ApiKeyCreated", "a new API key"),
    };
    b.event(
        false,
        reason,
        format!("rotation {id}: created {what} and stored it in the staging Secret"),
    );
    b.finish(Action::Stage, Some(Duration::ZERO))
}

fn decide_distributing(mut b: Builder<'_>) -> Decision {
    let id = current_id(&b);
    if b.obs.staged_for.as_deref() != Some(id.as_str()) {
        // Someone deleted the staging Secret before the token reached the targets: the new
        // token is unknown, so start the step again (it deletes the lost secondary first).
        if let Some(r) = b.rotation() {
            r.staged = false;
        }
        b.enter(
            Phase::Staging,
            "the staging Secret disappeared before distribution: creating a new token",
        );
        b.event(
            true,
            "StagingSecretLost",
            "the staging Secret holding the new token was deleted before distribution; starting the token over",
        );
        return b.finish(Action::None, Some(Duration::ZERO));
    }
    let staged_keys = b.obs.staged_keys.clone();
    if let (Some(r), Some(keys)) = (b.rotation(), staged_keys) {
        // Recorded now, so retirement knows which keys to keep and delete even once the
        // staging Secret is gone.
        r.key_sid = Some(keys.new);
        r.previous_key_sid = keys.previous;
    }
    b.enter(
        Phase::RollingOut,
        "rolling out the dependent workloads onto the new token",
    );
    b.healthy();
    b.event(
        false,
        "SecretsUpdated",
        format!("rotation {id}: the new token is in every target Secret"),
    );
    b.finish(Action::Distribute, Some(Duration::ZERO))
}

/// Shared by the rollout onto the new token and the rollback onto the old one.
enum RolloutState {
    Restart(Action),
    Waiting,
    Held(&'static str, String),
    Done,
}

fn rollout_state(
    b: &mut Builder<'_>,
    plan: &Plan,
    stamp: &str,
    enforce_timeout: bool,
) -> RolloutState {
    let obs = b.obs;
    let phase_start = obs
        .status
        .rotation
        .as_ref()
        .map(|r| from_k8s(&r.phase_start_time))
        .unwrap_or(obs.now);
    if plan.restart == RestartPolicy::Never {
        let until = phase_start + to_chrono(plan.kubelet_sync_delay);
        return if obs.now >= until {
            RolloutState::Done
        } else {
            RolloutState::Waiting
        };
    }
    let Some(view) = &obs.rollout else {
        return RolloutState::Waiting;
    };
    if let Some(r) = b.rotation() {
        r.workloads = view.workloads.clone();
    }
    if !view.unstamped.is_empty() {
        return RolloutState::Restart(Action::Restart {
            stamp: stamp.to_owned(),
            workloads: view.unstamped.clone(),
        });
    }
    if view.workloads.iter().all(|w| w.done) {
        return RolloutState::Done;
    }
    let blocked: Vec<String> = view
        .workloads
        .iter()
        .filter(|w| !w.done)
        .filter_map(|w| {
            w.reason
                .as_ref()
                .filter(|r| r.as_str() == "Paused" || r.as_str() == "ProgressDeadlineExceeded")
                .map(|r| format!("{} ({r})", label(w)))
        })
        .collect();
    if !blocked.is_empty() {
        let reason = if view
            .workloads
            .iter()
            .any(|w| w.reason.as_deref() == Some("Paused"))
        {
            "WorkloadPaused"
        } else {
            "RolloutFailed"
        };
        return RolloutState::Held(reason, format!("rollout blocked: {}", blocked.join(", ")));
    }
    if enforce_timeout && obs.now - phase_start > to_chrono(plan.rollout_timeout) {
        let pending: Vec<String> = view
            .workloads
            .iter()
            .filter(|w| !w.done)
            .map(|w| {
                format!(
                    "{} ({}/{} updated, {} available)",
                    label(w),
                    w.updated,
                    w.desired,
                    w.available
                )
            })
            .collect();
        return RolloutState::Held(
            "RolloutTimeout",
            format!(
                "rollout did not finish within rolloutTimeout: {}",
                pending.join(", ")
            ),
        );
    }
    RolloutState::Waiting
}

/// "Deployment api", or "Deployment team-a/api" when the rotation spans namespaces.
fn label(w: &WorkloadProgress) -> String {
    match &w.namespace {
        Some(ns) => format!("{} {ns}/{}", w.kind, w.name),
        None => format!("{} {}", w.kind, w.name),
    }
}

fn progress_summary(b: &Builder<'_>) -> String {
    let ws = b
        .status
        .rotation
        .as_ref()
        .map(|r| r.workloads.as_slice())
        .unwrap_or(&[]);
    let done = ws.iter().filter(|w| w.done).count();
    format!("{done}/{} workloads run the new token", ws.len())
}

fn decide_rolling_out(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let id = current_id(&b);
    match rollout_state(&mut b, plan, &id, true) {
        RolloutState::Restart(action) => {
            if let Action::Restart { workloads, .. } = &action {
                let names: Vec<String> = workloads.iter().map(|w| w.to_string()).collect();
                b.event(
                    false,
                    "WorkloadsRestarted",
                    format!("rotation {id}: restarting {}", names.join(", ")),
                );
            }
            b.finish(action, Some(POLL))
        }
        RolloutState::Waiting => {
            let msg = if plan.restart == RestartPolicy::Never {
                "waiting for the kubelet to refresh mounted Secrets".to_string()
            } else {
                format!("waiting for the rollout: {}", progress_summary(&b))
            };
            b.status.message = Some(msg.clone());
            b.cond(ROTATING, true, "RollingOut", msg);
            b.healthy_if_not_held();
            b.finish(Action::None, Some(POLL))
        }
        RolloutState::Held(reason, msg) => {
            let msg = format!(
                "{msg}. Nothing is promoted and both tokens stay valid; fix the workloads, or set the tokenrotator.io/abort annotation to roll back"
            );
            let first = b
                .status
                .rotation
                .as_ref()
                .is_some_and(|r| r.held_reason.as_deref() != Some(reason));
            if let Some(r) = b.rotation() {
                r.held_reason = Some(reason.to_owned());
            }
            if first {
                b.event(true, "RotationHeld", msg.clone());
            }
            b.degrade(reason, msg.clone());
            b.cond(ROTATING, true, "Held", msg);
            b.finish(Action::None, Some(HOLD_POLL))
        }
        RolloutState::Done => {
            b.enter(
                Phase::Verifying,
                "every workload runs the new token; verifying it",
            );
            b.healthy();
            b.event(
                false,
                "RolloutComplete",
                format!("rotation {id}: every dependent workload runs the new token"),
            );
            b.finish(Action::None, Some(Duration::ZERO))
        }
    }
}

fn decide_retiring(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let obs = b.obs;
    let promoted = obs
        .status
        .rotation
        .as_ref()
        .and_then(|r| r.promoted_time.as_ref().map(from_k8s))
        .unwrap_or(obs.now);
    let until = promoted + to_chrono(plan.propagation_delay + plan.overlap);
    if obs.now < until {
        let msg = format!("retiring the previous token at {}", until.to_rfc3339());
        b.status.message = Some(msg.clone());
        b.cond(ROTATING, true, "Retiring", msg);
        return b.finish(Action::None, Some(remaining(until, obs.now)));
    }
    let id = current_id(&b);
    let delete_keys = match plan.credential {
        CredentialKind::AuthToken => Vec::new(),
        CredentialKind::ApiKey => retire_keys(&mut b, plan.retain_previous),
    };
    b.status.rotation = None;
    b.status.phase = Some(Phase::Ready);
    b.status.rotations += 1;
    b.status.last_rotation_time = Some(to_k8s(promoted));
    b.status.last_result = Some(RotationResult::Succeeded);
    b.cond(
        READY,
        true,
        "RotationSucceeded",
        format!("rotation {id} succeeded"),
    );
    b.cond(ROTATING, false, "Idle", "no rotation in flight");
    if plan.schedule.is_ok() {
        b.healthy();
    }
    if let Ok(Some(s)) = &plan.schedule {
        b.status.next_rotation_time =
            schedule::next_run(s, Some(promoted), obs.created, &obs.uid).map(to_k8s);
    }
    b.status.message = Some(match &b.status.next_rotation_time {
        Some(t) => format!(
            "rotation {id} succeeded; next rotation at {}",
            from_k8s(t).to_rfc3339()
        ),
        None => format!("rotation {id} succeeded"),
    });
    let note = match (plan.credential, delete_keys.is_empty()) {
        (CredentialKind::AuthToken, _) => "the previous token is retired".to_string(),
        (CredentialKind::ApiKey, true) => "no previous API key to delete".to_string(),
        (CredentialKind::ApiKey, false) => {
            format!("deleted API key(s) {}", delete_keys.join(", "))
        }
    };
    b.event(
        false,
        "RotationSucceeded",
        format!("rotation {id} completed: {note}"),
    );
    b.finish(Action::Retire { delete_keys }, Some(Duration::ZERO))
}

/// API keys at the end of a rotation: the new key becomes current, the previous one joins the
/// retained keys (newest first), and every retained key beyond `retain` is returned for
/// deletion. The current key is never deleted.
fn retire_keys(b: &mut Builder<'_>, retain: usize) -> Vec<String> {
    let (new, previous) = b
        .status
        .rotation
        .as_ref()
        .map(|r| (r.key_sid.clone(), r.previous_key_sid.clone()))
        .unwrap_or_default();
    let before = b.status.api_key.take().unwrap_or_default();
    let mut older: Vec<String> = Vec::new();
    for sid in previous.into_iter().chain(before.retained_key_sids) {
        if Some(&sid) != new.as_ref() && !older.contains(&sid) {
            older.push(sid);
        }
    }
    let delete = older.split_off(retain.min(older.len()));
    b.status.api_key = Some(ApiKeyStatus {
        current_key_sid: new.or(before.current_key_sid),
        retained_key_sids: older,
    });
    delete
}

fn decide_aborting(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let id = current_id(&b);
    let step = b
        .status
        .rotation
        .as_ref()
        .and_then(|r| r.abort_step)
        .unwrap_or(AbortStep::DeleteSecondary);
    let set_step = |b: &mut Builder<'_>, s: AbortStep| {
        let now = b.obs.now;
        if let Some(r) = b.rotation() {
            r.abort_step = Some(s);
            r.phase_start_time = to_k8s(now);
        }
    };
    match step {
        AbortStep::RestoreSecrets => {
            set_step(&mut b, AbortStep::RollBack);
            b.status.message = Some("rolling workloads back onto the old token".into());
            b.event(
                true,
                "SecretsRestored",
                format!("rotation {id}: the old token is back in every target Secret"),
            );
            b.finish(Action::RestoreSecrets, Some(Duration::ZERO))
        }
        AbortStep::RollBack => {
            let stamp = format!("{id}-rollback");
            match rollout_state(&mut b, plan, &stamp, false) {
                RolloutState::Restart(action) => b.finish(action, Some(POLL)),
                RolloutState::Waiting => {
                    b.status.message = Some(format!("rolling back: {}", progress_summary(&b)));
                    b.finish(Action::None, Some(POLL))
                }
                RolloutState::Held(reason, msg) => {
                    // The rollback itself is stuck; the new token stays valid meanwhile.
                    b.degrade(
                        reason,
                        format!(
                            "rollback blocked, the new token is kept until it completes: {msg}"
                        ),
                    );
                    b.finish(Action::None, Some(HOLD_POLL))
                }
                RolloutState::Done => {
                    set_step(&mut b, AbortStep::DeleteSecondary);
                    b.status.message = Some(
                        "every workload runs the old token again; deleting the new one".into(),
                    );
                    b.finish(Action::None, Some(Duration::ZERO))
                }
            }
        }
        AbortStep::DeleteSecondary => {
            b.status.rotation = None;
            b.status.phase = Some(Phase::Aborted);
            b.status.last_result = Some(RotationResult::Aborted);
            b.cond(
                READY,
                false,
                "RotationAborted",
                format!("rotation {id} was aborted; the old token is in use"),
            );
            b.cond(ROTATING, false, "Idle", "no rotation in flight");
            b.healthy();
            b.status.message = Some(format!("rotation {id} aborted; the old token is in use"));
            b.event(
                true,
                "RotationAborted",
                format!("rotation {id} aborted and rolled back; the new token was deleted"),
            );
            b.finish(Action::DeleteSecondary, Some(Duration::ZERO))
        }
    }
}

/// The status to write when `action` failed: nothing advances, the failure is reported and the
/// step is retried.
pub fn on_failure(obs: &Observation, action: &Action, failure: &Failure) -> Decision {
    let mut b = Builder::new(obs);
    if let Ok(plan) = &obs.plan {
        update_schedule(&mut b, plan);
    }
    // A refused new token is expected while Twilio propagates it.
    if failure.class == FailureClass::NewTokenRefused {
        if let (Ok(plan), Some(r)) = (&obs.plan, &obs.status.rotation) {
            if obs.now - from_k8s(&r.phase_start_time) < to_chrono(plan.propagation_delay) {
                b.status.message = Some("waiting for Twilio to accept the new token".into());
                return b.finish(Action::None, Some(VERIFY_POLL));
            }
        }
    }
    let what = match action {
        Action::None => "updating status",
        Action::Stage => "creating the new token",
        Action::Distribute => "writing the new token into the target Secrets",
        Action::Restart { .. } => "restarting workloads",
        Action::Verify => "verifying the new token",
        Action::Promote => "promoting the new token",
        Action::Retire { .. } => "retiring the previous token",
        Action::RestoreSecrets => "restoring the old token",
        Action::DeleteSecondary => "deleting the unused token",
    };
    let advice = match failure.class {
        FailureClass::CredentialsMissing => "; create the credentials Secret named in spec.twilio.credentialsSecretRef",
        FailureClass::AuthenticationFailed => {
            "; put the account's current Auth Token into the Secret named in spec.twilio.credentialsSecretRef"
        }
        FailureClass::NewTokenRefused => "; the rotation holds: both tokens stay valid until this is resolved or aborted",
        FailureClass::StandardKeyCredentials => {
            "; put the account's Auth Token (without keySidKey) or a Main API key into spec.twilio.credentialsSecretRef"
        }
        FailureClass::OutcomeUnknown => "; the state is re-read before retrying",
        _ => "; retrying",
    };
    b.degrade(
        failure.class.reason(),
        format!("{what} failed: {}{advice}", failure.message),
    );
    let retry = match failure.class {
        FailureClass::CredentialsMissing
        | FailureClass::AuthenticationFailed
        | FailureClass::StandardKeyCredentials => Duration::from_secs(30),
        FailureClass::OutcomeUnknown => Duration::from_secs(1),
        FailureClass::TwilioRateLimited => Duration::from_secs(5),
        _ => HOLD_POLL,
    };
    b.finish(Action::None, Some(retry))
}
