//! Credential providers: the Twilio side of each rotation step.

pub mod auth_token;
