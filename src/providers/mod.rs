//! Credential providers: everything that differs between the kinds of credential a rotation
//! can rotate. [`CredentialKind`] names the kind, says how it behaves (promoted or not, who
//! may own it, whether the operator's own credential changes with it) and how it is worded;
//! [`auth_token`] and [`api_key`] are the Twilio side of each step. Every caller matches the
//! kind exhaustively, so a new kind is added here, in the API type and the CRD rules, and the
//! compiler finds the rest.

pub mod api_key;
pub mod auth_token;

use crate::api::TokenRotationSpec;
use crate::rotation::reasons;
use crate::rotation::{Failure, FailureClass};
use crate::twilio::{ErrorKind, TwilioError};

/// What is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The account's Auth Token: a secondary token is promoted to primary.
    AuthToken,
    /// An API key: a new key is created and the previous one deleted.
    ApiKey,
}

/// How Events and conditions word one kind's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    /// Event reason, and what was made, when the new credential is created.
    pub created_reason: &'static str,
    pub created_what: &'static str,
    /// Status message and Event note once the new credential authenticates.
    pub verified_message: &'static str,
    pub verified_note: &'static str,
    /// Status message, Event reason and note once the new credential is current.
    pub current_message: &'static str,
    pub current_reason: &'static str,
    pub current_note: &'static str,
    /// Why an abort after that point is refused.
    pub abort_refused: &'static str,
}

const AUTH_TOKEN_WORDS: Words = Words {
    created_reason: reasons::SECONDARY_TOKEN_CREATED,
    created_what: "the secondary Auth Token",
    verified_message: "the new token works; promoting it to primary",
    verified_note: "Twilio accepts the new token",
    current_message: "promoted; waiting out propagation and overlap before retiring the previous token",
    current_reason: reasons::TOKEN_PROMOTED,
    current_note: "the new token is now the primary Auth Token; the old token no longer works",
    abort_refused: "the new token is being or has been promoted and the old token no longer works: there is nothing to roll back to, the rotation completes",
};

const API_KEY_WORDS: Words = Words {
    created_reason: reasons::API_KEY_CREATED,
    created_what: "a new API key",
    verified_message: "the new API key works; making it current",
    verified_note: "Twilio accepts the new API key",
    current_message: "the new API key is current; waiting out propagation and overlap before deleting the previous key",
    current_reason: reasons::API_KEY_CURRENT,
    current_note: "every consumer runs the new API key; the previous key stays valid until it is retired",
    abort_refused: "every consumer already runs the new API key and it is verified: the rotation completes",
};

impl CredentialKind {
    /// The kind a spec rotates; `None` when it names none or several (the CRD rejects that).
    pub fn of(spec: &TokenRotationSpec) -> Option<Self> {
        match (&spec.auth_token, &spec.api_key) {
            (Some(_), None) => Some(Self::AuthToken),
            (None, Some(_)) => Some(Self::ApiKey),
            (None, None) | (Some(_), Some(_)) => None,
        }
    }

    pub fn words(self) -> &'static Words {
        match self {
            Self::AuthToken => &AUTH_TOKEN_WORDS,
            Self::ApiKey => &API_KEY_WORDS,
        }
    }

    /// Making the new credential current kills the old one for every consumer of the
    /// account at once, so one resource per account may rotate it.
    pub fn one_owner_per_account(self) -> bool {
        match self {
            Self::AuthToken => true,
            Self::ApiKey => false,
        }
    }

    /// The operator authenticates with the credential it rotates, so its credentials Secret
    /// receives the new one with the targets (and is checked like them).
    pub fn rotates_operator_credential(self) -> bool {
        match self {
            Self::AuthToken => true,
            Self::ApiKey => false,
        }
    }
}

/// Maps a client error to the failure the state machine reports, without any secret;
/// `refused` is the class of an authentication failure.
pub fn failure(err: &TwilioError, refused: FailureClass) -> Failure {
    let class = match err.kind() {
        ErrorKind::AuthenticationFailed => refused,
        ErrorKind::RateLimited => FailureClass::TwilioRateLimited,
        ErrorKind::Transient => FailureClass::TwilioUnavailable,
        ErrorKind::OutcomeUnknown => FailureClass::OutcomeUnknown,
        ErrorKind::NotFound | ErrorKind::SecondaryAlreadyExists | ErrorKind::Permanent => {
            FailureClass::TwilioRejected
        }
    };
    Failure {
        class,
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: serde_json::Value) -> TokenRotationSpec {
        let mut v = serde_json::json!({
            "twilio": {"accountSid": "AC0123456789abcdef0123456789abcdef",
                       "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
            "secrets": [{"name": "creds", "tokenKey": "T"}]
        });
        for (k, x) in kind.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_kind_comes_from_exactly_one_field() {
        assert_eq!(
            CredentialKind::of(&spec(serde_json::json!({"authToken": {}}))),
            Some(CredentialKind::AuthToken)
        );
        assert_eq!(
            CredentialKind::of(&spec(serde_json::json!({"apiKey": {}}))),
            Some(CredentialKind::ApiKey)
        );
        assert_eq!(CredentialKind::of(&spec(serde_json::json!({}))), None);
        assert_eq!(
            CredentialKind::of(&spec(serde_json::json!({"authToken": {}, "apiKey": {}}))),
            None
        );
    }
}
