use crate::diff::format::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// GitOps for Marathon: per-environment app config in Git, rendered, diffed
/// and reconciled into Marathon.
#[derive(Debug, Parser)]
#[command(name = "pacer", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success (no changes), 1 error, 2 changes found (diff, plan).\n\
Repo format: docs/repo-format.md."
)]
pub struct Cli {
    /// Log filter, in tracing's EnvFilter syntax (`info`, `pacer=debug`).
    #[arg(long, global = true, env = "PACER_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The config repo: a directory with pacer.yaml, inside a Git repository
    /// for `--rev` and `diff`.
    #[arg(
        long,
        env = "PACER_REPO",
        default_value = ".",
        value_name = "DIR",
        help_heading = "Source"
    )]
    pub repo: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config repo and report every problem at file:line:column.
    ///
    /// Checks the schemas, Marathon's own rules (ids, reserved names, cmd/args
    /// or container, value ranges, secret references), templates, duplicate
    /// ids and unknown keys. Reports all problems in one run and exits 1 if
    /// there is any.
    Validate(ValidateArgs),
    /// Print an environment's desired state as JSON: app definitions and files.
    ///
    /// Each app definition is the exact body pacer would PUT to
    /// /v2/apps/{id}. Secret values are replaced with <secret:name> unless
    /// --show-secrets is given.
    Render(RenderArgs),
    /// Show what merging a change would do, without Marathon (the CI dry-run).
    ///
    /// Renders both revisions straight from Git (the working tree may serve
    /// as the head), re-rendering only apps whose inputs differ, and compares
    /// them per environment and app. Each changed app is classed as hot
    /// (only hot-reload files), scale (only instances), restart (files that
    /// need a restart) or redeploy (the app definition). Exit codes: 0 no
    /// changes, 2 changes, 1 error.
    Diff(DiffArgs),
    /// Run an in-memory Marathon 1.10 simulator.
    Sim(crate::sim::SimArgs),
    /// Run the bundled example repo end to end on embedded defaults.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The example repo to use. Default: `examples/` of the pacer sources.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Check only this environment (repeatable). Default: all.
    #[arg(
        long = "env",
        env = "PACER_ENV",
        value_name = "ENV",
        value_delimiter = ','
    )]
    pub envs: Vec<String>,
    /// Check a Git revision instead of the working tree.
    #[arg(long, value_name = "REV", help_heading = "Source")]
    pub rev: Option<String>,
    /// Print problems as JSON (an array of {file, line, column, message, hint}).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The environment to render.
    #[arg(long, env = "PACER_ENV", value_name = "ENV")]
    pub env: String,
    /// Render only this app (its path under apps/, e.g. `payments/ledger`).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// Render a Git revision instead of the working tree.
    #[arg(long, value_name = "REV", help_heading = "Source")]
    pub rev: Option<String>,
    /// Print secret values instead of <secret:name>.
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The revision the change starts from, e.g. `origin/main` or a merge base.
    #[arg(
        long,
        env = "PACER_DIFF_BASE",
        value_name = "REV",
        help_heading = "Source"
    )]
    pub base: String,
    /// The revision with the change. Default: the working tree.
    #[arg(
        long,
        env = "PACER_DIFF_HEAD",
        value_name = "REV",
        help_heading = "Source"
    )]
    pub head: Option<String>,
    /// Compare only this environment (repeatable). Default: all.
    #[arg(
        long = "env",
        env = "PACER_ENV",
        value_name = "ENV",
        value_delimiter = ','
    )]
    pub envs: Vec<String>,
    /// Output format.
    #[arg(
        long,
        env = "PACER_FORMAT",
        value_enum,
        default_value = "text",
        help_heading = "Output"
    )]
    pub format: Format,
    /// Colour the text diff: auto (when stdout is a terminal), always, never.
    #[arg(
        long,
        value_name = "WHEN",
        default_value = "auto",
        help_heading = "Output"
    )]
    pub color: Color,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}
