//! token-rotator: a Kubernetes operator that rotates Twilio credentials with zero downtime.

pub mod api;
pub mod cli;
pub mod controller;
pub mod hash;
pub mod kube_errors;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod providers;
pub mod rotation;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod twilio;
pub mod workloads;
