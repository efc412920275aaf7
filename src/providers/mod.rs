//! Credential providers: the Twilio side of each rotation step.

pub mod api_key;
pub mod auth_token;
