//! Decisions: from what was observed to the one action to take and the status that follows.

use super::conditions;
use super::consumers::{self, Barrier, PodAt, PodView};
use super::plan::{CredentialKind, Plan, PlanError};
use super::reasons;
use crate::api::{
    conditions::{DEGRADED, READY, ROTATING},
    AbortStep, ApiKeyStatus, Phase, RestartPolicy, RotationRecord, RotationResult, RotationStatus,
    TokenRotationSpec, TokenRotationStatus, Trigger, WorkloadKind, WorkloadProgress,
    DELETE_SECONDARY_ANNOTATION, FIELD_MANAGER, HISTORY_LIMIT, RESTART_ANNOTATION,
};
use crate::schedule;
use crate::time::{from_k8s, to_k8s};
use crate::workloads::RolloutReason;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::time::Duration;

/// How often a rollout or a hold is re-checked (watches on workloads also wake the controller).
const POLL: Duration = Duration::from_secs(2);
const HOLD_POLL: Duration = Duration::from_secs(10);
const VERIFY_POLL: Duration = Duration::from_secs(3);
/// How long after writing the target Secrets the consumers are restarted (see `rollout_state`).
pub const SETTLE: Duration = Duration::from_secs(1);
/// A rotation waiting for a place under `--max-concurrent-rotations` looks again this often;
/// a rotation that ends wakes the waiters at once, this is the fallback (e.g. one that ended
/// in another replica's time).
const CAPACITY_POLL: Duration = Duration::from_secs(1);
/// An idle resource is re-checked at least this often, so a clock jump cannot hide a schedule.
const IDLE_MAX: Duration = Duration::from_secs(3600);

/// Everything the decision needs, gathered by the controller.
#[derive(Debug, Clone)]
pub struct Observation {
    pub now: DateTime<Utc>,
    pub generation: Option<i64>,
    /// The name a new rotation gives its staging Secret.
    pub staging_secret: String,
    pub uid: String,
    pub created: DateTime<Utc>,
    /// The spec the rotation runs with: the one recorded when the rotation in flight started,
    /// else the resource's own.
    pub spec: TokenRotationSpec,
    /// The resource's spec differs from the one the rotation in flight runs with.
    pub spec_changed: bool,
    pub plan: Result<Plan, PlanError>,
    /// `tokenrotator.io/rotate-now` annotation value.
    pub rotate_now: Option<String>,
    /// `tokenrotator.io/abort` annotation value.
    pub abort: Option<String>,
    /// `tokenrotator.io/delete-secondary` annotation value.
    pub delete_secondary: Option<String>,
    /// The resource is being deleted (it has a deletion timestamp).
    pub deleting: bool,
    pub status: TokenRotationStatus,
    /// Another resource with a rotation in flight on the same account.
    pub account_holder: Option<Holder>,
    /// A new rotation may not start: this many (`--max-concurrent-rotations`) are in flight.
    pub at_capacity: Option<usize>,
    /// Auth Token rotation: another resource that rotates the same account's Auth Token.
    /// Promotion kills the old token for every consumer of the account, including that one's.
    pub account_conflict: Option<AccountConflict>,
    /// The rotation ID whose new token the staging Secret holds, if it exists.
    pub staged_for: Option<String>,
    /// API key rotation: the key SIDs the staging Secret holds for the current rotation.
    pub staged_keys: Option<StagedKeys>,
    /// Rollout state of the dependent workloads for the current restart stamp; the controller
    /// fills it in the phases that wait on workloads.
    pub rollout: Option<RolloutView>,
    /// Target Secrets (and the credentials Secret) that no longer hold the new credential;
    /// checked from the rollout until promotion.
    pub reverted: Vec<RevertedKey>,
    /// The pods in scope that read a target Secret; looked at once the workloads are through
    /// (with `restart: Never`, once the kubelet sync delay is over). `None`: not looked at.
    pub pods: Option<PodView>,
    /// Secrets the rotation does not write that hold the credential being replaced; looked
    /// for in Verifying, right before the steps that end with promotion.
    pub copies: Vec<TokenCopy>,
}

/// A key of a Secret, outside the rotation, holding the credential being replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCopy {
    pub namespace: String,
    pub secret: String,
    pub key: String,
}

/// A resource that rotates, as named in locks, conditions and Events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    TokenRotation { namespace: String, name: String },
    ClusterTokenRotation { name: String },
}

impl Holder {
    /// The server-side apply field manager of everything this resource writes. One per
    /// resource, so that two resources writing different keys of one Secret (or stamping one
    /// workload) never remove each other's fields; namespaces cannot contain `:`, so the two
    /// kinds cannot collide.
    pub fn field_manager(&self) -> String {
        let name = match self {
            Self::TokenRotation { namespace, name } => format!("{namespace}/{name}"),
            Self::ClusterTokenRotation { name } => format!("cluster:{name}"),
        };
        let full = format!("{FIELD_MANAGER}:{name}");
        if full.len() <= MAX_FIELD_MANAGER {
            return full;
        }
        // Too long for the API server: cut, and keep it unique with a hash of the whole.
        let tag = format!("~{:08x}", crate::hash::fnv1a32(full.bytes()));
        let mut cut: String = full.chars().take(MAX_FIELD_MANAGER - tag.len()).collect();
        while cut.len() > MAX_FIELD_MANAGER - tag.len() {
            cut.pop();
        }
        cut + &tag
    }

    /// The pod-template annotation this resource restarts workloads with (its value is the
    /// rotation's stamp). One per resource, so two resources restarting one workload do not
    /// overwrite each other's stamp.
    pub fn stamp_key(&self) -> String {
        let h = crate::hash::fnv1a32(self.field_manager().bytes());
        format!("{RESTART_ANNOTATION}-{h:08x}")
    }
}

/// The API server's limit on a field manager's length.
const MAX_FIELD_MANAGER: usize = 128;

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TokenRotation { namespace, name } => {
                write!(f, "TokenRotation {namespace}/{name}")
            }
            Self::ClusterTokenRotation { name } => write!(f, "ClusterTokenRotation {name}"),
        }
    }
}

/// Two resources rotate one account's Auth Token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConflict {
    /// The other resource: the owner (created first), or else the newest intruder.
    pub other: Holder,
    /// This resource was created first.
    pub owner: bool,
}

impl AccountConflict {
    fn message(&self, account_sid: &str) -> String {
        let fix = "Merge them into one ClusterTokenRotation over every namespace that uses the account, or one TokenRotation listing all the Secrets";
        if self.owner {
            format!(
                "{} also rotates the Auth Token of account {account_sid}: promoting kills the old token for every consumer of the account, including the ones only that resource covers, so nothing is promoted while both exist. {fix}, then delete the other",
                self.other
            )
        } else {
            format!(
                "{} already rotates the Auth Token of account {account_sid} and was created first; promoting kills the old token for every consumer of the account, so only one resource may rotate it and this one never does. {fix}, then delete this one",
                self.other
            )
        }
    }
}

/// A key of a Secret that should hold the new credential and does not: another writer put
/// something else there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevertedKey {
    pub namespace: String,
    pub secret: String,
    pub key: String,
    /// The field manager that last wrote the key (from `managedFields`), when known.
    pub manager: Option<String>,
}

impl std::fmt::Display for RevertedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secret {}/{} key {}",
            self.namespace, self.secret, self.key
        )?;
        match &self.manager {
            Some(m) => write!(f, " (written by field manager {m:?})"),
            None => write!(f, " (writer unknown)"),
        }
    }
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

impl RolloutView {
    /// Every workload carries the stamp and has rolled out.
    pub fn through(&self) -> bool {
        self.unstamped.is_empty() && self.workloads.iter().all(|w| w.done)
    }
}

/// Which credential a step puts in front of the consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The rotation's new credential (with the previous one beside it where configured).
    New,
    /// The old credential alone: an abort rolling back.
    Old,
}

/// The single effect the controller performs this round.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the status only.
    None,
    /// Create the new credential and store it at once in the staging Secret. With
    /// `clear_existing`, first delete a secondary Auth Token an earlier attempt of this
    /// rotation may have created (or that the user told us to delete); without it, a secondary
    /// that already exists is someone else's and the step fails with `ForeignSecondary`.
    Stage { clear_existing: bool },
    /// Apply the new token (and the previous one under `previousTokenKey`) into every target
    /// Secret and the new token into the operator's credentials Secret.
    Distribute,
    /// Stamp these workloads' pod templates with `stamp`, which restarts them once. A
    /// ClusterTokenRotation first writes `serve` into namespaces that started matching.
    Restart {
        stamp: String,
        workloads: Vec<WorkloadAt>,
        serve: Serve,
    },
    /// Set `spec.restartAt` on these Argo Rollouts (namespace, name) to now: Argo replaces
    /// every pod started before it.
    RestartRollouts { rollouts: Vec<(String, String)> },
    /// Delete these pods (`unmanagedPods: Delete`), each only if its UID still matches.
    DeletePods { pods: Vec<PodAt> },
    /// Authenticate with the new token.
    Verify,
    /// Promote the secondary (a repeat after a crash confirms the promotion instead), then
    /// re-apply the target Secrets with the new token first in the webhook key. Auth Tokens
    /// only: an API key is current once every consumer runs it.
    Promote,
    /// Remove the previous-token keys, delete these API keys (previous keys beyond
    /// `retainPrevious`) and the staging Secret.
    Retire { delete_keys: Vec<String> },
    /// Put the old token back into every target Secret and the credentials Secret.
    RestoreSecrets,
    /// Authenticate with the operator's credentials (a read): whether this resource may claim
    /// the account at all.
    CheckCredentials,
    /// Rebuild a staging Secret deleted after distribution from what the Secrets and Twilio
    /// hold: the new token is in the credentials Secret (the new API key in the targets), the
    /// old Auth Token is the account's primary.
    Recover,
    /// Delete the staging Secret and, with `at_twilio`, the unused secondary token (or the new
    /// API key): without it, this rotation never called Twilio to create one.
    DeleteSecondary { at_twilio: bool },
}

impl Action {
    /// Stable name: failpoints and logs use it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Stage { .. } => "Stage",
            Self::Distribute => "Distribute",
            Self::Restart { .. } => "Restart",
            Self::RestartRollouts { .. } => "RestartRollouts",
            Self::DeletePods { .. } => "DeletePods",
            Self::Verify => "Verify",
            Self::Promote => "Promote",
            Self::Retire { .. } => "Retire",
            Self::RestoreSecrets => "RestoreSecrets",
            Self::Recover => "Recover",
            Self::CheckCredentials => "CheckCredentials",
            Self::DeleteSecondary { .. } => "DeleteSecondary",
        }
    }

    /// What the step does, for failure messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::None => "updating status",
            Self::Stage { .. } => "creating the new token",
            Self::Distribute => "writing the new token into the target Secrets",
            Self::Restart { .. } => "restarting workloads",
            Self::RestartRollouts { .. } => "restarting Argo Rollouts",
            Self::DeletePods { .. } => "deleting unmanaged pods",
            Self::Verify => "verifying the new token",
            Self::Promote => "promoting the new token",
            Self::Retire { .. } => "retiring the previous token",
            Self::RestoreSecrets => "restoring the old token",
            Self::Recover => "rebuilding the lost staging Secret",
            Self::CheckCredentials => "checking the operator's credentials",
            Self::DeleteSecondary { .. } => "deleting the unused token",
        }
    }
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
    /// A status to write *before* the action, so that a crash during it is known afterwards
    /// (a secondary may have been created).
    pub before: Option<TokenRotationStatus>,
    /// The status to write once the action succeeded (at once for [`Action::None`]).
    pub status: TokenRotationStatus,
    pub events: Vec<EventNote>,
    pub requeue_after: Option<Duration>,
}

impl Decision {
    /// The resource is due but waits for another rotation on its account (`WaitingForAccount`).
    pub fn waits_for_account(&self) -> bool {
        conditions::get(&self.status.conditions, ROTATING)
            .is_some_and(|c| c.reason == reasons::WAITING_FOR_ACCOUNT)
    }
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
    /// Checked before Stage: the operator may not do what the rotation needs (nothing was
    /// created).
    MissingPermissions,
    /// The Kubernetes API refused the operator a request (403) mid-step.
    Forbidden,
    /// Anything else Twilio refused.
    TwilioRejected,
    /// The operator was given a Standard or restricted API key, which may not manage keys.
    StandardKeyCredentials,
    /// A secondary Auth Token exists that this rotation did not create.
    ForeignSecondary,
}

impl FailureClass {
    /// Twilio refused (or never got) the operator's own credentials.
    pub fn credentials_refused(self) -> bool {
        matches!(
            self,
            Self::CredentialsMissing | Self::AuthenticationFailed | Self::StandardKeyCredentials
        )
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::CredentialsMissing => reasons::CREDENTIALS_SECRET_NOT_FOUND,
            Self::AuthenticationFailed => reasons::AUTHENTICATION_FAILED,
            Self::NewTokenRefused => reasons::VERIFICATION_FAILED,
            Self::TwilioUnavailable => reasons::TWILIO_UNAVAILABLE,
            Self::TwilioRateLimited => reasons::TWILIO_RATE_LIMITED,
            Self::OutcomeUnknown => reasons::TWILIO_OUTCOME_UNKNOWN,
            Self::StagingLost => reasons::STAGING_SECRET_LOST,
            Self::Kubernetes => reasons::KUBERNETES_ERROR,
            Self::MissingPermissions => reasons::MISSING_PERMISSIONS,
            Self::Forbidden => reasons::FORBIDDEN,
            Self::TwilioRejected => reasons::TWILIO_REJECTED,
            Self::StandardKeyCredentials => reasons::STANDARD_KEY_CREDENTIALS,
            Self::ForeignSecondary => reasons::FOREIGN_SECONDARY_TOKEN,
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

pub(super) fn to_chrono(d: Duration) -> ChronoDuration {
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
        self.cond(DEGRADED, false, reasons::AS_EXPECTED, "");
    }

    /// Holds the rotation before promotion: Degraded with `reason`, Rotating=Held, and one
    /// `RotationHeld` Event per hold.
    fn hold(&mut self, reason: &'static str, msg: String) {
        let first = self
            .status
            .rotation
            .as_ref()
            .is_some_and(|r| r.held_reason.as_deref() != Some(reason));
        if let Some(r) = self.rotation() {
            r.held_reason = Some(reason.to_owned());
        }
        if first {
            self.event(true, reasons::ROTATION_HELD, msg.clone());
        }
        self.degrade(reason, msg.clone());
        self.cond(ROTATING, true, reasons::HELD, msg);
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
            r.waiting_on.clear();
            if phase == Phase::RollingOut {
                // A (re)distribution follows: counted from the next look.
                r.distributed_time = None;
            }
        }
        let message = message.into();
        self.cond(ROTATING, true, phase.as_str(), message.clone());
        self.cond(READY, false, reasons::ROTATING, "a rotation is in flight");
        self.status.message = Some(message);
    }

    fn finish(mut self, action: Action, requeue_after: Option<Duration>) -> Decision {
        if self.obs.spec_changed && self.status.rotation.is_some() {
            // Say so wherever the in-flight state is described.
            const NOTE: &str = " (the spec changed since this rotation started: the change applies to the next rotation)";
            if let Some(c) = self
                .status
                .conditions
                .iter_mut()
                .find(|c| c.type_ == ROTATING && !c.message.ends_with(NOTE))
            {
                c.message.push_str(NOTE);
            }
            if let Some(m) = self.status.message.as_mut().filter(|m| !m.ends_with(NOTE)) {
                m.push_str(NOTE);
            }
        }
        Decision {
            action,
            before: None,
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

/// The staging Secret of resource `resource`, ending with `suffix`: `-rotation-staging` for a
/// TokenRotation, `-clusterrotation-staging` for a ClusterTokenRotation. No name of one kind
/// can be a name of the other (one has `-` before `rotation-staging`, the other `r`).
pub fn staging_secret_name(resource: &str, suffix: &str) -> String {
    let keep = 253 - suffix.len();
    let base: String = resource.chars().take(keep).collect();
    format!("{}{}", base.trim_end_matches(['-', '.']), suffix)
}

/// Decides the next step.
pub fn decide(obs: &Observation) -> Decision {
    let mut b = Builder::new(obs);
    let plan = match &obs.plan {
        Ok(p) => p,
        Err(e) => {
            // Only reachable if the CRD schema was bypassed: hold everything as it is.
            b.degrade(reasons::INVALID_SPEC, e.to_string());
            return b.finish(Action::None, None);
        }
    };
    update_schedule(&mut b, plan);

    if !in_flight(obs.status.phase) || obs.status.rotation.is_none() {
        return decide_idle(b, plan);
    }

    // An abort request that arrives in flight, or the resource being deleted: before
    // promotion both roll back; after it the rotation completes.
    let abort_requested = obs.abort.is_some() && obs.abort != obs.status.last_abort;
    if abort_requested {
        b.status.last_abort = obs.abort.clone();
    }
    let previous_lost = obs
        .status
        .rotation
        .as_ref()
        .is_some_and(|r| r.previous_lost);
    match obs.status.phase {
        Some(Phase::RollingOut | Phase::Verifying) if abort_requested && previous_lost => {
            b.event(
                true,
                reasons::ABORT_REFUSED,
                "the staging Secret was lost and with it the previous API key's secret: there is nothing to roll back to, the rotation completes",
            );
        }
        Some(Phase::Staging | Phase::Distributing | Phase::RollingOut | Phase::Verifying)
            if (abort_requested || obs.deleting) && !previous_lost =>
        {
            let staged = obs.status.rotation.as_ref().is_some_and(|r| r.staged);
            let first = if staged {
                AbortStep::RestoreSecrets
            } else {
                AbortStep::DeleteSecondary
            };
            let why = if abort_requested {
                "abort requested"
            } else {
                "the resource is being deleted"
            };
            b.enter(
                Phase::Aborting,
                format!("{why}: rolling back onto the old token"),
            );
            if let Some(r) = b.rotation() {
                r.abort_step = Some(first);
            }
            b.event(
                true,
                reasons::ROTATION_ABORTING,
                format!("{why}: restoring the old token and rolling workloads back before deleting the new one"),
            );
            return b.finish(Action::None, Some(Duration::ZERO));
        }
        Some(Phase::Promoting | Phase::Retiring) if abort_requested => {
            b.event(
                true,
                reasons::ABORT_REFUSED,
                plan.credential.words().abort_refused,
            );
        }
        _ => {}
    }

    if plan.suspend && obs.status.phase != Some(Phase::Aborting) && !obs.deleting {
        let msg = format!(
            "suspended in phase {}: both tokens stay valid until promotion; set spec.suspend=false to resume",
            obs.status.phase.map(|p| p.as_str()).unwrap_or("?")
        );
        b.cond(ROTATING, true, reasons::SUSPENDED, msg.clone());
        b.status.message = Some(msg);
        return b.finish(Action::None, None);
    }

    // The staging Secret was deleted after distribution: rebuild it before anything needs it.
    // (Rolling back needs only the old Auth Token, which Twilio names as the primary.)
    let needs_staging = matches!(
        obs.status.phase,
        Some(Phase::RollingOut | Phase::Verifying | Phase::Promoting)
    );
    if needs_staging && obs.staged_for.as_deref() != Some(current_id(&b).as_str()) {
        return decide_recover(b, plan);
    }

    // Right before each step towards promotion: every target still holds the new credential.
    if matches!(
        obs.status.phase,
        Some(Phase::RollingOut | Phase::Verifying | Phase::Promoting)
    ) && !obs.reverted.is_empty()
    {
        return decide_reverted(b);
    }
    // ... and nobody else's consumers of this Auth Token would lose it.
    if let (Some(Phase::Verifying | Phase::Promoting), Some(c), true) = (
        obs.status.phase,
        &obs.account_conflict,
        plan.credential.one_owner_per_account(),
    ) {
        let msg = format!(
            "{}. Nothing is promoted and both tokens stay valid; or set tokenrotator.io/abort to roll back",
            c.message(&obs.spec.twilio.account_sid)
        );
        b.hold(reasons::ACCOUNT_CONFLICT, msg);
        return b.finish(Action::None, Some(HOLD_POLL));
    }

    // ... and no copy of the old credential outside the rotation would lose it.
    if obs.status.phase == Some(Phase::Verifying) && !obs.copies.is_empty() {
        let copies: Vec<String> = obs
            .copies
            .iter()
            .map(|c| format!("{}/{} key {}", c.namespace, c.secret, c.key))
            .collect();
        let msg = format!(
            "{} Secret keys this rotation does not write hold the credential being replaced: {}. Promotion would break whatever reads them. Nothing is promoted and both tokens stay valid; delete or update them, add them to spec.secrets, list them under spec.uncoveredCopies.except, or set tokenrotator.io/abort to roll back",
            copies.len(),
            first_few(&copies)
        );
        b.hold(reasons::UNCOVERED_TOKEN_COPIES, msg);
        return b.finish(Action::None, Some(HOLD_POLL));
    }

    match obs.status.phase {
        Some(Phase::Staging) => decide_staging(b, plan),
        Some(Phase::Distributing) => decide_distributing(b),
        Some(Phase::RollingOut) => decide_rolling_out(b, plan),
        Some(Phase::Verifying) => {
            // On failure, on_failure keeps Verifying and its clock (the propagation window).
            let words = plan.credential.words();
            b.enter(Phase::Promoting, words.verified_message);
            b.healthy();
            b.event(false, reasons::TOKEN_VERIFIED, words.verified_note);
            b.finish(Action::Verify, Some(Duration::ZERO))
        }
        Some(Phase::Promoting) => {
            let words = plan.credential.words();
            // As stored (whole seconds), so every look until retirement computes the same time.
            let promoted = to_k8s(obs.now);
            // Says when, as every look until then does: the wait writes no status of its own.
            b.enter(
                Phase::Retiring,
                retiring_message(plan, retire_at(obs, plan, from_k8s(&promoted))),
            );
            b.healthy();
            if let Some(r) = b.rotation() {
                r.promoted_time = Some(promoted);
            }
            b.event(false, words.current_reason, words.current_note);
            let wait = plan.propagation_delay + plan.overlap;
            let action = match plan.credential {
                CredentialKind::AuthToken => Action::Promote,
                // Nothing to promote: the new key is current once every consumer runs it.
                CredentialKind::ApiKey => Action::None,
            };
            b.finish(action, Some(wait))
        }
        Some(Phase::Retiring) => decide_retiring(b, plan),
        Some(Phase::Aborting) => decide_aborting(b, plan),
        Some(Phase::Pending | Phase::Ready | Phase::Aborted | Phase::Failed) | None => {
            decide_idle(b, plan)
        }
    }
}

fn decide_recover(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let id = current_id(&b);
    let already = conditions::get(&b.status.conditions, DEGRADED)
        .is_some_and(|c| c.status == "True" && c.reason == reasons::STAGING_SECRET_LOST);
    if !already {
        b.event(
            true,
            reasons::STAGING_SECRET_LOST,
            format!("rotation {id}: the staging Secret was deleted after distribution; rebuilding it from the Secrets and Twilio"),
        );
    }
    match plan.credential {
        // The old Auth Token stays known: it is the account's primary until promotion.
        CredentialKind::AuthToken => {}
        CredentialKind::ApiKey => {
            if let Some(r) = b.rotation() {
                // Only the new key is in the targets now.
                r.previous_lost = true;
            }
        }
    }
    b.finish(Action::Recover, Some(Duration::ZERO))
}

/// How often a reverted target is written again before the rotation holds.
const MAX_REDISTRIBUTIONS: u32 = 1;

/// A target Secret lost the new credential (a GitOps sync, an External Secrets refresh, a
/// `kubectl apply`): pods that restart now would read the old one, which promotion kills.
/// Write it again and roll the consumers out again, once; if it is reverted again, hold until
/// the user fixes the other writer and asks for another try with `rotate-now`.
fn decide_reverted(mut b: Builder<'_>) -> Decision {
    let obs = b.obs;
    let id = current_id(&b);
    let which: Vec<String> = obs.reverted.iter().map(|r| r.to_string()).collect();
    let which = which.join(", ");
    let done = obs
        .status
        .rotation
        .as_ref()
        .map_or(0, |r| r.redistributions);
    let retry = obs.rotate_now.is_some() && obs.rotate_now != obs.status.last_rotate_now;
    if done < MAX_REDISTRIBUTIONS || retry {
        if retry {
            b.status.last_rotate_now = obs.rotate_now.clone();
        }
        if let Some(r) = b.rotation() {
            r.redistributions = done + 1;
        }
        b.enter(
            Phase::RollingOut,
            "a target Secret was reverted by another writer: writing the new token again and restarting its consumers",
        );
        b.event(
            true,
            reasons::TARGET_SECRET_REVERTED,
            format!("rotation {id}: {which} no longer held the new token; writing it again and restarting the consumers"),
        );
        return b.finish(Action::Distribute, Some(Duration::ZERO));
    }
    let msg = format!(
        "{which} was reverted again after the new token was written a second time. Nothing is promoted and both tokens stay valid. Make the other writer leave that key alone (Argo CD: ignoreDifferences on /data with RespectIgnoreDifferences=true; External Secrets: creationPolicy Merge or Orphan; Flux or kubectl apply: stop applying the key), then set a new tokenrotator.io/rotate-now value to write it again, or set tokenrotator.io/abort to roll back"
    );
    b.hold(reasons::TARGET_SECRET_REVERTED, msg);
    b.finish(Action::None, Some(HOLD_POLL))
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

/// What the schedule counts from: the last promotion, or the end of a later run that did not
/// succeed (so an aborted or failed run is not started again at once).
fn last_run(status: &TokenRotationStatus) -> Option<DateTime<Utc>> {
    let promoted = status.last_rotation_time.as_ref().map(from_k8s);
    let attempted = status.last_attempt_time.as_ref().map(from_k8s);
    promoted.max(attempted)
}

/// Records the rotation in flight as ended with `result` (newest first, bounded).
fn record(b: &mut Builder<'_>, result: RotationResult, reason: Option<&str>) {
    let Some(r) = b.obs.status.rotation.as_ref() else {
        return;
    };
    let entry = RotationRecord {
        id: r.id.clone(),
        trigger: r.trigger,
        start_time: r.start_time.clone(),
        end_time: to_k8s(b.obs.now),
        result,
        reason: reason.map(str::to_owned),
        key_sid: match result {
            RotationResult::Succeeded => r.key_sid.clone(),
            RotationResult::Aborted | RotationResult::Failed => None,
        },
    };
    b.status.history.insert(0, entry);
    b.status.history.truncate(HISTORY_LIMIT);
}

/// A run that did not succeed ends: its end is what the schedule counts from next.
fn end_attempt(b: &mut Builder<'_>, plan: &Plan, result: RotationResult) {
    let now = b.obs.now;
    b.status.last_result = Some(result);
    b.status.last_attempt_time = Some(to_k8s(now));
    if let Ok(Some(s)) = &plan.schedule {
        b.status.next_rotation_time = next_scheduled(b, plan, s, last_run(&b.status));
    }
}

/// When the schedule runs next after `last`, inside the rotation windows: the first opening
/// with room for the mandatory waits. A slot whose window passed (the operator was down) moves
/// to the next opening rather than running outside one.
fn next_scheduled(
    b: &Builder<'_>,
    plan: &Plan,
    s: &schedule::Schedule,
    last: Option<DateTime<Utc>>,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    let obs = b.obs;
    let slot = schedule::next_run(s, last, obs.created, &obs.uid)?;
    let needs = plan.mandatory_waits();
    let fits = schedule::next_allowed(&plan.windows, slot, needs)?;
    let at = if fits <= obs.now {
        schedule::next_allowed(&plan.windows, obs.now, needs)?
    } else {
        fits
    };
    Some(to_k8s(at))
}

fn update_schedule(b: &mut Builder<'_>, plan: &Plan) {
    match &plan.schedule {
        Ok(Some(s)) => {
            b.status.next_rotation_time = next_scheduled(b, plan, s, last_run(&b.status));
            if conditions::get(&b.status.conditions, DEGRADED)
                .is_some_and(|c| c.status == "True" && c.reason == reasons::INVALID_SCHEDULE)
            {
                b.healthy();
            }
        }
        Ok(None) => b.status.next_rotation_time = None,
        Err(e) => {
            b.status.next_rotation_time = None;
            b.degrade(reasons::INVALID_SCHEDULE, e.to_string());
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
            reasons::ABORT_IGNORED,
            "abort requested but no rotation is in flight",
        );
    }
    let schedule_broken = plan.schedule.is_err();

    if let (Some(conflict), true, false) = (
        &obs.account_conflict,
        plan.credential.one_owner_per_account(),
        obs.deleting,
    ) {
        // Never a queue: whichever of the two promoted would kill the token the other's
        // consumers hold. A rotate-now request stays pending until the conflict is resolved.
        let msg = conflict.message(&obs.spec.twilio.account_sid);
        b.status.rotation = None;
        b.status.phase = Some(Phase::Pending);
        b.cond(READY, false, reasons::ACCOUNT_CONFLICT, msg.clone());
        b.cond(ROTATING, false, reasons::ACCOUNT_CONFLICT, msg.clone());
        // Refused credentials stay the reported problem (the check below repeats them).
        if !obs.status.credentials_refused {
            b.degrade(reasons::ACCOUNT_CONFLICT, msg);
        }
        // Whoever claims the account must be able to authenticate for it: a resource whose
        // credentials Twilio refuses stops counting, so a junk resource cannot stall it.
        b.status.credentials_refused = false;
        return b.finish(Action::CheckCredentials, Some(Duration::from_secs(30)));
    }

    if (manual || due) && !plan.suspend && !obs.deleting {
        if let Some(holder) = &obs.account_holder {
            let msg = format!(
                "waiting for {holder}, which rotates or has the next turn on the same Twilio account (an Auth Token rotation has the account to itself; API key rotations writing one Secret or replacing one key take turns)"
            );
            let waiting_already = conditions::get(&b.status.conditions, ROTATING)
                .is_some_and(|c| c.reason == reasons::WAITING_FOR_ACCOUNT);
            if !waiting_already {
                b.event(false, reasons::WAITING_FOR_ACCOUNT, msg.clone());
            }
            b.status.phase = Some(Phase::Pending);
            b.cond(ROTATING, false, reasons::WAITING_FOR_ACCOUNT, msg.clone());
            b.status.message = Some(msg);
            return b.finish(Action::None, Some(HOLD_POLL));
        }
        if let Some(limit) = obs.at_capacity {
            let msg = format!(
                "waiting for a place: {limit} rotations are in flight, the most --max-concurrent-rotations allows"
            );
            let waiting_already = conditions::get(&b.status.conditions, ROTATING)
                .is_some_and(|c| c.reason == reasons::WAITING_FOR_CAPACITY);
            if !waiting_already {
                b.event(false, reasons::WAITING_FOR_CAPACITY, msg.clone());
            }
            b.status.phase = Some(Phase::Pending);
            b.cond(ROTATING, false, reasons::WAITING_FOR_CAPACITY, msg.clone());
            b.status.message = Some(msg);
            return b.finish(Action::None, Some(CAPACITY_POLL));
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
            staging_secret: obs.staging_secret.clone(),
            staged: false,
            promoted_time: None,
            key_sid: None,
            previous_key_sid: None,
            workloads: Vec::new(),
            workloads_total: 0,
            workloads_done: 0,
            distributed_time: None,
            waiting_on: Vec::new(),
            abort_step: None,
            held_reason: None,
            create_called: false,
            redistributions: 0,
            previous_lost: false,
            spec: Some(obs.spec.clone()),
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
            reasons::ROTATION_STARTED,
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
    let (phase, ready, ready_reason, ready_msg) = match b.status.last_result {
        Some(RotationResult::Aborted) => (
            Phase::Aborted,
            false,
            reasons::ROTATION_ABORTED,
            "the last rotation was aborted; the old token is in use",
        ),
        Some(RotationResult::Failed) => (
            Phase::Failed,
            false,
            reasons::ROTATION_FAILED,
            "the last rotation was given up before anything was created; the old token is in use",
        ),
        Some(RotationResult::Succeeded) => (
            Phase::Ready,
            true,
            reasons::ROTATION_SUCCEEDED,
            "the last rotation succeeded",
        ),
        None => (
            Phase::Ready,
            true,
            reasons::NO_ROTATION_NEEDED,
            "no rotation has been needed yet",
        ),
    };
    // The step that ended the last rotation wrote a Ready message naming it: kept, so the
    // look that follows (its own status write's watch event) writes nothing.
    let status = if ready { "True" } else { "False" };
    let ready_msg = conditions::get(&b.status.conditions, READY)
        .filter(|c| c.status == status && c.reason == ready_reason)
        .map_or_else(|| ready_msg.to_owned(), |c| c.message.clone());
    b.status.phase = Some(phase);
    b.cond(READY, ready, ready_reason, ready_msg.clone());
    b.cond(ROTATING, false, reasons::IDLE, "no rotation in flight");
    // A failed run's reason (refused credentials) stays until a run succeeds; a resolved
    // account conflict does not.
    let keep_degraded = b.status.last_result == Some(RotationResult::Failed)
        && conditions::get(&b.status.conditions, DEGRADED)
            .is_some_and(|c| c.status == "True" && c.reason != reasons::ACCOUNT_CONFLICT);
    if !schedule_broken && !keep_degraded {
        b.healthy();
        b.status.message = Some(resting_message(
            &ready_msg,
            b.status.next_rotation_time.as_ref(),
            plan.suspend,
        ));
    }
    let requeue = b
        .status
        .next_rotation_time
        .as_ref()
        .map(|t| remaining(from_k8s(t), obs.now).min(IDLE_MAX))
        .or(Some(IDLE_MAX));
    if obs.deleting {
        // Nothing in flight: the controller lets the deletion go on.
        return b.finish(Action::None, None);
    }
    b.finish(Action::None, requeue)
}

/// The message of a resource with no rotation in flight: what the last one came to, then
/// what comes next. The step that ends a rotation writes the same as the looks after it.
fn resting_message(
    outcome: &str,
    next: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    suspend: bool,
) -> String {
    match (next, suspend) {
        (_, true) => "suspended: no rotation starts until spec.suspend is false".to_string(),
        (Some(t), false) => format!("{outcome}; next rotation at {}", from_k8s(t).to_rfc3339()),
        (None, false) => format!(
            "{outcome}; annotate with tokenrotator.io/rotate-now or tokenrotator.io/schedule to rotate"
        ),
    }
}

fn current_id(b: &Builder<'_>) -> String {
    b.status
        .rotation
        .as_ref()
        .map(|r| r.id.clone())
        .unwrap_or_default()
}

fn decide_staging(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let obs = b.obs;
    let id = current_id(&b);
    let already_stored = obs.staged_for.as_deref() == Some(id.as_str());
    let called = obs
        .status
        .rotation
        .as_ref()
        .is_some_and(|r| r.create_called);
    // Next: distribute. The token is in the staging Secret before any status says so.
    if let Some(r) = b.rotation() {
        r.staged = true;
        r.create_called |= !already_stored;
    }
    b.status.credentials_refused = false;
    b.enter(
        Phase::Distributing,
        "writing the new token into the target Secrets",
    );
    b.healthy();
    if already_stored {
        // A crash after storing the token but before this status write: nothing to redo.
        return b.finish(Action::None, Some(Duration::ZERO));
    }
    let words = plan.credential.words();
    b.event(
        false,
        words.created_reason,
        format!(
            "rotation {id}: created {} and stored it in the staging Secret",
            words.created_what
        ),
    );
    // A secondary that exists is ours only if an earlier attempt may have made it, or the
    // user said to delete it (by naming this rotation).
    let told = obs.delete_secondary.as_deref() == Some(id.as_str());
    let action = Action::Stage {
        clear_existing: called || told,
    };
    let mut d = b.finish(action, Some(Duration::ZERO));
    if !called {
        // Recorded before Twilio is first called: after a crash during the call, the next
        // attempt knows the secondary it finds may be its own.
        let mut before = obs.status.clone();
        if let Some(r) = before.rotation.as_mut() {
            r.create_called = true;
        }
        d.before = Some(before);
    }
    d
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
            reasons::STAGING_SECRET_LOST,
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
        reasons::SECRETS_UPDATED,
        format!("rotation {id}: the new token is in every target Secret"),
    );
    b.finish(Action::Distribute, Some(Duration::ZERO))
}

/// Shared by the rollout onto the new token and the rollback onto the old one.
enum RolloutState {
    Restart(Action),
    Waiting,
    /// The Secrets were just written: restart after this long.
    Settling(Duration),
    /// The workloads are through, but pods on the credential being replaced remain.
    Pods(String),
    Held(&'static str, String),
    /// Every consumer runs the credential; `note` says what the Event should add.
    Done {
        note: Option<(bool, &'static str, String)>,
    },
}

/// Where the rollout onto `serve` stands. Rolling back (`Serve::Old`) has no timeout, and a
/// workload that no longer exists has nothing to roll back.
fn rollout_state(b: &mut Builder<'_>, plan: &Plan, stamp: &str, serve: Serve) -> RolloutState {
    let obs = b.obs;
    let phase_start = obs
        .status
        .rotation
        .as_ref()
        .map(|r| from_k8s(&r.phase_start_time))
        .unwrap_or(obs.now);
    // First seen here, after the step that wrote every target (Distribute, or RestoreSecrets
    // when rolling back): pods started later read what it wrote.
    let first_look = obs
        .status
        .rotation
        .as_ref()
        .is_some_and(|r| r.distributed_time.is_none());
    if first_look {
        let now = obs.now;
        if let Some(r) = b.rotation() {
            r.distributed_time = Some(to_k8s(now));
        }
    }
    if plan.restart == RestartPolicy::Never {
        let until = phase_start + to_chrono(plan.kubelet_sync_delay);
        return if obs.now >= until {
            pod_state(b, plan, serve, phase_start)
        } else {
            RolloutState::Waiting
        };
    }
    let Some(view) = &obs.rollout else {
        return RolloutState::Waiting;
    };
    if let Some(r) = b.rotation() {
        // Bounded: the ones not done first, then as many done as fit; the counts are whole.
        let mut listed: Vec<WorkloadProgress> = view.workloads.clone();
        listed.sort_by_key(|w| w.done);
        listed.truncate(MAX_LISTED_WORKLOADS);
        r.workloads = listed;
        let total = view.workloads.len();
        r.workloads_total = u32::try_from(total).unwrap_or(u32::MAX);
        r.workloads_done =
            u32::try_from(view.workloads.iter().filter(|w| w.done).count()).unwrap_or(u32::MAX);
    }
    if !view.unstamped.is_empty() {
        // Kubelets read Secrets through a watch cache: a pod started the moment after the write
        // can still get the value before it. Restart only once the write has settled.
        let written = b
            .status
            .rotation
            .as_ref()
            .and_then(|r| r.distributed_time.as_ref())
            .map_or(obs.now, from_k8s);
        let settled = written + to_chrono(SETTLE);
        if obs.now < settled {
            return RolloutState::Settling(remaining(settled, obs.now));
        }
        return RolloutState::Restart(Action::Restart {
            stamp: stamp.to_owned(),
            workloads: view.unstamped.clone(),
            serve,
        });
    }
    // Rolling back waits on nothing that is gone or going (a namespace being deleted).
    let gone = |w: &WorkloadProgress| {
        serve == Serve::Old
            && matches!(
                RolloutReason::of(w),
                Some(RolloutReason::NotFound | RolloutReason::NamespaceTerminating)
            )
    };
    if view.workloads.iter().all(|w| w.done || gone(w)) {
        return pod_state(b, plan, serve, phase_start);
    }
    let blocked: Vec<String> = view
        .workloads
        .iter()
        .filter(|w| !w.done)
        .filter_map(|w| match RolloutReason::of(w) {
            Some(r @ (RolloutReason::Paused | RolloutReason::ProgressDeadlineExceeded)) => {
                Some(format!("{} ({})", label(w), r.as_str()))
            }
            _ => None,
        })
        .collect();
    if !blocked.is_empty() {
        let reason = if view
            .workloads
            .iter()
            .any(|w| RolloutReason::of(w) == Some(RolloutReason::Paused))
        {
            reasons::WORKLOAD_PAUSED
        } else {
            reasons::ROLLOUT_FAILED
        };
        return RolloutState::Held(reason, format!("rollout blocked: {}", first_few(&blocked)));
    }
    if serve == Serve::New && obs.now - phase_start > to_chrono(plan.rollout_timeout) {
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
            reasons::ROLLOUT_TIMEOUT,
            format!(
                "rollout did not finish within rolloutTimeout: {}",
                first_few(&pending)
            ),
        );
    }
    RolloutState::Waiting
}

/// The workloads are through: the Pod-level barrier (see [`consumers`]).
fn pod_state(
    b: &mut Builder<'_>,
    plan: &Plan,
    serve: Serve,
    phase_start: DateTime<Utc>,
) -> RolloutState {
    let obs = b.obs;
    let Some(view) = &obs.pods else {
        // Not looked at: the barrier is switched off.
        return RolloutState::Done { note: None };
    };
    let distributed = b
        .status
        .rotation
        .as_ref()
        .and_then(|r| r.distributed_time.as_ref())
        .map_or(phase_start, from_k8s);
    let window = match serve {
        Serve::New => consumers::Window::since(distributed),
        // Rolling back: pods started before the rotation never had the new credential.
        Serve::Old => consumers::Window {
            distributed,
            earlier: obs
                .status
                .rotation
                .as_ref()
                .map(|r| from_k8s(&r.start_time)),
        },
    };
    let timed_out = serve == Serve::New && obs.now - phase_start > to_chrono(plan.rollout_timeout);
    let verdict = consumers::barrier(view, window, obs.now, plan);
    let groups = match &verdict {
        Barrier::Wait { groups, .. } | Barrier::Unmanaged { groups, .. } => groups.clone(),
        _ => Vec::new(),
    };
    if let Some(r) = b.rotation() {
        r.waiting_on = groups;
    }
    match verdict {
        Barrier::Clear { ignored, none_found } => {
            let note = if !ignored.is_empty() {
                let shown = ignored.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                Some((
                    true,
                    reasons::UNMANAGED_CONSUMERS,
                    format!(
                        "promoting although {} pods nothing restarts hold the old credential (unmanagedPods: Ignore); their calls will be refused: {shown}",
                        ignored.len()
                    ),
                ))
            } else if none_found {
                Some((
                    false,
                    reasons::NO_CONSUMERS_FOUND,
                    "no consumers found: no Pod in scope reads a target Secret; promoting as the spec allows".to_owned(),
                ))
            } else {
                None
            };
            RolloutState::Done { note }
        }
        Barrier::RestartRollouts(rollouts) => {
            RolloutState::Restart(Action::RestartRollouts { rollouts })
        }
        Barrier::DeletePods(pods) => RolloutState::Restart(Action::DeletePods { pods }),
        Barrier::Wait { summary, .. } if timed_out => RolloutState::Held(
            reasons::ROLLOUT_TIMEOUT,
            format!("after rolloutTimeout, {summary}"),
        ),
        Barrier::Wait { summary, .. } => RolloutState::Pods(format!("waiting for {summary}")),
        Barrier::Unmanaged { summary, .. } if serve == Serve::Old => RolloutState::Held(
            reasons::UNMANAGED_CONSUMERS,
            format!(
                "{summary}: they started during the rotation, hold the new token the abort deletes, and nothing restarts them. Delete them (or restart their owner), or set workloads.unmanagedPods: Delete or Ignore"
            ),
        ),
        Barrier::NoConsumers if serve == Serve::Old => RolloutState::Done { note: None },
        Barrier::Unmanaged { summary, .. } => RolloutState::Held(
            reasons::UNMANAGED_CONSUMERS,
            format!(
                "{summary}: nothing this rotation restarts replaces them. Delete them (or restart their owner), set workloads.unmanagedPods: Delete to let the operator delete them, or Ignore to accept their refused calls"
            ),
        ),
        Barrier::NoConsumers => RolloutState::Held(
            reasons::NO_CONSUMERS_FOUND,
            "no consumers found: no Pod in scope reads a target Secret and no dependent workload exists, so nothing proves the consumers run the new token. If that is expected, set workloads.noConsumers: Proceed".to_owned(),
        ),
    }
}

/// "Deployment api", or "Deployment team-a/api" when the rotation spans namespaces.
fn label(w: &WorkloadProgress) -> String {
    match &w.namespace {
        Some(ns) => format!("{} {ns}/{}", w.kind, w.name),
        None => format!("{} {}", w.kind, w.name),
    }
}

fn progress_summary(b: &Builder<'_>) -> String {
    let (done, total) = b
        .status
        .rotation
        .as_ref()
        .map_or((0, 0), |r| (r.workloads_done, r.workloads_total));
    format!("{done}/{total} workloads run the new token")
}

/// How many workloads status lists (a ClusterTokenRotation may cover hundreds).
const MAX_LISTED_WORKLOADS: usize = 50;

/// The first five items, then how many more: condition messages stay short however many
/// workloads a rotation covers.
fn first_few(items: &[String]) -> String {
    let shown = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(5) {
        0 => shown,
        n => format!("{shown} and {n} more"),
    }
}

fn decide_rolling_out(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let id = current_id(&b);
    let stamp = b
        .status
        .rotation
        .as_ref()
        .map(RotationStatus::rollout_stamp)
        .unwrap_or_default();
    match rollout_state(&mut b, plan, &stamp, Serve::New) {
        RolloutState::Restart(action) => {
            if let Action::Restart { workloads, .. } = &action {
                let names: Vec<String> = workloads.iter().map(|w| w.to_string()).collect();
                b.event(
                    false,
                    reasons::WORKLOADS_RESTARTED,
                    format!("rotation {id}: restarting {}", names.join(", ")),
                );
            }
            if let Action::RestartRollouts { rollouts } = &action {
                let names: Vec<String> = rollouts
                    .iter()
                    .map(|(ns, n)| format!("Rollout {ns}/{n}"))
                    .collect();
                b.event(
                    false,
                    reasons::WORKLOADS_RESTARTED,
                    format!("rotation {id}: restarting {}", names.join(", ")),
                );
            }
            if let Action::DeletePods { pods } = &action {
                let names: Vec<String> = pods
                    .iter()
                    .map(|p| format!("{}/{}", p.namespace, p.name))
                    .collect();
                b.event(
                    true,
                    reasons::UNMANAGED_CONSUMERS,
                    format!(
                        "rotation {id}: deleting {} pods that hold the old token and that nothing this rotation restarts (unmanagedPods: Delete): {}",
                        names.len(),
                        names.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    ),
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
            b.cond(ROTATING, true, Phase::RollingOut.as_str(), msg);
            b.healthy_if_not_held();
            b.finish(Action::None, Some(POLL))
        }
        RolloutState::Settling(wait) => b.finish(Action::None, Some(wait)),
        RolloutState::Pods(msg) => {
            b.status.message = Some(msg.clone());
            b.cond(ROTATING, true, Phase::RollingOut.as_str(), msg);
            b.healthy_if_not_held();
            b.finish(Action::None, Some(POLL))
        }
        RolloutState::Held(reason, msg) => {
            let msg = format!(
                "{msg}. Nothing is promoted and both tokens stay valid; fix the workloads, or set the tokenrotator.io/abort annotation to roll back"
            );
            b.hold(reason, msg);
            b.finish(Action::None, Some(HOLD_POLL))
        }
        RolloutState::Done { note } => {
            b.enter(
                Phase::Verifying,
                "every workload runs the new token; verifying it",
            );
            b.healthy();
            b.event(
                false,
                reasons::ROLLOUT_COMPLETE,
                format!("rotation {id}: every consumer pod runs the new token"),
            );
            if let Some((warning, reason, note)) = note {
                b.event(warning, reason, format!("rotation {id}: {note}"));
            }
            b.finish(Action::None, Some(Duration::ZERO))
        }
    }
}

/// When the previous credential is retired, promoted at `promoted`. Being deleted: the
/// overlap (for webhook validators of the previous token) is cut short, propagation is not.
fn retire_at(obs: &Observation, plan: &Plan, promoted: DateTime<Utc>) -> DateTime<Utc> {
    let overlap = if obs.deleting {
        Duration::ZERO
    } else {
        plan.overlap
    };
    promoted + to_chrono(plan.propagation_delay + overlap)
}

fn retiring_message(plan: &Plan, until: DateTime<Utc>) -> String {
    format!(
        "{} at {}",
        plan.credential.words().current_message,
        until.to_rfc3339()
    )
}

fn decide_retiring(mut b: Builder<'_>, plan: &Plan) -> Decision {
    let obs = b.obs;
    let promoted = obs
        .status
        .rotation
        .as_ref()
        .and_then(|r| r.promoted_time.as_ref().map(from_k8s))
        .unwrap_or(obs.now);
    let until = retire_at(obs, plan, promoted);
    if obs.now < until {
        let msg = retiring_message(plan, until);
        b.status.message = Some(msg.clone());
        b.cond(ROTATING, true, Phase::Retiring.as_str(), msg);
        return b.finish(Action::None, Some(remaining(until, obs.now)));
    }
    let id = current_id(&b);
    let delete_keys = match plan.credential {
        CredentialKind::AuthToken => Vec::new(),
        CredentialKind::ApiKey => retire_keys(&mut b, plan.retain_previous),
    };
    record(&mut b, RotationResult::Succeeded, None);
    b.status.rotation = None;
    b.status.phase = Some(Phase::Ready);
    b.status.rotations += 1;
    b.status.last_rotation_time = Some(to_k8s(promoted));
    b.status.last_result = Some(RotationResult::Succeeded);
    b.cond(
        READY,
        true,
        reasons::ROTATION_SUCCEEDED,
        format!("rotation {id} succeeded"),
    );
    b.cond(ROTATING, false, reasons::IDLE, "no rotation in flight");
    if plan.schedule.is_ok() {
        b.healthy();
    }
    if let Ok(Some(s)) = &plan.schedule {
        b.status.next_rotation_time = next_scheduled(&b, plan, s, Some(promoted));
    }
    b.status.message = Some(resting_message(
        &format!("rotation {id} succeeded"),
        b.status.next_rotation_time.as_ref(),
        plan.suspend,
    ));
    let note = match (plan.credential, delete_keys.is_empty()) {
        (CredentialKind::AuthToken, _) => "the previous token is retired".to_string(),
        (CredentialKind::ApiKey, true) => "no previous API key to delete".to_string(),
        (CredentialKind::ApiKey, false) => {
            format!("deleted API key(s) {}", delete_keys.join(", "))
        }
    };
    b.event(
        false,
        reasons::ROTATION_SUCCEEDED,
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
            r.waiting_on.clear();
            if s == AbortStep::RollBack {
                // The old credential is written back next: counted from the next look.
                r.distributed_time = None;
            }
        }
    };
    match step {
        AbortStep::RestoreSecrets => {
            set_step(&mut b, AbortStep::RollBack);
            b.status.message = Some("rolling workloads back onto the old token".into());
            b.event(
                true,
                reasons::SECRETS_RESTORED,
                format!("rotation {id}: the old token is back in every target Secret"),
            );
            b.finish(Action::RestoreSecrets, Some(Duration::ZERO))
        }
        AbortStep::RollBack => {
            let stamp = b
                .status
                .rotation
                .as_ref()
                .map(RotationStatus::rollback_stamp)
                .unwrap_or_default();
            match rollout_state(&mut b, plan, &stamp, Serve::Old) {
                RolloutState::Restart(action) => b.finish(action, Some(POLL)),
                RolloutState::Waiting => {
                    b.status.message = Some(format!("rolling back: {}", progress_summary(&b)));
                    b.finish(Action::None, Some(POLL))
                }
                RolloutState::Settling(wait) => b.finish(Action::None, Some(wait)),
                RolloutState::Pods(msg) => {
                    b.status.message = Some(format!("rolling back: {msg}"));
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
                RolloutState::Done { .. } => {
                    set_step(&mut b, AbortStep::DeleteSecondary);
                    b.status.message = Some(
                        "every workload runs the old token again; deleting the new one".into(),
                    );
                    b.finish(Action::None, Some(Duration::ZERO))
                }
            }
        }
        AbortStep::DeleteSecondary => {
            // Twilio holds something of ours only once a create may have been called.
            let at_twilio = b
                .status
                .rotation
                .as_ref()
                .is_some_and(|r| r.staged || r.create_called);
            // Once consumers had the new token, pods the rollback stopped may still be
            // draining on it: deleting it waits out propagationDelay, like retirement.
            let now = b.obs.now;
            let rolled_back = b.status.rotation.as_ref().filter(|r| r.staged);
            if let Some(r) = rolled_back {
                let until = from_k8s(&r.phase_start_time) + to_chrono(plan.propagation_delay);
                if now < until {
                    b.status.message = Some(format!(
                        "every workload runs the old token again; deleting the new one at {}",
                        until.to_rfc3339()
                    ));
                    return b.finish(Action::None, Some(remaining(until, now)));
                }
            }
            let why = b
                .status
                .rotation
                .as_ref()
                .and_then(|r| r.held_reason.clone());
            record(&mut b, RotationResult::Aborted, why.as_deref());
            b.status.rotation = None;
            b.status.phase = Some(Phase::Aborted);
            end_attempt(&mut b, plan, RotationResult::Aborted);
            let outcome = format!("rotation {id} was aborted; the old token is in use");
            b.cond(READY, false, reasons::ROTATION_ABORTED, outcome.clone());
            b.cond(ROTATING, false, reasons::IDLE, "no rotation in flight");
            b.healthy();
            b.status.message = Some(resting_message(
                &outcome,
                b.status.next_rotation_time.as_ref(),
                plan.suspend,
            ));
            b.event(
                true,
                reasons::ROTATION_ABORTED,
                format!("rotation {id} aborted and rolled back; the new token was deleted"),
            );
            b.finish(Action::DeleteSecondary { at_twilio }, Some(Duration::ZERO))
        }
    }
}

/// The status to write when `action` failed: nothing advances, the failure is reported and the
/// step is retried.
/// How long creating the new credential may keep failing (Twilio down, the staging Secret
/// not writable) before the rotation gives its claim on the account up.
const STAGING_GIVE_UP: Duration = Duration::from_secs(600);

/// Bookkeeping after a failed Stage: whether a secondary may exist now, and whether the
/// rotation gives up (it must not hold the account's claim forever).
/// Returns when to look again, when the rotation gives up.
fn staging_failed(
    b: &mut Builder<'_>,
    plan: &Plan,
    class: FailureClass,
    message: &str,
) -> Option<Duration> {
    let obs = b.obs;
    let r = obs.status.rotation.as_ref()?;
    // Refused credentials, a foreign secondary and missing permissions (checked before the
    // create call) mean Twilio created nothing.
    let created_nothing = class.credentials_refused()
        || class == FailureClass::ForeignSecondary
        || class == FailureClass::MissingPermissions;
    let called = r.create_called || !created_nothing;
    if let Some(r) = b.rotation() {
        r.create_called = called;
    }
    if created_nothing && !called && class != FailureClass::ForeignSecondary {
        // Credentials that do not work for the account cannot hold its claim.
        let id = current_id(b);
        let msg = format!(
            "{message}. Rotation {id} was given up: nothing was created, the old token stays in use and the account is free for other rotations; the next attempt is the next scheduled run or a new tokenrotator.io/rotate-now value"
        );
        record(b, RotationResult::Failed, Some(class.reason()));
        b.status.rotation = None;
        b.status.phase = Some(Phase::Failed);
        end_attempt(b, plan, RotationResult::Failed);
        b.cond(READY, false, reasons::ROTATION_FAILED, msg.clone());
        b.cond(ROTATING, false, reasons::IDLE, "no rotation in flight");
        b.degrade(class.reason(), msg.clone());
        b.event(true, reasons::ROTATION_FAILED, msg);
        let requeue = b
            .status
            .next_rotation_time
            .as_ref()
            .map_or(IDLE_MAX, |t| remaining(from_k8s(t), obs.now).min(IDLE_MAX));
        return Some(requeue);
    }
    let started = from_k8s(&r.start_time);
    if !created_nothing && obs.now - started > to_chrono(STAGING_GIVE_UP) {
        // Whatever a failed attempt may have left at Twilio is deleted on the way out.
        b.enter(
            Phase::Aborting,
            "creating the new token kept failing: giving the rotation up",
        );
        if let Some(r) = b.rotation() {
            r.abort_step = Some(AbortStep::DeleteSecondary);
        }
        b.degrade(class.reason(), message.to_owned());
        b.event(
            true,
            reasons::ROTATION_ABORTING,
            format!("{message}; creating the new token kept failing for {} minutes: the rotation is given up", STAGING_GIVE_UP.as_secs() / 60),
        );
        return Some(Duration::ZERO);
    }
    None
}

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
    let what = action.describe();
    let id = current_id(&b);
    let advice = match failure.class {
        FailureClass::CredentialsMissing => "; create the credentials Secret named in spec.twilio.credentialsSecretRef".to_owned(),
        FailureClass::AuthenticationFailed => {
            "; put the account's current Auth Token into the Secret named in spec.twilio.credentialsSecretRef".to_owned()
        }
        FailureClass::NewTokenRefused => "; the rotation holds: both tokens stay valid until this is resolved or aborted".to_owned(),
        FailureClass::StandardKeyCredentials => {
            "; put the account's Auth Token (without keySidKey) or a Main API key into spec.twilio.credentialsSecretRef".to_owned()
        }
        FailureClass::OutcomeUnknown => "; the state is re-read before retrying".to_owned(),
        FailureClass::MissingPermissions | FailureClass::Forbidden => {
            "; grant the operator's ServiceAccount these permissions (with the Helm chart: rbac.scope=cluster, or the namespace in rbac.namespaces)".to_owned()
        }
        FailureClass::ForeignSecondary => format!(
            "; whoever made it (the Twilio Console, another tool, another cluster) may be using it, so it is not deleted. Delete it in the Twilio Console, or set the annotation {DELETE_SECONDARY_ANNOTATION}={id} to let the operator delete it and go on, or set tokenrotator.io/abort to give up this rotation"
        ),
        _ => "; retrying".to_owned(),
    };
    let message = format!("{what} failed: {}{advice}", failure.message);
    if failure.class.credentials_refused()
        && matches!(action, Action::Stage { .. } | Action::CheckCredentials)
    {
        b.status.credentials_refused = true;
    }
    if let (Action::Stage { .. }, Ok(plan)) = (action, &obs.plan) {
        if let Some(requeue) = staging_failed(&mut b, plan, failure.class, &message) {
            return b.finish(Action::None, Some(requeue));
        }
    }
    b.degrade(failure.class.reason(), message);
    let retry = match failure.class {
        FailureClass::CredentialsMissing
        | FailureClass::AuthenticationFailed
        | FailureClass::StandardKeyCredentials
        | FailureClass::ForeignSecondary
        | FailureClass::MissingPermissions
        | FailureClass::Forbidden => Duration::from_secs(30),
        FailureClass::OutcomeUnknown => Duration::from_secs(1),
        FailureClass::TwilioRateLimited => Duration::from_secs(5),
        _ => HOLD_POLL,
    };
    b.finish(Action::None, Some(retry))
}
