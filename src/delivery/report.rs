//! `POST /v1/report`: an agent tells what it holds after each pass, the
//! bundle index it applied in full and the files it could not apply:
//!
//! ```json
//! {"appId": "/dev/web", "taskId": "…", "index": 1733220000123,
//!  "latest": 1733220000456, "failed": [{"file": "nginx.conf", "stage": "check"}]}
//! ```
//!
//! The token says whose report it is: `appId` and `taskId`, when sent,
//! must be the token's (else 403 `otherApp`). Refused like the login when
//! a browser sends it from another site or not as JSON. The body is at most
//! [`MAX_REPORT_BYTES`] and lists at most `reports::MAX_FAILED` files.

use super::handlers::{Shared, authenticate, cross_site, refuse, unavailable};
use super::login::Refusal;
use super::progress::{FailedFile, Report};
use super::{now_ms, reports};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// A report: two ids, two numbers and a bounded list of file names.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/v1/report", post(report))
        .layer(DefaultBodyLimit::max(MAX_REPORT_BYTES))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_REPORT_BYTES,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Body {
    index: u64,
    #[serde(default)]
    latest: Option<u64>,
    #[serde(default)]
    failed: Vec<FailedFile>,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    task_id: Option<String>,
}

fn parse(body: &[u8]) -> Result<Body, Refusal> {
    let b: Body = serde_json::from_slice(body).map_err(|_| {
        Refusal::BadRequest(
            "the body is not a report ({\"index\": N, \"failed\": [{\"file\", \"stage\"}]})".into(),
        )
    })?;
    reports::check_failed(&b.failed).map_err(Refusal::BadRequest)?;
    Ok(b)
}

async fn report(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = peer.ip().to_canonical();
    if let Some(resp) = cross_site(&s, &headers, caller) {
        return resp;
    }
    // A JSON body needs a CORS preflight, which this server never grants.
    if !super::browser::is_json(&headers) {
        return refuse(&s, Refusal::NotJson, None, Some(caller));
    }
    let claims = match authenticate(&s, &headers, caller, false).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let b = match parse(&body) {
        Ok(b) => b,
        Err(r) => return refuse(&s, r, Some(&claims.task), None),
    };
    if b.app_id.as_ref().is_some_and(|a| *a != claims.app)
        || b.task_id.as_ref().is_some_and(|t| *t != claims.task)
    {
        return refuse(&s, Refusal::OtherApp, Some(&claims.task), Some(caller));
    }
    let bundle = s
        .bundles
        .borrow()
        .apps
        .get(&claims.app)
        .filter(|bundle| bundle.env == claims.env)
        .cloned();
    let Some(bundle) = bundle else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": format!("no config bundle for {} in {}", claims.app, claims.env)})),
        )
            .into_response();
    };
    // Only the bundle's own files: the status lists no made-up names.
    let mut failed = b.failed;
    failed.retain(|f| bundle.files.iter().any(|m| m.name == f.file));
    let now = now_ms();
    let report = Report {
        index: b.index,
        latest: b.latest.unwrap_or(b.index).max(b.index),
        failed,
        at_ms: now,
        since_ms: now,
    };
    let kept = s.reports.lock().put(
        &claims.env,
        &claims.app,
        &claims.task,
        report,
        claims.exp,
        now / 1000,
    );
    if kept.is_err() {
        return unavailable(&s, "the config server holds as many reports as it may");
    }
    s.metrics.reports.inc();
    // Only a delivery in progress waits on reports; the status reads them live.
    if s.tracks.lock().busy() {
        s.wake.notify_one();
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_with_their_bounds() {
        let b =
            parse(br#"{"index": 5, "failed": [{"file": "a.conf", "stage": "check"}]}"#).unwrap();
        assert_eq!((b.index, b.failed.len()), (5, 1));
        for bad in [
            &br#"{"index": -1}"#[..],
            br#"{"index": 1, "failed": [{"file": "a", "stage": "guess"}]}"#,
            br#"{"index": 1, "token": "x"}"#,
            b"not json",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let many = serde_json::json!({"index": 1, "failed": vec![serde_json::json!({"file": "x", "stage": "write"}); reports::MAX_FAILED + 1]});
        assert!(parse(many.to_string().as_bytes()).is_err());
    }
}
