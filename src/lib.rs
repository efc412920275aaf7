//! token-rotator: a Kubernetes operator that rotates Twilio credentials with zero downtime.

pub mod api;
pub mod schedule;
pub mod secret;
