//! `pacer serve`: flags to a daemon config, and the start-up: the HTTP
//! listener, the mirror, then the reconcile loop.

use super::args::MarathonArgs;
pub use super::config_server::ConfigServerArgs;
use super::exit;
use crate::apply;
use crate::model::{Digest, Secret};
use crate::reconcile::daemon::{self, Config};
use crate::reconcile::published::Reader;
use crate::reconcile::writer::{Parts, Writer};
use crate::server;
use crate::source::remote::{GitAuth, Mirror, RemoteSpec};
use clap::Args;
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
    }
}

/// This replica's default name in the election: Marathon's `$HOST:$PORT0`
/// when it runs there, else the host name and the listening port.
fn replica_id(addr: SocketAddr) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("HOST"), env("PORT0")) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        _ => {
            let host = env("HOSTNAME")
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                })
                .unwrap_or_else(|| addr.ip().to_string());
            format!("{host}:{}", addr.port())
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

/// What [`start_with`] adds to a daemon's config.
#[derive(Default)]
pub struct Options {
    /// The config server, when it runs.
    pub delivery: Option<crate::delivery::Settings>,
    /// The tokens and the webhook's budgets.
    pub access: server::Access,
}

/// A daemon started by [`start`].
pub struct Started {
    /// Where the HTTP side listens.
    pub addr: SocketAddr,
    /// Pauses and resumes the loop's writes to Marathon.
    pub writer: Writer,
    /// What the daemon publishes (the HTTP side reads the same).
    pub reader: Reader,
    /// Ends when `shutdown` completes and the daemon has stopped.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// `pacer serve`'s start-up: binds the HTTP side (it serves health and
/// status from the first moment, from what the daemon publishes), then,
/// in the background, opens the mirror (trying again while the repo is
/// unreachable) and runs the reconcile loop until `shutdown` completes.
/// Without tokens: writes through the API are off.
pub async fn start(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Started> {
    start_with(cfg, Options::default(), shutdown).await
}

/// [`start`], with the config server and tokens of `options`.
pub async fn start_with(
    mut cfg: Config,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Started> {
    let Options { delivery, access } = options;
    let listener = match cfg.listener.take() {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(cfg.listen).await?,
    };
    let addr = listener.local_addr()?;
    tracing::info!(%addr, config_server = delivery.is_some(), "serving /healthz, /readyz, /metrics, /api/v1/status, /hooks/git and the config server's /v1");
    // Not `println!`: a closed stdout must not panic the daemon.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stdout(),
        format_args!("pacer serve: listening on http://{addr}\n"),
    );
    let mut parts = Parts::new(&cfg);
    let mut app_state = parts.app_state(&cfg);
    app_state.access = access;
    say_what_is_off(&app_state, cfg.poll);
    if let Some(mut settings) = delivery {
        // Watches hold connections: they get half the listener's.
        settings.max_watches = (cfg.http.max_connections / 2).max(1);
        app_state.delivery = Some(crate::delivery::Server::start(
            settings,
            marathon_access(&cfg),
            &cfg.workdir,
            parts.reader(),
        )?);
    }
    parts.delivery = app_state.delivery.clone();
    if let Some(mut zk) = cfg.zk.clone() {
        if zk.id.is_empty() {
            zk.id = replica_id(addr);
        }
        parts.fence = crate::model::fence::Fence::closed("no leader elected yet");
        let writer = parts.writer.clone();
        let ha = crate::ha::start(
            zk,
            parts.fence.clone(),
            Box::new(move |on| if on { writer.resume() } else { writer.pause() }),
            parts.status.clone(),
            parts.triggers_tx.clone(),
        );
        parts.wake_leader = Some(Arc::new(move || ha.wake_leader()));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config_server = app_state.delivery.clone();
    let server = tokio::spawn(server::serve(listener, app_state, cfg.http, {
        let mut stop = stop_rx;
        async move {
            let _ = stop.changed().await;
            // Watches answer now rather than hold the drain for minutes.
            if let Some(d) = config_server {
                d.shutdown();
            }
        }
    }));
    let (writer, reader) = (parts.writer.clone(), parts.reader());
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        let ran = match open_mirror(&cfg, &parts, &mut shutdown).await {
            Some(mirror) => daemon::run(cfg, parts, mirror, shutdown).await,
            None => Ok(()),
        };
        let _ = stop_tx.send(true);
        // The listener drains requests in flight for a bounded while.
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        ran
    });
    Ok(Started {
        addr,
        writer,
        reader,
        task,
    })
}

/// Once at start: what the API refuses for want of a secret or a token.
fn say_what_is_off(state: &server::AppState, poll: Duration) {
    if server::webhooks_state(state) == "off" {
        tracing::warn!(
            poll_seconds = poll.as_secs(),
            "webhooks are off: no webhook secret is configured (--webhook-secret or PACER_WEBHOOK_SECRET); every delivery is refused and only the poll fetches"
        );
    }
    let tokens = &state.access.tokens;
    if tokens.admin.is_none() {
        tracing::warn!(
            "writes through the API (retry, endpoint release) are off: no admin token is configured ({})",
            server::auth::ADMIN_TOKEN_FLAG
        );
    }
    if tokens.admin.is_none() && tokens.read.is_none() {
        tracing::info!("no API token: the status shows its public view only");
    }
}

/// How the config server reaches Marathon: as the reconcile loop does.
fn marathon_access(cfg: &Config) -> crate::delivery::MarathonAccess {
    use crate::marathon::client::Auth;
    let auth = match (&cfg.marathon_token, &cfg.marathon_user) {
        (Some(t), _) => Auth::Token(t.clone()),
        (None, Some(u)) => Auth::Basic {
            user: u.clone(),
            password: cfg.marathon_password.clone().unwrap_or_default(),
        },
        _ => Auth::None,
    };
    crate::delivery::MarathonAccess {
        url: cfg.marathon_url.clone(),
        auth,
        timeout: cfg.marathon_timeout,
        per_env: BTreeMap::new(),
    }
}

/// Opens (or clones) the mirror, trying again while the repo can't be
/// reached; `None` when `shutdown` came first. The HTTP side serves
/// meanwhile and says why the daemon is not ready.
async fn open_mirror(
    cfg: &Config,
    parts: &Parts,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
) -> Option<Arc<Mirror>> {
    loop {
        let (remote, dir) = (cfg.remote.clone(), cfg.workdir.clone());
        parts.health.doing("cloning the config repo");
        let opened = tokio::select! {
            _ = shutdown.as_mut() => return None,
            r = tokio::task::spawn_blocking(move || Mirror::open_or_clone(&remote, &dir)) => r,
        };
        parts.health.turned();
        let e = match opened {
            Ok(Ok(m)) => return Some(Arc::new(m)),
            Ok(Err(e)) => crate::redact::text(&format!("{:#}", anyhow::Error::new(e))),
            Err(e) => e.to_string(),
        };
        parts.metrics.git_fetch_error();
        parts.status.write().repo.last_fetch_error = Some(e.clone());
        parts
            .status
            .set_ready(Err(format!("the config repo could not be fetched: {e}")));
        tracing::warn!("cannot open the config repo mirror: {e}; retrying");
        // (A finished `shutdown` must not be polled again: return.)
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            _ = tokio::time::sleep(cfg.poll.min(Duration::from_secs(5))) => {}
        }
    }
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
