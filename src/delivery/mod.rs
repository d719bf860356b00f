//! The config server inside `pacer serve`: running tasks prove who they
//! are, get a short-lived token, and read (and watch) their own app's
//! bundle of rendered config files.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/login` | `{"taskId","appId"}` → `{"token","expiresAt",…}`; checks in [`login`] |
//! | `POST /v1/token/renew` | a fresh token for a task Marathon still runs |
//! | `GET /v1/config[?index=N&wait=60s]` | the caller's manifest ([`bundle`]); with `index`, a blocking query |
//! | `GET /v1/config/files/{name}` | one file's content |
//! | `POST /v1/report` | what the agent holds: `{"index","failed"}` ([`report`]) |
//!
//! Every refusal is 400, 401, 403, 429 or 503 with `{"message","reason"}`, counted in
//! `pacer_config_refusals_total{reason}`; a token is never echoed or logged.
//! Git is never on the request path: manifests come from the [`bundle`]
//! tracker and file content from the published snapshot. Marathon is, for
//! logins and (at most every `--task-recheck`) to see the token's task
//! still runs.
//!
//! - [`token`]: HMAC-SHA256 tokens; [`keys`]: the signing key; `private`:
//!   the state directory and key file are ours alone.
//! - [`login`]: the login decision, pure, and every [`login::Refusal`].
//! - [`used`]: the task ids that have logged in, kept across restarts;
//!   [`used_zk`] shares them between replicas (`--zk`).
//! - [`resolve`]: a task's host as addresses; [`liveness`]: whether a
//!   token's task still runs.
//! - [`limit`]: logins and renewals per source address; `flight`: one
//!   Marathon read per app serves concurrent logins.
//! - [`handlers`]: the HTTP side; [`report`]: the agents' reports, kept
//!   in [`reports`].
//! - [`progress`]: how far a bundle has reached an app's tasks, pure;
//!   [`track`]: the hot deliveries followed to the end, for the status and
//!   the history; `deliveries`: the server's side of it.

mod browser;
pub mod bundle;
mod deliveries;
mod flight;
mod handlers;
pub mod keys;
pub mod limit;
pub mod liveness;
pub mod login;
mod private;
pub mod progress;
pub mod report;
pub mod reports;
pub mod resolve;
pub mod token;
pub mod track;
pub mod used;
pub mod used_zk;
pub mod watches;

use crate::marathon::client::{Auth, ClientConfig, MarathonClient};
use crate::status::published::Reader;
use bundle::{Bundles, Tracker};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

pub use deliveries::TaskHolds;
pub use handlers::router;

/// The operator's settings (`pacer serve` flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the signing key and the used task ids are kept; `None`: beside
    /// the mirror (`<workdir>.state`).
    pub state_dir: Option<PathBuf>,
    /// A signing key shared by replicas; `None`: one generated in `state_dir`.
    pub token_key_file: Option<PathBuf>,
    /// How soon after it starts a task must log in.
    pub login_grace: Duration,
    /// How long a token lives (renewed while its task runs).
    pub token_ttl: Duration,
    /// Whether a login must come from the task's host.
    pub check_address: bool,
    /// How often, at most, a request asks Marathon whether its task still runs.
    pub task_recheck: Duration,
    /// `--config-server-marathon`: per environment, the Marathon that
    /// vouches for its logins when `--marathon` is not given.
    pub marathons: BTreeMap<String, String>,
    /// Blocking watches waiting at once, all tasks together (half the
    /// listener's connection cap).
    pub max_watches: usize,
    /// How long a hot update may take to reach every running task before
    /// its delivery fails.
    pub delivery_timeout: Duration,
    /// Logins and renewals per source address.
    pub login_rate: limit::Rate,
    /// With `--zk`: (hosts, root) of the ZooKeeper every replica records
    /// its logins in, so that a task id logs in once across replicas.
    pub zk: Option<(String, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            state_dir: None,
            token_key_file: None,
            login_grace: Duration::from_secs(120),
            token_ttl: Duration::from_secs(900),
            check_address: true,
            task_recheck: Duration::from_secs(30),
            marathons: BTreeMap::new(),
            max_watches: 512,
            delivery_timeout: Duration::from_secs(300),
            login_rate: limit::LOGIN,
            zk: None,
        }
    }
}

/// How the config server reaches Marathon: the daemon's settings.
///
/// Only an operator-given URL vouches for a login: `pacer.yaml`'s
/// `marathon:` is the config repo's word, and a hostile committer could
/// point it at a fake Marathon that approves anything (and receives the
/// daemon's Marathon credentials).
#[derive(Clone, Debug, Default)]
pub struct MarathonAccess {
    /// `--marathon`: every environment's Marathon.
    pub url: Option<String>,
    /// `--config-server-marathon ENV=URL`: one environment's.
    pub per_env: BTreeMap<String, String>,
    pub auth: Auth,
    pub timeout: Duration,
}

/// The most tasks whose liveness is remembered; past it the memory starts
/// over (and tasks are asked about again).
const MAX_LIVENESS: usize = 100_000;

/// The config server's state, shared by its handlers.
pub struct Server {
    settings: Settings,
    marathon: MarathonAccess,
    key: token::Key,
    used: Arc<dyn used::UsedIds>,
    /// The published snapshots: file content.
    published: Reader,
    /// The manifests and their indexes.
    bundles: watch::Receiver<Arc<Bundles>>,
    clients: Mutex<HashMap<String, MarathonClient>>,
    resolver: resolve::Resolver,
    /// Per task id: when Marathon was last asked, and whether it ran then.
    liveness: Mutex<HashMap<String, (Instant, liveness::Known)>>,
    /// Logins asking Marathon at once: anyone may call `/v1/login`, and a
    /// flood of them must not become a flood of Marathon reads.
    login_checks: tokio::sync::Semaphore,
    /// Marathon's answers about an app, shared by concurrent logins.
    app_reads: flight::AppReads,
    /// Logins and renewals per source address.
    limiter: Mutex<limit::Limiter>,
    /// The watches waiting now, capped.
    watches: watches::Watches,
    /// Set when the daemon stops: every watch answers at once.
    stopping: watch::Sender<bool>,
    metrics: DeliveryMetrics,
    /// What each task's agent last reported.
    reports: Mutex<reports::Reports>,
    /// The hot deliveries followed.
    tracks: Mutex<track::Tracks>,
    /// Wakes the deliveries' follower: a report came, or a hot update.
    wake: Arc<tokio::sync::Notify>,
    /// Wakes the daemon: a hot delivery ended, to be recorded.
    delivered: Arc<tokio::sync::Notify>,
    /// `<state dir>/hot-deliveries.json`: the deliveries in progress, so a
    /// restart takes them up again.
    open_file: PathBuf,
    /// What that file holds.
    kept_open: Mutex<Vec<track::Open>>,
}

/// Logins checked with Marathon at once; more are answered 503.
const MAX_LOGIN_CHECKS: usize = 32;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("delivery::Server")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The state directory `pacer serve` keeps across restarts: `--state-dir`,
/// else `<workdir>.state` beside the mirror. The config server and the
/// reconcile loop share it.
pub fn state_dir(state_dir: Option<&std::path::Path>, workdir: &std::path::Path) -> PathBuf {
    state_dir
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| {
            let mut name = workdir.as_os_str().to_os_string();
            name.push(".state");
            PathBuf::from(name)
        })
}

impl Server {
    /// Loads the key and the used ids (making the state directory), starts
    /// following `published`. `workdir`: the mirror's, beside which the
    /// state lives by default. Needs a Tokio runtime.
    pub fn start(
        settings: Settings,
        mut marathon: MarathonAccess,
        workdir: &std::path::Path,
        published: Reader,
    ) -> anyhow::Result<Arc<Server>> {
        marathon.per_env.extend(settings.marathons.clone());
        let dir = state_dir(settings.state_dir.as_deref(), workdir);
        private::ensure_dir(&dir)?;
        let key = match &settings.token_key_file {
            Some(path) => keys::read(path)?,
            None => keys::load_or_create(&dir)?,
        };
        let used_path = dir.join("used-task-ids");
        let local = used::FileStore::open(&used_path, settings.login_grace, now_ms())
            .map_err(|e| anyhow::anyhow!("{}: {e}", used_path.display()))?;
        let used: Arc<dyn used::UsedIds> = match settings.zk.clone() {
            Some((hosts, root)) => Arc::new(used_zk::ZkStore::start(
                local,
                hosts,
                root,
                settings.login_grace + Duration::from_secs(60),
            )),
            None => Arc::new(local),
        };
        let open_file = dir.join("hot-deliveries.json");
        let open = deliveries::load_open(&open_file);
        if !open.is_empty() {
            tracing::info!(
                deliveries = open.len(),
                "config server: following the hot deliveries the last run left in progress"
            );
        }
        let mut tracks = track::Tracks::default();
        tracks.resume(open.clone());
        let start = u64::try_from(now_ms()).unwrap_or(0);
        let mut tracker = Tracker::new(start);
        tracker.update(&published.latest(), start);
        let (tx, rx) = watch::channel(tracker.current());
        tokio::spawn(follow(published.clone(), tracker, tx));
        if !settings.check_address {
            tracing::warn!(
                "the config server does not check that a login comes from its task's host"
            );
        }
        let max_watches = settings.max_watches;
        let login_rate = settings.login_rate;
        let wake = Arc::new(tokio::sync::Notify::new());
        let server = Arc::new(Server {
            settings,
            marathon,
            key,
            used,
            published,
            bundles: rx,
            clients: Mutex::default(),
            resolver: resolve::Resolver::default(),
            liveness: Mutex::default(),
            login_checks: tokio::sync::Semaphore::new(MAX_LOGIN_CHECKS),
            app_reads: flight::AppReads::default(),
            limiter: Mutex::new(limit::Limiter::new(login_rate)),
            watches: watches::Watches::new(max_watches),
            stopping: watch::channel(false).0,
            metrics: DeliveryMetrics::new(),
            reports: Mutex::default(),
            tracks: Mutex::new(tracks),
            wake: wake.clone(),
            delivered: Arc::default(),
            open_file,
            kept_open: Mutex::new(open),
        });
        tokio::spawn(deliveries::follow(
            Arc::downgrade(&server),
            wake,
            server.bundles.clone(),
        ));
        Ok(server)
    }

    /// Ends every watch now (they answer with the current bundle), as the
    /// daemon stops: a watch must not hold the shutdown for minutes.
    pub fn shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// What `/api/v1/status` shows of the config server.
    pub fn status(&self) -> Value {
        // Environments whose logins are refused: no operator-given Marathon.
        let disabled: Vec<String> = self
            .bundles
            .borrow()
            .marathons
            .keys()
            .filter(|env| trusted_marathon(&self.marathon, env).is_err())
            .cloned()
            .collect();
        json!({
            "disabledEnvs": disabled,
            "addressCheck": self.settings.check_address,
            "loginGraceSeconds": self.settings.login_grace.as_secs(),
            "tokenTtlSeconds": self.settings.token_ttl.as_secs(),
            "deliveryTimeoutSeconds": self.settings.delivery_timeout.as_secs(),
        })
    }

    /// Adds the config server's series to the daemon's OpenMetrics text
    /// (before its `# EOF`).
    pub fn append_metrics(&self, text: &mut String) {
        let mut tasks: BTreeMap<&str, i64> =
            ["delivering", "delivered", "failed"].map(|s| (s, 0)).into();
        for v in self.views(now_ms()).values() {
            let n = i64::try_from(v.delivery.tasks).unwrap_or(i64::MAX);
            *tasks.entry(v.delivery.state.as_str()).or_default() += n;
        }
        for (state, n) in tasks {
            self.metrics
                .delivery_tasks
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(n);
        }
        let mut ours = String::new();
        if prometheus_client::encoding::text::encode(&mut ours, &self.metrics.registry).is_err() {
            return;
        }
        let ours = ours.strip_suffix("# EOF\n").unwrap_or(&ours);
        match text.rfind("# EOF") {
            Some(i) => text.insert_str(i, ours),
            None => text.push_str(ours),
        }
    }

    fn client(&self, url: &str) -> Option<MarathonClient> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(url) {
            return Some(c.clone());
        }
        let c = MarathonClient::new(ClientConfig {
            url: url.to_string(),
            auth: self.marathon.auth.clone(),
            timeout: self.marathon.timeout,
            // A login waits on this: one quick retry, not a long backoff.
            max_retries: 1,
            events: false,
            ..ClientConfig::default()
        })
        .ok()?;
        clients.insert(url.to_string(), c.clone());
        Some(c)
    }

    /// The Marathon that vouches for `env`'s tasks: one the operator gave.
    fn marathon_of(&self, env: &str) -> Result<MarathonClient, login::Refusal> {
        let url = trusted_marathon(&self.marathon, env)?;
        self.client(url).ok_or_else(|| {
            login::Refusal::Busy(format!("environment {env} has no usable Marathon URL"))
        })
    }

    /// Folds one Marathon answer about `task` into what is known of it.
    fn remember(&self, task: &str, seen: liveness::Seen) -> liveness::Known {
        let mut l = self.liveness.lock();
        if l.len() >= MAX_LIVENESS && !l.contains_key(task) {
            // Dead tasks are kept: their tokens must stay dead.
            l.retain(|_, (_, k)| *k == liveness::Known::Dead);
            if l.len() >= MAX_LIVENESS {
                l.clear();
            }
        }
        let known = liveness::next(l.get(task).map(|(_, k)| *k), seen);
        l.insert(task.to_string(), (Instant::now(), known));
        if known == liveness::Known::Dead {
            // Its report goes with its token.
            self.reports.lock().remove(task);
        }
        known
    }
}

/// The operator-given Marathon URL for `env`: `--marathon`, else its
/// `--config-server-marathon`. Never `pacer.yaml`'s, which the config repo
/// (anyone who can commit) decides.
pub fn trusted_marathon<'a>(m: &'a MarathonAccess, env: &str) -> Result<&'a str, login::Refusal> {
    m.url
        .as_deref()
        .or_else(|| m.per_env.get(env).map(String::as_str))
        .ok_or_else(|| login::Refusal::NoTrustedMarathon(env.to_string()))
}

/// Follows the published snapshots into the bundles, until the loop is gone.
async fn follow(mut published: Reader, mut tracker: Tracker, tx: watch::Sender<Arc<Bundles>>) {
    while published.changed().await {
        let snap = published.latest();
        let now = u64::try_from(now_ms()).unwrap_or(0);
        if let Some(next) = tracker.update(&snap, now) {
            tx.send_replace(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_operator_given_marathon_vouches_for_logins() {
        let mut m = MarathonAccess::default();
        let e = trusted_marathon(&m, "dev").unwrap_err();
        assert_eq!(e.reason(), "noTrustedMarathon");
        assert!(
            e.message().contains("--config-server-marathon dev="),
            "{}",
            e.message()
        );
        m.per_env.insert("dev".into(), "http://m-dev".into());
        assert_eq!(trusted_marathon(&m, "dev"), Ok("http://m-dev"));
        assert!(trusted_marathon(&m, "prod").is_err());
        m.url = Some("http://m".into());
        assert_eq!(trusted_marathon(&m, "prod"), Ok("http://m"));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

struct DeliveryMetrics {
    registry: Registry,
    refusals: Family<ReasonLabels, Counter>,
    logins: Counter,
    watchers: Gauge,
    reports: Counter,
    delivery_tasks: Family<StateLabels, Gauge>,
    deliveries: Family<OutcomeLabels, Counter>,
}

impl DeliveryMetrics {
    fn new() -> DeliveryMetrics {
        let mut registry = Registry::default();
        let refusals = Family::<ReasonLabels, Counter>::default();
        let logins = Counter::default();
        let watchers = Gauge::default();
        registry.register(
            "pacer_config_refusals",
            "Config server requests refused, by reason",
            refusals.clone(),
        );
        registry.register(
            "pacer_config_logins",
            "Task logins the config server accepted",
            logins.clone(),
        );
        registry.register(
            "pacer_config_watchers",
            "Blocking config watches waiting now",
            watchers.clone(),
        );
        for r in login::Refusal::REASONS {
            // Every reason shows, at 0 until it happens.
            let _ = refusals.get_or_create(&ReasonLabels { reason: r.into() });
        }
        let reports = Counter::default();
        registry.register(
            "pacer_config_reports",
            "Agent reports the config server kept",
            reports.clone(),
        );
        let delivery_tasks = Family::<StateLabels, Gauge>::default();
        registry.register(
            "pacer_config_delivery_tasks",
            "Running tasks of the apps whose delivery is in each state",
            delivery_tasks.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "pacer_config_hot_deliveries",
            "Hot updates whose delivery ended, by outcome",
            deliveries.clone(),
        );
        for o in ["delivered", "failed"] {
            let _ = deliveries.get_or_create(&OutcomeLabels { outcome: o.into() });
        }
        DeliveryMetrics {
            registry,
            refusals,
            logins,
            watchers,
            reports,
            delivery_tasks,
            deliveries,
        }
    }
}
