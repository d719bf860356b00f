//! The daemon's Prometheus metrics: one explicit registry (no globals), written
//! by the reconcile loop and the webhook handler, rendered by `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pacer_reconcile_duration_seconds` | histogram | `env` |
//! | `pacer_apps` | gauge | `env`, `status` (every [`SyncStatus`], 0 when none) |
//! | `pacer_deployments_total` | counter | `env`, `outcome` |
//! | `pacer_git_fetch_errors_total` | counter | |
//! | `pacer_webhooks_total` | counter | `decision`, `provider` |
//! | `pacer_last_sync_timestamp_seconds` | gauge | `env` |
//! | `pacer_marathon_errors_total` | counter | |
//! | `pacer_marathon_up` | gauge | `env`: 1 when its Marathon answered on the last cycle, else 0 |
//! | `pacer_repo_loaded` | gauge | 1 when the newest commit fetched loads and runs, 0 when it is refused |
//!
//! Label values are spelled as in the status JSON (`inSync`, `rolledBack`).

use crate::model::{Outcome, SyncStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
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
    apps: Family<AppsLabels, Gauge>,
    deployments: Family<DeploymentLabels, Counter>,
    git_fetch_errors: Counter,
    webhooks: Family<WebhookLabels, Counter>,
    last_sync: Family<EnvLabels, FloatGauge>,
    marathon_errors: Counter,
    marathon_up: Family<EnvLabels, Gauge>,
    repo_loaded: Gauge,
    records_written: Counter,
    record_errors: Counter,
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
        let apps = Family::<AppsLabels, Gauge>::default();
        let deployments = Family::<DeploymentLabels, Counter>::default();
        let git_fetch_errors = Counter::default();
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let last_sync = Family::<EnvLabels, FloatGauge>::default();
        let marathon_errors = Counter::default();
        let marathon_up = Family::<EnvLabels, Gauge>::default();
        let repo_loaded = Gauge::default();
        let records_written = Counter::default();
        let record_errors = Counter::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "pacer_reconcile_duration_seconds",
            "Time one reconcile of an environment took",
            reconcile_duration.clone(),
        );
        registry.register(
            "pacer_apps",
            "Apps per environment by sync status",
            apps.clone(),
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
            "pacer_last_sync_timestamp_seconds",
            "Unix time of the last reconcile that reached Marathon",
            last_sync.clone(),
        );
        registry.register(
            "pacer_marathon_errors",
            "Failed requests to Marathon",
            marathon_errors.clone(),
        );
        registry.register(
            "pacer_marathon_up",
            "Whether the environment's Marathon answered on the last cycle (1) or not (0: its apps show as unknown)",
            marathon_up.clone(),
        );
        registry.register(
            "pacer_repo_loaded",
            "Whether the newest commit fetched loads and is the one reconciled (1) or is refused (0)",
            repo_loaded.clone(),
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
        Metrics {
            registry,
            reconcile_duration,
            apps,
            deployments,
            git_fetch_errors,
            webhooks,
            last_sync,
            marathon_errors,
            marathon_up,
            repo_loaded,
            records_written,
            record_errors,
        }
    }

    pub fn observe_reconcile(&self, env: &str, seconds: f64) {
        self.reconcile_duration
            .get_or_create(&EnvLabels { env: env.into() })
            .observe(seconds);
    }

    /// Sets the gauge for every status, 0 for those absent from `counts`, so
    /// an app moving from `outOfSync` to `inSync` leaves no stale 1 behind.
    pub fn set_apps(&self, env: &str, counts: &BTreeMap<SyncStatus, u64>) {
        for status in SyncStatus::ALL {
            let n = counts.get(&status).copied().unwrap_or(0);
            self.apps
                .get_or_create(&AppsLabels {
                    env: env.into(),
                    status: status.as_str().into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn deployment(&self, env: &str, outcome: Outcome) {
        self.deployments
            .get_or_create(&DeploymentLabels {
                env: env.into(),
                outcome: outcome.as_str().into(),
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

    pub fn synced(&self, env: &str, unix_seconds: f64) {
        self.last_sync
            .get_or_create(&EnvLabels { env: env.into() })
            .set(unix_seconds);
    }

    pub fn marathon_error(&self) {
        self.marathon_errors.inc();
    }

    pub fn marathon_up(&self, env: &str, up: bool) {
        self.marathon_up
            .get_or_create(&EnvLabels { env: env.into() })
            .set(i64::from(up));
    }

    pub fn repo_loaded(&self, loaded: bool) {
        self.repo_loaded.set(i64::from(loaded));
    }

    pub fn records_written(&self, n: u64) {
        self.records_written.inc_by(n);
    }

    pub fn record_error(&self) {
        self.record_errors.inc();
    }

    /// The OpenMetrics text exposition, served with [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{text}"))
    }

    #[test]
    fn renders_every_family_with_its_labels() {
        let m = Metrics::new();
        m.observe_reconcile("prod", 0.3);
        m.set_apps(
            "prod",
            &BTreeMap::from([(SyncStatus::InSync, 3), (SyncStatus::Drifted, 1)]),
        );
        m.deployment("prod", Outcome::RolledBack);
        m.git_fetch_error();
        m.webhook("accepted", "github");
        m.synced("prod", 1_764_000_000.5);
        m.marathon_error();
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
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
    }

    #[test]
    fn set_apps_drops_stale_statuses_to_zero() {
        let m = Metrics::new();
        m.set_apps("dev", &BTreeMap::from([(SyncStatus::OutOfSync, 2)]));
        m.set_apps("dev", &BTreeMap::from([(SyncStatus::InSync, 2)]));
        let text = m.render();
        line(&text, "pacer_apps{env=\"dev\",status=\"outOfSync\"} 0");
        line(&text, "pacer_apps{env=\"dev\",status=\"inSync\"} 2");
        let series = text
            .lines()
            .filter(|l| l.starts_with("pacer_apps{"))
            .count();
        assert_eq!(series, SyncStatus::ALL.len());
    }
}
