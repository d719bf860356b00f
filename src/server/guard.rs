//! What stands before the handlers: the admin token on writes
//! ([`super::auth`]), and on the webhook a rate per source address and a
//! body limit. Each runs before a body is read, so a refused caller costs
//! no buffering; each refusal is JSON with a reason, logged without the
//! token, and counted in `pacer_api_refusals_total{route,reason}`.

use super::auth::{self, Need, Refusal};
use super::{Shared, refuse};
use crate::delivery::limit::{self, Limiter, Rate};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// The largest webhook body by default. GitHub caps a push payload at
/// 25 MB, but only a push of thousands of commits comes near this; a
/// larger one is refused (413, naming the flag) and the poll picks the
/// commit up anyway.
pub const WEBHOOK_MAX_BODY: usize = 1024 * 1024;

/// Webhooks per source address: 60 at once, then 5 a second. A forge
/// sends one per push; a caller past this is a loop or a flood, and each
/// delivery costs an HMAC over its body.
pub const WEBHOOK_RATE: Rate = Rate {
    burst: 60.0,
    per_second: 5.0,
    max_callers: 10_000,
};

/// The operator API's guards: the tokens, and the webhook's budgets.
#[derive(Clone, Debug)]
pub struct Access {
    pub tokens: auth::Tokens,
    /// The largest webhook body read (`--webhook-max-body`).
    pub webhook_max_body: usize,
    /// Webhooks per source address (`--webhook-burst`, `--webhook-rate`).
    webhook_limiter: Arc<Mutex<Limiter>>,
}

impl Access {
    pub fn new(tokens: auth::Tokens, webhook_max_body: usize, webhook_rate: Rate) -> Access {
        Access {
            tokens,
            webhook_max_body,
            webhook_limiter: Arc::new(Mutex::new(Limiter::new(webhook_rate))),
        }
    }
}

impl Default for Access {
    /// No tokens (writes off, the public status), the default webhook budgets.
    fn default() -> Self {
        Access::new(auth::Tokens::default(), WEBHOOK_MAX_BODY, WEBHOOK_RATE)
    }
}

/// Counts and logs a refusal, and answers it: `{"error", "reason"}`, with
/// `WWW-Authenticate: Bearer` on a 401.
pub(super) fn refused(state: &super::AppState, route: &str, r: Refusal) -> Response {
    state.metrics.api_refusal(route, r.reason);
    tracing::warn!(route, reason = r.reason, "request refused");
    let mut resp = answer(r.status, r.reason, r.message);
    if r.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// The admin token, before a write's handler reads its body.
pub(super) async fn admin_only(State(state): State<Shared>, req: Request, next: Next) -> Response {
    match auth::decide_request(Need::Admin, req.headers(), &state.access.tokens, now_s()) {
        Ok(_) => next.run(req).await,
        Err(r) => refused(&state, "api", r),
    }
}

/// Unix seconds, for sessions.
pub(super) fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The caller's address; in-process tests without a socket share one.
pub(super) fn caller(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
            c.0.ip().to_canonical()
        })
}

/// The webhook's rate per source address, before its body is read.
pub(super) async fn webhook_throttle(
    State(state): State<Shared>,
    req: Request,
    next: Next,
) -> Response {
    let ip = caller(&req);
    let taken = state.access.webhook_limiter.lock().take(ip, Instant::now());
    match taken {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            state.metrics.api_refusal("webhook", "rateLimited");
            tracing::warn!(caller = %ip, "webhook refused: over its rate");
            let secs = limit::retry_after_secs(wait);
            let mut resp = answer(
                StatusCode::TOO_MANY_REQUESTS,
                "rateLimited",
                format!("too many webhooks from this address; try again in {secs}s"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
    }
}

/// A body the extractor could not read: 413 naming the limit and the flag
/// that raises it, else 400.
pub(super) fn unread_body(
    state: &super::AppState,
    route: &str,
    e: &axum::extract::rejection::BytesRejection,
    limit: usize,
    flag: Option<&str>,
) -> Response {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        state.metrics.api_refusal(route, "tooLarge");
        let raise = flag.map_or(String::new(), |f| format!(" ({f} raises it)"));
        tracing::warn!(route, limit, "request refused: body over the limit");
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "tooLarge",
            format!("the body is larger than {limit} bytes{raise}"),
        );
    }
    refuse(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
}

/// A refusal's JSON: `{"error", "reason"}`.
fn answer(status: StatusCode, reason: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "reason": reason})),
    )
        .into_response()
}
