pub mod kube;
pub mod tools;
pub mod twilio;
pub mod workloads;
