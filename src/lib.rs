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
//!   into a [`source::Snapshot`]; `source::remote` keeps the daemon's mirror.
//! - [`render`]: merges environment values, the app base and its overlay,
//!   expands templates and checks the result. `Snapshot` → `Desired`, or every
//!   problem found as a [`render::Diagnostic`]. `render::incremental` decides
//!   which apps a new commit re-renders.
//! - [`observe`]: live Marathon apps, normalised so that an app matching Git
//!   never shows a diff; what a plan needs besides the desired state (the
//!   live read, Git baselines, failed definitions from the version history).
//! - [`diff`]: pure comparison of two desired states (offline `pacer diff`);
//!   classifies each change as hot, scale, restart or redeploy.
//! - [`plan`]: pure per-app decisions from desired, live and policy.
//! - [`apply`]: the only writer to Marathon; follows deployments (a pure
//!   rollout state machine) and rolls back failures.
//! - [`record`]: history rebuilt from Marathon's app versions and the Git log.
//! - [`marathon`]: Marathon's rules (validation, defaults) and its client.
//! - [`redact`]: masks credentials in URLs and in messages that quote them.
//! - [`sops`]: secrets sealed in Git in sops' format (age recipients):
//!   opening, sealing in place, `.sops.yaml` creation rules. `render` opens
//!   the files it reads with the identities it is given.
//!
//! Beside the pipeline:
//! - [`reconcile`]: the daemon's loop (`pacer serve`): triggers, debounce,
//!   the apps in flight, the records queue and the Marathon client pool.
//! - [`status`]: what the daemon knows, published by the loop as read-only
//!   snapshots (`status::published`) that [`server`] serves (the status and
//!   `/metrics`' gauges alike), the pure rules that project a reconcile into
//!   it (`status::project`), and its liveness.
//! - [`listen`]: HTTP listeners with their budgets: header, idle and
//!   stalled-write timeouts and a connection cap (the daemon's and the
//!   simulator's).
//! - [`server`]: the daemon's HTTP side: health, metrics, status, webhooks.
//! - [`delivery`]: the config server inside it: task logins, tokens, and each
//!   task's own bundle of config files (watchable).
//! - [`sim`]: an in-memory Marathon 1.10 simulator (`pacer sim`).
//! - [`agent`]: `pacer agent`, inside a task: writes its files from the
//!   config server and signals its app.
//! - [`cli`]: clap types and one function per subcommand.
//!
//! No stage imports `reconcile`, `server`, `cli` or `sim`, and no two
//! top-level modules import each other, directly or not: the test
//! `layering` checks every `crate::` path against its table.
//!
//! `docs/architecture.md` has each stage's input and output types, the
//! published state and who reads it, and where the next capabilities plug in.

pub mod agent;
pub mod apply;
pub mod cli;
pub mod delivery;
pub mod diff;
pub mod ha;
pub mod listen;
pub mod marathon;
pub mod model;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod record;
pub mod redact;
pub mod render;
pub mod server;
pub mod sim;
pub mod sops;
pub mod source;
pub mod state_file;
pub mod status;
