//! Typed Twilio client errors and their classification.
//!
//! No variant carries a request body, a response body or a credential: only the endpoint, the
//! URL (SIDs are not secrets), the HTTP status and Twilio's `code`/`message`/`more_info`.

use serde::Deserialize;

use super::endpoint::Endpoint;

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// 401 / code 20003: the credentials are wrong, revoked or not allowed here.
    AuthenticationFailed,
    /// 404 / code 20404: no such resource (e.g. no secondary Auth Token to promote or delete).
    NotFound,
    /// 400 / code 70002: a secondary Auth Token already exists.
    SecondaryAlreadyExists,
    /// 429 / code 20429: never processed by Twilio; retried by the client, safe to retry later.
    RateLimited,
    /// 5xx, connect errors, timeouts of idempotent calls: safe to retry later.
    Transient,
    /// A create/promote POST may or may not have been applied (timeout, dropped connection,
    /// 5xx, or an undecodable success). Do not blindly repeat it: re-read Twilio's state first.
    OutcomeUnknown,
    /// Anything else (validation errors, 403, bad configuration): retrying will not help.
    Permanent,
}

impl ErrorKind {
    /// Classifies an HTTP error response by status and Twilio error code.
    pub fn classify(status: u16, code: Option<u32>) -> ErrorKind {
        if status == 429 || code == Some(20429) {
            ErrorKind::RateLimited
        } else if status == 401 || code == Some(20003) {
            ErrorKind::AuthenticationFailed
        } else if status == 400 && code == Some(70002) {
            ErrorKind::SecondaryAlreadyExists
        } else if status == 404 || code == Some(20404) {
            ErrorKind::NotFound
        } else if status >= 500 {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        }
    }

    /// Snake_case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::AuthenticationFailed => "authentication_failed",
            ErrorKind::NotFound => "not_found",
            ErrorKind::SecondaryAlreadyExists => "secondary_already_exists",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Transient => "transient",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
            ErrorKind::Permanent => "permanent",
        }
    }
}

/// How an HTTP exchange failed below the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportFailure {
    /// The connection could not be established (including a connect timeout): the request
    /// never reached Twilio, so even a POST may be repeated.
    Connect,
    /// The attempt exceeded the request timeout after the request may have been sent.
    Timeout,
    /// The connection broke while sending the request or reading the response.
    ConnectionLost,
}

impl std::fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportFailure::Connect => "could not connect",
            TransportFailure::Timeout => "timed out",
            TransportFailure::ConnectionLost => "connection lost",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error status.
    #[error(
        "Twilio {endpoint} ({url}) returned HTTP {status}{}: {message}{}",
        code.map(|c| format!(", code {c}")).unwrap_or_default(),
        more_info.as_deref().map(|m| format!(" (see {m})")).unwrap_or_default()
    )]
    Api {
        endpoint: Endpoint,
        url: String,
        status: u16,
        code: Option<u32>,
        message: String,
        more_info: Option<String>,
    },

    /// No HTTP response was received.
    #[error("Twilio {endpoint} ({url}) {failure}")]
    Transport {
        endpoint: Endpoint,
        url: String,
        failure: TransportFailure,
        #[source]
        source: reqwest::Error,
    },

    /// A non-idempotent POST may have been applied but its result is unknown; see
    /// [`ErrorKind::OutcomeUnknown`] and the module docs for what the caller must do.
    #[error("Twilio {endpoint} outcome unknown, re-read state before acting again: {cause}")]
    OutcomeUnknown {
        endpoint: Endpoint,
        #[source]
        cause: Box<TwilioError>,
    },

    /// A response could not be decoded (never includes the body).
    #[error(
        "Twilio {endpoint} ({url}) returned HTTP {status} that could not be decoded: {detail}"
    )]
    Decode {
        endpoint: Endpoint,
        url: String,
        status: u16,
        detail: String,
    },

    /// The client configuration is unusable.
    #[error("invalid Twilio client configuration: {0}")]
    Config(String),

    /// An argument was rejected before any request was sent.
    #[error("invalid argument for Twilio {endpoint}: {reason}")]
    InvalidArgument { endpoint: Endpoint, reason: String },
}

impl TwilioError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TwilioError::Api { status, code, .. } => ErrorKind::classify(*status, *code),
            TwilioError::Transport { .. } => ErrorKind::Transient,
            TwilioError::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            TwilioError::Decode { .. }
            | TwilioError::Config(_)
            | TwilioError::InvalidArgument { .. } => ErrorKind::Permanent,
        }
    }

    /// The endpoint the error came from, if any.
    pub fn endpoint(&self) -> Option<Endpoint> {
        match self {
            TwilioError::Api { endpoint, .. }
            | TwilioError::Transport { endpoint, .. }
            | TwilioError::OutcomeUnknown { endpoint, .. }
            | TwilioError::Decode { endpoint, .. }
            | TwilioError::InvalidArgument { endpoint, .. } => Some(*endpoint),
            TwilioError::Config(_) => None,
        }
    }

    /// HTTP status of the response behind the error (also through `OutcomeUnknown`).
    pub fn status(&self) -> Option<u16> {
        match self {
            TwilioError::Api { status, .. } | TwilioError::Decode { status, .. } => Some(*status),
            TwilioError::OutcomeUnknown { cause, .. } => cause.status(),
            _ => None,
        }
    }

    /// Twilio's error code (also through `OutcomeUnknown`).
    pub fn code(&self) -> Option<u32> {
        match self {
            TwilioError::Api { code, .. } => *code,
            TwilioError::OutcomeUnknown { cause, .. } => cause.code(),
            _ => None,
        }
    }

    /// The transport failure behind the error (also through `OutcomeUnknown`).
    pub fn transport_failure(&self) -> Option<TransportFailure> {
        match self {
            TwilioError::Transport { failure, .. } => Some(*failure),
            TwilioError::OutcomeUnknown { cause, .. } => cause.transport_failure(),
            _ => None,
        }
    }

    /// Builds an [`TwilioError::Api`] from an error response body, which Twilio sends as
    /// `{"code", "message", "more_info", "status"}`. Other bodies (a proxy's HTML, a mock's
    /// problem+json) yield their `detail`/`title` or the status reason, never the raw body.
    pub(crate) fn from_response(endpoint: Endpoint, url: &str, status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            code: Option<serde_json::Value>,
            message: Option<String>,
            more_info: Option<String>,
            detail: Option<String>,
            title: Option<String>,
        }
        let parsed: Option<Body> = serde_json::from_slice(body).ok();
        let (code, message, more_info) = match parsed {
            Some(b) => {
                let code = b.code.as_ref().and_then(|c| match c {
                    serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                    serde_json::Value::String(s) => s.parse().ok(),
                    _ => None,
                });
                let message = b.message.or(b.detail).or(b.title);
                (code, message, b.more_info)
            }
            None => (None, None, None),
        };
        let message = message.unwrap_or_else(|| {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_owned()
        });
        TwilioError::Api {
            endpoint,
            url: url.to_owned(),
            status,
            code,
            message: truncate(message, 500),
            more_info: more_info.map(|m| truncate(m, 200)),
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str) -> TwilioError {
        TwilioError::from_response(
            Endpoint::PromoteSecondaryAuthToken,
            "https://accounts.twilio.com/v1/AuthTokens/Promote",
            status,
            body.as_bytes(),
        )
    }

    #[test]
    fn promote_without_secondary_is_not_found_and_keeps_twilio_fields() {
        let err = api(
            404,
            r#"{"code":20404,"message":"The requested resource /AuthTokens/Promote was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#,
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
        match &err {
            TwilioError::Api {
                status,
                code,
                message,
                more_info,
                ..
            } => {
                assert_eq!(*status, 404);
                assert_eq!(*code, Some(20404));
                assert_eq!(
                    message,
                    "The requested resource /AuthTokens/Promote was not found"
                );
                assert_eq!(
                    more_info.as_deref(),
                    Some("https://www.twilio.com/docs/errors/20404")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let shown = err.to_string();
        assert!(shown.contains("HTTP 404"), "{shown}");
        assert!(shown.contains("code 20404"), "{shown}");
        assert!(shown.contains("promote_secondary_auth_token"), "{shown}");
    }

    #[test]
    fn authentication_failure() {
        let err = api(
            401,
            r#"{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#,
        );
        assert_eq!(err.kind(), ErrorKind::AuthenticationFailed);
        assert_eq!(err.code(), Some(20003));
    }

    #[test]
    fn secondary_already_exists() {
        let err = api(
            400,
            r#"{"code":70002,"message":"Secondary Auth Token already exists","more_info":"https://www.twilio.com/docs/errors/70002","status":400}"#,
        );
        assert_eq!(err.kind(), ErrorKind::SecondaryAlreadyExists);
    }

    #[test]
    fn rate_limited_by_status_or_code() {
        let err = api(
            429,
            r#"{"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}"#,
        );
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        // The code alone is enough, whatever the status.
        assert_eq!(
            ErrorKind::classify(400, Some(20429)),
            ErrorKind::RateLimited
        );
    }

    #[test]
    fn server_errors_are_transient_even_without_a_json_body() {
        let err = api(503, "<html>Service Unavailable</html>");
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert!(err.to_string().contains("Service Unavailable"));
        assert!(!err.to_string().contains("<html>"));
        assert_eq!(api(500, "").kind(), ErrorKind::Transient);
    }

    #[test]
    fn other_client_errors_are_permanent() {
        let err = api(
            400,
            r#"{"code":21212,"message":"Invalid FriendlyName","more_info":"https://www.twilio.com/docs/errors/21212","status":400}"#,
        );
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert_eq!(api(403, "{}").kind(), ErrorKind::Permanent);
        // 70002 only means "already exists" with a 400.
        assert_eq!(ErrorKind::classify(409, Some(70002)), ErrorKind::Permanent);
        // 20404 with an unusual status still means not found.
        assert_eq!(ErrorKind::classify(400, Some(20404)), ErrorKind::NotFound);
    }

    #[test]
    fn outcome_unknown_wraps_and_exposes_the_cause() {
        let err = TwilioError::OutcomeUnknown {
            endpoint: Endpoint::CreateSecondaryAuthToken,
            cause: Box::new(api(502, r#"{"code":20500,"message":"Bad gateway"}"#)),
        };
        assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
        assert_eq!(err.status(), Some(502));
        assert_eq!(err.code(), Some(20500));
        assert!(err.to_string().contains("re-read state"));
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = format!(r#"{{"code":1,"message":"{}"}}"#, "é".repeat(400));
        let TwilioError::Api { message, .. } = api(400, &long) else {
            panic!("not an Api error");
        };
        assert!(message.len() <= 504);
        assert!(message.ends_with('…'));
    }
}
