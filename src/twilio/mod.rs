//! Twilio REST client for credential rotation: Auth Tokens (`accounts` v1), accounts and API
//! keys (2010 API) and IAM v1 keys.
//!
//! * Hosts are built like Twilio's helper libraries do (see [`twilio_host`]); one operator-wide
//!   [`TwilioConfig::base_url`] sends every product to one host as `{base}{path}`.
//! * Every call has a connect and a total timeout and is traced (`twilio_call` span with
//!   endpoint, method, URL, attempts, status, outcome; per-attempt events with duration).
//!   Nothing secret is ever logged, put in an error, or printed by `Debug`.
//! * Retries ([`RetryPolicy`]): a 429 is always retried (Twilio never processed it); 5xx,
//!   timeouts and lost connections are retried only for GET and DELETE; a connect failure is
//!   retried for every method, since nothing was sent.
//!
//! # What the caller (the rotation controller) must do
//!
//! * [`ErrorKind::OutcomeUnknown`] (create secondary, promote, create key): the POST may have
//!   been applied. Never repeat it blindly; re-read Twilio's state and converge:
//!   - create secondary: the token cannot be read again, so delete the secondary
//!     ([`TwilioClient::delete_secondary_auth_token`]) and create a fresh one;
//!   - promote: probe which token is primary now (e.g. [`TwilioClient::fetch_account`] with the
//!     old primary: 401 means the promotion happened);
//!   - create key: list keys and delete those with the friendly name used but no recorded SID.
//! * [`ErrorKind::SecondaryAlreadyExists`]: a secondary from an earlier, unrecorded attempt
//!   exists; delete it and create a fresh one.
//! * [`DeleteOutcome::GoneAfterRetry`]: a delete retried after an ambiguous failure found the
//!   resource gone (most likely deleted by the earlier attempt); treat it as deleted.
//! * [`ErrorKind::RateLimited`] and [`ErrorKind::Transient`]: the same call may be repeated
//!   later; the controller reports them and requeues with backoff.

mod api_keys;
mod auth_tokens;
mod client;
mod config;
mod endpoint;
mod error;
mod limiter;
mod observer;
mod types;

pub use api_keys::MAX_FRIENDLY_NAME_CHARS;
pub use client::TwilioClient;
pub use config::{twilio_host, Product, RetryPolicy, TwilioConfig};
pub use endpoint::{Endpoint, HttpMethod};
pub use error::{ErrorKind, TransportFailure, TwilioError};
pub use limiter::AccountLimiter;
pub use observer::{CallCounter, CallObserver, CallOutcome, CallRecord};
pub use types::{
    Account, AccountStatus, ApiKey, Credentials, DeleteOutcome, NewApiKey, PromotedAuthToken,
    SecondaryAuthToken,
};
