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
    /// Compare an environment's desired state with what Marathon runs (read-only).
    ///
    /// Each app comes out in sync, create, update (hot / scale / restart /
    /// redeploy, with its diff), delete (only when the environment prunes;
    /// otherwise unmanaged), drifted (changed outside Git), deploying, or
    /// failed (its last deployment was rolled back). Exit codes: 0 in sync,
    /// 2 changes, 1 error.
    Plan(PlanArgs),
    /// Execute the plan: deploy, follow each deployment, roll back failures.
    ///
    /// Asks before acting unless given --yes (never asks without a
    /// terminal). Refuses a commit that is not a descendant of the one
    /// running (a force-push) unless --allow-rewind.
    Apply(ApplyArgs),
    /// Try again an app whose deployment failed at its current definition.
    Retry(ApplyArgs),
    /// Show every change that reached an app, newest first.
    ///
    /// Rebuilt from Marathon's app versions and the Git log: commit, author,
    /// message, when it was applied, and the outcome (succeeded, rolled back,
    /// scaled, hot).
    History(HistoryArgs),
    /// Run the reconciler daemon: watch the repo, keep Marathon equal to Git.
    ///
    /// Clones the repo, then fetches on an interval and on a push webhook
    /// (POST /hooks/git), and reconciles each environment by its policy:
    /// auto-apply or plan only, prune or not, self-heal drift or only report
    /// it. Serves /healthz, /readyz, /metrics and /api/v1/status.
    Serve(ServeArgs),
    /// Run an in-memory Marathon 1.10 simulator.
    Sim(crate::sim::SimArgs),
    /// Run the bundled example repo end to end on embedded defaults.
    ///
    /// Starts the built-in simulator and the daemon on a Git copy of
    /// examples/, applies everything, prints where to look, and keeps
    /// running for you to commit to the copy.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The example repo to use. Default: `examples/` of the pacer sources.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Where the daemon listens.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Exit once everything is in sync instead of running on (for scripts).
    #[arg(long)]
    pub exit_when_synced: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config repo's Git URL: file://, git://, https:// (with
    /// --git-token) or ssh:// / user@host:path (with --git-ssh-key).
    #[arg(
        long,
        env = "PACER_REPO_URL",
        value_name = "URL",
        help_heading = "Source"
    )]
    pub repo_url: String,
    /// The branch to follow.
    #[arg(
        long,
        env = "PACER_BRANCH",
        default_value = "main",
        value_name = "BRANCH",
        help_heading = "Source"
    )]
    pub branch: String,
    /// The config repo's directory inside the Git repository.
    #[arg(
        long,
        env = "PACER_REPO_PATH",
        default_value = "",
        value_name = "DIR",
        help_heading = "Source"
    )]
    pub repo_path: String,
    /// Token for https URLs.
    #[arg(
        long,
        env = "PACER_GIT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        help_heading = "Source"
    )]
    pub git_token: Option<String>,
    /// Private key for ssh URLs.
    #[arg(
        long,
        env = "PACER_GIT_SSH_KEY",
        value_name = "FILE",
        help_heading = "Source"
    )]
    pub git_ssh_key: Option<PathBuf>,
    /// The ssh host keys to trust, in OpenSSH known_hosts format (e.g. from
    /// `ssh-keyscan`). Default: ~/.ssh/known_hosts.
    #[arg(
        long,
        env = "PACER_GIT_KNOWN_HOSTS",
        value_name = "FILE",
        help_heading = "Source"
    )]
    pub git_known_hosts: Option<PathBuf>,
    /// PEM certificates of a private CA to trust for https URLs, in
    /// addition to the system's.
    #[arg(
        long,
        env = "PACER_GIT_CA_FILE",
        value_name = "FILE",
        help_heading = "Source"
    )]
    pub git_ca_file: Option<PathBuf>,
    /// Seconds a Git server may take to connect, or stay silent during a
    /// fetch or push, before the attempt fails (and the last good commit
    /// stays).
    #[arg(
        long,
        env = "PACER_GIT_TIMEOUT",
        default_value_t = 60,
        value_name = "SECONDS",
        help_heading = "Source"
    )]
    pub git_timeout: u32,
    /// Seconds between fetches (webhooks trigger one at once).
    #[arg(
        long,
        env = "PACER_POLL",
        default_value_t = 30,
        value_name = "SECONDS",
        help_heading = "Source"
    )]
    pub poll: u64,
    /// Where the local mirror of the repo is kept.
    #[arg(
        long,
        env = "PACER_WORKDIR",
        value_name = "DIR",
        help_heading = "Source"
    )]
    pub workdir: Option<PathBuf>,
    /// Deploy a commit that does not descend from the last one applied.
    #[arg(long)]
    pub allow_rewind: bool,
    /// Where deployment records (deployment id, outcome, rollback) go:
    /// notes on the deployed commits, `refs/notes/pacer`. `push` needs
    /// write access to that ref; `local` keeps them in the mirror.
    #[arg(
        long,
        env = "PACER_RECORDS",
        value_enum,
        default_value_t = crate::record::notes::Publish::Push,
        value_name = "WHERE",
        help_heading = "Source"
    )]
    pub records: crate::record::notes::Publish,
    #[command(flatten)]
    pub marathon: MarathonArgs,
    /// Only these environments (repeatable). Default: all.
    #[arg(
        long = "env",
        env = "PACER_ENV",
        value_name = "ENV",
        value_delimiter = ','
    )]
    pub envs: Vec<String>,
    /// Address for the HTTP endpoints.
    #[arg(
        long,
        env = "PACER_LISTEN",
        default_value = "127.0.0.1:8081",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,
    /// Secret for push webhooks (GitHub/Gitea HMAC, GitLab token).
    #[arg(
        long,
        env = "PACER_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    /// Deployments in flight at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
    /// Seconds before a running deployment is rolled back.
    #[arg(
        long,
        env = "PACER_DEPLOY_TIMEOUT",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    pub deploy_timeout: u64,
    /// Seconds a render of a new commit may take; past it, the apps not
    /// rendered stay at their last good version and show as invalid.
    #[arg(
        long,
        env = "PACER_RENDER_TIMEOUT",
        default_value_t = 60,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub render_timeout: u64,
    /// HTTP connections open at once; more wait to be accepted.
    #[arg(
        long,
        env = "PACER_MAX_CONNECTIONS",
        default_value_t = 256,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=65_536)
    )]
    pub max_connections: u64,
    /// Seconds an HTTP client may take to send a request's headers.
    #[arg(
        long,
        env = "PACER_HEADER_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    pub header_timeout: u64,
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

#[derive(Debug, Args)]
pub struct MarathonArgs {
    /// Marathon's URL. Default: the environment's `marathon` in pacer.yaml.
    #[arg(
        long,
        env = "PACER_MARATHON_URL",
        value_name = "URL",
        help_heading = "Marathon"
    )]
    pub marathon: Option<String>,
    /// User for HTTP basic auth.
    #[arg(
        long,
        env = "PACER_MARATHON_USER",
        value_name = "USER",
        help_heading = "Marathon"
    )]
    pub marathon_user: Option<String>,
    /// Password for HTTP basic auth.
    #[arg(
        long,
        env = "PACER_MARATHON_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        help_heading = "Marathon"
    )]
    pub marathon_password: Option<String>,
    /// DC/OS ACS token (sent as `Authorization: token=...`).
    #[arg(
        long,
        env = "PACER_MARATHON_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        help_heading = "Marathon"
    )]
    pub marathon_token: Option<String>,
    /// Seconds before a request to Marathon times out.
    #[arg(
        long,
        env = "PACER_MARATHON_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS",
        help_heading = "Marathon"
    )]
    pub marathon_timeout: u64,
    /// Follow deployments through Marathon's event stream (`/v2/events`),
    /// polling only as a safety net. `false` where a proxy buffers
    /// server-sent events.
    #[arg(
        long,
        env = "PACER_MARATHON_EVENTS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL",
        help_heading = "Marathon"
    )]
    pub marathon_events: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub marathon: MarathonArgs,
    /// The environment to plan.
    #[arg(long, env = "PACER_ENV", value_name = "ENV")]
    pub env: String,
    /// Only this app (its path under apps/).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// Plan a Git revision instead of the working tree.
    #[arg(long, value_name = "REV", help_heading = "Source")]
    pub rev: Option<String>,
    /// Output format.
    #[arg(
        long,
        env = "PACER_FORMAT",
        value_enum,
        default_value = "text",
        help_heading = "Output"
    )]
    pub format: PlanFormat,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Deploy a commit that is not a descendant of the running one.
    #[arg(long)]
    pub allow_rewind: bool,
    /// Deploy uncommitted changes from the working tree.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Delete what Git pruned even when it is more than the environment's
    /// `maxDeleteShare` of its apps (such deletes are otherwise held).
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Deployments in flight at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
    /// Seconds before a running deployment is rolled back.
    #[arg(
        long,
        env = "PACER_DEPLOY_TIMEOUT",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    pub deploy_timeout: u64,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub marathon: MarathonArgs,
    #[arg(long, env = "PACER_ENV", value_name = "ENV")]
    pub env: String,
    /// The app's path under apps/.
    #[arg(long, value_name = "APP")]
    pub app: String,
    /// At most this many Marathon versions.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    pub format: HistoryFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryFormat {
    Text,
    /// An array of entries, newest first (see docs/history.md).
    Json,
}
