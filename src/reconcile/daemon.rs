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
    pub apply: apply::Options,
    pub webhook_secret: Option<Secret<String>>,
    pub allow_rewind: bool,
    /// Apply every environment whatever its policy (the demo does).
    pub apply_all: bool,
}

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
    desired: BTreeMap<EnvName, render::DesiredEnv>,
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
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    mut cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Trigger>(64);
    let status = Arc::new(RwLock::new(Status::default()));
    {
        let mut s = status.write();
        s.repo.url = redact_url(&cfg.remote.url);
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
    println!("pacer serve: listening on http://{addr}");

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
                status.write().repo.last_fetch_error = Some(e.to_string());
                tracing::warn!("cannot open the config repo mirror: {e}; retrying");
                tokio::time::sleep(cfg.poll.min(Duration::from_secs(5))).await;
            }
        }
    };
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
    };

    tokio::pin!(shutdown);
    let mut wait = Duration::ZERO;
    let mut backoff = Duration::from_millis(500);
    let mut trigger = Trigger::Poll;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(wait) => {}
            t = rx.recv() => {
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
        while let Ok(t) = rx.try_recv() {
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
        trigger = Trigger::Poll;
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(())
}

/// `https://user:token@host/x` → `https://host/x`: credentials never reach
/// status pages or logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => {
            format!("{}{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Daemon {
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
        let fetched = self.fetch().await;
        let head = match &fetched {
            Some(h) => Some(h.clone()),
            None => self.rendered_at.clone(),
        };
        let Some(head) = head else { return false };
        let changed_envs = if self.rendered_at.as_deref() != Some(head.as_str()) {
            self.render(&head).await
        } else {
            BTreeSet::new()
        };
        let mut healthy = fetched.is_some();
        // Environments whose desired state changed go first, so a pushed
        // commit reaches Marathon before the drift checks of the others.
        let mut order: Vec<EnvName> = self.desired.keys().cloned().collect();
        order.sort_by_key(|e| !changed_envs.contains(e));
        let mut snapshots: BTreeMap<String, Option<Arc<gather::Snapshot>>> = BTreeMap::new();
        for env in order {
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
            let snap = match snapshots.get(&url) {
                Some(s) => s.clone(),
                None => {
                    let s = match gather::snapshot(&client).await {
                        Ok(s) => Some(Arc::new(s)),
                        Err(e) => {
                            self.metrics.marathon_error();
                            tracing::warn!(env = %env, "Marathon at {url} is not answering: {e}");
                            self.env_error(&env, &format!("Marathon at {url}: {e}"));
                            None
                        }
                    };
                    snapshots.insert(url.clone(), s.clone());
                    s
                }
            };
            let Some(snap) = snap else {
                healthy = false;
                continue;
            };
            self.reached_marathon = true;
            if !self.reconcile_env(&env, &client, &snap, &head).await {
                healthy = false;
            }
            self.metrics
                .observe_reconcile(&env, env_started.elapsed().as_secs_f64());
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
                tracing::warn!(
                    "fetching the config repo failed, keeping the last good commit: {e}"
                );
                self.status.write().repo.last_fetch_error = Some(e.to_string());
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
    async fn render(&mut self, head: &str) -> BTreeSet<EnvName> {
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
                return BTreeSet::new();
            }
        }
        let git_dir = self.mirror.git_dir().to_path_buf();
        let prefix = self.cfg.prefix.clone();
        let head_owned = head.to_string();
        let previous: BTreeMap<EnvName, BTreeMap<AppPath, RenderedApp>> = self
            .desired
            .iter()
            .map(|(e, d)| (e.clone(), d.apps.clone()))
            .collect();
        let envs_filter = self.cfg.envs.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            render_incremental(
                &git_dir,
                &prefix,
                &head_owned,
                &previous,
                envs_filter.as_ref(),
            )
        })
        .await;
        let Ok(outcome) = outcome else {
            return BTreeSet::new();
        };
        match outcome {
            Err(diags) => {
                // pacer.yaml or an environment file is broken: everything
                // stays at the last good commit.
                self.repo_errors = diags.iter().map(|d| d.to_string()).collect();
                tracing::warn!(commit = %head, problems = diags.len(), "the commit does not load; keeping the last good one");
                BTreeSet::new()
            }
            Ok(r) => {
                self.rendered_at = Some(head.to_string());
                self.repo_errors.clear();
                self.status.write().repo.last_good = Some(head.to_string());
                let mut changed = BTreeSet::new();
                for (env, desired) in r.envs {
                    let inputs = |d: &render::DesiredEnv| {
                        d.apps
                            .iter()
                            .map(|(k, a)| (k.clone(), a.inputs.clone()))
                            .collect::<BTreeMap<_, _>>()
                    };
                    if self.desired.get(&env).map(inputs) != Some(inputs(&desired)) {
                        changed.insert(env.clone());
                    }
                    self.desired.insert(env, desired);
                }
                self.invalid = r.invalid;
                changed
            }
        }
    }

    async fn reconcile_env(
        &mut self,
        env: &str,
        client: &MarathonClient,
        snap: &gather::Snapshot,
        head: &str,
    ) -> bool {
        let Some(desired) = self.desired.get(env).cloned() else {
            return true;
        };
        let loc = RepoLocation::bare(self.mirror.git_dir(), &self.cfg.prefix);
        let mut observed =
            match gather::observe_in(client, snap, Some(&loc), &desired, &mut self.caches).await {
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
        observed.served_hot = self.served_hot.clone();
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
        let acting =
            |s: &plan::Step| s.action.acts() || matches!(s.action, Action::Wait { ours: true, .. });
        let results = if auto_apply && p.steps.iter().any(acting) {
            // The status is written once the apply ends, which may be many
            // minutes; until then it showed the previous run's verdict
            // (`inSync` while a deployment ran; found by the e2e test
            // `the_status_shows_a_deployment_in_progress`).
            {
                let mut s = self.status.write();
                let e = s.environments.entry(env.to_string()).or_default();
                for step in p.steps.iter().filter(|s| acting(s)) {
                    let key = step.app.clone().unwrap_or_else(|| step.id.clone());
                    e.apps
                        .entry(key)
                        .or_insert_with(|| AppStatus {
                            id: step.id.clone(),
                            sync: SyncStatus::Progressing,
                            live_commit: None,
                            last: None,
                            errors: Vec::new(),
                        })
                        .sync = SyncStatus::Progressing;
                }
            }
            apply::apply(
                client,
                &p,
                &desired,
                &observed,
                &self.cfg.apply,
                Arc::new(LogProgress),
            )
            .await
        } else {
            Vec::new()
        };
        let now = chrono::Utc::now();
        let mut ok = true;
        // The desired state comes from the newest commit that rendered, not
        // from a head that doesn't load or is a refused rewind: the status
        // said the environment ran the broken head (found by the e2e test
        // `a_commit_breaking_pacer_yaml_keeps_everything_at_the_last_good_one`).
        let reconciled_at = self.rendered_at.as_deref().unwrap_or(head).to_string();
        {
            let mut s = self.status.write();
            let e = s.environments.entry(env.to_string()).or_default();
            e.group = desired.settings.group.clone();
            e.commit = Some(reconciled_at.clone());
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
                let result = results.iter().find(|r| r.id == step.id);
                // `observed` was read before the apply: after a full PUT that
                // succeeded, Marathon runs the desired app's commit label now,
                // not the old one (found by the e2e test: the status showed
                // the previous commit until the next poll). A scale or a hot
                // update keeps the old label, as Marathon does.
                let full_put = matches!(
                    step.action,
                    Action::Create | Action::Drifted { heal: true, .. }
                ) || matches!(&step.action, Action::Update { class, .. }
                    if !matches!(class, crate::diff::Class::Scale | crate::diff::Class::Hot));
                let live_commit = match result {
                    Some(r) if full_put && r.outcome == Outcome::Succeeded => desired
                        .apps
                        .values()
                        .find(|a| a.id == step.id)
                        .and_then(|a| a.marathon.get("labels")?.get(render::labels::COMMIT))
                        .and_then(|v| v.as_str())
                        .map(String::from)
                        .or(live_commit),
                    _ => live_commit,
                };
                let mut sync = step.action.sync_status();
                let last = match result {
                    Some(r) => {
                        self.metrics.deployment(env, r.outcome);
                        match r.outcome {
                            Outcome::Succeeded => sync = SyncStatus::InSync,
                            Outcome::Hot => {
                                sync = SyncStatus::InSync;
                                if let Some(a) = desired.apps.values().find(|a| a.id == step.id) {
                                    self.served_hot.insert(a.id.clone(), plan::served_digest(a));
                                }
                            }
                            Outcome::Failed | Outcome::RolledBack => {
                                sync = SyncStatus::Failed;
                                ok = ok && r.outcome == Outcome::RolledBack;
                            }
                        }
                        self.retry.remove(&step.id);
                        Some(LastAction {
                            outcome: r.outcome,
                            commit: reconciled_at.clone(),
                            at: now.to_rfc3339(),
                            deployment_id: r.deployment_id.clone(),
                            message: r.message.clone(),
                        })
                    }
                    None => previous,
                };
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
                        last,
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
            let mut counts: BTreeMap<SyncStatus, u64> = BTreeMap::new();
            for a in e.apps.values() {
                *counts.entry(a.sync).or_default() += 1;
            }
            self.metrics.set_apps(env, &counts);
            self.metrics.synced(env, now.timestamp() as f64);
        }
        ok
    }
}

/// What an incremental render produced.
struct Rendered {
    envs: BTreeMap<EnvName, render::DesiredEnv>,
    /// Apps that don't render at this commit, with their problems.
    invalid: BTreeMap<EnvName, BTreeMap<AppPath, Vec<render::Diagnostic>>>,
}

/// Renders the repo at `head`, reusing `previous` apps whose inputs are
/// unchanged. Fails only when the repo as a whole doesn't load.
fn render_incremental(
    git_dir: &std::path::Path,
    prefix: &str,
    head: &str,
    previous: &BTreeMap<EnvName, BTreeMap<AppPath, RenderedApp>>,
    envs_filter: Option<&BTreeSet<EnvName>>,
) -> Result<Rendered, Vec<render::Diagnostic>> {
    let loc = RepoLocation::bare(git_dir, prefix);
    let snap: Arc<Snapshot> = match loc.at_rev(head) {
        Ok(s) => Arc::new(s),
        Err(e) => return Err(vec![render::Diagnostic::file("(repo)", e.to_string())]),
    };
    let mut load_diags = Diagnostics::default();
    let Some(repo) = render::Repo::load(snap, &mut load_diags) else {
        return Err(load_diags.finish());
    };
    if !load_diags.is_empty() {
        return Err(load_diags.finish());
    }
    let mut out = Rendered {
        envs: BTreeMap::new(),
        invalid: BTreeMap::new(),
    };
    let envs: Vec<EnvName> = repo
        .envs
        .keys()
        .filter(|e| envs_filter.is_none_or(|f| f.contains(*e)))
        .cloned()
        .collect();
    // Per app, which environments need a fresh render.
    let mut todo: BTreeMap<AppPath, Vec<EnvName>> = BTreeMap::new();
    for env in &envs {
        let mut apps = BTreeMap::new();
        for app in repo.apps.keys() {
            match previous.get(env).and_then(|p| p.get(app)) {
                Some(prev) if prev.inputs == repo.inputs(env, app) => {
                    apps.insert(app.clone(), prev.clone());
                }
                _ => todo.entry(app.clone()).or_default().push(env.clone()),
            }
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
                if let Some(a) = e.apps.get(&app) {
                    out.envs
                        .get_mut(&env)
                        .expect("inserted above")
                        .apps
                        .insert(app.clone(), a.clone());
                }
            }
        } else {
            let diags = diags.finish();
            for env in app_envs {
                // Keep the last good version running.
                if let Some(prev) = previous.get(&env).and_then(|p| p.get(&app)) {
                    out.envs
                        .get_mut(&env)
                        .expect("inserted above")
                        .apps
                        .insert(app.clone(), prev.clone());
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
    use super::*;

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
