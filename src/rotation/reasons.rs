//! Every condition and Event reason the rotation reports. CamelCase and stable: users alert on
//! them, and the README lists each one (a test keeps the two in step).

// Ready
pub const ROTATION_SUCCEEDED: &str = "RotationSucceeded";
pub const NO_ROTATION_NEEDED: &str = "NoRotationNeeded";
pub const ROTATING: &str = "Rotating";
pub const ROTATION_ABORTED: &str = "RotationAborted";
/// A rotation was given up before anything was created.
pub const ROTATION_FAILED: &str = "RotationFailed";

// Rotating (besides the phase names)
pub const HELD: &str = "Held";
pub const SUSPENDED: &str = "Suspended";
pub const WAITING_FOR_ACCOUNT: &str = "WaitingForAccount";
/// `--max-concurrent-rotations` rotations are in flight; this one starts when one ends.
pub const WAITING_FOR_CAPACITY: &str = "WaitingForCapacity";
pub const IDLE: &str = "Idle";

// Degraded
pub const AS_EXPECTED: &str = "AsExpected";
pub const INVALID_SCHEDULE: &str = "InvalidSchedule";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const ROLLOUT_TIMEOUT: &str = "RolloutTimeout";
pub const WORKLOAD_PAUSED: &str = "WorkloadPaused";
pub const ROLLOUT_FAILED: &str = "RolloutFailed";
/// Pods read a target Secret, hold the old credential, and nothing the rotation restarts
/// replaces them (bare Pods, owners it does not restart).
pub const UNMANAGED_CONSUMERS: &str = "UnmanagedConsumers";
/// No Pod in scope reads a target Secret.
pub const NO_CONSUMERS_FOUND: &str = "NoConsumersFound";
/// A Secret the rotation does not write holds the credential being replaced.
pub const UNCOVERED_TOKEN_COPIES: &str = "UncoveredTokenCopies";
/// A target Secret (or the credentials Secret) lost the new credential to another writer.
pub const TARGET_SECRET_REVERTED: &str = "TargetSecretReverted";
/// Two resources rotate the Auth Token of one account.
pub const ACCOUNT_CONFLICT: &str = "AccountConflict";
/// A secondary Auth Token exists that this rotation did not create.
pub const FOREIGN_SECONDARY_TOKEN: &str = "ForeignSecondaryToken";
pub const CREDENTIALS_SECRET_NOT_FOUND: &str = "CredentialsSecretNotFound";
pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
pub const VERIFICATION_FAILED: &str = "VerificationFailed";
pub const TWILIO_UNAVAILABLE: &str = "TwilioUnavailable";
pub const TWILIO_RATE_LIMITED: &str = "TwilioRateLimited";
pub const TWILIO_OUTCOME_UNKNOWN: &str = "TwilioOutcomeUnknown";
pub const STAGING_SECRET_LOST: &str = "StagingSecretLost";
pub const KUBERNETES_ERROR: &str = "KubernetesError";
/// Before creating anything: the operator lacks a permission the rotation needs.
pub const MISSING_PERMISSIONS: &str = "MissingPermissions";
/// The Kubernetes API refused the operator a request (403) in the middle of a step.
pub const FORBIDDEN: &str = "Forbidden";
pub const TWILIO_REJECTED: &str = "TwilioRejected";
pub const STANDARD_KEY_CREDENTIALS: &str = "StandardKeyCredentials";

// Events only
pub const ROTATION_STARTED: &str = "RotationStarted";
pub const SECONDARY_TOKEN_CREATED: &str = "SecondaryTokenCreated";
pub const API_KEY_CREATED: &str = "ApiKeyCreated";
pub const SECRETS_UPDATED: &str = "SecretsUpdated";
pub const WORKLOADS_RESTARTED: &str = "WorkloadsRestarted";
pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
pub const TOKEN_VERIFIED: &str = "TokenVerified";
pub const TOKEN_PROMOTED: &str = "TokenPromoted";
pub const API_KEY_CURRENT: &str = "ApiKeyCurrent";
/// A rotation stopped before promotion; sent once per hold.
pub const ROTATION_HELD: &str = "RotationHeld";
pub const ROTATION_ABORTING: &str = "RotationAborting";
pub const SECRETS_RESTORED: &str = "SecretsRestored";
pub const ABORT_REFUSED: &str = "AbortRefused";
pub const ABORT_IGNORED: &str = "AbortIgnored";

/// Every reason above, for the README check.
pub const ALL: &[&str] = &[
    ROTATION_SUCCEEDED,
    NO_ROTATION_NEEDED,
    ROTATING,
    ROTATION_ABORTED,
    ROTATION_FAILED,
    HELD,
    SUSPENDED,
    WAITING_FOR_ACCOUNT,
    WAITING_FOR_CAPACITY,
    IDLE,
    AS_EXPECTED,
    INVALID_SCHEDULE,
    INVALID_SPEC,
    ROLLOUT_TIMEOUT,
    WORKLOAD_PAUSED,
    ROLLOUT_FAILED,
    UNMANAGED_CONSUMERS,
    NO_CONSUMERS_FOUND,
    UNCOVERED_TOKEN_COPIES,
    TARGET_SECRET_REVERTED,
    ACCOUNT_CONFLICT,
    FOREIGN_SECONDARY_TOKEN,
    CREDENTIALS_SECRET_NOT_FOUND,
    AUTHENTICATION_FAILED,
    VERIFICATION_FAILED,
    TWILIO_UNAVAILABLE,
    TWILIO_RATE_LIMITED,
    TWILIO_OUTCOME_UNKNOWN,
    STAGING_SECRET_LOST,
    KUBERNETES_ERROR,
    MISSING_PERMISSIONS,
    FORBIDDEN,
    TWILIO_REJECTED,
    STANDARD_KEY_CREDENTIALS,
    ROTATION_STARTED,
    SECONDARY_TOKEN_CREATED,
    API_KEY_CREATED,
    SECRETS_UPDATED,
    WORKLOADS_RESTARTED,
    ROLLOUT_COMPLETE,
    TOKEN_VERIFIED,
    TOKEN_PROMOTED,
    API_KEY_CURRENT,
    ROTATION_HELD,
    ROTATION_ABORTING,
    SECRETS_RESTORED,
    ABORT_REFUSED,
    ABORT_IGNORED,
];

#[cfg(test)]
mod tests {
    /// The README documents every reason, each in backticks.
    #[test]
    fn readme_lists_every_reason() {
        let readme = include_str!("../../README.md");
        let missing: Vec<&&str> = super::ALL
            .iter()
            .filter(|r| !readme.contains(&format!("`{r}`")))
            .collect();
        assert!(missing.is_empty(), "README lacks {missing:?}");
    }
}
