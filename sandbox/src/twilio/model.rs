//! Public data types of the Twilio emulator: configuration, switches, faults, stats and log records.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Kind of an API key. Main keys can only be seeded (`TwilioSandbox::create_key`), as in Twilio
/// where they are created in the Console only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Main,
    Standard,
    Restricted,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Main => "main",
            KeyKind::Standard => "standard",
            KeyKind::Restricted => "restricted",
        }
    }
}

/// A live API key as the emulator stores it (the secret is never exposed here).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    pub sid: String,
    pub friendly_name: Option<String>,
    pub kind: KeyKind,
    pub policy: Option<serde_json::Value>,
    pub created: DateTime<Utc>,
}

/// Every emulated route, used for fault injection and in the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Matches every endpoint (faults only).
    Any,
    /// `POST /v1/AuthTokens/Secondary`
    SecondaryCreate,
    /// `DELETE /v1/AuthTokens/Secondary`
    SecondaryDelete,
    /// `POST /v1/AuthTokens/Promote`
    Promote,
    /// `GET /2010-04-01/Accounts/{Sid}.json`
    AccountFetch,
    /// `GET /2010-04-01/Accounts/{AccountSid}/Balance.json`: a cheap probe every credential
    /// kind may call (Standard keys cannot read `/Accounts/{Sid}.json`).
    BalanceFetch,
    /// `GET /2010-04-01/Accounts/{AccountSid}/Keys.json`
    KeysList,
    /// `POST /2010-04-01/Accounts/{AccountSid}/Keys.json`
    KeyCreate,
    /// `GET /2010-04-01/Accounts/{AccountSid}/Keys/{Sid}.json`
    KeyFetch,
    /// `POST /2010-04-01/Accounts/{AccountSid}/Keys/{Sid}.json`
    KeyUpdate,
    /// `DELETE /2010-04-01/Accounts/{AccountSid}/Keys/{Sid}.json`
    KeyDelete,
    /// `GET /v1/Keys`
    IamKeysList,
    /// `POST /v1/Keys`
    IamKeyCreate,
    /// `GET /v1/Keys/{Sid}`
    IamKeyFetch,
    /// `POST /v1/Keys/{Sid}`
    IamKeyUpdate,
    /// `DELETE /v1/Keys/{Sid}`
    IamKeyDelete,
}

impl Endpoint {
    /// All concrete endpoints (without `Any`).
    pub const ALL: [Endpoint; 15] = [
        Endpoint::SecondaryCreate,
        Endpoint::SecondaryDelete,
        Endpoint::Promote,
        Endpoint::AccountFetch,
        Endpoint::BalanceFetch,
        Endpoint::KeysList,
        Endpoint::KeyCreate,
        Endpoint::KeyFetch,
        Endpoint::KeyUpdate,
        Endpoint::KeyDelete,
        Endpoint::IamKeysList,
        Endpoint::IamKeyCreate,
        Endpoint::IamKeyFetch,
        Endpoint::IamKeyUpdate,
        Endpoint::IamKeyDelete,
    ];

    /// Twilio product (first host label) serving this endpoint.
    pub fn product(self) -> Option<&'static str> {
        match self {
            Endpoint::Any => None,
            Endpoint::SecondaryCreate | Endpoint::SecondaryDelete | Endpoint::Promote => {
                Some("accounts")
            }
            Endpoint::AccountFetch
            | Endpoint::BalanceFetch
            | Endpoint::KeysList
            | Endpoint::KeyCreate
            | Endpoint::KeyFetch
            | Endpoint::KeyUpdate
            | Endpoint::KeyDelete => Some("api"),
            Endpoint::IamKeysList
            | Endpoint::IamKeyCreate
            | Endpoint::IamKeyFetch
            | Endpoint::IamKeyUpdate
            | Endpoint::IamKeyDelete => Some("iam"),
        }
    }
}

/// A fault injected on an endpoint. Setting a fault replaces an earlier fault of the same variant
/// on the same endpoint; different variants combine (e.g. latency plus two 429s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Added latency before the request is handled (every request, until cleared).
    Latency {
        #[serde(rename = "delay_ms", with = "duration_ms")]
        delay: Duration,
    },
    /// The next `times` requests get this status without being applied; 429 carries code 20429,
    /// 5xx carry 20500 (503: 20503).
    Status { status: u16, times: u32 },
    /// The next `times` requests see their connection closed before anything is applied.
    DropBeforeApply { times: u32 },
    /// The next `times` requests are applied (state changes) but the connection is closed
    /// instead of sending the response.
    DropAfterApply { times: u32 },
}

impl Fault {
    pub fn latency(delay: Duration) -> Self {
        Fault::Latency { delay }
    }
    pub fn too_many_requests(times: u32) -> Self {
        Fault::Status { status: 429, times }
    }
    pub fn server_error(status: u16, times: u32) -> Self {
        Fault::Status { status, times }
    }
    pub fn drop_before_apply(times: u32) -> Self {
        Fault::DropBeforeApply { times }
    }
    pub fn drop_after_apply(times: u32) -> Self {
        Fault::DropAfterApply { times }
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Behaviours no Twilio source confirms; each can be switched. Defaults follow the facts file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Switches {
    /// `POST /v1/AuthTokens/Secondary` while a secondary exists: `true` → 400 / code 70002
    /// (third-party report); `false` → the old secondary is replaced (retired) by a new one.
    pub reject_second_secondary: bool,
    /// `DELETE /v1/AuthTokens/Secondary` with no secondary: `true` → 404 / 20404 (third-party
    /// report); `false` → 204 (idempotent).
    pub delete_missing_secondary_is_404: bool,
    /// Whether a Main API key may call the AuthTokens endpoints (unconfirmed; default: refused
    /// with 401 / 20003). Standard and restricted keys are always refused.
    pub main_key_manages_auth_tokens: bool,
    /// Refuse region-only hosts such as `api.ie1.twilio.com` (Twilio stopped serving them on
    /// 2026-04-28; `api.us1.twilio.com` stays valid). Refusal: 421 with code 20421 (an
    /// emulator-specific code: Twilio no longer answers on those names at all).
    pub refuse_region_only_hosts: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Switches {
            reject_second_secondary: true,
            delete_missing_secondary_is_404: true,
            main_key_manages_auth_tokens: false,
            refuse_region_only_hosts: true,
        }
    }
}

/// An account to create at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSeed {
    pub sid: String,
    pub auth_token: String,
    /// Twilio Region, e.g. `us1`, `ie1`.
    #[serde(default = "default_region")]
    pub region: String,
}

pub(crate) fn default_region() -> String {
    "us1".to_string()
}

/// Start-up configuration of the emulator.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub listen: SocketAddr,
    pub accounts: Vec<AccountSeed>,
    pub switches: Switches,
    /// New secondary / promoted tokens and new API keys are refused for this long.
    pub propagation_delay: Duration,
    /// Every request is answered this much later (a network and Twilio's own time).
    pub latency: Duration,
    /// At most this many requests in flight per authenticating user (an account SID, or an
    /// API key SID); beyond it 429 with code 20429, as Twilio's concurrency limit answers.
    pub max_concurrent_per_account: Option<usize>,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts: Vec::new(),
            switches: Switches::default(),
            propagation_delay: Duration::ZERO,
            latency: Duration::ZERO,
            max_concurrent_per_account: None,
        }
    }
}

/// Authentication counts of one credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialStats {
    /// Stable id, e.g. `AC…/auth-token#3` or `SK…`; for an unknown credential the presented
    /// username (or `(anonymous)`).
    pub id: String,
    /// Current role: `primary`, `secondary`, `retired` for auth tokens; `main`, `standard`,
    /// `restricted`, `deleted` for keys; `unknown` otherwise.
    pub role: String,
    pub authenticated: u64,
    pub refused: u64,
}

/// Counts per credential id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub credentials: BTreeMap<String, CredentialStats>,
}

impl Stats {
    pub fn get(&self, id: &str) -> CredentialStats {
        self.credentials
            .get(id)
            .cloned()
            .unwrap_or_else(|| CredentialStats {
                id: id.to_string(),
                role: "unknown".to_string(),
                ..Default::default()
            })
    }
    pub fn total_authenticated(&self) -> u64 {
        self.credentials.values().map(|c| c.authenticated).sum()
    }
    pub fn total_refused(&self) -> u64 {
        self.credentials.values().map(|c| c.refused).sum()
    }
}

/// One request as the emulator saw it. Never holds a token or secret value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub time: DateTime<Utc>,
    pub method: String,
    /// Path as received, including any host segment and the query string.
    pub path: String,
    /// Host the request was addressed to (host segment or Twilio `Host` header), if any.
    pub host: Option<String>,
    pub region: String,
    pub product: Option<String>,
    pub endpoint: Option<Endpoint>,
    /// Basic-auth username as presented (an AC or SK sid, or anything else).
    pub auth_user: Option<String>,
    /// Stable id of the credential presented, if the emulator knows it.
    pub credential_id: Option<String>,
    /// Role of that credential when the request arrived.
    pub credential_role: Option<String>,
    /// Whether the credential was accepted; `None` when authentication was not reached.
    pub authenticated: Option<bool>,
    /// HTTP status sent; `None` when the connection was dropped instead.
    pub status: Option<u16>,
    /// Twilio error code of an error response.
    pub twilio_code: Option<u32>,
    pub user_agent: Option<String>,
    /// Injected fault that shaped this request (`latency`, `status`, `drop_before_apply`,
    /// `drop_after_apply`).
    pub fault: Option<String>,
    /// For AuthTokens changes: whether Twilio would have e-mailed the account's owners
    /// (`false` when `SuppressEmailNotification=true`).
    pub email_notification: Option<bool>,
    /// Free-text reason for refusals and errors (never contains secrets).
    pub note: Option<String>,
}
