//! The reconcile loop: triggers (poll, webhook, Marathon events) run the
//! pipeline source → render → observe → diff → plan → apply → record for
//! each environment, by its policy.
//!
//! - [`daemon`]: the loop (`pacer serve`): scheduling, the new head, one
//!   environment's reconcile, what it reports.
//! - [`writer`]: the parts `pacer serve` starts with, and the handle that
//!   pauses and resumes the loop's writes.
//! - [`render_job`]: renders a new commit off the loop, within a deadline.
//! - [`records`]: deployment records waiting to be written and pushed.
//! - [`clients`]: a Marathon client per URL.
//! - [`history`]: an app's history for the dashboard, read from the mirror.
//! - [`state`]: the small files kept across restarts (`--state-dir`).
//! - [`health`]: liveness (a stuck loop) and readiness, with the reason.
//! - [`status`]: the data behind `/api/v1/status` (see docs/status.md).

pub mod clients;
pub mod daemon;
pub mod endpoints;
pub mod history;
pub mod records;
pub mod render_job;
pub mod writer;
// The status lives below the server, which reads it; the daemon writes it.
pub use crate::status::{self, health, published};
