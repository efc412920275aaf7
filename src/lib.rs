//! token-rotator: a Kubernetes operator that rotates Twilio credentials with zero downtime.

pub mod api;
pub mod rotation;
pub mod schedule;
pub mod secret;
pub mod time;
pub mod workloads;
