//! The clap definitions of every subcommand but `serve` and `demo` (whose
//! flags live beside their code). `--help`, the man pages and the shell
//! completions are all generated from these.

use super::demo::DemoArgs;
use super::serve::ServeArgs;
pub use super::verify::VerifyArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// GitOps for Marathon: per-environment app config in Git, rendered, diffed
/// and reconciled into Marathon.
#[derive(Debug, Parser)]
#[command(name = "pacer", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success (no changes), 1 error (including usage errors), 2 changes found (diff, plan only).\n\
A closed stdout (`| head`) ends a command quietly with exit 0.\n\
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

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a person at a terminal.
    Text,
    /// For machines: camelCase keys, errors as {file, line, column, message}.
    Json,
    /// For a pull-request comment.
    Markdown,
}

impl From<Format> for crate::diff::format::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Text => crate::diff::format::Format::Text,
            Format::Json => crate::diff::format::Format::Json,
            Format::Markdown => crate::diff::format::Format::Markdown,
        }
    }
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
    /// Print an environment's desired state: app definitions and files.
    ///
    /// Each app definition is the exact body pacer would PUT to
    /// /v2/apps/{id}. With --app and --file, prints that one rendered file
    /// as it is. Secret values are replaced with <secret:name> unless
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
    /// Compare environments' desired state with what Marathon runs (read-only).
    ///
    /// Plans every environment of pacer.yaml, or those given with --env.
    /// Each app comes out in sync, create, update (hot / scale / restart /
    /// redeploy, with its diff), delete (only when the environment prunes;
    /// otherwise unmanaged), drifted (changed outside Git), deploying, or
    /// failed (its last deployment was rolled back). Exit codes: 0 all in
    /// sync, 2 changes in any environment, 1 error.
    Plan(PlanArgs),
    /// Execute an environment's plan: deploy, follow each deployment, roll back failures.
    ///
    /// Shows the plan and asks before acting. Without a terminal to ask on
    /// it refuses unless given --yes. Refuses a commit that is not a
    /// descendant of the one running (a force-push) unless --allow-rewind.
    Apply(ApplyArgs),
    /// Deploy again one app whose last deployment failed at its current definition.
    ///
    /// pacer does not retry a definition that failed and was rolled back.
    /// This clears that mark for one app and deploys it; nothing else is
    /// touched. An app with no failure is left alone (exit 1). Asks like
    /// `apply`, and needs --yes without a terminal.
    Retry(RetryArgs),
    /// Show every change that reached an app, newest first.
    ///
    /// Rebuilt from Marathon's app versions and the Git log: commit, author,
    /// message, when it was applied, and the outcome (succeeded, rolled back,
    /// scaled, hot).
    History(HistoryArgs),
    /// Show what runs where: each environment's apps, their sync status and commit.
    ///
    /// Asks the daemon (--daemon, PACER_DAEMON_URL: its /api/v1/status)
    /// or, without one, reads Marathon straight (--marathon or each
    /// environment's `marathon:`) and compares it with the config repo.
    Status(StatusArgs),
    /// Run the reconciler daemon: watch the repo, keep Marathon equal to Git.
    ///
    /// Clones the repo, then fetches on an interval and on a push webhook
    /// (POST /hooks/git), and reconciles each environment by its policy:
    /// auto-apply or plan only, prune or not, self-heal drift or only report
    /// it. Serves /healthz, /readyz, /metrics and /api/v1/status.
    Serve(Box<ServeArgs>),
    /// Run an in-memory Marathon 1.10 simulator.
    Sim(crate::sim::SimArgs),
    /// Inside a task: write its config files from `pacer serve` and run its app.
    ///
    /// Logs in once with MESOS_TASK_ID and MARATHON_APP_ID, writes the app's
    /// files atomically where the manifest says, starts COMMAND, then
    /// watches: a changed hot file is rewritten and COMMAND gets SIGHUP.
    /// Exits with COMMAND's exit code. See docs/config-server.md.
    Agent(crate::agent::AgentArgs),
    /// Run the bundled example repo end to end on embedded defaults.
    ///
    /// Writes the example repo (built into the binary) to a new Git repo,
    /// starts the built-in simulator and the daemon on it, and lets the
    /// daemon apply each environment as pacer.yaml says: dev and staging
    /// automatically, prod (autoApply: false) only as a plan with the
    /// command that applies it. Then keeps running for you to commit to the
    /// repo, and reports each commit it picks up.
    Demo(DemoArgs),
    /// Check that commits are signed by trusted keys (the CI half of `verify:`).
    ///
    /// Verifies --rev (mode head) or every commit since a base (mode all)
    /// against each environment's `verify:` policy, in process: SSH
    /// signatures against allowed_signers lines, OpenPGP signatures against
    /// armored public keys. The trust list is never read from the commit
    /// being checked: give --signers-from REV (a trusted base, whose
    /// pacer.yaml and trust list are used) or --signers FILE. Exit 0 when
    /// every commit is verified, 1 otherwise.
    Verify(VerifyArgs),
    /// Seal, edit, re-seal and show secrets kept in Git (sops' format, age keys).
    ///
    /// `encrypt FILE` seals a file's `secrets` for the age recipients its
    /// .sops.yaml rule names; `edit FILE` opens the plaintext in $EDITOR and
    /// re-seals only what changed; `rotate FILE...` re-seals under a new data
    /// key for the rule's current recipients; `show --env E --app A` prints
    /// one app's merged secrets. Identities come from PACER_AGE_KEY_FILE,
    /// SOPS_AGE_KEY_FILE, SOPS_AGE_KEY or ~/.config/sops/age/keys.txt.
    Secret(super::secret::SecretArgs),
    /// Print a shell completion script (source it from your shell's rc file).
    Completions(CompletionsArgs),
    /// Write man pages for pacer and each subcommand.
    ///
    /// Without --dir, prints pacer(1) to stdout.
    Man(ManArgs),
}

impl Command {
    /// The output format the command was asked for, if it prints a result.
    pub fn format(&self) -> Option<Format> {
        Some(match self {
            Command::Validate(a) if a.json => Format::Json,
            Command::Validate(a) => a.format,
            Command::Render(a) => a.format,
            Command::Diff(a) => a.format.format,
            Command::Plan(a) => a.format.format,
            Command::Apply(a) => a.write.format.format,
            Command::Retry(a) => a.write.format.format,
            Command::History(a) => a.format,
            Command::Status(a) => a.format.format,
            Command::Verify(a) => a.format.format,
            Command::Secret(a) => match &a.command {
                super::secret::SecretCommand::Show(s) => s.format.format,
                _ => return None,
            },
            _ => return None,
        })
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write pacer.1 and pacer-SUBCOMMAND.1 into this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `--format`, with `PACER_FORMAT` as its default for every command.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Output format.
    #[arg(
        long,
        env = "PACER_FORMAT",
        value_enum,
        default_value = "text",
        value_name = "FORMAT",
        help_heading = "Output"
    )]
    pub format: Format,
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
    /// The endpoints templates see through `service()`: a YAML or JSON
    /// file of Marathon id → {portNames, tasks}. Default: placeholders.
    #[arg(long, value_name = "FILE", help_heading = "Source")]
    pub endpoints: Option<PathBuf>,
    /// Output format. JSON is an array of {file, line, column, message, hint}.
    #[arg(
        long,
        env = "PACER_FORMAT",
        value_enum,
        default_value = "text",
        value_name = "FORMAT",
        help_heading = "Output"
    )]
    pub format: Format,
    /// The same as `--format json` (kept for old scripts).
    #[arg(long, hide = true)]
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
    /// Print only this rendered file of --app, as plain text (its name
    /// under the app's files/, or its path in the task).
    #[arg(long, value_name = "NAME", requires = "app")]
    pub file: Option<String>,
    /// Render a Git revision instead of the working tree.
    #[arg(long, value_name = "REV", help_heading = "Source")]
    pub rev: Option<String>,
    /// The endpoints templates see through `service()`: a YAML or JSON
    /// file of Marathon id → {portNames, tasks}. Default: placeholders.
    #[arg(long, value_name = "FILE", help_heading = "Source")]
    pub endpoints: Option<PathBuf>,
    /// Print secret values instead of <secret:name>.
    #[arg(long)]
    pub show_secrets: bool,
    /// Output format: json (the default: exact PUT bodies and files), text
    /// or markdown (each app's definition and files, for reading).
    #[arg(
        long,
        env = "PACER_FORMAT",
        value_enum,
        default_value = "json",
        value_name = "FORMAT",
        help_heading = "Output"
    )]
    pub format: Format,
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
    /// The endpoints templates see through `service()`: a YAML or JSON
    /// file of Marathon id → {portNames, tasks}. Default: placeholders.
    #[arg(long, value_name = "FILE", help_heading = "Source")]
    pub endpoints: Option<PathBuf>,
    /// Compare only this environment (repeatable). Default: all.
    #[arg(
        long = "env",
        env = "PACER_ENV",
        value_name = "ENV",
        value_delimiter = ','
    )]
    pub envs: Vec<String>,
    #[command(flatten)]
    pub format: FormatArgs,
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

pub use crate::marathon::url::http_url;

/// `--marathon` and `--daemon`: [`http_url`], with an error that never
/// quotes the value as given (clap's own message would, password and all).
#[derive(Clone)]
pub struct HttpUrl;

impl clap::builder::TypedValueParser for HttpUrl {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        use clap::error::ErrorKind;
        let name = arg.map(ToString::to_string).unwrap_or_default();
        let Some(s) = value.to_str() else {
            return Err(clap::Error::raw(
                ErrorKind::InvalidUtf8,
                format!("invalid value for '{name}': not UTF-8\n"),
            )
            .with_cmd(cmd));
        };
        http_url(s).map_err(|e| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!(
                    "invalid value '{}' for '{name}': {e}\n",
                    crate::redact::url(s)
                ),
            )
            .with_cmd(cmd)
        })
    }
}

#[derive(Debug, Args)]
pub struct MarathonArgs {
    /// Marathon's URL (`http://` is assumed without a scheme). Default: the
    /// environment's `marathon` in pacer.yaml.
    #[arg(
        long,
        env = "PACER_MARATHON_URL",
        value_name = "URL",
        value_parser = HttpUrl,
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

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub marathon: MarathonArgs,
    /// Plan only this environment (repeatable). Default: all.
    #[arg(
        long = "env",
        env = "PACER_ENV",
        value_name = "ENV",
        value_delimiter = ','
    )]
    pub envs: Vec<String>,
    /// Only this app (its path under apps/).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// Plan a Git revision instead of the working tree.
    #[arg(long, value_name = "REV", help_heading = "Source")]
    pub rev: Option<String>,
    /// The endpoints templates see through `service()`: a YAML or JSON
    /// file of Marathon id → {portNames, tasks}. Default: placeholders.
    #[arg(long, value_name = "FILE", help_heading = "Source")]
    pub endpoints: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// What `apply` and `retry` share: where, and how carefully.
#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub marathon: MarathonArgs,
    /// Deploy a Git revision instead of the working tree.
    #[arg(long, value_name = "REV", help_heading = "Source")]
    pub rev: Option<String>,
    /// Act without asking (needed without a terminal, as in CI).
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
    /// Seconds before a running deployment is rolled back.
    #[arg(
        long,
        env = "PACER_DEPLOY_TIMEOUT",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    pub deploy_timeout: u64,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The environment to apply.
    #[arg(long, env = "PACER_ENV", value_name = "ENV")]
    pub env: String,
    /// Only this app (its path under apps/).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    #[command(flatten)]
    pub write: WriteArgs,
    /// Deployments in flight at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The environment of the failed app.
    #[arg(long, env = "PACER_ENV", value_name = "ENV")]
    pub env: String,
    /// The app to deploy again (its path under apps/).
    #[arg(long, value_name = "APP")]
    pub app: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub marathon: MarathonArgs,
    /// The environment the app runs in.
    #[arg(long, env = "PACER_ENV", value_name = "ENV")]
    pub env: String,
    /// The app's path under apps/.
    #[arg(long, value_name = "APP")]
    pub app: String,
    /// At most this many Marathon versions.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
    /// Output format. JSON is an array of entries, newest first (see
    /// docs/history.md).
    #[arg(
        long,
        env = "PACER_FORMAT",
        value_enum,
        default_value = "text",
        value_name = "FORMAT",
        help_heading = "Output"
    )]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The daemon to ask (its base URL, e.g. http://pacer:8081; `http://`
    /// is assumed). Without it, Marathon is read straight.
    #[arg(
        long,
        env = "PACER_DAEMON_URL",
        value_name = "URL",
        value_parser = HttpUrl
    )]
    pub daemon: Option<String>,
    /// With --daemon: a file holding its read (or admin) token, or the
    /// token itself in PACER_TOKEN. Without one the daemon shows its
    /// public status: states, counts and commits, no errors or messages.
    #[arg(
        long,
        env = "PACER_TOKEN_FILE",
        value_name = "FILE",
        requires = "daemon"
    )]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub marathon: MarathonArgs,
    /// Only this environment (repeatable). Default: all.
    #[arg(
        long = "env",
        env = "PACER_ENV",
        value_name = "ENV",
        value_delimiter = ','
    )]
    pub envs: Vec<String>,
    /// Only this app (its path under apps/).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    #[command(flatten)]
    pub format: FormatArgs,
}
