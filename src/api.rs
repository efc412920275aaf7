//! The `TokenRotation` custom resource (`tokenrotator.io/v1alpha1`).
//!
//! Field and annotation names are a public contract: users write them in GitOps repositories.
//! The schema carries every rule it can (patterns, bounds, CEL) so bad input is refused by the
//! API server; what only the controller can check (the schedule annotation, missing Secrets)
//! surfaces as a condition and an Event.

// kube's printcolumn(...) repeats `type_ = ...` by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Cron expression (UTC, 5 fields) or `@every <duration>`.
pub const SCHEDULE_ANNOTATION: &str = "tokenrotator.io/schedule";
/// Any new value asks for one rotation.
pub const ROTATE_NOW_ANNOTATION: &str = "tokenrotator.io/rotate-now";
/// Any new value aborts the rotation in flight (before promotion), rolling back safely.
pub const ABORT_ANNOTATION: &str = "tokenrotator.io/abort";
/// Start of the pod-template annotation whose value is the rotation's stamp (one restart per
/// rotation); each resource has its own, `tokenrotator.io/rotation-<8 hex>`.
pub const RESTART_ANNOTATION: &str = "tokenrotator.io/rotation";
/// Label on staging Secrets, naming the TokenRotation that owns them.
pub const STAGING_LABEL: &str = "tokenrotator.io/staging-for";
/// Start of the field manager of every server-side apply the operator makes; each resource has
/// its own, `token-rotator:<namespace>/<name>` or `token-rotator:cluster:<name>`.
pub const FIELD_MANAGER: &str = "token-rotator";
/// Held by a resource while a rotation is in flight, so that deleting it first rolls the
/// rotation back (before promotion) or finishes it (after).
pub const FINALIZER: &str = "tokenrotator.io/rotation";
/// Set to the rotation ID shown in a `ForeignSecondaryToken` hold to let the operator delete
/// the secondary Auth Token it did not create and go on.
pub const DELETE_SECONDARY_ANNOTATION: &str = "tokenrotator.io/delete-secondary";

/// Rotates a Twilio credential stored in Kubernetes Secrets with zero downtime.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tokenrotator.io",
    version = "v1alpha1",
    kind = "TokenRotation",
    plural = "tokenrotations",
    singular = "tokenrotation",
    shortname = "tr",
    category = "tokenrotator",
    namespaced,
    status = "TokenRotationStatus",
    derive = "PartialEq",
    doc = "Rotates a Twilio credential stored in Kubernetes Secrets with zero downtime",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Last Rotation",
        type_ = "date",
        json_path = ".status.lastRotationTime"
    ),
    printcolumn(
        name = "Next Rotation",
        type_ = "date",
        json_path = ".status.nextRotationTime"
    ),
    printcolumn(
        name = "Rotations",
        type_ = "integer",
        json_path = ".status.rotations",
        priority = "1"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("has(self.authToken) != has(self.apiKey)")
    .message("set exactly one of spec.authToken (rotate the account's Auth Token) and spec.apiKey (rotate an API key)"))]
#[x_kube(validation = kube::core::Rule::new("has(self.apiKey) || !has(self.twilio.credentialsSecretRef.keySidKey)")
    .message("Auth Token rotation authenticates with the account's Auth Token: remove spec.twilio.credentialsSecretRef.keySidKey")
    .field_path(".twilio.credentialsSecretRef"))]
#[x_kube(validation = kube::core::Rule::new("has(self.apiKey) ? self.secrets.all(s, has(s.keySidKey)) : self.secrets.all(s, !has(s.keySidKey))")
    .message("with spec.apiKey every secret needs keySidKey (consumers need the key SID with its secret); keySidKey is only for spec.apiKey")
    .field_path(".secrets"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.apiKey) || self.secrets.all(s, !has(s.previousTokenKey) && !has(s.webhookTokensKey))")
    .message("with spec.apiKey, previousTokenKey and webhookTokensKey do not apply (the previous key stays valid until it is deleted, and API keys cannot validate webhook signatures)")
    .field_path(".secrets"))]
#[serde(rename_all = "camelCase")]
pub struct TokenRotationSpec {
    /// The Twilio account whose credential is rotated, and how the operator authenticates.
    pub twilio: TwilioSpec,
    /// Rotate the account's Auth Token (primary/secondary promotion). One of `authToken` and
    /// `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<AuthTokenSpec>,
    /// Rotate an API key: create a new key, distribute it, roll out, verify, then delete the
    /// previous key (or keep the last `retainPrevious`). One of `authToken` and `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeySpec>,
    /// The Secrets consumers read, in this TokenRotation's namespace.
    #[x_kube(validation = kube::core::Rule::new("self.all(s, self.exists_one(t, t.name == s.name))")
        .message("secret names must be unique"))]
    #[schemars(length(min = 1, max = 64))]
    pub secrets: Vec<TargetSecret>,
    /// The workloads that must run the new token before it is promoted. Default: every
    /// Deployment, StatefulSet and DaemonSet in the namespace whose pod template references one
    /// of the secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<WorkloadsSpec>,
    /// Copies of the credential being replaced in Secrets this rotation does not write (another
    /// app's Secret, a hand-made copy, one synced from elsewhere): promotion would break their
    /// readers. Before promotion the operator looks for them in the namespaces it writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncovered_copies: Option<UncoveredCopiesSpec>,
    /// How long a rollout may take before the rotation is held as Degraded (nothing is promoted
    /// until it completes or the rotation is aborted).
    #[serde(default = "default_rollout_timeout")]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1s')")
        .message("rolloutTimeout must be at least 1s"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub rollout_timeout: String,
    /// How long Twilio may take to accept a new token everywhere; verification retries for this
    /// long, and retirement waits this long after promotion.
    #[serde(default = "default_propagation_delay")]
    #[x_kube(validation = kube::core::Rule::new("duration(self) <= duration('1h')")
        .message("propagationDelay must be at most 1h"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub propagation_delay: String,
    /// How long the previous token stays under `previousTokenKey` after promotion, for webhook
    /// signature validators (Twilio signs with the primary token only).
    #[serde(default = "default_overlap")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub overlap: String,
    /// Suspend stops new rotations and holds one in flight at its current step (both tokens stay
    /// valid until promotion).
    #[serde(default)]
    pub suspend: bool,
    /// When scheduled rotations may run: each window opens at `start` (5-field cron, UTC) and
    /// stays open for `duration`. A scheduled run starts only inside a window with room for its
    /// mandatory waits (propagationDelay + overlap, and kubeletSyncDelay with restart: Never),
    /// else at the next one. A rotate-now request runs at once regardless. Default: any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub windows: Vec<RotationWindow>,
}

/// What to do about copies of the old credential that no rotation writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UncoveredCopiesSpec {
    /// `Hold` (default): the rotation holds with `Degraded=UncoveredTokenCopies` naming them
    /// (namespace/name/key, never a value) until they are removed, updated or excepted.
    /// `Ignore`: do not look.
    #[serde(default)]
    pub policy: CopiesPolicy,
    /// Copies known and accepted (their readers will be refused after promotion, or they are
    /// not read). Acts at once, also on a rotation in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub except: Vec<CopyRef>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CopiesPolicy {
    #[default]
    Hold,
    Ignore,
}

/// A Secret (or one key of it) excepted from the copy check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CopyRef {
    /// Default: every namespace the rotation covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Default: every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// A maintenance window for scheduled rotations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationWindow {
    /// When the window opens: a 5-field cron expression in UTC, e.g. `0 2 * * 1-5`.
    #[schemars(length(min = 1, max = 100))]
    pub start: String,
    /// How long it stays open, e.g. `4h`.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1m')")
        .message("a window must be open at least 1m"))]
    pub duration: String,
}

/// Rotates a Twilio credential shared by many namespaces: the same rotation as a
/// `TokenRotation`, distributed into the named Secrets of every matched namespace, promoted only
/// once the dependent workloads of all of them run the new credential.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tokenrotator.io",
    version = "v1alpha1",
    kind = "ClusterTokenRotation",
    plural = "clustertokenrotations",
    singular = "clustertokenrotation",
    shortname = "ctr",
    category = "tokenrotator",
    status = "TokenRotationStatus",
    derive = "PartialEq",
    doc = "Rotates a Twilio credential shared by Secrets in many namespaces with zero downtime",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".status.namespaces",
        priority = "1"
    ),
    printcolumn(
        name = "Last Rotation",
        type_ = "date",
        json_path = ".status.lastRotationTime"
    ),
    printcolumn(
        name = "Next Rotation",
        type_ = "date",
        json_path = ".status.nextRotationTime"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTokenRotationSpec {
    /// The namespaces whose Secrets receive the credential and whose workloads are waited on.
    pub namespaces: NamespaceTargets,
    /// Namespace of the credentials Secret (`twilio.credentialsSecretRef`) and of the staging
    /// Secret that holds a new credential until the rotation ends.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub credentials_namespace: String,
    /// The rotation, as in a TokenRotation. `secrets` and `workloads` apply in every matched
    /// namespace (named workloads must exist in each).
    pub rotation: TokenRotationSpec,
}

/// Namespaces by name or by label selector (one of the two).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.names) != has(self.selector)")
    .message("set namespaces.names or namespaces.selector (exactly one)"))]
pub struct NamespaceTargets {
    /// These namespaces (those that do not exist are skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub names: Option<Vec<String>>,
    /// Every namespace whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

fn default_rollout_timeout() -> String {
    "15m".into()
}
fn default_propagation_delay() -> String {
    "60s".into()
}
fn default_overlap() -> String {
    "15m".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioSpec {
    /// The account SID, `AC` followed by 32 hexadecimal characters.
    #[schemars(regex(pattern = r"^AC[0-9a-fA-F]{32}$"))]
    pub account_sid: String,
    /// Twilio Region where the credential lives (for example `ie1`); default `us1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]{2}[0-9]$"))]
    pub region: Option<String>,
    /// Twilio Edge location (for example `dublin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,30}$"))]
    pub edge: Option<String>,
    /// The Secret holding the credential the operator authenticates with. For Auth Token
    /// rotation: the current Auth Token of this account (for a subaccount, the subaccount's
    /// own); the operator updates it to the new token before promotion so it never locks itself
    /// out. For API key rotation: the Auth Token, or a Main API key (set `keySidKey`); Twilio
    /// lets no Standard or restricted key manage keys. The operator never changes it then.
    pub credentials_secret_ref: CredentialsRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of a Secret in this TokenRotation's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key holding the Auth Token, or the Main key's secret when `keySidKey` is set.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
    /// Key of the same Secret holding a Main API key's SID (`SK...`): the operator then
    /// authenticates with that key instead of the Auth Token. API key rotation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key_sid_key: Option<String>,
}

/// Auth Token rotation: create the secondary token, distribute it, wait for every consumer,
/// verify, promote, retire.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthTokenSpec {
    /// Send `SuppressEmailNotification=true` so Twilio does not e-mail the account's owners on
    /// every rotation. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_email_notification: Option<bool>,
}

/// API key rotation. A key with a `policy` (given here, or carried by the key being rotated) is
/// a restricted key made through IAM v1 with that policy; otherwise a standard key is made
/// through the 2010 API.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySpec {
    /// Start of every key's friendly name. The rest names this resource and the rotation ID,
    /// so a key created by a rotation that crashed before storing it can be found and deleted.
    #[serde(default = "default_key_name_prefix")]
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = r"^[a-zA-Z0-9][-_.a-zA-Z0-9]*$")
    )]
    pub friendly_name_prefix: String,
    /// How many previous keys stay valid after a rotation (newest first); older ones are
    /// deleted. 0 deletes the previous key once the rotation completes.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub retain_previous: i32,
    /// IAM policy for a restricted key, e.g. `{"allow": ["/twilio/messaging/messages/read"]}`.
    /// When unset, a restricted key being rotated keeps its own policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub policy: Option<serde_json::Value>,
}

fn default_key_name_prefix() -> String {
    "token-rotator".into()
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A Secret consumers read. The operator owns only the keys named here (server-side apply,
/// field manager `token-rotator`); other keys and other managers' fields are left alone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// `namespace` is a CEL reserved word: Kubernetes exposes the field as `__namespace__`.
#[x_kube(validation = kube::core::Rule::new("!has(self.__namespace__)")
    .message("a namespaced TokenRotation writes only Secrets in its own namespace: remove secrets[].namespace"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.previousTokenKey) || self.previousTokenKey != self.tokenKey")
    .message("previousTokenKey must differ from tokenKey"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.accountSidKey) || (self.accountSidKey != self.tokenKey && (!has(self.previousTokenKey) || self.accountSidKey != self.previousTokenKey))")
    .message("accountSidKey must differ from tokenKey and previousTokenKey"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.keySidKey) || (self.keySidKey != self.tokenKey && (!has(self.accountSidKey) || self.keySidKey != self.accountSidKey))")
    .message("keySidKey must differ from tokenKey and accountSidKey"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.webhookTokensKey) || (self.webhookTokensKey != self.tokenKey && (!has(self.previousTokenKey) || self.webhookTokensKey != self.previousTokenKey) && (!has(self.accountSidKey) || self.webhookTokensKey != self.accountSidKey))")
    .message("webhookTokensKey must differ from tokenKey, previousTokenKey and accountSidKey"))]
pub struct TargetSecret {
    /// Secret name (same namespace only). Created if missing.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Not allowed on a namespaced TokenRotation; present so that a stray namespace is rejected
    /// with a clear message instead of being silently pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Key that receives the account SID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub account_sid_key: Option<String>,
    /// Key that receives the token (with `spec.apiKey`: the key's secret).
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub token_key: String,
    /// Key that receives the API key SID (`SK...`). Required with `spec.apiKey`, not allowed
    /// otherwise. The first Secret's SID and secret are the key being rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key_sid_key: Option<String>,
    /// Key that keeps the previous token during the rotation and for `overlap` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub previous_token_key: Option<String>,
    /// Key that receives every Auth Token a webhook validator must accept, comma-separated, the
    /// token Twilio currently signs with first (Twilio signs `X-Twilio-Signature` with the
    /// account's primary Auth Token only): from distribution until promotion the old token then
    /// the new one; from promotion until retirement the new token then the old one (requests
    /// signed just before promotion may still arrive); after retirement the new token alone;
    /// after an abort the old token alone. Accept a request whose signature matches any listed
    /// token. The operator writes it from the first rotation's distribution on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub webhook_tokens_key: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.names) && has(self.selector))")
    .message("set workloads.names or workloads.selector, not both"))]
pub struct WorkloadsSpec {
    /// Explicit workloads in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub names: Option<Vec<WorkloadRef>>,
    /// Workloads in this namespace whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// `Always` (default) stamps each workload's pod template once per rotation so it rolls out;
    /// `Never` is for apps that re-read a mounted Secret file: the operator then waits
    /// `kubeletSyncDelay` instead of a rollout.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// With `restart: Never`, how long the kubelet may take to refresh mounted Secret files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub kubelet_sync_delay: Option<String>,
    /// Pods reading a target Secret that this rotation cannot restart (bare Pods, Pods of an
    /// owner it does not restart, env consumers under `restart: Never`) and that still hold the
    /// old credential when everything else runs the new one. `Hold` (default): the rotation
    /// holds with `Degraded=UnmanagedConsumers` naming them. `Delete`: delete them (for pods
    /// whose owner recreates them). `Ignore`: promote anyway, accepting their refused calls.
    #[serde(default)]
    pub unmanaged_pods: UnmanagedPods,
    /// When no Pod in the rotation's scope reads a target Secret and no dependent workload
    /// exists: `Hold` (default, `Degraded=NoConsumersFound`: the consumers may live where the
    /// operator does not look) or `Proceed` (promote; the Event says no consumers were found).
    /// `restart: Never` proceeds either way.
    #[serde(default)]
    pub no_consumers: NoConsumers,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UnmanagedPods {
    #[default]
    Hold,
    Delete,
    Ignore,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NoConsumers {
    #[default]
    Hold,
    Proceed,
}

#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RestartPolicy {
    #[default]
    Always,
    Never,
}

/// Observed state. Never holds a token or anything derived from one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRotationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The rotation in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,
    /// When the token was last promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// When the schedule runs next (with this resource's jitter applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,
    /// Completed rotations.
    #[serde(default)]
    pub rotations: i64,
    /// Human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `rotate-now` annotation value already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_now: Option<String>,
    /// The `abort` annotation value already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_abort: Option<String>,
    /// Result of the last finished rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<RotationResult>,
    /// ClusterTokenRotation: the namespaces the rotation distributes into, as last resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// API key rotation: which keys are in use (SIDs only; they are not secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyStatus>,
    /// The last rotations that ended, newest first (at most
    /// [`HISTORY_LIMIT`](crate::api::HISTORY_LIMIT)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RotationRecord>,
    /// Twilio refused this resource's credentials at the last check: it does not count as an
    /// owner of the account's Auth Token until they work again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub credentials_refused: bool,
    /// When the last rotation that did not succeed ended (aborted, or given up before anything
    /// was created); the schedule's next run counts from it, so a failed run is not retried
    /// at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
}

/// How many ended rotations `status.history` keeps.
pub const HISTORY_LIMIT: usize = 10;

/// One rotation that ended. No token, nothing derived from one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    pub id: String,
    pub trigger: Trigger,
    pub start_time: Time,
    pub end_time: Time,
    pub result: RotationResult,
    /// Why it did not succeed, when it did not (a condition reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// API key rotation: the key it made current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sid: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    /// The key the target Secrets hold since the last completed rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_key_sid: Option<String>,
    /// Previous keys kept valid (`retainPrevious`), newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained_key_sids: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Nothing to do yet (no rotation has run, or waiting for the account lock).
    Pending,
    /// No rotation in flight; the last one succeeded or none was needed.
    Ready,
    /// Creating the new token and storing it in the staging Secret.
    Staging,
    /// Writing the new token into every target Secret.
    Distributing,
    /// Restarting dependent workloads and waiting until all run the new token.
    RollingOut,
    /// Checking that the new token authenticates.
    Verifying,
    /// Promoting the new token to primary (this kills the old one).
    Promoting,
    /// Waiting out propagation and overlap, then removing the previous token.
    Retiring,
    /// Rolling back an aborted rotation onto the old token.
    Aborting,
    /// The last rotation was aborted; the old token is still in use.
    Aborted,
    /// The last rotation was given up before anything was created; the old token is in use.
    Failed,
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Ready => "Ready",
            Self::Staging => "Staging",
            Self::Distributing => "Distributing",
            Self::RollingOut => "RollingOut",
            Self::Verifying => "Verifying",
            Self::Promoting => "Promoting",
            Self::Retiring => "Retiring",
            Self::Aborting => "Aborting",
            Self::Aborted => "Aborted",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Trigger {
    Schedule,
    Manual,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RotationResult {
    Succeeded,
    Aborted,
    /// Given up before any credential was created (the operator's credentials were refused).
    Failed,
}

/// The rotation in flight, resumed from here after a restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    /// Unique per rotation; also the value of the pod-template restart annotation.
    pub id: String,
    pub trigger: Trigger,
    pub start_time: Time,
    /// When the current phase began (rollout timeout and verification windows count from here).
    pub phase_start_time: Time,
    /// Name of the staging Secret holding the new token until retirement.
    pub staging_secret: String,
    /// Set once the secondary token exists and is stored in the staging Secret.
    #[serde(default)]
    pub staged: bool,
    /// When the new token was promoted to primary (for an API key: when it became current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_time: Option<Time>,
    /// API key rotation: the new key's SID, recorded once it is distributed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sid: Option<String>,
    /// API key rotation: the SID of the key being replaced (none on a first rotation that
    /// creates the first key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_sid: Option<String>,
    /// Per-workload rollout progress: the ones not done first, at most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadProgress>,
    /// Dependent workloads in all (`workloads` lists at most 50 of them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub workloads_total: u32,
    /// Of those, how many run the new token.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub workloads_done: u32,
    /// When the new credential was first seen in every target Secret: pods started later read
    /// it; pods started before hold the old one until restarted or refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed_time: Option<Time>,
    /// Pods that still hold the credential being replaced, grouped by owner (at most 20
    /// groups; the message counts the rest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<PodGroup>,
    /// Set while an aborted rotation rolls back: the step it is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_step: Option<AbortStep>,
    /// Set once the rotation is held (rollout timeout, failing or paused workload, a reverted
    /// target Secret); the Event for the hold is sent once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_reason: Option<String>,
    /// Set before the first call that may create this rotation's secondary Auth Token (or API
    /// key): a secondary found while it is unset was made by someone else and is never deleted
    /// without being told to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_called: bool,
    /// How often the new credential was written again because a target Secret had been
    /// reverted by another writer; each time the consumers roll out again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redistributions: u32,
    /// API key rotation: the staging Secret was lost and rebuilt from the target Secrets, which
    /// do not hold the previous key's secret, so the rotation can only go forward.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous_lost: bool,
    /// The spec this rotation runs with, recorded when it starts: edits made meanwhile apply
    /// to the next rotation (`suspend` and the annotations act at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub spec: Option<TokenRotationSpec>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RotationStatus {
    /// The pod-template stamp the dependent workloads roll out with: the rotation ID, and a
    /// new value for every redistribution (so they restart onto the re-written Secret).
    pub fn rollout_stamp(&self) -> String {
        match self.redistributions {
            0 => self.id.clone(),
            n => format!("{}-{}", self.id, n + 1),
        }
    }

    /// The stamp the workloads roll back onto the old credential with.
    pub fn rollback_stamp(&self) -> String {
        format!("{}-rollback", self.id)
    }
}

/// Rolling an aborted rotation back onto the old token, in order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AbortStep {
    /// Put the old token back into every target Secret and the credentials Secret.
    RestoreSecrets,
    /// Restart the workloads onto the old token and wait for the rollout.
    RollBack,
    /// Delete the unused secondary token at Twilio and the staging Secret.
    DeleteSecondary,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub kind: WorkloadKind,
    pub name: String,
    /// Replicas (or scheduled pods) wanted.
    pub desired: i32,
    /// Replicas on the current pod template.
    pub updated: i32,
    /// Updated replicas that are available.
    pub available: i32,
    /// The workload fully runs the new token.
    pub done: bool,
    /// Why it is not done, when known (Paused, ProgressDeadlineExceeded, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Pods of one owner that a rotation waits on or holds for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodGroup {
    pub namespace: String,
    /// The owner's kind (`Pod` for a bare Pod).
    pub kind: String,
    pub name: String,
    pub pods: u32,
    /// Why: `Restarting`, `Draining`, `JobRunning`, `Unmanaged`.
    pub reason: String,
}

/// Condition types.
pub mod conditions {
    pub const READY: &str = "Ready";
    pub const ROTATING: &str = "Rotating";
    pub const DEGRADED: &str = "Degraded";
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_has_contract_names_and_cel_rules() {
        let crd = TokenRotation::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("tokenrotations.tokenrotator.io")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["tr".to_string()]));
        let json = serde_json::to_string(&crd).unwrap();
        for needle in [
            "x-kubernetes-validations",
            "has(self.authToken) != has(self.apiKey)",
            "keySidKey",
            "retainPrevious",
            "friendlyNamePrefix",
            "x-kubernetes-preserve-unknown-fields",
            "^AC[0-9a-fA-F]{32}$",
            "credentialsSecretRef",
            "previousTokenKey",
            "accountSidKey",
            "webhookTokensKey",
            "webhookTokensKey must differ from tokenKey",
            "rolloutTimeout",
            "propagationDelay",
            "overlap",
            "suspend",
            "\"Next Rotation\"",
        ] {
            assert!(json.contains(needle), "CRD lacks {needle}");
        }
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn spec_defaults_fill_durations() {
        let spec: TokenRotationSpec = serde_json::from_value(serde_json::json!({
            "twilio": {"accountSid": "AC0123456789abcdef0123456789abcdef",
                       "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
            "authToken": {},
            "secrets": [{"name": "creds", "tokenKey": "TWILIO_AUTH_TOKEN"}]
        }))
        .unwrap();
        assert_eq!(spec.rollout_timeout, "15m");
        assert_eq!(spec.propagation_delay, "60s");
        assert_eq!(spec.overlap, "15m");
        assert!(!spec.suspend);
    }
}
