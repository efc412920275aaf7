//! token-rotator: a Kubernetes operator that rotates Twilio credentials with zero downtime.

pub mod api;
pub mod controller;
pub mod providers;
pub mod rotation;
pub mod schedule;
pub mod secret;
pub mod telemetry;
pub mod time;
pub mod twilio;
pub mod workloads;
