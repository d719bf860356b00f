//! `pacer serve`'s start-up: the HTTP side is bound first (it serves
//! health and status from the first moment), then, with `--zk`, the
//! election; then, in the background, the mirror and the reconcile loop.

use super::*;

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
    // The mirror's directory is known now; it is read only once it holds
    // a commit, and a history read before that says so.
    app_state.history = Some(Arc::new(crate::reconcile::history::MirrorHistory::new(
        cfg.marathon_url.clone(),
        marathon_access(&cfg).auth,
        cfg.marathon_timeout,
        cfg.workdir.clone(),
        cfg.prefix.clone(),
    )));
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
