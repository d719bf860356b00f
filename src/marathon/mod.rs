//! Marathon's wire rules: app validation and the defaults Marathon fills in.
//!
//! Everything here is a pure function on `serde_json::Value` so that the
//! renderer (before deploying), the reconciler (when diffing live apps) and
//! the simulator (when answering requests) apply exactly the same rules.
//! The rules follow Marathon 1.10; 1.4 differences are noted where relevant.

pub mod client;
pub mod defaults;
pub mod ids;
pub mod raw;
pub mod url;
pub mod validate;
pub mod watch;

pub use defaults::normalize_app;
pub use validate::{Violation, validate_app, validate_path_id};
