//! The daemon's Prometheus metrics, rendered by `GET /metrics`. Counters and
//! the histogram count events (written by the reconcile loop and the webhook
//! handler into one explicit registry, no globals); the gauges describe a
//! state and are built at each request from the published status snapshot
//! the request reads ([`Metrics::render`]), so `/metrics` and
//! `/api/v1/status` never disagree.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pacer_reconcile_duration_seconds` | histogram | `env` |
//! | `pacer_apps` | gauge | `env`, `status` (every [`SyncStatus`], 0 when none) |
//! | `pacer_deployments_total` | counter | `env`, `outcome` |
//! | `pacer_git_fetch_errors_total` | counter | |
//! | `pacer_webhooks_total` | counter | `decision`, `provider` |
//! | `pacer_api_refusals_total` | counter | `route` (`api`, `webhook`), `reason` (`missingToken`, `badToken`, `readOnlyToken`, `writesDisabled`, `malformedAuthorization`, `rateLimited`, `tooLarge`) |
//! | `pacer_last_sync_timestamp_seconds` | gauge | `env` |
//! | `pacer_marathon_errors_total` | counter | |
//! | `pacer_marathon_up` | gauge | `env`: 1 when its Marathon answered on the last cycle, else 0 |
//! | `pacer_repo_loaded` | gauge | 1 when the newest commit fetched loads and runs, 0 when it is refused |
//! | `pacer_leader` | gauge | with `--zk`: 1 on the replica that leads (and writes), else 0 |
//! | `pacer_zk_connected` | gauge | with `--zk`: 1 while the ZooKeeper session is connected |
//! | `pacer_commits_refused_total` | counter | `env`, `reason`: a head an environment's `verify:` policy refused |
//! | `pacer_commit_refused` | gauge | `env`: 1 while the environment is held at its last good commit by the policy |
//!
//! Label values are spelled as in the status JSON (`inSync`, `rolledBack`).

use crate::model::{Outcome, SyncStatus};
use crate::status::Status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvLabels {
    env: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppsLabels {
    env: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    env: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    route: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    env: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    decision: String,
    provider: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn reconcile_histogram() -> Histogram {
    // 50 ms to ~100 s: a no-op poll up to a large environment's full render.
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

pub struct Metrics {
    registry: Registry,
    reconcile_duration: Family<EnvLabels, Histogram, fn() -> Histogram>,
    deployments: Family<DeploymentLabels, Counter>,
    git_fetch_errors: Counter,
    webhooks: Family<WebhookLabels, Counter>,
    api_refusals: Family<RefusalLabels, Counter>,
    marathon_errors: Counter,
    records_written: Counter,
    record_errors: Counter,
    endpoint_renders: Counter,
    endpoints_held: Gauge,
    commits_refused: Family<RefusedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_duration =
            Family::<EnvLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                reconcile_histogram,
            );
        let deployments = Family::<DeploymentLabels, Counter>::default();
        let git_fetch_errors = Counter::default();
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let api_refusals = Family::<RefusalLabels, Counter>::default();
        // Every series shows from the start, at 0, so a rate alert needs
        // no first refusal to exist.
        let reasons = super::auth::REASONS.iter();
        for reason in reasons.chain(&["tooLarge"]) {
            let _ = api_refusals.get_or_create(&RefusalLabels {
                route: "api".into(),
                reason: (*reason).into(),
            });
        }
        for reason in ["rateLimited", "tooLarge"] {
            let _ = api_refusals.get_or_create(&RefusalLabels {
                route: "webhook".into(),
                reason: reason.into(),
            });
        }
        let marathon_errors = Counter::default();
        let records_written = Counter::default();
        let record_errors = Counter::default();
        let endpoint_renders = Counter::default();
        let endpoints_held = Gauge::default();
        let commits_refused = Family::<RefusedLabels, Counter>::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "pacer_reconcile_duration_seconds",
            "Time one reconcile of an environment took",
            reconcile_duration.clone(),
        );
        registry.register(
            "pacer_deployments",
            "Deployments pacer started, by how they ended",
            deployments.clone(),
        );
        registry.register(
            "pacer_git_fetch_errors",
            "Failed fetches of the config repo",
            git_fetch_errors.clone(),
        );
        registry.register(
            "pacer_webhooks",
            "Webhook deliveries by decision and provider",
            webhooks.clone(),
        );
        registry.register(
            "pacer_api_refusals",
            "Operator API requests and webhooks refused before their handler: no or a bad token, over a rate, a body too large",
            api_refusals.clone(),
        );
        registry.register(
            "pacer_marathon_errors",
            "Failed requests to Marathon",
            marathon_errors.clone(),
        );
        registry.register(
            "pacer_records_written",
            "Deployment records added to the config repo's notes (refs/notes/pacer)",
            records_written.clone(),
        );
        registry.register(
            "pacer_record_errors",
            "Failed attempts to write or push deployment records",
            record_errors.clone(),
        );
        registry.register(
            "pacer_endpoint_renders",
            "Apps rendered again because a live endpoint they name moved",
            endpoint_renders.clone(),
        );
        registry.register(
            "pacer_endpoints_held",
            "Services whose new endpoints are held back (empty, or shrunk too far in one step)",
            endpoints_held.clone(),
        );
        registry.register(
            "pacer_commits_refused",
            "Heads an environment's verify: policy refused (unsigned, untrusted key, expired, bad signature)",
            commits_refused.clone(),
        );
        Metrics {
            registry,
            commits_refused,
            endpoint_renders,
            endpoints_held,
            reconcile_duration,
            deployments,
            git_fetch_errors,
            webhooks,
            api_refusals,
            marathon_errors,
            records_written,
            record_errors,
        }
    }

    pub fn observe_reconcile(&self, env: &str, seconds: f64) {
        self.reconcile_duration
            .get_or_create(&EnvLabels { env: env.into() })
            .observe(seconds);
    }

    pub fn deployment(&self, env: &str, outcome: Outcome) {
        self.deployments
            .get_or_create(&DeploymentLabels {
                env: env.into(),
                outcome: outcome.as_str().into(),
            })
            .inc();
    }

    pub fn endpoint_renders(&self, apps: u64) {
        self.endpoint_renders.inc_by(apps);
    }

    pub fn endpoints_held(&self, services: usize) {
        self.endpoints_held.set(services as i64);
    }

    /// A head `env`'s signed-commit policy refused; `reason` is the
    /// refusal's kind (`unsigned`, `unknownKey`, ...).
    pub fn commit_refused(&self, env: &str, reason: &str) {
        self.commits_refused
            .get_or_create(&RefusedLabels {
                env: env.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn git_fetch_error(&self) {
        self.git_fetch_errors.inc();
    }

    /// `decision` is `accepted`, `rejected` or `ignored`; `provider` is
    /// `github`, `gitlab`, `gitea` or `unknown`.
    pub fn webhook(&self, decision: &str, provider: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                decision: decision.into(),
                provider: provider.into(),
            })
            .inc();
    }

    /// A request refused before its handler; `route` is `api` or `webhook`.
    pub fn api_refusal(&self, route: &str, reason: &str) {
        self.api_refusals
            .get_or_create(&RefusalLabels {
                route: route.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn marathon_error(&self) {
        self.marathon_errors.inc();
    }

    pub fn records_written(&self, n: u64) {
        self.records_written.inc_by(n);
    }

    pub fn record_error(&self) {
        self.record_errors.inc();
    }

    /// The OpenMetrics text exposition, served with [`CONTENT_TYPE`]: the
    /// counted events, and the gauges of `status` (one published snapshot).
    pub fn render(&self, status: &Status) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &state_gauges(status)))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}

/// The gauges that describe `status`, in a registry of their own made for
/// one request.
fn state_gauges(status: &Status) -> Registry {
    let mut registry = Registry::default();
    let apps = Family::<AppsLabels, Gauge>::default();
    let last_sync = Family::<EnvLabels, FloatGauge>::default();
    let marathon_up = Family::<EnvLabels, Gauge>::default();
    let commit_refused = Family::<EnvLabels, Gauge>::default();
    let repo_loaded: Gauge = Gauge::default();
    for (env, e) in &status.environments {
        let labels = EnvLabels { env: env.clone() };
        // Every status, 0 for those absent, so an app moving from
        // `outOfSync` to `inSync` leaves no stale 1 behind.
        let counts = e.sync_counts();
        for s in SyncStatus::ALL {
            let n = counts.get(&s).copied().unwrap_or(0);
            apps.get_or_create(&AppsLabels {
                env: env.clone(),
                status: s.as_str().into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(at) = e
            .last_sync
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            last_sync
                .get_or_create(&labels)
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
        if let Some(up) = e.marathon_up {
            marathon_up.get_or_create(&labels).set(i64::from(up));
        }
        if let Some(v) = &e.verify {
            commit_refused
                .get_or_create(&labels)
                .set(i64::from(v.refused.is_some()));
        }
    }
    if let Some(ha) = &status.ha {
        let leader: Gauge = Gauge::default();
        leader.set(i64::from(ha.role == crate::status::Role::Leader));
        registry.register(
            "pacer_leader",
            "Whether this replica leads and writes (1) or follows (0)",
            leader,
        );
        let connected: Gauge = Gauge::default();
        connected.set(i64::from(ha.zk_connected));
        registry.register(
            "pacer_zk_connected",
            "Whether this replica's ZooKeeper session is connected",
            connected,
        );
    }
    let loaded = status.repo.last_good.is_some() && status.repo.errors.is_empty();
    repo_loaded.set(i64::from(loaded));
    registry.register("pacer_apps", "Apps per environment by sync status", apps);
    registry.register(
        "pacer_last_sync_timestamp_seconds",
        "Unix time of the last reconcile that reached Marathon",
        last_sync,
    );
    registry.register(
        "pacer_marathon_up",
        "Whether the environment's Marathon answered on the last cycle (1) or not (0: its apps show as unknown)",
        marathon_up,
    );
    registry.register(
        "pacer_commit_refused",
        "Whether the environment is held at its last good commit because its verify: policy refused the head (1) or not (0)",
        commit_refused,
    );
    registry.register(
        "pacer_repo_loaded",
        "Whether the newest commit fetched loads and is the one reconciled (1) or is refused (0)",
        repo_loaded,
    );
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{AppStatus, EnvStatus};
    use std::sync::Arc;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{text}"))
    }

    fn app(sync: SyncStatus) -> Arc<AppStatus> {
        Arc::new(AppStatus::new("/x", sync))
    }

    fn status(apps: &[SyncStatus], up: Option<bool>) -> Status {
        let mut env = EnvStatus {
            last_sync: Some("2025-11-24T16:00:00.5+00:00".into()),
            marathon_up: up,
            ..EnvStatus::default()
        };
        for (i, s) in apps.iter().enumerate() {
            env.apps.insert(format!("app{i}"), app(*s));
        }
        let mut status = Status::default();
        status.repo.last_good = Some("abc".into());
        status.environments.insert("prod".into(), Arc::new(env));
        status
    }

    #[test]
    fn renders_every_family_with_its_labels() {
        let m = Metrics::new();
        m.observe_reconcile("prod", 0.3);
        m.deployment("prod", Outcome::RolledBack);
        m.git_fetch_error();
        m.webhook("accepted", "github");
        m.marathon_error();
        let s = status(
            &[
                SyncStatus::InSync,
                SyncStatus::InSync,
                SyncStatus::InSync,
                SyncStatus::Drifted,
            ],
            Some(true),
        );
        let text = m.render(&s);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        line(
            &text,
            "pacer_reconcile_duration_seconds_count{env=\"prod\"} 1",
        );
        line(
            &text,
            "pacer_reconcile_duration_seconds_bucket{le=\"0.4\",env=\"prod\"} 1",
        );
        line(&text, "pacer_apps{env=\"prod\",status=\"inSync\"} 3");
        line(&text, "pacer_apps{env=\"prod\",status=\"drifted\"} 1");
        line(&text, "pacer_apps{env=\"prod\",status=\"failed\"} 0");
        line(
            &text,
            "pacer_deployments_total{env=\"prod\",outcome=\"rolledBack\"} 1",
        );
        line(&text, "pacer_git_fetch_errors_total 1");
        line(
            &text,
            "pacer_webhooks_total{decision=\"accepted\",provider=\"github\"} 1",
        );
        line(
            &text,
            "pacer_last_sync_timestamp_seconds{env=\"prod\"} 1764000000.5",
        );
        line(&text, "pacer_marathon_errors_total 1");
        line(&text, "pacer_marathon_up{env=\"prod\"} 1");
        line(&text, "pacer_repo_loaded 1");
    }

    #[test]
    fn every_status_has_a_series_and_absent_ones_are_zero() {
        let m = Metrics::new();
        let text = m.render(&status(&[SyncStatus::InSync, SyncStatus::InSync], None));
        line(&text, "pacer_apps{env=\"prod\",status=\"outOfSync\"} 0");
        line(&text, "pacer_apps{env=\"prod\",status=\"inSync\"} 2");
        let series = text
            .lines()
            .filter(|l| l.starts_with("pacer_apps{"))
            .count();
        assert_eq!(series, SyncStatus::ALL.len());
        assert!(
            !text.contains("pacer_marathon_up{"),
            "not asked yet: no series\n{text}"
        );
    }

    #[test]
    fn the_gauges_are_the_snapshots_own() {
        let m = Metrics::new();
        let mut s = status(&[SyncStatus::Failed], Some(false));
        s.repo.errors = vec![crate::status::Problem::message("refused")];
        let text = m.render(&s);
        line(&text, "pacer_apps{env=\"prod\",status=\"failed\"} 1");
        line(&text, "pacer_marathon_up{env=\"prod\"} 0");
        line(&text, "pacer_repo_loaded 0");
        // An environment gone from the status leaves no series behind.
        let text = m.render(&Status::default());
        assert!(!text.contains("env=\"prod\""), "{text}");
        line(&text, "pacer_repo_loaded 0");
    }
}
