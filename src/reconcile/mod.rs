//! The reconcile loop: triggers (poll, webhook, Marathon events) run the
//! pipeline source → render → observe → diff → plan → apply → record for
//! each environment, by its policy.

pub mod daemon;
pub mod gather;
pub mod render_job;
// The status lives below the server, which reads it; the daemon writes it.
pub use crate::status::{self, health};
