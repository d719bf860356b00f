//! `pacer serve`: flags to a daemon config.

use super::args::MarathonArgs;
use super::exit;
use crate::apply;
use crate::model::{Digest, Secret};
use crate::reconcile::daemon::{self, Config};
use crate::source::remote::{GitAuth, RemoteSpec};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

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

pub fn config(a: ServeArgs) -> Config {
    let auth = match (&a.git_token, &a.git_ssh_key) {
        (Some(t), _) => GitAuth::Token(Secret::new(t.clone())),
        (None, Some(key)) => GitAuth::SshKey {
            path: key.clone(),
            passphrase: std::env::var("PACER_GIT_SSH_PASSPHRASE")
                .ok()
                .map(Secret::new),
        },
        _ => GitAuth::None,
    };
    // One mirror per repo and branch, so two daemons on one host don't share.
    let workdir = a.workdir.clone().unwrap_or_else(|| {
        let key =
            Digest::of(format!("{}#{}", crate::redact::url(&a.repo_url), a.branch).as_bytes());
        std::env::temp_dir().join(format!("pacer-mirror-{}", key.short()))
    });
    Config {
        remote: RemoteSpec {
            url: a.repo_url,
            branch: a.branch,
            auth,
            ca_file: a.git_ca_file,
            known_hosts: a.git_known_hosts,
        },
        prefix: a.repo_path,
        workdir,
        listen: a.listen,
        listener: None,
        poll: Duration::from_secs(a.poll.max(1)),
        envs: (!a.envs.is_empty()).then(|| a.envs.into_iter().collect()),
        marathon_url: a.marathon.marathon,
        marathon_user: a.marathon.marathon_user,
        marathon_password: a.marathon.marathon_password.map(Secret::new),
        marathon_token: a.marathon.marathon_token.map(Secret::new),
        marathon_timeout: Duration::from_secs(a.marathon.marathon_timeout),
        marathon_events: a.marathon.marathon_events,
        apply: apply::Options {
            concurrency: a.concurrency,
            deploy_timeout: Duration::from_secs(a.deploy_timeout),
            ..apply::Options::default()
        },
        webhook_secret: a.webhook_secret.map(Secret::new),
        allow_rewind: a.allow_rewind,
        records: a.records,
        render_timeout: Duration::from_secs(a.render_timeout),
        http: crate::listen::Limits {
            max_connections: usize::try_from(a.max_connections).unwrap_or(usize::MAX),
            header_read_timeout: Duration::from_secs(a.header_timeout),
        },
    }
}

pub fn run(a: ServeArgs) -> anyhow::Result<u8> {
    // SAFETY: no other thread runs yet: the runtime starts below, and
    // nothing before it spawns one.
    unsafe {
        crate::source::remote::set_network_timeout(Duration::from_secs(
            a.git_timeout.max(1).into(),
        ));
    }
    let rt = tokio::runtime::Runtime::new()?;
    let ran = rt.block_on(daemon::run(config(a), shutdown_signal()));
    // A Git push stuck in a blocking thread must not hold the exit (Marathon
    // kills the task after its grace period anyway).
    rt.shutdown_timeout(Duration::from_secs(10));
    ran?;
    Ok(exit::OK)
}

/// Ctrl-C or SIGTERM (how Marathon stops a task).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
