//! What the agent tells about itself on `--listen`: `/healthz` (JSON) and
//! `/metrics` (Prometheus text): how stale its files are (seconds since the
//! last complete sync), the bundle index applied, and failures by kind.
//! Nothing here holds file content or a token.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kinds of failure, as `/healthz` and the `kind` label spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The server could not be reached or answered an error.
    Server,
    /// A file could not be written.
    Write,
    /// A file's `check` refused its new content.
    Check,
    /// A file's reload action failed; the previous file was put back.
    Reload,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Server => "server",
            Failure::Write => "write",
            Failure::Check => "check",
            Failure::Reload => "reload",
        }
    }
    const ALL: [Failure; 4] = [
        Failure::Server,
        Failure::Write,
        Failure::Check,
        Failure::Reload,
    ];
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    last_sync: Option<Instant>,
    index: Option<u64>,
    failures: BTreeMap<Failure, u64>,
    /// The last failure's message, for people (no content, no token).
    last_error: Option<String>,
}

/// Shared between the agent's loop and its listener.
#[derive(Clone, Debug)]
pub struct Health(Arc<Mutex<Inner>>);

impl Default for Health {
    fn default() -> Self {
        Health(Arc::new(Mutex::new(Inner {
            started: Instant::now(),
            last_sync: None,
            index: None,
            failures: BTreeMap::new(),
            last_error: None,
        })))
    }
}

impl Health {
    pub fn synced(&self, index: u64) {
        let mut h = self.0.lock();
        h.last_sync = Some(Instant::now());
        h.index = Some(index);
    }

    pub fn failed(&self, kind: Failure, message: &str) {
        let mut h = self.0.lock();
        *h.failures.entry(kind).or_default() += 1;
        h.last_error = Some(format!("{}: {message}", kind.as_str()));
    }

    /// Seconds since the last complete sync (since the start before one).
    fn stale(&self, h: &Inner) -> Duration {
        h.last_sync.unwrap_or(h.started).elapsed()
    }

    pub fn json(&self) -> serde_json::Value {
        let h = self.0.lock();
        let failures: serde_json::Map<_, _> = Failure::ALL
            .iter()
            .map(|k| {
                (
                    k.as_str().to_string(),
                    json!(h.failures.get(k).copied().unwrap_or(0)),
                )
            })
            .collect();
        json!({
            "synced": h.last_sync.is_some(),
            "secondsSinceSync": self.stale(&h).as_secs(),
            "index": h.index,
            "failures": failures,
            "lastError": h.last_error,
        })
    }

    pub fn metrics(&self) -> String {
        let h = self.0.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP pacer_agent_seconds_since_sync Seconds since the agent last wrote a complete bundle (since it started, before the first).\n\
             # TYPE pacer_agent_seconds_since_sync gauge\n\
             pacer_agent_seconds_since_sync {:.3}",
            self.stale(&h).as_secs_f64()
        );
        let _ = writeln!(
            out,
            "# HELP pacer_agent_bundle_index The index of the bundle applied (0 before the first).\n\
             # TYPE pacer_agent_bundle_index gauge\n\
             pacer_agent_bundle_index {}",
            h.index.unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "# HELP pacer_agent_failures_total Failures, by kind.\n# TYPE pacer_agent_failures_total counter"
        );
        for k in Failure::ALL {
            let _ = writeln!(
                out,
                "pacer_agent_failures_total{{kind=\"{}\"}} {}",
                k.as_str(),
                h.failures.get(&k).copied().unwrap_or(0)
            );
        }
        out
    }
}

/// `/healthz` answers 200 once the files are written, 503 before.
pub fn router(health: Health) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|State(h): State<Health>| async move {
                let v = h.json();
                let code = if v["synced"] == json!(true) {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, axum::Json(v))
            }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    h.metrics(),
                )
                    .into_response()
            }),
        )
        .with_state(health)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_counts_failures_by_kind_and_tells_the_index() {
        let h = Health::default();
        assert_eq!(h.json()["synced"], false);
        h.failed(Failure::Server, "connection refused");
        h.failed(Failure::Server, "connection refused");
        h.failed(Failure::Check, "nginx.conf");
        h.synced(42);
        let v = h.json();
        assert_eq!(v["synced"], true);
        assert_eq!(v["index"], 42);
        assert_eq!(v["failures"]["server"], 2);
        assert_eq!(v["failures"]["check"], 1);
        assert_eq!(v["failures"]["reload"], 0);
        let m = h.metrics();
        assert!(
            m.contains("pacer_agent_failures_total{kind=\"server\"} 2"),
            "{m}"
        );
        assert!(m.contains("pacer_agent_bundle_index 42"), "{m}");
    }
}
