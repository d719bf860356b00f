//! `pacer serve`: keeps every environment in Marathon equal to Git.
//!
//! One loop owns the state. Triggers (the poll timer, webhooks, retries)
//! wake it; bursts collapse into one run. Each run fetches, re-renders only
//! the apps whose inputs changed, reads each Marathon once, plans every
//! environment and, where the policy says so, applies. A broken commit, an
//! unreachable repo or Marathon never stop the loop: the last good state is
//! kept and the problem shows in `/api/v1/status` and `/metrics`.
//!
//! The loop publishes what it knows (`status::published`) and the HTTP side
//! reads only that; writes to Marathon can be paused ([`super::writer`]).
//! `cli::serve` binds the listener and opens the mirror before it starts.

use super::clients::{self, Clients};
use super::health::{self, Health};
use super::published::Publisher;
use super::records::Records;
use super::render_job::{self, short};
use super::status::{Problem, Rollout, project};
use super::writer::{Parts, Writer};
use crate::apply::{self, LogProgress};
use crate::marathon::client::MarathonClient;
use crate::model::Outcome;
use crate::model::{AppPath, Digest, EnvName, Secret};
use crate::observe::gather::{self, Caches};
use crate::plan::{self, Action};
use crate::record::notes;
use crate::render;
use crate::server::{Trigger, metrics::Metrics};
use crate::source::RepoLocation;
use crate::source::remote::{Mirror, RemoteSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// An operator's apply of a manual environment's plan.
mod ask;
/// Planning and applying one environment (or a push's apps first).
mod env;
/// The signed-commit gate: which environments take a new head.
mod gate;
/// Fetching, rewind checks and rendering of a new head.
mod head;
/// Live endpoints that moved: the apps that name them render again.
mod live;
/// What the loop reports: status, readiness, deployment records.
mod report;

pub struct Config {
    pub remote: RemoteSpec,
    /// The config repo's directory inside the Git repository (`""` for the top).
    pub prefix: String,
    /// Where the local mirror of the repo is kept.
    pub workdir: PathBuf,
    /// Where `pacer serve`'s start-up binds the HTTP side.
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
    /// Where deployment records go (notes on the deployed commits).
    pub records: notes::Publish,
    /// The longest a render of a new commit may take; past it, the apps
    /// not rendered stay at their last good version (see [`render_job`]).
    pub render_timeout: Duration,
    /// The HTTP side's budgets (timeouts, connection cap).
    pub http: crate::listen::Limits,
    /// Host names the HTTP side answers writes for, besides IP literals
    /// and `localhost` (`--allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// When a moved endpoint reaches the templates (`--endpoints-*`).
    pub endpoints: crate::observe::endpoints::Settings,
    /// How often every followed service is read again.
    pub endpoints_resync: Duration,
    /// Where state kept across restarts lives (`--state-dir`); `None`:
    /// beside the mirror, `<workdir>.state`.
    pub state_dir: Option<PathBuf>,
    /// A trust list from outside the repo (`--verify-signers`), with its
    /// name: it replaces the repo's in every environment with a `verify:`
    /// policy.
    pub verify_signers: Option<(String, crate::source::verify::TrustList)>,
    /// Several replicas, one writer elected on ZooKeeper (`--zk`); `None`:
    /// this replica alone writes.
    pub zk: Option<crate::ha::Settings>,
    /// The age identity sealed secrets open with (`PACER_AGE_KEY_FILE`,
    /// `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`). An app reading a secret it
    /// can't open does not render: its last good version stays.
    pub secret_keys: render::SecretKeys,
}

/// Up to this many changed apps go out before the full pass.
const FAST_PATH_APPS: usize = 64;

/// The longest wait between attempts while Marathon or Git is failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Daemon {
    cfg: Config,
    mirror: Arc<Mirror>,
    /// The working status, published to readers on each change.
    status: Arc<Publisher>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// The newest commit that loaded (pacer.yaml and environment files).
    rendered_at: Option<String>,
    /// Its files: the next commit is read from them (only the trees that
    /// differ).
    snapshot: Option<Arc<crate::source::Snapshot>>,
    /// Per environment and app: the newest version that rendered.
    desired: BTreeMap<EnvName, Arc<render::DesiredEnv>>,
    /// The commit the environments were last reconciled at; a head that
    /// doesn't descend from it is a rewind.
    applied: Option<git2::Oid>,
    caches: Caches,
    /// What the config server hands out: the hot files' digest per app.
    served_hot: BTreeMap<String, Digest>,
    retry: BTreeSet<String>,
    /// One Marathon client per URL.
    clients: Clients,
    reached_marathon: bool,
    /// Apps that don't render at the newest commit, with their problems.
    invalid: BTreeMap<EnvName, BTreeMap<AppPath, Vec<render::Diagnostic>>>,
    /// A commit that doesn't load (pacer.yaml, an environment file), with
    /// its problems: not rendered again, and shown while it is the head.
    refused: Option<(String, Vec<Problem>)>,
    /// Why the head is a refused rewind, while it is one.
    rewind: Option<String>,
    /// Why the newest commit fetched is not the one running (empty when it
    /// is): shown on the repo and every environment.
    head_problems: Vec<Problem>,
    /// Marathons that didn't answer this cycle: (URL, error).
    unreachable: Vec<(String, String)>,
    /// (head, commit) → whether head descends from commit.
    descends: std::collections::HashMap<(String, String), bool>,
    /// Apps whose steps run in the background right now. A deployment can
    /// take minutes; the loop goes on reconciling everything else meanwhile.
    inflight: Arc<parking_lot::Mutex<BTreeSet<String>>>,
    /// Finished steps, reported by the background applies.
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    /// id → (commit, definition) of app versions a newer commit replaced:
    /// what Git said at the commit a live app still runs, without
    /// rendering that commit again.
    known_baselines: BTreeMap<String, (String, serde_json::Value)>,
    /// What wakes the loop: polls, webhooks, retries, finished applies.
    triggers: mpsc::Receiver<Trigger>,
    /// Whether writes to Marathon are paused.
    writer: Writer,
    /// A push or retry was taken after the pass had gone by: another pass
    /// follows at once.
    pass_again: bool,
    /// Deployment records (with the commit each annotates) not yet
    /// written and pushed.
    records: Records,
    /// The config server, when it runs: it follows hot updates to every
    /// running task.
    delivery: Option<Arc<crate::delivery::Server>>,
    /// Follows the live endpoints templates name.
    follower: super::endpoints::Handle,
    /// The endpoints the desired state was rendered with.
    live: Arc<crate::model::endpoints::Endpoints>,
    /// Releases of held endpoints taken while the loop was busy.
    release_later: Vec<String>,
    /// Environments an operator asked to apply once (`POST /api/v1/apply`):
    /// the digest of the plan they approved, and when.
    apply_asked: BTreeMap<EnvName, (String, Instant)>,
    /// Apps kept at their last good version because a service they name
    /// could not be read yet: tried again when endpoints move.
    unread_invalid: BTreeSet<(EnvName, AppPath)>,
    /// Which environments take a new head (signed commits).
    gate: gate::Gate,
    /// With `--zk`: a push that reached this replica while it follows
    /// wakes the leader.
    wake_leader: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The leader's lease (`--zk`): checked before records are pushed, as
    /// every Marathon client checks it before a write.
    fence: crate::model::fence::Fence,
}

/// The results of one background apply.
struct Finished {
    env: EnvName,
    head: String,
    desired: Arc<render::DesiredEnv>,
    steps: Vec<plan::Step>,
    results: Vec<apply::StepResult>,
}

/// Marathon clients with the command line's settings; `events`: follow
/// deployments through the event stream.
fn clients_of(cfg: &Config, events: bool) -> Clients {
    Clients::new(
        cfg.marathon_url.clone(),
        clients::auth(
            cfg.marathon_token.as_ref(),
            cfg.marathon_user.as_deref(),
            cfg.marathon_password.as_ref(),
        ),
        cfg.marathon_timeout,
        events,
    )
}

/// Runs the reconcile loop until `shutdown` completes. `pacer serve`'s
/// start-up (`cli::serve`) has bound the HTTP side, which reads what this
/// publishes through `parts`, and opened the mirror.
pub async fn run(
    cfg: Config,
    parts: Parts,
    mirror: Arc<Mirror>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let Parts {
        status,
        metrics,
        health,
        writer,
        // Held for the loop's life: with every sender gone, `recv` would
        // answer at once, and the loop would spin.
        triggers_tx: _triggers_tx,
        triggers: rx,
        delivery,
        fence,
        wake_leader,
    } = parts;
    tokio::pin!(shutdown);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let clients = clients_of(&cfg, cfg.marathon_events).fenced(fence.clone());
    let records = Records::new(cfg.records);
    let follower = live::start(&cfg, status.reader());
    let live = follower.latest().endpoints.clone();
    let state_dir = crate::delivery::state_dir(cfg.state_dir.as_deref(), &cfg.workdir);
    let gate = gate::Gate::new(
        Some(state_dir.join("verified.json")),
        cfg.verify_signers.clone(),
    );
    let mut d = Daemon {
        cfg,
        mirror,
        status,
        metrics,
        health,
        rendered_at: None,
        snapshot: None,
        desired: BTreeMap::new(),
        applied: None,
        caches: Caches::default(),
        served_hot: BTreeMap::new(),
        retry: BTreeSet::new(),
        clients,
        reached_marathon: false,
        invalid: BTreeMap::new(),
        refused: None,
        rewind: None,
        head_problems: Vec::new(),
        unreachable: Vec::new(),
        descends: Default::default(),
        inflight: Default::default(),
        done_tx,
        done_rx,
        known_baselines: BTreeMap::new(),
        triggers: rx,
        writer,
        records,
        pass_again: false,
        delivery,
        follower,
        live,
        release_later: Vec::new(),
        apply_asked: BTreeMap::new(),
        unread_invalid: BTreeSet::new(),
        gate,
        wake_leader,
        fence,
    };

    let mut wait = Duration::ZERO;
    let mut backoff = Duration::from_millis(500);
    let mut trigger = Trigger::Poll;
    let delivered = d.delivery.as_ref().map(|s| s.delivered_wake());
    let mut endpoints = d.follower.subscribe();
    loop {
        let next = tokio::time::Instant::now() + wait;
        let woken = loop {
            tokio::select! {
                _ = &mut shutdown => break None,
                _ = tokio::time::sleep_until(next) => break Some(None),
                t = d.triggers.recv() => {
                    // An operator's release needs no cycle: the follower
                    // lets the set through, and the change comes back as
                    // moved endpoints.
                    if let Some(Trigger::Release { service }) = t {
                        d.release(&service).await;
                        continue;
                    }
                    break Some(t);
                }
                // A background apply ended: its outcome is recorded now,
                // without a cycle. A cycle would read every app again, and
                // while it ran a push would wait for it.
                Some(f) = d.done_rx.recv() => {
                    d.record(f);
                    d.record_finished();
                    d.publish_records(None).await;
                }
                // A hot delivery ended: its record goes out now, without
                // a cycle (the next one may be an hour away).
                _ = async {
                    match &delivered {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                } => {
                    d.record_deliveries();
                    d.publish_records(None).await;
                }
                // A service's endpoints moved (or a hold began or ended):
                // the apps that name it render again, between cycles.
                Ok(()) = endpoints.changed() => {
                    tokio::select! {
                        _ = &mut shutdown => break None,
                        _ = d.endpoints_moved() => {}
                    }
                }
            }
        };
        match woken {
            None => break,
            Some(Some(t)) => trigger = t,
            Some(None) => {}
        }
        if matches!(trigger, Trigger::Webhook { .. }) {
            d.push_seen();
        }
        // A burst of webhooks is one run. Every retry in it counts: each
        // names its own apps, and keeping only the last one dropped the
        // others (found by the e2e test `retries_sent_together_are_all_kept`).
        let mut retries = Vec::new();
        if let Trigger::Retry { env, app } = &trigger {
            retries.push((env.clone(), app.clone()));
        }
        if let Trigger::Apply { env, plan } = &trigger {
            d.ask_apply(env.clone(), plan.clone());
        }
        while let Ok(t) = d.triggers.try_recv() {
            match &t {
                Trigger::Webhook { .. } => d.push_seen(),
                Trigger::Retry { env, app } => {
                    retries.push((env.clone(), app.clone()));
                    trigger = t;
                }
                Trigger::Release { service } => d.release_later.push(service.clone()),
                Trigger::Apply { env, plan } => {
                    d.ask_apply(env.clone(), plan.clone());
                    trigger = t;
                }
                _ => {}
            }
        }
        for service in std::mem::take(&mut d.release_later) {
            d.release(&service).await;
        }
        for (env, app) in &retries {
            d.mark_retry(env.as_deref(), app.as_deref());
        }
        // The idle poll is noise at info; what a cycle decides is logged
        // where it is decided.
        if matches!(trigger, Trigger::Poll) {
            tracing::debug!(%trigger, "reconciling");
        } else {
            tracing::info!(%trigger, "reconciling");
        }
        // A cycle never holds up shutdown: whatever it awaits (a render
        // past its deadline, a silent Marathon) is dropped on SIGTERM.
        let healthy = tokio::select! {
            _ = &mut shutdown => break,
            h = d.cycle() => h,
        };
        d.health.turned();
        d.health.doing("waiting for the next poll or webhook");
        wait = if healthy {
            backoff = Duration::from_millis(500);
            d.cfg.poll
        } else {
            let w = backoff.min(d.cfg.poll);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            w
        };
        // A push or a retry taken at the end of the pass gets a pass of its
        // own at once.
        if std::mem::take(&mut d.pass_again) {
            wait = Duration::ZERO;
        }
        trigger = Trigger::Poll;
    }
    // Results of applies that ended meanwhile, and records still waiting,
    // go out before the daemon does (a push that hangs doesn't hold it).
    d.record_finished();
    d.record_deliveries();
    d.records.retry_now();
    let _ = tokio::time::timeout(Duration::from_secs(10), d.publish_records(None)).await;
    Ok(())
}

impl Daemon {
    /// A push arrived here. A follower fetches it too (its status follows
    /// Git), but only the leader writes: it hears of the push through
    /// ZooKeeper, wherever in the loop this replica took it.
    fn push_seen(&self) {
        if self.writer.is_paused()
            && let Some(wake) = &self.wake_leader
        {
            wake();
        }
    }

    /// Fetches a pushed commit mid-pass and sends its changed apps out at
    /// once; the rest of the pass then works on the new head.
    async fn take_push(&mut self, head: &mut String) {
        self.push_seen();
        let started = Instant::now();
        let Some(h) = self.fetch().await else { return };
        if self.rendered_at.as_deref() == Some(h.as_str()) {
            return;
        }
        let fetched = started.elapsed();
        let (_, rerendered) = self.advance(&h).await;
        let rendered = started.elapsed();
        self.send_first(&rerendered, &h).await;
        tracing::debug!(
            fetch_ms = fetched.as_millis() as u64,
            render_ms = (rendered - fetched).as_millis() as u64,
            send_ms = (started.elapsed() - rendered).as_millis() as u64,
            "push taken mid-pass"
        );
        *head = h;
    }

    /// A push that changed a few apps reaches Marathon first through those
    /// apps alone, before the full pass reads every app.
    async fn send_first(&mut self, rerendered: &BTreeMap<EnvName, BTreeSet<AppPath>>, head: &str) {
        if rerendered.values().map(BTreeSet::len).sum::<usize>() <= FAST_PATH_APPS {
            for (env, apps) in rerendered {
                self.fast_apply(env, apps, head).await;
            }
            // The applies were spawned from this worker into a slot no other
            // worker takes from: without a yield they wait until the pass
            // next waits on I/O, which was ~190 ms of planning later at
            // 10,000 apps. Yielding lets them send their writes now.
            tokio::task::yield_now().await;
        }
    }

    /// Takes a trigger that arrived while the pass awaits something slow
    /// (reading Marathon, writing records): a push goes out at once, a
    /// retry is marked.
    pub(super) async fn take_trigger(&mut self, t: Trigger, head: &mut String) {
        match t {
            Trigger::Webhook { .. } => self.take_push(head).await,
            Trigger::Retry { env, app } => self.mark_retry(env.as_deref(), app.as_deref()),
            Trigger::Release { service } => self.release(&service).await,
            Trigger::Apply { env, plan } => self.ask_apply(env, plan),
            Trigger::Poll => {}
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
                Trigger::Release { service } => self.release_later.push(service),
                Trigger::Apply { env, plan } => self.ask_apply(env, plan),
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
        self.clients.get(url)
    }

    /// One run. Returns false when something external failed (Git or
    /// Marathon), so the next run comes sooner, with backoff.
    async fn cycle(&mut self) -> bool {
        let started = Instant::now();
        self.record_finished();
        self.record_deliveries();
        self.unreachable.clear();
        self.health.doing("fetching the config repo");
        let fetched = self.fetch().await;
        let head = match &fetched {
            Some(h) => Some(h.clone()),
            None => self.rendered_at.clone(),
        };
        let Some(head) = head else {
            self.update_readiness();
            return false;
        };
        let fetch_ms = started.elapsed().as_millis() as u64;
        let (changed_envs, rerendered) = self.advance(&head).await;
        let render_ms = started.elapsed().as_millis() as u64 - fetch_ms;
        self.send_first(&rerendered, &head).await;
        tracing::debug!(
            fetch_ms,
            render_ms,
            send_ms = started.elapsed().as_millis() as u64 - fetch_ms - render_ms,
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
            // Applies this pass spawned wait in this worker's own slot until
            // the pass yields; an environment's planning may not await at all.
            tokio::task::yield_now().await;
            // A push that arrives during a long pass goes out now, not after it.
            if self.push_arrived() {
                self.take_push(&mut head).await;
            }
            // So do moved endpoints: a pass over 10,000 apps takes a while.
            if self.endpoints_pending() {
                self.endpoints_moved().await;
            }
            let env_started = Instant::now();
            let Some(url) = self
                .clients
                .url_for(self.desired[&env].settings.marathon.as_deref())
            else {
                self.env_error(
                    &env,
                    "no Marathon URL: set `marathon:` for this environment or pass --marathon",
                );
                continue;
            };
            let Some(client) = self.client_for(&url) else {
                self.env_error(
                    &env,
                    &format!("invalid Marathon URL `{}`", crate::redact::url(&url)),
                );
                continue;
            };
            if !snapshots.contains_key(&url) {
                self.health
                    .doing(format!("reading Marathon at {}", crate::redact::url(&url)));
                // Reading every app takes a while at scale; a push that
                // arrives meanwhile is sent out while the read goes on.
                let read = gather::snapshot(&client);
                tokio::pin!(read);
                let result = loop {
                    tokio::select! {
                        r = &mut read => break r,
                        Some(t) = self.triggers.recv() => self.take_trigger(t, &mut head).await,
                    }
                };
                let s = match result {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.metrics.marathon_error();
                        let e = crate::redact::text(&e.to_string());
                        tracing::warn!(
                            env = %env,
                            "Marathon at {} is not answering: {e}",
                            crate::redact::url(&url)
                        );
                        self.unreachable.push((url.clone(), e));
                        None
                    }
                };
                snapshots.insert(url.clone(), s);
            }
            let Some(snap) = snapshots.get_mut(&url).and_then(Option::as_mut) else {
                let why = self
                    .unreachable
                    .iter()
                    .find(|(u, _)| *u == url)
                    .map_or("", |(_, e)| e.as_str())
                    .to_string();
                self.env_unreachable(&env, &url, &why);
                healthy = false;
                continue;
            };
            self.reached_marathon = true;
            self.health.doing(format!("reconciling {env}"));
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
        if healthy
            && self.rendered_at.as_deref() == Some(head.as_str())
            && let Ok(oid) = git2::Oid::from_str(&head)
        {
            self.applied = Some(oid);
        }
        self.update_readiness();
        self.health.doing("writing deployment records");
        self.publish_records(Some(&mut head)).await;
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
}
