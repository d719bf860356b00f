use clap::{Parser, Subcommand};

/// GitOps for Marathon: per-environment app config in Git, rendered, diffed
/// and reconciled into Marathon.
#[derive(Debug, Parser)]
#[command(name = "pacer", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success (no changes), 1 error, 2 changes found (diff, plan)."
)]
pub struct Cli {
    /// Log filter, in tracing's EnvFilter syntax (`info`, `pacer=debug`).
    #[arg(long, global = true, env = "PACER_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an in-memory Marathon 1.10 simulator.
    Sim(crate::sim::SimArgs),
}
