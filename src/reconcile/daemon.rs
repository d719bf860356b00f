//! `pacer serve`: keeps every environment in Marathon equal to Git.
//!
//! One loop owns the state. Triggers (the poll timer, webhooks, retries)
//! wake it; bursts collapse into one run. Each run fetches, re-renders only
//! the apps whose inputs changed, reads each Marathon once, plans every
//! environment and, where the policy says so, applies. A broken commit, an
//! unreachable repo or Marathon never stop the loop: the last good state is
//! kept and the problem shows in `/api/v1/status` and `/metrics`.

use super::gather::{self, Caches};
use super::status::{AppStatus, LastAction, Outcome, Status, SyncStatus};
use crate::apply::{self, LogProgress};
use crate::marathon::client::{Auth, ClientConfig, MarathonClient};
use crate::model::{AppPath, Digest, EnvName, Secret};
use crate::plan::{self, Action};
use crate::record::notes;
use crate::render::{self, Diagnostics, RenderedApp};
use crate::server::{self, AppState, Trigger, metrics::Metrics};
use crate::source::remote::{Mirror, RemoteSpec};
use crate::source::{RepoLocation, Snapshot};
use parking_lot::RwLock;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub struct Config {
    pub remote: RemoteSpec,
    /// The config repo's directory inside the Git repository (`""` for the top).
    pub prefix: String,
    /// Where the local mirror of the repo is kept.
    pub workdir: PathBuf,
    pub listen: SocketAddr,
    /// A listener bound by the caller; `listen` is used when absent.
    pub listener: Option<tokio::net::TcpListener>,
    pub poll: Duration,
    /// Only these environments. Default: all.
    pub envs: Option<BTreeSet<EnvName>>,
    /// Overrides every environment's `marathon` URL.
    pub marathon_url: Option<String>,
    pub marathon_user: Option<String>,
    pub marathon_password: Option<Secret<String>>,
    pub marathon_token: Option<Secret<String>>,
    pub marathon_timeout: Duration,
    /// Follow deployments through Marathon's event stream.
    pub marathon_events: bool,
    pub apply: apply::Options,
    pub webhook_secret: Option<Secret<String>>,
    pub allow_rewind: bool,
    /// Apply every environment whatever its policy (the demo does).
    pub apply_all: bool,
    /// Where deployment records go (notes on the deployed commits).
    pub records: notes::Publish,
}

/// Up to this many changed apps go out before the full pass.
const FAST_PATH_APPS: usize = 64;

/// The longest wait between attempts while Marathon or Git is failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Daemon {
    cfg: Config,
    mirror: Arc<Mirror>,
    status: Arc<RwLock<Status>>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    /// The newest commit that loaded (pacer.yaml and environment files).
    rendered_at: Option<String>,
    /// Per environment and app: the newest version that rendered.
    desired: BTreeMap<EnvName, Arc<render::DesiredEnv>>,
    /// The commit the environments were last reconciled at; a head that
    /// doesn't descend from it is a rewind.
    applied: Option<git2::Oid>,
    caches: Caches,
    /// What the config server hands out: the hot files' digest per app.
    served_hot: BTreeMap<String, Digest>,
    retry: BTreeSet<String>,
    clients: BTreeMap<String, MarathonClient>,
    reached_marathon: bool,
    /// Apps that don't render at the newest commit, with their problems.
    invalid: BTreeMap<EnvName, BTreeMap<AppPath, Vec<render::Diagnostic>>>,
    /// Problems that stop the whole newest commit from loading (pacer.yaml,
    /// an environment file, a refused rewind).
    repo_errors: Vec<String>,
    /// (head, commit) → whether head descends from commit.
    descends: std::collections::HashMap<(String, String), bool>,
    /// Apps whose steps run in the background right now. A deployment can
    /// take minutes; the loop goes on reconciling everything else meanwhile.
    inflight: Arc<parking_lot::Mutex<BTreeSet<String>>>,
    /// Finished steps, reported by the background applies.
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    /// Wakes the loop when a background apply ends.
    wake: mpsc::Sender<Trigger>,
    /// id → (commit, definition) of app versions a newer commit replaced:
    /// what Git said at the commit a live app still runs, without
    /// rendering that commit again.
    known_baselines: BTreeMap<String, (String, serde_json::Value)>,
    /// What wakes the loop: polls, webhooks, retries, finished applies.
    triggers: mpsc::Receiver<Trigger>,
    /// Deployment records (with the commit each annotates) not yet
    /// written and pushed.
    records: Vec<(git2::Oid, notes::Record)>,
    /// After a failed push of records: when to try again, and the pause
    /// that led there (doubled on each failure).
    records_retry: Option<(Instant, Duration)>,
}

/// The results of one background apply.
struct Finished {
    env: EnvName,
    head: String,
    desired: Arc<render::DesiredEnv>,
    steps: Vec<plan::Step>,
    results: Vec<apply::StepResult>,
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    mut cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<Trigger>(64);
    let status = Arc::new(RwLock::new(Status::default()));
    {
        let mut s = status.write();
        s.repo.url = crate::source::remote::redact_url(&cfg.remote.url);
        s.repo.branch = cfg.remote.branch.clone();
    }
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        status: status.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        triggers: tx.clone(),
        webhook_secret: cfg.webhook_secret.clone(),
        branch: cfg.remote.branch.clone(),
    };
    let listener = match cfg.listener.take() {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(cfg.listen).await?,
    };
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving /healthz, /readyz, /metrics, /api/v1/status and /hooks/git");
    // Not `println!`: a closed stdout must not panic the daemon.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stdout(),
        format_args!("pacer serve: listening on http://{addr}\n"),
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(server::serve(listener, state, {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.changed().await;
        }
    }));

    let remote = cfg.remote.clone();
    let dir = cfg.workdir.clone();
    let mirror = loop {
        let (remote, dir) = (remote.clone(), dir.clone());
        match tokio::task::spawn_blocking(move || Mirror::open_or_clone(&remote, &dir)).await? {
            Ok(m) => break Arc::new(m),
            Err(e) => {
                // The repo may be unreachable at start-up too; keep serving
                // /healthz and try again.
                metrics.git_fetch_error();
                let e = format!("{:#}", anyhow::Error::new(e));
                status.write().repo.last_fetch_error = Some(e.clone());
                tracing::warn!("cannot open the config repo mirror: {e}; retrying");
                tokio::time::sleep(cfg.poll.min(Duration::from_secs(5))).await;
            }
        }
    };
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut d = Daemon {
        cfg,
        mirror,
        status,
        metrics,
        ready,
        rendered_at: None,
        desired: BTreeMap::new(),
        applied: None,
        caches: Caches::default(),
        served_hot: BTreeMap::new(),
        retry: BTreeSet::new(),
        clients: BTreeMap::new(),
        reached_marathon: false,
        invalid: BTreeMap::new(),
        repo_errors: Vec::new(),
        descends: Default::default(),
        inflight: Default::default(),
        done_tx,
        done_rx,
        wake: tx.clone(),
        known_baselines: BTreeMap::new(),
        triggers: rx,
        records: Vec::new(),
        records_retry: None,
    };

    tokio::pin!(shutdown);
    let mut wait = Duration::ZERO;
    let mut backoff = Duration::from_millis(500);
    let mut trigger = Trigger::Poll;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(wait) => {}
            t = d.triggers.recv() => {
                if let Some(t) = t { trigger = t; }
            }
        }
        // A burst of webhooks is one run. Every retry in it counts: each
        // names its own apps, and keeping only the last one dropped the
        // others (found by the e2e test `retries_sent_together_are_all_kept`).
        let mut retries = Vec::new();
        if let Trigger::Retry { env, app } = &trigger {
            retries.push((env.clone(), app.clone()));
        }
        while let Ok(t) = d.triggers.try_recv() {
            if let Trigger::Retry { env, app } = &t {
                retries.push((env.clone(), app.clone()));
                trigger = t;
            }
        }
        for (env, app) in &retries {
            d.mark_retry(env.as_deref(), app.as_deref());
        }
        tracing::info!(trigger = ?trigger, "reconciling");
        let healthy = d.cycle().await;
        wait = if healthy {
            backoff = Duration::from_millis(500);
            d.cfg.poll
        } else {
            let w = backoff.min(d.cfg.poll);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            w
        };
        // A background apply that ended during the pass may have had its
        // wake-up taken by the pass: record it now rather than a poll later.
        if !d.done_rx.is_empty() {
            wait = Duration::ZERO;
        }
        trigger = Trigger::Poll;
    }
    // Results of applies that ended meanwhile, and records still waiting,
    // go out before the daemon does (a push that hangs doesn't hold it).
    while let Ok(f) = d.done_rx.try_recv() {
        d.record(f);
    }
    d.records_retry = None;
    let _ = tokio::time::timeout(Duration::from_secs(10), d.publish_records()).await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(())
}

impl Daemon {
    /// Fetches a pushed commit mid-pass and sends its changed apps out at
    /// once; the rest of the pass then works on the new head.
    async fn take_push(&mut self, head: &mut String) {
        let Some(h) = self.fetch().await else { return };
        if self.rendered_at.as_deref() == Some(h.as_str()) {
            return;
        }
        let (_, rerendered) = self.render(&h).await;
        self.send_first(&rerendered, &h).await;
        *head = h;
    }

    /// A push that changed a few apps reaches Marathon first through those
    /// apps alone, before the full pass reads every app.
    async fn send_first(&mut self, rerendered: &BTreeMap<EnvName, BTreeSet<AppPath>>, head: &str) {
        if rerendered.values().map(BTreeSet::len).sum::<usize>() <= FAST_PATH_APPS {
            for (env, apps) in rerendered {
                self.fast_apply(env, apps, head).await;
            }
        }
    }

    /// Takes the triggers queued so far: retries are marked, and the answer
    /// says whether a push (webhook) is among them.
    fn push_arrived(&mut self) -> bool {
        let mut push = false;
        while let Ok(t) = self.triggers.try_recv() {
            match t {
                Trigger::Webhook { .. } => push = true,
                Trigger::Retry { env, app } => self.mark_retry(env.as_deref(), app.as_deref()),
                Trigger::Poll => {}
            }
        }
        push
    }

    fn mark_retry(&mut self, env: Option<&str>, app: Option<&str>) {
        for (name, e) in &self.desired {
            if env.is_some_and(|want| want != name) {
                continue;
            }
            for a in e.apps.values() {
                if app.is_none_or(|want| want == a.app) {
                    self.retry.insert(a.id.clone());
                }
            }
        }
    }

    fn client_for(&mut self, url: &str) -> Option<MarathonClient> {
        if let Some(c) = self.clients.get(url) {
            return Some(c.clone());
        }
        let auth = match (&self.cfg.marathon_token, &self.cfg.marathon_user) {
            (Some(t), _) => Auth::Token(t.clone()),
            (None, Some(u)) => Auth::Basic {
                user: u.clone(),
                password: self.cfg.marathon_password.clone().unwrap_or_default(),
            },
            _ => Auth::None,
        };
        let client = MarathonClient::new(ClientConfig {
            url: url.to_string(),
            auth,
            timeout: self.cfg.marathon_timeout,
            events: self.cfg.marathon_events,
            ..ClientConfig::default()
        })
        .ok()?;
        self.clients.insert(url.to_string(), client.clone());
        Some(client)
    }

    /// One run. Returns false when something external failed (Git or
    /// Marathon), so the next run comes sooner, with backoff.
    async fn cycle(&mut self) -> bool {
        let started = Instant::now();
        while let Ok(f) = self.done_rx.try_recv() {
            self.record(f);
        }
        let fetched = self.fetch().await;
        let head = match &fetched {
            Some(h) => Some(h.clone()),
            None => self.rendered_at.clone(),
        };
        let Some(head) = head else { return false };
        let fetch_ms = started.elapsed().as_millis() as u64;
        let (changed_envs, rerendered) = if self.rendered_at.as_deref() != Some(head.as_str()) {
            self.render(&head).await
        } else {
            Default::default()
        };
        self.send_first(&rerendered, &head).await;
        tracing::debug!(
            fetch_ms,
            render_ms = started.elapsed().as_millis() as u64 - fetch_ms,
            changed = changed_envs.len(),
            "fetched and rendered"
        );
        let mut healthy = fetched.is_some();
        // Environments whose desired state changed go first, so a pushed
        // commit reaches Marathon before the drift checks of the others.
        let mut order: Vec<EnvName> = self.desired.keys().cloned().collect();
        order.sort_by_key(|e| !changed_envs.contains(e));
        let mut snapshots: BTreeMap<String, Option<gather::Snapshot>> = BTreeMap::new();
        let mut head = head;
        for env in order {
            // A push that arrives during a long pass goes out now, not after it.
            if self.push_arrived() {
                self.take_push(&mut head).await;
            }
            let env_started = Instant::now();
            let Some(url) = self
                .cfg
                .marathon_url
                .clone()
                .or_else(|| self.desired[&env].settings.marathon.clone())
            else {
                self.env_error(
                    &env,
                    "no Marathon URL: set `marathon:` for this environment or pass --marathon",
                );
                continue;
            };
            let Some(client) = self.client_for(&url) else {
                self.env_error(&env, &format!("invalid Marathon URL `{url}`"));
                continue;
            };
            if !snapshots.contains_key(&url) {
                // Reading every app takes a while at scale; a push that
                // arrives meanwhile is sent out while the read goes on.
                let read = gather::snapshot(&client);
                tokio::pin!(read);
                let result = loop {
                    tokio::select! {
                        r = &mut read => break r,
                        Some(t) = self.triggers.recv() => {
                            match t {
                                Trigger::Webhook { .. } => self.take_push(&mut head).await,
                                Trigger::Retry { env, app } => self.mark_retry(env.as_deref(), app.as_deref()),
                                Trigger::Poll => {}
                            }
                        }
                    }
                };
                let s = match result {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.metrics.marathon_error();
                        tracing::warn!(env = %env, "Marathon at {url} is not answering: {e}");
                        None
                    }
                };
                snapshots.insert(url.clone(), s);
            }
            let Some(snap) = snapshots.get_mut(&url).and_then(Option::as_mut) else {
                self.env_error(&env, &format!("Marathon at {url} is not answering"));
                healthy = false;
                continue;
            };
            self.reached_marathon = true;
            if !self.reconcile_env(&env, &client, snap, &head).await {
                healthy = false;
            }
            self.metrics
                .observe_reconcile(&env, env_started.elapsed().as_secs_f64());
            tracing::debug!(env = %env, elapsed_ms = env_started.elapsed().as_millis() as u64, "environment reconciled");
        }
        // Only a head that rendered was reconciled. A refused rewind (or a
        // commit that doesn't load) leaves `rendered_at` behind; recording it
        // as applied would let the next poll deploy the very rewind just
        // refused (found by the e2e test
        // `a_rewind_past_a_scale_only_commit_stays_refused`).
        if healthy && self.rendered_at.as_deref() == Some(head.as_str()) {
            if let Ok(oid) = git2::Oid::from_str(&head) {
                self.applied = Some(oid);
            }
        }
        self.ready.store(
            self.rendered_at.is_some() && self.reached_marathon,
            Ordering::Relaxed,
        );
        self.publish_records().await;
        self.caches.trim(50_000);
        if self.descends.len() > 100_000 {
            self.descends.clear();
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "cycle done"
        );
        healthy
    }

    /// A message when `head` does not descend from a commit a live app of
    /// the environment was deployed from (a force-push rewound the branch).
    fn rewinds(&mut self, head: &str, observed: &plan::Observed) -> Option<String> {
        let head_oid = git2::Oid::from_str(head).ok()?;
        for (id, live) in &observed.apps {
            let Some(c) = live.label(render::labels::COMMIT) else {
                continue;
            };
            let c = c.trim_end_matches("-dirty");
            if c == head {
                continue;
            }
            let key = (head.to_string(), c.to_string());
            let ok = match self.descends.get(&key) {
                Some(ok) => *ok,
                None => {
                    let ok = git2::Oid::from_str(c).ok().is_some_and(|live_oid| {
                        self.mirror
                            .is_descendant(head_oid, live_oid)
                            .unwrap_or(false)
                    });
                    self.descends.insert(key, ok);
                    ok
                }
            };
            if !ok {
                return Some(format!(
                    "refusing to rewind: {id} runs commit {c}, which is not an ancestor of {head} (a force-push?); restart with --allow-rewind to deploy it"
                ));
            }
        }
        None
    }

    /// Writes the deployment records gathered so far into the notes of
    /// the commits they deployed and pushes them. A failure keeps them for
    /// the next run; a repo that won't take them for long loses the oldest
    /// rather than growing without bound.
    async fn publish_records(&mut self) {
        const MAX_PENDING: usize = 10_000;
        if self.records.is_empty() {
            return;
        }
        if self.cfg.records == notes::Publish::Off {
            self.records.clear();
            return;
        }
        // A remote that refuses (a read-only key, a server without push)
        // is asked again with backoff, not on every poll.
        if self
            .records_retry
            .is_some_and(|(at, _)| Instant::now() < at)
        {
            self.status.write().repo.pending_records = self.records.len();
            return;
        }
        let (mirror, spec, how) = (
            self.mirror.clone(),
            self.cfg.remote.clone(),
            self.cfg.records,
        );
        let pending = self.records.clone();
        let outcome =
            tokio::task::spawn_blocking(move || notes::publish(&mirror, &spec, &pending, how))
                .await;
        let error = match outcome {
            Ok(Ok(added)) => {
                self.metrics.records_written(added as u64);
                tracing::info!(records = self.records.len(), how = ?how, "deployment records written to {}", notes::REF);
                self.records.clear();
                self.records_retry = None;
                None
            }
            Ok(Err(e)) => Some(format!("{:#}", anyhow::Error::new(e))),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = &error {
            self.metrics.record_error();
            let pause = self
                .records_retry
                .map_or(Duration::from_secs(30), |(_, p)| {
                    (p * 2).min(Duration::from_secs(600))
                });
            self.records_retry = Some((Instant::now() + pause, pause));
            tracing::warn!(
                retry_in_s = pause.as_secs(),
                "deployment records not written yet: {e}"
            );
            if self.records.len() > MAX_PENDING {
                let drop = self.records.len() - MAX_PENDING;
                self.records.drain(..drop);
                tracing::warn!(
                    dropped = drop,
                    "too many deployment records waiting; dropped the oldest"
                );
            }
        }
        let mut s = self.status.write();
        s.repo.pending_records = self.records.len();
        s.repo.last_record_error = error;
    }

    fn env_error(&self, env: &str, message: &str) {
        let mut s = self.status.write();
        let e = s.environments.entry(env.to_string()).or_default();
        e.errors = vec![message.to_string()];
    }

    /// Fetches the branch; on failure keeps the last good commit.
    async fn fetch(&mut self) -> Option<String> {
        let mirror = self.mirror.clone();
        let remote = self.cfg.remote.clone();
        let result = tokio::task::spawn_blocking(move || mirror.fetch(&remote)).await;
        match result {
            Ok(Ok(oid)) => {
                let head = oid.to_string();
                let mut s = self.status.write();
                s.repo.head = Some(head.clone());
                s.repo.last_fetch_error = None;
                Some(head)
            }
            Ok(Err(e)) => {
                self.metrics.git_fetch_error();
                // With its cause: "fetching branch main" alone says nothing
                // an operator can act on. Causes are scrubbed of secrets.
                let e = format!("{:#}", anyhow::Error::new(e));
                tracing::warn!(
                    "fetching the config repo failed, keeping the last good commit: {e}"
                );
                self.status.write().repo.last_fetch_error = Some(e);
                None
            }
            Err(e) => {
                tracing::error!("the fetch task ended abnormally: {e}");
                None
            }
        }
    }

    /// Renders `head`, re-rendering only apps whose inputs changed. Apps
    /// and environments that don't render keep their last good version.
    /// Returns the environments whose desired state changed.
    async fn render(
        &mut self,
        head: &str,
    ) -> (BTreeSet<EnvName>, BTreeMap<EnvName, BTreeSet<AppPath>>) {
        if let (Some(applied), Ok(h)) = (self.applied, git2::Oid::from_str(head)) {
            if !self.cfg.allow_rewind
                && applied != h
                && !self.mirror.is_descendant(h, applied).unwrap_or(false)
            {
                let msg = format!(
                    "refusing to rewind: {head} does not descend from {applied}, the commit last applied (a force-push?); restart with --allow-rewind to deploy it"
                );
                tracing::error!("{msg}");
                self.repo_errors = vec![msg];
                return Default::default();
            }
        }
        let git_dir = self.mirror.git_dir().to_path_buf();
        let prefix = self.cfg.prefix.clone();
        let head_owned = head.to_string();
        // Handed over, not copied: unchanged apps move into the new state.
        let previous = std::mem::take(&mut self.desired);
        let envs_filter = self.cfg.envs.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            render_incremental(
                &git_dir,
                &prefix,
                &head_owned,
                previous,
                envs_filter.as_ref(),
            )
        })
        .await;
        let Ok(outcome) = outcome else {
            tracing::error!("the render task ended abnormally");
            return Default::default();
        };
        match outcome {
            Err((diags, previous)) => {
                self.desired = previous;
                // pacer.yaml or an environment file is broken: everything
                // stays at the last good commit.
                self.repo_errors = diags.iter().map(|d| d.to_string()).collect();
                tracing::warn!(commit = %head, problems = diags.len(), "the commit does not load; keeping the last good one");
                Default::default()
            }
            Ok(r) => {
                self.rendered_at = Some(head.to_string());
                self.repo_errors.clear();
                self.status.write().repo.last_good = Some(head.to_string());
                self.desired = r.envs.into_iter().map(|(e, d)| (e, Arc::new(d))).collect();
                self.invalid = r.invalid;
                if self.known_baselines.len() > 100_000 {
                    self.known_baselines.clear();
                }
                self.known_baselines.extend(r.replaced);
                (r.changed, r.rerendered)
            }
        }
    }

    /// Plans and starts the changed `apps` of `env` from their own live
    /// state: a few GETs instead of the whole app list. Failures are left to
    /// the full pass, which follows at once.
    async fn fast_apply(&mut self, env: &str, apps: &BTreeSet<AppPath>, head: &str) {
        let Some(full) = self.desired.get(env).cloned() else {
            return;
        };
        if !(full.settings.policy.auto_apply || self.cfg.apply_all) {
            return;
        }
        let Some(url) = self
            .cfg
            .marathon_url
            .clone()
            .or_else(|| full.settings.marathon.clone())
        else {
            return;
        };
        let Some(client) = self.client_for(&url) else {
            return;
        };
        let subset = Arc::new(render::DesiredEnv {
            settings: full.settings.clone(),
            apps: apps
                .iter()
                .filter_map(|a| Some((a.clone(), full.apps.get(a)?.clone())))
                .collect(),
        });
        let mut snap = gather::Snapshot {
            apps: BTreeMap::new(),
            deployments: match client.deployments().await {
                Ok(d) => d,
                Err(_) => return,
            },
        };
        for app in subset.apps.values() {
            match client.get_app_raw(&app.id).await {
                Ok(Some(raw)) => {
                    snap.apps.insert(app.id.clone(), raw);
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
        let loc = RepoLocation::bare(self.mirror.git_dir(), &self.cfg.prefix);
        let Ok(mut observed) = gather::observe_in(
            &client,
            &mut snap,
            Some(&loc),
            &subset,
            &self.known_baselines,
            &mut self.caches,
        )
        .await
        else {
            return;
        };
        observed.served_hot = subset
            .apps
            .values()
            .filter_map(|a| Some((a.id.clone(), self.served_hot.get(&a.id)?.clone())))
            .collect();
        observed.retry = self.retry.clone();
        if !self.cfg.allow_rewind && self.rewinds(head, &observed).is_some() {
            return;
        }
        let p = plan::plan(&subset, &observed);
        self.start_apply(env, head, &client, &subset, &observed, &p);
    }

    /// Starts the acting steps of `p` that aren't already running, in the
    /// background. Returns the ids started.
    fn start_apply(
        &mut self,
        env: &str,
        head: &str,
        client: &MarathonClient,
        desired: &Arc<render::DesiredEnv>,
        observed: &plan::Observed,
        p: &plan::Plan,
    ) -> BTreeSet<String> {
        let inflight = self.inflight.lock().clone();
        let to_run: Vec<plan::Step> = p
            .steps
            .iter()
            .filter(|s| s.action.acts() || matches!(s.action, Action::Wait { ours: true, .. }))
            .filter(|s| !inflight.contains(&s.id))
            .cloned()
            .collect();
        let started: BTreeSet<String> = to_run.iter().map(|s| s.id.clone()).collect();
        if to_run.is_empty() {
            return started;
        }
        self.inflight.lock().extend(started.iter().cloned());
        let run = plan::Plan {
            env: p.env.clone(),
            group: p.group.clone(),
            steps: to_run,
        };
        let (client, desired, observed, opts) = (
            client.clone(),
            desired.clone(),
            observed.clone(),
            self.cfg.apply.clone(),
        );
        let (done, wake) = (self.done_tx.clone(), self.wake.clone());
        let (env, head) = (env.to_string(), head.to_string());
        // Deployments are followed in the background: a ten-minute
        // rollout in one environment doesn't hold up the others.
        tokio::spawn(async move {
            let results = apply::apply(
                &client,
                &run,
                &desired,
                &observed,
                &opts,
                Arc::new(LogProgress),
            )
            .await;
            let _ = done.send(Finished {
                env,
                head,
                desired,
                steps: run.steps,
                results,
            });
            // Record the outcome now, not at the next poll.
            let _ = wake.try_send(Trigger::Poll);
        });
        started
    }

    async fn reconcile_env(
        &mut self,
        env: &str,
        client: &MarathonClient,
        snap: &mut gather::Snapshot,
        head: &str,
    ) -> bool {
        let Some(desired) = self.desired.get(env).cloned() else {
            return true;
        };
        let loc = RepoLocation::bare(self.mirror.git_dir(), &self.cfg.prefix);
        let mut observed = match gather::observe_in(
            client,
            snap,
            Some(&loc),
            &desired,
            &self.known_baselines,
            &mut self.caches,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => {
                self.metrics.marathon_error();
                self.env_error(env, &format!("reading Marathon: {e}"));
                return false;
            }
        };
        // The config server hands out the current hot files from the start;
        // only later changes are hot updates.
        for app in desired.apps.values() {
            self.served_hot
                .entry(app.id.clone())
                .or_insert_with(|| plan::served_digest(app));
        }
        observed.served_hot = desired
            .apps
            .values()
            .filter_map(|a| Some((a.id.clone(), self.served_hot.get(&a.id)?.clone())))
            .collect();
        observed.retry = self.retry.clone();
        let mut p = plan::plan(&desired, &observed);
        // An app that doesn't render is still in Git. A daemon that never
        // saw it render (just restarted) has no desired version of it, and
        // the plan prunes it: never delete it for a typo (found by the e2e
        // test `a_daemon_restarted_on_a_broken_app_does_not_prune_it`).
        if let Some(invalid) = self.invalid.get(env) {
            let by_id: BTreeMap<String, &AppPath> = invalid
                .keys()
                .map(|a| (desired.settings.app_id(a), a))
                .collect();
            for step in &mut p.steps {
                if let Some(app) = by_id.get(&step.id) {
                    if matches!(step.action, Action::Delete) {
                        step.action = Action::Unmanaged;
                    }
                    step.app = Some((*app).clone());
                }
            }
        }
        // After a restart the daemon has no memory of what it applied; the
        // live apps' `pacer.commit` labels say it instead.
        let rewind = if self.cfg.allow_rewind {
            None
        } else {
            self.rewinds(head, &observed)
        };
        if let Some(msg) = &rewind {
            tracing::error!(env = %env, "{msg}");
        }
        let auto_apply =
            (desired.settings.policy.auto_apply || self.cfg.apply_all) && rewind.is_none();
        let inflight = self.inflight.lock().clone();
        let started = if auto_apply {
            self.start_apply(env, head, client, &desired, &observed, &p)
        } else {
            BTreeSet::new()
        };
        let now = chrono::Utc::now();
        // The desired state comes from the newest commit that rendered, not
        // from a head that doesn't load or is a refused rewind.
        let reconciled_at = self.rendered_at.as_deref().unwrap_or(head).to_string();
        let mut s = self.status.write();
        let e = s.environments.entry(env.to_string()).or_default();
        e.group = desired.settings.group.clone();
        e.commit = Some(reconciled_at);
        e.last_sync = Some(now.to_rfc3339());
        e.errors = self.repo_errors.clone();
        e.errors.extend(rewind);
        let no_problems = BTreeMap::new();
        let invalid = self.invalid.get(env).unwrap_or(&no_problems);
        let mut apps: BTreeMap<AppPath, AppStatus> = BTreeMap::new();
        for step in &p.steps {
            let key = step.app.clone().unwrap_or_else(|| step.id.clone());
            let live_commit = observed
                .apps
                .get(&step.id)
                .and_then(|l| l.label(render::labels::COMMIT))
                .map(String::from);
            let previous = e.apps.get(&key).and_then(|a| a.last.clone());
            let mut sync = step.action.sync_status();
            // The deployment still running after a rollback at this commit
            // is the rollback itself: the app failed; nothing is in progress.
            let rolled_back_here = previous.as_ref().is_some_and(|l| {
                matches!(l.outcome, Outcome::RolledBack | Outcome::Failed) && l.commit == head
            });
            if started.contains(&step.id) || inflight.contains(&step.id) {
                sync = SyncStatus::Progressing;
            } else if rolled_back_here && matches!(step.action, Action::Wait { ours: false, .. }) {
                sync = SyncStatus::Failed;
            }
            let errors = invalid.get(&key).cloned().unwrap_or_default();
            if !errors.is_empty() {
                sync = SyncStatus::Invalid;
            }
            apps.insert(
                key,
                AppStatus {
                    id: step.id.clone(),
                    sync,
                    live_commit,
                    last: previous,
                    errors,
                },
            );
        }
        // Apps that never rendered have no step: list them with their problems.
        for (app, errors) in invalid {
            apps.entry(app.clone()).or_insert_with(|| AppStatus {
                id: desired.settings.app_id(app),
                sync: SyncStatus::Invalid,
                live_commit: None,
                last: None,
                errors: errors.clone(),
            });
        }
        e.apps = apps;
        let counts = sync_counts(e);
        drop(s);
        self.metrics.set_apps(env, &counts);
        self.metrics.synced(env, now.timestamp() as f64);
        true
    }

    /// Takes in the results of a background apply: each app's outcome,
    /// counted in the metrics and shown in the status.
    fn record(&mut self, f: Finished) {
        // Released here, at the start of a cycle, not when the task ends: a
        // Marathon snapshot taken before the task ended still shows the old
        // app, and would have it deployed a second time.
        {
            let mut set = self.inflight.lock();
            for step in &f.steps {
                set.remove(&step.id);
            }
        }
        let now = chrono::Utc::now();
        let mut s = self.status.write();
        let e = s.environments.entry(f.env.clone()).or_default();
        for r in &f.results {
            self.metrics.deployment(&f.env, r.outcome);
            self.retry.remove(&r.id);
            let step = f.steps.iter().find(|s| s.id == r.id);
            let app = f.desired.apps.values().find(|a| a.id == r.id);
            let sync = match r.outcome {
                Outcome::Succeeded => SyncStatus::InSync,
                Outcome::Hot => {
                    if let Some(a) = app {
                        self.served_hot.insert(a.id.clone(), plan::served_digest(a));
                    }
                    SyncStatus::InSync
                }
                Outcome::Failed | Outcome::RolledBack => SyncStatus::Failed,
            };
            // After a full PUT that succeeded, Marathon runs the desired
            // app's commit label; a scale or a hot update keeps the old one,
            // as Marathon does.
            let full_put = step.is_some_and(|s| {
                matches!(s.action, Action::Create | Action::Drifted { heal: true, .. })
                    || matches!(&s.action, Action::Update { class, .. } if !matches!(class, crate::diff::Class::Scale | crate::diff::Class::Hot))
            });
            let new_commit = app
                .filter(|_| full_put && r.outcome == Outcome::Succeeded)
                .and_then(|a| {
                    a.marathon
                        .get("labels")?
                        .get(render::labels::COMMIT)?
                        .as_str()
                        .map(String::from)
                });
            let key = r.app.clone().unwrap_or_else(|| r.id.clone());
            let entry = e.apps.entry(key).or_insert_with(|| AppStatus {
                id: r.id.clone(),
                sync,
                live_commit: None,
                last: None,
                errors: Vec::new(),
            });
            if entry.errors.is_empty() {
                entry.sync = sync;
            }
            if let Some(c) = new_commit {
                entry.live_commit = Some(c);
            }
            if let Ok(commit) = git2::Oid::from_str(&f.head) {
                self.records
                    .push((commit, notes::Record::of(&f.env, r, now)));
            }
            entry.last = Some(LastAction {
                outcome: r.outcome,
                commit: f.head.clone(),
                at: now.to_rfc3339(),
                deployment_id: r.deployment_id.clone(),
                message: r.message.clone(),
            });
        }
        let counts = sync_counts(e);
        drop(s);
        self.metrics.set_apps(&f.env, &counts);
    }
}

fn sync_counts(e: &super::status::EnvStatus) -> BTreeMap<SyncStatus, u64> {
    let mut counts: BTreeMap<SyncStatus, u64> = BTreeMap::new();
    for a in e.apps.values() {
        *counts.entry(a.sync).or_default() += 1;
    }
    counts
}

/// What an incremental render produced.
struct Rendered {
    envs: BTreeMap<EnvName, render::DesiredEnv>,
    /// Apps that don't render at this commit, with their problems.
    invalid: BTreeMap<EnvName, BTreeMap<AppPath, Vec<render::Diagnostic>>>,
    /// Environments whose desired state changed.
    changed: BTreeSet<EnvName>,
    /// Apps that rendered anew, per environment.
    rerendered: BTreeMap<EnvName, BTreeSet<AppPath>>,
    /// id → (commit, definition) of the versions re-rendered apps replaced.
    replaced: BTreeMap<String, (String, serde_json::Value)>,
}

type PreviousState = BTreeMap<EnvName, Arc<render::DesiredEnv>>;

/// Renders the repo at `head`, moving over `previous` apps whose inputs are
/// unchanged. Fails only when the repo as a whole doesn't load, and then
/// hands `previous` back untouched.
fn render_incremental(
    git_dir: &std::path::Path,
    prefix: &str,
    head: &str,
    previous: PreviousState,
    envs_filter: Option<&BTreeSet<EnvName>>,
) -> Result<Rendered, (Vec<render::Diagnostic>, PreviousState)> {
    let loc = RepoLocation::bare(git_dir, prefix);
    let snap: Arc<Snapshot> = match loc.at_rev(head) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            return Err((
                vec![render::Diagnostic::file("(repo)", e.to_string())],
                previous,
            ));
        }
    };
    let mut load_diags = Diagnostics::default();
    let repo = match render::Repo::load(snap, &mut load_diags) {
        Some(r) if load_diags.is_empty() => r,
        _ => return Err((load_diags.finish(), previous)),
    };
    let mut out = Rendered {
        envs: BTreeMap::new(),
        invalid: BTreeMap::new(),
        changed: BTreeSet::new(),
        replaced: BTreeMap::new(),
        rerendered: BTreeMap::new(),
    };
    let envs: Vec<EnvName> = repo
        .envs
        .keys()
        .filter(|e| envs_filter.is_none_or(|f| f.contains(*e)))
        .cloned()
        .collect();
    // A background apply may still hold an environment; then it is copied.
    let mut previous: BTreeMap<EnvName, render::DesiredEnv> = previous
        .into_iter()
        .map(|(e, d)| (e, Arc::try_unwrap(d).unwrap_or_else(|d| (*d).clone())))
        .collect();
    // Per app, which environments need a fresh render.
    let mut todo: BTreeMap<AppPath, Vec<EnvName>> = BTreeMap::new();
    // The versions being re-rendered, kept until their replacements render.
    let mut stale: BTreeMap<(EnvName, AppPath), RenderedApp> = BTreeMap::new();
    for env in &envs {
        let mut prev = previous.remove(env);
        if prev.as_ref().is_none_or(|p| p.settings != repo.envs[env]) {
            out.changed.insert(env.clone());
        }
        let mut apps = BTreeMap::new();
        for app in repo.apps.keys() {
            let old = prev.as_mut().and_then(|p| p.apps.remove(app));
            match old {
                Some(old) if old.inputs == repo.inputs(env, app) => {
                    apps.insert(app.clone(), old);
                }
                old => {
                    if let Some(old) = old {
                        stale.insert((env.clone(), app.clone()), old);
                    }
                    out.changed.insert(env.clone());
                    todo.entry(app.clone()).or_default().push(env.clone());
                }
            }
        }
        // Apps left over are gone from Git.
        if prev.is_some_and(|p| !p.apps.is_empty()) {
            out.changed.insert(env.clone());
        }
        out.envs.insert(
            env.clone(),
            render::DesiredEnv {
                settings: repo.envs[env].clone(),
                apps,
            },
        );
    }
    for (app, app_envs) in todo {
        let pairs: Vec<(EnvName, Vec<AppPath>)> = app_envs
            .iter()
            .map(|e| (e.clone(), vec![app.clone()]))
            .collect();
        let mut diags = Diagnostics::default();
        let d = render::render_pairs(&repo, &pairs, &mut diags);
        if diags.is_empty() {
            for (env, e) in d.envs {
                let target = out.envs.get_mut(&env).expect("inserted above");
                for (name, a) in e.apps {
                    if let Some(old) = stale.remove(&(env.clone(), name.clone())) {
                        let commit = old
                            .marathon
                            .get("labels")
                            .and_then(|l| l.get(render::labels::COMMIT))
                            .and_then(|c| c.as_str())
                            .unwrap_or("")
                            .to_string();
                        out.replaced.insert(old.id.clone(), (commit, old.marathon));
                    }
                    out.rerendered
                        .entry(env.clone())
                        .or_default()
                        .insert(name.clone());
                    target.apps.insert(name, a);
                }
            }
        } else {
            let diags = diags.finish();
            for env in app_envs {
                // Keep the last good version running.
                if let Some(old) = stale.remove(&(env.clone(), app.clone())) {
                    out.envs
                        .get_mut(&env)
                        .expect("inserted above")
                        .apps
                        .insert(app.clone(), old);
                }
                out.invalid
                    .entry(env)
                    .or_default()
                    .insert(app.clone(), diags.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    use crate::source::remote::redact_url;

    #[test]
    fn credentials_are_cut_from_urls() {
        assert_eq!(
            redact_url("https://x-access-token:s3cr3t@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(redact_url("ssh://git@host/r.git"), "ssh://host/r.git");
        assert_eq!(redact_url("file:///tmp/r.git"), "file:///tmp/r.git");
    }
}
