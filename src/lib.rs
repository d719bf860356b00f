//! pacer: GitOps for Marathon.
//!
//! # Layout
//!
//! Data flows one way through the pipeline stages, each a module with plain
//! input and output types:
//!
//! ```text
//! source (git) ─▶ render ─▶ observe (Marathon) ─▶ diff ─▶ plan ─▶ apply ─▶ record
//! ```
//!
//! - [`model`]: plain data shared by every stage (environments, app ids, digests).
//! - [`source`]: the only user of git2. Reads a revision (or the working tree)
//!   into a [`source::Snapshot`] of repo files.
//! - [`render`]: merges environment values, the app base and its overlay,
//!   expands templates and checks the result. `Snapshot` → `Desired`, or every
//!   problem found as a [`render::Diagnostic`].
//! - [`diff`]: pure comparison of two desired states (offline `pacer diff`);
//!   classifies each change as hot, scale, restart or redeploy.
//! - [`marathon`]: Marathon's wire rules: app validation and the defaults
//!   Marathon fills in, and [`marathon::client`], a typed Marathon client.
//!   Shared by render, the simulator and observe.
//! - [`observe`]: live Marathon state, normalised so a matching app never
//!   shows a diff.
//!
//! Beside the pipeline:
//! - [`server`]: the daemon's HTTP edge: health, metrics, status, Git webhooks.
//! - [`sim`]: an in-memory Marathon 1.10 simulator (`pacer sim`).
//! - [`cli`]: clap types and one function per subcommand.

pub mod apply;
pub mod cli;
pub mod diff;
pub mod marathon;
pub mod model;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod record;
pub mod render;
pub mod server;
pub mod sim;
pub mod source;
