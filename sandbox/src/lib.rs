pub mod kube;
pub mod tools;
pub mod traffic;
pub mod twilio;
pub mod up;
pub mod workloads;
pub mod world;

pub use traffic::{Refusal, Traffic};
pub use world::Sandbox;
