pub mod kube;
pub mod tools;
pub mod twilio;
pub mod workloads;
pub mod world;

pub use world::{Sandbox, Traffic};
