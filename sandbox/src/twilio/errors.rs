//! Twilio-shaped error responses: `{code, message, more_info, status}`.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: u32,
    pub message: String,
    /// Why, for the request log only (never sent).
    pub note: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            note: None,
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// 401 / 20003, Twilio's answer to every credential problem.
    pub fn authenticate(note: impl Into<String>) -> Self {
        ApiError::new(401, 20003, "Authenticate").with_note(note)
    }

    /// 404 / 20404 with Twilio's message naming the resource path (without the version segment).
    pub fn not_found(resource: &str) -> Self {
        ApiError::new(
            404,
            20404,
            format!("The requested resource {resource} was not found"),
        )
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(405, 20004, "Method not allowed")
    }

    /// 400 / 20001 for a missing or malformed parameter.
    pub fn invalid_param(message: impl Into<String>) -> Self {
        ApiError::new(400, 20001, message)
    }

    /// Error for an injected status fault.
    pub fn injected(status: u16) -> Self {
        let (code, message) = match status {
            429 => (20429, "Too Many Requests"),
            401 => (20003, "Authenticate"),
            404 => (20404, "The requested resource was not found"),
            503 => (20503, "Service Unavailable"),
            500..=599 => (20500, "Internal Server Error"),
            _ => (20000 + u32::from(status), "Injected fault"),
        };
        ApiError::new(status, code, message).with_note("injected fault")
    }

    pub fn body(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_not_found_body_is_exact() {
        let body = ApiError::not_found("/AuthTokens/Promote").body();
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"code":20404,"message":"The requested resource /AuthTokens/Promote was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#
        );
    }

    #[test]
    fn injected_codes() {
        assert_eq!(ApiError::injected(429).code, 20429);
        assert_eq!(ApiError::injected(500).code, 20500);
        assert_eq!(ApiError::injected(502).code, 20500);
        assert_eq!(ApiError::injected(503).code, 20503);
    }
}
