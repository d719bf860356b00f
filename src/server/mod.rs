//! The daemon's HTTP server: health and readiness, Prometheus metrics, the
//! status API, Git webhooks and manual retries.
//!
//! | route | who | answer |
//! |---|---|---|
//! | `GET /healthz` | anyone | 200 `ok` while the reconcile loop turns; 503 `{"healthy":false,"reason":…}` when it is stuck |
//! | `GET /readyz` | anyone | 200 when the loop has a commit that loads and its Marathons answer, else 503 `{"ready":false,"reason":…}` |
//! | `GET /metrics` | anyone | OpenMetrics text ([`metrics`]) |
//! | `GET /api/v1/status` | anyone; a read or admin token sees it all | the [`Status`] as JSON, each app with its config `delivery` when the config server runs; without a token its public view ([`status_view`]) |
//! | `POST /hooks/git` | the forge (HMAC or token) | a push webhook ([`webhook`]): 202 accepted or ignored, 401 rejected, 413 over `--webhook-max-body`, 429 over its rate per address |
//! | `POST /api/v1/retry?env=&app=` | the admin token | asks the loop to retry failed apps: 202; 415 without a JSON content type, 403 cross-origin or to a host name not allowed (`--allowed-host`), 404 unknown env or app |
//! | `POST /api/v1/endpoints/release` | the admin token | `{"service": "/prod/db"}`: lets a held set of live endpoints through ([`release`]): 202; 404 not followed, 409 not held; guarded as the retry is |
//! | `POST /api/v1/apply` | the admin token | `{"env", "plan"}`: applies a manual environment's plan once, if it is still the plan reviewed ([`apply`]): 202; 409 the plan changed, nothing to apply, applies itself, or a follower; guarded as the retry is |
//! | `/`, `/ui/…`, `GET /api/v1/apps` | anyone; a session sees more | the web dashboard ([`dashboard`]) |
//! | `/v1/…` | a task's login token | the config server, when it runs ([`crate::delivery`]) |
//!
//! Who may do what is [`auth::decide`], and the refusals before a handler
//! are [`guard`]'s: 401 with `WWW-Authenticate: Bearer` (no or a bad token),
//! 403 (the read token on a write, or no admin token configured), as JSON
//! `{"error", "reason"}`.
//!
//! Handlers only parse, decide and hand over: a webhook becomes a
//! [`Trigger`] on the loop's channel, and the loop does the work.

pub mod apply;
pub mod auth;
pub mod dashboard;
pub mod guard;
pub mod metrics;
mod release;
mod retry_guard;
pub mod session;
pub mod status_view;
pub mod webhook;

pub use guard::Access;
pub use metrics::Metrics;
pub use retry_guard::{AllowedHosts, parse_allowed_host};

use crate::model::Secret;
use crate::status::health::Health;
use crate::status::published::Reader;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use webhook::Decision;

/// The largest body of an operator API write (a retry names an environment
/// and an app, a release a service: a few hundred bytes).
pub const MAX_RETRY_BODY_BYTES: usize = 4 * 1024;

/// No request may hold a connection longer than this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `POST /api/v1/retry` waits for room on a full trigger channel
/// before answering 503: a retry names apps, so dropping it would lose it.
const RETRY_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server shares with the reconcile loop.
pub struct AppState {
    /// What the loop published; the only view of its state handlers have.
    pub published: Reader,
    pub metrics: Arc<Metrics>,
    /// The loop's liveness and readiness.
    pub health: Arc<Health>,
    /// Wakes the reconcile loop.
    pub triggers: mpsc::Sender<Trigger>,
    /// Without one, webhooks are rejected (see [`webhook`]); polling still runs.
    pub webhook_secret: Option<Secret<String>>,
    /// The tokens, and the webhook's budgets ([`guard`]).
    pub access: Access,
    /// The branch pacer follows; pushes to others are ignored.
    pub branch: String,
    /// Host names writes are answered for, besides IP literals and
    /// `localhost` (see [`retry_guard`]).
    pub allowed_hosts: AllowedHosts,
    /// The config server, when it runs: its routes, metrics and status.
    pub delivery: Option<Arc<crate::delivery::Server>>,
    /// Where the dashboard reads an app's history (the mirror and
    /// Marathon), once the mirror is open.
    pub history: Option<Arc<dyn dashboard::HistorySource>>,
    /// The dashboard's open event streams, and their bounds.
    pub streams: Arc<dashboard::Streams>,
}

/// Why the reconcile loop should run now.
#[derive(Debug, Clone)]
pub enum Trigger {
    Poll,
    Webhook {
        provider: String,
        delivery: Option<String>,
        /// The pushed head, a hint: the loop fetches and uses what it finds.
        commit: Option<String>,
    },
    /// `POST /api/v1/retry`: retry failed apps, all of them or one
    /// environment's or one app's.
    Retry {
        env: Option<String>,
        app: Option<String>,
    },
    /// `POST /api/v1/endpoints/release`: let a held set of a service's
    /// live endpoints through.
    Release {
        service: String,
    },
    /// `POST /api/v1/apply`: apply an environment's plan once (one whose
    /// policy doesn't apply on its own), if it is still `plan`, the digest
    /// of the plan the operator approved.
    Apply {
        env: String,
        plan: String,
    },
}

/// For logs: why a run happened (`webhook github d-42 at 1a2b3c4d5e6f`).
impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Poll => f.write_str("poll"),
            Trigger::Webhook {
                provider,
                delivery,
                commit,
            } => {
                write!(f, "webhook {provider}")?;
                if let Some(d) = delivery {
                    write!(f, " {d}")?;
                }
                if let Some(c) = commit {
                    write!(f, " at {}", c.chars().take(12).collect::<String>())?;
                }
                Ok(())
            }
            Trigger::Retry { env, app } => {
                f.write_str("retry")?;
                if let Some(e) = env {
                    write!(f, " env={e}")?;
                }
                if let Some(a) = app {
                    write!(f, " app={a}")?;
                }
                Ok(())
            }
            Trigger::Release { service } => write!(f, "endpoint release {service}"),
            Trigger::Apply { env, plan } => write!(
                f,
                "apply env={env} plan {}",
                plan.chars().take(19).collect::<String>()
            ),
        }
    }
}

type Shared = Arc<AppState>;

/// The routes, each write with the admin token and a small body limit, the
/// webhook with its rate and its limit; a request timeout and tracing.
pub fn router(state: AppState) -> Router {
    // Merged outside the layers below: a config watch blocks for minutes,
    // so the config server bounds its own requests.
    let delivery = state.delivery.clone().map(crate::delivery::router);
    let webhook_max_body = state.access.webhook_max_body;
    let shared = Arc::new(state);
    let dashboard = dashboard::router(shared.clone());
    let admin = || axum::middleware::from_fn_with_state(shared.clone(), guard::admin_only);
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/status", get(status))
        // The token is checked before the body is read, and the body is
        // small: unauthenticated connections buffer nothing.
        .route(
            "/api/v1/retry",
            post(retry)
                .layer(DefaultBodyLimit::max(MAX_RETRY_BODY_BYTES))
                .route_layer(admin()),
        )
        .route(
            "/api/v1/apply",
            post(apply::apply)
                .layer(DefaultBodyLimit::max(MAX_RETRY_BODY_BYTES))
                .route_layer(admin()),
        )
        .route(
            "/api/v1/endpoints/release",
            post(release::release)
                .layer(DefaultBodyLimit::max(MAX_RETRY_BODY_BYTES))
                .route_layer(admin()),
        )
        .route(
            "/hooks/git",
            post(git_hook)
                .layer(DefaultBodyLimit::max(webhook_max_body))
                .route_layer(axum::middleware::from_fn_with_state(
                    shared.clone(),
                    guard::webhook_throttle,
                )),
        )
        // Any other route reads at most this.
        .layer(DefaultBodyLimit::max(MAX_RETRY_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(shared)
        .merge(dashboard);
    match delivery {
        Some(d) => router.merge(d.layer(TraceLayer::new_for_http())),
        None => router,
    }
}

/// Serves [`router`] on `listener` within `limits` (timeouts and a
/// connection cap, see [`crate::listen`]) until `shutdown`
/// completes, then lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: crate::listen::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_connections = limits.max_connections, "serving HTTP");
    }
    crate::listen::serve(listener, router(state), limits, shutdown).await
}

async fn healthz(State(state): State<Shared>) -> Response {
    match state.health.alive(Instant::now()) {
        Ok(()) => "ok".into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"healthy": false, "reason": reason})),
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<Shared>) -> Response {
    let latest = state.published.latest();
    let (code, mut body) = match latest.ready.clone() {
        Ok(()) => (StatusCode::OK, json!({"ready": true})),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": reason}),
        ),
    };
    // With several replicas every one serves, so a follower is ready too;
    // the body says which it is.
    if let Some(ha) = &latest.status.ha {
        body["role"] = json!(ha.role);
        body["zkConnected"] = json!(ha.zk_connected);
    }
    (code, axum::Json(body)).into_response()
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        {
            // The gauges come from the same snapshot `/api/v1/status` serves.
            let mut text = state.metrics.render(&state.published.latest().status);
            if let Some(d) = &state.delivery {
                d.append_metrics(&mut text);
            }
            text
        },
    )
        .into_response()
}

async fn status(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let level = match auth::decide_request(
        auth::Need::View,
        &headers,
        &state.access.tokens,
        guard::now_s(),
    ) {
        Ok(l) => l,
        Err(r) => return guard::refused(&state, "api", r),
    };
    let snap = state.published.latest();
    let value = serde_json::to_value(&*snap.status);
    let body = value.and_then(|mut v| {
        // The loop should store the URL without user-info; make sure a
        // token in `https://user:token@host/…` never leaves the process.
        if let Some(url) = v.pointer_mut("/repo/url")
            && let Some(s) = url.as_str()
        {
            *url = serde_json::Value::String(crate::redact::url(s));
        }
        if let Some(d) = &state.delivery {
            with_deliveries(&mut v, &d.deliveries());
            if let Some(o) = v.as_object_mut() {
                o.insert("configServer".into(), d.status());
            }
        }
        if let Some(o) = v.as_object_mut() {
            o.insert("webhooks".into(), webhooks_state(&state).into());
        }
        serde_json::to_vec(&status_view::view(v, level))
    });
    match body {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "serialising the status");
            (StatusCode::INTERNAL_SERVER_ERROR, "status not available").into_response()
        }
    }
}

/// `on` when a webhook secret is configured, else `off` (every delivery
/// is refused, and only the poll fetches).
pub fn webhooks_state(state: &AppState) -> &'static str {
    if webhook::enabled(state.webhook_secret.as_ref()) {
        "on"
    } else {
        "off"
    }
}

/// Puts each app's delivery (by its Marathon id) under the app.
fn with_deliveries(
    status: &mut serde_json::Value,
    deliveries: &std::collections::HashMap<String, serde_json::Value>,
) {
    let Some(envs) = status
        .get_mut("environments")
        .and_then(|e| e.as_object_mut())
    else {
        return;
    };
    for env in envs.values_mut() {
        let Some(apps) = env.get_mut("apps").and_then(|a| a.as_object_mut()) else {
            continue;
        };
        for app in apps.values_mut() {
            let id = app.get("id").and_then(|i| i.as_str()).unwrap_or("");
            if let Some(d) = deliveries.get(id)
                && let Some(o) = app.as_object_mut()
            {
                o.insert("delivery".into(), d.clone());
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetryParams {
    env: Option<String>,
    app: Option<String>,
}

/// A JSON error answer: `{"error": message}`.
fn refuse(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({"error": message.into()}))).into_response()
}

/// The checks every write route makes before it reads its body (the host
/// is allowed, the request is same-origin, it says it is JSON): the
/// refusal, when one fails.
fn refused_write(
    state: &AppState,
    headers: &HeaderMap,
    what: &str,
    body_hint: &str,
) -> Option<Response> {
    if let Err(why) = retry_guard::host_allowed(headers, &state.allowed_hosts) {
        tracing::warn!(%why, "{what} refused");
        return Some(refuse(StatusCode::FORBIDDEN, why));
    }
    if let Err(why) = retry_guard::same_origin(headers) {
        tracing::warn!(%why, "{what} refused");
        return Some(refuse(StatusCode::FORBIDDEN, why));
    }
    if !retry_guard::is_json(headers) {
        return Some(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send `Content-Type: application/json` {body_hint}"),
        ));
    }
    None
}

/// The body of a JSON write (an apply, a release), past
/// [`refused_write`]'s checks: `T`, or the refusal to answer.
fn json_write<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    what: &str,
    shape: &str,
) -> Result<T, Box<Response>> {
    if let Some(r) = refused_write(state, headers, what, &format!("with {shape}")) {
        return Err(Box::new(r));
    }
    let unread = |e| {
        Box::new(guard::unread_body(
            state,
            "api",
            &e,
            MAX_RETRY_BODY_BYTES,
            None,
        ))
    };
    let body = body.map_err(unread)?;
    serde_json::from_slice::<T>(&body).map_err(|e| {
        Box::new(refuse(
            StatusCode::BAD_REQUEST,
            format!("the body is not {what} request ({shape}): {e}"),
        ))
    })
}

async fn retry(
    State(state): State<Shared>,
    Query(query): Query<RetryParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Past the admin token ([`guard::admin_only`]), still only same-origin
    // JSON to a known host: a browser holding no token can't be made to
    // send one, but a tool an operator points at a page might.
    if let Some(r) = refused_write(
        &state,
        &headers,
        "retry",
        "(a body is optional: {\"env\": …, \"app\": …})",
    ) {
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return guard::unread_body(&state, "api", &e, MAX_RETRY_BODY_BYTES, None),
    };
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        RetryParams::default()
    } else {
        match serde_json::from_slice::<RetryParams>(&body) {
            Ok(p) => p,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not a retry request ({{\"env\": …, \"app\": …}}): {e}"),
                );
            }
        }
    };
    let env = params.env.or(query.env).filter(|s| !s.is_empty());
    let app = params.app.or(query.app).filter(|s| !s.is_empty());
    let snap = state.published.latest();
    if let Err((code, why)) = retry_guard::known(&snap.status, env.as_deref(), app.as_deref()) {
        return refuse(code, why);
    }
    tracing::info!(env = ?env, app = ?app, "retry requested");
    let trigger = Trigger::Retry {
        env: env.clone(),
        app: app.clone(),
    };
    match state
        .triggers
        .send_timeout(trigger, RETRY_SEND_TIMEOUT)
        .await
    {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"retry": "queued", "env": env, "app": app})),
        )
            .into_response(),
        Err(mpsc::error::SendTimeoutError::Timeout(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
            axum::Json(json!({"error": "the reconcile loop is busy; try again"})),
        )
            .into_response(),
        Err(mpsc::error::SendTimeoutError::Closed(_)) => loop_stopped(),
    }
}

fn loop_stopped() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": "the reconcile loop is not running"})),
    )
        .into_response()
}

async fn git_hook(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let max = state.access.webhook_max_body;
            let flag = Some("--webhook-max-body");
            return guard::unread_body(&state, "webhook", &e, max, flag);
        }
    };
    let decision = webhook::decide(
        &headers,
        &body,
        state.webhook_secret.as_ref(),
        &state.branch,
    );
    let provider = webhook::provider_of(&headers).map_or("unknown", |p| p.as_str());
    state.metrics.webhook(decision.as_str(), provider);
    match decision {
        Decision::Accepted {
            provider,
            delivery,
            commit,
        } => {
            tracing::info!(
                decision = "accepted",
                %provider,
                delivery = delivery.as_deref().unwrap_or("-"),
                commit = commit.as_deref().unwrap_or("-"),
                "webhook"
            );
            let trigger = Trigger::Webhook {
                provider: provider.as_str().to_string(),
                delivery,
                commit,
            };
            match state.triggers.try_send(trigger) {
                // A full channel means a run is already queued, and it
                // fetches the branch's newest commit anyway.
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => (
                    StatusCode::ACCEPTED,
                    axum::Json(json!({"decision": "accepted"})),
                )
                    .into_response(),
                Err(mpsc::error::TrySendError::Closed(_)) => loop_stopped(),
            }
        }
        Decision::Rejected { reason } => {
            // Bad input from outside: worth a warning (a misconfigured
            // forge or a probe), never the secret or the signature sent.
            tracing::warn!(decision = "rejected", provider, %reason, "webhook");
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"decision": "rejected", "reason": reason})),
            )
                .into_response()
        }
        Decision::Ignored { reason } => {
            tracing::info!(decision = "ignored", provider, %reason, "webhook");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"decision": "ignored", "reason": reason})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;
