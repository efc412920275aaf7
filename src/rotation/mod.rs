//! The rotation as a pure state machine.
//!
//! The controller observes the world (the resource, its staging Secret, the dependent workloads,
//! the other rotations on the same account), asks [`decide`] what to do, performs exactly that one
//! [`Action`], and then writes the status the decision carries. When the action fails it writes
//! [`on_failure`]'s status instead. Status is written *before* any step whose effect at Twilio
//! cannot be read back (the rotation ID before the secondary token is created, `Promoting` before
//! promotion), so a crash at any point resumes from status and the world.

pub mod conditions;
pub mod consumers;
pub(crate) mod machine;
mod plan;
pub mod reasons;

pub use machine::{
    decide, on_failure, AccountConflict, Action, Decision, EventNote, Failure, FailureClass,
    Holder, Observation, RevertedKey, RolloutView, Serve, StagedKeys, TokenCopy, WorkloadAt,
};
pub use plan::{CredentialKind, Plan, PlanError};

pub use machine::{staging_secret_name, SETTLE};

#[cfg(test)]
mod tests;
