//! The reconcile loop: triggers (poll, webhook, Marathon events) run the
//! pipeline source → render → observe → diff → plan → apply → record for
//! each environment, by its policy.

pub mod daemon;
pub mod gather;
pub mod health;
pub mod render_job;
pub mod status;
