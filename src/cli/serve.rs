//! `pacer serve`: flags to a daemon config, and the start-up: the HTTP
//! listener, the mirror, then the reconcile loop.

use super::args::MarathonArgs;
pub use super::config_server::ConfigServerArgs;
use super::exit;

/// Binding the HTTP side, the election, the mirror and the loop.
mod startup;
use crate::apply;
use crate::model::{Digest, Secret};
use crate::reconcile::daemon::{self, Config};
use crate::reconcile::published::Reader;
use crate::reconcile::writer::{Parts, Writer};
use crate::server;
use crate::source::remote::{GitAuth, Mirror, RemoteSpec};
use clap::Args;
pub use startup::{Options, Started, shutdown_signal, start, start_with};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
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
    /// Run as one of several replicas: the leader, elected on this
    /// ZooKeeper, writes; every replica serves (e.g.
    /// zk://zk1:2181,zk2:2181/pacer).
    #[arg(
        long,
        env = "PACER_ZK",
        value_name = "URL",
        help_heading = "High availability"
    )]
    pub zk: Option<String>,
    /// The ZooKeeper session timeout: a dead leader is replaced after about
    /// this long (shorter fails over sooner, but a GC pause or a network
    /// blip of that length costs the lead).
    #[arg(
        long,
        env = "PACER_ZK_SESSION_TIMEOUT",
        default_value_t = 6,
        value_name = "SECONDS",
        help_heading = "High availability"
    )]
    pub zk_session_timeout: u64,
    /// This replica's name in the election. Default: $HOST:$PORT0 on
    /// Marathon, else the host name and the listening port.
    #[arg(
        long,
        env = "PACER_REPLICA_ID",
        value_name = "ID",
        help_heading = "High availability"
    )]
    pub replica_id: Option<String>,
    /// A trust list from outside the repo (allowed_signers lines and
    /// armored OpenPGP keys): it replaces the repo's own in every
    /// environment with a `verify:` policy, so that even the first commit
    /// deployed is checked against keys the repo can't change.
    #[arg(
        long,
        env = "PACER_VERIFY_SIGNERS",
        value_name = "FILE",
        help_heading = "Source"
    )]
    pub verify_signers: Option<PathBuf>,
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
    #[command(flatten)]
    pub api: super::tokens::ApiArgs,
    /// A host name the daemon answers writes (`POST /api/v1/retry`) for,
    /// besides its IP addresses and localhost (repeatable), e.g. the
    /// Marathon app's `pacer.marathon.mesos`. Others get 403: a guard
    /// against DNS rebinding.
    #[arg(
        long = "allowed-host",
        env = "PACER_ALLOWED_HOST",
        value_name = "NAME",
        value_delimiter = ',',
        value_parser = crate::server::parse_allowed_host
    )]
    pub allowed_hosts: Vec<String>,
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
    /// Live endpoints (`service()` in templates): a moved set waits until it
    /// has been stable this long before the apps that name it render again…
    #[arg(
        long,
        env = "PACER_ENDPOINTS_MIN_WAIT",
        default_value_t = 2000,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(0..=600_000)
    )]
    pub endpoints_min_wait: u64,
    /// …but never longer than this after its first change.
    #[arg(
        long,
        env = "PACER_ENDPOINTS_MAX_WAIT",
        default_value_t = 10_000,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(0..=3_600_000)
    )]
    pub endpoints_max_wait: u64,
    /// A set that loses more than this share of its tasks in one step is
    /// held back (an empty set always is) until it recovers or an operator
    /// releases it (`POST /api/v1/endpoints/release`).
    #[arg(
        long,
        env = "PACER_ENDPOINTS_MAX_SHRINK",
        default_value_t = 0.5,
        value_name = "SHARE",
        value_parser = parse_share
    )]
    pub endpoints_max_shrink: f64,
    /// How often every followed service is read again from Marathon, the
    /// safety net under its event stream.
    #[arg(
        long,
        env = "PACER_ENDPOINTS_RESYNC",
        default_value_t = 30,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub endpoints_resync: u64,
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
    /// Seconds a kept-alive HTTP connection may wait for its next request.
    #[arg(
        long,
        env = "PACER_IDLE_TIMEOUT",
        default_value_t = 60,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub idle_timeout: u64,
    /// Seconds an HTTP response may wait for the client to read any of it
    /// (progress, not total time: a long poll runs on while read).
    #[arg(
        long,
        env = "PACER_WRITE_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub write_timeout: u64,
    /// Let the process use transparent huge pages. Off by default: the
    /// allocator asks the kernel for them, and a 2 MB page made resident by
    /// a few small allocations counts in full against the task's memory.
    // Measured with 10,000 agents watching: +45 % RSS with them; the
    // reconcile bench's cycle and webhook → PUT were the same either way.
    #[arg(long, env = "PACER_HUGE_PAGES")]
    pub huge_pages: bool,
    #[command(flatten)]
    pub config_server: ConfigServerArgs,
}

pub(crate) fn config(a: ServeArgs) -> Config {
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
            idle_timeout: Duration::from_secs(a.idle_timeout),
            write_timeout: Duration::from_secs(a.write_timeout),
        },
        allowed_hosts: a.allowed_hosts,
        endpoints: crate::observe::endpoints::Settings {
            min_wait_ms: a.endpoints_min_wait,
            max_wait_ms: a.endpoints_max_wait.max(a.endpoints_min_wait),
            max_shrink: a.endpoints_max_shrink,
        },
        endpoints_resync: Duration::from_secs(a.endpoints_resync),
        state_dir: a.config_server.state_dir.clone(),
        // Read by `run`, which can fail on it.
        verify_signers: None,
        zk: None,
        // The identities the command line read at start (never a flag:
        // a key on a command line shows in `ps`).
        secret_keys: crate::render::SecretKeys::process_default(),
    }
}

/// Turns transparent huge pages off for this process (kept across `exec`,
/// so for the commands it runs too). A daemon holding thousands of mostly
/// idle connections touches a few bytes here and there of each
/// connection's buffers; with huge pages each touch makes 2 MB resident
/// instead of 4 KB.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it changes a flag of this
    // process and touches no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "transparent huge pages could not be turned off"
            );
        }
    }
}

/// A share from 0 to 1 (`0.5`).
fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a share from 0 to 1, such as 0.5")),
    }
}

pub(crate) fn run(a: ServeArgs) -> anyhow::Result<u8> {
    if !a.huge_pages {
        no_huge_pages();
    }
    // SAFETY: no other thread runs yet: the runtime starts below, and
    // nothing before it spawns one.
    unsafe {
        crate::source::remote::set_network_timeout(Duration::from_secs(
            a.git_timeout.max(1).into(),
        ));
    }
    let mut delivery = a.config_server.settings()?;
    let outside = match &a.verify_signers {
        Some(path) => {
            let name = path.display().to_string();
            let list = super::verify::parse_trust(&name, &super::verify::read_file(path)?)?;
            Some((name, list))
        }
        None => None,
    };
    let zk = match &a.zk {
        Some(url) => {
            let (hosts, root) = crate::ha::parse_url(url).map_err(|e| anyhow::anyhow!(e))?;
            Some(crate::ha::Settings {
                hosts,
                root,
                session_timeout: Duration::from_secs(a.zk_session_timeout.clamp(2, 120)),
                id: a.replica_id.clone().unwrap_or_default(),
            })
        }
        None => None,
    };
    delivery.zk = zk.as_ref().map(|z| (z.hosts.clone(), z.root.clone()));
    let access = super::tokens::access(&a.api, |k| std::env::var(k).ok())?;
    let mut cfg = config(a);
    cfg.verify_signers = outside;
    cfg.zk = zk;
    let rt = tokio::runtime::Runtime::new()?;
    let ran = rt.block_on(async {
        let options = Options {
            delivery: Some(delivery),
            access,
        };
        let started = start_with(cfg, options, shutdown_signal()).await?;
        started.task.await?
    });
    // A Git push stuck in a blocking thread must not hold the exit (Marathon
    // kills the task after its grace period anyway).
    rt.shutdown_timeout(Duration::from_secs(10));
    ran?;
    Ok(exit::OK)
}
